"""Distillation against the same student trained alone, over seeds, on MNIST-1D.

    OMP_NUM_THREADS=1 python benchmarks/distill_mnist1d.py OUT [--seeds 0,1,2]
        [--width 0.225] [--epochs 160] [--temperature 4] [--alpha 0.7] [--max-drop 1]

The teacher is examples/mnist1d_cnn.yaml twice as wide (filters 64/128/256, dense 256),
trained 60 epochs on a cosine schedule (no early stopping). The student is that config
with every width times ``--width`` (``compress.distill.student_config``), the
same recipe, ``--epochs`` epochs, no early stopping; for each seed it is trained twice on
the teacher's split (``data.split.seed: 0``): alone (``layerwise train``) and distilled
from the teacher (``layerwise compress --method distill --student --data FRESH
--max-drop 1``: the guard scores teacher and student on the fresh rows below, 20× the
run's 500 validation rows, and refuses a student more than 1 pt under the teacher).
Both are scored on the 1,000-row test split and on ``--fresh`` (10,000) new signals
the mnist1d generator draws with another seed (7): the same distribution, a standard
error of about 0.17 pt instead of 0.55.
Prints one JSON line per run and a Markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from pathlib import Path
from typing import Any

import yaml

import layerwise as lw
from layerwise.compress import Options, compress, distill
from layerwise.config import parse
from layerwise.training.hardware import machine

ROOT = Path(__file__).resolve().parent.parent


def teacher_config() -> dict[str, Any]:
    cfg = yaml.safe_load((ROOT / "examples/mnist1d_cnn.yaml").read_text(encoding="utf-8"))
    for block, filters in zip(cfg["model"]["blocks"], (64, 128, 256), strict=True):
        block["filters"] = filters
    cfg["model"]["dense"] = [256]
    cfg["train"].update(epochs=60, schedule={"name": "cosine"}, early_stopping=None,
                        threads=1, progress="quiet")
    cfg["name"] = "mnist1d_teacher"
    return cfg


def student_config(teacher: dict[str, Any], width: float, seed: int, epochs: int
                   ) -> dict[str, Any]:
    """The teacher's config with the widths ``compress --width`` would give its student."""
    cfg = copy.deepcopy(teacher)
    scaled = distill.student_config(parse(copy.deepcopy(teacher)), width).model  # type: ignore[arg-type]
    for block, small in zip(cfg["model"]["blocks"], scaled.blocks, strict=True):  # type: ignore[attr-defined]
        block["filters"] = small.filters
    cfg["model"]["dense"] = list(scaled.dense)  # type: ignore[attr-defined]
    cfg["train"]["epochs"] = epochs
    cfg["data"]["split"] = {"seed": 0}  # the teacher's split whatever the seed
    cfg.update(name=f"mnist1d_student_s{seed}", seed=seed)
    return cfg


def fresh_rows(path: Path, n: int) -> Path:
    """``n`` new MNIST-1D signals (generator seed 7) as a CSV in the catalogue's columns."""
    import csv

    import numpy as np
    from mnist1d.data import get_dataset_args, make_dataset

    if path.is_file():
        return path
    args = get_dataset_args()
    args.num_samples, args.seed = n, 7
    d = make_dataset(args)
    x = np.concatenate([d["x"], d["x_test"]]).round(5)
    y = np.concatenate([d["y"], d["y_test"]])
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([f"x{i}" for i in range(x.shape[1])] + ["label"])
        w.writerows([f"{v:.5f}" for v in row] + [f"digit_{c}"]
                    for row, c in zip(x, y, strict=True))
    return path


def params(model_dir: Path) -> int:
    return sum(p.numel() for p in lw.load(model_dir).model.parameters())  # type: ignore[union-attr]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--width", type=float, default=0.225)
    p.add_argument("--epochs", type=int, default=160)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.7)
    p.add_argument("--fresh", type=int, default=10_000)
    p.add_argument("--max-drop", type=float, default=1.0,
                   help="the guard's limit, in points, on the fresh rows")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    print("machine:", machine())
    teacher = teacher_config()
    t_dir = a.out / "teacher"
    if not (t_dir / "model").is_dir():
        lw.train(teacher, output=t_dir)
    t_model = t_dir / "model"
    fresh = str(fresh_rows(a.out / f"fresh{a.fresh}.csv", a.fresh))
    t_test = lw.evaluate(t_model)["accuracy"]
    t_fresh = lw.evaluate(t_model, fresh)["accuracy"]
    rows = []
    for seed in (int(s) for s in a.seeds.split(",")):
        cfg = student_config(teacher, a.width, seed, a.epochs)
        path = a.out / f"student_s{seed}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        alone = a.out / f"alone_s{seed}"
        if not (alone / "model").is_dir():
            lw.train(path, output=alone)
        kd = a.out / f"kd_s{seed}"
        rec = compress(t_model, "distill", kd, Options(
            student=str(path), epochs=a.epochs, temperature=a.temperature, alpha=a.alpha,
            max_drop=a.max_drop, data=fresh), overwrite=True)
        row = {"seed": seed, "alone_test": lw.evaluate(alone / "model")["accuracy"],
               "kd_test": lw.evaluate(kd)["accuracy"],
               "alone_fresh": lw.evaluate(alone / "model", fresh)["accuracy"],
               "kd_fresh": lw.evaluate(kd, fresh)["accuracy"], "teacher_fresh": t_fresh,
               "alone_validation": json.loads((alone / "metrics.json").read_text())[
                   "validation"]["accuracy"],
               "guard": rec["metric"], "teacher_test": t_test,
               "parameters": {"teacher": params(t_model), "student": params(kd)}}
        print(json.dumps(row), flush=True)
        rows.append(row)
    print("\n| seed | alone: validation / test / fresh | distilled: test / fresh (the guard's "
          "figure) | Δ fresh |\n|---:|---|---|---:|")
    for r in rows:
        print(f"| {r['seed']} | {r['alone_validation']:.4f} / {r['alone_test']:.4f} / "
              f"{r['alone_fresh']:.4f} | {r['kd_test']:.4f} / {r['kd_fresh']:.4f} "
              f"({r['guard']['child']:.2f}) | "
              f"{100 * (r['kd_fresh'] - r['alone_fresh']):+.2f} pt |")
    keys = ("alone_test", "kd_test", "alone_fresh", "kd_fresh")
    mean = {k: statistics.fmean(r[k] for r in rows) for k in keys}
    print("\nmeans: " + ", ".join(f"{k} {v:.4f}" for k, v in mean.items()) +
          f"; teacher test {t_test:.4f}, fresh {t_fresh:.4f} (the guard's figure "
          f"{rows[0]['guard']['parent']:.2f}); parameters {rows[0]['parameters']}")


if __name__ == "__main__":
    main()
