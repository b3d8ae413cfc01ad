"""Generation speed and quality of a causal language model per backend (``layerwise bench``
on a language model, and benchmarks/compression_lm.py).

What is timed is what ``generate`` runs: the prompt once, then one cached step per new token
(inference/lm_steps.py gives each backend's step), greedy, at batch 1 and wider batches
(rows generated side by side, one step for all). Each call generates ``tokens`` new tokens
from a fixed prompt; its time per token is kept, and the pairs (backend, batch size) are
interleaved over rounds in a fresh seeded order each round, as compress/bench.py does for
the forward pass. The median is over all calls of a pair.

Quality is the validation loss (nats per character) of the very step each backend runs:
teacher forced, every position of every row one cached step after the first.
"""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
import torch

from layerwise.data.batching import TensorData, take
from layerwise.data.text import NextTokenEncoder
from layerwise.inference.predictor import Predictor

PROMPT = 16         # tokens of the validation row the timed generations start from
LOSS_ROWS = 64      # validation rows the step loss is measured on


def is_language_model(pred: Predictor) -> bool:
    """A causal transformer with a next_token output (it generates with a cache)."""
    return bool(getattr(pred.model.backbone, "causal", False)) and any(
        isinstance(e, NextTokenEncoder) for e in pred.schema.outputs)


def _text(pred: Predictor, rows: TensorData) -> dict[str, torch.Tensor]:
    backbone = pred.model.backbone
    return rows.inputs[backbone.text_names[0]]  # type: ignore[no-any-return]


@torch.inference_mode()
def greedy(pred: Predictor, prompts: torch.Tensor, tokens: int) -> torch.Tensor:
    """``tokens`` greedy tokens (at most what the position window leaves) after each row
    of ``prompts [B, P]``, through ``pred``'s step (one step per token for the batch)."""
    step = pred.generation_step()
    enc = pred.model.backbone.encoders[pred.model.backbone.text_names[0]]
    tokens = max(1, min(tokens, enc.n_pos - prompts.shape[1]))
    caches: list[dict[str, torch.Tensor]] = [{} for _ in enc.blocks]
    logits = step(prompts, caches, 0)[:, -1]
    out = []
    for t in range(tokens):
        nxt = logits.argmax(-1, keepdim=True)                   # [B, 1]
        out.append(nxt)
        logits = step(nxt, caches, prompts.shape[1] + t)[:, -1]
    return torch.cat(out, 1)


@torch.inference_mode()
def step_loss(pred: Predictor, rows: TensorData, n_rows: int = LOSS_ROWS) -> float:
    """Nats per token of ``pred``'s decoding step on the first ``n_rows`` rows, teacher
    forced: the first token primes the cache, each later one is one step."""
    text = _text(pred, rows)
    n = min(n_rows, len(text["lengths"]))
    ids, lengths = text["ids"][:n], text["lengths"][:n]
    length = int(lengths.max())
    step = pred.generation_step()
    enc = pred.model.backbone.encoders[pred.model.backbone.text_names[0]]
    caches: list[dict[str, torch.Tensor]] = [{} for _ in enc.blocks]
    logits = step(ids[:, :1], caches, 0)[:, -1]
    nll, count = 0.0, 0
    for t in range(1, length):
        valid = lengths > t
        lp = logits.float().log_softmax(-1).gather(1, ids[:, t:t + 1])[:, 0]
        nll -= float(lp[valid].sum())
        count += int(valid.sum())
        if t < length - 1:
            logits = step(ids[:, t:t + 1], caches, t)[:, -1]
    return nll / max(count, 1)


def prompts(pred: Predictor, rows: TensorData, batch: int) -> torch.Tensor:
    """``[batch, PROMPT]`` prompt ids: the start of validation rows (repeated if few)."""
    text = _text(pred, rows)
    idx = torch.arange(batch) % len(text["lengths"])
    return take(text, idx)["ids"][:, :PROMPT]  # type: ignore[no-any-return]


def time_generation(preds: dict[str, Predictor], rows: TensorData, batches: tuple[int, ...],
                    rounds: int, tokens: int, seed: int, seconds: float = 0.0
                    ) -> dict[str, dict[int, list[float]]]:
    """Seconds per generated token (per step of the batch) of every (backend, batch) pair:
    calls of ``tokens`` tokens for ``seconds`` (at least one) per pair and round,
    interleaved."""
    times: dict[str, dict[int, list[float]]] = {n: {b: [] for b in batches} for n in preds}
    starts = {b: prompts(next(iter(preds.values())), rows, b) for b in batches}
    order, rng = list(preds), random.Random(seed)
    for _ in range(rounds):
        for b in batches:
            rng.shuffle(order)
            for name in order:
                stop = time.perf_counter() + seconds
                while True:
                    t = time.perf_counter()
                    made = greedy(preds[name], starts[b], tokens).shape[1]
                    now = time.perf_counter()
                    times[name][b].append((now - t) / made)
                    if now >= stop:
                        break
    return times


def warm(pred: Predictor, rows: TensorData, batches: tuple[int, ...]) -> float:
    """Build the backend's step (export, quantization, compilation) and run it a little."""
    t0 = time.perf_counter()
    for b in batches:
        greedy(pred, prompts(pred, rows, b), 4)
    return time.perf_counter() - t0


def same_tokens(preds: dict[str, Predictor], rows: TensorData, tokens: int = 32
                ) -> dict[str, float]:
    """Per backend: the share of greedy tokens equal to eager's (8 rows, ``tokens`` each)."""
    start = prompts(next(iter(preds.values())), rows, 8)
    ref = greedy(preds["eager"], start, tokens) if "eager" in preds else None
    if ref is None:
        return {}
    return {n: round(float((greedy(p, start, tokens) == ref).float().mean()), 4)
            for n, p in preds.items()}


def report(preds: dict[str, Predictor], rows: TensorData, batches: tuple[int, ...],
           rounds: int, tokens: int, seed: int, seconds: float = 0.0
           ) -> dict[str, dict[str, Any]]:
    """Per backend: step loss, agreement with eager, and generation timings per batch."""
    out: dict[str, dict[str, Any]] = {
        n: {"step_nats_per_token": round(step_loss(p, rows), 4)} for n, p in preds.items()}
    for n, share in same_tokens(preds, rows).items():
        out[n]["greedy_agreement"] = share
    timed = time_generation(preds, rows, batches, rounds, tokens, seed, seconds)
    for n, per in timed.items():
        out[n]["generation"] = {b: tokens_summary(t, b) for b, t in per.items()}
    return out


def tokens_summary(times: list[float], batch: int) -> dict[str, float]:
    """Median and p99 ms per step (as compress/bench.py's summary), and tokens/s:
    ``batch`` tokens per step."""
    med = float(np.median(times))
    return {"median_ms": round(med * 1e3, 4),
            "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 4),
            "tokens_per_s": round(batch / med, 1), "calls": len(times)}
