"""Streaming data (issue 18): the path the budget picks, bounded readers of Parquet shards,
JSON Lines and image folders, the shard cache, an order that is a function of (seed,
epoch), and exact mid-epoch resume."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from layerwise.api import train
from layerwise.config import parse
from layerwise.data import sources
from layerwise.data.build import build
from layerwise.data.shards import EpochPlan, ShardedData, StreamBatches
from layerwise.data.streaming import Reservoir, build_for_training, build_streaming, choose_path
from layerwise.errors import CheckpointError, ConfigError, DataError
from tests.model_helpers import Crash

pytestmark = pytest.mark.usefixtures("one_thread")

COLS = ["alcohol", "malic_acid", "ash", "flavanoids", "color_intensity", "proline"]


def wine_shards(folder: Path, rows: int = 60, fmt: str = "parquet") -> Path:
    """The wine table (178 rows, 3 classes) as shards of ``rows`` rows."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame[[*COLS, "target"]]
    folder.mkdir(parents=True, exist_ok=True)
    for i, lo in enumerate(range(0, len(frame), rows)):
        part = frame.iloc[lo:lo + rows]
        if fmt == "parquet":
            part.to_parquet(folder / f"part-{i:02d}.parquet")
        else:
            part.to_json(folder / f"part-{i:02d}.jsonl", orient="records", lines=True)
    return folder


def config(path: str, tmp_path: Path, **stream: Any) -> dict[str, Any]:
    st = {"mode": "stream", "cache": str(tmp_path / "cache"), "shard_rows": 25, "workers": 0}
    st.update(stream)
    return {"name": "stream", "seed": 0, "data": {"path": path, "stream": st},
            "inputs": [{"name": n, "type": "numeric"} for n in COLS],
            "outputs": [{"name": "target", "type": "category"}],
            "model": {"family": "mlp", "hidden": [16], "dropout": 0.1},
            "train": {"epochs": 3, "batch_size": 16, "progress": "quiet",
                      "checkpoint_every": 4, "precision": "fp32"}}


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


# ------------------------------------------------------------------------------ config
def test_memory_budget_reads_sizes() -> None:
    from layerwise.config.streaming import budget_bytes, parse_size

    assert parse_size("64MB") == parse_size(64) == 64 * 2**20
    assert parse_size("2GB") == 2 * 2**30 and parse_size("1.5k") == 1536
    assert budget_bytes(None) > 0
    base = {"data": {"path": "x.csv", "memory_budget": "lots"},
            "inputs": [{"name": "x", "type": "numeric"}],
            "outputs": [{"name": "y", "type": "category"}], "model": {"family": "mlp"}}
    with pytest.raises(ConfigError, match="memory_budget"):
        parse(base)


# --------------------------------------------------------------------------- the path
def test_the_budget_picks_the_path(tmp_path: Path) -> None:
    folder = wine_shards(tmp_path / "wine")
    cfg = config(str(folder / "*.parquet"), tmp_path, mode="auto")
    cfg["data"]["memory_budget"] = 1  # 1 MB: the ~5 kB of encoded wine fits
    path, why, est = choose_path(parse(cfg))
    assert path == "memory" and "fits" in why and est is not None and est.rows == 178
    ds = build_for_training(parse(cfg))
    assert not isinstance(ds.train, ShardedData) and "streaming" not in ds.info
    cfg["data"]["memory_budget"] = "2KB"  # too small: it streams
    path, why, _ = choose_path(parse(cfg))
    assert path == "stream" and "exceeds" in why
    ds = build_for_training(parse(cfg))
    assert isinstance(ds.train, ShardedData) and ds.info["streaming"]["shards"]["train"] > 1


def test_streamed_splits_and_encoders_match_the_in_memory_path(tmp_path: Path) -> None:
    folder = wine_shards(tmp_path / "wine")
    cfg = config(str(folder), tmp_path)  # a folder of Parquet shards
    mem = build(parse({**cfg, "data": {"path": str(folder)}}))
    st = build_streaming(parse(cfg))
    assert st.schema.state() == json.loads(json.dumps(mem.schema.state()))
    for split in ("train", "validation", "test"):
        a, b = getattr(mem, split), getattr(st, split)
        assert len(a) == len(b)
        rows = b.subset(torch.arange(len(b)))
        key = lambda d: sorted(map(tuple, torch.cat(  # noqa: E731
            [d.inputs["numeric"], d.targets["target"][:, None].float()], 1).tolist()))
        assert key(a) == key(rows), split


def test_reservoir_is_seeded_and_uniform_sized() -> None:
    def run(seed: int) -> np.ndarray:
        r = Reservoir(50, seed)
        for lo in range(0, 1000, 64):
            r.add({"x": np.arange(lo, min(1000, lo + 64))})
        return r.rows(np.ones(1000, dtype=bool))["x"]

    a, b = run(0), run(0)
    assert np.array_equal(a, b) and len(a) == 50 and len(set(a.tolist())) == 50
    assert not np.array_equal(a, run(1)) and a.max() > 500  # not just the first rows


# --------------------------------------------------------------------------- the order
def _batches(ds: Any, seed: int, epoch: int, start: int = 0, workers: int = 0,
             bs: int = 16) -> list[torch.Tensor]:
    ds.train.workers = workers
    sb = StreamBatches(ds.train, bs, shuffle=True, seed=seed)
    return [x["numeric"] for x, _ in sb.epoch(epoch, start)]


def test_order_is_a_function_of_seed_and_epoch(tmp_path: Path) -> None:
    ds = build_streaming(parse(config(str(wine_shards(tmp_path / "wine")), tmp_path)))
    first = _batches(ds, 0, 0)
    assert all(torch.equal(a, b) for a, b in zip(first, _batches(ds, 0, 0), strict=True))
    # worker processes change nothing; starting at batch k gives the epoch's tail
    assert all(torch.equal(a, b) for a, b in zip(first, _batches(ds, 0, 0, workers=2),
                                                  strict=True))
    assert all(torch.equal(a, b) for a, b in zip(first[3:], _batches(ds, 0, 0, start=3),
                                                  strict=True))
    # every row once per epoch; another epoch or seed is another order
    every = torch.cat(first)
    assert len(every) == len(ds.train) and len(set(map(tuple, every.tolist()))) == len(every)
    assert not torch.equal(every, torch.cat(_batches(ds, 0, 1)))
    assert not torch.equal(every, torch.cat(_batches(ds, 1, 0)))


def test_epoch_plan_spans_shard_boundaries() -> None:
    plan = EpochPlan([5, 3, 4], seed=0, epoch=0, shuffle=False)
    assert plan.pieces(3, 9) == [(0, 3, 5), (1, 0, 3), (2, 0, 1)]
    shuffled = EpochPlan([5, 3, 4], seed=0, epoch=2, shuffle=True)
    spans = shuffled.pieces(0, 12)
    assert sorted(s for s, _, _ in spans) == [0, 1, 2]
    assert sum(z - a for _, a, z in spans) == 12


# -------------------------------------------------------------------------- training
def test_mid_epoch_resume_gives_the_uninterrupted_weights(tmp_path: Path) -> None:
    folder = wine_shards(tmp_path / "wine")
    cfg = config(str(folder / "*.parquet"), tmp_path, workers=1)
    cfg["train"]["epochs"] = 2
    ref = train(copy.deepcopy(cfg), output=tmp_path / "ref")
    assert ref.metrics["choices"]["batching"] == "stream"
    assert ref.metrics["data"]["streaming"]["shards"]["train"] >= 3
    # 8 batches per epoch, a checkpoint every 4 steps: the crash at step 14 resumes from
    # the checkpoint of step 12, batch 4 of epoch 2 (a worker process makes the batches)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(copy.deepcopy(cfg), output=tmp_path / "run", callbacks=[Crash(14)])
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert (saved["trainer"]["epoch"], saved["trainer"]["batch"]) == (1, 4)
    assert saved["stream"]["rows"] == len(build_streaming(parse(cfg)).train)
    resumed = train(copy.deepcopy(cfg), output=tmp_path / "run", resume=True)
    assert resumed.metrics["data"]["streaming"]["reused"] is True
    a, b = weights(ref.model_dir), weights(resumed.model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics["test"] == ref.metrics["test"]


def test_resume_refuses_a_checkpoint_of_other_streamed_data(tmp_path: Path) -> None:
    folder = wine_shards(tmp_path / "wine")
    cfg = config(str(folder), tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(copy.deepcopy(cfg), output=tmp_path / "run", callbacks=[Crash(5)])
    frame = pd.read_parquet(folder / "part-00.parquet")  # other data: batch 5 of the
    frame.iloc[0, 0] += 1.0                               # checkpoint counts other rows
    frame.to_parquet(folder / "part-00.parquet")
    with pytest.raises(CheckpointError, match="streamed training data changed"):
        train(cfg, output=tmp_path / "run", resume=True)


# -------------------------------------------------------------------------- readers
def test_jsonl_shards_stream_like_parquet_shards(tmp_path: Path) -> None:
    pq = build_streaming(parse(config(str(wine_shards(tmp_path / "pq")), tmp_path)))
    js = build_streaming(parse(config(str(wine_shards(tmp_path / "js", fmt="jsonl")),
                                      tmp_path)))
    assert js.schema.state() == pq.schema.state()
    a, b = pq.train.subset(torch.arange(len(pq.train))), js.train.subset(
        torch.arange(len(js.train)))
    assert torch.allclose(a.inputs["numeric"], b.inputs["numeric"])
    assert torch.equal(a.targets["target"], b.targets["target"])


def test_image_folder_streams(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(20):
            px = rng.integers(0, 120 if c == "a" else 255, (8, 8), dtype=np.uint8)
            Image.fromarray(px).save(tmp_path / "img" / c / f"{i}.png")
    cfg = config(str(tmp_path / "img"), tmp_path, shard_rows=8)
    cfg["inputs"] = [{"name": "image", "type": "image"}]
    cfg["outputs"] = [{"name": "label", "type": "category"}]
    cfg["model"] = {"family": "cnn", "blocks": [{"filters": 4, "pool": "max"}], "dense": [8]}
    cfg["train"]["epochs"] = 1
    mem = build(parse({**cfg, "data": {"path": str(tmp_path / "img")}}))
    st = build_streaming(parse(cfg))
    assert st.schema.state() == json.loads(json.dumps(mem.schema.state()))
    assert len(st.train) == len(mem.train) and st.train.subset(
        torch.arange(3)).inputs["image"].shape == (3, 1, 8, 8)
    run = train(cfg, output=tmp_path / "run")
    assert run.metrics["choices"]["batching"] == "stream"


def test_a_bad_value_in_a_shard_names_the_file_row_and_column(tmp_path: Path) -> None:
    folder = wine_shards(tmp_path / "wine")
    frame = pd.read_parquet(folder / "part-01.parquet")
    frame["ash"] = frame["ash"].astype(str)
    frame.iloc[6, frame.columns.get_loc("ash")] = "lots"
    frame.to_parquet(folder / "part-01.parquet")
    with pytest.raises(DataError) as e:
        build_streaming(parse(config(str(folder), tmp_path)))
    assert "part-01.parquet, row 7, column 'ash'" in str(e.value)
    # the in-memory path reading the same shards names the same file and row
    with pytest.raises(DataError) as e:
        build(parse({**config(str(folder), tmp_path), "data": {"path": str(folder)}}))
    assert "part-01.parquet, row 7, column 'ash'" in str(e.value)


def test_a_damaged_shard_or_line_names_the_file(tmp_path: Path) -> None:
    folder = wine_shards(tmp_path / "wine")
    (folder / "part-02.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="part-02.parquet.*cannot read as Parquet"):
        build_streaming(parse(config(str(folder), tmp_path)))
    js = wine_shards(tmp_path / "js", fmt="jsonl")
    lines = (js / "part-01.jsonl").read_text().splitlines()
    lines[4] = '{"alcohol": 13.1, "ash": '
    (js / "part-01.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"part-01.jsonl, line 5: not valid JSON"):
        build_streaming(parse(config(str(js), tmp_path)))


def test_a_glob_that_matches_nothing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="matches no file"):
        sources.read(tmp_path / "none-*.parquet")


# ---------------------------------------------------------------------------- cache
def test_the_cache_is_reused_and_rebuilt_when_the_data_changes(tmp_path: Path) -> None:
    folder = wine_shards(tmp_path / "wine")
    cfg = parse(config(str(folder), tmp_path))
    first = build_streaming(cfg)
    again = build_streaming(parse(config(str(folder), tmp_path)))
    assert not first.info["streaming"]["reused"] and again.info["streaming"]["reused"]
    assert again.data_hash == first.data_hash
    assert torch.equal(first.train.subset(torch.arange(10)).inputs["numeric"],
                       again.train.subset(torch.arange(10)).inputs["numeric"])
    frame = pd.read_parquet(folder / "part-00.parquet")
    frame.iloc[0, 0] += 1.0
    frame.to_parquet(folder / "part-00.parquet")
    changed = build_streaming(parse(config(str(folder), tmp_path)))
    assert not changed.info["streaming"]["reused"] and changed.data_hash != first.data_hash


def test_streaming_refuses_what_needs_the_data_in_memory(tmp_path: Path) -> None:
    cfg = config(str(wine_shards(tmp_path / "wine")), tmp_path)
    cfg["data"]["split"] = {"folds": 3}
    with pytest.raises(ConfigError, match="split.folds needs the data in memory"):
        build_streaming(parse(cfg))


def test_csv_streams_with_its_delimiter_and_the_probe_leaves_errors_to_the_path(
        tmp_path: Path) -> None:
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame[[*COLS, "target"]]
    frame.to_csv(tmp_path / "wine.csv", sep=";", index=False)
    cfg = config(str(tmp_path / "wine.csv"), tmp_path)
    cfg["data"]["delimiter"] = ";"
    ds = build_streaming(parse(cfg))
    assert len(ds.train) + len(ds.validation) + len(ds.test) == 178
    # without the delimiter the first rows do not parse: the small file takes the
    # in-memory path, whose message says what is wrong
    cfg["data"].pop("delimiter")
    cfg["data"]["stream"]["mode"] = "auto"
    with pytest.raises(DataError, match="delimited by"):
        build_for_training(parse(cfg))


def test_starting_an_epoch_leaves_the_global_rng_alone(tmp_path: Path) -> None:
    # a run resumed mid-epoch starts a loader where the uninterrupted run did not: a draw
    # from the global generator there would change every dropout mask after the resume
    ds = build_streaming(parse(config(str(wine_shards(tmp_path / "wine")), tmp_path)))
    before = torch.get_rng_state()
    next(iter(StreamBatches(ds.train, 16, shuffle=True, seed=0).epoch(1, start=2)))
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.slow
def test_two_processes_stream_the_weights_one_process_streams(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import yaml

    cfg = config(str(wine_shards(tmp_path / "wine")), tmp_path, workers=1)
    cfg["train"]["epochs"] = 2
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    for name, extra in (("one", []), ("two", ["--nproc", "2"])):
        done = subprocess.run([sys.executable, "-m", "layerwise", "train", str(path),
                               "--output", str(tmp_path / name), "-q", *extra],
                              env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    a, b = weights(tmp_path / "one" / "model"), weights(tmp_path / "two" / "model")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
