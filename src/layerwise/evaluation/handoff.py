"""``layerwise handoff MODEL``: choose the confidence thresholds below which a chatbot's
message goes to a person, on the run's validation split, and store them in the artifact.

    >>> from layerwise.evaluation.handoff import fit_handoff           # doctest: +SKIP
    >>> rep = fit_handoff("runs/chat/model", accuracy=0.95)          # doctest: +SKIP
    >>> rep["thresholds"], rep["test"]["out_of_scope_handed_off"]    # doctest: +SKIP
    ({'intent': 0.71, 'entities': 0.52}, 0.94)

Each output named (default: every category and tags output) gets its own threshold:
the lowest whose answered validation rows reach ``accuracy`` (a Wilson lower bound, see
:func:`layerwise.inference.abstain.choose_threshold`). A tags output's row is right when
every tag is, and its confidence is its least confident token. Rows whose ``out_of_scope``
output takes the out-of-scope label are handed off whatever their confidence and are left
out of the fit. The settings go to ``layerwise.json → handoff`` (replaced atomically; the
weights are never rewritten), and ``predict`` then adds ``route`` to every row
(:func:`layerwise.inference.abstain.route`). Fit after ``layerwise calibrate`` (the
thresholds are read off the probabilities predict returns at the time of the fit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from layerwise import artifact as art
from layerwise.errors import ConfigError
from layerwise.evaluation import splits
from layerwise.inference import abstain
from layerwise.inference.predictor import Predictor

KINDS = ("category", "tags")


def fit_handoff(model_dir: str | Path, *, accuracy: float = 0.95,
                max_in_scope: float | None = None, outputs: list[str] | None = None,
                out_of_scope: str | None = "out_of_scope", scope_output: str | None = None
                ) -> dict[str, Any]:
    """Fit and store the hand-off settings; returns them with the hand-off shares on the
    validation (and test) split: in scope, out of scope, and the accuracy of answered rows.

    ``max_in_scope`` (instead of ``accuracy``): a budget — the thresholds hand off at most
    this share of the in-scope validation rows (those predicted out of scope count
    against it; the rest is split evenly between the outputs), catching as many
    low-confidence rows as that allows."""
    if not 0 < accuracy < 1:
        raise ConfigError(f"--accuracy must lie between 0 and 1; got {accuracy}")
    if max_in_scope is not None and not 0 <= max_in_scope < 1:
        raise ConfigError(f"--max-in-scope must lie in [0, 1); got {max_in_scope}")
    pred = Predictor.load(model_dir)
    encs = _outputs(pred, outputs, model_dir)
    scope = _scope(pred, out_of_scope, scope_output, model_dir)
    ds = splits.rebuild(pred, model_dir)
    splits.encoded(pred, ds, "validation", model_dir)  # a clear error when there is none
    val = ds.raw_validation or {}
    rows = pred.predict(val)
    keep = _answerable(rows, scope)
    if max_in_scope is None:
        thresholds = {e.name: abstain.choose_threshold(*_scored(rows, val, e, keep),
                                                       accuracy) for e in encs}
        rule: dict[str, float] = {"accuracy": accuracy}
    else:
        thresholds = _budget(rows, val, encs, scope, keep, max_in_scope, model_dir)
        rule = {"max_in_scope": max_in_scope}
    settings: dict[str, Any] = {"thresholds": thresholds, **rule,
                                "out_of_scope": scope, "fitted_on": "validation"}
    report = {**settings, "validation": shares(pred, settings, val, rows)}
    if ds.raw_test is not None and len(next(iter(ds.raw_test.values()), [])):
        report["test"] = shares(pred, settings, ds.raw_test)
    art.update_meta(model_dir, {abstain.HANDOFF: {**settings, **{
        k: report[k] for k in ("validation", "test") if k in report}}})
    return report


def shares(pred: Predictor, settings: dict[str, Any], raw: dict[str, np.ndarray],
           rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """How ``settings`` route the rows of ``raw``: the share of out-of-scope and of
    in-scope rows handed off, and the accuracy of each output on the answered rows."""
    rows = rows if rows is not None else pred.predict(raw)
    human = np.array([abstain.handoff_reason(r, pred.schema.outputs, settings) is not None
                      for r in rows])
    scope = settings.get("out_of_scope") or {}
    out: dict[str, Any] = {"rows": len(rows), "handed_off": float(human.mean())}
    if scope.get("output") in raw:
        oos = np.array([str(v) == scope["label"] for v in raw[scope["output"]]])
        out["out_of_scope_rows"] = int(oos.sum())
        out["out_of_scope_handed_off"] = float(human[oos].mean()) if oos.any() else None
        out["in_scope_handed_off"] = float(human[~oos].mean()) if (~oos).any() else None
    for enc in pred.schema.outputs:
        if enc.kind in KINDS and enc.name in raw and (~human).any():
            right = np.array([_right(r, v, enc) for r, v in zip(rows, raw[enc.name],
                                                                strict=True)])
            out[f"{enc.name}_answered_accuracy"] = float(right[~human].mean())
    return out


def _outputs(pred: Predictor, names: list[str] | None, model_dir: str | Path) -> list[Any]:
    fit = [e for e in pred.schema.outputs if e.kind in KINDS]
    if names:
        known = {e.name: e for e in fit}
        bad = [n for n in names if n not in known]
        if bad:
            raise ConfigError(f"--outputs: {bad} are not category or tags outputs "
                              f"of {model_dir}; choose from {sorted(known)}")
        fit = [known[n] for n in names]
    if not fit:
        raise ConfigError(f"{model_dir}: hand-off thresholds need a category or tags "
                          f"output; this model predicts {[e.kind for e in pred.schema.outputs]}")
    return fit


def _scope(pred: Predictor, label: str | None, output: str | None, model_dir: str | Path
           ) -> dict[str, str] | None:
    """Which category output names the out-of-scope class, and its label: ``output``, else
    the first category output that has ``label`` among its classes (None: no such rule)."""
    if not label:
        return None
    cats = [e for e in pred.schema.outputs if e.kind == "category"
            and (output is None or e.name == output)]
    for e in cats:
        if label in e.vocab:
            return {"output": e.name, "label": label}
    if output is not None:
        raise ConfigError(f"--out-of-scope: output {output!r} of {model_dir} is not a "
                          f"category output with the class {label!r}")
    return None


def _answerable(rows: list[dict[str, Any]], scope: dict[str, str] | None) -> np.ndarray:
    """The rows the thresholds decide: those not already out of scope by prediction."""
    if not scope:
        return np.ones(len(rows), dtype=bool)
    return np.array([r.get(scope["output"]) != scope["label"] for r in rows])


def _scored(rows: list[dict[str, Any]], raw: dict[str, np.ndarray], enc: Any,
            keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and rightness of output ``enc`` on the kept rows."""
    if enc.name not in raw:
        raise ConfigError(f"the validation split has no column {enc.name!r}")
    conf = np.array([abstain.output_confidence(r, enc) or 0.0 for r in rows])
    right = np.array([_right(r, v, enc) for r, v in zip(rows, raw[enc.name], strict=True)])
    return conf[keep], right[keep]


def _budget(rows: list[dict[str, Any]], raw: dict[str, np.ndarray], encs: list[Any],
            scope: dict[str, str] | None, keep: np.ndarray, budget: float,
            model_dir: str | Path) -> dict[str, float]:
    """Thresholds that hand off at most ``budget`` of the in-scope rows (see fit_handoff)."""
    if not scope or scope["output"] not in raw:
        raise ConfigError(f"--max-in-scope needs an out-of-scope class to tell in-scope "
                          f"rows; {model_dir} has none (see --out-of-scope)")
    inside = np.array([str(v) != scope["label"] for v in raw[scope["output"]]])
    if not inside.any():
        raise ConfigError("--max-in-scope: the validation split has no in-scope rows")
    left = budget - float((inside & ~keep).sum()) / inside.sum()  # predicted out of scope
    out = {}
    for e in encs:
        conf = np.sort(_scored(rows, raw, e, inside & keep)[0])
        k = int(max(left, 0.0) / len(encs) * inside.sum())  # rows this output may hand off
        out[e.name] = float(conf[k]) if 0 < k < len(conf) else (0.0 if k == 0 else 1.0)
    return out


def _right(row: dict[str, Any], truth: Any, enc: Any) -> bool:
    """Whether a row's output is right; tags (a string, or the list a split holds) must
    all be, up to the tokens the model read."""
    if enc.kind == "tags":
        tags = row[enc.name]["tags"]
        want = truth.split() if isinstance(truth, str) else [str(t) for t in truth]
        return bool(tags == want[: len(tags)])
    return str(row[enc.name]) == str(truth)
