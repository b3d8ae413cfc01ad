"""`layerwise init`: column kinds with their evidence, the proposed config (it parses and
trains as written), its refusals, and folders of audio clips."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from layerwise.cli import main
from layerwise.config import parse
from layerwise.data.profile import profile_table, sniff_delimiter
from layerwise.data.proposal import propose, propose_table
from layerwise.data.sources import read
from layerwise.data.table import Table
from layerwise.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")


def _col(values: list[object]) -> np.ndarray:
    return np.array(values, dtype=object)


def _write_csv(path: Path, header: list[str], rows: list[list[object]],
               delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def tiny_table(tmp_path: Path, n: int = 80, delimiter: str = ",") -> Path:
    """Numbers, a Yes/No flag, a colour, a running index, a constant and a label that the
    first number decides."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        x = float(rng.normal())
        rows.append([i, round(x, 4), rng.choice(["Yes", "No"]), rng.choice(["red", "green",
                     "blue"]), "same", "high" if x > 0 else "low"])
    return _write_csv(tmp_path / "tiny.csv", ["idx", "x", "flag", "colour", "const",
                                              "label"], rows, delimiter)


# ---------------------------------------------------------------------------- kinds


def test_each_kind_is_recognised_with_its_evidence() -> None:
    n = 60
    words = [f"word{i} and some more words here {i}" for i in range(n)]
    t = Table({"num": _col([str(i * 0.5) for i in range(n)]),
               "flag": _col(["Yes", "No"] * (n // 2)),
               "cat": _col(["a", "b", "c"] * (n // 3)),
               "text": _col(words),
               "row": _col([str(i) for i in range(n)]),
               "code": _col([f"k{i:03d}" for i in range(n)]),
               "day": _col([f"2020-01-{1 + i % 28:02d}" for i in range(n)]),
               "pic": _col([f"img/{i}.png" for i in range(n)]),
               "same": _col(["x"] * n)}, "t.csv")
    kinds = {c.name: c.kind for c in profile_table(t)}
    assert kinds == {"num": "numeric", "flag": "binary", "cat": "category", "text": "text",
                     "row": "id", "code": "id", "day": "date", "pic": "image",
                     "same": "constant"}
    by_name = {c.name: c for c in profile_table(t)}
    assert "parse rate 100%" in by_name["num"].evidence()
    assert "e.g." in by_name["cat"].evidence() and by_name["cat"].distinct == 3
    assert "words" in by_name["text"].evidence()


def test_missing_cells_are_counted_and_not_a_kind_of_their_own() -> None:
    c = profile_table(Table({"x": _col(["1", "", "2.5", "NA", "7"] * 10)}, "t.csv"))[0]
    assert (c.kind, c.missing, c.numeric_rate) == ("numeric", 20, 1.0)


def test_a_run_of_numbered_columns_is_a_series_row() -> None:
    cols = {f"t{i}": _col([str(np.sin(i + k)) for k in range(30)]) for i in range(20)}
    cols["t_label"] = _col(["a", "b"] * 15)
    kinds = {c.name: c.kind for c in profile_table(Table(cols, "s.csv"))}
    assert {kinds[f"t{i}"] for i in range(20)} == {"series"} and kinds["t_label"] == "binary"
    short = {f"v{i}": cols[f"t{i}"] for i in range(5)}  # five numbered columns: numbers
    assert {c.kind for c in profile_table(Table(short, "s.csv"))} == {"numeric"}


def test_the_delimiter_is_guessed_from_the_header(tmp_path: Path) -> None:
    path = tiny_table(tmp_path, delimiter=";")
    assert sniff_delimiter(path) == ";"
    p = propose(path)
    assert ("delimiter", ";", "guessed from the header line") in p.data


# ---------------------------------------------------------------------------- proposals


def test_the_proposal_picks_output_inputs_and_family(tmp_path: Path) -> None:
    p = propose(tiny_table(tmp_path))
    assert p.target == "label" and p.outputs[0][0] == {"name": "label", "type": "binary"}
    assert [f["name"] for f, _ in p.inputs] == ["x", "flag", "colour"]
    assert {n for n, _ in p.skipped} == {"idx", "const"}
    assert p.model["family"] == "mlp"
    assert p.role("idx") == "skipped" and p.role("x") == "input"


def test_an_explicit_target_and_a_bad_one(tmp_path: Path) -> None:
    path = tiny_table(tmp_path)
    assert propose(path, "colour").outputs[0][0]["type"] == "category"
    with pytest.raises(DataError, match="no column 'nope' for --target"):
        propose(path, "nope")
    with pytest.raises(DataError, match="'idx' looks like id"):
        propose(path, "idx")


def test_a_text_set_gets_the_bag_family_and_an_auto_length(tmp_path: Path) -> None:
    rows = [[f"this is {'good' if i % 2 else 'bad'} text number {i}", "pos" if i % 2 else
             "neg"] for i in range(60)]
    p = propose(_write_csv(tmp_path / "t.csv", ["review", "sentiment"], rows))
    text = p.inputs[0][0]
    assert text["type"] == "text" and text["max_length"] == "auto"
    assert p.model["family"] == "bag"  # few rows: the bag


def test_the_yaml_parses_and_says_why(tmp_path: Path) -> None:
    path = tiny_table(tmp_path)
    text = propose(path).yaml(tmp_path / "tiny.yaml", "tiny")
    raw = yaml.safe_load(text)
    assert raw["data"]["path"] == "tiny.csv"  # relative to the config's folder
    assert "# skipped 'idx'" in text and "# two values" in text
    (tmp_path / "tiny.yaml").write_text(text)
    cfg = parse(tmp_path / "tiny.yaml")
    assert cfg.model.family == "mlp" and cfg.train.early_stopping is not None


def test_init_then_train_from_another_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = tiny_table(tmp_path)
    out = tmp_path / "configs" / "mine.yaml"
    assert main(["init", str(data), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "evidence" in printed and "binary" in printed and f"wrote {out}" in printed
    assert yaml.safe_load(out.read_text())["data"]["path"] == str(data.resolve())
    monkeypatch.chdir(tmp_path / "configs")
    assert main(["train", "mine.yaml", "--output", str(tmp_path / "run"), "-q",
                 "--set", "train.epochs=2"]) == 0
    assert (tmp_path / "run" / "model" / "layerwise.json").is_file()


def test_init_train_runs_the_written_config(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = tiny_table(tmp_path, n=40)
    assert main(["init", str(data), "--train"]) == 0
    assert (tmp_path / "tiny.yaml").is_file()
    assert (tmp_path / "runs" / "tiny" / "metrics.json").is_file()


def test_init_refuses_to_replace_a_config(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    data, out = tiny_table(tmp_path), tmp_path / "c.yaml"
    out.write_text("keep me")
    assert main(["init", str(data), "--output", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    assert main(["init", str(data), "--output", str(out), "--overwrite"]) == 0
    assert main(["init", str(data), "--output", str(tmp_path / "c.txt")]) == 2


def test_too_few_rows_is_a_clear_error(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "small.csv", ["a", "b"], [[1, 2], [3, 4]])
    with pytest.raises(DataError, match="2 rows; init needs at least 10"):
        propose(path)


# ---------------------------------------------------------------------------- audio


def test_an_audio_folder_is_read_and_proposed(tmp_path: Path) -> None:
    """A folder of clips per class is an audio data set (issue 17): read as file paths and
    labels, proposed as an audio input (its length from the clips' headers) for a cnn."""
    sf = pytest.importorskip("soundfile")
    wav = tmp_path / "yes.wav"
    wav.write_bytes(b"RIFF0000WAVEfmt ")
    with pytest.raises(DataError, match=r"one audio clip \(\.wav file\) is not a data set"):
        read(wav)
    for cls in ("yes", "no"):
        (tmp_path / "words" / cls).mkdir(parents=True)
        for i in range(6):
            sf.write(tmp_path / "words" / cls / f"{i}.wav",
                     np.zeros(8000 + 800 * i, dtype=np.float32), 16000)
    t = read(tmp_path / "words")
    assert list(t.columns) == ["audio", "label"] and len(t) == 12
    p = propose(tmp_path / "words")
    audio = next(f for f, _ in p.inputs if f["name"] == "audio")
    assert audio["type"] == "audio" and audio["length"] == 0.8  # the longest: 0.8 s
    assert p.model["family"] == "cnn" and "spectrogram" in p.yaml(tmp_path / "w.yaml", "w")


def test_an_image_folder_gets_the_cnn(tmp_path: Path) -> None:
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "pics" / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("L", (8, 8), color=40 * i).save(tmp_path / "pics" / cls / f"{i}.png")
    p = propose(tmp_path / "pics")
    assert p.inputs[0][0] == {"name": "image", "type": "image"}
    assert p.outputs[0][0]["type"] == "binary" and p.model["family"] == "cnn"
    text = p.yaml(tmp_path / "pics.yaml", "pics")
    assert yaml.safe_load(text)["data"]["path"] == "pics"


def test_a_target_with_missing_cells_skips_those_rows_counted(tmp_path: Path) -> None:
    rows = [[i, "" if i % 10 == 0 else ("a" if i % 3 else "b")] for i in range(1, 41)]
    rows = [[float(x) + 0.5, y] for x, y in rows]
    p = propose(_write_csv(tmp_path / "m.csv", ["x", "y"], rows), "y")
    assert ("skip_bad_rows", True) == p.data[0][:2] and p.data[1][:2] == ("max_bad_rows", 4)


@pytest.mark.parametrize("rows, words, family", [(60, 6, "bag"), (7200, 6, "rnn"),
                                                 (7200, 300, "bag")])
def test_the_text_family_follows_size_and_length(rows: int, words: int, family: str) -> None:
    texts = [" ".join(f"w{(i + j) % 97}" for j in range(words)) for i in range(rows)]
    t = Table({"text": _col(texts), "label": _col(["a", "b", "c"] * (rows // 3))}, "t.csv")
    p = propose_table(t, "t.csv", "csv", ",")
    assert p.model["family"] == family
