"""Training throughput: layerwise against hand-written PyTorch, Lightning and Keras 3.

    python benchmarks/training.py            # the full run (a few minutes on 2 cores)
    python benchmarks/training.py --quick    # a smoke run in seconds
    python benchmarks/training.py --only cnn --skip lightning,keras

Every contender trains the same network (an MLP and a small CNN) on the same Fashion-MNIST
images, with the same batch size, optimizer (AdamW, lr 1e-3, no weight decay), number of
epochs and init seed. Contenders:

    layerwise     (a) ``layerwise.Trainer`` with its defaults on a plain ``nn.Module``
    declarative   (a') ``layerwise.train(config)``: the same network built from a config
    plain         (b) a hand loop as users write it: DataLoader(TensorDataset), fp32, eager
    tuned         (c) a hand loop making layerwise's choices: index slices of preloaded
                      tensors, layerwise's memory format and precision, fused AdamW
    lightning     (d) PyTorch Lightning, same model, optimizer and DataLoader as (b)
    keras         (e) Keras 3 on the torch backend, the equivalent Sequential model
    compile       (f) (c) with ``torch.compile(model)`` (CNN only; warm-up timed apart)

Only training is timed (imports, data preparation and model construction are not). Each
contender runs ``--repeats`` times, round-robin with a rotating start, after one small
untimed warm-up; the table gives the median. (a)/(c) is layerwise's own overhead.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

os.environ["KERAS_BACKEND"] = "torch"  # keras reads this once, at import

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import layerwise  # noqa: E402
from layerwise.config import OptimizerConfig  # noqa: E402
from layerwise.data import catalogue  # noqa: E402
from layerwise.training.hardware import machine  # noqa: E402

SEED = 0
LR = 1e-3
THREADS: int | None = None  # torch threads for every contender; None: layerwise's choice
clock: Callable[[], float] = time.perf_counter  # --clock cpu: time.process_time
CONTENDERS = ["layerwise", "declarative", "plain", "tuned", "lightning", "keras", "compile"]
LABELS = {"layerwise": "(a) layerwise Trainer, defaults",
          "declarative": "(a') layerwise.train(config)",
          "plain": "(b) hand loop, DataLoader, fp32 eager",
          "tuned": "(c) hand loop, layerwise's choices",
          "lightning": "(d) PyTorch Lightning",
          "keras": "(e) Keras 3, torch backend",
          "compile": "(f) (c) + torch.compile"}


@dataclass(frozen=True)
class Task:
    name: str        # "mlp" or "cnn"
    n: int           # training images (a multiple of batch, so every batch has one shape)
    batch: int
    epochs: int


FULL = {"mlp": Task("mlp", 8192, 128, 2), "cnn": Task("cnn", 2048, 128, 2)}
QUICK = {"mlp": Task("mlp", 1024, 128, 1), "cnn": Task("cnn", 256, 128, 1)}


@dataclass
class Outcome:
    seconds: float              # time of the training call (wall or CPU: see --clock)
    samples: int                # samples trained on (n * epochs)
    loss: float | None = None   # mean training loss of the last epoch, a sanity check
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.samples / self.seconds


# -- data and models ---------------------------------------------------------------------


def load_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` Fashion-MNIST training images, standardised: [n, 1, 28, 28], [n]."""
    train = catalogue.load("fashion-mnist")["train"]
    images = train.column("image")[:n].astype(np.float32) / 255.0      # [n, 28, 28]
    names = list(catalogue.FASHION_CLASSES)
    labels = np.array([names.index(str(v)) for v in train.column("label")[:n]])
    images = (images - images.mean()) / images.std()
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()


def build_torch(task: str) -> nn.Module:
    """The network, seeded; the CNN matches layerwise's ``cnn`` family with default blocks."""
    torch.manual_seed(SEED)
    if task == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(),
                             nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2),                                                 # [B, 32, 14, 14]
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(2),                                                 # [B, 64, 7, 7]
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),                           # [B, 64]
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


CHOICES: dict[str, dict[str, Any]] = {}  # per network: what layerwise's Trainer chose


def layerwise_choices(task: Task, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """What the Trainer picks (threads, precision, memory format, batching): a small fit."""
    n = 2 * task.batch
    cfg = layerwise.TrainConfig(epochs=1, batch_size=task.batch, progress="quiet",
                                checkpoint_every=0, threads=THREADS)
    fit = layerwise.Trainer(cfg, loss_fn=F.cross_entropy).fit(build_torch(task.name),
                                                               (x[:n], y[:n]))
    return fit.choices


# -- contenders ----------------------------------------------------------------------------


def run_layerwise(task: Task, x: torch.Tensor, y: torch.Tensor) -> Outcome:
    model = build_torch(task.name)
    cfg = layerwise.TrainConfig(epochs=task.epochs, batch_size=task.batch, progress="quiet",
                                checkpoint_every=0, seed=SEED, threads=THREADS,
                                optimizer=OptimizerConfig(name="adamw", lr=LR))
    t0 = clock()
    result = layerwise.Trainer(cfg, loss_fn=F.cross_entropy).fit(model, (x, y))
    seconds = clock() - t0
    c = result.choices
    note = f"{c['precision']}, {c['memory_format']}, {c['batching']} batching"
    return Outcome(seconds, task.n * task.epochs, result.history[-1]["train_loss"], note,
                   {"own_clock": result.samples_per_second})


def run_declarative(task: Task, x: torch.Tensor, y: torch.Tensor) -> Outcome:
    model = ({"family": "mlp", "hidden": [256, 128]} if task.name == "mlp" else
             {"family": "cnn", "blocks": [{"filters": 32, "pool": "max"},
                                          {"filters": 64, "pool": "max"}],
              "batch_norm": True, "global_pool": "avg", "dense": [128]})
    config = {"name": f"bench_{task.name}", "seed": SEED,
              "data": {"dataset": "fashion-mnist", "limit": task.n,
                       "split": {"validation": 0.0}},
              "inputs": [{"name": "image", "type": "image"}],
              "outputs": [{"name": "label", "type": "category"}],
              "model": model,
              "train": {"epochs": task.epochs, "batch_size": task.batch, "checkpoint_every": 0,
                        "optimizer": {"name": "adamw", "lr": LR}}}
    with tempfile.TemporaryDirectory() as out:
        run = layerwise.train(config, output=out, progress="quiet")
    if run.fit is None:
        raise RuntimeError("layerwise.train returned no fit result")
    st = run.fit.state
    # the declarative path also loads, evaluates and saves: time its training loop only
    return Outcome(st.train_time, st.samples, run.history[-1]["train_loss"],
                   "Trainer's own clock (loop only)")


def plain_loop(task: Task, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               stamps: list[float] | None = None) -> float:
    """The loop as users write it; returns the last epoch's mean loss. ``stamps`` collects
    the clock at each step's end (for benchmarks/step_overhead.py)."""
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                         batch_size=task.batch, shuffle=True)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    model.train()
    for _ in range(task.epochs):
        total, steps = 0.0, 0
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item()
            steps += 1
            if stamps is not None:
                stamps.append(clock())
    return total / steps


def run_plain(task: Task, x: torch.Tensor, y: torch.Tensor) -> Outcome:
    model = build_torch(task.name)
    t0 = clock()
    loss = plain_loop(task, model, x, y)
    return Outcome(clock() - t0, task.n * task.epochs, loss)


def tuned_loop(task: Task, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               channels_last: bool, stamps: list[float] | None = None,
               precision: str = "fp32") -> float:
    """Index slices of preloaded tensors, as layerwise batches; returns the last epoch's loss."""
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0, fused=True)
    low = precision == "bf16"
    model.train()
    for epoch in range(task.epochs):
        g = torch.Generator().manual_seed(SEED * 1_000_003 + epoch)
        order = torch.randperm(task.n, generator=g)
        loss_sum = torch.zeros(())
        for b in range(task.n // task.batch):
            idx = order[b * task.batch: (b + 1) * task.batch]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
                loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
            if stamps is not None:
                stamps.append(clock())
    return float(loss_sum) / (task.n // task.batch)


def run_tuned(task: Task, x: torch.Tensor, y: torch.Tensor) -> Outcome:
    model = build_torch(task.name)
    choices = CHOICES[task.name]
    cl = choices["memory_format"] == "channels_last"
    t0 = clock()
    if cl:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    loss = tuned_loop(task, model, x, y, cl, precision=choices["precision"])
    return Outcome(clock() - t0, task.n * task.epochs, loss,
                   f"{choices['precision']}, {'channels_last' if cl else 'contiguous'}, "
                   "index slices")


_COMPILED: dict[str, tuple[nn.Module, nn.Module, dict[str, torch.Tensor], float]] = {}


def run_compile(task: Task, x: torch.Tensor, y: torch.Tensor) -> Outcome:
    """Compile once per network (warm-up timed apart); each run restarts from the seed weights."""
    cl = task.name == "cnn"
    if task.name not in _COMPILED:
        model = build_torch(task.name)
        if cl:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        init = copy.deepcopy(model.state_dict())
        compiled = torch.compile(model)
        xb = x[: task.batch].contiguous(memory_format=torch.channels_last if cl
                                        else torch.contiguous_format)
        t0 = time.perf_counter()    # wall clock: inductor compiles in worker processes
        for _ in range(2):          # forward and backward graphs, then one cached call
            F.cross_entropy(compiled(xb), y[: task.batch]).backward()
        _COMPILED[task.name] = model, compiled, init, time.perf_counter() - t0
    model, compiled, init, warm = _COMPILED[task.name]
    model.load_state_dict(init)     # in place: the compiled graphs stay valid
    model.zero_grad(set_to_none=True)
    t0 = clock()
    loss = tuned_loop(task, compiled, x, y, cl)
    return Outcome(clock() - t0, task.n * task.epochs, loss,
                   "inductor, default mode", {"warmup_s": warm})


def run_lightning(task: Task, x: torch.Tensor, y: torch.Tensor) -> Outcome:
    import lightning as L

    class Module(L.LightningModule):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net
            self.loss_sum, self.steps = 0.0, 0

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            xb, yb = batch
            loss = F.cross_entropy(self.net(xb), yb)
            self.loss_sum, self.steps = self.loss_sum + loss.item(), self.steps + 1
            return loss

        def on_train_epoch_start(self) -> None:
            self.loss_sum, self.steps = 0.0, 0

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=LR, weight_decay=0.0)

    module = Module(build_torch(task.name))
    t0 = clock()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                         batch_size=task.batch, shuffle=True)
    trainer = L.Trainer(max_epochs=task.epochs, accelerator="cpu", devices=1,
                        enable_checkpointing=False, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, loader)
    return Outcome(clock() - t0, task.n * task.epochs,
                   module.loss_sum / max(1, module.steps))


def run_keras(task: Task, x: torch.Tensor, y: torch.Tensor) -> Outcome:
    import keras
    from keras import layers

    keras.utils.set_random_seed(SEED)
    if task.name == "mlp":
        model = keras.Sequential([keras.Input((28, 28, 1)), layers.Flatten(),
                                  layers.Dense(256, activation="relu"),
                                  layers.Dense(128, activation="relu"), layers.Dense(10)])
    else:
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, padding="same", use_bias=False), layers.BatchNormalization(),
            layers.ReLU(), layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, padding="same", use_bias=False), layers.BatchNormalization(),
            layers.ReLU(), layers.MaxPooling2D(2),
            layers.GlobalAveragePooling2D(), layers.Dense(128, activation="relu"),
            layers.Dense(10)])
    images = x.permute(0, 2, 3, 1).contiguous().numpy()   # Keras' default: [N, H, W, C]
    labels = y.numpy()
    t0 = clock()
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=LR, weight_decay=0.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(images, labels, batch_size=task.batch, epochs=task.epochs, verbose=0)
    return Outcome(clock() - t0, task.n * task.epochs,
                   history.history["loss"][-1], f"jit_compile={model.jit_compile}")


RUNNERS: dict[str, Callable[[Task, torch.Tensor, torch.Tensor], Outcome]] = {
    "layerwise": run_layerwise, "declarative": run_declarative, "plain": run_plain,
    "tuned": run_tuned, "lightning": run_lightning, "keras": run_keras,
    "compile": run_compile}
PACKAGES = {"lightning": "lightning", "keras": "keras"}


# -- the benchmark ---------------------------------------------------------------------------


def quiet_frameworks() -> None:
    """Silence Lightning's and Keras' start-up chatter, so the table stays readable."""
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", module=r"(lightning|pytorch_lightning)\b")
    warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec.*")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


def benchmark(task: Task, names: list[str], repeats: int) -> dict[str, list[Outcome]]:
    x, y = load_images(task.n)
    if task.name == "mlp":
        names = [n for n in names if n != "compile"]   # torch.compile is measured on the CNN
    CHOICES[task.name] = choices = layerwise_choices(task, x, y)
    threads = THREADS or choices["threads"]
    results: dict[str, list[Outcome]] = {n: [] for n in names}
    # warm-up: first-call costs (lazy imports, oneDNN primitives) stay out of the timings
    small = Task(task.name, 2 * task.batch, task.batch, 1)
    for name in names:
        if name not in ("declarative", "compile"):
            torch.set_num_threads(threads)
            with contextlib.redirect_stdout(sys.stderr):
                RUNNERS[name](small, x[: small.n], y[: small.n])
    for rep in range(repeats):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for name in order:
            torch.set_num_threads(threads)     # the Trainer sets this; keep it equal for all
            with contextlib.redirect_stdout(sys.stderr):
                out = RUNNERS[name](task, x, y)
            results[name].append(out)
            print(f"  {task.name} rep {rep + 1}/{repeats} {name:<12} {out.rate:9.0f} samples/s",
                  file=sys.stderr, flush=True)
    return results


def table(task: Task, results: dict[str, list[Outcome]], missing: dict[str, str]) -> list[str]:
    med = {n: statistics.median(o.rate for o in outs) for n, outs in results.items() if outs}
    base = med.get("plain")
    rows = [f"### {task.name.upper()}: {task.n} images x {task.epochs} epochs, batch "
            f"{task.batch}", "",
            "| contender | samples/s (median) | min-max | vs (b) | last-epoch loss | notes |",
            "|---|---:|---:|---:|---:|---|"]
    for name in CONTENDERS:
        if name == "compile" and task.name == "mlp":
            continue                                     # measured on the CNN only
        if name in missing:
            rows.append(f"| {LABELS[name]} | {missing[name]} | | | | |")
            continue
        if name not in results:
            continue
        outs = results[name]
        rates = [o.rate for o in outs]
        mid = sorted(outs, key=lambda o: o.rate)[len(outs) // 2]
        note = mid.note
        if "own_clock" in mid.extra:
            note += f"; Trainer's own clock {mid.extra['own_clock']:.0f}/s"
        if "warmup_s" in mid.extra:
            note += f"; compile warm-up {mid.extra['warmup_s']:.1f} s, once (excluded)"
        ratio = f"{med[name] / base:.2f}x" if base else ""
        loss = f"{mid.loss:.3f}" if mid.loss is not None else ""
        rows.append(f"| {LABELS[name]} | {med[name]:.0f} | {min(rates):.0f}-{max(rates):.0f} "
                    f"| {ratio} | {loss} | {note} |")
    rows.append("")
    if "layerwise" in med and "tuned" in med:
        over = med["tuned"] / med["layerwise"]
        best = max(o.rate for o in results["tuned"]) / max(o.rate for o in results["layerwise"])
        rows.append(f"- layerwise overhead, time (a)/(c): **{over:.3f}** on medians "
                    f"({(over - 1) * 100:+.1f}%; target within +5%), {best:.3f} on best runs")
    if "layerwise" in med and base:
        rows.append(f"- layerwise default vs plain fp32 loop, speed (a)/(b): "
                    f"**{med['layerwise'] / base:.2f}x**")
    chosen = CHOICES.get(task.name)
    if chosen:
        rows.append("- layerwise chose: " + "; ".join(
            f"{k} {chosen[k]} ({chosen['reasons'].get(k, '')})"
            for k in ("threads", "precision", "memory_format", "batching")))
    rows.append("")
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and no torch.compile: a "
                   "smoke run in seconds")
    p.add_argument("--only", choices=["mlp", "cnn"], help="run one of the two networks")
    p.add_argument("--skip", default="", help=f"comma-separated, of: {', '.join(CONTENDERS)}")
    p.add_argument("--repeats", type=int, default=None, help="runs per contender (default "
                   "3; 1 with --quick)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall: elapsed "
                   "time; cpu: this process's CPU time, steadier on a busy machine (use it "
                   "with --threads 1, as idle threads spin)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for every "
                   "contender (default: layerwise's choice, all cores)")
    args = p.parse_args(argv)
    global THREADS, clock
    THREADS = args.threads
    if args.clock == "cpu":
        clock = time.process_time
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(CONTENDERS)
    if unknown:
        p.error(f"--skip: unknown {sorted(unknown)}; valid: {', '.join(CONTENDERS)}")
    repeats = args.repeats or (1 if args.quick else 3)
    sizes = QUICK if args.quick else FULL
    tasks = [sizes[args.only]] if args.only else list(sizes.values())

    missing = {n: "not installed" for n, pkg in PACKAGES.items()
               if n not in skip and importlib.util.find_spec(pkg) is None}
    if args.quick and "compile" not in skip:   # inductor's first compile takes about a minute
        missing["compile"] = "skipped with --quick"
    names = [n for n in CONTENDERS if n not in skip and n not in missing]
    if "lightning" in names:
        import lightning  # noqa: F401  (imported here, so no import lands in a timing)
    if "keras" in names:
        import keras  # noqa: F401
    quiet_frameworks()

    m = machine()
    lines = ["# layerwise training benchmark", "",
             f"- machine: {m['platform']}, {m['processor']}, {m['cpus']} CPUs, "
             f"cpu_capability={m['cpu_capability']}, AMX={m['amx']}, CUDA={m['cuda']}",
             f"- torch {m['torch']}, layerwise {layerwise.__version__}" +
             "".join(f", {n} {sys.modules[n].__version__}" for n in ("lightning", "keras")
                     if n in sys.modules),
             f"- command: {' '.join(['python', *sys.argv])}",
             f"- torch threads: {THREADS or 'layerwise default (all cores)'}; "
             f"repeats: {repeats}, round-robin; load average at start: "
             f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}", ""]
    print("\n".join(lines), flush=True)
    t0 = time.perf_counter()
    for task in tasks:
        results = benchmark(task, names, repeats)
        print("\n".join(table(task, results, missing)), flush=True)
    print(f"total {time.perf_counter() - t0:.0f} s; load average at end: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
