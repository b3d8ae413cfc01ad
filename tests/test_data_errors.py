"""Bad input files: every error is the exact class and names file, line and column.

Each case is reached two ways where both apply: ``sources.read(path)`` (the reader alone)
and ``build(parse(config))`` with ``data.path`` pointing at the same file.
"""

from __future__ import annotations

import pickle
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from layerwise.config import Config, parse
from layerwise.data import sources
from layerwise.data.build import Dataset, build
from layerwise.errors import DataError, UnsafeFormatError

Loader = Callable[[Path], Any]


def config(path: Path, inputs: list[dict[str, Any]] | None = None, output: str = "y",
           **data: Any) -> Config:
    return parse({"data": {"path": str(path), **data},
                  "inputs": inputs or [{"name": "x", "type": "numeric"}],
                  "outputs": [{"name": output, "type": "category"}],
                  "model": {"family": "mlp", "hidden": [4]}})


def build_file(path: Path, **kw: Any) -> Dataset:
    return build(config(path, **kw))


@pytest.fixture(params=["read", "build"])
def load(request: pytest.FixtureRequest) -> Loader:
    """Both ways in: the reader alone, and the whole data pipeline."""
    return sources.read if request.param == "read" else build_file


def raises(cls: type[Exception], fn: Callable[[], Any]) -> str:
    """Run ``fn``; it must raise exactly ``cls`` (not a subclass). Returns the message."""
    with pytest.raises(cls) as info:
        fn()
    assert type(info.value) is cls, f"{type(info.value).__name__}: {info.value}"
    return str(info.value)


def good_csv(n: int = 20) -> list[str]:
    """Header + ``n`` valid rows; row i sits on line i + 2."""
    return ["x,y"] + [f"{i},{'ab'[i % 2]}" for i in range(n)]


def write(tmp_path: Path, name: str, lines: list[str] | str) -> Path:
    p = tmp_path / name
    p.write_text(lines if isinstance(lines, str) else "\n".join(lines) + "\n",
                 encoding="utf-8")
    return p


# ----------------------------------------------------------------------------- CSV shape


def test_row_with_too_many_fields_names_file_and_line(tmp_path: Path, load: Loader) -> None:
    lines = good_csv()
    lines[3] = "2,b,surplus"  # line 4
    p = write(tmp_path, "many.csv", lines)
    msg = raises(DataError, lambda: load(p))
    assert str(p) in msg and "line 4" in msg
    assert "expected 2 fields" in msg and "found 3" in msg


def test_row_with_too_few_fields_names_file_and_line(tmp_path: Path, load: Loader) -> None:
    lines = good_csv()
    lines[6] = "5"  # line 7
    p = write(tmp_path, "few.csv", lines)
    msg = raises(DataError, lambda: load(p))
    assert str(p) in msg and "line 7" in msg and "found 1" in msg


def test_line_numbers_count_quoted_newlines(tmp_path: Path, load: Loader) -> None:
    lines = good_csv()
    lines[1] = '0,"a\nstill a"'  # one row over lines 2-3; the bad row below is line 5
    lines[3] = "2,b,surplus"
    p = write(tmp_path, "multi.csv", lines)
    msg = raises(DataError, lambda: load(p))
    assert str(p) in msg and "line 5" in msg


def test_malformed_quoting_names_line(tmp_path: Path, load: Loader) -> None:
    lines = good_csv()
    lines[2] = '1,"a"b'  # line 3
    p = write(tmp_path, "quote.csv", lines)
    msg = raises(DataError, lambda: load(p))
    assert str(p) in msg and "line 3" in msg and "malformed CSV" in msg


def test_empty_file(tmp_path: Path, load: Loader) -> None:
    p = write(tmp_path, "empty.csv", "")
    msg = raises(DataError, lambda: load(p))
    assert str(p) in msg and "empty" in msg


@pytest.mark.parametrize("text", ["x,y\n", "x,y", "x,y\n\n\n"])
def test_header_only_file(tmp_path: Path, load: Loader, text: str) -> None:
    p = write(tmp_path, "header.csv", text)
    msg = raises(DataError, lambda: load(p))
    assert str(p) in msg and "no data rows" in msg


def test_not_utf8(tmp_path: Path, load: Loader) -> None:
    p = tmp_path / "latin1.csv"
    p.write_bytes("x,y\n1,caf\u00e9\n".encode("latin-1"))
    msg = raises(DataError, lambda: load(p))
    assert str(p) in msg and "UTF-8" in msg


def test_missing_file_and_unknown_extension(tmp_path: Path, load: Loader) -> None:
    msg = raises(DataError, lambda: load(tmp_path / "nope.csv"))
    assert "not found" in msg and "nope.csv" in msg
    p = write(tmp_path, "data.xlsx", good_csv())
    msg = raises(DataError, lambda: load(p))
    assert str(p) in msg and "'.xlsx'" in msg


# ----------------------------------------------------------------------------- values


def test_word_in_numeric_column_names_file_line_and_column(tmp_path: Path) -> None:
    lines = good_csv()
    lines[9] = "eight,a"  # line 10
    p = write(tmp_path, "word.csv", lines)
    msg = raises(DataError, lambda: build_file(p))
    assert str(p) in msg and "line 10" in msg and "column 'x'" in msg and "'eight'" in msg


def test_infinity_in_numeric_column_is_refused(tmp_path: Path) -> None:
    lines = good_csv()
    lines[4] = "inf,a"  # line 5
    p = write(tmp_path, "inf.csv", lines)
    msg = raises(DataError, lambda: build_file(p))
    assert str(p) in msg and "line 5" in msg and "column 'x'" in msg and "finite" in msg


def test_missing_column_is_named_with_a_suggestion(tmp_path: Path) -> None:
    p = write(tmp_path, "cols.csv", ["alcohol,y"] + [f"{i},{'ab'[i % 2]}" for i in range(20)])
    msg = raises(DataError, lambda: build_file(p, inputs=[{"name": "alcohl",
                                                           "type": "numeric"}]))
    assert str(p) in msg and "missing column 'alcohl'" in msg
    assert "did you mean 'alcohol'?" in msg


@pytest.mark.parametrize("delimiter, shown", [(";", "data.delimiter: ';'"),
                                              ("\t", 'data.delimiter: "\\t"'),
                                              ("|", "data.delimiter: '|'")])
def test_a_file_with_another_delimiter_says_which_and_how_to_set_it(
        tmp_path: Path, load: Loader, delimiter: str, shown: str) -> None:
    # regression: "missing column 'x' (columns: 'x;y')", with no word of the delimiter
    rows = [delimiter.join(r.split(",")) for r in good_csv()]
    p = write(tmp_path, "other.csv", rows)
    msg = raises(DataError, lambda: load(p))
    assert msg.startswith(f"{p}, line 1: the file looks delimited by ")
    assert "not ',' (commas)" in msg and shown in msg
    table = sources.read(p, delimiter=delimiter)  # and the hint is right
    assert list(table.columns) == ["x", "y"] and len(table) == 20


def test_decimal_commas_do_not_hide_a_semicolon_delimiter(tmp_path: Path) -> None:
    p = write(tmp_path, "euro.csv", ["x;y"] + [f"{i},5;{'ab'[i % 2]}" for i in range(20)])
    msg = raises(DataError, lambda: build_file(p))
    assert "data.delimiter: ';'" in msg


def test_a_one_column_file_whose_name_holds_a_semicolon_still_reads(tmp_path: Path) -> None:
    p = write(tmp_path, "one.csv", ["a;b", "free text", '"more; text"'])
    assert list(sources.read(p).columns) == ["a;b"]


def test_missing_output_column_is_named(tmp_path: Path) -> None:
    p = write(tmp_path, "cols.csv", good_csv())
    msg = raises(DataError, lambda: build_file(p, output="label"))
    assert "missing column 'label'" in msg


def test_missing_value_with_default_policy_names_line_and_column(tmp_path: Path) -> None:
    lines = good_csv()
    lines[5] = ",b"  # line 6
    p = write(tmp_path, "gap.csv", lines)
    msg = raises(DataError, lambda: build_file(p))
    assert str(p) in msg and "line 6" in msg and "column 'x'" in msg
    assert "missing: mean" in msg  # says how to fix it


def test_missing_value_with_mean_policy_fills_the_training_mean(tmp_path: Path) -> None:
    # train rows 0..9 (one empty), test rows far away: the fill is the train mean only
    rows = [f"{'' if i == 3 else i},{'ab'[i % 2]},train" for i in range(10)]
    rows += [f"{1000 + i},{'ab'[i % 2]},test" for i in range(4)]
    p = write(tmp_path, "mean.csv", ["x,y,part", *rows])
    ds = build_file(p, inputs=[{"name": "x", "type": "numeric", "missing": "mean"}],
                    split={"column": "part"})
    enc = ds.schema.numeric[0]
    present = [i for i in range(10) if i != 3]
    assert enc.fill == pytest.approx(np.mean(present))
    # the empty cell became the fill, i.e. 0 after standardisation with the train mean
    assert ds.train.inputs["numeric"][3, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert ds.info["skipped_bad_rows"] == 0


def test_missing_output_value_is_always_an_error(tmp_path: Path) -> None:
    lines = good_csv()
    lines[8] = "7,"  # line 9
    p = write(tmp_path, "label.csv", lines)
    msg = raises(DataError, lambda: build_file(p, inputs=[{"name": "x", "type": "numeric",
                                                           "missing": "mean"}]))
    assert str(p) in msg and "line 9" in msg and "column 'y'" in msg


# ----------------------------------------------------------------------------- skip_bad_rows


def _two_bad_rows(tmp_path: Path) -> Path:
    """20 good rows, plus a word in x (line 7) and a row with three fields (line 11)."""
    lines = good_csv(20)
    lines.insert(6, "seven,a")
    lines.insert(10, "9,b,surplus")
    return write(tmp_path, "bad.csv", lines)


def test_skip_bad_rows_skips_and_counts_read_and_value_errors(tmp_path: Path) -> None:
    # regression: rows skipped by the reader were counted on a separate, discarded counter
    ds = build_file(_two_bad_rows(tmp_path), skip_bad_rows=True)
    assert ds.info["skipped_bad_rows"] == 2
    assert sum(ds.info["rows"].values()) == 20


def test_without_skip_bad_rows_the_first_bad_row_raises(tmp_path: Path) -> None:
    p = _two_bad_rows(tmp_path)
    msg = raises(DataError, lambda: build_file(p))
    assert str(p) in msg and "line 11" in msg  # the reader runs before value checks


def test_max_bad_rows_caps_skipping(tmp_path: Path) -> None:
    # regression: with the counters split, 2 bad rows never exceeded max_bad_rows=1
    p = _two_bad_rows(tmp_path)
    msg = raises(DataError, lambda: build_file(p, skip_bad_rows=True, max_bad_rows=1))
    assert "max_bad_rows=1" in msg and str(p) in msg and "line 11" in msg
    assert build_file(p, skip_bad_rows=True, max_bad_rows=2).info["skipped_bad_rows"] == 2


def test_max_bad_rows_message_names_the_column_of_the_first_bad_value(tmp_path: Path) -> None:
    # regression: value errors were skipped as "bad value", without column or reason
    lines = good_csv(20)
    lines[4], lines[7] = "three,b", "six,a"  # lines 5 and 8
    p = write(tmp_path, "words.csv", lines)
    msg = raises(DataError, lambda: build_file(p, skip_bad_rows=True, max_bad_rows=1))
    assert "max_bad_rows=1" in msg and "line 5" in msg and "column 'x'" in msg
    assert "'three'" in msg


# ----------------------------------------------------------------------------- images


def _image_folder(tmp_path: Path, per_class: int = 6) -> Path:
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.png")
    return root


def image_config(root: Path, **data: Any) -> Config:
    return parse({"data": {"path": str(root), **data},
                  "inputs": [{"name": "image", "type": "image"}],
                  "outputs": [{"name": "label", "type": "category"}],
                  "model": {"family": "cnn", "blocks": [{"filters": 4}], "dense": [4]}})


def test_image_folder_builds(tmp_path: Path) -> None:
    ds = build(image_config(_image_folder(tmp_path)))
    assert tuple(ds.train.inputs["image"].shape[1:]) == (1, 8, 8)
    assert sum(ds.info["rows"].values()) == 12


@pytest.mark.parametrize("keep", [0.5, 0.3])
def test_truncated_png_names_the_image(tmp_path: Path, keep: float) -> None:
    root = _image_folder(tmp_path)
    bad = root / "dog" / "2.png"
    raw = bad.read_bytes()
    bad.write_bytes(raw[: int(len(raw) * keep)])
    msg = raises(DataError, lambda: build(image_config(root)))
    assert str(bad) in msg and "column 'image'" in msg


def test_non_image_with_png_suffix_names_the_file(tmp_path: Path) -> None:
    root = _image_folder(tmp_path)
    bad = root / "cat" / "4.png"
    bad.write_text("x,y\n1,2\n")
    msg = raises(DataError, lambda: build(image_config(root)))
    assert str(bad) in msg and "unreadable" in msg


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` grey pixels; almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_decompression_bomb_is_a_data_error(tmp_path: Path) -> None:
    # regression: PIL's DecompressionBombError (not an OSError) escaped as a crash
    root = _image_folder(tmp_path)
    bomb = root / "dog" / "5.png"
    bomb.write_bytes(_png_header_only(20_000, 20_000))
    msg = raises(DataError, lambda: build(image_config(root)))
    assert str(bomb) in msg and "too large" in msg


def test_postscript_disguised_as_png_is_not_interpreted(tmp_path: Path) -> None:
    # regression: PIL identifies files by content and hands EPS to Ghostscript (if installed)
    root = _image_folder(tmp_path)
    eps = root / "cat" / "3.png"
    eps.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    msg = raises(DataError, lambda: build(image_config(root)))
    assert str(eps) in msg and "cannot identify image file" in msg
    assert "Ghostscript" not in msg


def test_skip_bad_rows_skips_a_broken_image(tmp_path: Path) -> None:
    root = _image_folder(tmp_path)
    (root / "cat" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ds = build(image_config(root, skip_bad_rows=True))
    assert ds.info["skipped_bad_rows"] == 1
    assert sum(ds.info["rows"].values()) == 11


def test_image_folder_without_class_folders(tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "flat" / "a.png")
    msg = raises(DataError, lambda: sources.read(tmp_path / "flat"))
    assert "no images found" in msg and "sub-folder per class" in msg


# ----------------------------------------------------------------------------- pickles


class _Touch:
    """Unpickling this creates ``path``: proof that a loader ran pickled code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.path,))


def _payload(tmp_path: Path, name: str) -> tuple[bytes, Path]:
    marker = tmp_path / f"{name}.ran"
    blob = pickle.dumps(_Touch(marker))
    probe = tmp_path / "probe.ran"  # check that the payload really runs code when loaded
    pickle.loads(pickle.dumps(_Touch(probe)))
    assert probe.exists()
    return blob, marker


@pytest.mark.parametrize("suffix", [".pkl", ".pickle", ".joblib", ".pt"])
def test_pickle_suffixes_are_refused(tmp_path: Path, load: Loader, suffix: str) -> None:
    blob, marker = _payload(tmp_path, suffix[1:])
    p = tmp_path / f"data{suffix}"
    p.write_bytes(blob)
    msg = raises(UnsafeFormatError, lambda: load(p))
    assert str(p) in msg
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".npz", ".parquet"])
def test_pickle_renamed_to_a_data_suffix_is_refused(tmp_path: Path, load: Loader,
                                                    suffix: str) -> None:
    blob, marker = _payload(tmp_path, suffix[1:])
    p = tmp_path / f"data{suffix}"
    p.write_bytes(blob)
    msg = raises(UnsafeFormatError, lambda: load(p))
    assert str(p) in msg and "pickle" in msg
    assert not marker.exists()
    assert issubclass(UnsafeFormatError, DataError)


def test_npz_with_an_object_array_is_refused(tmp_path: Path, load: Loader) -> None:
    p = tmp_path / "objects.npz"
    np.savez(p, x=np.array([{"a": 1}, None] * 10, dtype=object), y=np.array(list("ab") * 10))
    msg = raises(UnsafeFormatError, lambda: load(p))
    assert str(p) in msg


def test_text_file_named_npz_is_not_called_unsafe(tmp_path: Path, load: Loader) -> None:
    # regression: np.load's pickle fallback made any non-zip file "need unpickling"
    p = write(tmp_path, "notes.npz", "just some text\n")
    msg = raises(DataError, lambda: load(p))
    assert str(p) in msg and "not a .npz archive" in msg


def test_plain_npz_reads(tmp_path: Path) -> None:
    p = tmp_path / "ok.npz"
    np.savez(p, x=np.arange(20.0), y=np.array(list("ab") * 10))
    assert sum(build_file(p).info["rows"].values()) == 20


# ----------------------------------------------------------------------------- JSON Lines


def test_jsonl_broken_line_names_the_line(tmp_path: Path, load: Loader) -> None:
    lines = [f'{{"x": {i}, "y": "{"ab"[i % 2]}"}}' for i in range(20)]
    lines[4] = '{"x": 4, "y": '  # line 5, cut off
    p = write(tmp_path, "broken.jsonl", lines)
    msg = raises(DataError, lambda: load(p))
    assert str(p) in msg and "line 5" in msg and "not valid JSON" in msg
    # regression: the trailing newline pushed the column to "column 1" of the next line
    assert "column 15" in msg


def test_jsonl_line_that_is_not_an_object(tmp_path: Path, load: Loader) -> None:
    lines = [f'{{"x": {i}, "y": "{"ab"[i % 2]}"}}' for i in range(20)]
    lines[2] = "[1, 2]"
    p = write(tmp_path, "list.jsonl", lines)
    msg = raises(DataError, lambda: load(p))
    assert str(p) in msg and "line 3" in msg and "found list" in msg


def test_jsonl_skip_bad_rows_counts(tmp_path: Path) -> None:
    lines = [f'{{"x": {i}, "y": "{"ab"[i % 2]}"}}' for i in range(20)]
    lines[4] = "{oops"
    lines[9] = '{"x": "ten", "y": "a"}'
    p = write(tmp_path, "skip.jsonl", lines)
    msg = raises(DataError, lambda: build_file(p))
    assert "line 5" in msg
    ds = build_file(p, skip_bad_rows=True)
    assert ds.info["skipped_bad_rows"] == 2
    assert sum(ds.info["rows"].values()) == 18


def test_jsonl_line_that_is_not_utf8_names_the_line(tmp_path: Path, load: Loader) -> None:
    # regression: a UnicodeDecodeError escaped instead of a DataError
    lines = [f'{{"x": {i}, "y": "{"ab"[i % 2]}"}}'.encode() for i in range(20)]
    lines[6] = '{"x": 6, "y": "caf\u00e9"}'.encode("latin-1")  # line 7
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    msg = raises(DataError, lambda: load(p))
    assert str(p) in msg and "line 7" in msg and "UTF-8" in msg
    if load is build_file:
        assert build_file(p, skip_bad_rows=True).info["skipped_bad_rows"] == 1


def test_jsonl_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    p = tmp_path / "bom.jsonl"
    p.write_text("\ufeff" + "\n".join('{"x": 1, "y": "a"}' for _ in range(3)) + "\n",
                 encoding="utf-8")
    assert len(sources.read(p)) == 3


# ----------------------------------------------------------------------------- format


def test_format_that_does_not_fit_the_path(tmp_path: Path) -> None:
    # regression: NotADirectoryError / IsADirectoryError escaped instead of a DataError
    p = write(tmp_path, "rows.csv", good_csv())
    msg = raises(DataError, lambda: sources.read(p, "images"))
    assert str(p) in msg and "folder" in msg
    for fmt in ("csv", "jsonl", "npz"):
        msg = raises(DataError, lambda fmt=fmt: build_file(tmp_path, format=fmt))
        assert str(tmp_path) in msg and "this is a folder" in msg
