"""Time to the same test accuracy: layerwise's defaults against a plain fp32 loop.

    python benchmarks/time_to_accuracy.py                      # examples/fashion_cnn.yaml
    python benchmarks/time_to_accuracy.py --set train.epochs=4  # a shorter run

Both sides train the *same* network (built by layerwise from the example's config, same
seed, so the same initial weights) on the same encoded Fashion-MNIST tensors, with the same
augmentation, loss (label smoothing), optimizer settings, one-cycle schedule and epochs:

    layerwise   ``layerwise.train(config)``: its own choices (precision by a timing probe,
                channels_last, index-slice batches, threads)
    plain       the loop users write: ``DataLoader(TensorDataset(x, y), shuffle=True)``,
                fp32, contiguous tensors, ``torch.optim.SGD`` + ``OneCycleLR``

Test accuracy on the official 10k test images is measured after every epoch on both sides
with the clock stopped. The table gives the training seconds per epoch, and the time
layerwise needed to reach the plain loop's final accuracy minus 0.3 points.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any

import torch
import torch.nn.functional as F

import layerwise
from layerwise.api import build_for, family_defaults
from layerwise.config import parse
from layerwise.data.augment import Augmenter
from layerwise.data.build import build
from layerwise.training import Callback
from layerwise.training.hardware import machine

CONFIG = os.path.join(os.path.dirname(__file__), "..", "examples", "fashion_cnn.yaml")


def accuracy(model: torch.nn.Module, test: Any, label: str) -> float:
    was = model.training
    model.eval()
    right = 0
    with torch.inference_mode():
        for s in range(0, len(test), 1000):
            inputs = {k: v[s:s + 1000] for k, v in test.inputs.items()}
            right += int((model(inputs)[label].argmax(1) == test.targets[label][s:s + 1000])
                         .sum())
    model.train(was)
    return right / len(test)


class EpochTest(Callback):
    """Test accuracy after each epoch (outside the Trainer's clock)."""

    def __init__(self, test: Any, label: str) -> None:
        self.test, self.label, self.rows = test, label, []  # type: ignore[var-annotated]

    def on_fit_start(self, trainer: Any, model: torch.nn.Module) -> None:
        self.model = model

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        self.rows.append((trainer.state.train_time, accuracy(self.model, self.test,
                                                             self.label)))


def run_layerwise(cfg: Any, test: Any, label: str) -> tuple[list[tuple[float, float]], dict]:
    probe = EpochTest(test, label)
    with tempfile.TemporaryDirectory() as out:
        run = layerwise.train(cfg, output=out, callbacks=[probe], progress="quiet")
    return probe.rows, run.metrics["choices"]


def run_plain(cfg: Any, ds: Any, label: str) -> list[tuple[float, float]]:
    torch.manual_seed(cfg.seed)
    model = build_for(cfg, ds)
    x = ds.train.inputs["image"]
    y = ds.train.targets[label]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                         batch_size=cfg.train.batch_size, shuffle=True)
    o = cfg.train.optimizer
    opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum,
                          nesterov=o.nesterov, weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o.lr,
                                                total_steps=len(loader) * cfg.train.epochs)
    augment = Augmenter({e.name: e.cfg.augment for e in ds.schema.images}, cfg.seed)
    smoothing = cfg.outputs[0].label_smoothing
    rows, clock = [], 0.0
    for _ in range(cfg.train.epochs):
        model.train()
        t0 = time.perf_counter()
        for xb, yb in loader:
            out = model(augment({"image": xb}))[label]
            loss = F.cross_entropy(out, yb, label_smoothing=smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        clock += time.perf_counter() - t0
        rows.append((clock, accuracy(model, ds.test, label)))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=CONFIG)
    p.add_argument("--set", action="append", default=[], help="key=value overrides")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    cfg = parse(args.config, args.set)
    family_defaults(cfg)
    ds = build(cfg)
    label = cfg.outputs[0].name
    print(f"machine: {json.dumps(machine())}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    lw_rows, choices = run_layerwise(cfg, ds.test, label)
    plain_rows = run_plain(cfg, ds, label)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    target = plain_rows[-1][1] - 0.003
    reach = next((t for t, a in lw_rows if a >= target), None)
    why = choices["reasons"]["precision"]
    print(f"\nlayerwise chose: precision {choices['precision']} ({why}), "
          f"{choices['memory_format']}, {choices['threads']} thread(s)\n")
    print("| epoch | layerwise s | layerwise test acc | plain fp32 s | plain test acc |")
    print("|---:|---:|---:|---:|---:|")
    for i, ((t1, a1), (t2, a2)) in enumerate(zip(lw_rows, plain_rows)):
        print(f"| {i + 1} | {t1:.1f} | {a1:.4f} | {t2:.1f} | {a2:.4f} |")
    total = plain_rows[-1][0]
    mine = lw_rows[-1][0]
    print(f"\nplain loop: {plain_rows[-1][1]:.4f} in {total:.1f} s; layerwise: "
          f"{lw_rows[-1][1]:.4f} in {mine:.1f} s (whole run {total / mine:.2f}x)")
    if reach is None:
        print(f"layerwise never reached {target:.4f}")
    else:
        print(f"layerwise reached {target:.4f} (plain's final - 0.3 pt) after {reach:.1f} s: "
              f"{total / reach:.2f}x faster to the same accuracy")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": machine(), "choices": choices, "layerwise": lw_rows,
                       "plain": plain_rows, "reach": reach}, f, indent=1)


if __name__ == "__main__":
    main()
