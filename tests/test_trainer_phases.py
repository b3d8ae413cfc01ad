"""The Trainer's phase extension point: one optimizer and schedule per phase, exact resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from layerwise.config import TrainConfig
from layerwise.errors import ConfigError, NonFiniteError
from layerwise.training import Trainer
from tests.model_helpers import Crash


class TwoPlayer(nn.Module):
    """A toy adversarial pair: ``critic`` tells real rows from ``maker``'s rows."""

    phases = ("critic", "maker")

    def __init__(self) -> None:
        super().__init__()
        self.maker = nn.Linear(3, 4)
        self.critic = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        self.register_buffer("ticks", torch.zeros((), dtype=torch.long))
        self.poison = False

    def phase_parameters(self, phase: str) -> list[nn.Parameter]:
        return list((self.critic if phase == "critic" else self.maker).parameters())

    def phase_loss(self, phase: str, inputs: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        real = inputs["x"]
        fake = self.maker(torch.randn(len(real), 3))  # global RNG: checkpointed
        if phase == "critic":
            d_real, d_fake = self.critic(real), self.critic(fake.detach())
            loss = nn.functional.softplus(-d_real).mean() + nn.functional.softplus(d_fake).mean()
            if self.poison:
                loss = loss * float("nan")
            acc = ((d_real > 0).float().mean() + (d_fake < 0).float().mean()) / 2
            return loss, {"critic_accuracy": acc}
        return nn.functional.softplus(-self.critic(fake)).mean(), {}

    def on_step_end(self) -> None:
        self.ticks += 1

    def forward(self, inputs: Any) -> dict[str, torch.Tensor]:
        return {"loss": nn.functional.softplus(-self.critic(inputs["x"])).flatten()}

    def loss(self, outputs: Any, targets: Any) -> torch.Tensor:
        return outputs["loss"].mean()


def data(n: int = 64) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return {"x": torch.randn(n, 4, generator=g) * 0.5 + 2.0}, {}


def config(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "epochs": 3, "batch_size": 16, "progress": "quiet", "checkpoint_every": 2,
        "threads": 1, "optimizer": {"name": "adam", "lr": 0.01},
        "optimizers": {"maker": {"name": "adam", "lr": 0.002, "betas": [0.5, 0.9]}},
        "schedule": {"name": "cosine"}}
    base.update(kw)
    return TrainConfig(**base)


def test_each_phase_has_its_own_optimizer_and_schedule() -> None:
    torch.manual_seed(0)
    model = TwoPlayer()
    trainer = Trainer(config())
    result = trainer.fit(model, data())
    opts = trainer.optimizer.opts  # type: ignore[union-attr]
    assert opts["critic"].defaults["lr"] == 0.01 and opts["maker"].defaults["lr"] == 0.002
    assert opts["maker"].defaults["betas"] == (0.5, 0.9)
    # every parameter belongs to exactly one optimizer
    ids = [id(p) for o in opts.values() for g in o.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    # the cosine schedules ran per phase: both ended at 0 after 12 steps
    assert all(o.param_groups[0]["lr"] < 1e-9 for o in opts.values())
    assert int(model.ticks) == result.state.step == 12
    logs = result.history[-1]
    assert {"train_critic_loss", "train_maker_loss", "train_critic_accuracy"} <= set(logs)
    assert logs["lr_critic"] == opts["critic"].param_groups[0]["lr"]
    assert logs["lr_maker"] == opts["maker"].param_groups[0]["lr"]


def test_phase_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="unknown phases"):
        Trainer(config(optimizers={"generator": {"lr": 0.1}})).fit(TwoPlayer(), data())
    with pytest.raises(ConfigError, match="accumulate"):
        Trainer(config(accumulate=2)).fit(TwoPlayer(), data())
    with pytest.raises(ConfigError, match="train.optimizers is for models trained in phases"):
        Trainer(config(), loss_fn=lambda o, t: o.sum()).fit(nn.Linear(4, 1), data())


def test_non_finite_phase_is_skipped_then_aborts() -> None:
    model = TwoPlayer()
    model.poison = True
    with pytest.raises(NonFiniteError, match="phase"):
        Trainer(config(max_nonfinite_steps=3)).fit(model, data())


@pytest.mark.parametrize("crash_step", [3, 6])
def test_crash_and_resume_is_exact_for_every_optimizer(tmp_path: Path, crash_step: int) -> None:
    torch.manual_seed(0)
    straight = TwoPlayer()
    t1 = Trainer(config(), checkpoint_dir=tmp_path / "a")
    r1 = t1.fit(straight, data())

    torch.manual_seed(0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(config(), checkpoint_dir=tmp_path / "b", callbacks=[Crash(crash_step)]
                ).fit(TwoPlayer(), data())
    torch.manual_seed(123)  # a different RNG state before resuming must not matter
    resumed = TwoPlayer()
    t2 = Trainer(config(), checkpoint_dir=tmp_path / "b", resume=True)
    r2 = t2.fit(resumed, data())

    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    for phase in ("critic", "maker"):
        s1 = t1.optimizer.opts[phase].state_dict()  # type: ignore[union-attr]
        s2 = t2.optimizer.opts[phase].state_dict()  # type: ignore[union-attr]
        for i, st in s1["state"].items():
            for name, tensor in st.items():
                assert torch.equal(torch.as_tensor(tensor), torch.as_tensor(
                    s2["state"][i][name])), (phase, i, name)
        assert t1.scheduler.scheds[phase].state_dict() == \
            t2.scheduler.scheds[phase].state_dict()  # type: ignore[union-attr]
    assert r1.history == [{**h, "time": r1.history[i]["time"]} for i, h in enumerate(r2.history)]


def test_a_repeated_phase_steps_twice_but_its_schedule_once_per_batch() -> None:
    # regression: the schedule of a phase named twice (two critic updates per batch) used to
    # step twice per batch, so a cosine schedule reached its end halfway through training
    torch.manual_seed(0)
    model = TwoPlayer()
    model.phases = ("critic", "critic", "maker")  # type: ignore[misc]
    trainer = Trainer(config(epochs=2))
    result = trainer.fit(model, data())
    opts = trainer.optimizer.opts  # type: ignore[union-attr]
    scheds = trainer.scheduler.scheds  # type: ignore[union-attr]
    assert result.state.step == 8
    assert int(next(iter(opts["critic"].state.values()))["step"]) == 16
    assert int(next(iter(opts["maker"].state.values()))["step"]) == 8
    assert scheds["critic"].last_epoch == scheds["maker"].last_epoch == 8
    # both cosine schedules end together, at the last batch
    assert all(o.param_groups[0]["lr"] < 1e-9 for o in opts.values())


def test_a_nan_buffer_does_not_stop_checkpoints(tmp_path: Path) -> None:
    """Regression: an autoencoder's anomaly threshold is NaN until chosen after training;
    checkpoints check the weights only, so they are still written."""
    model = nn.Linear(4, 1)
    model.register_buffer("threshold", torch.tensor(float("nan")))
    Trainer(TrainConfig(epochs=1, batch_size=16, progress="quiet", threads=1),
            loss_fn=lambda o, t: (o - t).pow(2).mean(), checkpoint_dir=tmp_path
            ).fit(model, (torch.randn(32, 4), torch.randn(32, 1)))
    assert (tmp_path / "last.ckpt").is_file()
