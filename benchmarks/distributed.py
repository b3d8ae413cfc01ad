"""Data-parallel training on this machine: exactness, restarts and cost (gloo, CPU).

    python benchmarks/distributed.py equal            # 1 vs 2 processes, Fashion CNN, 1 epoch
    python benchmarks/distributed.py kills --kills 5  # kill -9 one worker, elastic restart
    python benchmarks/distributed.py speed            # samples/s and all-reduce per step

``equal`` trains examples/fashion_cnn.yaml for one epoch in fp32 in 1 process, in 1 process
computing each step as 2 ranks (``train.replicas=2``) and in 2 (``--nproc 2``), and prints
the largest weight differences and the test accuracies.
``kills`` trains the digits CNN in 2 processes with ``--max-restarts``; ``--kills`` times it
kills one worker with SIGKILL after a random delay (torchrun then restarts the workers,
which continue from the last checkpoint) and compares the final weights with an
uninterrupted 2-process run. ``speed`` reads samples/s from the runs' metrics and times an
all-reduce of the model's gradients alone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from layerwise.files import load_safetensors

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "LAYERWISE_TRACKING": "off"}


def command(config: str, out: Path, nproc: int, *sets: str, restarts: int = 0) -> list[str]:
    return [sys.executable, "-m", "layerwise", "train", str(ROOT / "examples" / config),
            "--output", str(out), "-q", "--overwrite", "--nproc", str(nproc),
            "--max-restarts", str(restarts), *(a for s in sets for a in ("--set", s))]


def max_diff(a: Path, b: Path) -> float:
    x = load_safetensors(a / "model" / "model.safetensors")
    y = load_safetensors(b / "model" / "model.safetensors")
    return max(float((x[k].double() - y[k].double()).abs().max()) for k in x)


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def equal(tmp: Path) -> None:
    """One process as it runs by default, one process computing each step as 2 ranks
    (``train.replicas=2``), and 2 processes with the same config."""
    sets = ("train.epochs=1", "train.precision=fp32")
    plans = {"1 process": (1, ()), "1 process, train.replicas=2": (1, ("train.replicas=2",)),
             "2 processes, train.replicas=2": (2, ("train.replicas=2",))}
    walls = {}
    for i, (name, (n, extra)) in enumerate(plans.items()):
        t0 = time.perf_counter()
        subprocess.run(command("fashion_cnn.yaml", tmp / f"p{i}", n, *sets, *extra), env=ENV,
                       check=True)
        walls[name] = time.perf_counter() - t0
    for i, name in enumerate(plans):
        m = metrics(tmp / f"p{i}")
        print(f"{name}: test accuracy {m['test']['accuracy']:.4f}, "
              f"{m['training']['samples_per_second']:.0f} samples/s per process, "
              f"{m['training']['seconds']:.0f} s training, {walls[name]:.0f} s wall")
    print(f"largest weight difference, 2 processes vs 1 process: "
          f"{max_diff(tmp / 'p0', tmp / 'p2'):.3g}")
    print(f"largest weight difference, 2 processes vs 1 process with train.replicas=2: "
          f"{max_diff(tmp / 'p1', tmp / 'p2'):.3g}")


def workers(parent: int) -> list[int]:
    """The worker processes under a ``layerwise train --nproc`` process (grandchildren)."""
    def children(pid: int) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]
    return [w for c in children(parent) for w in children(c)]


def kills(tmp: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    sets = ("train.epochs=4", "train.precision=fp32", "train.checkpoint_every=5")
    ref = tmp / "ref"
    t0 = time.perf_counter()
    subprocess.run(command("digits_cnn.yaml", ref, 2, *sets), env=ENV, check=True,
                   stdout=subprocess.DEVNULL)
    window = metrics(ref)["training"]["seconds"] + 5  # a worker's set-up, then its steps
    print(f"reference (2 processes, uninterrupted): {time.perf_counter() - t0:.0f} s wall, "
          f"{window - 5:.0f} s of training")
    ok = killed = 0
    for i in range(n):
        out = tmp / f"run{i}"
        proc = subprocess.Popen(command("digits_cnn.yaml", out, 2, *sets, restarts=3),
                                env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        pids: list[int] = []
        while len(pids) < 2 and proc.poll() is None:  # the workers start after torchrun
            time.sleep(0.2)
            pids = workers(proc.pid)
        delay = rng.uniform(0.0, 1.0) * window  # from their start: set-up, steps, the end
        time.sleep(delay)
        pids = workers(proc.pid)
        victim = rng.choice(pids) if pids else None
        if victim is not None:
            os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate()
        diff = max_diff(ref, out) if proc.returncode == 0 else float("nan")
        if victim is None:
            print(f"kill {i + 1}: none (the run ended within {delay:.0f} s); not counted")
            continue
        killed += 1
        ok += proc.returncode == 0 and diff < 1e-5
        print(f"kill {i + 1}: worker {victim} at {delay:.0f} s; exit {proc.returncode}; "
              f"largest weight difference {diff:.3g}"
              + ("" if proc.returncode == 0 else f": {err.strip()[-300:]}"), flush=True)
    print(f"\n{ok}/{killed} runs completed after the kill with the uninterrupted run's weights "
          "(within 1e-5)")


ALL_REDUCE = """
import sys, time, torch, torch.distributed as dist
dist.init_process_group("gloo")
g = torch.zeros(int(sys.argv[1]))
for _ in range(5):
    dist.all_reduce(g)
t = time.perf_counter()
for _ in range(50):
    dist.all_reduce(g)
if dist.get_rank() == 0:
    print(f"all-reduce of the gradients alone: {(time.perf_counter() - t) / 50 * 1e3:.2f} ms")
"""


def speed(tmp: Path) -> None:
    sets = ("train.epochs=1", "train.precision=fp32")
    for n in (1, 2):
        subprocess.run(command("fashion_cnn.yaml", tmp / f"s{n}", n, *sets), env=ENV,
                       check=True)
        m = metrics(tmp / f"s{n}")["training"]
        # each process counts the rows it trained on
        print(f"{n} process(es): {m['samples_per_second'] * n:.0f} samples/s in all, "
              f"{m['seconds']:.0f} s per epoch, {m['steps']} steps")
    w = load_safetensors(tmp / "s1" / "model" / "model.safetensors")
    size = sum(t.numel() for k, t in w.items() if t.is_floating_point() and "running" not in k)
    print(f"gradients: {size * 4 / 1e6:.2f} MB per step")
    script = tmp / "all_reduce.py"
    script.write_text(ALL_REDUCE)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc-per-node=2", str(script), str(size)], env=ENV, check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["equal", "kills", "speed"])
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.what == "equal":
            equal(Path(tmp))
        elif args.what == "kills":
            kills(Path(tmp), args.kills, args.seed)
        else:
            speed(Path(tmp))


if __name__ == "__main__":
    main()
