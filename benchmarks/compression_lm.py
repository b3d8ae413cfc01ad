"""Generation per backend on a trained char LM: tokens/s at batch 1 and 8, validation loss
(nats/char) of the forward pass and of the decoding step each backend runs, agreement of
greedy tokens with eager, and the int8 / bf16 children (guarded on nats per char).

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/compression_lm.py \\
        /work/exp13/charlm_b/model --work /tmp/bench/charlm --max-drop 0.02 [--compiled]

The model folder is copied into ``--work`` first. Every (artifact, backend) pair is timed in
the same interleaved rounds (compress/bench_lm.py: the prompt once, then one cached step per
token, greedy; warm-up, export and quantization excluded), so ratios are comparable on a
loaded machine. Prints a markdown table and writes ``--work/result.json``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from layerwise import artifact as art
from layerwise.compress import AccuracyGuardError, Options, compress
from layerwise.compress import bench_lm as bl
from layerwise.compress.guard import score, validation_data
from layerwise.files import dumps_json, write_text
from layerwise.inference.predictor import Predictor
from layerwise.training.hardware import cpu_kind, cpu_model


def children(parent: Path, work: Path, max_drop: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in ("int8", "bf16"):
        t0 = time.perf_counter()
        try:
            rec = compress(parent, method, work / method, Options(max_drop=max_drop),
                           overwrite=True)
            out[method] = {"record": rec, "seconds": round(time.perf_counter() - t0, 1)}
        except AccuracyGuardError as e:
            out[method] = {"refused": str(e)}
        print(f"{method}: {out[method]}", file=sys.stderr)
    return out


def pairs(parent: Path, work: Path, made: dict[str, Any], compiled: bool
          ) -> dict[str, Predictor]:
    names = ["eager", "bf16", "onnxruntime", "onnxruntime-int8"] + (["compiled"] * compiled)
    preds = {f"fp32 / {n}": Predictor.load(parent, backend=n) for n in names}
    if "record" in made.get("int8", {}):
        preds["int8 child / onnxruntime-int8"] = Predictor.load(work / "int8")
    if "record" in made.get("bf16", {}):
        preds["bf16 child / bf16"] = Predictor.load(work / "bf16")
    return preds


def measure(preds: dict[str, Predictor], args: argparse.Namespace) -> dict[str, Any]:
    rows = validation_data(next(iter(preds.values())))
    out: dict[str, Any] = {}
    for label, p in preds.items():
        out[label] = {"warmup_s": round(bl.warm(p, rows, (1, 8)), 1),
                      "forward_nats": round(score(p, rows, "nats_per_token"), 4)}
        print(f"warm {label}: {out[label]}", file=sys.stderr)
    ref = {"eager": preds["fp32 / eager"], **preds}
    rep = bl.report(ref, rows, (1, 8), args.rounds, args.tokens, 0, args.seconds)
    for label in preds:
        out[label].update(rep[label])
    out["_agreement_note"] = "greedy_agreement: share of 8 x 32 greedy tokens equal to eager"
    return out


def table(res: dict[str, Any], sizes: dict[str, int]) -> str:
    base = res["fp32 / eager"]["generation"]
    lines = ["| artifact / backend | weights | val nats/char (forward / step) | b1 tok/s "
             "(p99 ms/step) | b8 tok/s | × eager b1 | × eager b8 | greedy = eager |",
             "|---|---|---|---|---|---|---|---|"]
    for label, r in res.items():
        if label.startswith("_"):
            continue
        g = r["generation"]
        lines.append(
            f"| {label} | {sizes[label.split(' / ')[0]] / 1e6:.2f} MB | {r['forward_nats']:.4f}"
            f" / {r['step_nats_per_token']:.4f} | {g[1]['tokens_per_s']:.0f} "
            f"({g[1]['p99_ms']:.2f}) | {g[8]['tokens_per_s']:.0f} | "
            f"{g[1]['tokens_per_s'] / base[1]['tokens_per_s']:.2f} | "
            f"{g[8]['tokens_per_s'] / base[8]['tokens_per_s']:.2f} | "
            f"{r.get('greedy_agreement', float('nan')):.1%} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--max-drop", type=float, default=0.02, help="nats per char")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--compiled", action="store_true", help="also torch.compile the step")
    args = ap.parse_args()
    torch.set_num_threads(1)
    parent = args.work / "parent"
    if not parent.exists():
        shutil.copytree(args.model, parent)
    made = children(parent, args.work, args.max_drop)
    preds = pairs(parent, args.work, made, args.compiled)
    res = measure(preds, args)
    sizes = {"fp32": (parent / art.WEIGHTS).stat().st_size,
             "int8 child": (args.work / "int8" / art.WEIGHTS).stat().st_size
             if "record" in made.get("int8", {}) else 0,
             "bf16 child": (args.work / "bf16" / art.WEIGHTS).stat().st_size
             if "record" in made.get("bf16", {}) else 0}
    meta = art.read_header(parent)
    result = {"kind": cpu_kind(), "cpu": cpu_model(), "threads": torch.get_num_threads(),
              "parameters": meta.get("parameters"), "children": made, "backends": res,
              "sizes": sizes}
    write_text(args.work / "result.json", dumps_json(result, indent=2))
    print(f"{result['kind']} · {result['cpu']} · 1 thread · {result['parameters']} parameters")
    print(table(res, sizes))


if __name__ == "__main__":
    main()
