"""Per-step time of layerwise's Trainer against the hand loops, steady on a busy machine.

    python benchmarks/step_overhead.py                  # MLP and CNN, about 3 minutes
    python benchmarks/step_overhead.py --only mlp --threads 1

Whole-run throughput (``training.py``) swings several-fold when other jobs share the cores:
one descheduled stretch lands in one run's total. Here every training step is timed on
its own (the Trainer through an ``on_step_end`` callback, the hand loops at the same point
of their step), runs are interleaved, and the table gives the median and 25th percentile
of the step times, which a few slow steps barely move. The median ratio (a)/(c) is the
Trainer's per-step overhead; what ``fit`` spends outside its loop (choices, the FLOP
count that picks threads, optimizer set-up, epoch ends) is reported apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
import training as tb  # benchmarks/training.py: the same networks, data and loops

import layerwise
from layerwise.config import OptimizerConfig
from layerwise.training.callbacks import Callback

SIZES = {"mlp": (tb.Task("mlp", 4096, 128, 1), 15), "cnn": (tb.Task("cnn", 1024, 128, 1), 8)}


class Stamps(Callback):
    """Records the clock at the end of every optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, trainer: object, step: int, loss: torch.Tensor) -> None:
        self.times.append(time.perf_counter())


def layerwise_steps(task: tb.Task, x: torch.Tensor, y: torch.Tensor
                    ) -> tuple[list[float], float]:
    """Step end times, and the seconds ``fit`` spent outside its training loop."""
    stamps = Stamps()
    cfg = layerwise.TrainConfig(epochs=task.epochs, batch_size=task.batch, progress="quiet",
                                checkpoint_every=0, seed=tb.SEED, threads=tb.THREADS,
                                optimizer=OptimizerConfig(name="adamw", lr=tb.LR))
    trainer = layerwise.Trainer(cfg, loss_fn=F.cross_entropy, callbacks=[stamps])
    t0 = time.perf_counter()
    result = trainer.fit(tb.build_torch(task.name), (x, y))
    outside = time.perf_counter() - t0 - result.state.train_time
    return stamps.times, outside


def hand_steps(kind: str, task: tb.Task, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    model = tb.build_torch(task.name)
    stamps: list[float] = []
    if kind == "plain":
        tb.plain_loop(task, model, x, y, stamps)
    else:
        cl = tb.CHOICES[task.name]["memory_format"] == "channels_last"
        if cl:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        tb.tuned_loop(task, model, x, y, cl, stamps, tb.CHOICES[task.name]["precision"])
    return stamps


def measure(task: tb.Task, reps: int) -> list[str]:
    x, y = tb.load_images(task.n)
    tb.CHOICES[task.name] = tb.layerwise_choices(task, x, y)
    threads = tb.THREADS or tb.CHOICES[task.name]["threads"]
    steps: dict[str, list[float]] = {"layerwise": [], "tuned": [], "plain": []}
    outside: list[float] = []
    names = list(steps)
    for rep in range(reps + 1):                        # rep 0 is an untimed warm-up
        for name in names[rep % 3:] + names[: rep % 3]:
            torch.set_num_threads(threads)
            if name == "layerwise":
                times, out = layerwise_steps(task, x, y)
                outside.append(out)
            else:
                times = hand_steps(name, task, x, y)
            if rep:
                steps[name] += np.diff(times).tolist()  # each step, batch fetch included
    med = {n: float(np.median(v)) for n, v in steps.items()}
    label = {"layerwise": tb.LABELS["layerwise"], "tuned": tb.LABELS["tuned"],
             "plain": tb.LABELS["plain"]}
    rows = [f"### {task.name.upper()}: batch {task.batch}, {threads} torch thread(s), "
            f"{tb.CHOICES[task.name]['precision']}, "
            f"{reps} interleaved runs of {task.n // task.batch} steps", "",
            "| loop | steps timed | median ms/step | p25 ms/step | median vs (c) |",
            "|---|---:|---:|---:|---:|"]
    for n in names:
        rows.append(f"| {label[n]} | {len(steps[n])} | {med[n] * 1e3:.2f} | "
                    f"{np.percentile(steps[n], 25) * 1e3:.2f} | {med[n] / med['tuned']:.3f} |")
    extra = (med["layerwise"] - med["tuned"]) * 1e6
    rows += ["", f"- Trainer per-step overhead: {extra:+.0f} us per step "
             f"({(med['layerwise'] / med['tuned'] - 1) * 100:+.1f}% of (c)'s step)",
             f"- `fit` outside its loop: {statistics.median(outside) * 1e3:.0f} ms per call "
             "(median)", ""]
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=list(SIZES))
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: what layerwise picks)")
    p.add_argument("--reps", type=int, default=None, help="interleaved runs per loop")
    args = p.parse_args()
    tb.THREADS = args.threads
    print(f"machine: {tb.machine()}")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    for name in [args.only] if args.only else list(SIZES):
        task, reps = SIZES[name]
        print("\n".join(measure(task, args.reps or reps)), flush=True)
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
