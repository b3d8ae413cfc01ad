"""Readers for files and folders: CSV, Parquet, JSON Lines, NumPy .npz, image and audio
folders.

Each returns a :class:`Table` whose rows remember their line in the file, so that later
errors (a word in a numeric column, an unreadable image) can name file, line and column.
Pickle-based formats are refused outright.
"""

from __future__ import annotations

import csv
import glob
import itertools
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from layerwise.data.audio import read_audio_folder
from layerwise.data.table import Table
from layerwise.errors import DataError, UnsafeFormatError

if TYPE_CHECKING:
    from _csv import Reader

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aif", ".aiff"}
_PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".joblib", ".ckpt", ".bin"}
_FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet",
            ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".npz": "npz"}
_Record = TypeVar("_Record")
GLOB_CHARS = "*?["  # a data.path holding one of these is a glob over shard files
SHARD_FORMATS = ("parquet", "jsonl")  # the formats a folder of shards may hold


@dataclass
class BadRows:
    """Counts rows skipped under ``skip_bad_rows`` and enforces the cap."""

    enabled: bool = False
    cap: int = 100
    count: int = 0
    first: str = ""

    def skip(self, where: str, why: str) -> None:
        if not self.enabled:
            raise DataError(f"{where}: {why}")
        self.count += 1
        self.first = self.first or f"{where}: {why}"
        if self.count > self.cap:
            raise DataError(f"more than max_bad_rows={self.cap} bad rows; the first was "
                            f"{self.first}")


def refuse_pickle(path: Path) -> None:
    """Raise UnsafeFormatError for files that would need unpickling to read."""
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise UnsafeFormatError(f"{path}: {path.suffix} files may hold pickled code and are "
                                "never loaded; convert the data to CSV, Parquet or .npz")
    if path.is_file():
        with path.open("rb") as f:
            head = f.read(2)
        if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
            raise UnsafeFormatError(f"{path}: this file is a Python pickle; pickles can run "
                                    "code when loaded and are never read")


def infer_format(path: Path, given: str | None) -> str:
    if given:
        return given
    if path.is_dir():
        return "audio" if _holds_audio(path) else "images"
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None and path.suffix.lower() in AUDIO_SUFFIXES:
        raise DataError(audio_file(path))
    if fmt is None:
        raise DataError(f"{path}: cannot tell the format from the extension "
                        f"{path.suffix!r}; set data.format to one of csv, parquet, jsonl, "
                        "npz, images, audio")
    return fmt


def _holds_audio(path: Path) -> bool:
    """Whether a folder's class sub-folders hold sound clips and no images."""
    files = [f for d in path.iterdir() if d.is_dir() for f in d.iterdir()]
    suffixes = {f.suffix.lower() for f in files}
    return bool(suffixes & AUDIO_SUFFIXES) and not suffixes & IMAGE_SUFFIXES


def audio_file(path: Path) -> str:
    """The message for one sound file given as data: a clip is one row, not a data set."""
    return (f"{path}: one audio clip ({path.suffix} file) is not a data set; give a folder "
            "with one sub-folder of clips per class, or a table whose column of file paths "
            "is an input of type audio")


def read(path: str | Path, fmt: str | None = None, *, delimiter: str = ",",
         bad: BadRows | None = None, limit: int | None = None,
         looked_in: Sequence[str] = (), encoding: str = "utf-8") -> Table:
    """Read one file or folder into a Table (``encoding``: of CSV and JSON Lines text).

    ``looked_in``: the places already searched for a relative ``path`` (by the config's
    parsing), named in the "not found" message."""
    p = Path(path)
    files = shard_files(p, fmt, looked_in)
    if files is not None:
        return read_shards(files, fmt, delimiter=delimiter, bad=bad, limit=limit)
    if not p.exists():
        raise DataError(not_found(p, looked_in))
    refuse_pickle(p)
    fmt = infer_format(p, fmt)
    if fmt in ("images", "audio") and not p.is_dir():
        raise DataError(f"{p}: format {fmt} reads a folder (one sub-folder per class), "
                        "not a file")
    if fmt in ("csv", "jsonl", "npz") and not p.is_file():
        raise DataError(f"{p}: format {fmt} reads one file; this is a folder")
    if p.is_file() and p.stat().st_size == 0:
        raise DataError(f"{p}: the file is empty")
    bad = bad or BadRows()
    if fmt == "csv":
        delim = "\t" if p.suffix.lower() == ".tsv" and delimiter == "," else delimiter
        return read_csv(p, delim, bad, limit, encoding)
    if fmt == "jsonl":
        return read_jsonl(p, bad, limit, encoding)
    if fmt == "parquet":
        return read_parquet(p, limit)
    if fmt == "npz":
        return read_npz(p, limit)
    if fmt == "images":
        return read_image_folder(p, limit)
    if fmt == "audio":
        return read_audio_folder(p, limit)
    raise DataError(f"unknown data format {fmt!r}")


def shard_files(path: Path, fmt: str | None, looked_in: Sequence[str] = ()
                ) -> list[Path] | None:
    """The files of a sharded source, sorted: a glob (``shards/*.parquet``), or a folder
    holding Parquet or JSON Lines files (not one sub-folder per class: that is an image
    folder). ``None`` for one file or an image folder."""
    if any(c in str(path) for c in GLOB_CHARS):
        files = sorted(Path(f) for f in glob.glob(str(path)) if Path(f).is_file())
        if not files:
            raise DataError(f"data.path {path}: the pattern matches no file"
                            + (f" (looked in {', '.join(looked_in)})" if looked_in else ""))
    elif path.is_dir() and fmt in (None, *SHARD_FORMATS):
        files = sorted(f for f in path.iterdir() if f.is_file()
                       and _FORMATS.get(f.suffix.lower()) in ((fmt,) if fmt else SHARD_FORMATS))
        if not files and fmt:
            raise DataError(f"{path}: format {fmt} reads one file or a folder of .{fmt} "
                            "shards; this is a folder with none")
        if not files:
            return None
    else:
        return None
    for f in files:
        refuse_pickle(f)
    kinds = {fmt or infer_format(f, None) for f in files}
    if len(kinds) > 1:
        raise DataError(f"{path}: the shards mix formats ({', '.join(sorted(kinds))}); "
                        "keep one format per source")
    return files


def read_shards(files: list[Path], fmt: str | None, *, delimiter: str = ",",
                bad: BadRows | None = None, limit: int | None = None) -> Table:
    """Every shard file read into one Table whose rows name their own file."""
    tables: list[Table] = []
    for f in files:
        left = limit - sum(len(t) for t in tables) if limit else None
        if left is not None and left <= 0:
            break
        tables.append(read(f, fmt, delimiter=delimiter, bad=bad, limit=left))
    return Table.concat(tables)


def not_found(path: Path, looked_in: Sequence[str] = ()) -> str:
    """``data file not found: my.csv (looked in /a/b/my.csv, /cwd/my.csv)``."""
    places = list(looked_in) or ([] if path.is_absolute() else [str(Path.cwd() / path)])
    return f"data file not found: {path}" + (f" (looked in {', '.join(places)})"
                                             if places else "")


def _codec(encoding: str) -> str:
    """The codec to open text with: UTF-8 skips a byte-order mark."""
    return "utf-8-sig" if _spelt(encoding) == "UTF-8" else encoding


def _spelt(encoding: str) -> str:
    """An encoding's name for messages: ``UTF-8`` however it was written."""
    return "UTF-8" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def not_decodable(path: Path, encoding: str) -> str:
    """Where ``path`` first fails to decode as ``encoding``: its line and byte offset, and
    the option that fixes it (the file is read again, once, only for this message)."""
    raw = path.read_bytes()
    try:
        raw.decode(_codec(encoding))
        return f"{path}: not {_spelt(encoding)} text; set data.encoding to the file's encoding"
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return (f"{path}, line {line}: not {_spelt(encoding)} text (byte offset {e.start}: "
                f"0x{raw[e.start]:02x}); set data.encoding to the file's encoding, e.g. "
                "data.encoding: latin-1 (or cp1252)")


def read_csv(path: Path, delimiter: str, bad: BadRows, limit: int | None,
             encoding: str = "utf-8") -> Table:
    """Strict CSV: every row must have as many fields as the header."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with path.open(newline="", encoding=_codec(encoding)) as f:
            reader = csv.reader(f, delimiter=delimiter, strict=True)
            try:
                header = next(reader)
            except StopIteration:
                raise DataError(f"{path}: the file is empty") from None
            header = [h.strip() for h in header]
            if not any(header):
                raise DataError(f"{path}, line 1: the header row is empty")
            dup = sorted({h for h in header if header.count(h) > 1})
            if dup:
                raise DataError(f"{path}, line 1: repeated column names {dup}")
            if len(header) == 1:  # before the rows: they may not split like the header
                _check_delimiter(path, header[0], delimiter, encoding)
            rows, lines = _first(_csv_rows(reader, header, path, bad), limit)
    except UnicodeDecodeError:
        raise DataError(not_decodable(path, encoding)) from None
    if not rows:
        raise DataError(f"{path}: the file has a header but no data rows")
    cols = {h: np.array([r[j] for r in rows], dtype=object) for j, h in enumerate(header)}
    return Table(cols, str(path), np.array(lines), unit="line")


# other common delimiters, as a config file writes them (YAML: "\t" is a tab)
_DELIMITERS = {";": "';' (semicolons)", "\t": '"\\t" (tabs)', "|": "'|' (pipes)",
               ",": "',' (commas)"}


def _check_delimiter(path: Path, name: str, delimiter: str, encoding: str = "utf-8") -> None:
    """A file read as one column whose header and first row split alike on another common
    delimiter was written with that delimiter: say so, and how to read it, rather than
    fail later with ``missing column`` or ``expected 1 fields`` (a real one-column file
    whose name holds a ``;`` passes: its rows do not split like its header)."""
    with path.open(newline="", encoding=_codec(encoding)) as f:
        lines = (line for line in itertools.islice(f, 1, 100) if line.strip())
        first = next(lines, "")  # the first non-blank line after the header, as written
    for d, words in _DELIMITERS.items():
        parts = name.split(d)
        if d != delimiter and len(parts) > 1 and all(p.strip() for p in parts) \
                and first.count(d) == len(parts) - 1:
            raise DataError(f"{path}, line 1: the file looks delimited by {words}, not "
                            f"{_DELIMITERS.get(delimiter, repr(delimiter))}: the header is "
                            f"one column {name!r}; set data.delimiter: {words.split()[0]} "
                            "in the config")


def _csv_rows(reader: Reader, header: list[str], path: Path,
              bad: BadRows) -> Iterator[tuple[int, list[str]]]:
    """The rows after the header, each with its line; a malformed row is skipped (or is an
    error) through ``bad``."""
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            bad.skip(f"{path}, line {start}", f"malformed CSV ({e})")
            continue
        if not row:  # a blank line is not a row
            continue
        if len(row) != len(header):
            bad.skip(f"{path}, line {start}", f"expected {len(header)} fields "
                     f"({', '.join(header[:8])}{'...' if len(header) > 8 else ''}); "
                     f"found {len(row)}")
            continue
        yield start, row


def read_jsonl(path: Path, bad: BadRows, limit: int | None, encoding: str = "utf-8") -> Table:
    with path.open("rb") as f:  # decoded line by line, so a bad byte names its line
        records, lines = _first(_jsonl_records(f, path, bad, encoding), limit)
    if not records:
        raise DataError(f"{path}: no JSON records found")
    keys: list[str] = []
    for r in records:
        keys.extend(k for k in r if k not in keys)
    cols = {k: np.array([r.get(k) for r in records], dtype=object) for k in keys}
    return Table(cols, str(path), np.array(lines), unit="line")


def _jsonl_records(f: Iterable[bytes], path: Path, bad: BadRows,
                   encoding: str = "utf-8") -> Iterator[tuple[int, dict[str, object]]]:
    """The JSON objects of a file's lines, each with its line; a line that is not one is
    skipped (or is an error) through ``bad``."""
    codec = _codec(encoding)
    for no, raw in enumerate(f, start=1):
        try:
            text = raw.decode(codec).rstrip("\r\n")  # so colno is on this line
        except UnicodeDecodeError as e:
            bad.skip(f"{path}, line {no}", f"not {_spelt(encoding)} text (byte {e.start + 1} "
                     "of the line); set data.encoding to the file's encoding, e.g. latin-1")
            continue
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            bad.skip(f"{path}, line {no}", f"not valid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(obj, dict):
            bad.skip(f"{path}, line {no}", f"expected a JSON object; found "
                     f"{type(obj).__name__}")
            continue
        yield no, obj


def _first(numbered: Iterable[tuple[int, _Record]],
           limit: int | None) -> tuple[list[_Record], list[int]]:
    """The records of ``(line, record)`` pairs and their lines, up to ``limit`` records (all
    when it is None or 0); no pair past the limit is read."""
    records: list[_Record] = []
    lines: list[int] = []
    for line, record in numbered:
        records.append(record)
        lines.append(line)
        if limit and len(records) >= limit:
            break
    return records, lines


def read_parquet(path: Path, limit: int | None) -> Table:
    import pyarrow.parquet as pq

    try:
        frame = pq.read_table(path).to_pandas()
    except Exception as e:  # pyarrow raises several unrelated types
        raise DataError(f"{path}: cannot read as Parquet: {e}") from None
    if limit:
        frame = frame.iloc[:limit]
    if len(frame) == 0:
        raise DataError(f"{path}: the file has no rows")
    return Table({str(c): frame[c].to_numpy() for c in frame.columns}, str(path))


def read_npz(path: Path, limit: int | None) -> Table:
    with path.open("rb") as f:
        magic = f.read(4)
    # np.load falls back to unpickling anything that is not a zip or .npy; check first, so
    # that a stray file is "not .npz" rather than "needs unpickling"
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise DataError(f"{path}: not a .npz archive (a zip of .npy arrays, from np.savez)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise UnsafeFormatError(f"{path}: holds object arrays that need unpickling; "
                                    "refused") from None
        raise DataError(f"{path}: cannot read as .npz: {e}") from None
    except Exception as e:
        raise DataError(f"{path}: cannot read as .npz: {e}") from None
    if not arrays:
        raise DataError(f"{path}: the archive holds no arrays")
    lengths = {k: len(v) if v.ndim else 0 for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"{path}: every array needs the same first dimension (one entry per "
                        f"row); got {lengths}")
    if limit:
        arrays = {k: v[:limit] for k, v in arrays.items()}
    return Table(arrays, str(path))


def read_image_folder(path: Path, limit: int | None) -> Table:
    """``root/<class>/<image>`` → columns ``image`` (file paths) and ``label``."""
    classes = sorted(d for d in path.iterdir() if d.is_dir())
    files: list[str] = []
    labels: list[str] = []
    for d in classes:
        for f in sorted(d.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(str(f))
                labels.append(d.name)
    loose = [f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        hint = " (images must sit in one sub-folder per class)" if loose else ""
        raise DataError(f"{path}: no images found{hint}")
    if limit:
        files, labels = files[:limit], labels[:limit]
    return Table({"image": np.array(files, dtype=object),
                  "label": np.array(labels, dtype=object)}, str(path))
