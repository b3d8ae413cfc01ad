"""The contract of the generative families (autoencoder, vae, gan, diffusion): build,
per-row outputs, finite gradients, safetensors round trip, determinism under a seed, and
for the families that generate: sample shape, range and reproducibility."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import TypeAdapter
from safetensors.torch import load, save

from layerwise.config import ModelConfig
from layerwise.models import build_model, get_model, model_names

IMAGE_DESC: dict[str, Any] = {
    "numeric_dim": 0, "category_sizes": [], "category_dims": [], "category_names": [],
    "images": {"image": (1, 12, 12)},
    "image_stats": {"image": {"mean": [0.4], "std": [0.3]}}, "outputs": {},
}
# an image with a class column (model.condition or model.anomaly.label)
LABELLED_DESC: dict[str, Any] = {**IMAGE_DESC, "category_sizes": [3], "category_dims": [None],
                                 "category_names": ["label"]}
TABULAR_DESC: dict[str, Any] = {
    "numeric_dim": 5, "category_sizes": [], "category_dims": [], "category_names": [],
    "images": {}, "outputs": {},
}
DESCS = {"image": IMAGE_DESC, "labelled": LABELLED_DESC, "tabular": TABULAR_DESC}

# case name → (model config, data description); every generative family needs a case
GEN_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "autoencoder": ({"family": "autoencoder", "channels": [4, 8], "bottleneck": 4,
                     "denoise": 0.2}, "image"),
    "autoencoder-tabular": ({"family": "autoencoder", "hidden": [8, 6], "bottleneck": 2,
                             "loss": "mae"}, "tabular"),
    "autoencoder-anomaly": ({"family": "autoencoder", "channels": [4], "bottleneck": 3,
                             "anomaly": {"label": "label", "normal": ["0"]}}, "labelled"),
    "vae": ({"family": "vae", "channels": [4, 8], "latent": 3, "kl_warmup_steps": 5},
            "image"),
    "vae-conditional": ({"family": "vae", "channels": [4], "latent": 2, "condition": "label",
                         "likelihood": "gaussian"}, "labelled"),
    "vae-tabular": ({"family": "vae", "hidden": [8], "latent": 2, "likelihood": "gaussian",
                     "beta": 0.5}, "tabular"),
    "gan": ({"family": "gan", "channels": [4, 8], "latent": 4, "loss": "hinge"}, "image"),
    "gan-conditional": ({"family": "gan", "channels": [4], "latent": 3, "condition": "label",
                         "spectral_norm": True, "discriminator_steps": 2}, "labelled"),
    "gan-tabular": ({"family": "gan", "hidden": [8], "latent": 2, "ema": None}, "tabular"),
    "diffusion": ({"family": "diffusion", "channels": [4, 8], "timesteps": 20,
                   "noise_schedule": "linear", "sample_steps": 4}, "image"),
    "diffusion-conditional": ({"family": "diffusion", "channels": [8], "timesteps": 20,
                               "prediction": "v", "patch": 2, "condition": "label",
                               "sample_steps": 3, "guidance": 1.5}, "labelled"),
}


def batch(n: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(n, 1, 12, 12, generator=g),
            "numeric": torch.randn(n, 5, generator=g),
            "category": torch.randint(0, 3, (n, 1), generator=g)}


def build(case: str, seed: int = 0) -> Any:
    cfg, desc = GEN_CASES[case]
    torch.manual_seed(seed)
    return build_model(TypeAdapter(ModelConfig).validate_python(cfg), [], DESCS[desc])


def test_every_generative_family_has_a_case() -> None:
    generative = {n for n in model_names() if getattr(get_model(n), "generative", False)}
    assert generative <= {cfg["family"] for cfg, _ in GEN_CASES.values()}


@pytest.mark.parametrize("case", sorted(GEN_CASES))
def test_generative_contract(case: str) -> None:
    model = build(case)
    inputs = batch()
    model.train()
    out = model(inputs)
    assert "loss" in out and all(v.shape == (6,) for v in out.values())
    assert all(torch.isfinite(v).all() for v in out.values())
    loss = model.loss(out)
    assert loss.dim() == 0
    assert set(model.metrics({k: v.detach() for k, v in out.items()})) == set(out) - {"loss"}
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)

    # safetensors round trip into a fresh build gives the same outputs (eval: deterministic)
    model.eval()
    blob = save({k: v.contiguous() for k, v in model.state_dict().items()})
    other = build(case, seed=123).eval()
    other.load_state_dict(load(blob))
    with torch.no_grad():
        a, b = model(inputs), other(inputs)
    assert all(torch.equal(a[k], b[k]) for k in a)

    # determinism: the same seed builds the same weights, another seed others
    w1, w2 = build(case).state_dict(), build(case).state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1 if not w1[k].isnan().any())
    w3 = build(case, seed=1).state_dict()
    assert any(not torch.equal(w1[k], w3[k]) for k in w1 if w1[k].is_floating_point()
               and not w1[k].isnan().any())


@pytest.mark.parametrize("case", sorted(GEN_CASES))
def test_generative_channels_last_gives_the_same_outputs(case: str) -> None:
    model = build(case).eval()
    inputs = batch()
    with torch.no_grad():
        ref = model(inputs)
        model.to(memory_format=torch.channels_last)
        got = model(dict(inputs, image=inputs["image"].contiguous(
            memory_format=torch.channels_last)))
    assert all(torch.allclose(ref[k], got[k], atol=1e-4) for k in ref)


@pytest.mark.parametrize("case", sorted(c for c in GEN_CASES if hasattr(build(c), "encode")))
def test_encode_and_reconstruct_shapes(case: str) -> None:
    model = build(case).eval()
    inputs = batch()
    code = model.encode(inputs)
    assert code.dim() == 2 and code.shape[0] == 6
    rec = model.reconstruct(inputs)
    if model.spec.is_image:
        assert rec.shape == (6, 1, 12, 12) and rec.min() >= 0 and rec.max() <= 1
    else:
        assert rec.shape == (6, 5)


def _samples() -> list[str]:
    return sorted(c for c in GEN_CASES if GEN_CASES[c][0]["family"] != "autoencoder")


@pytest.mark.parametrize("case", _samples())
def test_sample_shape_range_and_reproducibility(case: str) -> None:
    model = build(case).eval()
    labels = torch.tensor([1, 2, 2, 1]) if model.spec.classes else None

    def draw(seed: int) -> torch.Tensor:
        return model.sample(4, labels=labels, generator=torch.Generator().manual_seed(seed))

    x = draw(0)
    if model.spec.is_image:
        assert x.shape == (4, *model.spec.shape) and x.min() >= 0 and x.max() <= 1
    else:
        assert x.shape == (4, 5)
    assert torch.isfinite(x).all()
    assert torch.equal(x, draw(0))
    assert not torch.equal(x, draw(1))
