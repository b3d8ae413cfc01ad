"""Metrics of transcripts (``ctc`` outputs): character error rate, greedy and beam.

``cer`` is the headline (the decoding the output's config names); ``cer_greedy`` and
``cer_beam`` are both always reported, with whole-transcript accuracy (``exact_match``)
of each. Scores per row ``[N, 3]`` (compacted during training) carry the greedy edits only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from layerwise.data.transcript import cer


def transcription(out: torch.Tensor, y: dict[str, torch.Tensor], enc: Any) -> dict[str, Any]:
    """``out``: scores ``[N, T, V]`` (or per-row stats ``[N, 3]``); ``y``: encoded targets."""
    n = int(len(y["lengths"]))
    if out.dim() == 2:  # per row: greedy edits, characters, loss
        edits, chars, nll = out.sum(0).tolist()
        return {"cer": edits / max(chars, 1.0), "cer_greedy": edits / max(chars, 1.0),
                "nats_per_char": nll / max(chars, 1.0), "count": n}
    refs = enc.references(y)
    result: dict[str, Any] = {"count": n, "characters": sum(len(r) for r in refs),
                              "beams": enc.cfg.beams, "decode": enc.cfg.decode}
    for how in ("greedy", "beam"):
        hyp = enc.decode(out, how)
        result[f"cer_{how}"] = cer(hyp, refs)
        result[f"exact_match_{how}"] = float(np.mean([h == r for h, r in
                                                      zip(hyp, refs, strict=True)]))
        if how == "greedy":
            result["examples"] = [{"reference": r, "predicted": h}
                                  for r, h in list(zip(refs, hyp, strict=True))[:5]]
    result["cer"] = result[f"cer_{enc.cfg.decode}"]
    result["exact_match"] = result[f"exact_match_{enc.cfg.decode}"]
    return result
