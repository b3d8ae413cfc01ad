"""Latent interpolations of a trained VAE run, as a PNG grid (one row per pair of test rows).

    .venv/bin/python benchmarks/vae_interpolation.py runs/mnist_vae \
        docs/images/mnist_vae_interpolation.png

Each row decodes 10 evenly spaced points between the posterior means of two test images
(the first and last columns are their reconstructions); a class-conditional model blends
the two classes too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import layerwise as lw
from layerwise.config import parse
from layerwise.data.batching import take
from layerwise.data.build import build
from layerwise.evaluation.generative import write_grid


def main(run: Path, out: Path, pairs: int = 8, steps: int = 10) -> None:
    cfg = parse(run / "config.yaml")
    model = lw.load(run / "model").model.eval()  # type: ignore[union-attr]
    test = build(cfg).test
    assert test is not None
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(test), generator=g)[: 2 * pairs]
    a, b = take(test.inputs, idx[:pairs]), take(test.inputs, idx[pairs:])
    with torch.inference_mode():
        path = model.interpolate(a, b, steps=steps)  # [pairs, steps, C, H, W]
    write_grid(path.flatten(0, 1), out, steps)
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
