"""One short training of each family on whatever device ``device: auto`` finds: samples/s.

    python benchmarks/gpu_families.py --output gpu.json          # on a machine with CUDA
    python benchmarks/gpu_families.py --quick --only digits_cnn  # a CPU smoke run

Prepared for the few minutes a GPU machine is lent: every run is a shortened example
(``--set`` overrides below), the whole script takes a few minutes, and each run records
the device, precision (bf16, or fp16 with a gradient scaler), compile choice, samples/s
and wall time, so the figures can go into docs/benchmarks.md with the machine described.
A run that fails is recorded with its error and the others go on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import layerwise
from layerwise.training.hardware import machine

ROOT = Path(__file__).resolve().parent.parent / "examples"
# example → overrides that keep it to well under a minute on a GPU
RUNS: dict[str, list[str]] = {
    "digits_cnn": ["train.epochs=5"],
    "fashion_cnn": ["train.epochs=2"],
    "wine_mlp": ["train.epochs=20"],
    "sentiment_lstm": ["train.epochs=1"],
    "sentiment_transformer": ["train.epochs=1"],
    "charlm_kjv": ["train.epochs=1", "data.limit=200000"],
    "dates_seq2seq": ["train.epochs=1"],
    "co2_lstm": ["train.epochs=5"],
    "fashion_anomaly_ae": ["train.epochs=1"],
    "mnist_vae": ["train.epochs=1"],
    "fashion_gan": ["train.epochs=1", "data.limit=6000"],
    "fashion_diffusion": ["train.epochs=1", "data.limit=6000"],
    "cartpole_ppo": ["train.total_steps=20000"],
}
QUICK = {"train.epochs": "1", "data.limit": "600", "train.total_steps": "2048"}


def one(name: str, sets: list[str], quick: bool) -> dict[str, Any]:
    if quick:
        sets = [s for s in sets if s.split("=")[0] not in QUICK] + \
            [f"{k}={v}" for k, v in QUICK.items()
             if k != "train.total_steps" or name.endswith(("ppo", "dqn"))]
        if name.endswith(("ppo", "dqn")):
            sets = [s for s in sets if not s.startswith(("train.epochs", "data.limit"))]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = layerwise.train(ROOT / f"{name}.yaml", output=tmp,
                              overrides=[*sets, "train.progress=quiet"])
        wall = time.perf_counter() - t0
    m = run.metrics
    t = m.get("training", {})
    return {"example": name, "overrides": sets, "wall_s": round(wall, 1),
            "train_s": t.get("seconds"),
            "samples_per_s": t.get("samples_per_second", t.get("steps_per_second")),
            "choices": m.get("choices")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", action="append", choices=list(RUNS))
    p.add_argument("--quick", action="store_true", help="tiny runs: a smoke test")
    p.add_argument("--output", default=os.environ.get("OUT", ".") + "/gpu_families.json")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results: list[dict[str, Any]] = []
    for name in args.only or list(RUNS):
        try:
            results.append(one(name, RUNS[name], args.quick))
        except Exception as e:  # record it and go on: the device time is short
            results.append({"example": name, "error": f"{type(e).__name__}: {e}",
                            "trace": traceback.format_exc(limit=3)})
        r = results[-1]
        print(json.dumps({k: r.get(k) for k in ("example", "wall_s", "samples_per_s",
                                                 "error")}), flush=True)
        Path(args.output).write_text(json.dumps({"machine": machine(), "runs": results},
                                                indent=1))
    sys.exit(0)


if __name__ == "__main__":
    main()
