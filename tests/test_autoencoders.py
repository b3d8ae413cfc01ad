"""Autoencoder and VAE behaviour: denoising, anomaly scores, the KL warm-up, the conditional
VAE, interpolation, and exact training under a seed (the Trainer, directly)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import TypeAdapter

from layerwise.config import ModelConfig, TrainConfig
from layerwise.errors import ConfigError
from layerwise.models import build_model
from layerwise.training import Callback, Trainer

IMAGE = {"numeric_dim": 0, "category_sizes": [], "category_dims": [], "category_names": [],
         "images": {"image": (1, 8, 8)}, "image_stats": {"image": {"mean": [0.3]}}}
LABELLED = {"numeric_dim": 4, "category_sizes": [3], "category_dims": [None],
            "category_names": ["label"], "images": {}}


def tabular(k: int) -> dict[str, Any]:
    return {"numeric_dim": k, "category_sizes": [], "category_dims": [], "category_names": [],
            "images": {}}


def make(cfg: dict[str, Any], desc: dict[str, Any], seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return build_model(TypeAdapter(ModelConfig).validate_python(cfg), [], desc)


def fit(model: Any, inputs: dict[str, torch.Tensor], **train: Any) -> Any:
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 32, "progress": "quiet", "threads": 1,
                         "optimizer": {"name": "adam", "lr": 0.01}, **train})
    return Trainer(cfg).fit(model, (inputs, {}))


# -- autoencoder ---------------------------------------------------------------------------
def test_denoising_corrupts_the_inputs_in_training_only_and_keeps_a_clean_target() -> None:
    ae = make({"family": "autoencoder", "channels": [4, 8], "bottleneck": 3,
               "denoise": 0.5}, IMAGE)
    x = torch.randn(5, 1, 8, 8)
    seen: list[torch.Tensor] = []
    ae.encoder.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))

    ae.train()
    out = ae({"image": x})
    noisy = seen[-1]
    assert not torch.equal(noisy, x)
    assert 0.3 < float((noisy - x).std()) < 0.7  # the configured std in normalised units
    # the loss compares the reconstruction of the noisy input with the CLEAN image
    with torch.no_grad():
        recon = torch.sigmoid(ae.decoder(ae.encoder(noisy)))
        expected = (recon - ae.spec.to_pixels(x)).square().flatten(1).mean(1)
    assert torch.allclose(out["loss"], expected, atol=1e-6)

    ae.eval()
    a = ae({"image": x})
    assert torch.equal(seen[-1], x)  # no noise outside training
    assert torch.equal(a["loss"], ae({"image": x})["loss"])
    # score never adds noise, even in training mode
    ae.train()
    assert torch.equal(ae.score({"image": x}), a["recon_error"])


def _plane(n: int, g: torch.Generator) -> torch.Tensor:
    """Rows on a 2-d plane inside 8-d space, plus a little noise."""
    basis = torch.tensor([[1.0, 0.5, -1.0, 0.0, 2.0, 0.3, 0.0, -0.5],
                          [0.0, 1.0, 0.5, -1.0, 0.0, 0.7, 1.0, 0.2]])
    return torch.randn(n, 2, generator=g) @ basis + 0.05 * torch.randn(n, 8, generator=g)


def test_score_is_deterministic_and_higher_off_the_training_distribution() -> None:
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(0)
    train = _plane(512, g)
    ae = make({"family": "autoencoder", "hidden": [16], "bottleneck": 2}, tabular(8))
    fit(ae, {"numeric": train}, epochs=12, batch_size=64)
    normal = _plane(200, g)
    odd = torch.randn(200, 8, generator=g) * 1.5  # off the plane
    s_normal, s_odd = ae.score({"numeric": normal}), ae.score({"numeric": odd})
    assert torch.equal(s_normal, ae.score({"numeric": normal}))
    # a row's score does not depend on the rows scored with it
    assert torch.allclose(ae.score({"numeric": normal[:7]}), s_normal[:7])
    auc = roc_auc_score([0] * 200 + [1] * 200, torch.cat([s_normal, s_odd]).numpy())
    assert auc > 0.95


def test_threshold_buffer_is_saved_and_flags_rows() -> None:
    ae = make({"family": "autoencoder", "hidden": [8], "bottleneck": 2}, tabular(4))
    assert ae.threshold.shape == () and torch.isnan(ae.threshold)
    assert "threshold" in ae.state_dict()
    x = {"numeric": torch.randn(6, 4)}
    with pytest.raises(ConfigError, match="no anomaly threshold"):
        ae.flag(x)
    s = ae.score(x)
    ae.threshold.fill_(float(s.median()))
    assert torch.equal(ae.flag(x), s > s.median())
    other = make({"family": "autoencoder", "hidden": [8], "bottleneck": 2}, tabular(4), seed=3)
    other.load_state_dict(ae.state_dict())
    assert other.threshold == ae.threshold


def test_28x28_and_8x8_images_reconstruct_to_their_size() -> None:
    for side in (28, 8):
        desc = dict(IMAGE, images={"image": (1, side, side)})
        ae = make({"family": "autoencoder", "channels": [4, 8, 8], "bottleneck": 3}, desc)
        vae = make({"family": "vae", "channels": [4, 8], "latent": 3}, desc)
        x = {"image": torch.randn(2, 1, side, side)}
        assert ae.reconstruct(x).shape == (2, 1, side, side)
        assert vae.sample(2).shape == (2, 1, side, side)


def test_families_refuse_roles_they_do_not_have() -> None:
    with pytest.raises(ConfigError, match="unconditioned"):
        make({"family": "autoencoder", "hidden": [8], "condition": "label"}, LABELLED)
    with pytest.raises(ConfigError, match="likelihood: gaussian"):
        make({"family": "vae", "hidden": [8]}, tabular(4))  # bernoulli needs pixels


# -- VAE -------------------------------------------------------------------------------------
def test_kl_warmup_is_linear_in_optimizer_steps_and_counted_by_the_trainer() -> None:
    vae = make({"family": "vae", "hidden": [8], "latent": 2, "likelihood": "gaussian",
                "beta": 0.5, "kl_warmup_steps": 4}, tabular(3))
    vae.train()
    weights = []
    for _ in range(6):
        weights.append(vae.kl_weight())
        vae.on_step_end()
    assert weights == [0.0, 0.125, 0.25, 0.375, 0.5, 0.5]
    vae.eval()
    assert vae.kl_weight() == 0.5  # validation scores the full objective
    # the training loss uses the ramped weight
    vae.kl_steps.zero_()
    vae.train()
    x = {"numeric": torch.randn(5, 3)}
    torch.manual_seed(0)
    out = vae(x)
    assert torch.equal(out["loss"], out["recon"])  # weight 0 at step 0
    vae.kl_steps.fill_(2)
    torch.manual_seed(0)
    out = vae(x)
    assert torch.allclose(out["loss"], out["recon"] + 0.25 * out["kl"])

    fresh = make({"family": "vae", "hidden": [8], "latent": 2, "likelihood": "gaussian",
                  "kl_warmup_steps": 4}, tabular(3))
    result = fit(fresh, {"numeric": torch.randn(64, 3)}, epochs=2, batch_size=16)
    assert int(fresh.kl_steps) == result.state.step == 8


def test_vae_objective_is_the_elbo_terms() -> None:
    vae = make({"family": "vae", "channels": [4], "latent": 2}, IMAGE).eval()
    x = {"image": torch.randn(3, 1, 8, 8)}
    out = vae(x)
    assert (out["kl"] >= 0).all() and (out["recon"] > 0).all()
    assert torch.allclose(out["loss"], out["recon"] + out["kl"])  # beta 1 in eval
    assert torch.equal(vae.encode(x), vae._posterior(x)[0])


def _two_classes(n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Class 1 rows sit near +2, class 2 rows near -2 (0 is the encoders' unknown value)."""
    y = torch.randint(1, 3, (n,), generator=g)
    centre = torch.where(y == 1, 2.0, -2.0)[:, None]
    return {"numeric": centre + 0.3 * torch.randn(n, 4, generator=g), "category": y[:, None]}


def test_conditional_vae_samples_the_requested_class() -> None:
    cfg = {"family": "vae", "hidden": [16], "latent": 2, "likelihood": "gaussian",
           "condition": "label"}
    vae = make(cfg, LABELLED)
    fit(vae, _two_classes(512, torch.Generator().manual_seed(0)), epochs=25)
    g = torch.Generator().manual_seed(1)
    one, two = vae.sample(200, labels=1, generator=g), vae.sample(200, labels=2, generator=g)
    assert one.shape == (200, 4)
    assert float(one.mean()) > 1.0 and float(two.mean()) < -1.0
    mixed = vae.sample(4, labels=torch.tensor([1, 2, 1, 2]),
                       generator=torch.Generator().manual_seed(2))
    assert (mixed[[0, 2]].mean(1) > 0).all() and (mixed[[1, 3]].mean(1) < 0).all()
    with pytest.raises(ConfigError, match="class labels"):
        vae.sample(2, labels=3)
    with pytest.raises(ConfigError, match="not class-conditional"):
        make({"family": "vae", "hidden": [8], "likelihood": "gaussian"}, tabular(4)).sample(
            2, labels=1)


LABELLED_IMAGE = dict(IMAGE, category_sizes=[4], category_dims=[None],
                      category_names=["label"])


@pytest.mark.parametrize("desc,arch", [(LABELLED_IMAGE, {"channels": [4, 8, 8]}),
                                       (LABELLED, {"hidden": [16, 8],
                                                   "likelihood": "gaussian"})])
def test_conditional_vae_feeds_the_class_to_every_encoder_and_decoder_stage(
        desc: dict[str, Any], arch: dict[str, Any]) -> None:
    """Every convolution / linear layer of both blocks sees the one-hot class as its last
    inputs (constant maps for images), so the latent need not carry the class."""
    vae = make({"family": "vae", "latent": 3, "condition": "label", **arch}, desc).eval()
    k = vae.spec.classes
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(
        lambda mod, args, name=f"{part}.{name}": seen.__setitem__(name, args[0]))
        for part in ("encoder", "decoder")
        for name, m in getattr(vae, part).named_modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))]
    y = torch.tensor([1, 2, 2, 1, 2])
    data = torch.randn(5, *vae.spec.shape)
    inputs = {"image" if vae.spec.is_image else "numeric": data, "category": y[:, None]}
    vae(inputs)
    vae.sample(5, labels=y, generator=torch.Generator().manual_seed(0))
    for h in hooks:
        h.remove()
    stages = 2 * (len(arch.get("channels", arch.get("hidden"))) + 1)
    assert len(seen) == stages  # each block: one per width + the linear layer
    for name, h in seen.items():
        tail = h[:, -k:].flatten(2).amax(2) if h.dim() == 4 else h[:, -k:]
        assert torch.equal(tail, F.one_hot(y, k).float()), name
        if h.dim() == 4:  # constant maps
            assert torch.equal(h[:, -k:].amin((2, 3)), tail), name
    # the decoder's output depends on the class at a fixed latent
    z = torch.zeros(2, 3)
    out = vae._decode(z, F.one_hot(torch.tensor([1, 2]), k).float())
    assert not torch.allclose(out[0], out[1])
    with pytest.raises(ConfigError, match="class vector"):
        vae.decoder(z)


def test_interpolation_runs_between_the_two_posterior_means() -> None:
    vae = make({"family": "vae", "channels": [4, 8], "latent": 3}, IMAGE).eval()
    a, b = {"image": torch.randn(2, 1, 8, 8)}, {"image": torch.randn(2, 1, 8, 8)}
    path = vae.interpolate(a, b, steps=5)
    assert path.shape == (2, 5, 1, 8, 8) and path.min() >= 0 and path.max() <= 1
    assert torch.allclose(path[:, 0], vae.reconstruct(a), atol=1e-6)
    assert torch.allclose(path[:, -1], vae.reconstruct(b), atol=1e-6)
    with pytest.raises(ConfigError, match="at least 2 steps"):
        vae.interpolate(a, b, steps=1)


class _Crash(Callback):
    def on_step_end(self, trainer: Any, step: int, loss: Any) -> None:
        if step == 5:
            raise RuntimeError("simulated crash")


def test_vae_training_is_exact_under_a_seed_and_resumes_its_warmup(tmp_path: Path) -> None:
    cfg = {"family": "vae", "channels": [4], "latent": 2, "kl_warmup_steps": 6,
           "beta": 2.0}
    x = {"image": torch.randn(96, 1, 8, 8, generator=torch.Generator().manual_seed(0))}
    train = dict(epochs=2, batch_size=16, checkpoint_every=2)
    a, b = make(cfg, IMAGE), make(cfg, IMAGE)
    fit(a, x, **train)
    fit(b, x, **train)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert int(a.kl_steps) == 12

    tc = TrainConfig(**{"progress": "quiet", "threads": 1,
                        "optimizer": {"name": "adam", "lr": 0.01}, **train})
    crashed = make(cfg, IMAGE)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(tc, checkpoint_dir=tmp_path, callbacks=[_Crash()]).fit(crashed, (x, {}))
    resumed = make(cfg, IMAGE, seed=7)
    Trainer(tc, checkpoint_dir=tmp_path, resume=True).fit(resumed, (x, {}))
    sr = resumed.state_dict()
    assert all(torch.equal(sa[k], sr[k]) for k in sa)
