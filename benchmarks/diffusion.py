"""Train and measure the class-conditional diffusion example (docs/benchmarks.md, "Diffusion").

    .venv/bin/python benchmarks/diffusion.py train  examples/fashion_diffusion.yaml runs/fd
    .venv/bin/python benchmarks/diffusion.py sample runs/fd --grid docs/images/fashion_diffusion.png
    .venv/bin/python benchmarks/diffusion.py judge  runs/fd --n 500 [--guidance 0] [--steps 20]

``train`` runs the config's data and model through the shared Trainer (checkpoints in
``RUN/checkpoints``; ``--resume`` continues a killed run) and writes ``RUN/weights.safetensors``
and ``RUN/train.json`` (wall and CPU time, load average). ``sample`` writes a grid (one row
per class) and times 64 samples at 50 DDIM steps. ``judge`` reports the Fréchet distance and
the class accuracy of ``--n`` samples with layerwise's judge classifier (trained and cached
on first use; see layerwise.evaluation.judge), with the real-data floors.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from layerwise.config import parse
from layerwise.data.build import build
from layerwise.models import build_model
from layerwise.training import Trainer


def _model(cfg: Any) -> tuple[Any, Any]:
    ds = build(cfg)
    return ds, build_model(cfg.model, [], ds.schema.describe())


def train(args: argparse.Namespace) -> None:
    cfg = parse(args.config)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(cfg.model_dump(mode="json")))
    t0, cpu0 = time.perf_counter(), time.process_time()
    load0 = os.getloadavg()
    ds, model = _model(cfg)
    trainer = Trainer(cfg.train, checkpoint_dir=run / "checkpoints", resume=args.resume)
    fit = trainer.fit(model, ds.train, ds.validation)
    wall = time.perf_counter() - t0
    model.to(memory_format=torch.contiguous_format)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(run / "weights.safetensors"))
    info = {"wall_seconds": round(wall, 1), "cpu_seconds": round(time.process_time() - cpu0, 1),
            "train_seconds": round(fit.state.train_time, 1),
            "steps": fit.state.step, "rows": ds.info["rows"],
            "parameters": sum(p.numel() for p in model.net.parameters()),
            "load_start": load0, "load_end": os.getloadavg(), "history": fit.history,
            "choices": fit.choices}
    (run / "train.json").write_text(json.dumps(info, indent=1, default=str))
    print(json.dumps({k: v for k, v in info.items() if k not in ("history", "choices")}))
    for h in fit.history:
        print({k: v for k, v in h.items() if "/" not in k})


def load_run(run: Path) -> tuple[Any, Any, Any]:
    """Config, data and model of a run: its final weights, or the last checkpoint's."""
    cfg = parse(json.loads((run / "config.json").read_text()))
    ds, model = _model(cfg)
    if (run / "weights.safetensors").is_file():
        state = load_file(str(run / "weights.safetensors"))
    else:  # a run still going (or killed): its last checkpoint
        ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
        state = ckpt["model"]
        print(f"using the checkpoint at step {ckpt['trainer']['step']}")
    model.load_state_dict(state)
    return cfg, ds, model.eval()


def sample(args: argparse.Namespace) -> None:
    from layerwise.evaluation.generative import sample_grid

    torch.set_num_threads(1)
    cfg, ds, model = load_run(Path(args.run))
    sample_grid(model, Path(args.grid), cols=args.per_row, seed=0)
    load0 = os.getloadavg()
    t0, cpu0 = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        model.sample(64, labels=1, steps=50, generator=torch.Generator().manual_seed(0))
    print(json.dumps({"grid": args.grid, "sample_64_at_50_steps_seconds":
                      round(time.perf_counter() - t0, 1),
                      "cpu_seconds": round(time.process_time() - cpu0, 1), "load": load0}))


def judge(args: argparse.Namespace) -> None:
    """Fréchet distance and class accuracy with layerwise's judge (evaluation/judge.py)."""
    from layerwise.evaluation.judge import sample_quality

    torch.set_num_threads(1)
    cfg, ds, model = load_run(Path(args.run))
    if args.guidance is not None:
        model.cfg = model.cfg.model_copy(update={"guidance": args.guidance})
    if args.steps is not None:
        model.cfg = model.cfg.model_copy(update={"sample_steps": args.steps})
    out = sample_quality(model, cfg, ds, n=args.n, seed=cfg.seed)
    out.update(guidance=model.cfg.guidance, steps=model.cfg.sample_steps,
               load=os.getloadavg())
    print(json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("config")
    t.add_argument("run")
    t.add_argument("--resume", action="store_true")
    s = sub.add_parser("sample")
    s.add_argument("run")
    s.add_argument("--grid", default="docs/images/fashion_diffusion.png")
    s.add_argument("--per-row", type=int, default=8)
    j = sub.add_parser("judge")
    j.add_argument("run")
    j.add_argument("--n", type=int, default=500)
    j.add_argument("--guidance", type=float, default=None)
    j.add_argument("--steps", type=int, default=None)
    args = p.parse_args()
    {"train": train, "sample": sample, "judge": judge}[args.cmd](args)


if __name__ == "__main__":
    main()
