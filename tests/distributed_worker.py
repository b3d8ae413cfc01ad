"""One worker of the distributed tests: trains a small network on seeded data and writes
its weights (rank 0, or the only process). Run alone or under torchrun:

    python tests/distributed_worker.py OUT.safetensors cnn
    python -m torch.distributed.run --standalone --nproc-per-node 2 \\
        tests/distributed_worker.py OUT.safetensors cnn
"""

from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

import layerwise
from layerwise.config import OptimizerConfig
from layerwise.files import save_safetensors

OPT = {"sgd": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
       "adamw": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0005}}


def network(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "cnn":  # batch norm and dropout: both must see the whole batch
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
                             nn.Linear(8 * 7 * 7, 32), nn.BatchNorm1d(32), nn.ReLU(),
                             nn.Dropout(0.5), nn.Linear(32, 4))
    return nn.Sequential(nn.Flatten(), nn.Linear(196, 64), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(64, 4))


def main() -> None:
    out, kind = sys.argv[1], sys.argv[2]
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    g = torch.Generator().manual_seed(1)
    x = torch.randn(203, 1, 14, 14, generator=g)     # 203 rows: the last batch is uneven
    y = (x.mean((1, 2, 3)) * 8).long().clamp(-2, 1) + 2
    cfg = layerwise.TrainConfig(epochs=epochs, batch_size=32, progress="quiet",
                                checkpoint_every=0, seed=0, precision="fp32",
                                threads=int(os.environ.get("THREADS", "1")),
                                replicas=int(os.environ.get("REPLICAS", "1")),
                                optimizer=OptimizerConfig(**OPT[os.environ.get("OPT", "sgd")]))
    trainer = layerwise.Trainer(cfg, loss_fn=F.cross_entropy,
                                checkpoint_dir=os.environ.get("CKPT_DIR") or None,
                                resume=bool(os.environ.get("RESUME")))
    model = network(kind)
    fit = trainer.fit(model, (x, y), (x[:64], y[:64]))
    if trainer.world is None or trainer.world.main:
        save_safetensors(out, model.state_dict())
        print("history", [round(h["train_loss"], 6) for h in fit.history])


if __name__ == "__main__":
    main()
