"""``layerwise serve MODEL… [--host --port --token --config serve.yaml]`` and
``layerwise monitor MODEL LOG_OR_DATA [--output DIR]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def serve(
    models: Annotated[Optional[list[str]], typer.Argument(  # noqa: UP007
        help="model directories (or NAME=DIR); more may come from --config")] = None,
    host: Annotated[Optional[str], typer.Option(help="interface to bind (default "  # noqa: UP007
                    "127.0.0.1; any other needs a token)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default 8000)")] = None,  # noqa: UP007
    token: Annotated[Optional[str], typer.Option(help="bearer token every /v1 request "  # noqa: UP007
                     "must carry (or set LAYERWISE_TOKEN)")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="serve.yaml: limits, "  # noqa: UP007
                      "batching, thresholds, routes")] = None,
) -> None:
    """Serve models over HTTP until SIGTERM or Ctrl-C."""
    from layerwise.errors import MissingDependencyError

    try:
        import cachetools  # noqa: F401
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import python_multipart  # noqa: F401  (file uploads)
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(f"serving needs {e.name}: pip install "
                                     "'layerwise[serve]'") from None
    from layerwise.serving.server import serve as run
    from layerwise.serving.settings import load_settings

    settings = load_settings(config, host=host, port=port, token=token)
    run(list(models or []), settings)


def monitor(
    model_dir: Annotated[Path, typer.Argument(help="a model directory")],
    live: Annotated[Path, typer.Argument(metavar="LOG_OR_DATA", help="a server's "
                    "predictions.jsonl, or a data file / image folder of live rows")],
    output: Annotated[Path, typer.Option("--output", "-o", help="folder for drift.json "
                      "and drift.html")] = Path("drift-report"),
    alpha: Annotated[float, typer.Option(help="significance level, corrected over the "
                     "features tested")] = 0.05,
    update_reference: Annotated[bool, typer.Option(
        "--update-reference", help="instead: add embedding and prediction statistics of "
        "LOG_OR_DATA (rows the model was not trained on) to the model's reference.json")
    ] = False,
) -> None:
    """Compare live inputs and predictions with the training reference; exit 1 on drift."""
    from layerwise.cli.predict import read_input
    from layerwise.inference.predictor import Predictor
    from layerwise.monitoring import monitor as mon
    from layerwise.monitoring import reference
    from layerwise.serving.records import read_lines
    from layerwise.tracking.registry import resolve_model

    pred = Predictor.load(resolve_model(model_dir))  # a folder, or models:/NAME@ALIAS
    if update_reference:
        print(f"updated {reference.add_to_model(pred, read_input(live))}")
        return
    if live.name.startswith("predictions.jsonl"):
        report = mon.check_log(pred, read_lines(live), alpha=alpha)
    else:
        report = mon.check_rows(pred, read_input(live), alpha=alpha)
    paths = mon.write_report(report, output)
    verdict = f"drift in {', '.join(report['drifted'])}" if report["drift"] else "no drift"
    print(f"{verdict} ({report['rows']} rows); report: {paths[1]}")
    if report["drift"]:
        raise SystemExit(1)  # main() returns it as the exit status
