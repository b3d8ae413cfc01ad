"""The ``layerwise`` command line: one small module per command group.

Heavy modules load inside the commands, so ``layerwise --help`` answers quickly. Errors
print one line (no traceback) and exit non-zero.
"""

from __future__ import annotations

import importlib
import sys

import typer

# command → "module:attribute" in layerwise.cli; a typer.Typer attribute is a command group
# (``layerwise runs list``). One line per command, so each lands on its own.
COMMANDS = {
    "train": "train:train",
    "pretrain": "pretrain:pretrain",
    "init": "init:init",
    "evaluate": "evaluate:evaluate",
    "predict": "predict:predict",
    "compress": "compress:compress",
    "export": "compress:export",
    "bench": "compress:bench",
    "generate": "generate:generate",
    "rollout": "rollout:rollout",
    "sample": "sample:sample",
    "embed": "sample:embed",
    "datasets": "info:datasets",
    "schema": "info:schema",
    "runs": "runs:runs",
    "registry": "registry:registry",
    "tune": "tune:tune",
    "ui": "ui:ui",
    "explain": "explain:explain",
    "doctor": "report:doctor",
    "attack": "explain:attack",
    "report": "report:report",
    "serve": "serve:serve",
    "monitor": "serve:monitor",
    "serve-report": "serve:serve_report",
    "cv": "cv:cv",
    "calibrate": "calibrate:calibrate",
    "recommend": "recommend:recommend",
    "chat": "chat:chat",
    "handoff": "handoff:handoff",
}

app = typer.Typer(name="layerwise", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="Describe a neural network in YAML, train it fast and exactly, and "
                       "carry it to prediction.")
for _name, _target in COMMANDS.items():
    _module, _attr = _target.split(":")
    _obj = getattr(importlib.import_module(f"layerwise.cli.{_module}"), _attr)
    if isinstance(_obj, typer.Typer):
        app.add_typer(_obj, name=_name)
    else:
        app.command(_name)(_obj)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning layerwise errors into one-line messages."""
    from layerwise.errors import LayerwiseError

    try:
        code = app(args=argv, standalone_mode=False)  # typer.Exit(n) comes back as n
        return code if isinstance(code, int) and not isinstance(code, bool) else 0
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
