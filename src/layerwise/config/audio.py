"""Config models of sound: the ``audio`` input (a log-mel spectrogram of each clip) and the
``ctc`` output (speech to text over characters, trained with connectionist temporal
classification). See data/audio.py and data/transcript.py."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from layerwise.config.base import _Strict


class SpecAugmentConfig(_Strict):
    """SpecAugment-style masking (Park et al., 2019), on training batches only: bands of
    mel channels and runs of frames set to the mean (0 after normalisation)."""

    time_masks: int = Field(0, ge=0, description="runs of frames masked per clip")
    time_width: int = Field(10, gt=0, description="the longest run of frames masked")
    freq_masks: int = Field(0, ge=0, description="bands of mel channels masked per clip")
    freq_width: int = Field(8, gt=0, description="the widest band of mel channels masked")

    @property
    def active(self) -> bool:
        return bool(self.time_masks or self.freq_masks)


class AudioInput(_Strict):
    """A sound clip per row: a WAV/FLAC file path (relative to the data file's folder) or an
    array of samples at ``sample_rate``. Each clip is read (soundfile), mixed to mono,
    resampled, and turned into a log-mel spectrogram ``[1, n_mels, frames]``, normalised
    per mel channel by statistics of the training split."""

    type: Literal["audio"]
    name: str = Field(min_length=1, description="the column of file paths (or sample arrays)")
    sample_rate: int = Field(16000, ge=1000, description="clips are resampled to this rate (Hz)")
    n_mels: int = Field(40, ge=4, le=256, description="mel channels of the spectrogram")
    window_ms: float = Field(25.0, gt=0.0, description="analysis window of each frame")
    hop_ms: float = Field(10.0, gt=0.0, description="step between frames")
    length: float | None = Field(1.0, gt=0.0, description="seconds per clip: longer clips "
                                 "are cropped (centred), shorter ones padded with silence; "
                                 "null: variable length, padded to the longest training clip "
                                 "(at most max_length) with each clip's own frame count kept")
    max_length: float = Field(10.0, gt=0.0, description="with length: null, clips longer "
                              "than this are cut at its end")
    stack: int = Field(1, ge=1, le=8, description="recurrent models (rnn family): frames "
                       "stacked into one step, dividing the steps by this")
    augment: SpecAugmentConfig = Field(default_factory=SpecAugmentConfig)

    @model_validator(mode="after")
    def _window(self) -> AudioInput:
        if self.hop_ms > self.window_ms:
            raise ValueError(f"hop_ms ({self.hop_ms}) must not exceed window_ms "
                             f"({self.window_ms}): frames would skip samples")
        return self


class CTCOutput(_Strict):
    """The transcript of an audio input, one character per symbol, learnt with CTC loss
    (Graves et al., 2006): the model emits a character or a blank per frame; repeats
    collapse and blanks drop. Predictions decode greedily or by prefix beam search."""

    type: Literal["ctc"]
    name: str = Field(min_length=1, description="the column of transcripts")
    input: str = Field(min_length=1, description="the audio input transcribed")
    lowercase: bool = Field(True, description="fold transcripts to lower case")
    decode: Literal["greedy", "beam"] = Field("beam", description="how predict decodes: "
                                              "the best path, or prefix beam search")
    beams: int = Field(8, ge=1, le=64, description="beam width of beam decoding")
    loss_weight: float = Field(1.0, gt=0.0)

    @model_validator(mode="after")
    def _distinct(self) -> CTCOutput:
        if self.name == self.input:
            raise ValueError(f"ctc output {self.name!r}: the transcripts need their own column")
        return self
