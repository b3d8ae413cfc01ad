"""A requeued job repeats its command: ``kill -9`` at random moments, then ``--resume``.

    python benchmarks/requeue.py                 # 10 kills of a 6-epoch digits run
    python benchmarks/requeue.py --kills 20 --epochs 4

A reference run is trained once without interruption. Then, ``--kills`` times: the same
command starts in a fresh folder, is killed with SIGKILL after a random delay between 0
and 0.9 x the reference's wall time (so some kills land before the first checkpoint, some
after), and the same command line with ``--resume`` runs it to the end. Each resumed
run's weights are compared with the reference's (``torch.equal`` on every tensor).
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from layerwise.files import load_safetensors

ROOT = Path(__file__).resolve().parent.parent


def command(out: Path, epochs: int, resume: bool) -> list[str]:
    return [sys.executable, "-m", "layerwise", "train", str(ROOT / "examples/digits_cnn.yaml"),
            "--output", str(out), "-q", "--set", f"train.epochs={epochs}",
            "--set", "train.threads=1", *(["--resume"] if resume else [])]


def same(a: Path, b: Path) -> bool:
    wa, wb = load_safetensors(a / "model.safetensors"), load_safetensors(b / "model.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0, help="seeds the kill delays")
    args = p.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "ref"
        t0 = time.perf_counter()
        subprocess.run(command(ref, args.epochs, False), check=True)
        window = time.perf_counter() - t0
        print(f"reference: {window:.1f} s wall")
        ok = 0
        for i in range(args.kills):
            out = Path(tmp) / f"run{i}"
            delay = rng.uniform(0.0, 0.9 * window)
            proc = subprocess.Popen(command(out, args.epochs, False),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            had = (out / "checkpoints" / "last.ckpt").exists()
            done = (out / "model").exists()
            res = subprocess.run(command(out, args.epochs, True), capture_output=True,
                                 text=True)
            equal = res.returncode == 0 and same(ref / "model", out / "model")
            ok += equal
            note = "finished before the kill" if done else \
                "after a checkpoint" if had else "before the first checkpoint"
            print(f"kill {i + 1}: at {delay:.1f} s ({note}); resume exit {res.returncode}; "
                  f"weights {'equal' if equal else 'DIFFER'}"
                  + ("" if res.returncode == 0 else f": {res.stderr.strip()[-200:]}"),
                  flush=True)
        print(f"\n{ok}/{args.kills} resumed runs ended with the uninterrupted run's weights")


if __name__ == "__main__":
    main()
