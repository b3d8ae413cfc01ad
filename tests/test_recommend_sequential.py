"""The sequential recommender (sasrec): time-ordered histories without held-out items,
causal states, a learnable next-item pattern, the artifact and its answers. Tiny synthetic
interactions only (MovieLens is in benchmarks/movielens_recommend.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import layerwise as lw
from layerwise.config import parse
from layerwise.errors import ConfigError
from layerwise.files import load_safetensors
from layerwise.recommend import Recommender
from layerwise.recommend import data as rdata
from layerwise.recommend.families import build_recommender, training_data
from layerwise.recommend.ranking import ranking_data
from layerwise.recommend.sequential import SASRec, user_histories

pytestmark = pytest.mark.usefixtures("one_thread")

N_ITEMS, USERS, LENGTH, K, CANDIDATES = 40, 60, 12, 10, 20


def _chain(path: Path) -> Path:
    """Users who always watch item i + 1 after item i (mod 40), 12 in a row from a random
    start, at shuffled file rows: only the order of a history tells the next item, and
    every item is about as popular as any other."""
    rng = np.random.default_rng(0)
    rows = [(u, (start + t) % N_ITEMS, 100 * t)
            for u, start in enumerate(rng.integers(0, N_ITEMS, USERS)) for t in range(LENGTH)]
    df = pd.DataFrame(rows, columns=["userId", "movieId", "timestamp"])
    df.sample(frac=1.0, random_state=0).to_csv(path, index=False)
    return path


def _config(csv: Path, epochs: int = 30, **model: Any) -> dict[str, Any]:
    return {"name": "tiny_sasrec", "seed": 0, "interactions": {"path": str(csv)},
            "model": {"family": "sasrec", "dim": 16, "max_length": 8, "heads": 2,
                      "dropout": 0.1, **model},
            "negatives": 2, "ranking": {"k": K, "candidates": CANDIDATES},
            "train": {"epochs": epochs, "batch_size": 16, "optimizer": {"lr": 0.01},
                      "progress": "quiet"}}


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _chain(tmp_path_factory.mktemp("seq") / "chain.csv")


@pytest.fixture(scope="module")
def run(csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    torch.set_num_threads(1)
    return lw.train(_config(csv), output=tmp_path_factory.mktemp("runs") / "sasrec")


def _ordered(csv: Path) -> dict[int, list[int]]:
    """Each user's items by time, from the file itself."""
    df = pd.read_csv(csv).sort_values(["userId", "timestamp"])
    return {int(u): g.movieId.tolist() for u, g in df.groupby("userId")}


# -- histories: time order, and never the item being predicted ------------------------------

def test_histories_are_in_time_order_and_stop_before_the_held_out_item(csv: Path) -> None:
    cfg = parse(_config(csv))
    data = rdata.build(cfg.interactions)
    ordered = _ordered(csv)
    rows = {split: ranking_data(data, cfg, split) for split in ("validation", "test")}
    for split, before in (("validation", 2), ("test", 1)):
        users, history = rows[split].inputs["user"], rows[split].inputs["history"]
        held = rows[split].inputs["candidates"][:, 0]
        for u, h, item in zip(users.tolist(), history.tolist(), held.tolist()):
            items = [int(data.items[i]) for i in h if i >= 0]
            watched = ordered[int(data.users[u - 1])]
            # the last 8 items before the held-out one, oldest first; the held-out item
            # (and for validation, the test item after it) is not among them
            assert items == watched[:-before][-8:], (split, u)
            assert int(data.items[item]) == watched[-before]
            assert int(data.items[item]) not in items
    test_hist, users = rows["test"].inputs["history"], rows["test"].inputs["user"]
    last = test_hist[torch.arange(len(test_hist)), (test_hist >= 0).sum(1) - 1]
    validation = dict(data.validation.tolist())
    assert last.tolist() == [validation[u] for u in users.tolist()]  # then the test item


def test_training_rows_hold_training_items_only(csv: Path) -> None:
    cfg = parse(_config(csv))
    data = rdata.build(cfg.interactions)
    rows = training_data(cfg.model, data)
    held = set(data.validation[:, 1].tolist()) | set(data.test[:, 1].tolist())
    for u, seq, nxt in zip(*(rows.inputs[k].tolist() for k in ("user", "seq", "next"))):
        mine = {i for i in data.test[data.test[:, 0] == u, 1].tolist()} | \
            {i for i in data.validation[data.validation[:, 0] == u, 1].tolist()}
        assert not mine & (set(seq) | set(nxt)), u  # no held-out item of this user
        real = [i for i in seq if i >= 0]
        assert nxt[:len(real) - 1] == real[1:]      # each target is the next input
    assert held  # the check above had held-out items to look for
    # windows: all cuts the 10 training items of each user into stretches of 9 (max_length
    # 8 + 1) overlapping by one: every training item but the first is a target once
    every = training_data(parse(_config(csv, windows="all")).model, data)
    assert len(every) == 2 * len(rows) and (every.inputs["next"] >= 0).sum() == 9 * USERS
    for u in range(1, USERS + 1):
        mine = every.inputs["next"][every.inputs["user"] == u]
        targets = sorted(mine[mine >= 0].tolist())
        by_time = data.train[data.train_order]
        mine_by_time = by_time[by_time[:, 0] == u, 1]
        assert targets == sorted(mine_by_time[1:].tolist())


def test_a_state_never_reads_a_later_item(csv: Path) -> None:
    cfg = parse(_config(csv))
    data = rdata.build(cfg.interactions)
    torch.manual_seed(0)
    model = build_recommender(cfg.model, data, 2, K).eval()
    assert isinstance(model, SASRec)
    seq = torch.tensor([[3, 4, 5, 6, -1, -1, -1, -1]])
    later = seq.clone()
    later[0, 3:] = torch.tensor([20, 21, 22, 23, 24])  # change item 3 and what follows
    a, b = model.states(seq), model.states(later)
    assert torch.allclose(a[0, :3], b[0, :3]) and not torch.allclose(a[0, 3], b[0, 3])
    # a user's state is the one after their last real item, whatever follows it
    longer = torch.tensor([[3, 4, 5, 6, 30, 31, 32, 33]])
    assert torch.allclose(model.user_state(seq)[0], model.states(longer)[0, 3])
    assert not torch.allclose(model.user_state(seq)[0], model.user_state(longer)[0])


# -- training finds the pattern, the artifact answers ----------------------------------------

def test_sasrec_learns_the_next_item_where_popularity_cannot(run: Any) -> None:
    test = run.metrics["test"]
    assert test[f"hr@{K}"] >= 0.95 and test[f"ndcg@{K}"] > 0.8, test
    assert test[f"full_hr@{K}"] >= 0.9, test
    assert test[f"popularity_hr@{K}"] < 0.7, test
    assert run.metrics["validation"][f"hr@{K}"] >= 0.9


class Spy(SASRec):
    """Scores an item 1 when it is in the history it is given, else 0: any held-out item
    in its input ranks first."""

    def score(self, users: torch.Tensor, items: torch.Tensor,
              history: torch.Tensor | None = None) -> torch.Tensor:
        seq = self.history[users] if history is None else history
        seq = seq.reshape(len(seq), *([1] * (items.dim() - 1)), -1)
        return (items[..., None] == seq).any(-1).float()


def test_no_held_out_item_reaches_the_inputs_of_the_evaluation(csv: Path) -> None:
    from layerwise.recommend.metrics import ranking_metrics
    from layerwise.recommend.ranking import ranking_report

    cfg = parse(_config(csv))
    data = rdata.build(cfg.interactions)
    seen = torch.unique(data.train[:, 0] * data.n_items + data.train[:, 1])
    spy = Spy(cfg.model, {"n_users": len(data.users), "item_row": data.item_row,
                          "seen": seen, "negatives": 2, "k": K})
    spy.remember(user_histories(data, "test", 8))  # what the artifact would know
    rows = ranking_data(data, cfg, "test")
    leaked = {**rows.inputs, "history": spy.history[rows.inputs["user"]]}
    assert ranking_metrics(spy(leaked)["scores"], K)["hr"] == 1.0  # the spy sees a leak
    for split in ("validation", "test"):
        got = ranking_report(spy, data, cfg, split)  # sampled and full ranking
        assert got[f"hr@{K}"] == 0.0 and got[f"full_hr@{K}"] == 0.0, (split, got)


def test_recommend_names_the_item_after_the_users_whole_history(run: Any,
                                                                csv: Path) -> None:
    rec = lw.load(run.model_dir)
    ordered = _ordered(csv)
    right = 0
    for user in range(0, USERS, 6):
        answer = rec.recommend(user, k=3)
        got = [int(r["item"]) for r in answer["items"]]
        assert answer["source"] == "model" and not answer["cold_start"]
        assert not set(got) & set(ordered[user])  # nothing the user already watched
        right += got[0] == (ordered[user][-1] + 1) % N_ITEMS
    assert right >= 9  # of 10: after the test item comes the next one
    cold = rec.recommend("someone new", k=3)
    assert cold["cold_start"] and cold["source"] == "popularity"


def test_the_artifact_round_trips(run: Any, tmp_path: Path) -> None:
    rec = lw.load(run.model_dir)
    assert isinstance(rec, Recommender) and rec.config.model.family == "sasrec"
    again = Recommender.load(rec.save(tmp_path / "again"))
    for user in ("0", "17", "nobody"):
        assert again.recommend(user, 5) == rec.recommend(user, 5)
    a = load_safetensors(run.model_dir / "model.safetensors")
    b = load_safetensors(tmp_path / "again" / "model.safetensors")
    assert "history" in a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # layerwise evaluate rebuilds the split and its histories: the same figures
    assert lw.evaluate(run.model_dir)[f"ndcg@{K}"] == pytest.approx(
        run.metrics["test"][f"ndcg@{K}"])


def test_the_server_answers_for_a_sequential_recommender(run: Any, tmp_path: Path) -> None:
    from tests.serving_helpers import running

    local = Recommender.load(run.model_dir)
    with running({"seq": str(run.model_dir)}, tmp_path) as (c, _):
        got = c.post("/v1/models/seq/recommend", json={"user": 5, "k": 4})
    assert got.status_code == 200, got.text
    assert got.json()["items"] == local.recommend(5, 4)["items"]


def test_exact_resume_ends_with_the_same_weights(csv: Path, tmp_path: Path) -> None:
    whole = lw.train(_config(csv, epochs=2, loss="softmax"), output=tmp_path / "whole")
    lw.train(_config(csv, epochs=1, loss="softmax"), output=tmp_path / "parts")
    resumed = lw.train(_config(csv, epochs=2, loss="softmax"), output=tmp_path / "parts",
                       resume=True)
    a = load_safetensors(whole.model_dir / "model.safetensors")
    b = load_safetensors(resumed.model_dir / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_sequential_configs_are_clear_errors(csv: Path) -> None:
    with pytest.raises(ConfigError, match="dim must be a multiple of heads"):
        parse(_config(csv, dim=10, heads=4))
    with pytest.raises(ConfigError, match="max_length"):
        parse(_config(csv, max_length=1))
    with pytest.raises(ConfigError, match="loss"):
        parse(_config(csv, loss="hinge"))
