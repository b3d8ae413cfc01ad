"""``layerwise monitor``: live inputs and predictions against the training reference.

Live data is either rows (a data file, arrays, dicts) — every input is tested, images and
texts in the model's embedding space — or a server's prediction log, whose records carry
plain inputs and the answers (images there are only summaries, so only their predictions
are tested). The report names each drifted feature; ``drift`` is True when any is.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import numpy as np

from layerwise.errors import DataError
from layerwise.files import dumps_json, write_text
from layerwise.monitoring import drift, reference


def check_rows(predictor: Any, rows: Any, *, alpha: float = 0.05, seed: int = 0
               ) -> dict[str, Any]:
    """The drift report of live ``rows`` (anything ``Predictor.predict`` accepts)."""
    from layerwise.data.build import encode_rows

    ref = reference.read(predictor.artifact.path)
    schema = predictor.schema
    table = predictor.to_table(rows)
    data, table = encode_rows(schema, table, targets=False)
    results = _tabular(schema, ref, table)
    emb = ref.get("_embedding")
    if emb is not None:
        feats = reference.embed(predictor.model, data.inputs)
        if feats is not None:
            live = (feats - np.asarray(emb["mean"])) @ np.asarray(emb["components"]).T
            names = [e.name for e in schema.images + schema.texts]
            results["+".join(names) + " (embedding)"] = drift.mmd_test(
                np.asarray(emb["vectors"]), live, seed=seed)
    preds = reference.predicted(predictor.model, schema, data.inputs)
    _prediction_tests(results, ref, preds)
    return _report(predictor, results, len(table), alpha)


def check_log(predictor: Any, records: list[dict[str, Any]], *, alpha: float = 0.05
              ) -> dict[str, Any]:
    """The drift report of a prediction log's records (see serving/records.py)."""
    ref = reference.read(predictor.artifact.path)
    mine = [r for r in records if isinstance(r, dict) and isinstance(r.get("inputs"), dict)]
    if not mine:
        raise DataError("the prediction log holds no records with inputs")
    from layerwise.data.table import Table

    cols = {e.name: [r["inputs"].get(e.name) for r in mine] for e in predictor.schema.inputs
            if e.kind in ("numeric", "category", "binary")}
    table = Table({k: np.asarray([np.nan if v is None else v for v in c], dtype=object)
                   for k, c in cols.items()}, "prediction log")
    results = _tabular(predictor.schema, ref, table)
    outs = {o.name: [str(r["output"][o.name]) for r in mine
                     if isinstance(r.get("output"), dict) and o.name in r["output"]]
            for o in predictor.schema.outputs}
    _prediction_tests(results, ref, {k: v for k, v in outs.items() if v})
    return _report(predictor, results, len(mine), alpha)


def _feature(enc: Any, ref: dict[str, Any], values: np.ndarray) -> dict[str, Any]:
    """The test of one parsed input column against its reference entry."""
    if enc.kind == "numeric":
        return drift.numeric_test(ref, np.asarray(values, dtype=float))
    if enc.kind == "binary":  # the reference holds the positive rate
        rate = float(ref.get("positive_rate") or 0.0)
        live = [str(int(x)) for x in enc.transform(values).numpy().round().tolist()]
        return drift.category_test({"0": 1 - rate, "1": rate}, live, "binary")
    return drift.category_test(ref.get("frequencies") or {}, [str(v) for v in values])


def _tabular(schema: Any, ref: dict[str, Any], table: Any) -> dict[str, dict[str, Any]]:
    """Tests of every numeric, binary and category input the reference describes."""
    out = {}
    for enc in schema.inputs:
        if enc.kind in ("numeric", "category", "binary") and enc.name in ref:
            values, bad, reasons = enc.parse(table.column(enc.name), table)
            if bad.any():
                raise DataError(f"{table.where(int(np.flatnonzero(bad)[0]), enc.name)}: "
                                f"{reasons[0]}")
            out[enc.name] = _feature(enc, ref[enc.name], values)
    return out


def _prediction_tests(results: dict[str, dict[str, Any]], ref: dict[str, Any],
                      preds: dict[str, list[str]]) -> None:
    for name, labels in preds.items():
        freqs = (ref.get("_predictions") or {}).get(name)
        if freqs:
            results[f"{name} (predicted)"] = drift.category_test(freqs, labels, "prediction")


def _report(predictor: Any, results: dict[str, dict[str, Any]], n: int, alpha: float
            ) -> dict[str, Any]:
    drift.flag(results, alpha)
    drifted = [k for k, r in results.items() if r["drift"]]
    return {"model": str(predictor.artifact.path), "time": time.time(), "rows": n,
            "alpha": alpha, "drift": bool(drifted), "drifted": drifted, "features": results}


def write_report(report: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    """``drift.json`` and ``drift.html`` in the folder ``out``."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    write_text(d / "drift.json", dumps_json(report, indent=2))
    write_text(d / "drift.html", render_html(report))
    return d / "drift.json", d / "drift.html"


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape("" if v is None else str(v))


def render_html(report: dict[str, Any]) -> str:
    cols = ["type", "test", "live_count", "psi", "p_value", "p_adjusted", "drift"]
    rows = "".join(
        f"<tr class={'drift' if r['drift'] else 'ok'}><td>{html.escape(name)}</td>"
        + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>"
        for name, r in report["features"].items())
    verdict = (f"Drift in: {html.escape(', '.join(report['drifted']))}" if report["drift"]
               else "No drift found")
    return ("<!doctype html><meta charset=utf-8><title>Drift report</title><style>"
            "body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;border-bottom:"
            "1px solid #ddd}tr.drift{background:#fdd}</style>"
            f"<h1>Drift report</h1><p>Model {html.escape(report['model'])}, "
            f"{report['rows']} live rows, alpha {report['alpha']} (Bonferroni-corrected)."
            f"</p><h2>{verdict}</h2><table><tr><th>feature</th>"
            + "".join(f"<th>{c}</th>" for c in cols) + f"</tr>{rows}</table>")
