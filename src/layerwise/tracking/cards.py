"""Model cards regenerated from the tracking store (``layerwise runs card RUN``).

The card the run wrote at the end of training (``model/README.md``) is a snapshot; this one
is rebuilt from the run's record whenever asked, so it also shows what came later: the
registered versions and aliases, calibration or cross-validation results stored in the
run's metrics. Sections: model, data, hyperparameters, evaluation (per split, per class,
calibration, intervals), lineage (hashes, environment, registry), intended use and
limitations. Markdown, or HTML from the same sections.
"""

from __future__ import annotations

from html import escape
from typing import Any

from layerwise.tracking import views
from layerwise.tracking.card import card_fields

Section = tuple[str, list[str], list[tuple[list[str], list[list[str]]]]]  # title, lines, tables
INTERVALS = ("ece", "brier", "calibrat", "coverage", "ci_low", "ci_high", "temperature")


def _model(r: dict[str, Any]) -> Section:
    cfg = r.get("config") or {}
    m = views.flatten(cfg.get("model") or {})
    params = views.value_of(r, "training.parameters")
    lines = [f"family: `{m.get('family', '—')}`",
             f"parameters: {params:,}" if isinstance(params, int) else "parameters: —",
             "inputs: " + ", ".join(f"{i.get('name')} ({i.get('type')})"
                                    for i in cfg.get("inputs") or []),
             "outputs: " + ", ".join(f"{o.get('name')} ({o.get('type')})"
                                     for o in cfg.get("outputs") or [])]
    rows = [[k, views.fmt(v)] for k, v in m.items() if k != "family"]
    return ("Model", lines, [(["setting", "value"], rows)] if rows else [])


def _data(r: dict[str, Any]) -> Section:
    data = (r.get("metrics") or {}).get("data") or {}
    cfg = (r.get("config") or {}).get("data") or {}
    lines = [f"source: {data.get('source') or cfg.get('dataset') or cfg.get('path')}",
             f"rows: {data.get('rows', '—')}", f"data hash: `{r.get('data_hash')}`"]
    rows = [[k, views.fmt(v)] for k, v in views.flatten(cfg).items()]
    return ("Data", lines, [(["setting", "value"], rows)])


def _hyper(r: dict[str, Any]) -> Section:
    train = views.flatten(((r.get("config") or {}).get("train")) or {})
    rows = [[k, views.fmt(v)] for k, v in train.items() if k not in ("progress", "threads")]
    return ("Hyperparameters", [f"seed: {r.get('seed')}",
                                f"config hash: `{r.get('config_hash')}`"],
            [(["setting", "value"], rows)])


def _evaluation(r: dict[str, Any]) -> Section:
    metrics = r.get("metrics") or {}
    lines = []
    for split in ("train", "validation", "test"):
        m = metrics.get(split) or {}
        scalars = {k: v for k, v in m.items() if views.number(v) is not None}
        if scalars:
            lines.append(f"{split}: " + ", ".join(f"{k} {views.fmt(v)}"
                                                  for k, v in scalars.items()))
    tables = []
    per = (metrics.get("test") or {}).get("per_class")
    if isinstance(per, dict):
        tables.append((["class", "precision", "recall", "f1", "support"],
                       [[str(c), *(views.fmt(x.get(k)) for k in ("precision", "recall", "f1",
                                                                 "support"))]
                        for c, x in per.items() if isinstance(x, dict)]))
    extra = {k: v for k, v in views.final_scalars(r).items()
             if any(w in k for w in INTERVALS)}
    if extra:
        tables.append((["calibration / interval", "value"],
                       [[k, views.fmt(v)] for k, v in extra.items()]))
    else:
        lines.append("calibration: not measured for this run")
    return ("Evaluation", lines or ["no final metrics recorded"], tables)


def _lineage(r: dict[str, Any], versions: list[dict[str, Any]]) -> Section:
    env = r.get("environment") or {}
    lines = [f"run `{r['id']}` ({r['kind']}, {r['status']}), {views.fmt(r.get('duration_s'))}"
             " s", f"git commit: `{env.get('git_commit')}`",
             f"machine: {env.get('cpu_kind')} ({env.get('cpu')})",
             "versions: " + ", ".join(f"{k} {v}" for k, v in
                                      (env.get("versions") or {}).items())]
    tags = r.get("tags") or {}
    for key in ("parent", "compressed_from", "study", "trial"):
        if key in tags:
            lines.append(f"{key}: {tags[key]}")
    rows = [[f"models:/{v['name']}/{v['version']}", ", ".join(v["aliases"]) or "—"]
            for v in versions if v.get("run_id") == r["id"]]
    return ("Lineage", lines, [(["registered as", "aliases"], rows)] if rows else [])


def sections(r: dict[str, Any], versions: list[dict[str, Any]]) -> list[Section]:
    use = [f"{title}: {text}" for title, text in card_fields(r.get("config") or {})]
    return [_model(r), _data(r), _hyper(r), _evaluation(r), _lineage(r, versions),
            ("Intended use and limitations", use, [])]


def markdown(r: dict[str, Any], versions: list[dict[str, Any]]) -> str:
    out = [f"# Model card: {r['name']}", "", "Regenerated by layerwise from the tracking "
           "store.", ""]
    for title, lines, tables in sections(r, versions):
        out += [f"## {title}", "", *(f"- {x}" for x in lines), ""]
        for header, rows in tables:
            out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                    *("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                      for row in rows), ""]
    return "\n".join(out)


def html(r: dict[str, Any], versions: list[dict[str, Any]]) -> str:
    parts = [f"<h1>Model card: {escape(r['name'])}</h1>",
             "<p>Regenerated by layerwise from the tracking store.</p>"]
    for title, lines, tables in sections(r, versions):
        parts.append(f"<h2>{escape(title)}</h2><ul>"
                     + "".join(f"<li>{escape(x).replace('`', '')}</li>" for x in lines)
                     + "</ul>")
        for header, rows in tables:
            parts.append("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header)
                         + "</tr>" + "".join("<tr>" + "".join(f"<td>{escape(c)}</td>"
                                                              for c in row) + "</tr>"
                                             for row in rows) + "</table>")
    style = ("body{font:14px system-ui,sans-serif;margin:1.5em}table{border-collapse:"
             "collapse}td,th{border:1px solid #ccc;padding:2px 8px}")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Model card: "
            f"{escape(r['name'])}</title><style>{style}</style></head><body>"
            + "".join(parts) + "</body></html>")
