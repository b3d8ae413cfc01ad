"""The warning for a multi-threaded run that slows down several-fold mid-run (busy cores)."""

from __future__ import annotations

import time
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import layerwise
from layerwise.training.callbacks import CoresBusyWarning


class SlowsDown(nn.Module):
    """A linear classifier whose steps take 30 ms longer from epoch ``from_epoch`` on, as
    when other processes take the cores mid-run."""

    def __init__(self, from_epoch: int) -> None:
        super().__init__()
        self.linear, self.from_epoch, self.delay = nn.Linear(4, 3), from_epoch, 0.0

    def train_epoch_start(self, epoch: int) -> None:
        self.delay = 0.03 if epoch >= self.from_epoch else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.delay:
            time.sleep(self.delay)
        return self.linear(x)


@pytest.fixture
def threads() -> object:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _fit(threads: int, from_epoch: int) -> list[warnings.WarningMessage]:
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    cfg = layerwise.TrainConfig(epochs=3, batch_size=16, progress="quiet", checkpoint_every=0,
                                threads=threads)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        layerwise.Trainer(cfg, loss_fn=F.cross_entropy).fit(SlowsDown(from_epoch), (x, y))
    return [w for w in seen if issubclass(w.category, CoresBusyWarning)]


@pytest.mark.usefixtures("threads")
def test_a_two_thread_run_that_slows_down_says_to_use_one_thread() -> None:
    busy = _fit(threads=2, from_epoch=2)
    assert len(busy) == 1  # once, not every slow epoch
    message = str(busy[0].message)
    assert "epoch 3" in message and "train.threads: 1" in message and "2 threads" in message


@pytest.mark.usefixtures("threads")
def test_no_warning_on_one_thread_or_at_a_steady_pace() -> None:
    assert _fit(threads=1, from_epoch=2) == []   # one thread does not collapse
    assert _fit(threads=2, from_epoch=0) == []   # slow from the start: a steady pace
