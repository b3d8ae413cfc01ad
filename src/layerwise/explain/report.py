"""One self-contained HTML page per run: ``layerwise report RUN_DIR [--output FILE]``.

The page needs no network and runs no script: pictures are embedded as base64 PNG, styles
are inline. Sections, each present when the run has what it needs: the config, the data
summary, scores per split, learning curves, per-class results and the confusion matrix,
calibration and conformal coverage (from ``RUN/evaluation/``, written by ``layerwise
evaluate`` and ``layerwise calibrate``), attributions for a few test rows, the doctor's
findings and the model card.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from pathlib import Path
from typing import Any

from layerwise.errors import ArtifactError

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.4}
h1{border-bottom:2px solid #444}h2{margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right;font-size:13px}th{background:#f3f3f3}td.l,th.l{text-align:left}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:12px;white-space:pre-wrap}
img{max-width:100%;border:1px solid #eee;margin:4px}.finding{background:#fff6e5;
border-left:4px solid #e67e22;padding:.5em 1em;margin:.6em 0}.ok{color:#1e8449}
.gallery{display:flex;flex-wrap:wrap;gap:6px}.muted{color:#777;font-size:12px}
"""


def _esc(v: Any) -> str:
    return html.escape(str(v))


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return _esc(v)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f'<th class="{"l" if i == 0 else ""}">{_esc(h)}</th>'
                   for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i == 0 else ""}">{_num(c)}</td>'
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _scalars(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool)}


# ------------------------------------------------------------------------- sections
def section_config(run: Path) -> str:
    text = (run / "config.yaml").read_text(encoding="utf-8")
    return (f"<h2>Config</h2><details><summary>config.yaml ({len(text.splitlines())} lines)"
            f"</summary><pre>{_esc(text)}</pre></details>")


def section_data(metrics: dict[str, Any]) -> str:
    info = metrics.get("data") or {}
    if not info:
        return ""
    rows = [[k, json.dumps(v) if isinstance(v, dict | list) else v] for k, v in info.items()]
    return "<h2>Data</h2>" + _table(["", "value"], rows)


def section_scores(metrics: dict[str, Any]) -> str:
    splits = [s for s in ("train", "validation", "test") if isinstance(metrics.get(s), dict)]
    if not splits:
        return ""
    keys = list(dict.fromkeys(k for s in splits for k in _scalars(metrics[s])))
    rows = [[k, *(metrics[s].get(k, "") for s in splits)] for k in keys]
    t = metrics.get("training", {})
    extra = "".join(f"<li>{_esc(k)}: {_num(v)}</li>" for k, v in _scalars(t).items())
    return ("<h2>Scores</h2>" + _table(["metric", *splits], rows)
            + (f"<p class='muted'>training</p><ul class='muted'>{extra}</ul>" if extra else ""))


def section_curves(run: Path) -> str:
    curves = run / "curves.png"
    return f"<h2>Learning curves</h2>{_img(curves, 'learning curves')}" \
        if curves.is_file() else ""


def section_classes(ev: dict[str, Any]) -> str:
    per = ev.get("per_class")
    out = ""
    if isinstance(per, dict) and per:
        rows = [[c, v.get("precision"), v.get("recall"), v.get("f1"), v.get("support")]
                for c, v in per.items()]
        out += "<h2>Per-class results (test)</h2>" + _table(
            ["class", "precision", "recall", "F1", "support"], rows)
    cm: Any = ev.get("confusion_matrix")
    labels: Any = ev.get("labels")
    if isinstance(cm, dict):
        cm, labels = cm.get("matrix"), cm.get("labels", labels)
    if isinstance(cm, list) and cm and labels:
        out += "<h2>Confusion matrix (rows: true, columns: predicted)</h2>" + _matrix(cm,
                                                                                    labels)
    return out


def _matrix(cm: list[list[int]], labels: list[str]) -> str:
    top = max(max(r) for r in cm) or 1
    head = "".join(f"<th>{_esc(x)}</th>" for x in labels)
    body = ""
    for lab, row in zip(labels, cm):
        cells = "".join(
            f'<td style="background:rgba(41,128,185,{0.85 * v / top:.3f});'
            f'color:{"#fff" if v > top / 2 else "#222"}">{v}</td>' for v in row)
        body += f'<tr><th class="l">{_esc(lab)}</th>{cells}</tr>'
    return f"<table><tr><th></th>{head}</tr>{body}</table>"


def section_evaluation(run: Path, ev: dict[str, Any]) -> str:
    """Calibration, conformal coverage and every picture of ``RUN/evaluation``."""
    out = ""
    cal, conf = ev.get("calibration"), ev.get("conformal")
    if isinstance(cal, dict):
        out += "<h2>Calibration</h2>" + _table(["", "value"], [[k, v] for k, v in
                                                              _scalars(cal).items()])
    if isinstance(conf, dict):
        out += "<h2>Conformal coverage</h2>" + _table(["", "value"], [[k, v] for k, v in
                                                                     _scalars(conf).items()])
    boot = ev.get("bootstrap")
    if isinstance(boot, dict) and boot:
        rows = [[k, v.get("value"), v.get("low"), v.get("high")] for k, v in boot.items()
                if isinstance(v, dict)]
        out += "<h2>Bootstrap 95% intervals (test)</h2>" + _table(
            ["metric", "value", "low", "high"], rows)
    pictures = sorted((run / "evaluation").glob("*.png")) if (run / "evaluation").is_dir() \
        else []
    if pictures:
        out += "<h2>Evaluation plots</h2><div class='gallery'>" + "".join(
            _img(p, p.stem) for p in pictures) + "</div>"
    return out


def section_attributions(run: Path, rows: int) -> str:
    """A few test rows explained (attention maps for a transformer over text)."""
    if not (run / "model").is_dir() or rows <= 0:
        return ""
    from layerwise.data.build import build
    from layerwise.errors import LayerwiseError
    from layerwise.explain import explain
    from layerwise.inference.predictor import Predictor

    try:
        model = Predictor.load(run / "model")
        raw = build(model.config).raw_test
        if raw is None:
            return ""
        first = {k: list(v[:rows]) for k, v in raw.items()}
        method = "attention" if model.config.model.family == "transformer" and \
            model.schema.texts else "integrated_gradients"
        with tempfile.TemporaryDirectory() as tmp:
            explain(model, first, method=method, output_dir=tmp)
            pics = sorted(Path(tmp).glob("*.png"))
            imgs = "".join(_img(p, p.stem) for p in pics)
    except LayerwiseError as e:
        return f"<h2>Attributions</h2><p class='muted'>not available: {_esc(e)}</p>"
    return (f"<h2>Attributions ({_esc(method)}, first {rows} test rows)</h2>"
            f"<div class='gallery'>{imgs}</div>")


def section_doctor(run: Path, data: bool) -> str:
    from layerwise.explain.doctor import diagnose

    found = diagnose(run, data=data)
    if not found:
        return "<h2>Doctor</h2><p class='ok'>no problems found</p>"
    items = "".join(
        f"<div class='finding'><b>{_esc(f.title)}</b><br>{_esc(f.evidence)}<br>"
        f"try: {_esc(f.change)}" + (f"<br><code>{_esc(' '.join('--set ' + s for s in f.set))}"
                                    "</code>" if f.set else "") + "</div>" for f in found)
    return f"<h2>Doctor</h2>{items}"


def section_card(run: Path) -> str:
    card = run / "model" / "card.md"
    return f"<h2>Model card</h2><pre>{_esc(card.read_text(encoding='utf-8'))}</pre>" \
        if card.is_file() else ""


# ------------------------------------------------------------------------- the page
def build_report(run_dir: str | Path, *, rows: int = 4, data: bool = True) -> str:
    """The HTML text of the report of ``run_dir``."""
    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise ArtifactError(f"{run} is not a run folder: it has no config.yaml")
    metrics = _json(run / "metrics.json")
    ev = _json(run / "evaluation" / "metrics.json") or metrics.get("test", {})
    name = (metrics.get("data") or {}).get("name") or run.name
    parts = [section_scores(metrics), section_config(run), section_data(metrics),
             section_curves(run), section_classes(ev), section_evaluation(run, ev),
             section_attributions(run, rows), section_doctor(run, data), section_card(run)]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>layerwise report: {_esc(name)}</title><style>{STYLE}</style></head>"
            f"<body><h1>Run report: {_esc(run.name)}</h1>"
            f"<p class='muted'>{_esc(run.resolve())}</p>{''.join(parts)}</body></html>")


def write_report(run_dir: str | Path, output: str | Path | None = None, **kw: Any) -> Path:
    """Write the report (default ``RUN_DIR/report.html``); returns its path."""
    from layerwise.files import write_text

    path = Path(output) if output else Path(run_dir) / "report.html"
    write_text(path, build_report(run_dir, **kw))
    return path
