"""Streaming data (issue 18): a data set 4x larger than the memory budget trains within the
budget, resumes exactly after kill -9 mid-epoch, and how fast it goes against in-memory.

    nice -n 5 .venv/bin/python benchmarks/streaming.py --out /work/exp18

Fashion-MNIST (Debian dataset-fashion-mnist) is written out as Parquet shards (60k train +
10k test images, list<uint8> pixels) and trained with a small MLP on the pixels (the 2-core
machine is shared by many jobs: the model is cheap so that the runs fit); encoded it is
70k x (784 float32 + label) = 220 MB, against a ``--budget`` of 52 MB (4.2x). Runs, each
a ``layerwise train`` process whose process tree (the trainer and its loader workers) is
sampled with psutil every 0.2 s (RSS, PSS and USS: PSS shares the pages forked workers
have in common instead of counting them once per process, but also divides shared
libraries by however many processes on the machine map them; USS, the pages private to
the tree, does not move with other jobs):

- ``imports``: a process that imports what training imports, and sleeps (the floor);
- ``small``: the same model and loop on 1,000 rows in memory (floor + the model's own
  training memory: weights, gradients, optimizer state, activations, allocator caches);
- ``stream``: the full data, streamed (first run: scan and encode into the cache, then
  train); ``stream-again`` reuses the cache (training alone);
- ``killed``: the same command killed with SIGKILL at a random moment after its first
  checkpoint, then ``--resume``; its final weights are compared bitwise with ``stream``;
- ``memory``: the same data forced onto the in-memory path (``data.stream.mode: memory``).

Results go to ``OUT/results.json``; docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")


def write_shards(out: Path, rows: int = 5000) -> Path:
    """Fashion-MNIST as Parquet shards of ``rows`` images: out/fashion/{train,test}/."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from layerwise.data import catalogue

    root = out / "fashion"
    if (root / "done").exists():
        return root
    for part, table in catalogue.load("fashion-mnist").items():
        (root / part).mkdir(parents=True, exist_ok=True)
        x = np.asarray(table.column("image"), dtype=np.uint8).reshape(len(table), -1)
        y = np.asarray(table.column("label")).astype(str)
        for i, lo in enumerate(range(0, len(x), rows)):
            pixels = pa.FixedSizeListArray.from_arrays(pa.array(x[lo:lo + rows].ravel()),
                                                       x.shape[1])
            pq.write_table(pa.table({"image": pixels, "label": pa.array(y[lo:lo + rows])}),
                           root / part / f"part-{i:03d}.parquet")
    (root / "done").write_text("")
    return root


def config(root: Path, out: Path, budget: str, mode: str = "auto",
           limit: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"path": str(root / "train" / "*.parquet"),
                            "test_path": str(root / "test" / "*.parquet"),
                            "split": {"validation": 0.02}, "memory_budget": budget,
                            "stream": {"mode": mode, "workers": 1,
                                       "cache": str(out / "cache")}}
    if limit:  # the first rows only, split from the training shards
        data.pop("test_path")
        data.update(limit=limit, split={"validation": 0.1, "test": 0.1})
    return {"name": "fashion_stream", "seed": 0, "data": data,
            "inputs": [{"name": "image", "type": "image"}],
            "outputs": [{"name": "label", "type": "category"}],
            "model": {"family": "mlp", "hidden": [32], "dropout": 0.1},
            "train": {"epochs": 1, "batch_size": 128, "precision": "fp32", "threads": 2,
                      "compile": "off", "checkpoint_every": 40, "progress": "log",
                      "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}}}


class Sampler:
    """Peak RSS and PSS (MiB) of a process and its children, sampled every ``every`` s."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        import psutil

        self.proc, self.every = psutil.Process(pid), every
        self.rss = self.pss = self.uss = 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import psutil

        while not self.done.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                rss = pss = uss = 0
                for p in procs:
                    m = p.memory_full_info()
                    rss, pss, uss = rss + m.rss, pss + m.pss, uss + m.uss
                self.rss, self.pss = max(self.rss, rss / 2**20), max(self.pss, pss / 2**20)
                self.uss = max(self.uss, uss / 2**20)
            except psutil.Error:
                pass
            time.sleep(self.every)

    def stop(self) -> dict[str, float]:
        self.done.set()
        self.thread.join()
        return {"peak_rss_mib": round(self.rss, 1), "peak_pss_mib": round(self.pss, 1),
                "peak_uss_mib": round(self.uss, 1)}


def run(cmd: list[str], kill_after: float | None = None) -> dict[str, Any]:
    """Run ``cmd`` under nice 5 sampling its memory; SIGKILL it after ``kill_after`` s."""
    t = time.perf_counter()
    proc = subprocess.Popen(["nice", "-n", "5", *cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(proc.pid)
    if kill_after is not None:
        try:
            proc.wait(kill_after)
        except subprocess.TimeoutExpired:
            proc.kill()
    out, _ = proc.communicate()
    mem = sampler.stop()
    return {"rc": proc.returncode, "seconds": round(time.perf_counter() - t, 1), **mem,
            "tail": out[-1500:]}


def train_cmd(cfg: dict[str, Any], out: Path, name: str, resume: bool = False) -> list[str]:
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [PY, "-m", "layerwise", "train", str(path), "--output", str(out / "runs" / name)]
    return cmd + (["--resume"] if resume else ["--overwrite"])


def summary(out: Path, name: str) -> dict[str, Any]:
    m = json.loads((out / "runs" / name / "metrics.json").read_text())
    return {"samples_per_second": m["training"]["samples_per_second"],
            "train_seconds": m["training"]["seconds"], "data_seconds": m["training"][
                "data_seconds"], "test_accuracy": m["test"]["accuracy"],
            "batching": m["choices"]["batching"], "streaming": m["data"].get("streaming"),
            "parameters": m["training"]["parameters"]}


def same_weights(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "model" / "model.safetensors")), load_file(
        str(b / "model" / "model.safetensors"))
    return wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa)


IMPORTS = ("import torch, pandas, pyarrow.parquet, PIL.Image, sklearn.model_selection, "
           "layerwise.api, layerwise.data.streaming, time; time.sleep(3)")


def killed_and_resumed(cfg: dict[str, Any], out: Path, seed: int) -> dict[str, Any]:
    """SIGKILL mid-epoch at a random moment (once the checkpoint of a random step in the
    epoch's middle exists, after a random 0-2 s more), then the same command + --resume."""
    import torch

    rng = random.Random(seed)
    target, extra = rng.randrange(80, 400), rng.uniform(0.0, 2.0)
    ckpt = out / "runs" / "killed" / "checkpoints" / "last.ckpt"
    shutil.rmtree(out / "runs" / "killed", ignore_errors=True)  # no old checkpoint to see
    t = time.perf_counter()
    proc = subprocess.Popen(["nice", "-n", "5", *train_cmd(cfg, out, "killed")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None:
        if ckpt.exists() and torch.load(ckpt, weights_only=True)["trainer"]["step"] >= target:
            break
        time.sleep(0.2)
    time.sleep(extra)
    alive = proc.poll() is None
    proc.kill()
    proc.wait()
    state = torch.load(ckpt, weights_only=True)
    at = {"target_step": target, "extra_s": round(extra, 2), "alive_at_kill": alive,
          "resumed_from": {k: state["trainer"][k] for k in ("epoch", "batch", "step")},
          "killed_after_s": round(time.perf_counter() - t, 1)}
    resumed = run(train_cmd(cfg, out, "killed", resume=True))
    return {"kill": at, "resume": {k: v for k, v in resumed.items() if k != "tail"},
            "rc": proc.returncode}


def throughput(cfg: dict[str, Any], shards_used: int = 10, rounds: int = 3
               ) -> dict[str, Any]:
    """Samples/s of the Trainer on the same rows streamed and in memory, in one process,
    interleaved rounds (the first ``shards_used`` training shards of the cache)."""
    import copy
    import statistics

    from layerwise.api import build_for
    from layerwise.config import parse
    from layerwise.data.batching import TensorData, cat
    from layerwise.data.streaming import build_for_training
    from layerwise.training import Trainer

    c = parse(cfg)
    ds = build_for_training(c)
    part = copy.copy(ds.train)
    part.files, part.sizes = part.files[:shards_used], part.sizes[:shards_used]
    part.n = sum(part.sizes)
    pieces = [part.shard(i) for i in range(shards_used)]
    memory = TensorData(cat([p.inputs for p in pieces]), cat([p.targets for p in pieces]))
    tc = c.train.model_copy(update={"progress": "quiet", "checkpoint_every": 0})
    got: dict[str, list[float]] = {"stream": [], "memory": []}
    for r in range(rounds):
        for name in (("stream", "memory") if r % 2 == 0 else ("memory", "stream")):
            fit = Trainer(tc).fit(build_for(c, ds), part if name == "stream" else memory)
            got[name].append(fit.samples_per_second)
    ratios = [s / m for s, m in zip(got["stream"], got["memory"], strict=True)]
    return {"rows": part.n, "rounds": got, "median_stream": statistics.median(got["stream"]),
            "median_memory": statistics.median(got["memory"]),
            "median_ratio_stream_over_memory": round(statistics.median(ratios), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/exp18")
    ap.add_argument("--budget", default="52MB")
    ap.add_argument("--only", default="imports,small,stream,stream-again,killed,memory")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = write_shards(out)
    path = out / "results.json"
    res: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    res.update(budget=args.budget, machine_kind=_kind())
    cfg = config(root, out, args.budget)
    stages = {
        "imports": lambda: run([PY, "-c", IMPORTS]),
        "small": lambda: _train(config(root, out, args.budget, "memory", 1000), out, "small"),
        "stream": lambda: _train(cfg, out, "stream"),
        "stream-again": lambda: _train(cfg, out, "stream-again"),
        "killed": lambda: _killed(cfg, out, res),
        "memory": lambda: _train(config(root, out, args.budget, "memory"), out, "memory"),
        "throughput": lambda: throughput(cfg),
    }
    for name in args.only.split(","):
        res[name] = stages[name]()
        path.write_text(json.dumps(res, indent=1))
        print(name, json.dumps({k: v for k, v in res[name].items() if k != "tail"}),
              flush=True)


def _train(cfg: dict[str, Any], out: Path, name: str) -> dict[str, Any]:
    return {**run(train_cmd(cfg, out, name)), **summary(out, name)}


def _killed(cfg: dict[str, Any], out: Path, res: dict[str, Any]) -> dict[str, Any]:
    got = killed_and_resumed(cfg, out, int(time.time()))
    got["same_weights_as_uninterrupted"] = same_weights(out / "runs" / "stream",
                                                        out / "runs" / "killed")
    return got


def _kind() -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from layerwise.training.hardware import machine

    return str(machine()["kind"])


if __name__ == "__main__":
    main()
