"""Does tuning beat the example's default? The Fashion-MNIST CNN (examples/fashion_cnn.yaml)
trained once as written and then tuned (TPE, median pruning), both on the same reduced
budget, each judged by its last epoch's validation accuracy (and reported on the test split).

    .venv/bin/python benchmarks/tune_fashion.py --limit 6000 --epochs 4 --trials 20
    .venv/bin/python benchmarks/tune_fashion.py --limit 0 --epochs 16 --trials 20 --timeout 3600
    .venv/bin/python benchmarks/tune_fashion.py --quick          # smoke run, a few minutes

Everything goes under --output (a store of its own: ``layerwise.db`` there); a JSON summary
is printed and written as ``tune_fashion.json``. The search space is in
benchmarks/tune_fashion_space.yaml.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import yaml

HERE = Path(__file__).parent
EXAMPLE = HERE.parent / "examples" / "fashion_cnn.yaml"


def reduced_config(out: Path, limit: int, epochs: int, validation: float) -> Path:
    """The example with fewer rows and epochs (the same model, optimizer and schedule)."""
    raw = yaml.safe_load(EXAMPLE.read_text())
    if limit:                                   # 0: every row (60k train, the 10k test set)
        raw["data"]["limit"] = limit
    raw["data"]["split"] = {"validation": validation}
    raw["train"]["epochs"] = epochs
    raw["train"]["progress"] = "quiet"
    path = out / "fashion_reduced.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--limit", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--timeout", type=float, default=None,
                   help="stop starting trials after this many seconds (the study's budget)")
    p.add_argument("--validation", type=float, default=0.1)
    p.add_argument("--output", type=Path, default=Path("runs/bench-tune-fashion"))
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    if a.quick:
        a.limit, a.epochs, a.trials = 1500, 2, 4
    a.output.mkdir(parents=True, exist_ok=True)
    os.environ["LAYERWISE_TRACKING_URI"] = f"sqlite:///{(a.output / 'layerwise.db').absolute()}"
    import layerwise as lw
    from layerwise.experiments.tune import tune

    cfg = reduced_config(a.output, a.limit, a.epochs, a.validation)
    t0 = time.perf_counter()
    base = lw.train(cfg, output=a.output / "default", overwrite=True)
    t_base = time.perf_counter() - t0
    t0 = time.perf_counter()
    study = tune(cfg, trials=a.trials, space=HERE / "tune_fashion_space.yaml",
                 output=a.output / "study", timeout=a.timeout)
    t_tune = time.perf_counter() - t0
    best_test = None
    if study.best_run is not None:
        best_test = json.loads((study.best_run / "metrics.json").read_text())["test"]["accuracy"]
    summary = {"limit": a.limit, "epochs": a.epochs, "trials": study.trials,
               "pruned": study.pruned, "failed": study.failed,
               "pruned_share": round(study.pruned / max(1, study.trials), 3),
               "default_val_accuracy": base.history[-1]["val_accuracy"],
               "default_test_accuracy": base.metrics["test"]["accuracy"],
               "best_val_accuracy": study.best_value, "best_test_accuracy": best_test,
               "best_params": study.best_params,
               "default_seconds": round(t_base, 1), "tune_seconds": round(t_tune, 1)}
    text = json.dumps(summary, indent=2)
    (a.output / "tune_fashion.json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
