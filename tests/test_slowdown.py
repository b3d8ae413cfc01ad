"""The warning for a multi-threaded run that slows down several-fold mid-run (busy cores).

The rule is checked on given epoch times (deterministic: a busy CI machine cannot move
them); one real fit shows the Trainer runs it by default, with a slowdown far larger than
any a loaded machine adds to a tiny model's steps (measured: 1 ms steps became 25-50 ms
on 2 threads beside two busy processes, so a 6x sleep was not a safe signal)."""

from __future__ import annotations

import time
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import layerwise
from layerwise.training.callbacks import CoresBusyWarning, SlowdownWatch


def _watch(per_step: list[float], threads: int) -> list[warnings.WarningMessage]:
    """Feed SlowdownWatch epochs of 10 steps taking ``per_step`` seconds each."""
    watch, trainer = SlowdownWatch(), SimpleNamespace(choices=SimpleNamespace(threads=threads))
    now = 0.0
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for epoch, per in enumerate(per_step):
            now += 10 * per
            watch.on_epoch_end(trainer, epoch, {"time": now, "step": 10 * (epoch + 1)})
    return [w for w in seen if issubclass(w.category, CoresBusyWarning)]


def test_a_several_fold_slowdown_on_two_threads_warns_once_with_what_to_do() -> None:
    busy = _watch([0.010, 0.012, 0.035, 0.040], threads=2)
    assert len(busy) == 1  # at the first slow epoch, not at every one after it
    message = str(busy[0].message)
    assert "epoch 3 took 35.0 ms per step, 3.5x the fastest epoch's 10.0 ms" in message
    assert "train.threads: 1" in message and "2 threads" in message


def test_no_warning_on_one_thread_below_the_factor_or_at_a_steady_pace() -> None:
    assert _watch([0.010, 0.012, 0.035], threads=1) == []   # one thread does not collapse
    assert _watch([0.010, 0.029, 0.025], threads=2) == []   # 2.9x: under the factor
    assert _watch([0.050, 0.055, 0.048], threads=2) == []   # slow from the start: steady
    assert len(_watch([0.030, 0.010, 0.031], threads=2)) == 1  # the fastest so far counts


class SlowsDown(nn.Module):
    """A linear classifier whose steps sleep 0.4 s from epoch ``from_epoch`` on."""

    def __init__(self, from_epoch: int) -> None:
        super().__init__()
        self.linear, self.from_epoch, self.delay = nn.Linear(4, 3), from_epoch, 0.0

    def train_epoch_start(self, epoch: int) -> None:
        self.delay = 0.4 if epoch >= self.from_epoch else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.delay:
            time.sleep(self.delay)
        return self.linear(x)


@pytest.fixture
def threads() -> object:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("threads")
def test_the_trainer_watches_a_two_thread_run_by_default() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(48, 4), torch.randint(0, 3, (48,))
    cfg = layerwise.TrainConfig(epochs=3, batch_size=16, progress="quiet", checkpoint_every=0,
                                threads=2)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        layerwise.Trainer(cfg, loss_fn=F.cross_entropy).fit(SlowsDown(2), (x, y))
    busy = [w for w in seen if issubclass(w.category, CoresBusyWarning)]
    assert len(busy) == 1 and "epoch 3" in str(busy[0].message)
