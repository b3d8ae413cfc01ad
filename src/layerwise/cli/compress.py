"""``layerwise compress MODEL --method … --output DIR``, ``layerwise export MODEL --format
onnx [--output FILE]`` and ``layerwise bench MODEL [--autotune]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def compress(
    model_dir: Annotated[Path, typer.Argument(help="the parent model directory")],
    method: Annotated[str, typer.Option("--method", "-m", help="int8 | int8-static | bf16 | "
                      "prune | distill")],
    output: Annotated[Path, typer.Option("--output", "-o", help="the new model directory")],
    amount: Annotated[float, typer.Option("--amount", help="prune: share of every hidden "
                      "layer's channels removed")] = 0.5,
    max_drop: Annotated[float, typer.Option("--max-drop", min=0, help="refuse a child that "
                        "loses more points of the main metric than this (for nats per "
                        "token: a rise of more nats than this)")] = 1.0,
    epochs: Annotated[int, typer.Option("--epochs", min=0, help="prune/distill: epochs of "
                      "(fine-)tuning")] = 2,
    lr_scale: Annotated[float, typer.Option("--lr-scale", min=0, help="prune: fine-tuning "
                        "learning rate as a share of the run's")] = 0.1,
    width: Annotated[float, typer.Option("--width", help="distill: the student's widths as "
                     "a share of the teacher's")] = 0.5,
    temperature: Annotated[float, typer.Option("--temperature", help="distill: softening "
                           "temperature")] = 4.0,
    alpha: Annotated[float, typer.Option("--alpha", help="distill: weight of the soft "
                     "term")] = 0.7,
    student: Annotated[Optional[str], typer.Option("--student", help="distill: a config "  # noqa: UP007
                       "file for the student (default: derived with --width)")] = None,
    metric: Annotated[Optional[str], typer.Option("--metric", help="the guard's metric "  # noqa: UP007
                      "(default: accuracy, or r2 for a regression)")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="a labelled file for the "  # noqa: UP007
                    "guard (default: the run's validation split)")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace --output")] = False,
) -> None:
    """A smaller or faster copy of a model, refused if it loses more than --max-drop."""
    from layerwise.compress import Options
    from layerwise.compress import compress as run
    from layerwise.tracking.registry import resolve_model

    opts = Options(amount=amount, max_drop=max_drop, epochs=epochs, lr_scale=lr_scale,
                   width=width,
                   temperature=temperature, alpha=alpha, student=student, metric=metric,
                   data=data)
    record = run(resolve_model(model_dir), method, output, opts, overwrite=overwrite)
    from layerwise.compress.guard import LOWER

    m = record["metric"]
    digits = 4 if m["name"] in LOWER else 2  # nats per token move in the third decimal
    print(f"{method}: {m['name']} {m['parent']:.{digits}f} → {m['child']:.{digits}f} "
          f"(backend {record['backend']}); written to {output}", file=sys.stderr)


def export(
    model_dir: Annotated[Path, typer.Argument(help="a model directory")],
    fmt: Annotated[str, typer.Option("--format", help="onnx")] = "onnx",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="the .onnx file "  # noqa: UP007
                      "(default: MODEL/model.onnx, used by the onnxruntime backend)")] = None,
    atol: Annotated[float, typer.Option("--atol", min=0, help="allowed absolute output "
                    "difference from eager")] = 1e-4,
    rtol: Annotated[float, typer.Option("--rtol", min=0, help="allowed relative output "
                    "difference from eager")] = 1e-3,
) -> None:
    """Export a model to ONNX, checked against eager PyTorch on the validation rows."""
    from layerwise.compress import export as run
    from layerwise.tracking.registry import resolve_model

    rec = run(resolve_model(model_dir), output, fmt=fmt, atol=atol, rtol=rtol)
    print(f"{rec['path']}: {rec['bytes']} bytes, largest difference from eager "
          f"{rec['max_abs_diff']:.2g} on {rec['rows_checked']} rows", file=sys.stderr)


def bench(
    model_dir: Annotated[Path, typer.Argument(help="a model directory")],
    backend: Annotated[Optional[list[str]], typer.Option("--backend", "-b", help="time only "  # noqa: UP007
                       "these (repeat); default: all")] = None,
    autotune: Annotated[bool, typer.Option("--autotune", help="record the fastest faithful "
                        "backend for this machine in the model")] = False,
    for_batch: Annotated[int, typer.Option("--for-batch", min=1, help="the batch size the "
                         "pick is made for")] = 64,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="interleaved rounds")] = 9,
    seconds: Annotated[float, typer.Option("--seconds", min=0, help="seconds per backend "
                       "and batch size in each round")] = 0.2,
    max_drop: Annotated[float, typer.Option("--max-drop", min=0, help="points of the main "
                        "metric a backend may lose")] = 0.5,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="write the full "  # noqa: UP007
                      "result as JSON")] = None,
) -> None:
    """Time every backend at batch 1, 8 and 64 (medians and p99, interleaved)."""
    from layerwise.compress import bench as run
    from layerwise.files import dumps_json, write_text

    batches = tuple(sorted({1, 8, 64, for_batch}))
    names = tuple(backend) if backend else _all()
    res = run(model_dir, names=names, batches=batches, rounds=rounds, seconds=seconds,
              autotune=autotune, for_batch=for_batch, max_drop=max_drop)
    print(table(res, batches))
    if output is not None:
        write_text(output, dumps_json(res, indent=2))
    if autotune:
        print(f"picked {res['pick']} for batch {for_batch} on {res['machine']} "
              f"({res['kind']}); recorded in {model_dir}", file=sys.stderr)


def _all() -> tuple[str, ...]:
    from layerwise.inference.backends import BACKENDS

    return BACKENDS


def table(res: dict, batches: tuple[int, ...]) -> str:
    """One line per backend: median / p99 ms per batch size, fidelity."""
    head = f"{'backend':18}" + "".join(f"{'b' + str(b) + ' med/p99 ms':>22}" for b in batches)
    lines = [f"{res['kind']} · {res['machine']} · {res['threads']} threads · {res['metric']}",
             head + f"{'max|Δ|':>10}{'drop':>7}  ok"]
    for name, r in res["backends"].items():
        if "error" in r:
            lines.append(f"{name:18}error: {r['error']}")
            continue
        cells = "".join(f"{r['batches'][b]['median_ms']:>12.3f}/{r['batches'][b]['p99_ms']:<9.3f}"
                        for b in batches)
        lines.append(f"{name:18}{cells}{r['max_abs_diff']:>10.2g}{r['drop']:>7.2f}  "
                     f"{'yes' if r['eligible'] else 'no'}")
    return "\n".join(lines) + "\n" + json.dumps({"pick": res["pick"]})
