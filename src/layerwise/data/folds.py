"""k-fold assignment of rows for cross-validation (scikit-learn does the splitting).

``fold_split`` returns the rows of one fold (the held-out part, the run's test split) and
the rest. Folds are stratified by the label when there is one, kept together by a group
column when one is given (both at once: stratified grouped folds), and reshuffled by the
seed, which ``data.split.repeat`` shifts, so each repetition deals the rows anew.
"""

from __future__ import annotations

import numpy as np

from layerwise.errors import DataError


def fold_split(n: int, folds: int, fold: int, labels: np.ndarray | None,
               groups: np.ndarray | None, seed: int, where: str = "the data"
               ) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(rest, held_out)`` of fold ``fold`` of ``folds`` over ``n`` rows, sorted."""
    from sklearn.model_selection import (
        GroupKFold,
        KFold,
        StratifiedGroupKFold,
        StratifiedKFold,
    )

    if n < folds:
        raise DataError(f"{where}: {n} rows cannot fill {folds} folds")
    x = np.zeros(n)
    if groups is not None:
        groups = np.array([str(g) for g in groups])
        n_groups = len(np.unique(groups))
        if n_groups < folds:
            raise DataError(f"{where}: the group column has {n_groups} distinct values; "
                            f"{folds} folds need at least {folds}")
        if labels is not None:
            splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
        else:  # permuting the group names reshuffles GroupKFold on any scikit-learn
            splitter = GroupKFold(folds)
            names = np.unique(groups)
            rank = dict(zip(names, np.random.default_rng(seed).permutation(len(names))))
            groups = np.array([str(rank[g]) for g in groups])
        parts = list(splitter.split(x, labels, groups))
    elif labels is not None and _can_stratify(labels, folds):
        parts = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, labels))
    else:
        parts = list(KFold(folds, shuffle=True, random_state=seed).split(x))
    rest, held = parts[fold]
    return np.sort(rest), np.sort(held)


def _can_stratify(labels: np.ndarray, folds: int) -> bool:
    """Stratified folds need every class at least ``folds`` times; rarer classes fall back
    to plain shuffled folds (as ``data.split`` falls back for a plain split)."""
    _, counts = np.unique(labels, return_counts=True)
    return bool(counts.min() >= folds)
