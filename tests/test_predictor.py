"""Predictor: every accepted input shape gives the same decoded predictions, and bad rows
are refused with the row and column named."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits, load_wine

import layerwise as lw
from layerwise import artifact as art
from layerwise.api import Run, train
from layerwise.config import parse
from layerwise.data.build import build
from layerwise.errors import DataError
from layerwise.inference.predictor import Predictor
from layerwise.training import Callback
from tests.conftest import TINY_CNN, TINY_MLP

INPUTS = [f["name"] for f in TINY_MLP["inputs"]]
CLASSES = {"class_0", "class_1", "class_2"}


class KeepModel(Callback):
    """Holds on to the module being trained, so tests can compare with the loaded one."""

    model: torch.nn.Module

    def on_fit_start(self, trainer: Any, model: Any) -> None:
        self.model = model


def _train(config: dict[str, Any], out: Path) -> tuple[Run, torch.nn.Module]:
    keep = KeepModel()
    run = train(copy.deepcopy(config), output=out, callbacks=[keep])
    return run, keep.model


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, torch.nn.Module]:
    return _train(TINY_MLP, tmp_path_factory.mktemp("predictor") / "mlp")


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, torch.nn.Module]:
    return _train(TINY_CNN, tmp_path_factory.mktemp("predictor") / "cnn")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    wine = load_wine(as_frame=True).frame
    return wine[INPUTS].iloc[::15].reset_index(drop=True)  # 12 rows across the classes


@pytest.fixture(scope="module")
def expected(mlp: tuple[Run, torch.nn.Module], frame: pd.DataFrame) -> list[dict[str, Any]]:
    return lw.load(mlp[0].model_dir).predict(frame.to_dict("records"))


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """Six 8x8 digit images in 0-255, rounded so PNG files hold exactly the same pixels."""
    return np.round(load_digits().images[:6] * (255.0 / 16.0)).astype(np.uint8)


def assert_same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Equal labels and keys; probabilities equal to float32 noise (thread scheduling and
    CSV text can move the last bits)."""
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for k, v in w.items():
            if isinstance(v, float):
                assert g[k] == pytest.approx(v, abs=1e-6), k
            elif isinstance(v, dict):
                assert g[k] == pytest.approx(v, abs=1e-5), k
            else:
                assert g[k] == v, k


def in_memory(run: Run, model: torch.nn.Module) -> Predictor:
    """A predictor over the trained module and freshly fitted (same seed) encoders."""
    schema = build(run.config).schema
    return Predictor(art.Artifact(run.model_dir, run.config, schema, model.eval(), {}))


# ----------------------------------------------------------------------------- tabular


def test_output_keys_and_probabilities(expected: list[dict[str, Any]]) -> None:
    assert len(expected) == 12
    for p in expected:
        assert set(p) == {"target", "target_probability", "target_probabilities"}
        assert p["target"] in CLASSES
        probs = p["target_probabilities"]
        assert set(probs) == CLASSES
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert max(probs, key=probs.get) == p["target"]
        assert p["target_probability"] == pytest.approx(max(probs.values()), abs=1e-6)
    json.dumps(expected)  # plain Python values, ready for JSON


def test_list_of_dicts(mlp: tuple[Run, torch.nn.Module], frame: pd.DataFrame,
                       expected: list[dict[str, Any]]) -> None:
    rows = [{k: float(v) for k, v in r.items()} for r in frame.to_dict("records")]
    assert_same(lw.load(mlp[0].model_dir).predict(rows), expected)


def test_one_dict_is_one_row(mlp: tuple[Run, torch.nn.Module], frame: pd.DataFrame,
                             expected: list[dict[str, Any]]) -> None:
    assert_same(lw.load(mlp[0].model_dir).predict(frame.iloc[3].to_dict()), [expected[3]])


def test_dict_of_lists(mlp: tuple[Run, torch.nn.Module], frame: pd.DataFrame,
                       expected: list[dict[str, Any]]) -> None:
    columns = {k: list(v) for k, v in frame.to_dict("list").items()}
    assert_same(lw.load(mlp[0].model_dir).predict(columns), expected)


def test_dataframe(mlp: tuple[Run, torch.nn.Module], frame: pd.DataFrame,
                   expected: list[dict[str, Any]]) -> None:
    assert_same(lw.load(mlp[0].model_dir).predict(frame), expected)


def test_extra_columns_are_ignored(mlp: tuple[Run, torch.nn.Module], frame: pd.DataFrame,
                                   expected: list[dict[str, Any]]) -> None:
    wider = frame.assign(note="hello", target="class_0")
    assert_same(lw.load(mlp[0].model_dir).predict(wider), expected)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_file_paths(mlp: tuple[Run, torch.nn.Module], frame: pd.DataFrame,
                    expected: list[dict[str, Any]], tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"rows{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    model = lw.load(mlp[0].model_dir)
    assert_same(model.predict(path), expected)
    assert_same(model.predict(str(path)), expected)


def test_loaded_model_predicts_like_the_in_memory_one(mlp: tuple[Run, torch.nn.Module],
                                                      frame: pd.DataFrame,
                                                      expected: list[dict[str, Any]]) -> None:
    assert_same(in_memory(*mlp).predict(frame), expected)


def test_word_in_a_numeric_column_names_row_and_column(mlp: tuple[Run, torch.nn.Module],
                                                       frame: pd.DataFrame) -> None:
    rows = frame.to_dict("records")
    rows[4]["ash"] = "heavy"
    with pytest.raises(DataError) as info:
        lw.load(mlp[0].model_dir).predict(rows)
    assert type(info.value) is DataError
    msg = str(info.value)
    assert "row 5" in msg and "column 'ash'" in msg and "'heavy'" in msg


def test_word_in_a_csv_names_file_line_and_column(mlp: tuple[Run, torch.nn.Module],
                                                  frame: pd.DataFrame, tmp_path: Path) -> None:
    bad = frame.astype(object)
    bad.loc[2, "proline"] = "lots"  # data row 3 is line 4
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        lw.load(mlp[0].model_dir).predict(path)
    assert type(info.value) is DataError
    msg = str(info.value)
    assert str(path) in msg and "line 4" in msg and "column 'proline'" in msg


def test_missing_column_and_empty_cell(mlp: tuple[Run, torch.nn.Module],
                                       frame: pd.DataFrame) -> None:
    model = lw.load(mlp[0].model_dir)
    with pytest.raises(DataError, match=r"missing column 'malic_acid'"):
        model.predict(frame.drop(columns=["malic_acid"]))
    rows = frame.to_dict("records")
    rows[1]["alcohol"] = None
    with pytest.raises(DataError, match=r"row 2, column 'alcohol': the cell is empty"):
        model.predict(rows)


@pytest.mark.parametrize("rows", [[], 42, "no/such/file.csv", [1, 2]])
def test_unusable_inputs(mlp: tuple[Run, torch.nn.Module], rows: Any) -> None:
    with pytest.raises(DataError) as info:
        lw.load(mlp[0].model_dir).predict(rows)
    assert type(info.value) is DataError


# ----------------------------------------------------------------------------- images


def test_image_array(cnn: tuple[Run, torch.nn.Module], digits: np.ndarray) -> None:
    got = lw.load(cnn[0].model_dir).predict(digits)
    assert len(got) == len(digits)
    for p in got:
        assert set(p) == {"label", "label_probability", "label_probabilities"}
        assert p["label"] in range(10)
        assert set(p["label_probabilities"]) == {str(i) for i in range(10)}
        assert sum(p["label_probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_image_array_shapes_agree(cnn: tuple[Run, torch.nn.Module],
                                  digits: np.ndarray) -> None:
    model = lw.load(cnn[0].model_dir)
    base = model.predict(digits)
    assert_same(model.predict(digits.astype(np.float32)), base)
    assert_same(model.predict(digits[..., None]), base)  # [N, H, W, 1]
    assert_same(model.predict(digits[:, None]), base)  # [N, 1, H, W]
    assert_same(model.predict(digits[2]), [base[2]])  # one [H, W] image


def test_png_file_paths(cnn: tuple[Run, torch.nn.Module], digits: np.ndarray,
                        tmp_path: Path) -> None:
    paths = []
    for i, image in enumerate(digits):
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray(image).save(paths[-1])
    model = lw.load(cnn[0].model_dir)
    from_arrays = model.predict(digits)
    assert_same(model.predict([str(p) for p in paths]), from_arrays)
    assert_same(model.predict(paths), from_arrays)
    assert_same(model.predict(str(paths[1])), [from_arrays[1]])


def test_rgb_files_are_converted_to_grey(cnn: tuple[Run, torch.nn.Module], digits: np.ndarray,
                                         tmp_path: Path) -> None:
    path = tmp_path / "rgb.png"
    Image.fromarray(np.repeat(digits[0][..., None], 3, axis=2)).save(path)
    model = lw.load(cnn[0].model_dir)
    assert_same(model.predict([path]), model.predict(digits[:1]))


def test_loaded_image_model_predicts_like_the_in_memory_one(
        cnn: tuple[Run, torch.nn.Module], digits: np.ndarray) -> None:
    assert_same(in_memory(*cnn).predict(digits), lw.load(cnn[0].model_dir).predict(digits))


def test_unreadable_image_path_is_named(cnn: tuple[Run, torch.nn.Module],
                                        tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError) as info:
        lw.load(cnn[0].model_dir).predict([str(tmp_path / "missing.png"), str(broken)])
    assert type(info.value) is DataError
    assert "missing.png" in str(info.value) and "row 1" in str(info.value)


def test_images_with_the_wrong_channel_count_are_refused(cnn: tuple[Run, torch.nn.Module]
                                                         ) -> None:
    # regression: a RuntimeError from inside the convolution instead of a DataError
    with pytest.raises(DataError, match=r"expected images with 1 channels"):
        lw.load(cnn[0].model_dir).predict(np.zeros((2, 2, 8, 8), dtype=np.uint8))


# ----------------------------------------------------------------------------- no state


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    """An untrained character language model (random weights are enough to tell rows apart)."""
    path = tmp_path_factory.mktemp("predictor") / "lines.csv"
    verse = "and god said let there be light and there was light. "
    path.write_text("text\n" + "".join(f"{verse[i:i + 5 + i % 17]}\n" for i in range(40)))
    cfg = parse({"data": {"path": str(path)}, "seed": 0,
                 "inputs": [{"name": "text", "type": "text", "tokenizer": "char",
                             "max_length": 24}],
                 "outputs": [{"name": "next", "type": "next_token", "input": "text"}],
                 "model": {"family": "transformer", "causal": True, "d_model": 16,
                           "heads": 2, "layers": 1, "dropout": 0.0}})
    schema = build(cfg).schema
    torch.manual_seed(0)
    return Predictor(art.Artifact(path.parent, cfg, schema, art.rebuild(cfg, schema), {}))


def _interleaved(p: Predictor, a: Any, b: Any, monkeypatch: pytest.MonkeyPatch
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``predict(a)`` with a whole ``predict(b)`` run inside it, between the forward pass
    of a's rows and their decoding (as two threads of a server may interleave)."""
    forward, inner = p.forward, []

    def forward_then_b(data: Any, batch_size: int = 1024) -> dict[str, torch.Tensor]:
        out = forward(data, batch_size)
        if not inner:
            inner.append(None)
            inner.append(p.predict(b))
        return out

    monkeypatch.setattr(p, "forward", forward_then_b)
    return p.predict(a), inner[1]


def test_interleaved_predictions_equal_separate_ones(
        char_lm: Predictor, mlp: tuple[Run, torch.nn.Module], frame: pd.DataFrame,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # regression: text lengths kept on the Predictor between predict and decode made the
    # outer call decode its rows at the inner call's text ends
    rows = frame.to_dict("records")
    cases = [(char_lm, ["and god said let", "be"], ["x", "light and there was", "th"]),
             (lw.load(mlp[0].model_dir), rows[:5], rows[5:])]
    for p, a, b in cases:
        want_a, want_b = p.predict(a), p.predict(b)
        with monkeypatch.context() as m:
            got_a, got_b = _interleaved(p, a, b, m)
        assert_same(got_a, want_a)
        assert_same(got_b, want_b)
    assert not hasattr(char_lm, "_lengths")
