"""``layerwise init DATA [--target COL] [--output FILE] [--train]``: a first config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def init(
    data: Annotated[Path, typer.Argument(help="a CSV, Parquet or JSON Lines file, or a "
                                         "folder of images (one sub-folder per class)")],
    target: Annotated[Optional[str], typer.Option("--target", "-t", help="the column to "  # noqa: UP007
                      "predict (default: one named like a label, else the last)")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="the config to "  # noqa: UP007
                      "write (default: <data name>.yaml in the current folder)")] = None,
    train: Annotated[bool, typer.Option("--train", help="train the written config at "
                                        "once (into runs/<name>)")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing "
                                            "config file")] = False,
    cv: Annotated[bool, typer.Option("--cv/--no-cv", help="on a small table (under 1,000 "
                                     "training rows) choose between the MLP and a linear "
                                     "model by 5-fold cross-validation on the training "
                                     "rows")] = True,
) -> None:
    """Look at a data file, infer each column's type and write a commented config that
    trains as is; the inferred types are printed with their evidence."""
    from layerwise.data.proposal import propose
    from layerwise.errors import ConfigError

    stem = data.stem if data.is_file() else data.resolve().name
    path = output or Path(f"{stem}.yaml")
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError(f"--output {path}: a config file ends in .yaml or .yml")
    if path.is_dir() or (path.exists() and not overwrite):
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it"
                          if path.is_file() else f"--output {path} is a folder")
    proposal = propose(data, target)
    _show(proposal)
    _check(proposal.yaml(path, _name(stem)), path)
    if cv and proposal.small_table:
        _choose(proposal, path, _name(stem))
    print(f"wrote {path}; train it with: layerwise train {path}")
    if train:
        from layerwise.cli.train import train as run_train

        run_train(path)


def _check(text: str, path: Path) -> None:
    """Write the config (atomically) and parse it back, so a written config is valid."""
    from layerwise.config import parse
    from layerwise.files import write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)
    try:
        parse(path)
    except Exception:
        path.unlink()  # never leave a config behind that does not parse
        raise


def _choose(proposal: object, path: Path, name: str) -> None:
    """Cross-validate the proposed MLP against a linear model on the written config's
    training rows (never its test split) and keep the one with the lower held-out loss."""
    from layerwise.experiments.choose import choose, linear

    p = proposal  # a data.proposal.Proposal
    print("comparing the MLP with a linear model by 5-fold cross-validation on the training "
          "rows (the test split takes no part) …")
    c = choose(path, {"mlp": None, "linear": linear})
    print(c.describe())
    hidden = [] if c.best == "linear" else p.model["hidden"]  # type: ignore[attr-defined]
    p.set_model("hidden", hidden, f"{'linear' if not hidden else 'MLP'}: "  # type: ignore[attr-defined]
                f"{c.describe()}; held-out loss decides")
    _check(p.yaml(path, name), path)  # type: ignore[attr-defined]


def _name(stem: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in stem).strip("_") or "run"


def _show(proposal: object) -> None:
    from rich.console import Console
    from rich.table import Table

    p = proposal  # a data.proposal.Proposal
    table = Table(title=f"{p.source}: {p.rows:,} rows", show_header=True)  # type: ignore[attr-defined]
    for col in ("column", "type", "role", "evidence"):
        table.add_column(col)
    for c in p.profiles:  # type: ignore[attr-defined]
        table.add_row(c.name, c.kind, p.role(c.name), c.evidence())  # type: ignore[attr-defined]
    Console(stderr=False).print(table)
