"""The recommender artifact and what it answers: top-k items for a user.

    model/
      layerwise.json      "kind": "recommender", family, the run's config, the user
                          vocabulary, the item catalogue (ids, genres, titles), training
                          popularity, metrics, lineage
      model.safetensors   weights and the catalogue buffers; never a pickle

A known user gets the model's top ``k`` items, leaving out the items they interacted with
in training. The sequential family (sasrec) scores the catalogue after the user's latest
``max_length`` items of every split (the ``history`` buffer: at serving time the whole
known history is input) and leaves those out too. An unknown user is a cold start: the
two-tower model scores the catalogue with its unknown-user vector (learned by id dropout,
from item features); the other families answer with the most popular items.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from layerwise import artifact as art
from layerwise.config import RecommendConfig, parse
from layerwise.errors import ArtifactError, ConfigError, DataError
from layerwise.files import dumps_json, load_safetensors, save_safetensors, write_text
from layerwise.recommend.data import Interactions
from layerwise.recommend.families import FAMILIES, make
from layerwise.recommend.models import TwoTower, _Recommender
from layerwise.recommend.sequential import SASRec, user_histories

KIND = "recommender"


class Recommender:
    """A trained recommender with its vocabularies: ``recommend(user, k)``, ``predict``."""

    def __init__(self, model: _Recommender, config: RecommendConfig, users: list[str],
                 items: list[str], popularity: torch.Tensor, titles: list[str] | None = None,
                 meta: dict[str, Any] | None = None, path: Path | None = None) -> None:
        self.model, self.config, self.users, self.items = model.eval(), config, users, items
        self.popularity, self.titles, self.meta, self.path = popularity, titles, meta or {}, \
            path
        self._user_index = {u: i + 1 for i, u in enumerate(users)}

    @classmethod
    def from_data(cls, model: _Recommender, config: RecommendConfig, data: Interactions
                  ) -> Recommender:
        counts = torch.bincount(data.train[:, 1], minlength=data.n_items)
        if isinstance(model, SASRec):  # what recommend() reads: every split, in time order
            model.remember(user_histories(data, "test", model.max_length))
        return cls(model, config, data.users, data.items, counts, data.titles)

    # -- answers -------------------------------------------------------------------------
    @torch.inference_mode()
    def recommend(self, user: Any, k: int = 10) -> dict[str, Any]:
        """The top ``k`` items for ``user`` (an id as in the data, e.g. ``7`` or ``"7"``)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive whole number; got {k!r}")
        uid = str(user).strip()
        if not uid:
            raise DataError("user: empty id")
        u = self._user_index.get(_canonical(uid, self._user_index), 0)
        if u == 0 and not isinstance(self.model, TwoTower):
            scores, source = self.popularity.float().clone(), "popularity"
        else:
            all_items = torch.arange(len(self.items)).unsqueeze(0)
            scores = self.model.score(torch.tensor([u]), all_items)[0].float()
            source = "model" if u else "features"
        if u:
            scores[self.model.known(u)] = float("-inf")
        top = torch.topk(scores, min(k, int(torch.isfinite(scores).sum())))
        rows = [{"item": self.items[i], "score": round(float(s), 6),
                 **({"title": self.titles[i]} if self.titles else {})}
                for s, i in zip(top.values.tolist(), top.indices.tolist())]
        return {"user": uid, "cold_start": u == 0, "source": source, "items": rows}

    def predict(self, rows: Any, k: int | None = None) -> list[dict[str, Any]]:
        """Recommendations per row: a list of user ids or of ``{"user": id}`` rows, or a
        CSV / JSON-lines file with a column named as the config's user column or
        ``user`` (and an optional ``k`` column)."""
        kk = k or self.config.ranking.k
        out = []
        for i, row in enumerate(_rows(rows, self.config.interactions.user)):
            if isinstance(row, dict):
                user = row.get(self.config.interactions.user, row.get("user"))
                if user is None or user != user:
                    raise DataError(f"row {i + 1}: no user (column "
                                    f"{self.config.interactions.user!r} or 'user')")
                out.append(self.recommend(user, int(row.get("k") or kk)))
            else:
                out.append(self.recommend(row, kk))
        return out

    def evaluate(self) -> dict[str, Any]:
        """HR@k and NDCG@k on the run's own test items (the split rebuilt from the stored
        config; the data must hash as at training), beside the popularity baseline."""
        from layerwise.recommend.ranking import ranking_report, rebuild

        data = rebuild(self.config, self.meta.get("data_hash"), self.path)
        return ranking_report(self.model, data, self.config, "test")

    # -- the artifact --------------------------------------------------------------------
    def save(self, path: str | Path, *, metrics: dict[str, Any] | None = None,
             lineage: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
             ) -> Path:
        """Write the model directory; each file is replaced atomically."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"format_version": art.FORMAT_VERSION, "library": "layerwise", "kind": KIND,
                "family": self.config.model.family,
                "config": self.config.model_dump(mode="json"), "users": self.users,
                "items": self.items, "titles": self.titles,
                "popularity": self.popularity.tolist(), "metrics": metrics or {},
                "lineage": lineage or {}, **(extra or {})}
        save_safetensors(out / art.WEIGHTS, {k: v.contiguous() for k, v in
                                             self.model.state_dict().items()})
        write_text(out / art.META, dumps_json(meta, indent=2))
        return out

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load a recommender directory safely (format version, safetensors, known
        family, vocabularies that fit the weights)."""
        p = Path(path)
        meta = art.read_header(p)
        where = p / art.META
        if meta.get("kind") != KIND:
            raise ArtifactError(f"{where}: not a recommender (kind {meta.get('kind')!r})")
        if meta.get("family") not in FAMILIES:
            raise ArtifactError(f"{where}: recommender family {meta.get('family')!r} is not "
                                f"known (known: {', '.join(sorted(FAMILIES))}); refusing "
                                "to load")
        for key in ("users", "items", "popularity"):
            if not isinstance(meta.get(key), list):
                raise ArtifactError(f"{where}: {key!r} must be a JSON list")
        try:
            config = parse(meta["config"])
        except (ConfigError, KeyError) as e:
            raise ArtifactError(f"{where}: the stored config is invalid: {e}") from None
        if not isinstance(config, RecommendConfig):
            raise ArtifactError(f"{where}: the stored config is not a recommendation run")
        art.check_weights_file(p / art.WEIGHTS)
        tensors = load_safetensors(p / art.WEIGHTS)
        model = _rebuild(config, meta, tensors, where)
        return cls(model, config, [str(u) for u in meta["users"]],
                   [str(i) for i in meta["items"]], torch.tensor(meta["popularity"]),
                   meta.get("titles"), meta, p)

    def __repr__(self) -> str:
        return (f"Recommender(family={self.config.model.family!r}, users={len(self.users)}, "
                f"items={len(self.items)})")


def _rebuild(config: RecommendConfig, meta: dict[str, Any], tensors: dict[str, Any],
             where: Path) -> _Recommender:
    """The module of the stored family, its buffers and weights from ``tensors``."""
    need = ["item_row", "seen"] + {"two_tower": ["item_genres", "item_year"],
                                   "sasrec": ["history"]}.get(config.model.family, [])
    missing = [n for n in need if n not in tensors]
    if missing or len(tensors["item_row"]) != len(meta["items"]):
        raise ArtifactError(f"{where}: the weights do not fit the catalogue (missing "
                            f"{missing}, or not {len(meta['items'])} items)")
    base = {"n_users": len(meta["users"]), "item_row": tensors["item_row"],
            "seen": tensors["seen"], "negatives": config.negatives, "k": config.ranking.k}
    cfg = config.model  # the two-tower year and the sasrec history load with the weights
    model = make(cfg, base, tensors.get("item_genres"), torch.zeros(len(meta["items"])))
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise ArtifactError(f"{where.parent / art.WEIGHTS}: weights do not fit the "
                            f"{cfg.family} model: {str(e).splitlines()[0]}") from None
    return model.eval()


def _canonical(uid: str, index: dict[str, int]) -> str:
    """``"7.0"`` names user ``"7"`` when only that one exists (ids read as numbers)."""
    if uid in index:
        return uid
    try:
        f = float(uid)
    except ValueError:
        return uid
    return str(int(f)) if f.is_integer() and str(int(f)) in index else uid


def _rows(rows: Any, column: str) -> list[Any]:
    """User ids or row dicts from a list, or from a CSV / JSON-lines file."""
    if isinstance(rows, list | tuple):
        return list(rows)
    if isinstance(rows, str | Path):
        import pandas as pd

        p = Path(rows)
        if not p.is_file():
            raise DataError(f"input not found: {p}")
        try:
            df = pd.read_json(p, lines=True, dtype=False) if p.suffix.lower() in \
                (".jsonl", ".json") else pd.read_csv(p, dtype=str)
        except ValueError as e:
            raise DataError(f"{p}: not readable as rows ({e})") from None
        if column not in df.columns and "user" not in df.columns:
            raise DataError(f"{p}: no column {column!r} or 'user'; columns: "
                            f"{list(df.columns)}")
        return df.to_dict("records")
    return [rows]
