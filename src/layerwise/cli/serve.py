"""``layerwise serve MODEL… [--host --port --token --config serve.yaml]`` and
``layerwise monitor MODEL LOG_OR_DATA [--output DIR] [--retrain CONFIG]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

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
                      "and drift.html (--retrain: the new run folder)")] = Path("drift-report"),
    alpha: Annotated[float, typer.Option(help="significance level, corrected over the "
                     "features tested")] = 0.05,
    update_reference: Annotated[bool, typer.Option(
        "--update-reference", help="instead: add embedding and prediction statistics of "
        "LOG_OR_DATA (rows the model was not trained on) to the model's reference.json")
    ] = False,
    retrain: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--retrain", metavar="CONFIG", help="instead: fine-tune on the labelled rows of "
        "LOG_OR_DATA (a review queue, or a labelled data file) with this training config; "
        "promote the result only if it beats the current model on held-out data")] = None,
    data: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--data", help="--retrain: a labelled data file besides the review queue")] = None,
    holdout: Annotated[float, typer.Option(help="--retrain: share of the new rows held "
                       "out to compare the models")] = 0.3,
    replay: Annotated[float, typer.Option(help="--retrain: rows of the config's training "
                      "split per new row, mixed in")] = 1.0,
) -> None:
    """Compare live inputs and predictions with the training reference; exit 1 on drift.
    With --retrain: fine-tune on newly labelled rows and promote only a better model."""
    if retrain is not None:
        return _retrain(model_dir, live, retrain, data, output, holdout, replay)
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
    _record_drift(pred, live, report, paths[1])
    verdict = f"drift in {', '.join(report['drifted'])}" if report["drift"] else "no drift"
    print(f"{verdict} ({report['rows']} rows); report: {paths[1]}")
    if report["drift"]:
        raise SystemExit(1)  # main() returns it as the exit status


def _record_drift(pred: Any, live: Path, report: dict, html: Path) -> None:
    """The drift check as a record in the tracking store (kind ``monitor``): the
    dashboard's drift page lists them (layerwise.tracking.dashboard)."""
    from layerwise.tracking import recorder

    name = str(pred.config.name)
    recorder.record("monitor", name, {"drift": report}, path=html.parent,
                    model=report["model"], data=str(live.absolute()), report=str(html))


def _retrain(model: Path, live: Path, config: Path, data: Optional[Path],  # noqa: UP007
             output: Path, holdout: float, replay: float) -> None:
    from layerwise.cli.predict import read_input
    from layerwise.monitoring.labels import is_review_queue
    from layerwise.monitoring.retrain import retrain

    review = live if is_review_queue(live) else None
    rows = read_input(data) if data is not None else None
    if review is None:
        rows = read_input(live)
    out = None if output == Path("drift-report") else output
    r = retrain(str(model), config, review=review, data=rows, output=out, holdout=holdout,
                replay=replay)
    figures = (f"{r['metric']} on {r['held_out_rows']} held-out rows: candidate "
               f"{r['candidate']:.4f}, current {r['current']:.4f}")
    if r["promoted"]:
        moved = (f"; {r['alias']} is now {r['registered']}" if "alias" in r else
                 f"; registered {r['registered']}" if "registered" in r else "")
        print(f"promoted: {figures}; new model {r['model_dir']}{moved}")
    else:
        print(f"kept the current model: {figures}; report {r['report']}")


def serve_report(
    state_dir: Annotated[Path, typer.Argument(help="a server's state folder (state_dir "
                         "in serve.yaml: predictions.jsonl, shadow.jsonl, review.jsonl)")],
    labels: Annotated[Optional[list[Path]], typer.Option(  # noqa: UP007
        "--labels", help="labels that arrived later: JSON lines or CSV of request_id, "
        "row, label (the review queue's labels are read too)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """The A/B and shadow comparison: per model version rows, abstain rate, latency and
    the metric on labelled rows; the shadow's agreement and labelled metric."""
    from layerwise.errors import DataError
    from layerwise.files import dumps_json
    from layerwise.monitoring.compare import report

    if not state_dir.is_dir():
        raise DataError(f"state folder not found: {state_dir}")
    r = report(state_dir, list(labels or []))
    if as_json:
        print(dumps_json(r, indent=2))
        return
    print(f"{r['labels']} labels")
    for name, v in r["versions"].items():
        print(f"{name}: {v['rows']} rows, abstained {v['abstain_rate']:.1%}, latency p50 "
              f"{_ms(v['latency_p50_ms'])} p99 {_ms(v['latency_p99_ms'])}, "
              f"{_labelled(v)}")
    sh = r["shadow"]
    if sh["requests"]:
        print(f"shadow: {sh['requests']} rows, agreement {sh['agreement']:.1%}, median "
              f"{_ms(sh['primary_median_ms'])} (primary) vs {_ms(sh['shadow_median_ms'])} "
              f"(shadow); primary {_labelled(sh['primary'])}; shadow "
              f"{_labelled(sh['shadow'])}")


def _ms(v: Optional[float]) -> str:  # noqa: UP007
    return "-" if v is None else f"{v:.1f} ms"


def _labelled(m: dict[str, Any]) -> str:
    figure = next((f"{k} {m[k]:.4f}" for k in ("accuracy", "mae") if k in m), "no metric")
    return f"{m['labelled_answered']} labelled answered rows: {figure}"
