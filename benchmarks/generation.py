"""Per-token generation time with and without the key-value cache, at 256 new tokens.

    python benchmarks/generation.py [MODEL_DIR]      # default: examples/charlm_kjv.yaml's
                                                     # architecture with untrained weights

Without the cache every new token recomputes attention over the whole prefix (as a plain
forward pass would); with it each token costs one step through the blocks. Timing does not
depend on the weights, so an untrained model of the same shape measures the same thing.
"""

from __future__ import annotations

import json
import sys
import time

import torch


def decoder_for(model_dir: str | None) -> tuple[object, int]:
    from layerwise.models.transformer import Decoder

    if model_dir:
        from layerwise.api import load

        return Decoder(load(model_dir).model.backbone), 0  # type: ignore[arg-type]
    from layerwise.config import parse
    from layerwise.models import build_model

    cfg = parse("examples/charlm_kjv.yaml")
    text = cfg.inputs[0]
    desc = {"numeric_dim": 0, "category_sizes": [], "category_dims": [], "images": {},
            "texts": {text.name: {"vocab_size": 75, "max_length": text.max_length,  # type: ignore[union-attr]
                                  "pad_id": 0}},
            "outputs": {cfg.outputs[0].name: ("next_token", 75)}}
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.outputs, desc).eval()
    return Decoder(model.backbone), 0  # type: ignore[arg-type]


def per_token(decoder: object, use_cache: bool, tokens: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        decoder.sample([5, 6, 7], tokens, greedy=True, use_cache=use_cache)  # type: ignore[attr-defined]
        best = min(best, (time.perf_counter() - t) / tokens)
    return best


def main() -> None:
    torch.set_num_threads(1)
    decoder, _ = decoder_for(sys.argv[1] if len(sys.argv) > 1 else None)
    tokens = 253  # + a 3-token prompt = 256 positions: the window, no re-priming
    per_token(decoder, True, 16, 1)  # warm-up
    cached = per_token(decoder, True, tokens, 3)
    full = per_token(decoder, False, tokens, 3)
    print(json.dumps({"tokens": tokens + 3, "ms_per_token_cached": round(cached * 1e3, 3),
                      "ms_per_token_uncached": round(full * 1e3, 3),
                      "speedup": round(full / cached, 2)}, indent=2))


if __name__ == "__main__":
    main()
