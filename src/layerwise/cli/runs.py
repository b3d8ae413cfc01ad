"""``layerwise runs list|show|compare|delete``: the runs in the tracking store.

The store is ``runs/layerwise.db`` unless ``LAYERWISE_TRACKING_URI`` (or ``--store``)
names another database.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

runs = typer.Typer(name="runs", no_args_is_help=True,
                   help="List, show, compare and delete tracked runs.")

StoreOpt = Annotated[Optional[str], typer.Option("--store", help="tracking database URL "  # noqa: UP007
                     "(default: $LAYERWISE_TRACKING_URI, else sqlite:///runs/layerwise.db)")]
HEADLINES = ("test.accuracy", "test.rmse", "validation.accuracy", "validation.rmse",
             "test.loss")


def open_store(uri: str | None) -> Any:
    from layerwise.tracking.store import open_store as open_

    return open_(uri)


def when(t: float | None) -> str:
    return "—" if t is None else dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def table(header: list[str], rows: list[list[str]]) -> str:
    """Plain aligned columns (pipes and greps well)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


@runs.command("list")
def list_(
    status: Annotated[Optional[str], typer.Option(help="running, finished, failed or "  # noqa: UP007
                      "interrupted")] = None,
    kind: Annotated[Optional[str], typer.Option(help="train, tune, cv, ...")] = None,  # noqa: UP007
    name: Annotated[Optional[str], typer.Option(help="run name; * matches anything")] = None,  # noqa: UP007
    where: Annotated[Optional[list[str]], typer.Option("--where", help="keep runs where "  # noqa: UP007
                     "KEY OP VALUE holds, e.g. test.accuracy>0.9 or config.seed=0")] = None,
    sort: Annotated[str, typer.Option(help="a column (started_at, duration_s, name), a "
                    "final metric (test.accuracy) or a config key (config.train.epochs)")
                    ] = "started_at",
    ascending: Annotated[bool, typer.Option("--ascending", help="smallest first")] = False,
    metric: Annotated[Optional[list[str]], typer.Option("--metric", "-m", help="final "  # noqa: UP007
                      "metrics to show (default: the test/validation headline)")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many rows")] = 50,
    store: StoreOpt = None,
) -> None:
    """The runs, newest first (or sorted by --sort), with their headline metrics."""
    from layerwise.tracking import views

    conds = [views.parse_where(w) for w in where or []]
    found = [r for r in open_store(store).runs(status=status, kind=kind, name=name)
             if views.matches(r, conds)]
    found = views.sort_runs(found, sort, descending=not ascending)[:limit]
    shown = metric or [k for k in HEADLINES
                       if any(views.value_of(r, k) is not None for r in found)][:2]
    header = ["id", "name", "kind", "status", "started", "seconds", *shown]
    rows = [[r["id"][:8], r["name"], r["kind"], r["status"], when(r["started_at"]),
             views.fmt(r["duration_s"]), *(views.fmt(views.value_of(r, k)) for k in shown)]
            for r in found]
    typer.echo(table(header, rows) if rows else "no runs match")


def _curves(s: Any, run_id: str, last: int) -> list[str]:
    """The last epochs' losses and validation metrics as a table."""
    from layerwise.tracking import views

    by_step: dict[int, dict[str, float | None]] = {}
    for key, step, value in s.metric_rows(run_id):
        if key.startswith(("train_loss", "val_")) or key == "lr":
            by_step.setdefault(step, {})[key] = value
    if not by_step:
        return []
    keys = sorted({k for row in by_step.values() for k in row})
    steps = sorted(by_step)[-last:]
    rows = [[str(st), *(views.fmt(by_step[st].get(k)) for k in keys)] for st in steps]
    return ["", f"epochs ({len(by_step)} logged; the last {len(steps)}):",
            table(["epoch", *keys], rows)]


@runs.command("show")
def show(
    run: Annotated[str, typer.Argument(help="run id (or its first characters) or name")],
    epochs: Annotated[int, typer.Option(min=1, help="epochs to show")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="everything, as JSON")] = False,
    store: StoreOpt = None,
) -> None:
    """One run: status, config, environment, per-epoch and final metrics, artifacts."""
    import yaml

    from layerwise.files import dumps_json
    from layerwise.tracking import views

    s = open_store(store)
    r = s.run(run)
    arts = s.artifacts(r["id"])
    if as_json:
        typer.echo(dumps_json({**r, "artifacts": arts, "history": s.metric_rows(r["id"])},
                              indent=2))
        return
    lines = [f"run {r['id']}  {r['name']}  ({r['kind']}, {r['status']})",
             f"path: {r['path']}", f"started {when(r['started_at'])}, ended "
             f"{when(r['ended_at'])}, {views.fmt(r['duration_s'])} s",
             f"config hash {r['config_hash']}, data hash {r['data_hash']}, seed {r['seed']}"]
    if r["error"]:
        lines.append(f"error: {r['error']}")
    if r["tags"]:
        lines.append(f"tags: {r['tags']}")
    env = r["environment"] or {}
    lines += ["", "environment:", *(f"  {k}: {v}" for k, v in views.flatten(env).items())]
    lines += ["", "config:", *("  " + x for x in yaml.safe_dump(
        r["config"] or {}, sort_keys=False).splitlines())]
    lines += _curves(s, r["id"], epochs)
    final = views.final_scalars(r)
    if final:
        lines += ["", "final metrics:", *(f"  {k}: {views.fmt(v)}" for k, v in final.items())]
    lines += ["", f"artifacts ({len(arts)}):",
              *(f"  {a['sha256'][:12]}  {a['size']:>10}  {a['path']}" for a in arts)]
    typer.echo("\n".join(lines))


@runs.command("compare")
def compare(
    run_refs: Annotated[list[str], typer.Argument(metavar="RUN...", help="two or more runs")],
    store: StoreOpt = None,
) -> None:
    """The config keys that differ between the runs, and each final metric with its
    difference from the first run."""
    from layerwise.errors import ConfigError
    from layerwise.tracking import views

    if len(run_refs) < 2:
        raise ConfigError("runs compare needs two or more runs")
    s = open_store(store)
    found = [s.run(ref) for ref in run_refs]
    ids = [f"{r['id'][:8]} {r['name']}" for r in found]
    diff = views.config_diff(found)
    out = ["config differences:" if diff else "the configs are the same"]
    if diff:
        out.append(table(["key", *ids], [[k, *map(views.fmt, v)] for k, v in diff.items()]))
    deltas = views.metric_deltas(found)
    if deltas:
        header = ["metric", ids[0], *(f"{i} (Δ)" for i in ids[1:])]
        rows = [[k, views.fmt(vals[0]), *(f"{views.fmt(v)} ({views.signed(d)})"
                                          for v, d in zip(vals[1:], ds[1:]))]
                for k, (vals, ds) in deltas.items()]
        out += ["", "final metrics:", table(header, rows)]
    typer.echo("\n".join(out))


@runs.command("delete")
def delete(
    run_refs: Annotated[list[str], typer.Argument(metavar="RUN...", help="runs to delete")],
    files: Annotated[bool, typer.Option("--files", help="also remove each run's "
                     "directory")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    store: StoreOpt = None,
) -> None:
    """Remove runs from the store (and with --files, their directories)."""
    s = open_store(store)
    found = [s.run(ref) for ref in run_refs]
    names = ", ".join(f"{r['id'][:8]} ({r['name']})" for r in found)
    if not yes and not typer.confirm(f"delete {names}" + (" and their folders" if files
                                                          else "") + "?"):
        raise typer.Abort()
    for r in found:
        s.delete_run(r["id"])
        if files and r["path"] and Path(r["path"]).is_dir():
            shutil.rmtree(r["path"])
    typer.echo(f"deleted {len(found)} run(s)")


@runs.command("card")
def card(
    run: Annotated[str, typer.Argument(help="run id (or its first characters) or name")],
    as_html: Annotated[bool, typer.Option("--html", help="HTML instead of Markdown")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="write it here "  # noqa: UP007
                      "(default: stdout)")] = None,
    store: StoreOpt = None,
) -> None:
    """The run's model card, rebuilt from the store: model, data, hyperparameters,
    evaluation, lineage (registered versions too), intended use and limitations."""
    from layerwise.files import check_output_file, write_text
    from layerwise.tracking import cards, registry

    check_output_file(output, "--output", (".html", ".htm") if as_html else (".md",))
    s = open_store(store)
    r = s.run(run)
    text = (cards.html if as_html else cards.markdown)(r, registry.versions(s))
    if output:
        write_text(output, text)
        typer.echo(f"model card written to {output}")
    else:
        typer.echo(text)
