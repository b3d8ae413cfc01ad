"""Judge saved generative models on one set of features: Fréchet distance and class accuracy.

    .venv/bin/python benchmarks/generative_quality.py runs/fashion_vae runs/fashion_gan \
        runs/fashion_diffusion [--n 1000] [--seed 0]

Every model of one data set is judged by the same cached classifier (see
layerwise/evaluation/judge.py) against the same real test rows, so the distances compare.
Prints a Markdown table and writes quality.json into each run folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import layerwise as lw
from layerwise.evaluation.judge import sample_quality


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (each with model/)")
    ap.add_argument("--n", type=int, default=1000, help="samples per model")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = []
    for run in args.runs:
        p = lw.load(run / "model")
        t0 = time.perf_counter()
        q = sample_quality(p.model, p.config, p.schema, n=args.n, seed=args.seed)
        q["seconds"] = round(time.perf_counter() - t0, 1)
        (run / "quality.json").write_text(json.dumps(q, indent=2))
        rows.append((run.name, p.config.model.family, q))
    print("| run | family | Fréchet distance | floor (real train vs test) | class accuracy "
          "| judge accuracy (real test) | sampling s |")
    print("|---|---|---|---|---|---|---|")
    for name, fam, q in rows:
        ca = q.get("class_accuracy")
        print(f"| {name} | {fam} | {q['frechet_distance']:.2f} | "
              f"{q['frechet_floor_real_train_vs_test']:.2f} | "
              f"{'-' if ca is None else f'{ca:.3f}'} | {q['judge_test_accuracy']:.3f} | "
              f"{q['sample_seconds']} |")


if __name__ == "__main__":
    main()
