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

    epochs = [h["epoch"] for h in history]
    metric_keys = [k for k in history[-1] if k.startswith("val_") and k != "val_loss"]
    fig, axes = plt.subplots(1, 2 if metric_keys else 1, figsize=(10 if metric_keys else 5, 3.6))
    axes = list(axes) if metric_keys else [axes]
    axes[0].plot(epochs, [h["train_loss"] for h in history], label="train loss")
    if "val_loss" in history[-1]:
        axes[0].plot(epochs, [h.get("val_loss") for h in history], label="validation loss")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    if metric_keys:
        for k in metric_keys:
            axes[1].plot(epochs, [h.get(k) for h in history], label=k)
        axes[1].set_xlabel("epoch")
        axes[1].legend()
        axes[1].grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
