"""Rolling drift scores for a running server: the last ``window`` rows of each input
against the reference, cheap enough to compute at every /metrics scrape.

Numbers and categories score their PSI (over the reference deciles or frequencies);
images score how far the live mean pixel value sits from the reference, in reference
standard deviations of a row's mean (≈ pixel std / sqrt(pixels) would be too strict for
correlated pixels, so the pixel std itself is the unit).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np

from layerwise.monitoring import drift


class RollingDrift:
    """Feed it rows as the server sees them; ``scores()`` gives one number per feature."""

    def __init__(self, reference: dict[str, Any], inputs: list[Any], window: int = 500
                 ) -> None:
        self.ref = reference
        self.kinds = {e.name: e.kind for e in inputs
                      if e.kind in ("numeric", "category", "image") and e.name in reference}
        self.rows: dict[str, deque[Any]] = {k: deque(maxlen=window) for k in self.kinds}
        self._lock = threading.Lock()

    def add(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            for name, kind in self.kinds.items():
                for r in rows:
                    v = r.get(name)
                    if v is None:
                        continue
                    self.rows[name].append(float(np.mean(v)) if kind == "image" else v)

    def scores(self) -> dict[str, float]:
        with self._lock:
            snap = {k: list(v) for k, v in self.rows.items() if len(v) >= 20}
        out = {}
        for name, values in snap.items():
            kind, ref = self.kinds[name], self.ref[name]
            if kind == "numeric":
                r = drift.numeric_test({**ref, "sample": []}, np.asarray(values, dtype=float))
                if r["psi"] is not None:
                    out[name] = r["psi"]
            elif kind == "category":
                out[name] = drift.category_test(ref.get("frequencies") or {},
                                                [str(v) for v in values])["psi"] or 0.0
            elif ref.get("pixel_std"):
                scale = 255.0 if max(values) > 1.0 else 1.0
                out[name] = abs(float(np.mean(values)) / scale - ref["pixel_mean"]) / ref[
                    "pixel_std"]
        return out
