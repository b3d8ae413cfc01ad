"""Sample quality, measured with a classifier that layerwise trains itself (the judge).

No downloaded Inception weights: for an image data set with a class column, a small CNN is
trained on the data set's own training split (all rows, whatever ``data.limit`` the
generative run used) and cached under ``$LAYERWISE_CACHE/judges/<key>`` (default
``~/.cache/layerwise``), keyed by the data config and the judge's recipe, so every model of
one data set is judged on the same features. The judge works on pixels in [0, 1].

- **Fréchet distance** between the Gaussians fitted to the judge's penultimate features
  of ``n`` samples and of ``n`` real held-out (test) rows:
  ``|μ₁ - μ₂|² + tr(Σ₁ + Σ₂ - 2 (Σ₁ Σ₂)^½)``. The floor is the same distance between ``n``
  real training rows and the same test rows.
- **Class accuracy** of a class-conditional model: the share of samples the judge assigns
  to the class they were asked for; the floor is the judge's accuracy on real test rows.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import numpy as np
import torch

from layerwise.config import (
    CategoryOutput,
    CNNConfig,
    Config,
    ConvBlock,
    SplitConfig,
    TrainConfig,
)
from layerwise.data.batching import TensorData
from layerwise.data.build import Dataset, Schema, build
from layerwise.errors import ConfigError
from layerwise.files import atomic_write, cache_root, load_safetensors, save_safetensors
from layerwise.models import LayerwiseModel, build_model
from layerwise.training import Trainer

RECIPE = {"version": 1, "epochs": 3, "rows": 20000, "batch_size": 128, "lr": 0.003,
          "blocks": [32, 64, 128], "dense": 128}


class Judge:
    """A trained classifier: pixels → penultimate features and class predictions."""

    def __init__(self, model: LayerwiseModel, image: str, label: str, vocab: list[str],
                 mean: list[float], std: list[float], meta: dict[str, Any]) -> None:
        self.model = model.eval()
        self.image, self.label, self.vocab = image, label, vocab
        c = len(mean)
        self.mean = torch.tensor(mean).view(1, c, 1, 1)
        self.std = torch.tensor(std).view(1, c, 1, 1)
        self.meta = meta

    @torch.inference_mode()
    def run(self, pixels: torch.Tensor, batch_size: int = 500
            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``[N, F]`` and predicted class indices ``[N]`` of pixel images."""
        feats, preds = [], []
        for s in range(0, len(pixels), batch_size):
            x = (pixels[s:s + batch_size].float() - self.mean) / self.std
            h = self.model.backbone({self.image: x})
            feats.append(h)
            preds.append(self.model.heads[self.label](h).argmax(1))
        return torch.cat(feats), torch.cat(preds)


def _judge_config(cfg: Any, label: str) -> Config:
    image = next(f for f in cfg.inputs if f.type == "image")
    # the data set as a whole, whatever limit and split the generative run chose: every
    # model of one data set is judged by the same classifier against the same test rows
    data = cfg.data.model_copy(update={"limit": None, "validation_path": None,
                                       "split": SplitConfig(validation=0.1, test=0.2, seed=0)})
    return Config(
        name="judge", seed=0, data=data,
        inputs=[image.model_copy(update={"augment": image.augment.model_copy(
            update={"shift": 0, "flip": False, "noise": 0.0})})],
        outputs=[CategoryOutput(name=label, type="category")],
        model=CNNConfig(family="cnn", blocks=[
            ConvBlock(filters=RECIPE["blocks"][0]),  # type: ignore[arg-type]
            ConvBlock(filters=RECIPE["blocks"][1], pool="max"),  # type: ignore[arg-type]
            ConvBlock(filters=RECIPE["blocks"][2], pool="max")],  # type: ignore[arg-type]
            dense=[RECIPE["dense"]]),  # type: ignore[list-item]
        train=TrainConfig(epochs=RECIPE["epochs"], batch_size=RECIPE["batch_size"],
                          progress="quiet",
                          optimizer={"name": "adamw", "lr": RECIPE["lr"]},  # type: ignore[arg-type]
                          schedule={"name": "onecycle"}))  # type: ignore[arg-type]


def get_judge(cfg: Any) -> tuple[Judge, Dataset]:
    """The cached judge of ``cfg``'s data set (trained on first use) and its data."""
    from layerwise.evaluation.metrics import classification

    label = cfg.model.quality_label or cfg.model.condition
    jcfg = _judge_config(cfg, label)
    key_src = json.dumps({"data": jcfg.data.model_dump(mode="json"),
                          "image": jcfg.inputs[0].model_dump(mode="json"),
                          "label": label, "recipe": RECIPE}, sort_keys=True)
    where = cache_root() / "judges" / hashlib.sha256(key_src.encode()).hexdigest()[:16]
    ds = build(jcfg)
    torch.manual_seed(0)
    model = build_model(jcfg.model, jcfg.outputs, ds.schema.describe())
    if (where / "judge.json").is_file():  # written last (see below)
        model.load_state_dict(load_safetensors(where / "weights.safetensors"))
        meta = json.loads((where / "judge.json").read_text())
    else:
        g = torch.Generator().manual_seed(0)
        rows = torch.randperm(len(ds.train), generator=g)[:RECIPE["rows"]]
        t0 = time.perf_counter()
        Trainer(jcfg.train).fit(model, ds.train.subset(rows))
        seconds = time.perf_counter() - t0
        model.eval()
        test = held_out(ds)
        with torch.inference_mode():
            pred = torch.cat([model(_take(test, s, 1000))[label].argmax(1)
                              for s in range(0, len(test), 1000)])
        enc = ds.schema.outputs[0]
        acc = classification(test.targets[label].numpy(), pred.numpy(),
                             enc.vocab)["accuracy"]  # type: ignore[attr-defined]
        meta = {"test_accuracy": acc, "train_rows": len(rows), "seconds": round(seconds, 1),
                "recipe": RECIPE, "key": key_src}
        # atomic writes, the weights first: a process that finds judge.json finds whole
        # weights, even while another one trains the same judge
        save_safetensors(where / "weights.safetensors", model.state_dict())
        atomic_write(where / "judge.json", lambda f: f.write(json.dumps(meta, indent=2)
                                                             .encode()))
    enc_img = ds.schema.images[0]
    judge = Judge(model, jcfg.inputs[0].name, label,
                  [str(v) for v in ds.schema.outputs[0].vocab],  # type: ignore[attr-defined]
                  enc_img.mean, enc_img.std, meta)  # type: ignore[attr-defined]
    return judge, ds


def held_out(ds: Dataset) -> TensorData:
    """The rows the judge is scored and compared on: the test split, else validation."""
    for part in (ds.test, ds.validation):
        if part is not None and len(part):
            return part
    raise ConfigError("judging samples needs real held-out rows, but the data set has no "
                      "test or validation rows; set data.split.test or data.test_path")


def _take(data: TensorData, start: int, size: int) -> dict[str, torch.Tensor]:
    from layerwise.data.batching import take

    return take(data.inputs, torch.arange(start, min(len(data), start + size)))  # type: ignore[return-value]


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature rows ``a`` and ``b``.

    ``tr((Σ₁Σ₂)^½)`` is computed as the sum of the square roots of the eigenvalues of the
    symmetric ``Σ₁^½ Σ₂ Σ₁^½`` (same spectrum), which stays stable when the covariances are
    singular (dead features, fewer rows than features).
    """
    x, y = a.double().numpy(), b.double().numpy()
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    inner = np.linalg.eigvalsh(root @ s2 @ root)
    tr_covmean = float(np.sqrt(np.clip(inner, 0.0, None)).sum())
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def _pixels(judge: Judge, data: TensorData, idx: torch.Tensor) -> torch.Tensor:
    x = data.inputs[judge.image][idx]  # type: ignore[index]
    return (x * judge.std + judge.mean).clamp(0, 1)


def sample_quality(model: Any, cfg: Any, ds: Dataset | Schema, n: int = 1000, seed: int = 0
                   ) -> dict[str, Any]:
    """Fréchet distance and class accuracy of ``n`` samples, with real-data floors.
    ``ds``: the run's data set or just its fitted schema (a loaded model's)."""
    schema = ds.schema if isinstance(ds, Dataset) else ds
    label = cfg.model.quality_label or cfg.model.condition
    if label is None:
        return {"skipped": "no class column to train a judge on: set model.quality_label "
                           "(or model.condition) to a category input"}
    judge, jds = get_judge(cfg)
    test = held_out(jds)
    g = torch.Generator().manual_seed(1234)
    n = min(n, len(test), len(jds.train))
    real_test = _pixels(judge, test, torch.randperm(len(test), generator=g)[:n])
    real_train = _pixels(judge, jds.train, torch.randperm(len(jds.train), generator=g)[:n])
    f_test, p_test = judge.run(real_test)
    f_train, _ = judge.run(real_train)
    labels = None
    if model.spec.classes:
        labels = 1 + torch.arange(n) % (model.spec.classes - 1)  # 0 is the unknown value
    t0 = time.perf_counter()
    with torch.inference_mode():
        x = model.sample(n, labels=labels, generator=torch.Generator().manual_seed(seed))
    sample_seconds = time.perf_counter() - t0
    f_gen, p_gen = judge.run(x)
    y_test = test.targets[label][torch.randperm(len(test), generator=torch.Generator()
                                                .manual_seed(1234))[:n]]
    out: dict[str, Any] = {
        "samples": n, "sample_seconds": round(sample_seconds, 2),
        "frechet_distance": frechet_distance(f_gen, f_test),
        "frechet_floor_real_train_vs_test": frechet_distance(f_train, f_test),
        "judge_test_accuracy": float((p_test == y_test).float().mean()),
        "judge": {k: judge.meta[k] for k in ("test_accuracy", "train_rows", "seconds")},
        "predicted_class_share": {judge.vocab[k]: float((p_gen == k).float().mean())
                                  for k in range(len(judge.vocab))},
    }
    if labels is not None:
        j = [e.name for e in schema.category].index(cfg.model.condition)
        vocab = [str(v) for v in schema.category[j].vocab]  # type: ignore[attr-defined]
        want = torch.tensor([judge.vocab.index(vocab[k]) if vocab[k] in judge.vocab else -1
                             for k in labels.tolist()])
        out["class_accuracy"] = float((p_gen == want).float().mean())
    return out
