"""Spoken words and digit strings, synthesised with espeak-ng across many voices.

Two data sets of the catalogue (``layerwise datasets``) come from here:

- ``spoken-words``: ten command words (yes, no, up, down, left, right, on, off, stop, go),
  each said ``takes`` times by every voice; columns ``audio`` (a WAV path), ``label``,
  ``voice``. The clips also lie as a folder per class (``<cache>/<word>/*.wav``).
- ``spoken-digits``: strings of 3 to 5 digits said as words ("three one four"); columns
  ``audio``, ``text`` (the digits, ``314``), ``voice``.

A voice is an English accent of espeak-ng (``en-us``, ``en-gb``, ``en-gb-scotland``, …)
with one of its variants (``+m1`` … ``+m7``, ``+f1`` … ``+f4``, or none): 8 × 12 = 96
voices. Every clip draws its own speed (``-s``, words per minute) and pitch (``-p``)
from a seeded generator. The voices are split, seeded, into train / validation / test
(70 / 10 / 20 %): the test part's voices never speak in training, so its score measures
new speakers. Clips are written once, in parallel, into the cache folder
(``spoken/`` under ``$LAYERWISE_CACHE``, else ``~/.cache/layerwise``) and reused; an
``index.csv`` written last marks a complete set. espeak-ng is a Debian package
(``apt-get install espeak-ng``); audio is never part of the repository.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from layerwise.data.table import Table
from layerwise.errors import DataError, MissingDependencyError
from layerwise.files import cache_root

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7", "+f1", "+f2", "+f3", "+f4")
SPEEDS = (120, 200)   # words per minute, drawn uniformly
PITCHES = (25, 75)    # espeak's 0-99 pitch scale, drawn uniformly
SHARES = {"test": 0.2, "validation": 0.1}  # of the voices; the rest train


@dataclass(frozen=True)
class Clip:
    """One utterance to synthesise: who says what, how fast and how high."""

    path: Path
    voice: str
    said: str     # the words espeak reads
    target: str   # the label or transcript
    speed: int
    pitch: int


def voices() -> list[str]:
    """Every voice: accent + variant."""
    return [a + v for a in ACCENTS for v in VARIANTS]


def voice_split(seed: int = 0) -> dict[str, str]:
    """Each voice's part (train / validation / test), seeded."""
    vs = voices()
    order = np.random.default_rng(seed).permutation(len(vs))
    n_test = round(SHARES["test"] * len(vs))
    n_val = round(SHARES["validation"] * len(vs))
    part = {}
    for rank, i in enumerate(order.tolist()):
        part[vs[i]] = "test" if rank < n_test else "validation" if rank < n_test + n_val \
            else "train"
    return part


def word_clips(root: Path, takes: int, seed: int) -> list[Clip]:
    """``takes`` clips of every word by every voice, in ``root/<word>/``."""
    rng = np.random.default_rng(seed)
    clips = []
    for v in voices():
        for w in WORDS:
            for k in range(takes):
                clips.append(Clip(root / w / f"{_slug(v)}_{k}.wav", v, w, w,
                                  int(rng.integers(*SPEEDS)), int(rng.integers(*PITCHES))))
    return clips


def digit_clips(root: Path, per_voice: int, seed: int) -> list[Clip]:
    """``per_voice`` digit strings (3 to 5 digits) by every voice, in ``root/clips/``."""
    rng = np.random.default_rng(seed)
    clips = []
    for v in voices():
        for k in range(per_voice):
            digits = rng.integers(0, 10, int(rng.integers(3, 6))).tolist()
            text = "".join(str(d) for d in digits)
            clips.append(Clip(root / "clips" / f"{_slug(v)}_{k}.wav", v,
                              " ".join(DIGITS[d] for d in digits), text,
                              int(rng.integers(*SPEEDS)), int(rng.integers(*PITCHES))))
    return clips


def _slug(voice: str) -> str:
    return voice.replace("+", "_")


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise MissingDependencyError("the spoken data sets need the program espeak-ng: "
                                     "apt-get install espeak-ng")
    return exe


def synthesise(clips: list[Clip], workers: int | None = None) -> None:
    """Write every clip missing on disk, ``workers`` espeak-ng processes at a time."""
    exe = _espeak()
    todo = [c for c in clips if not c.path.exists()]
    for d in {c.path.parent for c in todo}:
        d.mkdir(parents=True, exist_ok=True)

    def say(c: Clip) -> None:
        tmp = c.path.with_name(f".{c.path.stem}.{os.getpid()}.tmp.wav")  # per process
        cmd = [exe, "-v", c.voice, "-s", str(c.speed), "-p", str(c.pitch), "-w", str(tmp),
               c.said]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not tmp.exists():
            raise DataError(f"espeak-ng failed for voice {c.voice!r} saying {c.said!r}: "
                            f"{done.stderr.strip()[:200]}")
        os.replace(tmp, c.path)

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        list(pool.map(say, todo))


def build_set(kind: str, root: Path | None = None, *, takes: int = 3, per_voice: int = 20,
              seed: int = 0, workers: int | None = None) -> Path:
    """Synthesise a spoken set (``words`` or ``digits``) once; returns its ``index.csv``."""
    if kind not in ("words", "digits"):
        raise DataError(f"unknown spoken set {kind!r}; valid: words, digits")
    size = takes if kind == "words" else per_voice
    root = root or cache_root() / "spoken" / f"{kind}-{size}-seed{seed}"
    index = root / "index.csv"
    if index.exists():
        return index
    clips = word_clips(root, takes, seed) if kind == "words" else \
        digit_clips(root, per_voice, seed)
    synthesise(clips, workers)
    part = voice_split(seed)
    column = "label" if kind == "words" else "text"
    tmp = index.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["audio", column, "voice", "split", "speed", "pitch"])
        for c in clips:
            w.writerow([str(c.path.relative_to(root)), c.target, c.voice, part[c.voice],
                        c.speed, c.pitch])
    os.replace(tmp, index)
    return index


def load_set(kind: str) -> dict[str, Table]:
    """The catalogue's parts of a spoken set: train / validation / test by voice."""
    index = build_set(kind)
    with index.open(newline="") as f:
        rows = list(csv.DictReader(f))
    column = "label" if kind == "words" else "text"
    parts = {}
    for name in ("train", "validation", "test"):
        mine = [r for r in rows if r["split"] == name]
        parts[name] = Table({
            "audio": np.array([str(index.parent / r["audio"]) for r in mine], dtype=object),
            column: np.array([r[column] for r in mine], dtype=object),
            "voice": np.array([r["voice"] for r in mine], dtype=object)},
            f"catalogue:spoken-{kind}")
    return parts
