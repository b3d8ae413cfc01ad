"""``layerwise registry register|list|alias|unalias|resolve``: named model versions.

A registered version is named ``models:/NAME/VERSION``; an alias ``models:/NAME@ALIAS``;
either is accepted wherever a model directory is (predict, evaluate, ...).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from layerwise.cli.runs import StoreOpt, open_store, table, when

registry = typer.Typer(name="registry", no_args_is_help=True,
                       help="Register models from runs, number their versions, move aliases.")


@registry.command("register")
def register(
    run: Annotated[str, typer.Argument(help="run id (or its first characters) or name; or "
                   "a run or model folder")],
    name: Annotated[str, typer.Option("--name", "-n", help="the model's registered name")],
    alias: Annotated[Optional[list[str]], typer.Option("--alias", "-a", help="point this "  # noqa: UP007
                     "alias (e.g. staging) at the new version")] = None,
    description: Annotated[Optional[str], typer.Option(help="a note kept with the "  # noqa: UP007
                           "version")] = None,
    store: StoreOpt = None,
) -> None:
    """Register the model a run trained as the next version of NAME."""
    from layerwise.tracking import registry as reg

    s = open_store(store)
    version = reg.register(s, run, name, description)
    for a in alias or []:
        reg.set_alias(s, name, a, version)
    extra = "".join(f", models:/{name}@{a}" for a in alias or [])
    typer.echo(f"registered models:/{name}/{version}{extra}")


@registry.command("list")
def list_(
    name: Annotated[Optional[str], typer.Argument(help="one model's versions")] = None,  # noqa: UP007
    store: StoreOpt = None,
) -> None:
    """Registered versions with their aliases, runs and model directories."""
    from layerwise.tracking import registry as reg

    rows = [[v["name"], str(v["version"]), ",".join(v["aliases"]) or "—",
             (v["run_id"] or "—")[:8], when(v["created_at"]), v["path"]]
            for v in reg.versions(open_store(store), name)]
    typer.echo(table(["name", "version", "aliases", "run", "registered", "path"], rows)
               if rows else "no registered models")


@registry.command("alias")
def alias(
    name: Annotated[str, typer.Argument(help="registered model name")],
    version: Annotated[int, typer.Argument(min=1, help="the version the alias points at")],
    alias_: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. production, staging")],
    store: StoreOpt = None,
) -> None:
    """Point models:/NAME@ALIAS at VERSION (moving it from where it pointed)."""
    from layerwise.tracking import registry as reg

    reg.set_alias(open_store(store), name, alias_, version)
    typer.echo(f"models:/{name}@{alias_} → version {version}")


@registry.command("unalias")
def unalias(
    name: Annotated[str, typer.Argument(help="registered model name")],
    alias_: Annotated[str, typer.Argument(metavar="ALIAS")],
    store: StoreOpt = None,
) -> None:
    """Remove an alias."""
    from layerwise.tracking import registry as reg

    reg.remove_alias(open_store(store), name, alias_)
    typer.echo(f"removed models:/{name}@{alias_}")


@registry.command("resolve")
def resolve(
    uri: Annotated[str, typer.Argument(help="models:/NAME@ALIAS, models:/NAME/VERSION or "
                   "models:/NAME")],
) -> None:
    """Print the model directory a models:/ URI names (its files checked)."""
    from layerwise.tracking.registry import resolve_model

    typer.echo(str(resolve_model(uri)))
