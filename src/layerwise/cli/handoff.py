"""``layerwise handoff MODEL [--accuracy 0.95 | --max-in-scope 0.1] [--outputs a,b]
[--out-of-scope LABEL]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer


def handoff(
    model_dir: Annotated[Path, typer.Argument(help="a model directory (runs/<name>/model)")],
    accuracy: Annotated[float, typer.Option("--accuracy", help="the accuracy each output "
                        "must reach on the messages the model answers itself")] = 0.95,
    max_in_scope: Annotated[Optional[float], typer.Option("--max-in-scope", help="instead "  # noqa: UP007
                            "of --accuracy: hand off at most this share of in-scope "
                            "messages (e.g. 0.1), catching as many others as that allows")
                            ] = None,
    outputs: Annotated[Optional[str], typer.Option("--outputs", help="comma-separated "  # noqa: UP007
                       "outputs that get a threshold (default: every category and tags "
                       "output)")] = None,
    out_of_scope: Annotated[str, typer.Option("--out-of-scope", help="the class that means "
                            "'not for this bot': predicted, it hands off ('' for none)")
                            ] = "out_of_scope",
    scope_output: Annotated[Optional[str], typer.Option("--scope-output", help="the output "  # noqa: UP007
                            "that has that class (default: the first that does)")] = None,
) -> None:
    """Choose hand-off thresholds on the run's validation split and store them in the
    model; predict then routes each row to the bot or to a person (route, reason)."""
    from layerwise.evaluation.handoff import fit_handoff

    names = [n.strip() for n in outputs.split(",") if n.strip()] if outputs else None
    rep = fit_handoff(model_dir, accuracy=accuracy, max_in_scope=max_in_scope, outputs=names,
                      out_of_scope=out_of_scope or None, scope_output=scope_output)
    print("thresholds: " + ", ".join(f"{k} {v:.4f}" for k, v in rep["thresholds"].items()))
    if rep["out_of_scope"]:
        print(f"out of scope: {rep['out_of_scope']['output']} = "
              f"{rep['out_of_scope']['label']!r} hands off")
    for where in ("validation", "test"):
        if where in rep:
            print(f"{where:>10}: {_line(rep[where])}")
    print(f"stored in {model_dir / 'layerwise.json'}")


def _line(r: dict[str, Any]) -> str:
    parts = [f"{r['rows']} rows, {r['handed_off']:.1%} handed off"]
    for key, label in (("out_of_scope_handed_off", "out of scope"),
                       ("in_scope_handed_off", "in scope")):
        if r.get(key) is not None:
            parts.append(f"{label} {r[key]:.1%}")
    parts += [f"{k.removesuffix('_answered_accuracy')} answered accuracy {v:.3f}"
              for k, v in r.items() if k.endswith("_answered_accuracy")]
    return "; ".join(parts)
