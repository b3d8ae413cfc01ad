"""Global importance over a labelled data set: which features the model relies on.

- ``permutation``: the drop in the score (accuracy; -MSE for a numeric output) when one
  column's values are shuffled across rows, averaged over ``repeats`` shuffles
  (Breiman 2001). Tabular models: numeric and category columns.
- ``mean_abs``: the mean |attribution| of a per-row method (integrated gradients by
  default) over the rows: per column (tabular), per pixel (image, a map), per token
  string (text, the most important ``TOP``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from layerwise.data.build import CATEGORY_KEY, NUMERIC_KEY, encode_rows
from layerwise.data.features import CategoryEncoder, NumericEncoder
from layerwise.errors import ConfigError
from layerwise.explain.attributions import explain, kind_of, output_of

TOP = 30


@torch.no_grad()
def score(model: torch.nn.Module, enc: Any, inputs: dict[str, Any],
          targets: torch.Tensor) -> float:
    """Accuracy for category and binary outputs, -MSE (model units) for numeric ones."""
    out = model(inputs)[enc.name].float()
    if isinstance(enc, CategoryEncoder):
        return float((out.argmax(-1) == targets).float().mean())
    flat = out.reshape(len(out), -1)[:, 0]
    if isinstance(enc, NumericEncoder):
        return -float(((flat - targets.float().reshape(-1)) ** 2).mean())
    return float(((flat > 0).long() == targets.reshape(-1).long()).float().mean())


def permutation(predictor: Any, rows: Any, *, output: str | None = None, repeats: int = 3,
                seed: int = 0) -> dict[str, Any]:
    """Permutation importance of every tabular column on labelled ``rows``."""
    schema, model = predictor.schema, predictor.model.eval()
    if schema.images or schema.texts or schema.series:
        raise ConfigError("permutation importance covers tabular columns; for images and "
                          "text use global importance by mean_abs")
    enc = output_of(schema, output)
    data, _ = encode_rows(schema, predictor.to_table(rows), targets=True)
    inputs, y = dict(data.inputs), data.targets[enc.name]
    base = score(model, enc, inputs, y)
    g = torch.Generator().manual_seed(seed)
    columns = [(e.name, NUMERIC_KEY, j) for j, e in enumerate(schema.numeric)] + \
              [(e.name, CATEGORY_KEY, j) for j, e in enumerate(schema.category)]
    drops: dict[str, float] = {}
    for name, key, j in columns:
        got = []
        for _ in range(repeats):
            moved = dict(inputs)
            col = inputs[key].clone()
            col[:, j] = col[torch.randperm(len(col), generator=g), j]
            moved[key] = col
            got.append(base - score(model, enc, moved, y))
        drops[name] = float(np.mean(got))
    ranked = dict(sorted(drops.items(), key=lambda kv: -kv[1]))
    return {"method": "permutation", "output": enc.name, "score": base,
            "score_name": "neg_mse" if isinstance(enc, NumericEncoder) else "accuracy",
            "rows": len(y), "repeats": repeats, "importance": ranked}


def mean_abs(predictor: Any, rows: Any, *, method: str = "integrated_gradients",
             output: str | None = None, batch: int = 64, **kw: Any) -> dict[str, Any]:
    """Mean |attribution| per feature over ``rows`` (in batches of ``batch`` rows)."""
    kind = kind_of(predictor.schema)
    table = predictor.to_table(rows)
    n = len(next(iter(table.columns.values())))
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    heat: np.ndarray | None = None
    for s in range(0, n, batch):
        part = {k: v[s:s + batch] for k, v in table.columns.items()}
        ex = explain(predictor, part, method=method, output=output, **kw)
        for i, a in enumerate(ex.maps):
            if kind == "image":
                heat = np.abs(a) if heat is None else heat + np.abs(a)
                continue
            names = ex.features if kind == "tabular" else ex.rows[i]["tokens"]
            for name, v in zip(names, a):
                sums[name] = sums.get(name, 0.0) + abs(float(v))
                counts[name] = counts.get(name, 0) + 1
    out: dict[str, Any] = {"method": f"mean_abs:{method}", "kind": kind, "rows": n}
    if kind == "image":
        out["map"] = (heat / max(1, n)).tolist() if heat is not None else []
        return out
    means = {k: sums[k] / counts[k] for k in sums}
    ranked = sorted(means.items(), key=lambda kv: -kv[1])
    out["importance"] = dict(ranked[:TOP] if kind == "text" else ranked)
    return out


def global_importance(predictor: Any, rows: Any, kind: str, out_dir: Any,
                      method: str = "integrated_gradients") -> Any:
    """Global importance (``kind``: permutation or mean_abs) written to ``out_dir`` as
    importance.json and importance.png; returns the JSON's path."""
    from pathlib import Path

    from layerwise.explain import render
    from layerwise.files import dumps_json, write_text

    if kind not in ("permutation", "mean_abs"):
        raise ConfigError(f"importance must be permutation or mean_abs; got {kind!r}")
    result = permutation(predictor, rows) if kind == "permutation" else \
        mean_abs(predictor, rows, method=method if method != "attention" else
                 "integrated_gradients")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if "importance" in result:
        names = list(result["importance"])
        fig = render.bars(names, np.array([result["importance"][n] for n in names]),
                          result["method"])
    else:
        fig = render.overlay(np.zeros((*np.shape(result["map"]), 1)),
                             np.array(result["map"]), result["method"])
    render.save_png(fig, out / "importance.png")
    write_text(out / "importance.json", dumps_json(result, indent=1))
    return out / "importance.json"
