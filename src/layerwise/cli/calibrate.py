"""``layerwise calibrate MODEL [--conformal 0.9] [--class-conditional] [--output DIR]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer


def calibrate(
    model_dir: Annotated[Path, typer.Argument(help="a model directory (runs/<name>/model)")],
    conformal: Annotated[Optional[float], typer.Option("--conformal", help="also fit "  # noqa: UP007
                         "split-conformal sets/intervals with this coverage, e.g. 0.9")] = None,
    class_conditional: Annotated[bool, typer.Option("--class-conditional", help="conformal: "
                                 "one threshold per class (each class gets the coverage)")
                                 ] = False,
    temperature: Annotated[bool, typer.Option("--temperature/--no-temperature", help="fit "
                           "temperature scaling (classifiers)")] = True,
    bins: Annotated[int, typer.Option("--bins", help="confidence bins of ECE/MCE and the "
                                      "reliability diagram")] = 15,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="folder for "  # noqa: UP007
                      "calibration.json, conformal.json, reliability.png (default: "
                      "MODEL/../evaluation)")] = None,
) -> None:
    """Fit temperature scaling (and, with --conformal, prediction sets or intervals) on the
    run's validation split and store them in the model; predict then uses them."""
    from layerwise.evaluation.calibrate import calibrate as run_calibrate
    from layerwise.evaluation.calibrate import evaluation_dir
    from layerwise.files import check_output_folder

    check_output_folder(output, "--output")
    report = run_calibrate(model_dir, temperature=temperature, conformal_coverage=conformal,
                           class_conditional=class_conditional, bins=bins, output=output)
    for name, rep in report.items():
        _print(name, rep)
    print(f"stored in {model_dir / 'layerwise.json'}; files in "
          f"{evaluation_dir(model_dir, output)}")


def _print(name: str, rep: dict[str, Any]) -> None:
    if "temperature" in rep:
        print(f"{name}: temperature {rep['temperature']:.4f}")
        for where in ("validation", "test"):
            if where in rep:
                r = rep[where]
                print(f"  {where:>10}: ECE {r['ece_before']:.4f} -> {r['ece_after']:.4f}, "
                      f"MCE {r['mce_before']:.4f} -> {r['mce_after']:.4f}, NLL "
                      f"{r['nll_before']:.4f} -> {r['nll_after']:.4f} ({r['rows']} rows)")
    conf = rep.get("conformal")
    if conf:
        test = conf.get("test")
        size = (f"mean set size {test['mean_set_size']:.3f}" if "mean_set_size" in test
                else f"interval width {test['mean_width']:.4g}") if test else ""
        got = f"; test coverage {test['coverage']:.4f}, {size}" if test else ""
        print(f"{name}: conformal {conf['method']} at {conf['coverage']} fitted on "
              f"{conf['rows']} validation rows{got}")
