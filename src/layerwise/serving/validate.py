"""Requests checked against the artifact's feature schema before they reach a model.

Every row must carry each input in the form its encoder reads — a number for a numeric
input, a string (or number) for a category, a string for text, an image as base64 (PNG,
JPEG, …) or as nested lists of pixel values, a sound clip as base64 (WAV, FLAC, OGG) — so
a bad row is answered 422 naming the field (``rows[3].alcohol``), never a 500 from deep
inside the model.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from typing import Any

import numpy as np

MAX_IMAGE_PIXELS = 4096 * 4096  # a decoded image larger than this is refused
MAX_AUDIO_SECONDS = 60  # a decoded sound longer than this is refused


class InvalidInput(ValueError):
    """A request field that does not fit the schema; ``loc`` names it."""

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__(msg)
        self.loc, self.msg = loc, msg

    def detail(self) -> list[dict[str, Any]]:
        return [{"loc": ["body", *self.loc], "msg": self.msg, "type": "value_error"}]


def _allows_missing(enc: Any) -> bool:
    return getattr(getattr(enc, "cfg", None), "missing", "error") != "error"


def input_schema(schema: Any) -> list[dict[str, Any]]:
    """Each input: name, type, whether it may be missing, and what its values look like."""
    out = []
    for enc in schema.inputs:
        item: dict[str, Any] = {"name": enc.name, "type": enc.kind,
                                "required": not _allows_missing(enc)}
        if enc.kind == "category":
            item["values"] = [str(v) for v in enc.vocab][:1000]
        elif enc.kind == "image":
            item.update(size=list(enc.size or ()), channels=enc.channels,
                        encoding="base64 image file (PNG, JPEG, ...) or nested lists "
                                 "[H][W] / [H][W][C] of pixels")
        elif enc.kind == "audio":
            item.update(sample_rate=enc.cfg.sample_rate, seconds=enc.cfg.length,
                        encoding="base64 sound file (WAV, FLAC, OGG)")
        out.append(item)
    return out


def output_schema(schema: Any) -> list[dict[str, Any]]:
    """Each output: name, type, and its classes where it has them."""
    out = []
    for enc in schema.outputs:
        item: dict[str, Any] = {"name": enc.name, "type": enc.kind}
        if enc.kind == "category":
            item["classes"] = [str(v) for v in enc.vocab]
        elif enc.kind == "binary":
            item["classes"] = [str(v) for v in enc.labels()]
        elif enc.kind == "tags":
            item.update(input=enc.cfg.input, tags=[str(v) for v in enc.vocab])
        elif enc.kind == "ctc":
            item.update(input=enc.cfg.input, alphabet="".join(enc.alphabet))
        out.append(item)
    return out


def check_count(rows: Any, max_rows: int) -> None:
    """A non-empty list of at most ``max_rows`` rows, or :class:`InvalidInput`."""
    if not isinstance(rows, list) or not rows:
        raise InvalidInput(["rows"], "expected a non-empty list of objects")
    if len(rows) > max_rows:
        raise InvalidInput(["rows"], f"at most {max_rows} rows per request; got {len(rows)}")


def validate_rows(schema: Any, rows: Any, max_rows: int) -> list[dict[str, Any]]:
    """The rows as the Predictor reads them (images decoded to arrays), or
    :class:`InvalidInput` naming the first bad field."""
    check_count(rows, max_rows)
    return [_row(schema, row, i) for i, row in enumerate(rows)]


def validate_indexed(schema: Any, rows: list[tuple[int, Any]]) -> list[dict[str, Any]]:
    """Like :func:`validate_rows` for some rows of a request: ``(index in the request,
    row)`` pairs, so an error names the row the caller sent."""
    return [_row(schema, row, i) for i, row in rows]


def _row(schema: Any, row: Any, i: int) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise InvalidInput(["rows", i], f"expected an object; got {type(row).__name__}")
    out: dict[str, Any] = {}
    for enc in schema.inputs:
        loc: list[str | int] = ["rows", i, enc.name]
        if row.get(enc.name) is None:
            if not _allows_missing(enc):
                raise InvalidInput(loc, f"field {enc.name!r} ({enc.kind}) is required")
            out[enc.name] = float("nan") if enc.kind == "numeric" else None
            continue
        out[enc.name] = _value(enc, row[enc.name], loc)
    return out


def _value(enc: Any, v: Any, loc: list[str | int]) -> Any:
    kind = enc.kind
    if kind == "numeric":
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise InvalidInput(loc, f"expected a finite number; got {v!r}"[:200])
        return float(v)
    if kind in ("category", "binary"):
        if not isinstance(v, str | int | float | bool):
            raise InvalidInput(loc, f"expected a string or number; got {type(v).__name__}")
        return v
    if kind == "text":
        if not isinstance(v, str):
            raise InvalidInput(loc, f"expected a string; got {type(v).__name__}")
        return v
    if kind == "image":
        return _image(enc, v, loc)
    if kind == "audio":
        return _audio(enc, v, loc)
    raise InvalidInput(loc, f"inputs of type {kind!r} cannot be sent over HTTP yet")


def _image(enc: Any, v: Any, loc: list[str | int]) -> np.ndarray:
    """An image as ``uint8``/float array shaped ``[H, W]`` or ``[H, W, C]`` at the model's
    size (a decoded file is resized; an array must already have that size)."""
    if isinstance(v, str):
        try:
            raw = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(loc, "expected base64 of an image file") from None
        return decode_image(enc, raw, loc)
    if isinstance(v, list):
        try:
            arr = np.asarray(v, dtype=np.float32)
        except (ValueError, TypeError):
            raise InvalidInput(loc, "expected nested lists of numbers of one shape") from None
        size = tuple(enc.size or ())
        if arr.ndim not in (2, 3) or tuple(arr.shape[:2]) != size or (
                arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
            raise InvalidInput(loc, f"expected pixels shaped {list(size)} or {list(size)}+"
                                    f"[channels]; got {list(arr.shape)}")
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 255:
            raise InvalidInput(loc, "expected pixel values in [0, 255]")
        return _channels(arr, enc.channels)
    raise InvalidInput(loc, f"expected a base64 string or nested lists; got "
                            f"{type(v).__name__}")


def _audio(enc: Any, v: Any, loc: list[str | int]) -> np.ndarray:
    """A sound file sent as base64 → mono samples at the model's rate (at most
    ``MAX_AUDIO_SECONDS``)."""
    from layerwise.data.audio import read_audio, resample
    from layerwise.errors import DataError

    if not isinstance(v, str):
        raise InvalidInput(loc, f"expected base64 of a sound file; got {type(v).__name__}")
    try:
        raw = base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(loc, "expected base64 of a sound file") from None
    try:
        x, rate = read_audio(io.BytesIO(raw))
    except DataError:
        raise InvalidInput(loc, "unreadable sound file (WAV, FLAC or OGG expected)") from None
    if len(x) > MAX_AUDIO_SECONDS * rate:
        raise InvalidInput(loc, f"sound of {len(x) / rate:.0f} s is too long (at most "
                                f"{MAX_AUDIO_SECONDS} s)")
    return resample(x, rate, enc.cfg.sample_rate)


def _channels(arr: np.ndarray, channels: int | None) -> np.ndarray:
    """One layout per model, so the rows of a batch stack: ``[H, W]`` for one channel,
    ``[H, W, 3]`` for three."""
    if arr.ndim == 3:
        arr = arr[..., :3]
        if channels == 1:
            arr = arr.mean(axis=2)
    if arr.ndim == 2 and channels == 3:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return arr


def decode_image(enc: Any, raw: bytes, loc: list[str | int]) -> np.ndarray:
    """Bytes of an image file → pixels at the model's size and channels."""
    from PIL import Image, UnidentifiedImageError

    from layerwise.data.features import IMAGE_FORMATS

    try:
        with Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise InvalidInput(loc, f"image of {im.width}x{im.height} pixels is too large")
            im = im.convert("RGB" if enc.channels == 3 else "L")
            h, w = enc.size
            if (im.height, im.width) != (h, w):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except InvalidInput:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError,
            Image.DecompressionBombError) as e:
        raise InvalidInput(loc, f"unreadable image ({type(e).__name__})") from None
