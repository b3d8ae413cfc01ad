"""``layerwise generate MODEL_DIR --prompt TEXT [--max-tokens N --temperature T --top-k K]``.

For a language model the prompt is continued; for a sequence-to-sequence model it is the
source text and the output is printed alone (greedy unless --temperature or --beams)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def generate(
    model_dir: Annotated[Path, typer.Argument(help="a language model's directory (a "
                         "next_token output) or a sequence-to-sequence model's")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="text to continue (empty: "
                      "start a fresh line)")] = "",
    max_tokens: Annotated[int, typer.Option("--max-tokens", "-n", min=0, help="tokens to "
                          "generate")] = 200,
    temperature: Annotated[Optional[float], typer.Option("--temperature", "-t", min=0.0,  # noqa: UP007
                           help="0: greedy; below 1: safer, above 1: more varied (default: 1 "
                           "for a language model, greedy for sequence to sequence)")] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", min=1, help="sample among the "  # noqa: UP007
                     "K most likely tokens")] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", min=0.0, max=1.0, help="sample "  # noqa: UP007
                     "among the most likely tokens holding this share of probability")] = None,
    beams: Annotated[int, typer.Option("--beams", min=1, help="beam search with this many "
                     "beams (deterministic; ignores the sampling options)")] = 1,
    seed: Annotated[Optional[int], typer.Option("--seed", help="sampling seed, for a "  # noqa: UP007
                    "repeatable sample")] = None,
) -> None:
    """Continue a prompt with a saved language model (prints the prompt and continuation),
    or turn a source text into its output with a sequence-to-sequence model."""
    from layerwise.api import load

    text = load(model_dir).generate(prompt, max_tokens, temperature=temperature, top_k=top_k,
                                    top_p=top_p, greedy=temperature == 0, beams=beams,
                                    seed=seed)
    sys.stdout.write(text + "\n")
