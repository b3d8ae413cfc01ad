"""The GAN family: losses, conditioning, spectral norm, phased training and exact resume."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import TypeAdapter

from layerwise.config import ModelConfig, TrainConfig
from layerwise.data.batching import TensorData
from layerwise.errors import ConfigError
from layerwise.models import build_model
from layerwise.models.gan import discriminator_loss, generator_loss
from layerwise.training import Trainer
from tests.model_helpers import Crash

DESC: dict[str, Any] = {
    "numeric_dim": 0, "category_sizes": [4], "category_names": ["label"],
    "category_dims": [None], "images": {"image": (1, 8, 8)},
    "image_stats": {"image": {"mean": [0.3], "std": [0.4]}}, "outputs": {},
}


def gan(**over: Any) -> torch.nn.Module:
    cfg = {"family": "gan", "condition": "label", "channels": [4, 8], "latent": 8, **over}
    torch.manual_seed(0)
    return build_model(TypeAdapter(ModelConfig).validate_python(cfg), [], DESC)


def data(n: int = 48) -> TensorData:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(1, 4, (n,), generator=g)  # index 0 is the unknown class
    # three classes that differ in where the bright pixels are
    img = torch.randn(n, 1, 8, 8, generator=g) * 0.3
    img[:, :, :, :3] += (labels == 1).float().view(-1, 1, 1, 1)
    img[:, :, :, 5:] += (labels == 3).float().view(-1, 1, 1, 1)
    return TensorData({"image": img, "category": labels.view(-1, 1)}, {})


def test_losses_have_the_right_signs() -> None:
    lo, hi = torch.tensor([-2.0]), torch.tensor([2.0])
    for kind in ("non_saturating", "hinge"):
        # the discriminator gains by scoring real rows high and fakes low
        assert discriminator_loss(kind, hi, lo) < discriminator_loss(kind, lo, hi)
        assert discriminator_loss(kind, hi, lo) >= 0
        # the generator gains when its fakes are scored high
        assert generator_loss(kind, hi) < generator_loss(kind, lo)
    # hinge saturates past the margin; non-saturating never reaches exactly zero
    assert discriminator_loss("hinge", hi, lo).item() == 0.0
    assert discriminator_loss("non_saturating", hi, lo).item() > 0.0
    assert generator_loss("hinge", hi).item() == -2.0


def test_conditional_sample_with_labels_is_reproducible_and_in_range() -> None:
    model = gan()
    s = model.sample(6, labels=torch.tensor([1, 2, 3, 1, 2, 3]),
                     generator=torch.Generator().manual_seed(1))
    assert s.shape == (6, 1, 8, 8) and 0.0 <= float(s.min()) and float(s.max()) <= 1.0
    again = model.sample(6, labels=torch.tensor([1, 2, 3, 1, 2, 3]),
                         generator=torch.Generator().manual_seed(1))
    assert torch.equal(s, again)
    # the class changes the sample (same noise, other labels)
    other = model.sample(6, labels=3, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(s, other)
    with pytest.raises(ConfigError, match="class labels"):
        model.sample(2, labels=torch.tensor([1, 4]))
    with pytest.raises(ConfigError, match="not class-conditional"):
        gan(condition=None, quality_label="label").sample(2, labels=1)


def test_spectral_norm_is_applied_to_the_discriminator_when_enabled() -> None:
    from torch.nn.utils import parametrize

    sn = gan(spectral_norm=True)
    plain = gan()
    layers = [m for m in sn.discriminator.modules()
              if isinstance(m, torch.nn.Conv2d | torch.nn.Linear | torch.nn.Embedding)]
    assert len(layers) == 4 and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert not any(parametrize.is_parametrized(m) for m in plain.discriminator.modules())
    assert not any(parametrize.is_parametrized(m) for m in sn.generator.modules())
    # the largest singular value of a normalised weight is ~1
    conv = layers[1]
    for _ in range(20):  # power iterations run in training-mode forward passes
        sn.discriminator(torch.randn(4, 1, 8, 8), torch.tensor([1, 2, 3, 1]))
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert abs(float(sigma) - 1.0) < 0.05


def test_unknown_phase_in_train_optimizers_is_a_config_error() -> None:
    cfg = TrainConfig(epochs=1, progress="quiet", threads=1,
                      optimizers={"generator": {"lr": 1e-3}, "critic": {"lr": 1e-3}})
    with pytest.raises(ConfigError, match="critic"):
        Trainer(cfg).fit(gan(), data())


def test_separate_learning_rates_and_discriminator_steps() -> None:
    model = gan(discriminator_steps=2)
    assert model.phases == ("discriminator", "discriminator", "generator")
    cfg = TrainConfig(epochs=2, batch_size=16, progress="quiet", threads=1,
                      schedule={"name": "cosine"},
                      optimizers={"generator": {"name": "adam", "lr": 2e-3},
                                  "discriminator": {"name": "adam", "lr": 1e-3}})
    trainer = Trainer(cfg)
    result = trainer.fit(model, data(), data(24))
    opts = trainer.optimizer.opts  # type: ignore[union-attr]
    assert set(opts) == {"discriminator", "generator"}
    # two discriminator updates per batch, one generator update; one schedule step per batch
    assert int(next(iter(opts["discriminator"].state.values()))["step"]) == 2 * 3 * 2
    assert int(next(iter(opts["generator"].state.values()))["step"]) == 3 * 2
    scheds = trainer.scheduler.scheds  # type: ignore[union-attr]
    assert scheds["discriminator"].last_epoch == scheds["generator"].last_epoch == 6
    assert opts["generator"].param_groups[0]["initial_lr"] == 2e-3
    assert opts["discriminator"].param_groups[0]["initial_lr"] == 1e-3
    # the telemetry that shows collapse and divergence reaches the history
    last = result.history[-1]
    for key in ("train_discriminator_loss", "train_generator_loss", "train_d_real_acc",
                "train_d_fake_acc", "train_loss_ratio", "train_diversity", "val_loss",
                "val_d_real_acc", "val_d_fake_acc"):
        assert key in last and torch.isfinite(torch.tensor(last[key])), key


def _train(tmp: Path, *, resume: bool = False, crash: int | None = None
           ) -> tuple[torch.nn.Module, Trainer]:
    cfg = TrainConfig(epochs=3, batch_size=16, checkpoint_every=2, progress="quiet",
                      threads=1, schedule={"name": "cosine", "warmup_steps": 2},
                      optimizers={"generator": {"name": "adam", "lr": 2e-3,
                                                "betas": [0.5, 0.999]},
                                  "discriminator": {"name": "adamw", "lr": 1e-3,
                                                    "weight_decay": 0.01}})
    model = gan(spectral_norm=True, discriminator_steps=2, ema=0.9)
    trainer = Trainer(cfg, checkpoint_dir=tmp, resume=resume,
                      callbacks=[Crash(crash)] if crash else [])
    trainer.fit(model, data(), data(24))
    return model, trainer


def _equal(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a} != {b}"


@pytest.mark.parametrize("crash_step", [3, 5])
def test_kill_and_resume_restores_both_optimizers_schedules_and_ema_exactly(
        tmp_path: Path, crash_step: int) -> None:
    ref, ref_trainer = _train(tmp_path / "ref")
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(tmp_path / "run", crash=crash_step)
    run, run_trainer = _train(tmp_path / "run", resume=True)
    # every model tensor: both networks, spectral-norm vectors, BatchNorm statistics, EMA
    sd_ref, sd_run = ref.state_dict(), run.state_dict()
    assert any(k.startswith("ema.shadow.") for k in sd_ref) and "ema.updates" in sd_ref
    assert int(sd_ref["ema.updates"]) == 9  # 3 epochs x 3 batches
    _equal(sd_ref, sd_run, "model")
    for name in ("discriminator", "generator"):
        _equal(ref_trainer.optimizer.opts[name].state_dict(),
               run_trainer.optimizer.opts[name].state_dict(), f"optimizer {name}")
        _equal(ref_trainer.scheduler.scheds[name].state_dict(),
               run_trainer.scheduler.scheds[name].state_dict(), f"scheduler {name}")
    strip = [{k: v for k, v in h.items() if k != "time"} for h in ref_trainer.history]
    assert [{k: v for k, v in h.items() if k != "time"} for h in run_trainer.history] == strip


def test_diversity_counts_same_class_pairs_so_a_collapsed_class_shows() -> None:
    from layerwise.models.gan import mean_pairwise_distance

    labels = torch.tensor([1, 1, 2, 2])
    # one image per class: far apart across classes, identical within each class
    collapsed = torch.tensor([[0.0], [0.0], [5.0], [5.0]])
    assert mean_pairwise_distance(collapsed) > 0
    assert mean_pairwise_distance(collapsed, labels) == 0
    spread = torch.tensor([[0.0], [1.0], [5.0], [7.0]])
    assert mean_pairwise_distance(spread, labels) == 1.5


def test_sigkill_at_a_random_moment_then_resume_is_exact(tmp_path: Path) -> None:
    """A real ``kill -9`` of ``layerwise train`` on a GAN (two optimizers, two schedules,
    EMA weights) at a random moment of its training, then ``--resume``: the final weights
    equal those of a run never interrupted."""
    import random
    import signal
    import subprocess

    import yaml

    from tests.test_training_exact import _cli, _wait_for, assert_identical, weights

    cfg = {"name": "gan", "seed": 0, "data": {"dataset": "digits", "limit": 600},
           "inputs": [{"name": "image", "type": "image"}],
           "model": {"family": "gan", "channels": [8, 16], "latent": 8, "ema": 0.9},
           "train": {"epochs": 4, "batch_size": 16, "checkpoint_every": 3, "threads": 1,
                     "progress": "quiet", "schedule": {"name": "cosine"},
                     "optimizers": {"generator": {"name": "adam", "lr": 0.0005,
                                                  "betas": [0.5, 0.9]}}}}
    path = tmp_path / "gan.yaml"
    path.write_text(yaml.safe_dump(cfg))
    ref = tmp_path / "ref"
    proc = subprocess.Popen(_cli("train", str(path), "--output", str(ref), "-q"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(ref / "checkpoints" / "last.ckpt", proc)
    start = time.monotonic()
    _wait_for(ref / "model", proc)
    window = time.monotonic() - start
    assert proc.wait() == 0
    run = tmp_path / "run"
    proc = subprocess.Popen(_cli("train", str(path), "--output", str(run), "-q"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(run / "checkpoints" / "last.ckpt", proc)
    time.sleep(random.Random().uniform(0.0, 0.6 * window))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    if (run / "model").exists():
        pytest.fail("training finished before the kill")
    out = subprocess.run(_cli("train", str(path), "--output", str(run), "--resume", "-q"),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    a, b = weights(ref / "model"), weights(run / "model")
    assert any("ema" in k or "shadow" in k for k in a)  # the EMA copy is part of the weights
    assert_identical(a, b)


def test_minibatch_std_sees_a_batch_without_variety() -> None:
    from layerwise.models.gan import MinibatchStd

    layer = MinibatchStd(group=4)
    same = torch.ones(8, 3, 2, 2)
    varied = torch.randn(8, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    out_same, out_varied = layer(same), layer(varied)
    assert out_same.shape == (8, 4, 2, 2)
    assert torch.equal(out_same[:, :3], same)  # the input passes through
    assert float(out_same[:, 3].max()) < 1e-3 < float(out_varied[:, 3].min())
    # a batch size not divisible by the group still works (groups of gcd(b, 4))
    assert layer(torch.randn(6, 3, 2, 2)).shape == (6, 4, 2, 2)
    model = gan(minibatch_std=True)
    assert any(isinstance(m, MinibatchStd) for m in model.discriminator.modules())
    loss, _ = model.phase_loss("discriminator", data().inputs)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.discriminator.parameters()
               if p.grad is not None)
