"""Explanation sanity checks and adversarial robustness on a trained image classifier.

    python benchmarks/explain_robustness.py sanity MODEL_DIR [--rows 16] [--out FILE]
    python benchmarks/explain_robustness.py attack MODEL_DIR [--rows 2000] [--out FILE]

``sanity``: integrated-gradients completeness (|sum of attributions - (f(x) - f(black))|
relative to |f(x) - f(black)|, per test image, at several step counts) and the
model-randomisation check of Adebayo et al. 2018 (Spearman rank correlation between the
maps of the model and of a copy with every layer re-initialised; signed and absolute
maps; integrated gradients and occlusion). ``attack``: clean accuracy and PGD (eps 0.1,
10 steps, step 0.025) accuracy on the first ROWS rows of the test split, plus FGSM.
Figures in docs/benchmarks.md ("Explanations, doctor, robustness, report").
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch


def _rows(model: Any, n: int) -> dict[str, Any]:
    from layerwise.data.build import build

    raw = build(model.config).raw_test
    return {k: list(v[:n]) for k, v in raw.items()}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def sanity(model_dir: str, n: int) -> dict[str, Any]:
    import layerwise as lw

    model = lw.load(model_dir)
    rows = _rows(model, n)
    out: dict[str, Any] = {"model": model_dir, "rows": n, "completeness": {}}
    for steps in (64, 256, 1024):
        t = time.perf_counter()
        ex = model.explain(rows, method="integrated_gradients", steps=steps)
        errs = [r["completeness"]["relative_error"] for r in ex.rows]
        out["completeness"][steps] = {"median": float(np.median(errs)),
                                      "max": float(np.max(errs)),
                                      "share_below_1pct": float(np.mean(np.array(errs) < .01)),
                                      "seconds": round(time.perf_counter() - t, 2)}
    from layerwise.explain.attributions import randomised_copy

    rand = randomised_copy(model)
    out["randomisation"] = {}
    for method in ("integrated_gradients", "occlusion"):
        kw = {"steps": 256} if method == "integrated_gradients" else {}
        target = str(model.schema.outputs[0].vocab[0])
        a = model.explain(rows, method=method, target=target, **kw).maps
        b = rand.explain(rows, method=method, target=target, **kw).maps
        out["randomisation"][method] = {
            "spearman_signed": float(np.mean([_spearman(x, y) for x, y in zip(a, b)])),
            "spearman_abs": float(np.mean([_spearman(np.abs(x), np.abs(y))
                                           for x, y in zip(a, b)]))}
    return out


def attack(model_dir: str, n: int) -> dict[str, Any]:
    import layerwise as lw
    from layerwise.explain.robustness import attack_accuracy, labelled

    model = lw.load(model_dir)
    data = labelled(model)
    data = data.subset(torch.arange(min(n, len(data))))
    t = time.perf_counter()
    pgd = attack_accuracy(model, data, method="pgd", eps=[0.1], steps=10, alpha=0.025)
    fgsm = attack_accuracy(model, data, method="fgsm", eps=[0.1])
    return {"model": model_dir, "rows": len(data), "clean_accuracy": pgd["clean_accuracy"],
            "pgd_eps0.1_10steps": pgd["accuracy"]["0.1"],
            "fgsm_eps0.1": fgsm["accuracy"]["0.1"],
            "seconds": round(time.perf_counter() - t, 1), "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["sanity", "attack"])
    p.add_argument("model_dir")
    p.add_argument("--rows", type=int, default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    result = sanity(a.model_dir, a.rows or 16) if a.what == "sanity" else \
        attack(a.model_dir, a.rows or 2000)
    text = json.dumps(result, indent=1)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
