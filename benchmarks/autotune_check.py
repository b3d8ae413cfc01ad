"""Is autotune's pick the fastest? ``bench --autotune`` records a pick per batch size, then
an independent ``bench`` pass on the same machine times every backend again; for each batch
size the pick's time is compared with the best backend's in that second pass (by median
latency and by the paired per-round ratio to eager, compress/bench.py ``relative``).

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/autotune_check.py \\
        /work/models/sentiment_lstm/model --work /tmp/bench/autotune_sentiment

The model folder is copied into ``--work`` (the pick is recorded in the copy). Prints one
line per batch size and writes ``--work/autotune.json``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import torch

from layerwise.compress.bench import bench
from layerwise.files import dumps_json, write_text
from layerwise.inference.backends import BACKENDS


def compare(tuned: dict[str, Any], check: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Per batch size: the pick, the second pass's best, and how much slower the pick was."""
    out: dict[int, dict[str, Any]] = {}
    for b, picked in tuned["by_batch"].items():
        ok = {n: r["batches"][b] for n, r in check["backends"].items()
              if r.get("eligible") and b in r.get("batches", {})}
        best_med = min(ok, key=lambda n: ok[n]["median_ms"])
        # the paired ratio where bench measured it; a language model's generation is timed
        # by median ms per step only (compress/bench.py pick() falls back the same way)
        rel = "vs_eager" if all(ok[n].get("vs_eager") is not None for n in ok) else \
            "median_ms"
        best_rel = min(ok, key=lambda n: ok[n][rel])
        out[b] = {"pick": picked, "best_by_median": best_med, "best_by_ratio": best_rel,
                  "pick_median_ms": ok[picked]["median_ms"],
                  "best_median_ms": ok[best_med]["median_ms"],
                  "off_by_median": round(ok[picked]["median_ms"] / ok[best_med]["median_ms"]
                                         - 1, 4),
                  "off_by_ratio": round(ok[picked][rel] / ok[best_rel][rel] - 1, 4),
                  "clock": check["backends"][picked].get("ratio_clock")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seconds", type=float, default=0.2)
    ap.add_argument("--skip", default="compiled", help="backends not timed (comma list)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = args.work / "model"
    if not model.exists():
        shutil.copytree(args.model, model)
    names = tuple(n for n in BACKENDS if n not in args.skip.split(","))
    kw = {"names": names, "rounds": args.rounds, "seconds": args.seconds}
    tuned = bench(model, autotune=True, **kw)
    check = bench(model, seed=1, **kw)
    res = {"tuned": tuned, "check": check, "compare": compare(tuned, check)}
    write_text(args.work / "autotune.json", dumps_json(res, indent=2))
    print(f"{tuned['kind']} · {tuned['machine']} · {tuned['threads']} thread(s) · {names}")
    for b, c in res["compare"].items():
        print(f"b{b}: pick {c['pick']} {c['pick_median_ms']:.3f} ms; best {c['best_by_median']}"
              f" {c['best_median_ms']:.3f} ms (pick {c['off_by_median']:+.1%}); by paired "
              f"{c['clock']} ratio best {c['best_by_ratio']} (pick {c['off_by_ratio']:+.1%})")


if __name__ == "__main__":
    main()
