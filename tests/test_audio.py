"""Audio inputs and CTC transcripts (issue 17): reading WAV/FLAC, resampling, log-mel
spectrograms, SpecAugment masks in training only, CTC greedy/beam decoding and its loss
over padded steps, the character error rate, folders of clips (read, init, train, predict,
serve), and the spoken data sets' voice split. Clips come from espeak-ng in a temp folder."""

from __future__ import annotations

import base64
import copy
import io
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")
pytest.importorskip("librosa")

import layerwise as lw  # noqa: E402
from layerwise.config.audio import AudioInput, SpecAugmentConfig  # noqa: E402
from layerwise.data import spoken  # noqa: E402
from layerwise.data.audio import (  # noqa: E402
    AudioEncoder,
    fix_length,
    frames_of,
    log_mel,
    read_audio,
    resample,
)
from layerwise.data.augment import Augmenter, spec_augment  # noqa: E402
from layerwise.data.table import Table  # noqa: E402
from layerwise.data.transcript import (  # noqa: E402
    beam_search,
    cer,
    collapse,
    edit_distance,
    greedy,
)
from layerwise.errors import DataError  # noqa: E402

ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(not ESPEAK, reason="espeak-ng is not installed")
VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb+m3", "en-029", "en-us+m7"]


def _tone(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ---------------------------------------------------------------------------- signal


def test_wav_and_flac_read_as_mono_at_their_rate(tmp_path: Path) -> None:
    x = _tone(440, 8000, 0.5)
    stereo = np.stack([x, 0.5 * x], axis=1)
    for suffix in ("wav", "flac"):
        sf.write(tmp_path / f"a.{suffix}", stereo, 8000)
        y, rate = read_audio(tmp_path / f"a.{suffix}")
        assert rate == 8000 and y.shape == (4000,) and y.dtype == np.float32
        np.testing.assert_allclose(y, 0.75 * x, atol=1e-3)  # the channels averaged
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEfmt ")
    with pytest.raises(DataError, match="bad.wav.* is unreadable"):
        read_audio(tmp_path / "bad.wav")


def test_resampling_keeps_the_pitch_and_the_duration() -> None:
    y = resample(_tone(1000, 22050), 22050, 16000)
    assert len(y) == 16000
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(int(spectrum.argmax()) - 1000) <= 1  # 1 Hz bins over 1 s
    assert resample(y, 16000, 16000) is y or np.array_equal(resample(y, 16000, 16000), y)


def test_log_mel_shape_and_where_a_tone_lands() -> None:
    rate = 16000
    low, high = (log_mel(_tone(f, rate), rate, 40, 25.0, 10.0) for f in (300, 4000))
    assert low.shape == (40, frames_of(1.0, 10.0)) == (40, 101)
    assert low.mean(axis=1).argmax() < high.mean(axis=1).argmax()  # higher pitch, higher band
    assert np.isfinite(log_mel(np.zeros(100, np.float32), rate, 40, 25.0, 10.0)).all()


def test_fix_length_crops_the_middle_and_pads_the_end() -> None:
    x = np.arange(10, dtype=np.float32)
    assert fix_length(x, 4).tolist() == [3, 4, 5, 6]
    assert fix_length(x, 12).tolist() == [*range(10), 0, 0]


def test_encoder_fixed_and_variable_length_and_state_round_trip() -> None:
    clips = np.empty(2, dtype=object)
    clips[0], clips[1] = _tone(500, 16000, 0.3), _tone(700, 16000, 0.6)
    table = Table({"a": clips}, "test")
    fixed = AudioEncoder(AudioInput(type="audio", name="a", length=0.5))
    v = fixed.check(clips, table)
    fixed.fit(v)
    out = fixed.transform(v)
    assert out["mels"].shape == (2, 1, 40, 51) and out["lengths"].tolist() == [51, 51]
    free = AudioEncoder(AudioInput(type="audio", name="a", length=None))
    v = free.check(clips, table)
    free.fit(v)
    out = free.transform(v)
    assert out["mels"].shape[-1] == 61 and out["lengths"].tolist() == [31, 61]
    assert float(out["mels"][0, 0, :, 31:].abs().sum()) == 0.0  # past its end: zeros
    again = AudioEncoder(AudioInput(type="audio", name="a", length=None))
    again.load_state(json.loads(json.dumps(free.state())))
    assert torch.equal(again.transform(v)["mels"], out["mels"])


def test_spec_augment_masks_within_each_clip_and_only_in_training() -> None:
    x = {"mels": torch.ones(8, 1, 20, 50), "lengths": torch.full((8,), 30)}
    cfg = SpecAugmentConfig(time_masks=2, time_width=10, freq_masks=1, freq_width=5)
    out = spec_augment(x, cfg, torch.Generator().manual_seed(0))
    masked = out["mels"] == 0
    assert masked.any() and not masked.all()
    # a time mask starts inside the clip's own 30 frames
    cols = masked[:, 0].all(dim=1)                                  # [B, T]: whole frames
    starts = [int(c.nonzero()[0]) for c in cols if c.any()]
    assert starts and max(starts) < 30
    assert torch.equal(x["mels"], torch.ones(8, 1, 20, 50))        # the input is untouched
    aug = Augmenter({"a": cfg}, seed=0)
    assert aug and not Augmenter({"a": SpecAugmentConfig()}, seed=0)
    assert (aug({"a": x})["a"]["mels"] == 0).any()


# ---------------------------------------------------------------------------- ctc


def test_collapse_and_greedy_hand_cases() -> None:
    assert collapse([1, 1, 0, 1, 2, 2, 0, 0]) == [1, 1, 2]
    assert collapse([0, 0, 0]) == []
    logits = torch.full((1, 5, 3), -5.0)
    for t, c in enumerate([2, 2, 0, 2, 1]):
        logits[0, t, c] = 5.0
    assert greedy(logits) == [[2, 2, 1]]


def test_beam_search_sums_paths_where_greedy_takes_one() -> None:
    # two frames, blank 0.6 / "a" 0.4 each: the best path is blank-blank (0.36), but "a"
    # has three paths (a_, _a, aa) summing to 0.64
    lp = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    assert greedy(torch.tensor(lp)[None]) == [[]]
    assert beam_search(lp, beams=4) == [1]
    # a repeat needs a blank between: "a a" with a blank in the middle stays two letters
    lp = np.log(np.array([[0.05, 0.9, 0.05], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05]]))
    assert beam_search(lp, beams=4) == [1, 1]


def test_edit_distance_and_character_error_rate() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance([1, 2], [1, 2]) == 0
    assert cer(["abd", "xy"], ["abc", "xyz"]) == pytest.approx(2 / 6)
    assert math.isnan(cer([""], [""]))


def test_ctc_loss_over_padded_steps_equals_the_loss_over_real_steps() -> None:
    from layerwise.models.ctc import CTCHead

    torch.manual_seed(0)
    head = CTCHead("t", 6, 4)
    states = torch.randn(2, 9, 6)
    lengths = torch.tensor([9, 5])
    out = head({"states": states, "lengths": lengths})
    y = {"labels": torch.tensor([[1, 2, 2], [3, 1, 0]]), "lengths": torch.tensor([3, 2])}
    lp = head.linear(states).log_softmax(-1).transpose(0, 1)
    want = torch.nn.functional.ctc_loss(lp, y["labels"], lengths, y["lengths"],
                                        reduction="none")
    torch.testing.assert_close(head._losses(out, y), want, rtol=1e-4, atol=1e-4)
    assert greedy(out[1:, 5:]) == [[]]  # padded steps decode to nothing
    stats = head.row_stats(out, y)
    assert stats.shape == (2, 3) and head.metrics(stats, y)["cer"] >= 0


# ---------------------------------------------------------------------------- data sets


def test_voice_split_is_seeded_and_holds_voices_out() -> None:
    a, b = spoken.voice_split(0), spoken.voice_split(0)
    assert a == b and a != spoken.voice_split(1)
    parts = {p: {v for v, q in a.items() if q == p} for p in ("train", "validation", "test")}
    assert len(parts["test"]) == 19 and len(parts["validation"]) == 10
    assert sum(len(v) for v in parts.values()) == len(spoken.voices()) == 96


def _say(root: Path, words: list[str], voices: list[str]) -> list[spoken.Clip]:
    clips = [spoken.Clip(root / w / f"{spoken._slug(v)}.wav", v, w, w, 160, 50)
             for w in words for v in voices]
    spoken.synthesise(clips, workers=2)
    return clips


@pytest.fixture(scope="module")
def words(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not ESPEAK:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("words") / "words"
    _say(root, ["yes", "no"], VOICES)
    return root


KWS: dict[str, Any] = {
    "name": "kws", "seed": 0,
    "data": {"split": {"validation": 0.2, "test": 0.2}},
    "inputs": [{"name": "audio", "type": "audio", "n_mels": 16, "length": 0.8,
                "augment": {"time_masks": 1, "freq_masks": 1}}],
    "outputs": [{"name": "label", "type": "category"}],
    "model": {"family": "cnn", "blocks": [{"filters": 4, "pool": "max"}], "dense": [8]},
    "train": {"epochs": 1, "batch_size": 4, "progress": "quiet", "threads": 1},
}


@pytest.fixture(scope="module")
def kws_model(words: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keyword model trained one epoch on the folder of clips."""
    cfg = copy.deepcopy(KWS)
    cfg["data"]["path"] = str(words)
    return lw.train(cfg, output=tmp_path_factory.mktemp("kws") / "run").model_dir


@needs_espeak
def test_a_folder_of_clips_reads_proposes_trains_and_predicts(words: Path, kws_model: Path,
                                                              tmp_path: Path) -> None:
    from layerwise.cli import main
    from layerwise.data.proposal import propose
    from layerwise.data.sources import read

    t = read(words)
    assert sorted(set(t.column("label"))) == ["no", "yes"] and len(t) == 12
    p = propose(words)
    kinds = {f["type"] for f, _ in p.inputs}
    assert kinds == {"audio"} and p.model["family"] == "cnn"
    model = lw.load(kws_model)
    wav = words / "yes" / "en-us.wav"
    pred = model.predict(wav)
    assert pred[0]["label"] in ("yes", "no")
    assert pred == model.predict(wav)  # no masking at prediction time
    assert model.predict([str(wav), str(words / "no" / "en-gb.wav")])[1]["label"] in \
        ("yes", "no")
    assert main(["predict", str(kws_model), str(wav), "-o", str(tmp_path / "p.jsonl")]) == 0
    assert json.loads((tmp_path / "p.jsonl").read_text())["label"] in ("yes", "no")


@needs_espeak
def test_a_served_keyword_model_answers_base64_and_uploaded_clips(words: Path, kws_model: Path,
                                                                  tmp_path: Path) -> None:
    from tests.serving_helpers import running

    wav = words / "no" / "en-gb.wav"
    want = lw.load(kws_model).predict(wav)[0]
    with running({"kws": str(kws_model)}, tmp_path) as (client, _):
        raw = base64.b64encode(wav.read_bytes()).decode()
        r = client.post("/v1/models/kws/predict", json={"rows": [{"audio": raw}]})
        assert r.status_code == 200, r.text
        got = r.json()["predictions"][0]
        assert got["label"] == want["label"]
        assert got["label_probability"] == pytest.approx(want["label_probability"], abs=1e-4)
        r = client.post("/v1/models/kws/predict/files",
                        files=[("files", ("a.wav", wav.read_bytes(), "audio/wav"))])
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] == want["label"]
        r = client.post("/v1/models/kws/predict", json={"rows": [{"audio": "bm9pc2U="}]})
        assert r.status_code == 422 and "unreadable sound file" in r.text


@needs_espeak
def test_an_audio_file_alone_is_not_a_data_set(words: Path) -> None:
    from layerwise.data.sources import read

    with pytest.raises(DataError, match="one audio clip .* is not a data set"):
        read(words / "yes" / "en-us.wav")


@needs_espeak
def test_the_server_reads_a_sound_file_as_base64(words: Path) -> None:
    from layerwise.serving.validate import InvalidInput, input_schema, validate_rows

    enc = AudioEncoder(AudioInput(type="audio", name="audio", sample_rate=8000))
    schema = type("S", (), {"inputs": [enc]})()
    raw = base64.b64encode((words / "no" / "en-gb.wav").read_bytes()).decode()
    rows = validate_rows(schema, [{"audio": raw}], 4)
    x, rate = read_audio(words / "no" / "en-gb.wav")
    assert rate == 22050 and abs(len(rows[0]["audio"]) - len(x) * 8000 / 22050) < 2
    with pytest.raises(InvalidInput, match="unreadable sound file"):
        validate_rows(schema, [{"audio": base64.b64encode(b"nonsense").decode()}], 4)
    with pytest.raises(InvalidInput, match="base64"):
        validate_rows(schema, [{"audio": [0.1, 0.2]}], 4)
    assert input_schema(schema)[0]["sample_rate"] == 8000


@needs_espeak
def test_ctc_trains_decodes_and_scores_on_spoken_digits(tmp_path: Path) -> None:
    root = tmp_path / "digits"
    rows = []
    for i, v in enumerate(VOICES):
        for j, digits in enumerate(("12", "21", "121")):
            said = " ".join(spoken.DIGITS[int(d)] for d in digits)
            clip = spoken.Clip(root / f"{i}_{j}.wav", v, said, digits, 170, 50)
            spoken.synthesise([clip], workers=1)
            rows.append(f"{clip.path.name},{digits}")
    (root / "index.csv").write_text("audio,text\n" + "\n".join(rows) + "\n")
    cfg = {"name": "ctc", "seed": 0,
           "data": {"path": str(root / "index.csv"), "split": {"validation": 0.2,
                                                              "test": 0.2}},
           "inputs": [{"name": "audio", "type": "audio", "n_mels": 16, "length": None,
                       "max_length": 2.0, "stack": 4}],
           "outputs": [{"name": "text", "type": "ctc", "input": "audio", "beams": 3}],
           "model": {"family": "rnn", "cell": "gru", "hidden": 16, "bidirectional": True},
           "train": {"epochs": 2, "batch_size": 4, "progress": "quiet", "threads": 1}}
    run = lw.train(cfg, output=tmp_path / "run")
    test = run.metrics["test"]
    assert {"cer_greedy", "cer_beam", "exact_match_beam", "examples"} <= set(test)
    assert test["cer"] == test["cer_beam"] and test["cer_greedy"] >= 0
    model = lw.load(run.model_dir)
    said = model.predict(root / "0_0.wav")[0]["text"]
    assert isinstance(said, str) and set(said) <= set("12")
    evaluated = lw.evaluate(run.model_dir)
    assert evaluated["cer_beam"] == pytest.approx(test["cer_beam"])


def test_a_ctc_output_must_read_an_audio_input() -> None:
    from layerwise.config import parse
    from layerwise.data.build import Schema
    from layerwise.errors import ConfigError

    cfg = parse({"data": {"path": "x.csv"},
                 "inputs": [{"name": "audio", "type": "audio"},
                            {"name": "n", "type": "numeric"}],
                 "outputs": [{"name": "text", "type": "ctc", "input": "n"}],
                 "model": {"family": "rnn"}})
    with pytest.raises(ConfigError, match="input must name an audio input"):
        Schema.from_config(cfg)
    with pytest.raises(Exception, match="cannot predict a ctc output"):
        parse({"data": {"path": "x.csv"}, "inputs": [{"name": "audio", "type": "audio"}],
               "outputs": [{"name": "text", "type": "ctc", "input": "audio"}],
               "model": {"family": "cnn"}})


def test_bytes_of_a_flac_read_like_a_file(tmp_path: Path) -> None:
    buf = io.BytesIO()
    sf.write(buf, _tone(300, 16000, 0.2), 16000, format="FLAC")
    x, rate = read_audio(io.BytesIO(buf.getvalue()))
    assert rate == 16000 and len(x) == 3200


def test_early_stopping_on_a_character_error_rate_minimises_it() -> None:
    from layerwise.config.supervised import EarlyStoppingConfig
    from layerwise.training.callbacks import EarlyStopping

    assert EarlyStopping(EarlyStoppingConfig(monitor="val_cer")).mode() == "min"
    assert EarlyStopping(EarlyStoppingConfig(monitor="val_accuracy")).mode() == "max"
