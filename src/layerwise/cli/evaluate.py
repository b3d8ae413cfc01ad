"""``layerwise evaluate MODEL_DIR [DATA] [--output FILE] [--episodes N] [--seed S]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer


def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="a model directory "
                         "(runs/<name>/model) or models:/NAME@ALIAS, models:/NAME/VERSION")],
    data: Annotated[Optional[Path], typer.Argument(help="labelled data file; default: the "  # noqa: UP007
                    "run's own test split")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="write the "  # noqa: UP007
                      "metrics as JSON here")] = None,
    episodes: Annotated[Optional[int], typer.Option("--episodes", "-n", min=1, help="policy: "  # noqa: UP007
                        "episodes to run (default: the run's eval_episodes)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="policy: seed of the "  # noqa: UP007
                    "episodes (default: the run's eval_seed)")] = None,
    details: Annotated[bool, typer.Option("--details/--basic", help="classifiers and "
                       "regressors: bootstrap intervals, curves, calibration, conformal "
                       "coverage, residuals, latency and cost, with figures")] = True,
    folder: Annotated[Optional[Path], typer.Option("--folder", help="where the figures "  # noqa: UP007
                      "and metrics.json go (default: MODEL/../evaluation; a registered "
                      "model gets details only with --folder)")] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=10, help="bootstrap "
                         "resamples of the test rows")] = 1000,
    price_per_hour: Annotated[Optional[float], typer.Option("--price-per-hour", min=0,  # noqa: UP007
                              help="machine price per hour, for the cost per 1,000 "
                              "predictions")] = None,
    measure: Annotated[bool, typer.Option("--speed/--no-speed", help="measure latency, "
                       "throughput and cost on this machine")] = True,
) -> None:
    """Evaluate a saved model: accuracy, macro-F1, per-class results, confusion matrix.

    For a policy (a reinforcement-learning run): the return over deterministic episodes.
    """
    from layerwise.api import evaluate as run_evaluate
    from layerwise.files import check_output_file, dumps_json, write_text
    from layerwise.tracking.registry import resolve_model

    check_output_file(output, "--output")
    registered = str(model_dir).startswith("models:")  # never write into the registry
    extra = {"details": details and (folder is not None or not registered),
             "folder": folder, "samples": bootstrap, "price_per_hour": price_per_hour,
             "measure": measure}
    model = resolve_model(model_dir)
    metrics = run_evaluate(model, data, episodes=episodes, seed=seed, **extra)
    _record(model, model_dir, data, metrics)  # into the tracking store (kind: evaluate)
    text = dumps_json(metrics, indent=2)  # an undefined metric (NaN) is written as null
    if output:
        write_text(output, text)
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    for k, v in scalars.items():
        print(f"{k:>10}: {v:.4f}" if isinstance(v, float) else f"{k:>10}: {v}")
    _print_details(metrics)
    if "evaluated_on" in metrics:  # the detailed evaluation ran
        from layerwise.evaluation.calibrate import evaluation_dir

        print(f"evaluation files in {evaluation_dir(model, folder)}")
    if output:
        print(f"metrics written to {output}")
    elif not scalars:
        print(text)


def _print_details(metrics: dict) -> None:
    """The bootstrap intervals and the operational figures, when there are some."""
    for k, b in (metrics.get("bootstrap") or {}).items():
        print(f"{k:>10}: {b['value']:.4f}  95% bootstrap [{b['low']:.4f}, {b['high']:.4f}]")
    if "calibration" in metrics:
        c = metrics["calibration"]
        print(f"       ECE: {c['ece']:.4f}  MCE {c['mce']:.4f} (temperature "
              f"{c['temperature']:.3f})")
    c = metrics.get("conformal")
    if c:
        size = (f"mean set size {c['mean_set_size']:.3f}" if "mean_set_size" in c
                else f"mean width {c['mean_width']:.4g}")
        print(f" conformal: coverage {c['coverage']:.4f} (target {c['target']}), {size}")
    ops = metrics.get("operational")
    if ops:
        lat, thr = ops["latency_batch_1"], ops["throughput_batch_64"]
        cost = f", {thr['cost_per_1000']:.3g} per 1,000 at {thr['price_per_hour']}/h" \
            if "cost_per_1000" in thr else ""
        print(f"   latency: p50 {lat['p50_ms']:.2f} ms, p95 {lat['p95_ms']:.2f} ms, p99 "
              f"{lat['p99_ms']:.2f} ms (batch 1)")
        print(f"throughput: {thr['rows_per_second']:.0f} rows/s (batch 64); "
              f"{thr['cpu_seconds_per_1000']:.3f} CPU-s per 1,000{cost}; "
              f"{ops['size']['weights_bytes']} bytes of weights, "
              f"{ops['size']['parameters']} parameters ({ops['machine']['kind']})")


def _record(folder: Path, ref: Path, data: Path | None, metrics: dict[str, Any]) -> None:
    """The evaluation as a record in the tracking store (kind ``evaluate``)."""
    from layerwise.artifact import read_header
    from layerwise.tracking import recorder

    if not recorder.enabled():
        return
    cfg = read_header(folder).get("config") or {}
    recorder.record("evaluate", str(cfg.get("name", folder.parent.name)),
                    {"test": metrics}, path=folder, model=str(ref),
                    data=str(data) if data else "the run's test split")
