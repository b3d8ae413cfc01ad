"""Pictures of explanations: per-feature bars (tabular), heat-map overlays (images),
highlighted tokens (text), attention maps (transformers); PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TOP = 20  # bars drawn per tabular row


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: Path) -> Path:
    plt = _plt()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _title(row: dict[str, Any], method: str) -> str:
    what = f"class {row['target']}" if "target" in row else "output"
    return f"{method}: {what} ({row['value']:.3g})"


def bars(features: list[str], values: np.ndarray, title: str) -> Any:
    """Horizontal bars, the largest |attribution| on top; red raises the output."""
    plt = _plt()
    order = np.argsort(-np.abs(values))[:TOP][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(order) + 1.2))
    colors = ["#c0392b" if values[i] > 0 else "#2e86c1" for i in order]
    ax.barh([features[i] for i in order], values[order], color=colors)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("attribution")
    return fig


def overlay(pixels: np.ndarray, heat: np.ndarray, title: str) -> Any:
    """The image, and the signed attribution map over it (red: raises the output)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(5, 2.7))
    img = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
    axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    axes[0].set_title("input", fontsize=8)
    axes[1].imshow(img if img.ndim == 3 else img, cmap="gray" if img.ndim == 2 else None,
                   vmin=0, vmax=1)
    lim = float(np.abs(heat).max()) or 1.0
    axes[1].imshow(heat, cmap="bwr", vmin=-lim, vmax=lim, alpha=0.6)
    axes[1].set_title(title, fontsize=8)
    for ax in axes:
        ax.axis("off")
    return fig


def tokens(words: list[str], values: np.ndarray, title: str, per_line: int = 10) -> Any:
    """Tokens as words on coloured boxes, wrapped ``per_line`` to a line."""
    plt = _plt()
    lines = max(1, (len(words) + per_line - 1) // per_line)
    fig, ax = plt.subplots(figsize=(8, 0.45 * lines + 0.7))
    lim = float(np.abs(values).max()) if len(values) else 1.0
    cmap = plt.get_cmap("bwr")
    for i, (w, v) in enumerate(zip(words, values)):
        r, c = divmod(i, per_line)
        ax.text(c / per_line, 1 - (r + 0.5) / lines, w, fontsize=9, ha="left", va="center",
                bbox={"facecolor": cmap(0.5 + 0.5 * float(v) / (lim or 1.0)),
                      "edgecolor": "none", "pad": 2})
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return fig


def attention_map(words: list[str], weights: np.ndarray, title: str) -> Any:
    """Head-averaged attention ``[T, T]``: row i is where token i looks."""
    plt = _plt()
    n = len(words)
    fig, ax = plt.subplots(figsize=(0.3 * n + 2, 0.3 * n + 1.5))
    im = ax.imshow(weights, cmap="viridis")
    ax.set_xticks(range(n), words, rotation=90, fontsize=7)
    ax.set_yticks(range(n), words, fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def draw(ex: Any, out_dir: Path) -> list[Path]:
    """One PNG per row of an explanation (two per row for attention: map and scores)."""
    paths = []
    for i, row in enumerate(ex.rows):
        if ex.method == "attention":
            words = row["tokens"]
            paths.append(save_png(attention_map(words, np.array(row["attention"][-1]),
                                                "attention, last block (head mean)"),
                                  out_dir / f"row{i}_attention.png"))
            paths.append(save_png(tokens(words, np.array(row["attributions"]),
                                         "attention received (last block)"),
                                  out_dir / f"row{i}_attention_received.png"))
            continue
        elif ex.kind == "tabular":
            fig = bars(ex.features, ex.maps[i], _title(row, ex.method))
        elif ex.kind == "image":
            fig = overlay(ex.images[i], ex.maps[i], _title(row, ex.method))
        else:
            fig = tokens(row["tokens"], ex.maps[i], _title(row, ex.method))
        paths.append(save_png(fig, out_dir / f"row{i}_{ex.method}.png"))
    return paths
