"""What the numerics guard costs in place, step by step, against the same loop without it.

    python benchmarks/guard_cost.py                # MLP, 30 runs of 3 epochs, ~1 minute
    python benchmarks/guard_cost.py --runs 60

``step_overhead.py`` compares whole runs of the Trainer and of a hand loop, so a minute in
which the machine slows moves one side more than the other. Here one loop (the tuned hand
loop of ``training.py``: index slices, fused AdamW, layerwise's precision, one thread) runs
a different check after every ``backward()``, in rotation, so every variant sees the same
moments of the machine; the table gives median step times and the median time of the
check call itself. Variants: no check; the loss only; the guard's norm pass (what
``Guard.measure`` did before it checked sums: ``_foreach_norm``, two stacks, one
``tolist``); ``Guard.measure`` (each gradient's sum); ``Guard.measure(norms=True)`` (what
the telemetry steps run).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import training as tb  # benchmarks/training.py: the same network, data and loop settings

from layerwise.training.guard import Guard

Check = Callable[[list[torch.nn.Parameter], torch.Tensor], object]


def loss_only(params: list[torch.nn.Parameter], loss: torch.Tensor) -> object:
    return math.isfinite(float(loss.detach()))


def norm_pass(params: list[torch.nn.Parameter], loss: torch.Tensor) -> object:
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack(torch._foreach_norm(grads))
    return torch.stack([torch.linalg.vector_norm(norms), loss.detach().float()]).tolist()


VARIANTS: dict[str, Check] = {
    "no check": lambda params, loss: None,
    "loss only": loss_only,
    "norm pass (before)": norm_pass,
    "Guard.measure (sums)": lambda params, loss: Guard.measure(params, loss),
    "Guard.measure(norms=True)": lambda params, loss: Guard.measure(params, loss, norms=True),
}


def run(task: tb.Task, x: torch.Tensor, y: torch.Tensor, shift: int, low: bool,
        steps: dict[str, list[float]], checks: dict[str, list[float]]) -> None:
    names = list(VARIANTS)
    torch.manual_seed(tb.SEED + shift)
    model = tb.build_torch(task.name)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=tb.LR, weight_decay=0.0, fused=True)
    k = shift
    for epoch in range(task.epochs):
        g = torch.Generator().manual_seed(tb.SEED * 1_000_003 + epoch)
        order = torch.randperm(task.n, generator=g)
        for b in range(task.n // task.batch):
            name = names[k % len(names)]
            k += 1
            t0 = time.perf_counter()
            idx = order[b * task.batch: (b + 1) * task.batch]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
                loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            t1 = time.perf_counter()
            VARIANTS[name](params, loss)
            t2 = time.perf_counter()
            opt.step()
            opt.zero_grad(set_to_none=True)
            steps[name].append(time.perf_counter() - t0)
            checks[name].append(t2 - t1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=30, help="runs of 3 epochs x 32 steps")
    args = p.parse_args()
    tb.THREADS = 1
    torch.set_num_threads(1)
    task = tb.Task("mlp", 4096, 128, 3)
    x, y = tb.load_images(task.n)
    precision = tb.layerwise_choices(task, x, y)["precision"]
    steps: dict[str, list[float]] = {n: [] for n in VARIANTS}
    checks: dict[str, list[float]] = {n: [] for n in VARIANTS}
    print(f"machine: {tb.machine()}")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    run(task, x, y, 0, precision == "bf16", {n: [] for n in VARIANTS},
        {n: [] for n in VARIANTS})  # warm-up
    for r in range(args.runs):
        run(task, x, y, r, precision == "bf16", steps, checks)
    base = statistics.median(steps["no check"])
    print(f"### MLP, batch 128, 1 thread, {precision}: {args.runs} runs x "
          f"{task.epochs * (task.n // task.batch)} steps, the check rotating every step\n")
    print("| check after backward() | steps | median step us | vs no check | "
          "median check call us |")
    print("|---|---:|---:|---:|---:|")
    for n in VARIANTS:
        m = statistics.median(steps[n])
        print(f"| {n} | {len(steps[n])} | {m * 1e6:,.0f} | {(m - base) * 1e6:+.0f} us, "
              f"{(m / base - 1) * 100:+.1f}% | {statistics.median(checks[n]) * 1e6:.1f} |")
    print(f"\nload average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
