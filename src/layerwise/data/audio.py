"""Audio inputs: sound files → log-mel spectrograms ``[1, n_mels, frames]``.

    clip (WAV/FLAC path or samples) ──soundfile──▶ mono float samples at the file's rate
      ──polyphase resampling (scipy)──▶ ``sample_rate``
      ──pad/crop to ``length`` seconds (or keep its own length)──▶ samples [S]
      ──STFT (torch, Hann window) → power → mel filters (librosa) → log──▶ [n_mels, T]
      ──per-channel standardisation (training-split statistics)──▶ {"mels": float [N, 1, M, T],
                                                                   "lengths": long [N]}

``lengths`` holds each clip's own frame count (all ``T`` at a fixed ``length``); frames
past it are 0 (the channel means). The cnn family reads ``mels`` as a one-channel image
(mel × frames); the rnn family reads it as a sequence of frames, packed by ``lengths``.
SpecAugment-style masks (data/augment.py, ``spec_augment``) apply to training batches
only. soundfile and librosa come with ``layerwise[audio]``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from layerwise.data.encoder import Encoder, is_missing, no_bad_rows, resolve_path
from layerwise.data.table import Table
from layerwise.errors import DataError, MissingDependencyError

AUDIO_READABLE = {".wav", ".flac", ".ogg", ".aif", ".aiff", ".mp3"}  # what soundfile reads
_FLOOR = 1e-6  # added to the mel power before the log: silence is log(1e-6), not -inf


def _soundfile() -> Any:
    try:
        import soundfile
    except ImportError:
        raise MissingDependencyError("audio inputs need the package soundfile: pip install "
                                     "'layerwise[audio]'") from None
    return soundfile


def read_audio(path: str | Path | BinaryIO) -> tuple[np.ndarray, int]:
    """Samples (float32, mono: channels averaged) and the sample rate of a sound file (a
    path, or an open binary file such as the bytes of a request)."""
    sf = _soundfile()
    name = repr(str(path)) if isinstance(path, str | Path) else "(bytes)"
    try:
        data, rate = sf.read(path if not isinstance(path, Path) else str(path),
                             dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, OSError, TypeError) as e:
        raise DataError(f"audio {name} is unreadable ({e})") from None
    if len(data) == 0:
        raise DataError(f"audio {name} holds no samples")
    return data.mean(axis=1), int(rate)


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``x`` at ``rate`` Hz → ``target`` Hz, by polyphase filtering (anti-aliased)."""
    if rate == target:
        return x.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = math.gcd(rate, target)
    return resample_poly(x, target // g, rate // g).astype(np.float32)


def fix_length(x: np.ndarray, n: int) -> np.ndarray:
    """Crop ``x`` to its middle ``n`` samples, or pad it with silence at its end."""
    if len(x) >= n:
        start = (len(x) - n) // 2
        return x[start: start + n]
    return np.pad(x, (0, n - len(x)))


@lru_cache(maxsize=8)
def mel_filters(rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """Slaney-style mel filter bank ``[n_mels, n_fft // 2 + 1]`` (librosa)."""
    try:
        import librosa
    except ImportError:
        raise MissingDependencyError("audio inputs need the package librosa: pip install "
                                     "'layerwise[audio]'") from None
    return torch.from_numpy(librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels))


def log_mel(x: np.ndarray, rate: int, n_mels: int, window_ms: float, hop_ms: float
            ) -> np.ndarray:
    """Log-mel spectrogram ``[n_mels, 1 + len(x) // hop]`` of mono samples ``x``."""
    win = max(1, int(round(rate * window_ms / 1000)))
    hop = max(1, int(round(rate * hop_ms / 1000)))
    n_fft = 1 << (win - 1).bit_length()  # the next power of two
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if len(t) < n_fft // 2 + 1:  # reflect padding needs more samples than half a window
        t = torch.nn.functional.pad(t, (0, n_fft // 2 + 1 - len(t)))
    spec = torch.stft(t, n_fft, hop_length=hop, win_length=win,
                      window=torch.hann_window(win), center=True, return_complex=True)
    power = spec.abs().pow(2)                                       # [F, T]
    mels = mel_filters(rate, n_fft, n_mels) @ power                 # [M, T]
    return torch.log(mels + _FLOOR).numpy()


def frames_of(seconds: float, hop_ms: float) -> int:
    """Frames of a clip of ``seconds`` (centred STFT: one more than whole hops)."""
    return 1 + int(round(seconds * 1000 / hop_ms))


class AudioEncoder(Encoder):
    """Paths or sample arrays → ``{"mels": [N, 1, n_mels, frames], "lengths": [N]}``."""

    kind = "audio"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.frames: int | None = frames_of(cfg.length, cfg.hop_ms) if cfg.length else None
        self.mean: list[float] = []
        self.std: list[float] = []

    def features(self, clip: Any, origin: str) -> np.ndarray:
        """One clip (a path, or samples at ``sample_rate``) → log-mel ``[n_mels, T]``."""
        cfg = self.cfg
        if isinstance(clip, np.ndarray):
            x = clip.astype(np.float32).reshape(len(clip), -1).mean(axis=1)
        else:
            x, rate = read_audio(resolve_path(str(clip), origin))
            x = resample(x, rate, cfg.sample_rate)
        seconds = cfg.length or cfg.max_length
        n = int(round(seconds * cfg.sample_rate))
        x = fix_length(x, n) if cfg.length else x[:n]
        return log_mel(x, cfg.sample_rate, cfg.n_mels, cfg.window_ms, cfg.hop_ms)

    def parse(self, col: np.ndarray, table: Table) -> tuple[np.ndarray, np.ndarray, list[str]]:
        bad, reasons = no_bad_rows(len(col))
        values = np.empty(len(col), dtype=object)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one short STFT per clip: threads only contend (~400x)
        try:
            self._parse_into(values, bad, reasons, col, table.origin)
        finally:
            torch.set_num_threads(threads)
        return values, bad, reasons

    def _parse_into(self, values: np.ndarray, bad: np.ndarray, reasons: list[str],
                    col: np.ndarray, origin: str) -> None:
        for i, v in enumerate(col):
            try:
                if not isinstance(v, np.ndarray) and is_missing(v):
                    raise DataError("the cell is empty; give an audio file path")
                values[i] = self.features(v, origin)
            except DataError as e:
                bad[i] = True
                values[i] = np.zeros((self.cfg.n_mels, 1), dtype=np.float32)
                if not reasons:
                    reasons.append(str(e))

    def fit(self, values: np.ndarray) -> None:
        if self.frames is None:  # variable length: the longest training clip
            self.frames = max(int(v.shape[1]) for v in values)
        frames = np.concatenate(list(values), axis=1)               # [M, ΣT]
        self.mean = frames.mean(axis=1).astype(float).tolist()
        self.std = [float(s) or 1.0 for s in frames.std(axis=1)]

    def transform(self, values: np.ndarray) -> dict[str, torch.Tensor]:  # type: ignore[override]
        if self.frames is None:
            raise DataError(f"audio input {self.name!r} is not fitted yet")
        t = self.frames
        mean = np.asarray(self.mean, dtype=np.float32)[:, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None]
        out = np.zeros((len(values), 1, self.cfg.n_mels, t), dtype=np.float32)
        lengths = np.zeros(len(values), dtype=np.int64)
        for i, v in enumerate(values):
            k = min(t, int(v.shape[1]))
            out[i, 0, :, :k] = (v[:, :k] - mean) / std
            lengths[i] = max(1, k)
        return {"mels": torch.from_numpy(out), "lengths": torch.from_numpy(lengths)}

    def describe(self) -> dict[str, Any]:
        """What a model needs: the spectrogram's shape and the rnn family's frame stack."""
        return {"shape": (1, self.cfg.n_mels, self.frames), "n_mels": self.cfg.n_mels,
                "frames": self.frames, "stack": self.cfg.stack}

    def state(self) -> dict[str, Any]:
        return {"frames": self.frames, "mean": self.mean, "std": self.std,
                "sample_rate": self.cfg.sample_rate, "n_mels": self.cfg.n_mels}

    def load_state(self, state: dict[str, Any]) -> None:
        self.frames = int(state["frames"])
        self.mean, self.std = list(state["mean"]), list(state["std"])

    def reference(self, values: np.ndarray) -> dict[str, Any]:
        frames = [int(v.shape[1]) for v in values]
        return {"count": int(len(values)),
                "mean_frames": float(np.mean(frames)) if frames else None}


def clip_seconds(paths: list[str]) -> float:
    """The longest duration among sound files (their headers only; unreadable ones left
    out; 0 when none can be read)."""
    sf = _soundfile()
    longest = 0.0
    for p in paths:
        try:
            longest = max(longest, float(sf.info(p).duration))
        except (RuntimeError, sf.LibsndfileError, OSError):
            continue
    return longest


def read_audio_folder(path: Path, limit: int | None) -> Table:
    """``root/<class>/<clip>`` → columns ``audio`` (file paths) and ``label``."""
    files: list[str] = []
    labels: list[str] = []
    for d in sorted(d for d in path.iterdir() if d.is_dir()):
        for f in sorted(d.iterdir()):
            if f.suffix.lower() in AUDIO_READABLE and not f.name.startswith("."):  # hidden
                files.append(str(f))
                labels.append(d.name)
    if not files:
        raise DataError(f"{path}: no audio files found (clips must sit in one sub-folder "
                        f"per class; read: {', '.join(sorted(AUDIO_READABLE))})")
    if limit:
        files, labels = files[:limit], labels[:limit]
    return Table({"audio": np.array(files, dtype=object),
                  "label": np.array(labels, dtype=object)}, str(path))
