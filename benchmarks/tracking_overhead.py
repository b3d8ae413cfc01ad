"""What recording a run costs: the same small training run with tracking on and off
(interleaved repeats, medians, the ratio within one run), and the time of one epoch's
write into the SQLite store.

    .venv/bin/python benchmarks/tracking_overhead.py --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))


def one_train(cfg: dict, out: Path, tracking: str) -> float:
    import layerwise as lw

    os.environ["LAYERWISE_TRACKING"] = tracking
    t = time.perf_counter()
    lw.train(cfg, output=out, overwrite=True)
    return time.perf_counter() - t


def epoch_writes(n: int) -> list[float]:
    """Seconds per ``log_epoch`` (one transaction, a dozen metric rows)."""
    from tests.conftest import TINY_MLP

    from layerwise.config import parse
    from layerwise.tracking import recorder

    os.environ["LAYERWISE_TRACKING"] = "on"
    path = Path(tempfile.mkdtemp()) / "bench"
    recorder.begin(path, parse(TINY_MLP))
    out = []
    for e in range(1, n + 1):
        row = {f"m{i}": 1.0 / (e + i) for i in range(12)}
        t = time.perf_counter()
        recorder.log_epoch(path, e, row)
        out.append(time.perf_counter() - t)
    recorder.end(path)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--epochs", type=int, default=10)
    a = p.parse_args()
    from tests.conftest import TINY_MLP

    tmp = Path(tempfile.mkdtemp(prefix="tracking-bench-"))
    os.environ["LAYERWISE_TRACKING_URI"] = f"sqlite:///{tmp / 'layerwise.db'}"
    cfg = {**TINY_MLP, "train": {**TINY_MLP["train"], "epochs": a.epochs}}
    one_train(cfg, tmp / "warm", "on")  # imports, store creation
    times: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(a.repeats):
        for mode in ("off", "on"):
            times[mode].append(one_train(cfg, tmp / mode, mode))
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    writes = epoch_writes(200)
    print(json.dumps({"epochs": a.epochs, "repeats": a.repeats, "median_on_s": round(on, 3),
                      "median_off_s": round(off, 3), "ratio_on_off": round(on / off, 3),
                      "epoch_write_median_ms": round(statistics.median(writes) * 1e3, 2),
                      "epoch_write_p90_ms": round(sorted(writes)[int(0.9 * len(writes))]
                                                  * 1e3, 2)}, indent=2))


if __name__ == "__main__":
    main()
