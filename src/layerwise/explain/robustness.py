"""Robustness of a classifier: accuracy under adversarial attack (FGSM, PGD) against the
radius eps, and under common image corruptions (noise, blur, brightness).

Attacks run in raw input units (pixels in [0, 1]; standardised units for numeric
columns) with :func:`layerwise.training.adversarial.attack`, the code adversarial training
uses; the model is in eval mode and the loss is its own (label smoothing included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from layerwise.data.batching import TensorData, take
from layerwise.data.features import CategoryEncoder
from layerwise.errors import ConfigError
from layerwise.training.adversarial import attack, boxes_for

CORRUPTIONS = {"noise": (0.05, 0.1, 0.2),        # Gaussian noise sigma, pixels in [0, 1]
               "blur": (1, 2, 3),                # Gaussian blur sigma, pixels
               "brightness": (0.1, 0.2, 0.3)}    # added to every pixel


def labelled(predictor: Any, data: Any = None) -> TensorData:
    """Encoded rows with targets: ``data`` (rows or a file), else the run's test split."""
    from layerwise.data.build import build, encode_rows

    if data is not None:
        return encode_rows(predictor.schema, predictor.to_table(data), targets=True)[0]
    ds = build(predictor.config)
    if ds.test is None or not len(ds.test):
        raise ConfigError("the run has no test split; pass labelled data")
    return ds.test


def _category(predictor: Any) -> Any:
    outs = [e for e in predictor.schema.outputs if isinstance(e, CategoryEncoder)]
    if len(outs) != 1 or len(predictor.schema.outputs) != 1:
        raise ConfigError("robustness is measured for a classifier with one category "
                          f"output; outputs: {[e.name for e in predictor.schema.outputs]}")
    return outs[0]


def _correct(model: torch.nn.Module, name: str, inputs: Any, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(inputs)[name].argmax(-1) == y


def attack_accuracy(predictor: Any, data: TensorData, *, method: str = "pgd",
                    eps: list[float] | tuple[float, ...] = (0.1,), steps: int = 10,
                    alpha: float | None = None, batch: int = 256, seed: int = 0
                    ) -> dict[str, Any]:
    """Accuracy on clean rows and under ``method`` at each radius in ``eps``."""
    model, enc = predictor.model.eval(), _category(predictor)
    boxes = boxes_for(predictor.schema)
    y_all = data.targets[enc.name]
    g = torch.Generator().manual_seed(seed)
    hits = {e: 0 for e in (0.0, *eps)}
    for s in range(0, len(data), batch):
        idx = torch.arange(s, min(len(data), s + batch))
        x, y = take(data.inputs, idx), y_all[idx]
        hits[0.0] += int(_correct(model, enc.name, x, y).sum())
        def loss(v: Any, y: torch.Tensor = y) -> torch.Tensor:
            return model.loss(model(v), {enc.name: y})

        for e in eps:
            adv = attack(loss, x, eps=e, method=method, steps=steps, alpha=alpha,
                         boxes=boxes, generator=g)
            hits[e] += int(_correct(model, enc.name, adv, y).sum())
    n = len(data)
    return {"method": method, "steps": steps if method == "pgd" else 1, "rows": n,
            "clean_accuracy": hits[0.0] / n,
            "accuracy": {str(e): hits[e] / n for e in eps}}


def corrupt(x: torch.Tensor, kind: str, level: float, enc: Any,
            generator: torch.Generator) -> torch.Tensor:
    """Model-unit images ``x`` corrupted in pixel space and normalised back."""
    mean = torch.tensor(enc.mean).view(1, -1, 1, 1)
    std = torch.tensor(enc.std).view(1, -1, 1, 1)
    p = x * std + mean                                          # pixels in [0, 1]
    if kind == "noise":
        p = p + level * torch.randn(p.shape, generator=generator)
    elif kind == "brightness":
        p = p + level
    elif kind == "blur":
        r = int(3 * level)
        t = torch.arange(-r, r + 1, dtype=torch.float32)
        k = torch.exp(-t ** 2 / (2 * level ** 2))
        k = (k / k.sum()).to(p.dtype)
        c = p.shape[1]
        p = torch.nn.functional.conv2d(p, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
                                       padding=(0, r), groups=c)
        p = torch.nn.functional.conv2d(p, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                                       padding=(r, 0), groups=c)
    else:
        raise ConfigError(f"corruption must be one of {', '.join(CORRUPTIONS)}; got {kind!r}")
    return (p.clamp(0, 1) - mean) / std


def corruption_accuracy(predictor: Any, data: TensorData, *, batch: int = 512,
                        seed: int = 0) -> dict[str, dict[str, float]]:
    """Accuracy under each corruption of :data:`CORRUPTIONS` at each of its levels."""
    if len(predictor.schema.images) != 1:
        raise ConfigError("corruptions apply to a model with one image input")
    model, enc = predictor.model.eval(), _category(predictor)
    img = predictor.schema.images[0]
    g = torch.Generator().manual_seed(seed)
    out: dict[str, dict[str, float]] = {}
    for kind, levels in CORRUPTIONS.items():
        out[kind] = {}
        for level in levels:
            hit = 0
            for s in range(0, len(data), batch):
                idx = torch.arange(s, min(len(data), s + batch))
                x = dict(take(data.inputs, idx))
                x[img.name] = corrupt(x[img.name], kind, float(level), img, g)
                hit += int(_correct(model, enc.name, x, data.targets[enc.name][idx]).sum())
            out[kind][str(level)] = hit / len(data)
    return out


def example_images(predictor: Any, data: TensorData, path: Path, *, method: str, eps: float,
                   steps: int, n: int = 6) -> Path | None:
    """Clean and attacked versions of the first ``n`` images with the predicted labels."""
    from layerwise.explain.render import _plt, save_png

    if len(predictor.schema.images) != 1:
        return None
    model, enc = predictor.model.eval(), _category(predictor)
    img = predictor.schema.images[0]
    idx = torch.arange(min(n, len(data)))
    x, y = take(data.inputs, idx), data.targets[enc.name][idx]
    adv = attack(lambda v: model.loss(model(v), {enc.name: y}), x, eps=eps, method=method,
                 steps=steps, boxes=boxes_for(predictor.schema),
                 generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(img.mean).view(1, -1, 1, 1)
    std = torch.tensor(img.std).view(1, -1, 1, 1)
    plt = _plt()
    fig, axes = plt.subplots(2, len(idx), figsize=(1.6 * len(idx), 3.6), squeeze=False)
    for row, batch in enumerate((x, adv)):
        with torch.no_grad():
            pred = model(batch)[enc.name].argmax(-1)
        pix = (batch[img.name] * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        for j in range(len(idx)):
            ax = axes[row][j]
            ax.imshow(pix[j][..., 0] if pix.shape[-1] == 1 else pix[j], cmap="gray",
                      vmin=0, vmax=1)
            ax.set_title(f"{'clean' if row == 0 else f'eps {eps}'}: {enc.vocab[int(pred[j])]}",
                         fontsize=7)
            ax.axis("off")
    return save_png(fig, path)


def accuracy_plot(result: dict[str, Any], path: Path) -> Path:
    from layerwise.explain.render import _plt, save_png

    plt = _plt()
    eps = [0.0, *(float(e) for e in result["accuracy"])]
    acc = [result["clean_accuracy"], *result["accuracy"].values()]
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot(eps, acc, marker="o")
    ax.set_xlabel("eps (L-infinity, raw input units)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"{result['method']} ({result['steps']} steps)", fontsize=9)
    return save_png(fig, path)


def run_attack(predictor: Any, out_dir: Path, *, data: Any = None, method: str = "pgd",
               eps: list[float] | None = None, steps: int = 10, rows: int | None = None,
               corruptions: bool = False) -> dict[str, Any]:
    """The ``layerwise attack`` work: attack.json and PNGs in ``out_dir``."""
    from layerwise.files import dumps_json, write_text

    eps = sorted(set(eps or [0.1]))
    tensors = labelled(predictor, data)
    if rows is not None and rows < len(tensors):
        tensors = tensors.subset(torch.arange(rows))
    result = attack_accuracy(predictor, tensors, method=method, eps=eps, steps=steps)
    out_dir.mkdir(parents=True, exist_ok=True)
    pictures = [accuracy_plot(result, out_dir / "accuracy_vs_eps.png")]
    ex = example_images(predictor, tensors, out_dir / "examples.png", method=method,
                        eps=max(eps), steps=steps)
    if ex is not None:
        pictures.append(ex)
    if corruptions:
        result["corruptions"] = corruption_accuracy(predictor, tensors)
    result["pictures"] = [p.name for p in pictures]
    write_text(out_dir / "attack.json", dumps_json(result, indent=1))
    return result


__all__ = ["CORRUPTIONS", "accuracy_plot", "attack_accuracy", "corrupt",
           "corruption_accuracy", "example_images", "labelled", "run_attack"]
