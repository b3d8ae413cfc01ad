"""``layerwise predict MODEL_DIR INPUT [--output FILE]``."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

SUFFIXES = (".csv", ".jsonl", ".json")  # .json: JSON lines too, one object per row


def predict(
    model_dir: Annotated[Path, typer.Argument(help="a model directory, or a "
                         "registered model: models:/NAME@ALIAS, models:/NAME/VERSION")],
    input_: Annotated[Path, typer.Argument(metavar="INPUT", help="CSV / JSONL / Parquet / "
                      ".npz file, an image or audio file, or a folder of them")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="write .csv or "  # noqa: UP007
                      ".jsonl (default: JSON lines on stdout)")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="eager | compiled | "  # noqa: UP007
                       "bf16 | onnxruntime | onnxruntime-int8 (default: the one `layerwise "
                       "bench --autotune` recorded for this machine, else eager)")] = None,
) -> None:
    """Predict with a saved model on raw rows or images."""
    from layerwise.api import load
    from layerwise.files import check_output_file
    from layerwise.tracking.registry import resolve_model

    check_output_file(output, "--output", SUFFIXES)  # before the work, not after it
    model = load(resolve_model(model_dir))  # a folder, or models:/NAME@ALIAS
    if backend is not None:
        from layerwise.errors import ConfigError

        if not hasattr(model, "use_backend"):
            raise ConfigError(f"{model_dir} is a policy; --backend applies to models")
        model.use_backend(backend)
    rows = read_input(input_)
    preds = model.predict(rows)
    if isinstance(rows, list):
        preds = [{"input": r, **p} for r, p in zip(rows, preds)]
    write(preds, output)


def read_input(input_: Path) -> Any:
    """A file path as it is, or a folder as the sorted list of its images (or, with none,
    of its audio clips)."""
    from layerwise.data.sources import AUDIO_SUFFIXES, IMAGE_SUFFIXES
    from layerwise.errors import DataError

    if input_.is_dir():
        rows = sorted(str(p) for p in input_.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        rows = rows or sorted(str(p) for p in input_.rglob("*")
                              if p.suffix.lower() in AUDIO_SUFFIXES)
        if not rows:
            raise DataError(f"{input_}: no images or audio clips found")
        return rows
    if not input_.exists():
        raise DataError(f"input not found: {input_}")
    return input_


def write(preds: list[dict[str, Any]], output: Path | None) -> None:
    """JSON lines (stdout, .jsonl, .json) or CSV; always valid JSON: a non-finite number
    is written as ``null`` (an empty cell in CSV), never as bare ``NaN``. A CSV cell
    holding a dict or a list holds its JSON."""
    from layerwise.files import check_output_file, dumps_json, finite_json, write_text

    check_output_file(output, "--output", SUFFIXES)
    if output is None or output.suffix.lower() in (".jsonl", ".json"):
        lines = "\n".join(dumps_json(p) for p in preds) + "\n"
        if output is None:
            sys.stdout.write(lines)
        else:
            write_text(output, lines)
    else:
        keys = list(dict.fromkeys(k for p in preds for k in p))
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        for p in preds:
            w.writerow({k: dumps_json(v) if isinstance(v, dict | list) else finite_json(v)
                        for k, v in p.items()})
        write_text(output, buf.getvalue())
    if output is not None:
        print(f"{len(preds)} predictions written to {output}", file=sys.stderr)
