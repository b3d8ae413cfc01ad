"""``layerwise evaluate`` in full: metrics with bootstrap intervals, figures, calibration,
conformal coverage and operational metrics, written to an evaluation folder.

    >>> from layerwise.evaluation.detailed import evaluate_run        # doctest: +SKIP
    >>> m = evaluate_run("runs/fashion/model", price_per_hour=0.10)
    >>> m["bootstrap"]["accuracy"]                                    # doctest: +SKIP
    {'value': 0.933, 'low': 0.928, 'high': 0.938, 'samples': 1000, 'confidence': 0.95}

The folder (default ``MODEL/../evaluation``; see docs/decisions.md, "Evaluation folder")
holds ``metrics.json`` (everything below, one object) and, per output (a suffix
``-<output>`` when the model has several): ``confusion_matrix.json`` / ``.png``,
``curves.json`` and ``roc_pr.png`` (ROC and precision-recall, binary or one-vs-rest),
``reliability.png`` for classifiers; ``residuals.json`` / ``.png`` for numbers.
Probabilities are the calibrated ones when ``layerwise calibrate`` stored a temperature
(the uncalibrated ECE is reported beside); stored conformal sets or intervals are scored on
the same rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerwise.data.build import encode_rows
from layerwise.evaluation import bootstrap, calibration, conformal, figures, operational, splits
from layerwise.evaluation.calibrate import evaluation_dir
from layerwise.evaluation.metrics import evaluate_outputs
from layerwise.files import dumps_json, write_text
from layerwise.inference import calibrated
from layerwise.inference.predictor import Predictor

DETAILED_KINDS = ("category", "binary", "numeric")


def supports(model_dir: str | Path) -> bool:
    """Whether every output of the model is one this module evaluates in full."""
    from layerwise import artifact as art

    meta = art.read_header(model_dir)
    if meta.get("kind", "supervised") != "supervised":
        return False
    return all(o.get("type") in DETAILED_KINDS for o in meta["schema"]["outputs"])


def evaluate_run(model_dir: str | Path, data: str | Path | None = None, *,
                 output: str | Path | None = None, samples: int = 1000,
                 price_per_hour: float | None = None, measure: bool = True,
                 seed: int = 0) -> dict[str, Any]:
    """Evaluate on ``data`` (a labelled file) or the run's own test split; write the
    evaluation folder; return ``metrics.json``'s content."""
    pred = Predictor.load(model_dir)
    if data is None:
        rows = splits.encoded(pred, splits.rebuild(pred, model_dir), "test", model_dir)
    else:
        rows, _ = encode_rows(pred.schema, pred.to_table(data), targets=True)
    outs = pred.forward(rows)  # raw logits; the metrics read them as predict does:
    metrics = evaluate_outputs(pred.schema, calibrated.scale(pred.meta, outs), rows.targets)
    folder = evaluation_dir(model_dir, output)
    folder.mkdir(parents=True, exist_ok=True)
    single = len(pred.schema.outputs) == 1
    for enc in pred.schema.outputs:
        m = metrics if single else metrics[enc.name]
        suffix = "" if single else f"-{enc.name}"
        y = rows.targets[enc.name]
        if enc.kind == "numeric":
            m.update(_regressor(enc, outs[enc.name], y, pred.meta, folder, suffix,
                                samples, seed))
        else:
            m.update(_classifier(enc, outs[enc.name], y, pred.meta, folder, suffix,
                                 samples, seed))
    if measure:
        metrics["operational"] = operational.measure(pred, rows,
                                                     price_per_hour=price_per_hour)
    metrics["evaluated_on"] = str(data) if data is not None else "test split"
    write_text(folder / "metrics.json", dumps_json(metrics, indent=2))
    return metrics


def _labels(enc: Any) -> list[str]:
    return [str(v) for v in (enc.vocab if enc.kind == "category" else enc.labels())]


def _classifier(enc: Any, out: torch.Tensor, y: torch.Tensor, meta: dict[str, Any],
                folder: Path, suffix: str, samples: int, seed: int) -> dict[str, Any]:
    """Figures, calibration, conformal coverage and bootstrap intervals of a classifier."""
    labels, t = _labels(enc), calibrated.temperature(meta, enc.name)
    probs = calibration.class_probs(out, t)
    truth = y.long().numpy()
    if enc.kind == "binary":
        guess = (probs[:, 1].numpy() >= enc.cfg.threshold).astype(np.int64)
    else:
        guess = probs.argmax(1).numpy()
    res: dict[str, Any] = {}
    matrix = np.bincount(truth * len(labels) + guess, minlength=len(labels) ** 2
                         ).reshape(len(labels), len(labels)).tolist()
    write_text(folder / f"confusion_matrix{suffix}.json",
               dumps_json({"labels": labels, "matrix": matrix, "rows": "true",
                           "columns": "predicted"}, indent=2))
    figures.confusion_png(matrix, labels, folder / f"confusion_matrix{suffix}.png",
                          f"{enc.name}: confusion")
    curves = figures.class_curves(truth, probs.numpy(), labels)
    write_text(folder / f"curves{suffix}.json", dumps_json(curves, indent=2))
    if curves["classes"]:
        figures.curves_png(curves, folder / f"roc_pr{suffix}.png", enc.name)
        res["macro_roc_auc"] = curves["macro_roc_auc"]
        res["macro_average_precision"] = curves["macro_average_precision"]
    res["calibration"] = _calibration(out, y, t, folder / f"reliability{suffix}.png",
                                      enc.name)
    fitted = (meta.get("conformal") or {}).get(enc.name)
    if fitted:
        member = conformal.class_sets(probs.numpy(), fitted, labels)
        res["conformal"] = {"target": fitted["coverage"], "method": fitted["method"],
                            **conformal.class_coverage(member, truth, labels)}
    res["bootstrap"] = bootstrap.intervals(
        truth, guess, bootstrap.classification_metrics(len(labels)), samples, seed)
    return res


def _calibration(out: torch.Tensor, y: torch.Tensor, t: float, png: Path, name: str
                 ) -> dict[str, Any]:
    """ECE/MCE/NLL with the stored temperature (and without, when there is one) and the
    reliability diagram of both."""
    curves = {"calibrated" if t != 1.0 else "model": calibration.report(out, y, t)}
    if t != 1.0:
        curves = {"uncalibrated": calibration.report(out, y, 1.0), **curves}
    calibration.reliability_diagram(curves, png, f"{name}: reliability")
    main = curves.get("calibrated", curves.get("model"))
    res = {k: main[k] for k in ("ece", "mce", "nll", "temperature")}  # type: ignore[index]
    res["bins"] = main["bins"]  # type: ignore[index]
    if t != 1.0:
        res["uncalibrated"] = {k: curves["uncalibrated"][k] for k in ("ece", "mce", "nll")}
    return res


def _regressor(enc: Any, out: torch.Tensor, y: torch.Tensor, meta: dict[str, Any],
               folder: Path, suffix: str, samples: int, seed: int) -> dict[str, Any]:
    """Residuals, conformal coverage and bootstrap intervals of a numeric output."""
    truth = np.asarray(enc.decode(y), float)
    guess = np.asarray(enc.decode(out), float)
    res: dict[str, Any] = {"residuals": figures.residuals(truth, guess)}
    write_text(folder / f"residuals{suffix}.json", dumps_json(res["residuals"], indent=2))
    figures.residuals_png(truth, guess, folder / f"residuals{suffix}.png", enc.name)
    fitted = (meta.get("conformal") or {}).get(enc.name)
    if fitted:
        res["conformal"] = {"target": fitted["coverage"], "method": fitted["method"],
                            **conformal.interval_coverage(truth, guess,
                                                          fitted["half_width"])}
    res["bootstrap"] = bootstrap.intervals(truth, guess, bootstrap.REGRESSION, samples, seed)
    return res

