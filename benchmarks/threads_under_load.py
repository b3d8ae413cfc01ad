"""Default runs against runs forced to one thread, while two busy processes hold the cores.

    python benchmarks/threads_under_load.py            # digits (full) and Fashion (1 epoch)
    python benchmarks/threads_under_load.py --repeats 3

Two background processes spin on the CPU (each stops by itself after ``--limit`` seconds,
and is killed at the end). Each example is trained with ``layerwise train`` as a user
would, once with its defaults and once with ``--set train.threads=1``, interleaved,
``--repeats`` times. The table gives the median wall time of the whole command and of the
Trainer's loop, and the threads the default run chose.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {"digits": ("examples/digits_cnn.yaml", []),
            "fashion": ("examples/fashion_cnn.yaml", ["--set", "train.epochs=1"])}
SPIN = "import time\nend = time.time() + {limit}\nwhile time.time() < end:\n    pass\n"


def train(example: str, extra: list[str], out: Path) -> tuple[float, float, int]:
    path, sets = EXAMPLES[example]
    cmd = [sys.executable, "-m", "layerwise", "train", str(ROOT / path), "--output", str(out),
           "-q", *sets, *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    m = json.loads((out / "metrics.json").read_text())
    return wall, m["training"]["seconds"], m["choices"]["threads"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--busy", type=int, default=2, help="background processes")
    p.add_argument("--limit", type=float, default=1800, help="seconds each one spins at most")
    p.add_argument("--only", choices=list(EXAMPLES))
    args = p.parse_args()
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN.format(limit=args.limit)])
                for _ in range(args.busy)]
    try:
        time.sleep(2)
        print(f"{args.busy} busy processes; load average {os.getloadavg()[0]:.2f}")
        rows = []
        for example in [args.only] if args.only else list(EXAMPLES):
            res: dict[str, list[tuple[float, float, int]]] = {"default": [], "one": []}
            with tempfile.TemporaryDirectory() as tmp:
                for rep in range(args.repeats):
                    order = ["default", "one"] if rep % 2 == 0 else ["one", "default"]
                    for kind in order:
                        extra = [] if kind == "default" else ["--set", "train.threads=1"]
                        out = Path(tmp) / f"{kind}{rep}"
                        res[kind].append(train(example, extra, out))
                        print(f"  {example} {kind}: wall {res[kind][-1][0]:.1f} s, loop "
                              f"{res[kind][-1][1]:.1f} s, {res[kind][-1][2]} thread(s)",
                              flush=True)
            med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
                   for k, v in res.items()}
            threads = sorted({r[2] for r in res["default"]})
            rows.append(f"| {example} | {med['default'][0]:.1f} | {med['default'][1]:.1f} | "
                        f"{'/'.join(map(str, threads))} | {med['one'][0]:.1f} | "
                        f"{med['one'][1]:.1f} | {med['one'][1] / med['default'][1]:.2f} |")
        print(f"load average at end {os.getloadavg()[0]:.2f}\n")
        print("| example | default wall s | default loop s | default threads | "
              "1 thread wall s | 1 thread loop s | loop 1-thread / default |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        print("\n".join(rows))
    finally:
        for s in spinners:
            s.kill()
            s.wait()


if __name__ == "__main__":
    main()
