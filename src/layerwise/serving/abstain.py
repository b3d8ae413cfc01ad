"""When a prediction goes to a person instead of the caller: the server's use of the one
rule in :mod:`layerwise.inference.abstain` (confidence below the model's ``threshold``, or
a conformal set of other than one label), which ``predict``'s hand-off shares.
"""

from __future__ import annotations

from layerwise.inference.abstain import choose_threshold, confidence, reason

__all__ = ["choose_threshold", "confidence", "reason"]
