"""``layerwise chat MODEL [--url URL [--token T]] [--turns N] [--json]``: talk to a
chatbot-understanding model in the terminal.

Reads one message per line from standard input (typed, or piped: no terminal is needed)
and prints what the model understood: intent, entities, sentiment, and whether the
message would go to a person (``route: human`` and why). The previous turns are the next
message's context. An empty line is skipped; ``quit``, ``exit`` or the end of the input
stops; ``/reset`` forgets the turns so far. With ``--url`` the messages go to a running
``layerwise serve`` (MODEL is then the served model's name) instead of a loaded model.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Annotated, Optional

import typer

QUIT = ("quit", "exit", "/quit")


def chat(
    model: Annotated[str, typer.Argument(help="a model directory, models:/NAME@ALIAS, or "
                     "with --url the served model's name (- : the server's only model)")],
    url: Annotated[Optional[str], typer.Option("--url", help="a running `layerwise serve`, "  # noqa: UP007
                   "e.g. http://127.0.0.1:8000")] = None,
    token: Annotated[Optional[str], typer.Option("--token", help="the server's bearer "  # noqa: UP007
                     "token (or set LAYERWISE_TOKEN)")] = None,
    turns: Annotated[int, typer.Option("--turns", help="previous messages kept as the "
                     "context (0: none)")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per message "
                       "instead of text")] = False,
) -> None:
    """Chat with a model: intent, entities, sentiment and hand-off for each message."""
    import os

    from layerwise.inference.chat import Conversation, render

    if url:
        token = token or os.environ.get("LAYERWISE_TOKEN")
        talk = Conversation.remote(url, None if model == "-" else model, token, turns)
    else:
        from layerwise.api import load
        from layerwise.tracking.registry import resolve_model

        talk = Conversation.local(load(resolve_model(model)), turns)
    interactive = sys.stdin.isatty()
    if interactive:
        print("type a message (quit to stop, /reset to forget the context)", flush=True)
    for line in _lines(interactive):
        message = line.strip()
        if not message:
            continue
        if message.lower() in QUIT:
            break
        if message == "/reset":
            talk.reset()
            continue
        said = talk.say(message)
        print(json.dumps({"message": message, **said}) if as_json
              else f"> {message}\n{render(said, talk.outputs)}", flush=True)


def _lines(interactive: bool) -> Iterator[str]:
    """Standard input's lines as they come (a prompt before each when typed)."""
    while True:
        if interactive:
            print("you: ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:  # end of input
            return
        yield line
