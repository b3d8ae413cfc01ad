"""``train.ema``: the moving average of the weights, what validation scores, what the run
ends with, and an exact resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from layerwise import TrainConfig, Trainer
from layerwise.api import train
from layerwise.data.batching import InMemoryBatches, TensorData
from layerwise.training.averaging import WeightAverage
from layerwise.training.callbacks import Callback
from tests.model_helpers import Crash
from tests.test_training_exact import assert_identical, weights

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_average_follows_the_formula_and_copies_integer_buffers() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = WeightAverage(model, decay=0.9, warmup=False)
    w0 = model[0].weight.detach().clone()
    expected = w0.clone()
    for step in range(3):
        with torch.no_grad():
            model[0].weight.add_(1.0 + step)
            model[1].num_batches_tracked += 1
        ema.update()
        expected = 0.9 * expected + 0.1 * model[0].weight.detach()
    shadow = dict(zip(ema.keys, ema.shadow))
    torch.testing.assert_close(shadow["0.weight"], expected)
    assert shadow["1.num_batches_tracked"].item() == 3
    live = model[0].weight.detach().clone()
    with ema.swapped_in():
        torch.testing.assert_close(model[0].weight.detach(), expected)
    assert torch.equal(model[0].weight.detach(), live)  # the live weights come back


def test_warmup_lets_the_first_weights_fade_fast() -> None:
    ema = WeightAverage(nn.Linear(2, 2), decay=0.999)
    assert ema.rate() == pytest.approx(1 - 2 / 11)     # update 1: d = (1 + 1) / (10 + 1)
    ema.updates = 10_000
    assert ema.rate() == pytest.approx(0.001)           # the configured decay takes over
    assert WeightAverage(nn.Linear(2, 2), decay=0.999, warmup=False).rate() == \
        pytest.approx(0.001)


class LiveWeights(Callback):
    """The live parameters after every optimizer step (validation swaps its own in)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_fit_start(self, trainer: Any, model: Any) -> None:
        self.start = {k: v.detach().clone() for k, v in model.named_parameters()}
        self.model = model

    def on_step_end(self, trainer: Any, step: int, loss: Any) -> None:
        self.steps.append({k: v.detach().clone() for k, v in self.model.named_parameters()})


def test_a_fit_is_scored_on_and_ends_with_the_average() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    seen = LiveWeights()
    trainer = Trainer(TrainConfig(epochs=2, batch_size=16, progress="quiet", precision="fp32",
                                  checkpoint_every=0, optimizer={"lr": 0.05},
                                  ema={"decay": 0.8, "warmup": False}),
                      loss_fn=F.cross_entropy, callbacks=[seen])
    result = trainer.fit(model, (x, y), (x, y))
    expected = dict(seen.start)
    for live in seen.steps:
        expected = {k: 0.8 * expected[k] + 0.2 * live[k] for k in expected}
    for k, v in model.named_parameters():
        torch.testing.assert_close(v.detach(), expected[k], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(seen.steps[-1]["0.weight"], expected["0.weight"])
    # each epoch's validation scored the average, not the live weights
    again = trainer.evaluate(model, InMemoryBatches(TensorData(x, y), 64, shuffle=False))
    assert result.history[-1]["val_loss"] == pytest.approx(again["val_loss"], rel=1e-6)


def test_a_crashed_run_with_an_average_resumes_exactly(tiny_cnn: dict[str, Any],
                                                       tmp_path: Path) -> None:
    tiny_cnn["train"].update(epochs=3, checkpoint_every=2, precision="fp32",
                             ema={"decay": 0.9},
                             early_stopping={"monitor": "val_accuracy", "patience": 5})
    ref = train(tiny_cnn, output=tmp_path / "ref")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_cnn, output=tmp_path / "run", callbacks=[Crash(7)])
    resumed = train(tiny_cnn, output=tmp_path / "run", resume=True)
    assert_identical(weights(ref.model_dir), weights(resumed.model_dir))
    strip = [{k: v for k, v in h.items() if k != "time"} for h in ref.history]
    assert [{k: v for k, v in h.items() if k != "time"} for h in resumed.history] == strip


def test_the_decay_is_checked() -> None:
    with pytest.raises(ValidationError, match="decay"):
        TrainConfig(ema={"decay": 1.0})
