"""``layerwise datasets`` and ``layerwise schema``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def datasets() -> None:
    """List the built-in data sets with their source package and licence."""
    from rich.console import Console
    from rich.table import Table

    from layerwise.data.catalogue import CATALOGUE, available

    table = Table(title="layerwise data sets (load offline; nothing is downloaded)")
    for col in ("name", "description", "source", "licence", "installed"):
        table.add_column(col)
    for e in CATALOGUE.values():
        table.add_row(e.name, e.description, e.source, e.licence,
                      "yes" if available(e.name) else f"no: {e.install}")
    Console(width=160).print(table)


def schema(
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="write to a file")  # noqa: UP007
                      ] = None,
    rl: Annotated[bool, typer.Option("--rl", help="the schema of a reinforcement-learning "
                                     "config (env, agent, network, train)")] = False,
    recommend: Annotated[bool, typer.Option("--recommend", help="the schema of a "
                         "recommendation config (interactions, model, ranking)")] = False,
) -> None:
    """Print the JSON Schema of the config file (for editor completion and checks)."""
    from layerwise.config import json_schema
    from layerwise.files import check_output_file, write_text

    check_output_file(output, "--output")
    kind = "rl" if rl else "recommend" if recommend else "supervised"
    text = json.dumps(json_schema(kind), indent=2)
    if output:
        write_text(output, text + "\n")
        print(f"JSON Schema written to {output}")
    else:
        print(text)
