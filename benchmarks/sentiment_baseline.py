"""TF-IDF + logistic regression on exactly the split a layerwise config uses.

    python benchmarks/sentiment_baseline.py examples/sentiment_lstm.yaml [runs/X/metrics.json]

The split comes from ``layerwise.data.build`` (same seed, same stratification), so the
numbers sit next to a run's test metrics. The regularisation strength C is chosen by
3-fold cross-validation on the training split (macro-F1). With a run's metrics.json the
script prints both side by side.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def baseline(config: str) -> dict[str, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    from layerwise.config import parse
    from layerwise.data.build import build

    cfg = parse(config)
    text = next(f.name for f in cfg.inputs if f.type == "text")
    label = cfg.outputs[0].name
    ds = build(cfg)
    train, test = ds.raw_train, ds.raw_test
    assert train is not None and test is not None
    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                         LogisticRegression(max_iter=2000))
    search = GridSearchCV(pipe, {"logisticregression__C": [0.5, 1.0, 2.0, 4.0, 8.0]},
                          scoring="f1_macro", cv=3, n_jobs=1)
    y_train = np.array([str(v) for v in train[label]])
    y_test = np.array([str(v) for v in test[label]])
    search.fit([str(t) for t in train[text]], y_train)
    pred = search.predict([str(t) for t in test[text]])
    return {"accuracy": float(accuracy_score(y_test, pred)),
            "macro_f1": float(f1_score(y_test, pred, average="macro")),
            "C": float(search.best_params_["logisticregression__C"]),
            "train_rows": len(y_train), "test_rows": len(y_test)}


def main() -> None:
    config = sys.argv[1] if len(sys.argv) > 1 else "examples/sentiment_lstm.yaml"
    result = {"baseline_tfidf_logreg": baseline(config)}
    if len(sys.argv) > 2:
        test = json.loads(Path(sys.argv[2]).read_text())["test"]
        result["model"] = {"accuracy": test["accuracy"], "macro_f1": test["macro_f1"]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
