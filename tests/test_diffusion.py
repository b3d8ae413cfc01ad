"""The diffusion family: schedules, v/eps algebra, the DDIM sampler, guidance, EMA and an
exact kill-and-resume (the generic contract is in test_generative_contract.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from layerwise.config import TrainConfig
from layerwise.config.generative import DiffusionConfig
from layerwise.data.batching import TensorData
from layerwise.errors import ConfigError
from layerwise.models.diffusion import Diffusion, eps_from_v, noise_schedule, v_from, x0_from_v
from layerwise.training import Trainer
from tests.model_helpers import Crash

DESC: dict[str, Any] = {"images": {"image": (1, 8, 8)}, "category_names": ["label"],
                        "category_sizes": [4], "image_stats": {"image": {"mean": [0.5],
                                                                         "std": [0.25]}}}


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def tiny(seed: int = 0, **kw: Any) -> Diffusion:
    args: dict[str, Any] = {"family": "diffusion", "channels": [4, 8], "timesteps": 10,
                            "sample_steps": 10, "condition": "label", **kw}
    torch.manual_seed(seed)
    return Diffusion(DiffusionConfig(**args), DESC)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_schedules_decrease_from_one_to_nearly_zero(name: str) -> None:
    abar = noise_schedule(name, 1000)
    assert abar.shape == (1000,)
    assert (abar[1:] < abar[:-1]).all() and (abar > 0).all()
    assert 0.999 < float(abar[0]) < 1.0
    assert float(abar[-1]) < 1e-4
    for t in (10, 100):  # fewer steps, same ends
        short = noise_schedule(name, t)
        assert (short[1:] < short[:-1]).all() and float(short[-1]) < 1e-3


def test_schedule_endpoints_match_the_papers() -> None:
    linear = noise_schedule("linear", 1000)
    assert float(linear[0]) == pytest.approx(1 - 1e-4)  # beta_1 = 1e-4 (DDPM)
    betas = 1 - linear / torch.cat([torch.ones(1, dtype=linear.dtype), linear[:-1]])
    assert float(betas[-1]) == pytest.approx(0.02)      # beta_T = 0.02
    cosine = noise_schedule("cosine", 1000)

    def f(t: float) -> float:
        return math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2

    for t in (1, 250, 500, 900):  # abar_t = f(t) / f(0) (Nichol & Dhariwal), before the clip
        assert float(cosine[t - 1]) == pytest.approx(f(t) / f(0), rel=1e-9)
    with pytest.raises(ConfigError, match="noise_schedule"):
        noise_schedule("quadratic", 10)


def test_v_and_eps_conversions_agree() -> None:
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 1, 4, 4, generator=g), torch.randn(5, 1, 4, 4, generator=g)
    abar = noise_schedule("cosine", 100)[torch.tensor([0, 10, 50, 90, 99])].float()
    abar = abar.view(-1, 1, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    v = v_from(x0, eps, abar)
    assert torch.allclose(eps_from_v(x_t, v, abar), eps, atol=1e-5)
    assert torch.allclose(x0_from_v(x_t, v, abar), x0, atol=1e-5)


class Oracle(torch.nn.Module):
    """A 'network' that knows the data is one image ``c``: it returns the exact eps (or v)."""

    def __init__(self, c: torch.Tensor, abar: torch.Tensor, prediction: str) -> None:
        super().__init__()
        self.c, self.abar, self.prediction = c, abar, prediction

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: Any) -> torch.Tensor:
        a = self.abar[t].view(-1, 1, 1, 1)
        eps = (x - a.sqrt() * self.c) / (1 - a).sqrt()
        return v_from(self.c, eps, a) if self.prediction == "v" else eps


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("steps", [1, 3, 10])
def test_ddim_with_an_exact_network_returns_the_data(prediction: str, steps: int) -> None:
    model = tiny(prediction=prediction, ema=None).eval()
    c = torch.linspace(-0.9, 0.9, 64).view(1, 1, 8, 8)
    model.net = Oracle(c, model.abar, prediction)  # type: ignore[assignment]
    x = model.sample(3, steps=steps, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x, ((c + 1) / 2).expand(3, 1, 8, 8), atol=1e-4)


def test_ddim_with_every_step_is_deterministic_given_the_generator() -> None:
    model = tiny().eval()

    def draw(seed: int) -> torch.Tensor:
        return model.sample(4, labels=2, steps=10, generator=torch.Generator().manual_seed(seed))

    a = draw(0)
    assert a.shape == (4, 1, 8, 8) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, draw(0))
    assert not torch.equal(a, draw(1))
    torch.manual_seed(5)  # the global RNG plays no part
    b = draw(0)
    assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="steps"):
        model.sample(2, steps=11)
    with pytest.raises(ConfigError, match="class labels"):
        model.sample(2, labels=4)


def test_guidance_combines_conditional_and_unconditional_predictions() -> None:
    model = tiny(ema=None).eval()
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(3, 1, 8, 8, generator=g), torch.tensor([9, 5, 1])
    labels, null = torch.tensor([1, 2, 3]), torch.full((3,), model.null_class)
    net = model.net
    with torch.no_grad():
        # an untrained net ignores the class (its output conv starts at zero): move it off zero
        torch.nn.init.normal_(net.conv_out.weight, std=0.1)
        torch.nn.init.normal_(net.label.weight)  # type: ignore[union-attr]
        cond, uncond = net(x, t, labels), net(x, t, null)
        assert not torch.allclose(cond, uncond)

        def eps(pred: torch.Tensor) -> torch.Tensor:
            a = model.abar[t].view(-1, 1, 1, 1)
            x0 = ((x - (1 - a).sqrt() * pred) / a.sqrt()).clamp(-1, 1)
            return (x - a.sqrt() * x0) / (1 - a).sqrt()

        # guidance 0: the conditional prediction alone (one network pass)
        assert torch.allclose(model.denoise(net, x, t, labels, 0.0)[1], eps(cond), atol=1e-5)
        # no labels: the unconditional path (the null class), whatever the guidance
        for w in (0.0, 3.0):
            assert torch.allclose(model.denoise(net, x, t, None, w)[1], eps(uncond), atol=1e-5)
        w = 2.0
        guided = model.denoise(net, x, t, labels, w)[1]
        assert torch.allclose(guided, eps((1 + w) * cond - w * uncond), atol=1e-5)
    # sampling: unlabelled draws ignore guidance; labelled draws depend on it
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(model.sample(2, generator=gen(), guidance=0.0),
                       model.sample(2, generator=gen(), guidance=4.0))
    assert not torch.equal(model.sample(2, labels=1, generator=gen(), guidance=0.0),
                           model.sample(2, labels=1, generator=gen(), guidance=4.0))


def test_condition_dropout_feeds_the_null_class_in_training_only() -> None:
    model = tiny(condition_dropout=0.5)
    seen: list[torch.Tensor] = []
    model.net.label.register_forward_hook(  # type: ignore[union-attr]
        lambda m, args, out: seen.append(args[0]))
    inputs = {"image": torch.randn(200, 1, 8, 8), "category": torch.randint(1, 4, (200, 1))}
    model.train()(inputs)
    dropped = (seen[-1] == model.null_class).float().mean()
    assert 0.35 < float(dropped) < 0.65
    model.eval()(inputs)
    assert not (seen[-1] == model.null_class).any()


def test_eval_loss_is_reproducible_and_leaves_the_global_rng_alone() -> None:
    model = tiny().eval()
    inputs = {"image": torch.randn(6, 1, 8, 8), "category": torch.randint(0, 4, (6, 1))}
    state = torch.get_rng_state()
    a = model(inputs)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a["loss"], model(inputs)["loss"])
    assert set(a) == {"loss", "mse"} and a["loss"].shape == (6,)


def test_ema_follows_the_weights_and_is_what_sampling_uses() -> None:
    model = tiny(ema=0.9)
    assert model.ema is not None
    before = [p.clone() for p in model.ema.shadow.parameters()]
    opt = torch.optim.SGD(model.net.parameters(), lr=0.1)
    inputs = {"image": torch.randn(6, 1, 8, 8), "category": torch.randint(0, 4, (6, 1))}
    model(inputs)["loss"].mean().backward()
    opt.step()
    model.on_step_end()
    assert int(model.ema.updates) == 1
    moved = [not torch.equal(a, b) for a, b in zip(before, model.ema.shadow.parameters())]
    assert any(moved)
    # the shadow lies between the old and the new weights (a moving average)
    assert any(not torch.equal(a, b) for a, b in
               zip(model.net.parameters(), model.ema.shadow.parameters()))
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    ref = model.sample(2, labels=1, generator=gen())
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(1.0)
    assert torch.equal(model.sample(2, labels=1, generator=gen()), ref)
    with torch.no_grad():
        model.ema.shadow.conv_in.weight.add_(1.0)
    assert not torch.equal(model.sample(2, labels=1, generator=gen()), ref)


def test_bad_configs_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="patch"):
        tiny(patch=3)
    with pytest.raises(ConfigError, match="image input"):
        Diffusion(DiffusionConfig(family="diffusion"), {"numeric_dim": 4})
    with pytest.raises(ValueError, match="sample_steps"):
        DiffusionConfig(family="diffusion", timesteps=10, sample_steps=20)


@pytest.mark.parametrize("crash_step", [3, 8])
def test_kill_and_resume_is_exact_including_ema(tmp_path: Path, crash_step: int) -> None:
    g = torch.Generator().manual_seed(0)
    data = TensorData({"image": torch.randn(40, 1, 8, 8, generator=g),
                       "category": torch.randint(0, 4, (40, 1), generator=g)}, {})
    cfg = TrainConfig(epochs=2, batch_size=8, checkpoint_every=2, threads=1,
                      progress="quiet", schedule={"name": "cosine", "warmup_steps": 2})

    def fit(out: Path, resume: bool = False, callbacks: Any = ()) -> Diffusion:
        model = tiny(ema=0.9, prediction="v", condition_dropout=0.3)
        Trainer(cfg, checkpoint_dir=out, resume=resume, callbacks=callbacks).fit(model, data)
        return model

    ref = fit(tmp_path / "ref").state_dict()
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tmp_path / "run", callbacks=[Crash(crash_step)])
    got = fit(tmp_path / "run", resume=True).state_dict()
    assert ref.keys() == got.keys()
    assert any(k.startswith("ema.shadow.") for k in ref) and int(ref["ema.updates"]) == 10
    for k in ref:
        assert torch.equal(ref[k], got[k]), f"tensor {k} differs"
