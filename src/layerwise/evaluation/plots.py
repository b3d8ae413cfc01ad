"""Learning curves as PNG (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def learning_curves(history: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Plot loss and validation metrics per epoch; returns the file written."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    metric_keys = [k for k in history[-1] if k.startswith("val_") and k != "val_loss"]
    fig, axes = plt.subplots(1, 2 if metric_keys else 1, figsize=(10 if metric_keys else 5, 3.6))
    axes = list(axes) if metric_keys else [axes]

    def plot(ax: Any, key: str, label: str) -> None:
        ys = [h.get(key) for h in history]
        # a line through one point draws nothing: a one-epoch run shows its values as dots
        dots = {"marker": "o"} if sum(y is not None for y in ys) == 1 else {}
        ax.plot(epochs, ys, label=label, **dots)

    plot(axes[0], "train_loss", "train loss")
    if "val_loss" in history[-1]:
        plot(axes[0], "val_loss", "validation loss")
    for ax in axes:  # whole epochs, also when there are only one or two
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    if metric_keys:
        for k in metric_keys:
            plot(axes[1], k, k)
        axes[1].set_xlabel("epoch")
        axes[1].legend()
        axes[1].grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
