"""``layerwise explain MODEL INPUT [--method M] [--output DIR] [--rows N]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def explain(
    model_dir: Annotated[Path, typer.Argument(help="a model directory")],
    input_: Annotated[Path, typer.Argument(metavar="INPUT", help="rows to explain: a data "
                      "file, an image file or a folder of images")],
    method: Annotated[str, typer.Option("--method", "-m", help="integrated_gradients, "
                      "gradient_shap, kernel_shap, lime, occlusion, or attention "
                      "(transformers)")] = "integrated_gradients",
    output: Annotated[Path, typer.Option("--output", "-o", help="folder for "
                      "explanation.json and the PNGs")] = Path("explanation"),
    rows: Annotated[int, typer.Option("--rows", "-n", min=1, help="explain the first N "
                    "rows")] = 8,
    target: Annotated[Optional[str], typer.Option("--target", help="the class to "  # noqa: UP007
                      "explain (default: the predicted one)")] = None,
    importance: Annotated[Optional[str], typer.Option("--importance", help="global "  # noqa: UP007
                          "importance over all of INPUT instead (labelled rows): "
                          "permutation or mean_abs")] = None,
) -> None:
    """Explain a saved model's predictions: attributions per feature, pixel or token."""
    from layerwise.api import load
    from layerwise.cli.predict import read_input
    from layerwise.explain import explain as run_explain
    from layerwise.explain.importance import global_importance
    from layerwise.files import check_output_folder
    from layerwise.tracking.registry import resolve_model

    check_output_folder(output, "--output")
    model = load(resolve_model(model_dir))  # a folder, or models:/NAME@ALIAS
    data = model.to_table(read_input(input_))  # type: ignore[union-attr]
    if importance is not None:
        path = global_importance(model, data, importance, output, method=method)
        print(f"global importance ({importance}) written to {path}")
        return
    first = type(data)({k: v[:rows] for k, v in data.columns.items()}, data.origin)
    ex = run_explain(model, first, method=method, target=target, output_dir=output)
    for i, r in enumerate(ex.rows):
        c = r.get("completeness")
        note = f"  completeness error {c['relative_error']:.2%}" if c else ""
        value = f" (explained value {r['value']:.4g})" if "value" in r else ""
        what = r.get("target", f"{len(r.get('tokens', []))} tokens")
        print(f"row {i}: {what}{value}{note}")
    print(f"explanation of {len(ex.rows)} rows written to {output}")


def attack(
    model_dir: Annotated[Path, typer.Argument(help="a model directory (a classifier)")],
    method: Annotated[str, typer.Option("--method", "-m", help="fgsm or pgd")] = "pgd",
    eps: Annotated[Optional[list[float]], typer.Option("--eps", help="L-infinity radius in "  # noqa: UP007
                   "raw input units (pixels in [0, 1]); repeat for a curve")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="pgd steps")] = 10,
    data: Annotated[Optional[Path], typer.Option("--data", help="labelled rows (default: "  # noqa: UP007
                    "the run's test split)")] = None,
    rows: Annotated[Optional[int], typer.Option("--rows", "-n", min=1, help="attack the "  # noqa: UP007
                    "first N rows only")] = None,
    corruptions: Annotated[bool, typer.Option("--corruptions", help="also accuracy under "
                           "noise, blur and brightness (image models)")] = False,
    output: Annotated[Path, typer.Option("--output", "-o", help="folder for attack.json "
                      "and the PNGs")] = Path("attack"),
) -> None:
    """Accuracy of a classifier under adversarial attack (and image corruptions)."""
    from layerwise.api import load
    from layerwise.errors import ConfigError
    from layerwise.explain.robustness import run_attack
    from layerwise.files import check_output_folder
    from layerwise.tracking.registry import resolve_model

    if method not in ("fgsm", "pgd"):
        raise ConfigError(f"--method must be fgsm or pgd; got {method!r}")
    if any(e <= 0 for e in eps or []):
        raise ConfigError(f"--eps must be positive; got {eps}")
    check_output_folder(output, "--output")
    model = load(resolve_model(model_dir))  # a folder, or models:/NAME@ALIAS
    r = run_attack(model, output, data=data, method=method, eps=eps, steps=steps, rows=rows,
                   corruptions=corruptions)
    print(f"clean accuracy {r['clean_accuracy']:.4f} on {r['rows']} rows")
    for e, a in r["accuracy"].items():
        print(f"{method} eps {e}: accuracy {a:.4f}")
    for kind, levels in r.get("corruptions", {}).items():
        print(f"{kind}: " + "  ".join(f"{k} → {v:.4f}" for k, v in levels.items()))
    print(f"written to {output}")
