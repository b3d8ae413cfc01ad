"""``layerwise doctor RUN_DIR`` and ``layerwise report RUN_DIR [--output FILE]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def doctor(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (runs/<name>)")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="also write "  # noqa: UP007
                      "the findings as JSON here")] = None,
    no_data: Annotated[bool, typer.Option("--no-data", help="skip the checks that rebuild "
                       "the splits (duplicates, class shares)")] = False,
) -> None:
    """Name what went wrong in a training run, with the evidence and a change to try."""
    from layerwise.explain.doctor import diagnose
    from layerwise.files import check_output_file, dumps_json, write_text

    check_output_file(output, "--output", (".json",))
    found = diagnose(run_dir, data=not no_data)
    if not found:
        print(f"{run_dir}: no problems found")
    for i, f in enumerate(found, 1):
        print(f"{i}. {f.title}\n   evidence: {f.evidence}\n   try: {f.change}")
        if f.set:
            print("   " + " ".join(f"--set {s}" for s in f.set))
    if output:
        write_text(output, dumps_json({"run": str(run_dir),
                                       "findings": [f.as_dict() for f in found]}, indent=1))


def report(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (runs/<name>)")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="the HTML file "  # noqa: UP007
                      "(default: RUN_DIR/report.html)")] = None,
    rows: Annotated[int, typer.Option("--rows", "-n", min=0, help="test rows to explain "
                    "(0: none)")] = 4,
    no_data: Annotated[bool, typer.Option("--no-data", help="skip what needs the data "
                       "rebuilt (the doctor's data checks)")] = False,
) -> None:
    """One self-contained HTML page for a run: config, scores, curves, per-class results,
    calibration, attributions, doctor's findings and the model card."""
    from layerwise.explain.report import write_report
    from layerwise.files import check_output_file

    check_output_file(output, "--output", (".html", ".htm"))
    path = write_report(run_dir, output, rows=rows, data=not no_data)
    print(f"report written to {path}")
