"""The ``layerwise`` command line: one small module per command group.

Heavy modules load inside the commands, so ``layerwise --help`` answers quickly. Errors
print one line (no traceback) and exit non-zero.
"""

from __future__ import annotations

import sys

import typer

from layerwise.cli import evaluate, generate, info, predict, rollout, sample, train

app = typer.Typer(name="layerwise", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="Describe a neural network in YAML, train it fast and exactly, and "
                       "carry it to prediction.")
app.command("train")(train.train)
app.command("evaluate")(evaluate.evaluate)
app.command("predict")(predict.predict)
app.command("generate")(generate.generate)
app.command("rollout")(rollout.rollout)
app.command("sample")(sample.sample)
app.command("embed")(sample.embed)
app.command("datasets")(info.datasets)
app.command("schema")(info.schema)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning layerwise errors into one-line messages."""
    from layerwise.errors import LayerwiseError

    try:
        app(args=argv, standalone_mode=False)
        return 0
    except LayerwiseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    except Exception as e:  # usage errors (typer's click) and anything unexpected
        name = type(e).__name__
        if name == "Exit" and hasattr(e, "exit_code"):
            return int(e.exit_code)
        if name == "Abort":
            return 1
        if hasattr(e, "show") and hasattr(e, "exit_code"):  # a usage error: click prints it
            e.show()
            return int(e.exit_code)
        print(f"error: unexpected {name}: {e}\n(this is a bug in layerwise; please report it "
              "with the command you ran)", file=sys.stderr)
        return 1


def entry() -> None:
    sys.exit(main())
