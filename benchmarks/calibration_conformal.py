"""Calibration and conformal figures of issue 12 on trained models (docs/benchmarks.md).

    .venv/bin/python benchmarks/calibration_conformal.py \\
        --model /work/models/fashion/model --model /work/models/diabetes/model

Each model folder's run is copied to a temporary folder first (the originals are never
changed); then ``layerwise calibrate COPY --conformal 0.9`` and ``layerwise evaluate COPY
--price-per-hour 0.10``. Printed per model: the temperature, test ECE/MCE before and
after, the conformal test coverage and mean set size or interval width, the bootstrap
intervals and the operational metrics.

A test split of a few hundred rows moves the empirical coverage by a few points on its
own, so ``--resplits N`` also pools the validation and test rows of the copy and draws N
random calibration/test divisions of the same sizes, refits the conformal quantile on each
and reports the mean coverage and the share of divisions inside 0.88–0.92 (the score
function, and so the model and its temperature, stays fixed).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def resplit_coverage(model: Path, coverage: float, draws: int, seed: int = 0
                     ) -> dict[str, float]:
    """Mean conformal coverage over random divisions of validation + test rows."""
    from layerwise.evaluation import calibration, conformal, splits
    from layerwise.inference.calibrated import temperature
    from layerwise.inference.predictor import Predictor

    pred = Predictor.load(model)
    ds = splits.rebuild(pred, model)
    enc = pred.schema.outputs[0]
    scores = []
    for split in ("validation", "test"):
        rows = splits.encoded(pred, ds, split, model)
        out, y = pred.forward(rows)[enc.name], rows.targets[enc.name]
        if enc.kind == "numeric":
            s = np.abs(np.asarray(enc.decode(y), float) - np.asarray(enc.decode(out), float))
        else:
            p = calibration.class_probs(out, temperature(pred.meta, enc.name)).numpy()
            s = 1 - p[np.arange(len(y)), y.long().numpy()]
        scores.append(s)
    n_cal, pool = len(scores[0]), np.concatenate(scores)
    rng = np.random.default_rng(seed)
    got = []
    for _ in range(draws):
        perm = rng.permutation(len(pool))
        q = conformal.quantile(pool[perm[:n_cal]], coverage)
        got.append(float((pool[perm[n_cal:]] <= q + 1e-12).mean()))
    arr = np.array(got)
    return {"draws": draws, "calibration_rows": n_cal, "test_rows": len(pool) - n_cal,
            "mean_coverage": float(arr.mean()), "std": float(arr.std()),
            "share_in_0.88_0.92": float(((arr >= 0.88) & (arr <= 0.92)).mean())}


def one(model: Path, coverage: float, price: float, resplits: int) -> dict[str, Any]:
    from layerwise.evaluation.calibrate import calibrate
    from layerwise.evaluation.detailed import evaluate_run

    work = Path(tempfile.mkdtemp(prefix="lw-cal-")) / model.parent.name
    shutil.copytree(model.parent, work, ignore=shutil.ignore_patterns("checkpoints"))
    copy = work / model.name
    rep = calibrate(copy, conformal_coverage=coverage)
    ev = evaluate_run(copy, price_per_hour=price)
    out = {"model": str(model), "copy": str(copy), "calibrate": rep, "evaluate": ev}
    if resplits:
        out["resplits"] = resplit_coverage(copy, coverage, resplits)
    return out


def summary(r: dict[str, Any]) -> str:
    name, rep = next(iter(r["calibrate"].items()))
    ev = r["evaluate"]
    lines = [f"## {r['model']} (copy: {r['copy']})"]
    if "temperature" in rep:
        t = rep["test"]
        lines.append(f"temperature {rep['temperature']:.4f}; test ECE {t['ece_before']:.4f} "
                     f"-> {t['ece_after']:.4f} (ratio {t['ece_after'] / t['ece_before']:.3f}), "
                     f"MCE {t['mce_before']:.4f} -> {t['mce_after']:.4f}, NLL "
                     f"{t['nll_before']:.4f} -> {t['nll_after']:.4f} ({t['rows']} rows)")
    c = rep["conformal"]
    size = (f"mean set size {c['test']['mean_set_size']:.3f}, empty "
            f"{c['test']['empty_sets']:.3f}" if "mean_set_size" in c["test"]
            else f"interval width {c['test']['mean_width']:.2f}")
    lines.append(f"conformal {c['coverage']} on {c['rows']} validation rows: test coverage "
                 f"{c['test']['coverage']:.4f} ({c['test']['rows']} rows), {size}")
    if "resplits" in r:
        s = r["resplits"]
        lines.append(f"  over {s['draws']} random re-divisions: mean coverage "
                     f"{s['mean_coverage']:.4f} ± {s['std']:.4f}, share in 0.88-0.92 "
                     f"{s['share_in_0.88_0.92']:.3f}")
    for k, b in ev["bootstrap"].items():
        lines.append(f"{k} {b['value']:.4f} [{b['low']:.4f}, {b['high']:.4f}] (bootstrap 95%)")
    ops = ev["operational"]
    lat, thr = ops["latency_batch_1"], ops["throughput_batch_64"]
    lines.append(f"latency p50 {lat['p50_ms']:.3f} ms, p95 {lat['p95_ms']:.3f}, p99 "
                 f"{lat['p99_ms']:.3f} (batch 1); {thr['rows_per_second']:.0f} rows/s "
                 f"(batch 64); {thr['cpu_seconds_per_1000']:.4f} CPU-s and "
                 f"{thr['wall_seconds_per_1000']:.4f} wall-s per 1,000; cost per 1,000 at "
                 f"{thr['price_per_hour']}/h: {thr['cost_per_1000']:.3g}; weights "
                 f"{ops['size']['weights_bytes']} bytes; machine {ops['machine']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, action="append", required=True)
    ap.add_argument("--coverage", type=float, default=0.9)
    ap.add_argument("--price-per-hour", type=float, default=0.10)
    ap.add_argument("--resplits", type=int, default=1000)
    ap.add_argument("--json", type=Path, help="write every result here too")
    args = ap.parse_args()
    results = [one(m, args.coverage, args.price_per_hour, args.resplits) for m in args.model]
    for r in results:
        print(summary(r), "\n")
    if args.json:
        from layerwise.files import dumps_json

        args.json.write_text(dumps_json(results, indent=2))


if __name__ == "__main__":
    main()
