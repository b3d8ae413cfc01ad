"""``layerwise calibrate MODEL``: fit temperature scaling and split-conformal prediction on
the run's validation split, and store both in the artifact.

    >>> from layerwise.evaluation.calibrate import calibrate          # doctest: +SKIP
    >>> rep = calibrate("runs/fashion/model", conformal=0.9)
    >>> rep["label"]["test"]["ece_after"] < rep["label"]["test"]["ece_before"]
    True

The validation split is rebuilt exactly as training made it (:mod:`.splits`); the fits go
into ``layerwise.json`` (``calibration`` and ``conformal``, replaced atomically; the weights
are never rewritten), where ``predict`` applies them (:mod:`layerwise.inference.calibrated`),
and the model card gets a section describing them.
When the run has a test split, the report gives ECE/MCE before and after, and the conformal
coverage reached there; ``calibration.json``, ``conformal.json`` and ``reliability.png``
are written to the evaluation folder (default: ``MODEL/../evaluation``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerwise import artifact as art
from layerwise.errors import ConfigError
from layerwise.evaluation import calibration, conformal, splits
from layerwise.files import dumps_json, write_text
from layerwise.inference.predictor import Predictor

CLASS_KINDS = ("category", "binary")


def evaluation_dir(model_dir: str | Path, output: str | Path | None = None) -> Path:
    """Where evaluation files go: ``output``, else the run's ``evaluation/`` folder beside
    the model directory."""
    return Path(output) if output else Path(model_dir).resolve().parent / "evaluation"


def calibrate(model_dir: str | Path, *, temperature: bool = True,
              conformal_coverage: float | None = None, class_conditional: bool = False,
              bins: int = calibration.BINS, output: str | Path | None = None
              ) -> dict[str, Any]:
    """Fit and store the calibration of every output that has one; returns the report
    (per output: temperature, ECE/MCE before and after, conformal fit and coverage)."""
    if conformal_coverage is not None:
        conformal.check_coverage(conformal_coverage)
    if bins < 2:
        raise ConfigError(f"calibration needs at least 2 bins; got {bins}")
    pred = Predictor.load(model_dir)
    outs = _check_outputs(pred, model_dir, temperature, conformal_coverage)
    ds = splits.rebuild(pred, model_dir)
    val = splits.encoded(pred, ds, "validation", model_dir)
    test = splits.encoded(pred, ds, "test", model_dir) if ds.raw_test is not None \
        and len(next(iter(ds.raw_test.values()))) else None
    v_out, t_out = pred.forward(val), pred.forward(test) if test is not None else None
    meta = pred.meta
    cal, conf = dict(meta.get("calibration") or {}), dict(meta.get("conformal") or {})
    report: dict[str, Any] = {}
    for enc in outs:
        split = (v_out[enc.name], val.targets[enc.name])
        held = (t_out[enc.name], test.targets[enc.name]) if t_out is not None and test \
            is not None else None
        rep: dict[str, Any] = {}
        if enc.kind in CLASS_KINDS:
            t = _fit_temperature(enc.name, split, held, bins, rep) if temperature \
                else float(cal.get(enc.name, {}).get("temperature", 1.0))
            if temperature:
                cal[enc.name] = _calibration_entry(t, rep, bins, len(split[1]))
            if conformal_coverage is not None:
                conf[enc.name] = _conformal_classes(enc, split, held, t, conformal_coverage,
                                                    class_conditional, rep)
        else:
            conf[enc.name] = _conformal_numbers(enc, split, held, conformal_coverage or 0.9,
                                                rep)
        report[enc.name] = rep
    art.update_meta(model_dir, {"calibration": cal, "conformal": conf})
    _write_files(evaluation_dir(model_dir, output), report)
    _update_card(Path(model_dir) / art.CARD, cal, conf)
    return report


def _check_outputs(pred: Predictor, model_dir: str | Path, temperature: bool,
                   coverage: float | None) -> list[Any]:
    """The outputs to calibrate; a clear error when none can be."""
    kinds = CLASS_KINDS + (("numeric",) if coverage is not None else ())
    outs = [e for e in pred.schema.outputs if e.kind in kinds]
    if not outs:
        have = ", ".join(f"{e.name} ({e.kind})" for e in pred.schema.outputs)
        hint = "; pass --conformal 0.9 for prediction intervals" if any(
            e.kind == "numeric" for e in pred.schema.outputs) else ""
        raise ConfigError(f"{model_dir}: temperature scaling needs a category or binary "
                          f"output; this model predicts {have}{hint}")
    if not temperature and coverage is None:
        raise ConfigError("nothing to calibrate: temperature scaling is off and no "
                          "conformal coverage was asked for")
    return outs


def _fit_temperature(name: str, split: tuple[torch.Tensor, torch.Tensor],
                     held: tuple[torch.Tensor, torch.Tensor] | None, bins: int,
                     rep: dict[str, Any]) -> float:
    """Fit ``T`` on the validation split; report ECE/MCE/NLL before and after on it and,
    when there is one, on the test split."""
    t = calibration.fit_temperature(*split)
    rep["temperature"] = t
    parts = {"validation": split, **({"test": held} if held is not None else {})}
    for where, (logits, y) in parts.items():
        before = calibration.report(logits, y, 1.0, bins)
        after = calibration.report(logits, y, t, bins)
        rep[where] = {f"{k}_{when}": r[k] for k in ("ece", "mce", "nll")
                      for when, r in (("before", before), ("after", after))}
        rep[where]["rows"] = int(len(y))
        rep.setdefault("curves", {})[where] = {"before": before, "after": after}
    return t


def _calibration_entry(t: float, rep: dict[str, Any], bins: int, rows: int
                       ) -> dict[str, Any]:
    """What ``layerwise.json → calibration.<output>`` keeps (no bins: those are in
    calibration.json)."""
    return {"method": "temperature", "temperature": t, "fitted_on": "validation",
            "rows": rows, "bins": bins,
            **{where: rep[where] for where in ("validation", "test") if where in rep}}


def _conformal_classes(enc: Any, split: tuple[torch.Tensor, torch.Tensor],
                       held: tuple[torch.Tensor, torch.Tensor] | None, t: float,
                       coverage: float, class_conditional: bool, rep: dict[str, Any]
                       ) -> dict[str, Any]:
    """LAC sets on the temperature-scaled probabilities; coverage on the test split."""
    labels = [str(v) for v in (enc.vocab if hasattr(enc, "vocab") else enc.labels())]
    probs = calibration.class_probs(split[0], t).numpy()
    fitted = conformal.fit_classes(probs, split[1].long().numpy(), coverage,
                                   class_conditional, labels)
    fitted.update({"fitted_on": "validation", "temperature": t})
    if held is not None:
        test_probs = calibration.class_probs(held[0], t).numpy()
        member = conformal.class_sets(test_probs, fitted, labels)
        fitted["test"] = conformal.class_coverage(member, held[1].long().numpy(), labels)
    rep["conformal"] = fitted
    return fitted


def _conformal_numbers(enc: Any, split: tuple[torch.Tensor, torch.Tensor],
                       held: tuple[torch.Tensor, torch.Tensor] | None, coverage: float,
                       rep: dict[str, Any]) -> dict[str, Any]:
    """``ŷ ± q`` in the target's units; coverage and width on the test split."""
    def units(pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(enc.decode(pair[1]), float), np.asarray(enc.decode(pair[0]), float))

    fitted = conformal.fit_interval(*units(split), coverage)
    fitted["fitted_on"] = "validation"
    if held is not None:
        fitted["test"] = conformal.interval_coverage(*units(held), fitted["half_width"])
    rep["conformal"] = fitted
    return fitted


def _write_files(folder: Path, report: dict[str, Any]) -> None:
    """calibration.json (with reliability bins), conformal.json, reliability[-OUT].png."""
    folder.mkdir(parents=True, exist_ok=True)
    cal = {k: v for k, v in report.items() if "temperature" in v}
    conf = {k: v["conformal"] for k, v in report.items() if "conformal" in v}
    if cal:
        write_text(folder / "calibration.json", dumps_json(cal, indent=2))
    if conf:
        write_text(folder / "conformal.json", dumps_json(conf, indent=2))
    for name, rep in cal.items():
        where = "test" if "test" in rep["curves"] else "validation"
        file = "reliability.png" if len(cal) == 1 else f"reliability-{name}.png"
        calibration.reliability_diagram(rep["curves"][where], folder / file,
                                        f"{name}: reliability on the {where} split")


CARD_HEADING = "## Calibration and conformal prediction"


def card_section(cal: dict[str, Any], conf: dict[str, Any]) -> str:
    """The model card's section on the stored fits (``layerwise.json → calibration`` and
    ``conformal``), in plain words."""
    lines = [CARD_HEADING, "", "Fitted on the validation split by `layerwise calibrate`; "
             "`predict` applies it.", ""]
    for name, c in cal.items():
        where = "test" if "test" in c else "validation"
        ece = (f"; {where} ECE {c[where]['ece_before']:.4f} before, "
               f"{c[where]['ece_after']:.4f} after") if where in c else ""
        lines.append(f"- `{name}`: temperature {c['temperature']:.3f}{ece}.")
    for name, c in conf.items():
        got = c.get("test")
        size = "" if not got else (
            f", mean set size {got['mean_set_size']:.2f}" if "mean_set_size" in got
            else f", interval width {got['mean_width']:.4g}")
        seen = f"; test coverage {got['coverage']:.3f}{size}" if got else ""
        lines.append(f"- `{name}`: conformal {c['method']} at {c['coverage']} "
                     f"coverage{seen}.")
    return "\n".join(lines) + "\n"


def _update_card(card: Path, cal: dict[str, Any], conf: dict[str, Any]) -> None:
    """Put :func:`card_section` into ``card.md``, replacing an earlier one."""
    if not card.is_file():
        return
    text = card.read_text(encoding="utf-8")
    start = text.find(CARD_HEADING)
    if start >= 0:
        end = text.find("\n## ", start + len(CARD_HEADING))
        text = text[:start] + (text[end + 1:] if end >= 0 else "")
    write_text(card, text.rstrip("\n") + "\n\n" + card_section(cal, conf))
