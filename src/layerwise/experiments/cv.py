"""k-fold cross-validation: one full training run per fold, then a table and intervals.

    >>> from layerwise.experiments import cross_validate             # doctest: +SKIP
    >>> cv = cross_validate("examples/wine_mlp.yaml", folds=5, output="runs/wine-cv")
    >>> cv.summary["accuracy"]                                       # doctest: +SKIP
    {'mean': 0.97, 'std': 0.02, 'ci_low': 0.95, 'ci_high': 0.99, 'n': 5}

Each fold is an ordinary run (``OUTPUT/fold-K`` or ``OUTPUT/repeat-R-fold-K``) whose
config says which fold it holds out (``data.split.folds``, ``fold``, ``repeat``, ``group``):
``data.build`` deals the rows into folds (stratified by the label, or grouped by a column),
holds the fold out as the test split, carves the validation split from the other folds and
fits the encoders on that run's own training part. ``layerwise evaluate`` on a fold's
model therefore rebuilds the same split from the stored config. The summary is the mean
and a 95% Student-t interval over the fold scores of every scalar test metric, written as
``cv.json``, ``cv.md`` and ``cv.csv`` in the output folder.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layerwise import api
from layerwise.config import Config, parse
from layerwise.errors import ConfigError
from layerwise.files import dumps_json, write_text
from layerwise.tracking import recorder

CONFIDENCE = 0.95


@dataclass
class CVResult:
    """What ``cross_validate`` leaves behind: the per-fold rows and their summary."""

    dir: Path
    folds: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    interrupted: bool = False


def fold_config(base: Config, folds: int, fold: int, repeat: int, group: str | None
                ) -> Config:
    """``base`` with the split of one fold, validated anew (so its run records it)."""
    raw = base.model_dump(mode="json", exclude_unset=True)
    split = raw.setdefault("data", {}).setdefault("split", {})
    split.update({"folds": folds, "fold": fold, "repeat": repeat})
    if group is not None:
        split["group"] = group
    cfg = parse(raw)
    if not isinstance(cfg, Config):  # parse keeps the kind of what it is given
        raise ConfigError("cross-validation needs a supervised config")
    return cfg


def _check(config: Any, folds: int, repeats: int, overrides: list[str] | None) -> Config:
    if folds < 2:
        raise ConfigError(f"cross-validation needs --folds >= 2; got {folds}")
    if repeats < 1:
        raise ConfigError(f"cross-validation needs --repeats >= 1; got {repeats}")
    base = parse(config, overrides)
    if not isinstance(base, Config):  # an agent, or a recommender (its own split)
        raise ConfigError("cross-validation trains on data folds of a supervised config; "
                          f"this config is a {type(base).__name__}")
    if base.data.split.column:
        raise ConfigError("cross-validation chooses the test rows itself; remove "
                          f"data.split.column ({base.data.split.column!r}) from the config")
    return base


def cross_validate(config: Config | dict[str, Any] | str | Path, *, folds: int = 5,
                   repeats: int = 1, group: str | None = None,
                   overrides: list[str] | None = None, output: str | Path | None = None,
                   progress: str | None = None, overwrite: bool = False,
                   resume: bool = False) -> CVResult:
    """Train one run per fold (``folds`` × ``repeats`` runs) and summarise their test
    metrics. ``resume`` reuses the folds already finished in ``output`` (same config) and
    continues an interrupted one; ``overwrite`` retrains them all."""
    base = _check(config, folds, repeats, overrides)
    out = Path(output) if output else Path("runs") / f"{base.name}-cv"
    result = CVResult(out)
    for r in range(repeats):
        for k in range(folds):
            cfg = fold_config(base, folds, k, r, group)
            name = f"fold-{k}" if repeats == 1 else f"repeat-{r}-fold-{k}"
            row = _finished(out / name, cfg) if resume else None
            if row is None:
                with recorder.labelled("cv", cv=str(out), repeat=r, fold=k):
                    run = api.train(cfg, output=out / name, progress=progress,
                                    resume=resume, overwrite=overwrite)
                if run.interrupted:
                    result.interrupted = True
                    return result
                row = _row(run.metrics)
            result.folds.append({"repeat": r, "fold": k, "run": str(out / name), **row})
    result.summary = summarize(result.folds)
    write_outputs(result, base, folds, repeats, group)
    return result


def _finished(run_dir: Path, cfg: Config) -> dict[str, Any] | None:
    """The row of a fold run already finished in ``run_dir`` with this config, if any."""
    import yaml

    metrics, config = run_dir / "metrics.json", run_dir / "config.yaml"
    if not (metrics.is_file() and config.is_file() and (run_dir / "model").is_dir()):
        return None
    before = parse(yaml.safe_load(config.read_text(encoding="utf-8")))
    if before.model_dump(mode="json") != cfg.model_dump(mode="json"):
        return None
    return _row(json.loads(metrics.read_text(encoding="utf-8")))


def _flat(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Scalar metrics of a split, a multi-output model's as ``output.metric``."""
    flat: dict[str, float] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            flat.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, int | float) and not isinstance(v, bool) and k != "count":
            flat[f"{prefix}{k}"] = float(v)
    return flat


def _row(metrics: dict[str, Any]) -> dict[str, Any]:
    """One fold's line: its test metrics, rows per split and training time."""
    test = metrics.get("test")
    if not isinstance(test, dict):
        raise ConfigError("a fold run has no test metrics; cross-validation needs them")
    rows = metrics.get("data", {}).get("rows", {})
    t = metrics.get("training", {})
    return {"metrics": _flat({k: v for k, v in test.items() if k != "per_class"}),
            "rows": rows, "seconds": t.get("seconds"), "epochs": t.get("epochs")}


def t_interval(values: list[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """Mean, standard deviation and the Student-t interval of the mean over ``values``."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n) \
        if n > 1 else float("nan")
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half,
            "n": n}


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per metric: :func:`t_interval` over the folds that report it."""
    names = list(dict.fromkeys(k for r in rows for k in r["metrics"]))
    return {m: t_interval([r["metrics"][m] for r in rows if m in r["metrics"]])
            for m in names}


def write_outputs(result: CVResult, base: Config, folds: int, repeats: int,
                  group: str | None) -> None:
    """``cv.json`` (everything), ``cv.csv`` (one line per fold) and ``cv.md`` (both
    tables) in the output folder."""
    out = result.dir
    out.mkdir(parents=True, exist_ok=True)
    head = {"name": base.name, "folds": folds, "repeats": repeats, "group": group,
            "stratified": base.data.split.stratify and group is None,
            "confidence": CONFIDENCE, "interval": "student-t over folds"}
    write_text(out / "cv.json", dumps_json({**head, "summary": result.summary,
                                            "folds": result.folds}, indent=2))
    names = list(result.summary)
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["repeat", "fold", "train_rows", "validation_rows", "test_rows", "seconds",
                *names])
    for r in result.folds:
        w.writerow([r["repeat"], r["fold"], *(r["rows"].get(s) for s in
                                              ("train", "validation", "test")),
                    r["seconds"], *(r["metrics"].get(m) for m in names)])
    write_text(out / "cv.csv", buf.getvalue())
    write_text(out / "cv.md", markdown(result, head))


def markdown(result: CVResult, head: dict[str, Any]) -> str:
    """The per-fold table and the summary (mean ± half-width, interval) as Markdown."""
    names = list(result.summary)
    kind = f"grouped by {head['group']!r}" if head["group"] else (
        "stratified" if head["stratified"] else "shuffled")
    lines = [f"# Cross-validation: {head['name']}", "",
             f"{head['folds']} folds ({kind}) × {head['repeats']} repeat(s); test split = "
             f"the held-out fold; 95% Student-t interval over the "
             f"{len(result.folds)} fold scores.", "",
             "| repeat | fold | train rows | test rows | " + " | ".join(names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for r in result.folds:
        cells = [f"{r['metrics'][m]:.4f}" if m in r["metrics"] else "" for m in names]
        lines.append(f"| {r['repeat']} | {r['fold']} | {r['rows'].get('train')} | "
                     f"{r['rows'].get('test')} | " + " | ".join(cells) + " |")
    if head["repeats"] > 1:
        lines += ["", "Repeats reuse the same rows: their fold scores are not independent, so "
                  "the interval is optimistic."]
    lines += ["", "| metric | mean | std | 95% CI |", "|---|---|---|---|"]
    for m, s in result.summary.items():
        lines.append(f"| {m} | {s['mean']:.4f} | {s['std']:.4f} | "
                     f"[{s['ci_low']:.4f}, {s['ci_high']:.4f}] |")
    return "\n".join(lines) + "\n"
