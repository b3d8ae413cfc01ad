"""Latency of a parent model and its compressed children, eager, interleaved.

    OMP_NUM_THREADS=1 python benchmarks/child_speed.py PARENT CHILD [CHILD ...]
        [--batches 1,64] [--rounds 7] [--seconds 0.3]

Every model answers the parent's validation rows through ``Predictor`` on the eager
backend, one torch thread, in the same rounds (``compress.bench.time_rounds``: each round
times every (model, batch) pair for ``--seconds``, in a fresh seeded order). Prints the
median call time per model and batch and each one's speed-up over the parent, the median
over rounds of the per-round ratio (load that comes and goes falls on both sides of it).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from layerwise.compress.bench import relative, time_rounds
from layerwise.compress.guard import validation_data
from layerwise.inference.predictor import Predictor
from layerwise.training.hardware import machine


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("parent")
    p.add_argument("children", nargs="+")
    p.add_argument("--batches", default="1,64")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seconds", type=float, default=0.3)
    args = p.parse_args()
    torch.set_num_threads(1)
    print("machine:", machine())
    preds = {"parent": Predictor.load(args.parent, backend="eager")}
    preds.update({c: Predictor.load(c, backend="eager") for c in args.children})
    batches = tuple(int(b) for b in args.batches.split(","))
    timed, _ = time_rounds(preds, validation_data(preds["parent"]), batches, args.rounds,
                           args.seconds, seed=0)
    ratios = relative(timed, "parent")
    print("| model | " + " | ".join(f"b{b} ms | × parent b{b}" for b in batches) + " |")
    print("|---|" + "---:|---:|" * len(batches))
    for name, per in timed.items():
        cells = [f"{float(np.median([np.median(r) for r in per[b]])) * 1e3:.3f} | "
                 f"{1 / ratios[name][b]:.2f}" for b in batches]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
