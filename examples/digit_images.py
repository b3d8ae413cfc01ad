"""Write a few digits from scikit-learn as PNG files, to try `layerwise predict` on.

    python examples/digit_images.py runs/digits/samples
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main(out: str, n: int = 6) -> None:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    d = load_digits()
    rng = np.random.default_rng(0)
    for i in rng.choice(len(d.images), size=n, replace=False):
        pixels = (d.images[i] * 255 / 16).round().astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"digit_{i}_true{d.target[i]}.png")
    print(f"wrote {n} PNG digits to {folder}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/digits/samples")
