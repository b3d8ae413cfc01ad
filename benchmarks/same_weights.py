"""Same-seed weights of three reference runs, as sha256 digests: run before and after a
refactoring of the training code, the digests must match ("no behaviour change").

    python benchmarks/same_weights.py > before.txt   # ... change the code ...
    python benchmarks/same_weights.py | diff before.txt -

The runs are short versions of the examples, with threads and precision pinned (the thread
count and precision change the last bits; the point here is the code, not the machine):
the digits CNN (5 epochs), the Fashion-MNIST GAN (1,500 images, 1 epoch; the Trainer only,
no judge) and CartPole PPO (20,000 environment steps).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile

import torch
from safetensors.torch import load_file

import layerwise
from layerwise.api import build_for
from layerwise.config import parse
from layerwise.data.augment import Augmenter
from layerwise.data.build import build

ROOT = os.path.join(os.path.dirname(__file__), "..", "examples")
PIN = ["train.threads=2", "train.precision=fp32", "train.progress=quiet"]


def digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy()
                 .tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = layerwise.train(os.path.join(ROOT, "digits_cnn.yaml"), output=f"{tmp}/digits",
                              overrides=["train.epochs=5", *PIN])
        print("digits_cnn", digest(load_file(str(run.model_dir / "model.safetensors"))))
        cfg = parse(os.path.join(ROOT, "fashion_gan.yaml"),
                    ["data.limit=1500", "train.epochs=1", *PIN])
        ds = build(cfg)
        model = build_for(cfg, ds)
        augment = Augmenter({e.name: e.cfg.augment for e in ds.schema.images}, cfg.seed)
        layerwise.Trainer(cfg.train, augment=augment).fit(model, ds.train)
        print("fashion_gan", digest(model.state_dict()))
        run = layerwise.train(os.path.join(ROOT, "cartpole_ppo.yaml"), output=f"{tmp}/ppo",
                              overrides=["train.total_steps=20000", "train.eval_every=10000",
                                         "train.threads=1", "train.progress=quiet"])
        print("cartpole_ppo", digest(load_file(str(run.model_dir / "model.safetensors"))))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
