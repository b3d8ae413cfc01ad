"""The imperative rung: Trainer on any nn.Module, its guard, hooks, schedules, choices."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerwise import TrainConfig, Trainer
from layerwise.config import EarlyStoppingConfig, OptimizerConfig, ScheduleConfig
from layerwise.data.batching import InMemoryBatches, LoaderBatches, TensorData
from layerwise.errors import ConfigError, NonFiniteError
from layerwise.training import Callback, hardware
from layerwise.training.optim import lr_multiplier


def data(n: int = 128, d: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def cfg(**kw: Any) -> TrainConfig:
    # these tests check fp32 arithmetic (accumulation equals a larger batch, early stopping
    # restores exact weights, ...): precision is pinned, never left to the machine
    base: dict[str, Any] = {"epochs": 2, "batch_size": 16, "progress": "quiet",
                            "checkpoint_every": 0, "precision": "fp32"}
    base.update(kw)
    return TrainConfig(**base)


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_trains_any_module_on_tensor_tuples() -> None:
    x, y = data(256)
    model = net()
    res = Trainer(cfg(epochs=15, optimizer=OptimizerConfig(lr=0.02)),
                  loss_fn=F.cross_entropy,
                  metrics_fn=lambda o, t: {"acc": (o.argmax(1) == t).float().mean().item()}
                  ).fit(model, (x, y), (x, y))
    assert res.epochs == 15
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert res.history[-1]["val_acc"] > 0.9
    assert res.choices["batching"] == "memory"
    assert any(k.startswith("grad_norm/") for k in res.history[-1])


def test_missing_loss_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="loss_fn"):
        Trainer(cfg()).fit(net(), data())


class NaNAt(nn.Module):
    """Produces a NaN output on chosen forward calls."""

    def __init__(self, bad_calls: set[int]) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.bad, self.calls = bad_calls, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.lin(x)
        return out * float("nan") if self.calls in self.bad else out


def test_non_finite_steps_are_skipped_and_counted() -> None:
    model = NaNAt({2, 5})
    res = Trainer(cfg(epochs=1), loss_fn=F.cross_entropy).fit(model, data(128))
    assert res.state.skipped == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert res.history[-1]["skipped_steps"] == 2


def test_too_many_non_finite_steps_in_a_row_abort() -> None:
    model = NaNAt(set(range(3, 100)))
    with pytest.raises(NonFiniteError, match="in a row"):
        Trainer(cfg(epochs=3, max_nonfinite_steps=4), loss_fn=F.cross_entropy).fit(
            model, data(128))


def test_non_finite_model_is_never_checkpointed(tmp_path: Path) -> None:
    model = net()
    trainer = Trainer(cfg(), loss_fn=F.cross_entropy, checkpoint_dir=tmp_path)
    trainer.fit(model, data())
    (tmp_path / "last.ckpt").unlink()
    with torch.no_grad():
        model[0].weight[0, 0] = float("inf")
    with pytest.warns(UserWarning, match="non-finite"):
        trainer.save_checkpoint()
    assert not (tmp_path / "last.ckpt").exists()


def test_gradient_accumulation_matches_a_larger_batch() -> None:
    x, y = data(128)
    a, b = net(), net()
    opt = OptimizerConfig(name="sgd", lr=0.1, momentum=0.0)
    Trainer(cfg(epochs=1, batch_size=32, optimizer=opt), loss_fn=F.cross_entropy).fit(a, (x, y))
    Trainer(cfg(epochs=1, batch_size=16, accumulate=2, optimizer=opt),
            loss_fn=F.cross_entropy).fit(b, (x, y))
    for pa, pb in zip(a.parameters(), b.parameters()):
        # the same rows form each step, so only float summation order differs
        assert torch.allclose(pa, pb, atol=1e-5)


def test_gradient_clipping_bounds_the_update() -> None:
    x, y = data(64)
    model = net()
    before = [p.detach().clone() for p in model.parameters()]
    opt = OptimizerConfig(name="sgd", lr=1.0, momentum=0.0)
    Trainer(cfg(epochs=1, batch_size=64, grad_clip=0.01, optimizer=opt),
            loss_fn=F.cross_entropy).fit(model, (x, y))
    delta = torch.cat([(p - q).flatten() for p, q in zip(model.parameters(), before)])
    assert delta.norm() <= 0.01 + 1e-5


def test_memory_and_loader_batching_give_identical_weights() -> None:
    x, y = data(100)
    a, b = net(), net()
    Trainer(cfg(batching="memory"), loss_fn=F.cross_entropy).fit(a, (x, y))
    Trainer(cfg(batching="loader"), loss_fn=F.cross_entropy).fit(b, (x, y))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_loader_batches_follow_the_in_memory_order() -> None:
    td = TensorData(torch.arange(10).float().view(10, 1), torch.arange(10))
    mem = [t.tolist() for _, t in InMemoryBatches(td, 3, shuffle=True, seed=5).epoch(2)]
    load = [t.tolist() for _, t in LoaderBatches(td, 3, shuffle=True, seed=5).epoch(2)]
    assert mem == load
    assert sorted(sum(mem, [])) == list(range(10))
    skipped = [t.tolist() for _, t in InMemoryBatches(td, 3, shuffle=True, seed=5).epoch(2, 2)]
    assert skipped == mem[2:]


def test_torch_dataset_goes_through_a_dataloader() -> None:
    x, y = data(64)
    ds = torch.utils.data.TensorDataset(x, y)
    res = Trainer(cfg(epochs=1), loss_fn=F.cross_entropy).fit(net(), ds)
    assert res.state.samples == 64


def test_early_stopping_stops_and_restores_the_best_weights() -> None:
    x, y = data(64)
    calls: list[float] = []

    class Spy(Callback):
        def on_validation_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
            calls.append(metrics["val_loss"])

    model = net()
    # a huge lr makes validation loss go up after the first epochs
    res = Trainer(cfg(epochs=30, optimizer=OptimizerConfig(name="sgd", lr=5.0),
                      early_stopping=EarlyStoppingConfig(monitor="val_loss", patience=2)),
                  loss_fn=F.cross_entropy, callbacks=[Spy()]).fit(model, (x, y), (x, y))
    assert res.state.stopped_early and res.epochs < 30
    best = min(calls)
    assert res.state.best == pytest.approx(best)
    final = F.cross_entropy(model(x), y).item()
    assert final == pytest.approx(best, rel=1e-4)


def test_unknown_monitor_lists_the_available_metrics() -> None:
    x, y = data(32)
    with pytest.raises(ConfigError, match="val_loss"):
        Trainer(cfg(early_stopping=EarlyStoppingConfig(monitor="val_acc")),
                loss_fn=F.cross_entropy).fit(net(), (x, y), (x, y))


def test_callbacks_run_in_documented_order() -> None:
    seen: list[str] = []

    class Record(Callback):
        def on_fit_start(self, trainer: Any, model: Any) -> None:
            seen.append("fit_start")

        def on_epoch_start(self, trainer: Any, epoch: int) -> None:
            seen.append(f"epoch_start{epoch}")

        def on_step_end(self, trainer: Any, step: int, loss: Any) -> None:
            seen.append("step")

        def on_validation_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
            seen.append("val")

        def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
            seen.append(f"epoch_end{epoch}")

        def on_fit_end(self, trainer: Any, result: Any) -> None:
            seen.append("fit_end")

    x, y = data(32)
    Trainer(cfg(epochs=2, batch_size=16), loss_fn=F.cross_entropy,
            callbacks=[Record()]).fit(net(), (x, y), (x, y))
    assert seen == ["fit_start", "epoch_start0", "step", "step", "val", "epoch_end0",
                    "epoch_start1", "step", "step", "val", "epoch_end1", "fit_end"]


def test_should_stop_from_a_callback_ends_training() -> None:
    class StopAfterOne(Callback):
        def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
            trainer.should_stop = True

    res = Trainer(cfg(epochs=5), loss_fn=F.cross_entropy,
                  callbacks=[StopAfterOne()]).fit(net(), data(32))
    assert res.epochs == 1


@pytest.mark.parametrize("name", ["constant", "step", "cosine", "onecycle"])
def test_schedules(name: str) -> None:
    sc = ScheduleConfig(name=name, warmup_steps=0 if name == "onecycle" else 5, step_size=2,
                        gamma=0.5, min_lr=0.0)
    f = lr_multiplier(sc, total_steps=100, steps_per_epoch=10, base_lr=1.0)
    vals = [f(s) for s in range(100)]
    assert all(v >= 0 and math.isfinite(v) for v in vals)
    if name != "onecycle":
        assert vals[0] == pytest.approx(0.2) and vals[4] == pytest.approx(1.0, rel=0.3)
    if name == "constant":
        assert vals[50] == 1.0
    if name == "step":
        assert vals[19] == pytest.approx(1.0) and vals[20] == pytest.approx(0.5)
    if name == "cosine":
        assert vals[-1] < 0.01
    if name == "onecycle":
        assert vals[0] == pytest.approx(1 / 25) and max(vals) == pytest.approx(1.0, rel=1e-3)
        assert vals[-1] < 1e-3


@pytest.mark.parametrize("opt", ["sgd", "adam", "adamw"])
def test_optimizers_reduce_the_loss(opt: str) -> None:
    x, y = data(128)
    res = Trainer(cfg(epochs=8, optimizer=OptimizerConfig(name=opt, lr=0.05, nesterov=True,
                                                         weight_decay=1e-4)),
                  loss_fn=F.cross_entropy).fit(net(), (x, y))
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]


def test_precision_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    model = nn.Conv2d(1, 2, 3)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2"}))
    c = hardware.choose(cfg(device="cpu", precision="auto"), model, 10)
    assert c.precision == "fp32" and "no AMX" in c.reasons["precision"]
    assert c.memory_format == "channels_last"
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    c = hardware.choose(cfg(device="cpu", precision="auto"), model, 10)
    assert c.precision == "bf16" and "AMX" in c.reasons["precision"]
    c = hardware.choose(cfg(device="cpu", precision="fp32", memory_format="contiguous",
                            batching="loader"), model, 10)
    assert (c.precision, c.memory_format, c.batching) == ("fp32", "contiguous", "loader")
    assert hardware.choose(cfg(device="cpu"), nn.Linear(2, 2), 10).memory_format == "contiguous"


def test_forced_bf16_trains_and_is_recorded() -> None:
    x, y = data(64)
    res = Trainer(cfg(epochs=1, precision="bf16"), loss_fn=F.cross_entropy).fit(net(), (x, y))
    assert res.choices["precision"] == "bf16"
    assert math.isfinite(res.history[-1]["train_loss"])
