"""The dashboard (``layerwise ui``): the runs table, a run's page, a comparison of runs, the
registry and the tuning studies, as plain HTML pages with inline SVG charts.

No script, no stylesheet or font from elsewhere: every page is one self-contained HTML
document (it works offline and gives a browser nothing to fetch or fail on). It reads the
tracking store and writes nothing. Served on 127.0.0.1 unless told otherwise; on any other
address every request must carry the token (``?token=`` once, then a cookie, or an
``Authorization: Bearer`` header).
"""

from __future__ import annotations

import datetime as dt
import hmac
from html import escape
from typing import Any
from urllib.parse import urlencode

from layerwise.tracking import views
from layerwise.tracking.store import Store

LOOPBACK = ("127.0.0.1", "localhost", "::1")
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#17becf")
CSS = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left}th{background:#f3f3f3}a{color:#1558b0;text-decoration:none}
nav a{margin-right:1.2em;font-weight:600}.bad{color:#b00}.ok{color:#070}
svg{background:#fff;border:1px solid #ddd;margin:4px}.charts{display:flex;flex-wrap:wrap}
code{background:#f6f6f6;padding:0 3px}"""


def page(title: str, body: str) -> str:
    nav = ('<nav><a href="/">Runs</a><a href="/registry">Registry</a>'
           '<a href="/studies">Studies</a><a href="/drift">Drift</a></nav>')
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}"
            f" · layerwise</title><style>{CSS}</style></head><body>{nav}"
            f"<h1>{escape(title)}</h1>{body}</body></html>")


def when(t: float | None) -> str:
    return "—" if t is None else dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def html_table(header: list[str], rows: list[list[str]]) -> str:
    """A table of already-escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def line_chart(title: str, series: dict[str, list[tuple[float, float]]],
               w: int = 420, h: int = 240) -> str:
    """An SVG line chart: one polyline per series, axes with min/max labels, a legend."""
    pts = [p for s in series.values() for p in s if p[1] is not None]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-9)
    left, right, top, bottom = 52, 10, 24, 30
    sx = lambda x: left + (x - x0) / (x1 - x0) * (w - left - right)  # noqa: E731
    sy = lambda y: top + (y1 - y) / (y1 - y0) * (h - top - bottom)  # noqa: E731
    out = [f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">',
           f'<title>{escape(title)}</title>',
           f'<text x="{left}" y="15" font-size="13" font-weight="600">{escape(title)}</text>',
           f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" '
           'stroke="#999"/>', f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" '
           'stroke="#999"/>']
    for y in (y0, y1):
        out.append(f'<text x="{left - 4}" y="{sy(y) + 4:.1f}" font-size="10" '
                   f'text-anchor="end">{y:.4g}</text>')
    for x in (x0, x1):
        out.append(f'<text x="{sx(x):.1f}" y="{h - bottom + 14}" font-size="10" '
                   f'text-anchor="middle">{x:g}</text>')
    for i, (name, s) in enumerate(series.items()):
        c = COLORS[i % len(COLORS)]
        good = [(sx(x), sy(y)) for x, y in s if y is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in good)
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{path}"/>')
        if len(good) == 1:
            out.append(f'<circle cx="{good[0][0]:.1f}" cy="{good[0][1]:.1f}" r="3" '
                       f'fill="{c}"/>')
        out.append(f'<text x="{w - right - 4}" y="{top + 12 * (i + 1)}" font-size="10" '
                   f'text-anchor="end" fill="{c}">{escape(name)}</text>')
    return "".join(out) + "</svg>"


def curves(store: Store, run_id: str) -> dict[str, list[tuple[float, float]]]:
    """The run's per-epoch series by key (gradient norms left out: one per layer)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for key, step, value in store.metric_rows(run_id):
        if "/" not in key and key not in ("time", "skipped_steps"):
            out.setdefault(key, []).append((step, value))
    return out


def chart_groups(keys: set[str]) -> list[tuple[str, list[str]]]:
    """Charts to draw: losses together, then each other metric alone."""
    losses = sorted(k for k in keys if "loss" in k)
    rest = sorted(k for k in keys if "loss" not in k)
    return ([("loss", losses)] if losses else []) + [(k, [k]) for k in rest]


def status_cell(s: str) -> str:
    cls = "ok" if s == "finished" else "bad" if s in ("failed", "interrupted") else ""
    return f'<span class="{cls}">{escape(s)}</span>'


def runs_page(store: Store, q: dict[str, str]) -> str:
    """The runs table: filter by status/kind/name, sort by any column or final metric."""
    sort, desc = q.get("sort", "started_at"), q.get("desc", "1") == "1"
    found = store.runs(status=q.get("status") or None, kind=q.get("kind") or None,
                       name=q.get("name") or None)
    found = views.sort_runs(found, sort, desc)
    metrics = [k for k in ("test.accuracy", "test.macro_f1", "test.rmse", "validation.loss")
               if any(views.value_of(r, k) is not None for r in found)][:3]
    cols = [("name", "name"), ("kind", "kind"), ("status", "status"),
            ("started_at", "started"), ("duration_s", "seconds")] + [(m, m) for m in metrics]

    def link(key: str, label: str) -> str:
        flip = "0" if key == sort and desc else "1"
        return f'<a href="/?{urlencode({**q, "sort": key, "desc": flip})}">{escape(label)}</a>'
    rows = [[f'<input type=checkbox name=ids value="{r["id"]}">',
             f'<a href="/runs/{r["id"]}">{escape(r["name"])}</a>', escape(r["kind"]),
             status_cell(r["status"]), when(r["started_at"]), views.fmt(r["duration_s"]),
             *(views.fmt(views.value_of(r, m)) for m in metrics)] for r in found]
    filters = "".join(f'<label>{f} <input name={f} value="{escape(q.get(f, ""))}"></label> '
                      for f in ("status", "kind", "name"))
    body = (f'<form method=get action="/">{filters}<button>filter</button></form>'
            f'<form method=get action="/compare">'
            + html_table(["", *(link(k, lab) for k, lab in cols)], rows)
            + f'<button>compare selected</button></form><p>{len(found)} runs</p>')
    return page("Runs", body)


def _per_class(test: dict[str, Any]) -> str:
    per = test.get("per_class")
    if not isinstance(per, dict):
        return ""
    rows = [[escape(str(lab)), *(views.fmt(r.get(k)) for k in
                                 ("precision", "recall", "f1", "support"))]
            for lab, r in per.items() if isinstance(r, dict)]
    return "<h2>Per class (test)</h2>" + html_table(
        ["class", "precision", "recall", "f1", "support"], rows)


def _confusion(test: dict[str, Any]) -> str:
    cm, labels = test.get("confusion_matrix"), test.get("labels")
    if not isinstance(cm, list) or not cm or not isinstance(labels, list):
        return ""
    top = max(max(row) for row in cm) or 1
    rows = [[f"<b>{escape(str(labels[i]))}</b>",
             *(f'<span style="background:rgba(31,119,180,{v / top:.2f});padding:0 6px">'
               f'{v}</span>' for v in row)] for i, row in enumerate(cm)]
    return ("<h2>Confusion (test; rows true, columns predicted)</h2>"
            + html_table(["", *(escape(str(x)) for x in labels)], rows))


def _calibration(metrics: dict[str, Any]) -> str:
    flat = {k: v for k, v in views.final_scalars({"metrics": metrics}).items()
            if any(w in k for w in ("ece", "brier", "calibrat", "coverage", "ci_"))}
    if not flat:
        return ""
    return "<h2>Calibration and intervals</h2>" + html_table(
        ["metric", "value"], [[escape(k), views.fmt(v)] for k, v in flat.items()])


def run_page(store: Store, run_id: str) -> str:
    r = store.run(run_id)
    series = curves(store, r["id"])
    charts = "".join(line_chart(title, {k: series[k] for k in keys})
                     for title, keys in chart_groups(set(series)))
    metrics = r["metrics"] or {}
    final = views.final_scalars(r)
    info = html_table(["field", "value"], [[k, escape(views.fmt(v))] for k, v in [
        ("id", r["id"]), ("kind", r["kind"]), ("status", r["status"]), ("path", r["path"]),
        ("started", when(r["started_at"])), ("seconds", r["duration_s"]),
        ("config hash", r["config_hash"]), ("data hash", r["data_hash"]),
        ("seed", r["seed"]), ("error", r["error"]), ("tags", r["tags"] or None)]])
    env = html_table(["environment", "value"], [[escape(k), escape(str(v))] for k, v in
                                                views.flatten(r["environment"] or {}).items()])
    arts = html_table(["file", "bytes", "sha256"], [
        [escape(a["path"]), str(a["size"]), f"<code>{a['sha256']}</code>"]
        for a in store.artifacts(r["id"])])
    card = _card(store, r)
    body = (info + f'<div class="charts">{charts}</div>'
            + "<h2>Final metrics</h2>" + html_table(
                ["metric", "value"], [[escape(k), views.fmt(v)] for k, v in final.items()])
            + _per_class(metrics.get("test") or {}) + _confusion(metrics.get("test") or {})
            + _calibration(metrics) + "<h2>Config</h2>" + html_table(
                ["key", "value"], [[escape(k), escape(views.fmt(v))] for k, v in
                                   views.flatten(r["config"] or {}).items()])
            + env + "<h2>Artifacts</h2>" + arts + card)
    return page(f"Run {r['name']}", body)


def _card(store: Store, r: dict[str, Any]) -> str:
    """The model card, rebuilt from the store (as ``layerwise runs card`` writes it)."""
    from layerwise.tracking import cards, registry

    text = cards.markdown(r, registry.versions(store))
    return f"<h2>Model card</h2><pre>{escape(text)}</pre>"


def compare_page(store: Store, ids: list[str]) -> str:
    found = [store.run(i) for i in ids]
    if len(found) < 2:
        return page("Compare", "<p>Choose two or more runs on the runs page.</p>")
    names = [f"{r['name']} ({r['id'][:6]})" for r in found]
    per_run = [curves(store, r["id"]) for r in found]
    keys = set.intersection(*(set(c) for c in per_run))
    charts = "".join(line_chart(k, {n: c[k] for n, c in zip(names, per_run)})
                     for k in sorted(keys))
    diff = views.config_diff(found)
    diff_t = html_table(["config key", *map(escape, names)], [
        [escape(k), *(escape(views.fmt(v)) for v in vals)] for k, vals in diff.items()]
    ) if diff else "<p>The configs are the same.</p>"
    deltas = views.metric_deltas(found)
    rows = [[escape(k), views.fmt(vals[0]), *(f"{views.fmt(v)} ({views.signed(d)})"
                                              for v, d in zip(vals[1:], ds[1:]))]
            for k, (vals, ds) in deltas.items()]
    body = (f'<div class="charts">{charts}</div><h2>Config differences</h2>{diff_t}'
            "<h2>Final metrics (difference from the first run)</h2>"
            + html_table(["metric", *map(escape, names)], rows))
    return page("Compare runs", body)


def registry_page(store: Store) -> str:
    from layerwise.tracking import registry

    rows = [[escape(v["name"]), str(v["version"]), escape(", ".join(v["aliases"]) or "—"),
             f'<a href="/runs/{v["run_id"]}">{v["run_id"][:8]}</a>' if v["run_id"] else "—",
             when(v["created_at"]), escape(v["path"]),
             f"<code>models:/{escape(v['name'])}/{v['version']}</code>"]
            for v in registry.versions(store)]
    return page("Registry", html_table(["name", "version", "aliases", "run", "registered",
                                        "path", "URI"], rows) if rows
                else "<p>No registered models.</p>")


def studies_page(store: Store) -> str:
    """Each study's trials (from the runs tagged with it): value history, parameters."""
    trials: dict[str, list[dict[str, Any]]] = {}
    for r in store.runs(kind="tune"):
        trials.setdefault(str((r["tags"] or {}).get("study")), []).append(r)
    parts = []
    for study, rs in sorted(trials.items()):
        rs.sort(key=lambda r: (r["tags"] or {}).get("trial", 0))
        logged = {k for k, _, _ in store.metric_rows(rs[0]["id"])}
        val_key = next((k for k in ("val_accuracy", "val_loss") if k in logged), None)
        rows = [[str(r["tags"].get("trial")), f'<a href="/runs/{r["id"]}">{r["id"][:8]}</a>',
                 "pruned" if r["tags"].get("pruned") else escape(r["status"]),
                 escape(", ".join(f"{k}={views.fmt(v)}" for k, v in
                                  (r["tags"].get("params") or {}).items()))] for r in rs]
        last = {r["tags"].get("trial"): _last(store, r["id"], val_key) for r in rs}
        chart = line_chart(f"{study}: {val_key} per trial", {
            str(val_key): [(t, v) for t, v in last.items() if v is not None]}) if val_key else ""
        parts.append(f"<h2>{escape(study)}</h2>{chart}" + _importance(store, study)
                     + html_table(["trial", "run", "state", "parameters"], rows))
    return page("Tuning studies", "".join(parts) or "<p>No tuning studies yet.</p>")


def _importance(store: Store, study: str) -> str:
    """The parameters' importance in the study (Optuna's fANOVA), as bars."""
    from layerwise.tracking.studies import importances

    found = importances(store.uri, study)
    if isinstance(found, str):
        return f"<p>Parameter importance: {escape(found)}.</p>"
    rows = [[escape(k), f'<span style="display:inline-block;background:#4a7;height:0.8em;'
                        f'width:{200 * v:.0f}px"></span> {v:.2f}'] for k, v in found.items()]
    return "<h3>Parameter importance</h3>" + html_table(["parameter", "share"], rows)


def drift_page(store: Store) -> str:
    """Every drift check (``layerwise monitor``) in the store, newest first: model, rows,
    verdict and the drifted features, each linked to its report."""
    rows = []
    for r in store.runs(kind="monitor"):
        rep = (r["metrics"] or {}).get("drift") or {}
        verdict = (f'<span class="bad">drift: {escape(", ".join(rep.get("drifted") or []))}'
                   "</span>" if rep.get("drift") else '<span class="ok">no drift</span>')
        rows.append([f'<a href="/drift/{r["id"]}">{when(r["started_at"])}</a>',
                     escape(r["name"]), escape(str((r["tags"] or {}).get("data", "—"))),
                     views.fmt(rep.get("rows")), verdict])
    return page("Drift checks", html_table(["checked", "model", "live data", "rows",
                                             "verdict"], rows) if rows else
                "<p>No drift checks yet: <code>layerwise monitor MODEL LIVE_DATA</code> "
                "records one.</p>")


def drift_report_page(store: Store, run_id: str) -> str:
    """One drift check: each feature's test, statistics and whether it drifted."""
    r = store.run(run_id)
    rep = (r["metrics"] or {}).get("drift") or {}
    cols = ["type", "test", "live_count", "psi", "p_value", "p_adjusted"]
    rows = [[escape(name), *(escape(views.fmt(f.get(c))) for c in cols),
             '<span class="bad">drifted</span>' if f.get("drift") else "—"]
            for name, f in (rep.get("features") or {}).items()]
    tags = r["tags"] or {}
    head = html_table(["field", "value"], [[k, escape(views.fmt(v))] for k, v in [
        ("model", tags.get("model")), ("live data", tags.get("data")),
        ("rows", rep.get("rows")), ("alpha", rep.get("alpha")),
        ("drifted", ", ".join(rep.get("drifted") or []) or "none"),
        ("report", tags.get("report"))]])
    return page(f"Drift check of {r['name']}", head + "<h2>Features</h2>"
                + html_table(["feature", *cols, "drift"], rows))


def _last(store: Store, run_id: str, key: str | None) -> float | None:
    rows = [(s, v) for k, s, v in store.metric_rows(run_id) if k == key]
    return rows[-1][1] if rows else None


def authorised(token: str | None, headers: dict[str, str], query: dict[str, str],
               cookies: dict[str, str]) -> bool:
    """Whether a request carries the token (always, when there is none to carry)."""
    if not token:
        return True
    given = query.get("token") or cookies.get("layerwise_token") or \
        headers.get("authorization", "").removeprefix("Bearer ").strip()
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())

