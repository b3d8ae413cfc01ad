"""Column globs for any feature list and ``data.encoding`` (issue 11): specs expand into
features (and the stored config lists them), a spec that matches nothing is a clear error,
and a file that is not UTF-8 names where and how to read it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from layerwise.api import load, train
from layerwise.config import parse
from layerwise.data.build import build
from layerwise.data.columns import resolve
from layerwise.data.proposal import propose
from layerwise.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_thread")
COLUMNS = ["id", "x0", "x1", "x2", "x10", "colour", "y"]


def _table(path: Path, n: int = 60) -> Path:
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "x0", "x1", "x2", "x10", "colour", "label"])
        for i in range(n):
            x = rng.normal(size=4)
            w.writerow([i, *(f"{v:.3f}" for v in x), ["red", "blue"][i % 2],
                        "a" if x[0] > 0 else "b"])
    return path


def _config(path: Path, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": {"path": str(path)}, "inputs": inputs,
            "outputs": [{"name": "label", "type": "binary"}],
            "model": {"family": "mlp", "hidden": [8]},
            "train": {"epochs": 1, "batch_size": 16, "progress": "quiet"}}


def test_resolve_globs_ranges_names_and_the_rest() -> None:
    assert resolve("x*", COLUMNS) == ["x0", "x1", "x2", "x10"]  # table order
    assert resolve("x0..x2", COLUMNS) == ["x0", "x1", "x2"]
    assert resolve("x0..2", COLUMNS) == ["x0", "x1", "x2"]
    assert resolve(["colour", "x?"], COLUMNS) == ["colour", "x0", "x1", "x2"]
    assert resolve("*", COLUMNS, taken={"id", "y"}, exclude=["x1*"]) == \
        ["x0", "x2", "colour"]
    with pytest.raises(ConfigError, match=r"glob 'z\*' matches no column \(columns: 'id'"):
        resolve("z*", COLUMNS)
    with pytest.raises(ConfigError, match=r"range 'x0..x4' names 2 column.*x3, x4"):
        resolve("x0..x4", COLUMNS)
    with pytest.raises(ConfigError, match=r"no column 'x9'"):
        resolve(["x9"], COLUMNS)
    with pytest.raises(ConfigError, match=r"leaves no column after exclude"):
        resolve("x1*", COLUMNS, exclude=["x*"])


def test_a_glob_entry_becomes_one_input_per_column_and_the_run_stores_them(tmp_path: Path
                                                                           ) -> None:
    path = _table(tmp_path / "t.csv")
    cfg = _config(path, [{"columns": "x*", "type": "numeric", "exclude": ["x10"],
                          "normalize": "minmax"},
                         {"name": "colour", "type": "category"}])
    run = train(cfg, output=tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["inputs"]
    assert [(f["name"], f["type"]) for f in saved] == \
        [("x0", "numeric"), ("x1", "numeric"), ("x2", "numeric"), ("colour", "category")]
    assert {f.get("normalize") for f in saved[:3]} == {"minmax"}  # the entry's settings
    art = load(tmp_path / "run" / "model")
    assert art.predict(str(path))[0]["label"] in ("a", "b")
    assert run.metrics["test"]["count"] > 0


def test_all_remaining_columns_leave_out_the_output_and_named_inputs(tmp_path: Path
                                                                     ) -> None:
    path = _table(tmp_path / "t.csv")
    cfg = parse(_config(path, [{"name": "colour", "type": "category"},
                               {"columns": "*", "type": "numeric", "exclude": ["id"]}]))
    build(cfg)
    assert [f.name for f in cfg.inputs] == ["colour", "x0", "x1", "x2", "x10"]


def test_a_glob_that_matches_nothing_is_a_clear_error(tmp_path: Path) -> None:
    path = _table(tmp_path / "t.csv")
    with pytest.raises(ConfigError, match=r"inputs\[0\] \('t\*'\) columns: the glob 't\*' "
                                          r"matches no column"):
        train(_config(path, [{"columns": "t*", "type": "numeric"}]), output=tmp_path / "r")
    assert not (tmp_path / "r").exists()  # refused before anything was written
    with pytest.raises(ConfigError, match="give the column's name, or columns"):
        parse(_config(path, [{"type": "numeric"}]))
    with pytest.raises(ConfigError, match="exclude needs columns"):
        parse(_config(path, [{"name": "x0", "type": "numeric", "exclude": ["x1"]}]))


def test_resuming_a_run_with_a_glob_compares_the_expanded_config(tmp_path: Path) -> None:
    path = _table(tmp_path / "t.csv")
    cfg = _config(path, [{"columns": "x*", "type": "numeric"}])
    train(cfg, output=tmp_path / "run")
    again = train(cfg, output=tmp_path / "run", resume=True)  # the same config: no refusal
    assert again.metrics is not None


def _latin1(path: Path) -> Path:
    rows = ["text,label"] + [f"{w} caf\u00e9 number {i},{'a' if i % 2 else 'b'}"
                             for i, w in enumerate(["good", "bad"] * 20)]
    path.write_bytes("\n".join(rows).encode("latin-1"))
    return path


def test_a_latin1_file_names_its_line_and_byte_and_reads_with_data_encoding(tmp_path: Path
                                                                            ) -> None:
    path = _latin1(tmp_path / "t.csv")
    cfg = {"data": {"path": str(path)}, "inputs": [{"name": "text", "type": "text"}],
           "outputs": [{"name": "label", "type": "binary"}],
           "model": {"family": "bag", "embedding_dim": 8},
           "train": {"epochs": 1, "progress": "quiet"}}
    offset = path.read_bytes().index(b"\xe9")
    with pytest.raises(DataError, match=rf"t.csv, line 2: not UTF-8 text \(byte offset "
                                        rf"{offset}: 0xe9\); set data.encoding"):
        build(parse(cfg))
    cfg["data"]["encoding"] = "latin-1"
    ds = build(parse(cfg))
    texts = [str(t) for part in (ds.raw_train, ds.raw_validation, ds.raw_test)
             for t in part["text"]]
    assert "good café number 0" in texts and len(texts) == 40
    cfg["data"]["encoding"] = "latin-9000"
    with pytest.raises(ConfigError, match="unknown text encoding 'latin-9000'"):
        parse(cfg)


def test_a_latin1_jsonl_line_says_data_encoding_and_init_writes_it(tmp_path: Path) -> None:
    bad = tmp_path / "t.jsonl"
    bad.write_bytes(b'{"text": "ok", "label": "a"}\n{"text": "caf\xe9", "label": "b"}\n')
    cfg = {"data": {"path": str(bad)}, "inputs": [{"name": "text", "type": "text"}],
           "outputs": [{"name": "label", "type": "binary"}], "model": {"family": "bag"}}
    with pytest.raises(DataError, match=r"t.jsonl, line 2: not UTF-8 text.*data.encoding"):
        build(parse(cfg))
    p = propose(_latin1(tmp_path / "t.csv"))
    assert ("encoding", "cp1252", "the file is not UTF-8 text") in p.data
    config = tmp_path / "t.yaml"
    config.write_text(p.yaml(config, "t"))
    assert parse(str(config)).data.encoding == "cp1252"
