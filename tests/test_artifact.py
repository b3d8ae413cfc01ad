"""The model directory: it round-trips exactly, and loading refuses anything unsafe or broken.

One tiny model is trained per module; each test damages its own copy of the directory.
"""

from __future__ import annotations

import copy
import io
import json
import pickle
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save as st_save
from sklearn.datasets import load_wine

import layerwise as lw
from layerwise import artifact as art
from layerwise.api import Run, train
from layerwise.cli import main
from layerwise.data.build import build
from layerwise.errors import ArtifactError, UnsafeArtifactError
from layerwise.inference.predictor import Predictor
from layerwise.training import Callback
from tests.conftest import TINY_MLP

INPUTS = [f["name"] for f in TINY_MLP["inputs"]]


class KeepModel(Callback):
    """Holds on to the module being trained, so tests can compare with the loaded one."""

    model: torch.nn.Module

    def on_fit_start(self, trainer: Any, model: Any) -> None:
        self.model = model


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, torch.nn.Module]:
    keep = KeepModel()
    run = train(copy.deepcopy(TINY_MLP), output=tmp_path_factory.mktemp("artifact") / "run",
                callbacks=[keep])
    return run, keep.model


@pytest.fixture
def model_dir(trained: tuple[Run, torch.nn.Module], tmp_path: Path) -> Path:
    """A private copy of the trained model directory, free to damage."""
    return Path(shutil.copytree(trained[0].model_dir, tmp_path / "model"))


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    frame = load_wine(as_frame=True).frame
    return frame[INPUTS].iloc[::12].to_dict("records")  # 15 rows across all 3 classes


def raises(cls: type[Exception], fn: Callable[[], Any]) -> str:
    """Run ``fn``; it must raise exactly ``cls`` (not a subclass). Returns the message."""
    with pytest.raises(cls) as info:
        fn()
    assert type(info.value) is cls, f"{type(info.value).__name__}: {info.value}"
    return str(info.value)


def edit_meta(model_dir: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    path = model_dir / art.META
    meta = json.loads(path.read_text(encoding="utf-8"))
    change(meta)
    path.write_text(json.dumps(meta), encoding="utf-8")
    return path


class Touch:
    """Unpickling this creates ``path``: proof that a loader ran pickled code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.path,))


# ----------------------------------------------------------------------------- round trip


def test_directory_layout(trained: tuple[Run, torch.nn.Module]) -> None:
    files = {p.name for p in trained[0].model_dir.iterdir()}
    assert {art.META, art.WEIGHTS, art.REFERENCE, art.CARD} <= files
    meta = json.loads((trained[0].model_dir / art.META).read_text())
    assert meta["format_version"] == art.FORMAT_VERSION and meta["family"] == "mlp"


def test_loaded_model_predicts_like_the_in_memory_one(trained: tuple[Run, torch.nn.Module],
                                                      rows: list[dict[str, Any]]) -> None:
    run, model = trained
    schema = build(run.config).schema  # the same seeded data, so the same fitted encoders
    in_memory = Predictor(art.Artifact(run.model_dir, run.config, schema, model.eval(), {}))
    loaded = lw.load(run.model_dir)
    assert loaded.schema.state() == schema.state()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    expected = in_memory.predict(rows)
    got = loaded.predict(rows)
    assert [p["target"] for p in got] == [p["target"] for p in expected]
    for g, e in zip(got, expected, strict=True):  # to float32 noise from thread scheduling
        assert g["target_probabilities"] == pytest.approx(e["target_probabilities"], abs=1e-5)
        assert g["target_probability"] == pytest.approx(e["target_probability"], abs=1e-6)
    assert {p["target"] for p in expected} <= {"class_0", "class_1", "class_2"}
    assert len(expected) == len(rows)


def test_save_then_load_again_is_stable(trained: tuple[Run, torch.nn.Module], tmp_path: Path,
                                        rows: list[dict[str, Any]]) -> None:
    first = lw.load(trained[0].model_dir)
    art.save(tmp_path / "again", config=first.config, schema=first.schema, model=first.model)
    again = lw.load(tmp_path / "again")
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], tensor), name
    assert again.schema.state() == first.schema.state()
    assert [p["target"] for p in again.predict(rows)] == [p["target"] for p in
                                                          first.predict(rows)]


# ----------------------------------------------------------------------------- unsafe weights


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickled_weights_are_refused_without_unpickling(model_dir: Path, tmp_path: Path,
                                                        protocol: int) -> None:
    marker = tmp_path / "code.ran"
    payload = pickle.dumps({"weight": Touch(marker)}, protocol=protocol)
    (model_dir / art.WEIGHTS).write_bytes(payload)
    msg = raises(UnsafeArtifactError, lambda: lw.load(model_dir))
    assert str(model_dir / art.WEIGHTS) in msg and "pickle" in msg
    assert not marker.exists()
    pickle.loads(payload)  # the payload really runs code when unpickled ...
    assert marker.exists()  # ... so the check above could have failed


def test_plain_pickle_of_a_dict_is_refused(model_dir: Path) -> None:
    (model_dir / art.WEIGHTS).write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    raises(UnsafeArtifactError, lambda: lw.load(model_dir))


@pytest.mark.parametrize("zipfile", [True, False])
def test_torch_save_weights_are_refused(model_dir: Path, trained: tuple[Run, torch.nn.Module],
                                        zipfile: bool) -> None:
    buf = io.BytesIO()
    torch.save(trained[1].state_dict(), buf, _use_new_zipfile_serialization=zipfile)
    (model_dir / art.WEIGHTS).write_bytes(buf.getvalue())
    msg = raises(UnsafeArtifactError, lambda: lw.load(model_dir))
    assert "zip" in msg if zipfile else "pickle" in msg


def _padded_weights(state: dict[str, torch.Tensor], low: int, modulus: int) -> bytes:
    """Real safetensors bytes whose header length is ``low`` modulo ``modulus``."""
    def length(pad: int) -> int:
        blob = st_save(state, metadata={"format": "pt", "pad": "x" * pad})
        return int(struct.unpack("<Q", blob[:8])[0])

    # each pad character adds one byte; the header is then padded to a multiple of 8
    start = max(0, (low - length(0)) % modulus - 8)
    for pad in range(start, start + 16):
        if length(pad) % modulus == low:
            return st_save(state, metadata={"format": "pt", "pad": "x" * pad})
    raise AssertionError("no padding gives that header length")


@pytest.mark.parametrize(("low", "modulus", "looks_like"), [(0x80, 256, b"\x80"),
                                                            (0x4B50, 65536, b"PK")])
def test_safetensors_whose_length_looks_like_a_pickle_or_zip_loads(
        model_dir: Path, trained: tuple[Run, torch.nn.Module], rows: list[dict[str, Any]],
        low: int, modulus: int, looks_like: bytes) -> None:
    # regression: the first byte of the header length decided "pickle" or "zip", so 1 in 32
    # genuine safetensors files (header length 128 mod 256) could never be loaded
    before = lw.load(model_dir).predict(rows)
    state = {k: v.contiguous() for k, v in lw.load(model_dir).model.state_dict().items()}
    blob = _padded_weights(state, low, modulus)
    assert blob.startswith(looks_like)
    (model_dir / art.WEIGHTS).write_bytes(blob)
    assert [p["target"] for p in lw.load(model_dir).predict(rows)] == \
        [p["target"] for p in before]


def test_unsafe_artifact_error_is_an_artifact_error() -> None:
    assert issubclass(UnsafeArtifactError, ArtifactError)
    assert issubclass(ArtifactError, ValueError)


# ----------------------------------------------------------------------------- broken weights


@pytest.mark.parametrize("keep", [0, 5, 8, 40, 0.5, -1])
def test_truncated_weights_are_an_artifact_error(model_dir: Path, keep: float) -> None:
    # regression: a cut inside the header raised UnsafeArtifactError; damage is not danger
    weights = model_dir / art.WEIGHTS
    raw = weights.read_bytes()
    cut = int(len(raw) * keep) if isinstance(keep, float) else keep % len(raw)
    weights.write_bytes(raw[:cut])
    msg = raises(ArtifactError, lambda: lw.load(model_dir))
    assert str(weights) in msg


@pytest.mark.parametrize("blob", [
    b"not a weights file at all, just text " * 4,
    struct.pack("<Q", 5) + b"hello",          # header is not JSON
    struct.pack("<Q", 2) + b"[]",             # header is not a mapping
    struct.pack("<Q", 0),                     # empty header
    b"\x00" * 64,
    struct.pack("<Q", 200_000) + b"[" * 100_000 + b"]" * 100_000,  # nested too deep
], ids=["text", "not-json", "not-mapping", "empty-header", "zeros", "deep"])
def test_garbage_weights_are_an_artifact_error(model_dir: Path, blob: bytes) -> None:
    (model_dir / art.WEIGHTS).write_bytes(blob)
    msg = raises(ArtifactError, lambda: lw.load(model_dir))
    assert str(model_dir / art.WEIGHTS) in msg


def test_weights_of_another_model_are_refused(model_dir: Path) -> None:
    (model_dir / art.WEIGHTS).write_bytes(st_save({"other.weight": torch.zeros(3, 3)}))
    msg = raises(ArtifactError, lambda: lw.load(model_dir))
    assert "do not match the model" in msg and "other.weight" in msg


def test_weights_with_wrong_shapes_are_refused(model_dir: Path,
                                               trained: tuple[Run, torch.nn.Module]) -> None:
    state = {k: torch.zeros(*[s + 1 for s in v.shape]) for k, v in
             trained[1].state_dict().items()}
    (model_dir / art.WEIGHTS).write_bytes(st_save(state))
    msg = raises(ArtifactError, lambda: lw.load(model_dir))
    assert "do not fit the model" in msg


def test_missing_weights_file(model_dir: Path) -> None:
    (model_dir / art.WEIGHTS).unlink()
    msg = raises(ArtifactError, lambda: lw.load(model_dir))
    assert art.WEIGHTS in msg


# ----------------------------------------------------------------------------- metadata


def test_unknown_model_family_is_named(model_dir: Path) -> None:
    meta = edit_meta(model_dir, lambda m: m.update(family="evil_net"))
    msg = raises(ArtifactError, lambda: lw.load(model_dir))
    assert str(meta) in msg and "'evil_net'" in msg and "mlp" in msg


def test_unknown_model_family_in_the_stored_config_is_named(model_dir: Path) -> None:
    edit_meta(model_dir, lambda m: m["config"]["model"].update(family="evil_net"))
    msg = raises(ArtifactError, lambda: lw.load(model_dir))
    assert "'evil_net'" in msg and "model.family" in msg


def test_unknown_feature_type_is_named(model_dir: Path) -> None:
    edit_meta(model_dir, lambda m: m["schema"]["inputs"][2].update(type="video"))
    msg = raises(ArtifactError, lambda: lw.load(model_dir))
    assert "'video'" in msg and f"input {INPUTS[2]!r}" in msg


def test_unknown_output_type_is_named(model_dir: Path) -> None:
    edit_meta(model_dir, lambda m: m["schema"]["outputs"][0].update(type="image"))
    msg = raises(ArtifactError, lambda: lw.load(model_dir))
    assert "output 'target'" in msg and "'image'" in msg


def test_unknown_feature_type_in_the_stored_config_is_named(model_dir: Path) -> None:
    edit_meta(model_dir, lambda m: m["config"]["inputs"][0].update(type="video"))
    msg = raises(ArtifactError, lambda: lw.load(model_dir))
    assert "'video'" in msg and "inputs.0.type" in msg


def test_newer_format_version_is_refused(model_dir: Path) -> None:
    newer = art.FORMAT_VERSION + 1
    edit_meta(model_dir, lambda m: m.update(format_version=newer))
    msg = raises(ArtifactError, lambda: lw.load(model_dir))
    assert f"format version {newer}" in msg and "upgrade layerwise" in msg


@pytest.mark.parametrize("version", [None, "1", 1.0, True])
def test_format_version_must_be_an_integer(model_dir: Path, version: Any) -> None:
    def change(m: dict[str, Any]) -> None:
        m.pop("format_version")
        if version is not None:
            m["format_version"] = version

    edit_meta(model_dir, change)
    msg = raises(ArtifactError, lambda: lw.load(model_dir))
    assert "format_version must be an integer" in msg


@pytest.mark.parametrize(("key", "value"), [("config", None), ("config", [1]),
                                            ("config", "config.yaml"), ("schema", None),
                                            ("schema", []), ("schema", {"inputs": "x"})])
def test_malformed_config_or_schema_is_an_artifact_error(model_dir: Path, key: str,
                                                         value: Any) -> None:
    # regression: these raised KeyError, TypeError or AttributeError (and a string config
    # was opened as a YAML file path)
    def change(m: dict[str, Any]) -> None:
        m.pop(key)
        if value is not None:
            m[key] = value

    edit_meta(model_dir, change)
    msg = raises(ArtifactError, lambda: lw.load(model_dir))
    assert str(model_dir / art.META) in msg and key in msg


def test_fitted_state_that_does_not_fit_is_an_artifact_error(model_dir: Path) -> None:
    edit_meta(model_dir, lambda m: m["schema"]["inputs"][0].update(state={}))
    msg = raises(ArtifactError, lambda: lw.load(model_dir))
    assert "feature schema is invalid" in msg


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe\x00\x01",
                                     b"[" * 100_000 + b"]" * 100_000],
                         ids=["not-json", "list", "not-utf8", "deep"])
def test_unreadable_metadata(model_dir: Path, content: bytes) -> None:
    (model_dir / art.META).write_bytes(content)
    msg = raises(ArtifactError, lambda: lw.load(model_dir))
    assert str(model_dir / art.META) in msg


def test_directory_without_metadata(tmp_path: Path, model_dir: Path) -> None:
    (model_dir / art.META).unlink()
    msg = raises(ArtifactError, lambda: lw.load(model_dir))
    assert str(model_dir) in msg and art.META in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    assert art.META in raises(ArtifactError, lambda: lw.load(empty))


def test_missing_directory_or_a_file(tmp_path: Path, model_dir: Path) -> None:
    assert "not found" in raises(ArtifactError, lambda: lw.load(tmp_path / "nope"))
    assert "not found" in raises(ArtifactError, lambda: lw.load(model_dir / art.CARD))


# ----------------------------------------------------------------------------- CLI


def _csv(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "rows.csv"
    lines = [",".join(INPUTS)] + [",".join(str(r[c]) for c in INPUTS) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_predict_works_on_a_good_model(model_dir: Path, tmp_path: Path,
                                           rows: list[dict[str, Any]],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["predict", str(model_dir), str(_csv(tmp_path, rows))])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [json.loads(line)["target"] for line in out.splitlines()] == \
        [p["target"] for p in lw.load(model_dir).predict(rows)]


@pytest.mark.parametrize("damage", ["pickle", "torch", "garbage", "no-meta"])
def test_cli_predict_on_a_bad_model_prints_one_error_line(
        model_dir: Path, tmp_path: Path, rows: list[dict[str, Any]],
        trained: tuple[Run, torch.nn.Module], capsys: pytest.CaptureFixture[str],
        damage: str) -> None:
    marker = tmp_path / "code.ran"
    weights = model_dir / art.WEIGHTS
    if damage == "pickle":
        weights.write_bytes(pickle.dumps({"weight": Touch(marker)}))
    elif damage == "torch":
        torch.save(trained[1].state_dict(), weights)
    elif damage == "garbage":
        weights.write_bytes(b"garbage" * 10)
    else:
        (model_dir / art.META).unlink()
    code = main(["predict", str(model_dir), str(_csv(tmp_path, rows))])
    out, err = capsys.readouterr()
    assert code != 0
    assert out == ""
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "unexpected" not in err  # a handled LayerwiseError, not a crash
    assert not marker.exists()
