"""Fine-tune a pre-trained encoder on tweet sentiment; macro-F1 on the config's test split.

    HF_HUB_OFFLINE=1 python benchmarks/pretrained_sentiment.py examples/sentiment_minilm.yaml \
        --rows 4000 --out /tmp/full.json [--set train.optimizer.lr=0.0001 ...]

The data, split, model and Trainer are the library's (``layerwise.data.build``,
``api.build_for``, ``Trainer``), as ``layerwise train`` uses them; what differs is only what
is scored, to fit a slow machine: ``--rows N`` trains on a seeded, stratified subset of N
training rows (``data.split.labelled``; validation and test are untouched), there is no
per-epoch validation, and only the test split is scored, its rows batched in order of
length (the order changes no prediction, only the padding). Prints and writes JSON:
test macro-F1 and accuracy, trainable parameters, wall times.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from layerwise.training.callbacks import Callback


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--rows", type=int, default=None, help="training rows (labelled subset)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--log-every", type=int, default=0, metavar="N",
                    help="print the step, its loss and the seconds so far every N steps")
    args = ap.parse_args()

    from layerwise.api import build_for
    from layerwise.config import parse
    from layerwise.data.build import build
    from layerwise.training.trainer import Trainer

    overrides = list(args.overrides) + ["train.progress=log"]
    if args.rows:
        overrides.append(f"data.split.labelled={args.rows}")
    cfg = parse(args.config, overrides)
    t0 = time.perf_counter()
    ds = build(cfg)
    model = build_for(cfg, ds)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    t1 = time.perf_counter()
    callbacks = [StepLog(args.log_every)] if args.log_every else []
    fit = Trainer(cfg.train, callbacks=callbacks).fit(model, ds.train)
    t2 = time.perf_counter()
    result = {"config": args.config, "overrides": overrides, "train_rows": len(ds.train),
              "test_rows": len(ds.test), "trainable": trainable, "parameters": total,
              "trainable_share": trainable / total, "choices": fit.choices,
              "history": fit.history, "data_s": t1 - t0, "train_s": t2 - t1}
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, default=str),
          flush=True)
    result.update(score(model, ds, cfg, args.out))
    result["test_s"] = time.perf_counter() - t2
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: result[k] for k in ("macro_f1", "accuracy", "train_s", "test_s",
                                             "trainable_share")}), flush=True)


class StepLog(Callback):
    """Every ``every`` steps: the step, its loss and the Trainer's training seconds so far."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_step_end(self, trainer, step: int, loss: float) -> None:
        if step % self.every == 0:
            print(f"step {step}  loss {loss:.4f}  {trainer.state.train_time:.0f} s", flush=True)


@torch.inference_mode()
def score(model: torch.nn.Module, ds, cfg, out: Path) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    from layerwise.data.batching import take

    text = next(f.name for f in cfg.inputs if f.type == "text")
    label = cfg.outputs[0].name
    data = ds.test
    order = torch.argsort(data.inputs[text]["lengths"])
    model.eval()
    preds = torch.empty(len(data), dtype=torch.long)
    for s in range(0, len(order), 128):
        idx = order[s:s + 128]
        preds[idx] = model(take(data.inputs, idx))[label].argmax(1)
        if s % 1280 == 0:
            print(f"scored {s + len(idx)} / {len(order)}", flush=True)
    y = data.targets[label]
    return {"macro_f1": float(f1_score(y, preds, average="macro")),
            "accuracy": float(accuracy_score(y, preds))}


if __name__ == "__main__":
    main()
