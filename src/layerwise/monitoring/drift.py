"""Two-sample drift tests between a training reference and live data.

- numbers: PSI over the reference deciles, and the two-sample Kolmogorov–Smirnov test
  against the reference's sample of values;
- categories (and predicted classes): PSI and the chi-squared test of the live counts
  against the reference frequencies;
- embeddings (images, text): the maximum mean discrepancy (RBF kernel, median-distance
  bandwidth) with a permutation test.

A feature is flagged when its p-value, Bonferroni-corrected over the features tested, is
below ``alpha`` **and** its PSI (for embeddings: its MMD over the permutation null's
spread) shows a shift worth acting on — with thousands of live rows a test alone would
flag differences too small to matter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPS = 1e-4
MIN_PSI = 0.1  # the usual "moderate shift" line


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two probability vectors over the same bins."""
    e = np.clip(np.asarray(expected, dtype=float), EPS, None)
    a = np.clip(np.asarray(actual, dtype=float), EPS, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_test(ref: dict[str, Any], live: np.ndarray) -> dict[str, Any]:
    """PSI over the reference deciles; KS against the reference sample when it has one."""
    from scipy import stats

    live = live[np.isfinite(live)]
    edges = np.unique(np.asarray(ref.get("deciles") or [], dtype=float))
    out: dict[str, Any] = {"type": "numeric", "live_count": int(len(live)),
                           "live_mean": float(live.mean()) if len(live) else None,
                           "reference_mean": ref.get("mean")}
    if len(live) == 0 or len(edges) < 2:
        return {**out, "psi": None, "p_value": None}
    inner = edges[1:-1]
    sample = np.asarray(ref.get("sample") or [], dtype=float)
    if len(sample):  # the reference's own mass per bin (ties make deciles uneven)
        expected = np.bincount(np.searchsorted(inner, sample, side="right"),
                               minlength=len(inner) + 1)
    else:
        expected = np.full(len(inner) + 1, 1.0)
    actual = np.bincount(np.searchsorted(inner, live, side="right"), minlength=len(inner) + 1)
    out["psi"] = psi(expected, actual)
    out["p_value"] = float(stats.ks_2samp(sample, live).pvalue) if len(sample) else None
    out["test"] = "ks" if len(sample) else "psi only"
    return out


def category_test(frequencies: dict[str, float], live: list[Any],
                  kind: str = "category") -> dict[str, Any]:
    """PSI and chi-squared of live values against reference frequencies; values the
    reference never saw form one bin of their own."""
    from scipy import stats

    keys = list(frequencies)
    counts = dict.fromkeys(keys, 0)
    unseen = 0
    for v in live:
        k = str(v)
        if k in counts:
            counts[k] += 1
        else:
            unseen += 1
    n = len(live)
    out: dict[str, Any] = {"type": kind, "live_count": n, "unseen": unseen}
    if n == 0 or not keys:
        return {**out, "psi": None, "p_value": None}
    ref = np.array([frequencies[k] for k in keys] + [0.0])
    ref = np.clip(ref, EPS, None)
    ref = ref / ref.sum()
    obs = np.array([counts[k] for k in keys] + [unseen], dtype=float)
    out["psi"] = psi(ref, obs / n)
    out["p_value"] = float(stats.chisquare(obs, ref * n).pvalue)
    out["test"] = "chi2"
    return out


def _rbf(x: np.ndarray, y: np.ndarray, gamma: float) -> np.ndarray:
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return np.exp(-gamma * np.clip(d, 0, None))


def mmd_test(ref: np.ndarray, live: np.ndarray, permutations: int = 200,
             seed: int = 0) -> dict[str, Any]:
    """Squared MMD of two samples of vectors and its permutation p-value."""
    rng = np.random.default_rng(seed)
    if len(live) > 1000:  # the kernel matrix grows with the square of the rows
        live = live[rng.choice(len(live), 1000, replace=False)]
    z = np.concatenate([ref, live]).astype(np.float64)
    n = len(ref)
    sub = z[rng.choice(len(z), min(len(z), 500), replace=False)]
    d = (sub * sub).sum(1)[:, None] + (sub * sub).sum(1)[None, :] - 2 * sub @ sub.T
    med = float(np.median(d[d > 0])) if (d > 0).any() else 1.0
    k = _rbf(z, z, 1.0 / med)

    def stat(idx: np.ndarray) -> float:
        a, b = idx[:n], idx[n:]
        return float(k[np.ix_(a, a)].mean() + k[np.ix_(b, b)].mean()
                     - 2 * k[np.ix_(a, b)].mean())

    observed = stat(np.arange(len(z)))
    null = np.array([stat(rng.permutation(len(z))) for _ in range(permutations)])
    p = float((1 + (null >= observed).sum()) / (permutations + 1))
    spread = float(null.std()) or 1e-12
    return {"type": "embedding", "test": "mmd", "mmd2": observed, "p_value": p,
            "effect": float((observed - null.mean()) / spread), "live_count": len(live)}


def flag(results: dict[str, dict[str, Any]], alpha: float = 0.05,
         min_psi: float = MIN_PSI) -> dict[str, dict[str, Any]]:
    """Mark each result ``drift`` (True/False) by the corrected test and its effect size."""
    tested = [r for r in results.values() if r.get("p_value") is not None]
    m = max(1, len(tested))
    for r in results.values():
        p = r.get("p_value")
        r["p_adjusted"] = None if p is None else min(1.0, p * m)
        if r.get("type") == "embedding":
            big = r["effect"] >= 3.0  # the shift stands well clear of the null
        else:
            big = r.get("psi") is not None and r["psi"] >= min_psi
        sig = p is None or r["p_adjusted"] < alpha
        r["drift"] = bool(big and sig)
    return results
