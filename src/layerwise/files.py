"""Files on disk: atomic writes, safetensors and strict JSON, the one low-level place for them.

Every file layerwise writes (artifacts, policies, checkpoints, cached judges, probe
caches) goes through :func:`atomic_write`, and every weights file through
:func:`save_safetensors` / :func:`load_safetensors`. Loaders refuse weights holding NaN or
infinity with :func:`check_finite`; JSON meant for other programs is written by
:func:`dumps_json`, which writes a non-finite number as ``null`` (bare ``NaN`` is not JSON).
Output paths are checked before any work by :func:`check_output_file` /
:func:`check_output_folder`.

Weights files are **byte-identical** for identical tensors: the safetensors library
serialises its metadata map in hash order, which changes from one process to the next, so
the header is rewritten canonically (sorted keys, no spaces, padded to 8 bytes) and a
file's sha256 identifies a model.

    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "w.safetensors"
    >>> save_safetensors(p, {"w": torch.ones(2)})
    >>> load_safetensors(p)["w"].tolist()
    [1.0, 1.0]
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from layerwise.errors import ArtifactError, ConfigError, UnsafeArtifactError

METADATA = {"format": "pt", "library": "layerwise"}
_MAX_HEADER = 100 * 2**20


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a temp file next to ``path``, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some file systems cannot fsync a directory
        pass


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def safetensors_bytes(tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors encoding of ``tensors`` with a canonical header."""
    from safetensors.torch import save

    blob = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                metadata=dict(METADATA if metadata is None else metadata))
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    # the data offsets are relative to the end of the header, so only the header changes
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob[8 + n:]


def save_safetensors(path: Path, tensors: dict[str, Any],
                     metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` atomically as safetensors (byte-identical for equal tensors)."""
    blob = safetensors_bytes(tensors, metadata)
    atomic_write(Path(path), lambda f: f.write(blob))


def check_safetensors(path: Path) -> None:
    """Refuse anything that is not a well-formed safetensors file, without unpickling.

    A safetensors file starts with its header length as 8 little-endian bytes, and those
    can begin with 0x80 (a pickle's first byte) or "PK" (a zip's): 1 in 32 lengths has the
    low byte 0x80. So the header is checked first, and only a file that is not safetensors
    is named a pickle or a zip (:class:`UnsafeArtifactError`) or damaged
    (:class:`ArtifactError`).
    """
    if not path.is_file():
        raise ArtifactError(f"{path.parent}: no {path.name} (is this a layerwise model "
                            "directory?)")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ArtifactError(f"{path}: truncated weights file ({len(head)} bytes)")
        (n,) = struct.unpack("<Q", head)
        fits = 0 < n <= min(size - 8, _MAX_HEADER)
        header = f.read(n) if fits else b""
    try:
        parsed = json.loads(header) if fits else None
    except (ValueError, RecursionError):  # RecursionError: "[[[[...", nested too deep
        parsed = None
    if isinstance(parsed, dict):
        return
    if head[:1] == b"\x80" or head[:2] == b"PK":
        kind = "a Python pickle" if head[:1] == b"\x80" else "a zip (torch.save) archive"
        raise UnsafeArtifactError(f"{path}: is {kind}, not safetensors; pickled weights "
                                  "can run code when loaded and are refused")
    if not fits:
        raise ArtifactError(f"{path}: truncated or not a safetensors file (header length "
                            f"{n} does not fit a {size}-byte file)")
    raise ArtifactError(f"{path}: not a safetensors file (the header is not a JSON object)")


def load_safetensors(path: Path) -> dict[str, Any]:
    """Read a safetensors file after :func:`check_safetensors`; never unpickles."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    check_safetensors(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ArtifactError(f"{path}: cannot read weights ({e})") from None


def check_finite(path: Path, tensors: Mapping[str, Any], names: Iterable[str]) -> None:
    """Refuse weights holding NaN or infinity: an :class:`ArtifactError` naming ``path``
    and the first such tensor among ``names``.

    A layerwise model is never saved with non-finite weights (training skips such steps
    and never checkpoints a non-finite model), so these bytes are damage; loading them
    would answer NaN for every row. Pass the names of the *weights* (parameters) only:
    some buffers are NaN on purpose, e.g. an autoencoder's anomaly threshold before one
    is chosen (see ``training.checkpoint.is_finite``).
    """
    import torch

    for name in names:
        t = tensors[name]
        if not (t.is_floating_point() or t.is_complex()):
            continue
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise ArtifactError(f"{path}: weight {name!r} holds {bad} non-finite value(s) "
                                f"(NaN or infinity) among {t.numel()}; a trained layerwise "
                                "model has none, so the file is damaged; refusing to load")


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float as ``None``, and NumPy / torch values as
    plain Python (lists and numbers), ready for ``json.dumps(..., allow_nan=False)``.

    >>> finite_json({"p": float("nan"), "q": [1.5, float("inf")]})
    {'p': None, 'q': [1.5, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    if not isinstance(value, str | bytes) and hasattr(value, "tolist"):  # ndarray, tensor,
        return finite_json(value.tolist())                               # NumPy scalar
    return value


def dumps_json(value: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``value``: non-finite numbers become ``null`` (never bare
    ``NaN`` / ``Infinity``), anything else JSON lacks becomes its ``str``."""
    return json.dumps(finite_json(value), allow_nan=False, default=str, **kwargs)


def blocking_file(path: Path) -> Path | None:
    """The existing file (not a folder) at ``path`` or above it, which keeps ``path``
    from being a folder; ``None`` when ``path`` is a folder or can be made one."""
    for p in (path, *path.parents):
        if p.is_dir():
            return None
        if p.exists() or p.is_symlink():
            return p
    return None


# The output checks: made before any work, so that a path that cannot be written is one
# clear ConfigError (a usage error: exit 2 from the CLI), never the OSError the write would
# raise after the work. ``what`` names the path to the user (an option: "--output").

def check_output_file(path: Path | None, what: str, suffixes: tuple[str, ...] = ()) -> None:
    """Refuse ``path`` as a file to write (``None``: nothing to check): a folder, a path
    under a file, or a suffix not in ``suffixes``. An existing file may be replaced;
    missing folders above it are made when writing."""
    if path is None:
        return
    want = ", ".join(suffixes[:-1]) + " or " * (len(suffixes) > 1) + "".join(suffixes[-1:])
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give a file path"
                          + (f" ending in {want}" if want else ""))
    blocker = blocking_file(path.parent)
    if blocker is not None:
        raise ConfigError(f"{what} {path} is under {blocker}, which is a file, not a folder")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ConfigError(f"{what} must end in {want}; got {path.name!r}")


def check_output_folder(path: Path | None, what: str) -> None:
    """Refuse ``path`` as a folder to write into (new or existing): an existing file, or
    a path under one."""
    if path is None:
        return
    blocker = blocking_file(path)
    if blocker == path:
        raise ConfigError(f"{what} {path} exists and is a file; give a folder (new or "
                          "existing)")
    if blocker is not None:
        raise ConfigError(f"{what} {path} is under {blocker}, which is a file, not a folder")


def cache_root() -> Path:
    """Where layerwise caches what it measured or trained once per machine (judges,
    precision probes): ``$LAYERWISE_CACHE``, else ``~/.cache/layerwise``."""
    return Path(os.environ.get("LAYERWISE_CACHE") or Path.home() / ".cache" / "layerwise")
