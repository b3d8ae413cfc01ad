"""Bounded-memory readers: a source's rows as Tables of at most ``rows`` rows each.

Parquet is read record batch by record batch (only the columns the features use), JSON
Lines and CSV line by line, an image folder by its file list. Every Table remembers its
file and the row (or line) of each of its rows, so a bad value deep in one shard of a
sharded source is reported as ``shard-07.parquet, row 1234, column 'x': …``.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from layerwise.data import sources
from layerwise.data.sources import BadRows
from layerwise.data.table import Table
from layerwise.errors import DataError

STREAMED = ("parquet", "jsonl", "csv", "images")


def source_files(path: str, fmt: str | None, looked_in: Sequence[str] = ()
                 ) -> tuple[str, list[Path]]:
    """The format and files of a source: one file, a glob or folder of shards, or an image
    folder (one entry: the folder)."""
    p = Path(path)
    files = sources.shard_files(p, fmt, looked_in)
    if files is None:
        if not p.exists():
            raise DataError(sources.not_found(p, looked_in))
        sources.refuse_pickle(p)
        files = [p]
    kind = fmt or sources.infer_format(files[0], None)
    if kind not in STREAMED:
        raise DataError(f"{path}: {kind} files are read whole; to stream data larger than "
                        "memory, write it as Parquet or JSON Lines shards, or raise "
                        "data.memory_budget")
    if kind == "images" and not files[0].is_dir():
        raise DataError(f"{files[0]}: format images reads a folder (one sub-folder per "
                        "class), not a file")
    return kind, files


def stats(files: list[Path]) -> list[list[object]]:
    """Path, size and modification time of each file (of each image, for a folder): what
    tells a cached encoding that its source has not changed."""
    out: list[list[object]] = []
    for f in files:
        for g in (sorted(q for q in f.rglob("*") if q.is_file()) if f.is_dir() else [f]):
            st = g.stat()
            out.append([str(g), st.st_size, st.st_mtime_ns])
    return out


def count_rows(kind: str, files: list[Path]) -> int:
    """The number of rows, cheaply: Parquet metadata, newline counts, or the file list
    (an upper bound where blank lines or bad rows will be dropped)."""
    if kind == "images":
        return sum(len(sources.read_image_folder(f, None)) for f in files)
    if kind == "parquet":
        import pyarrow.parquet as pq

        total = 0
        for f in files:
            try:
                total += pq.ParquetFile(f).metadata.num_rows
            except Exception as e:  # pyarrow raises several unrelated types
                raise DataError(f"{f}: cannot read as Parquet: {e}") from None
        return total
    total = 0
    for f in files:
        with f.open("rb") as fh:
            lines = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
        total += lines - (1 if kind == "csv" else 0)
    return max(total, 0)


def iter_chunks(kind: str, files: list[Path], rows: int, bad: BadRows,
                columns: Sequence[str] | None = None, delimiter: str = ",") -> Iterator[Table]:
    """The rows of every file in order, ``rows`` at a time (bad rows go through ``bad``)."""
    for f in files:
        if f.is_file() and f.stat().st_size == 0:
            raise DataError(f"{f}: the file is empty")
        if kind == "parquet":
            yield from _parquet(f, rows, columns)
        elif kind == "jsonl":
            yield from _jsonl(f, rows, bad, columns)
        elif kind == "csv":
            yield from _csv(f, rows, bad, delimiter)
        else:
            table = sources.read_image_folder(f, None)
            for lo in range(0, len(table), rows):
                yield table.take(np.arange(lo, min(len(table), lo + rows)))


def _parquet(path: Path, rows: int, columns: Sequence[str] | None) -> Iterator[Table]:
    import pyarrow.parquet as pq

    done = 0
    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        cols = [c for c in columns if c in names] if columns is not None else None
        for batch in pf.iter_batches(batch_size=rows, columns=cols, use_threads=False):
            frame = batch.to_pandas()
            table = Table({str(c): frame[c].to_numpy() for c in frame.columns}, str(path),
                          np.arange(done + 1, done + len(frame) + 1))
            done += len(frame)
            yield table
    except DataError:
        raise
    except Exception as e:  # pyarrow raises several unrelated types
        raise DataError(f"{path}, row {done + 1}: cannot read as Parquet: {e}") from None


def _records(records: list[dict[str, object]], lines: list[int], path: Path,
             columns: Sequence[str] | None) -> Table:
    keys: list[str] = list(columns) if columns is not None else []
    if columns is None:
        for r in records:
            keys.extend(k for k in r if k not in keys)
    cols = {k: np.array([r.get(k) for r in records], dtype=object) for k in keys}
    return Table(cols, str(path), np.array(lines), unit="line")


def _jsonl(path: Path, rows: int, bad: BadRows, columns: Sequence[str] | None
           ) -> Iterator[Table]:
    records: list[dict[str, object]] = []
    lines: list[int] = []
    seen: set[str] = set()
    with path.open("rb") as f:
        for no, obj in sources._jsonl_records(f, path, bad):
            records.append(obj)
            lines.append(no)
            seen.update(obj)
            if len(records) >= rows:
                yield _records(records, lines, path, columns)
                records, lines = [], []
    if records:
        yield _records(records, lines, path, columns)
    missing = [c for c in columns or () if c not in seen]
    if missing:
        raise DataError(f"{path}: missing column {missing[0]!r} (no record has it)")


def _csv(path: Path, rows: int, bad: BadRows, delimiter: str) -> Iterator[Table]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    if path.suffix.lower() == ".tsv" and delimiter == ",":
        delimiter = "\t"
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter, strict=True)
        header = [h.strip() for h in next(reader, [])]
        if not any(header):
            raise DataError(f"{path}, line 1: the header row is empty")
        chunk: list[list[str]] = []
        lines: list[int] = []
        for line, row in sources._csv_rows(reader, header, path, bad):
            chunk.append(row)
            lines.append(line)
            if len(chunk) >= rows:
                yield _rows_table(chunk, lines, header, path)
                chunk, lines = [], []
        if chunk:
            yield _rows_table(chunk, lines, header, path)


def _rows_table(rows: list[list[str]], lines: list[int], header: list[str], path: Path
                ) -> Table:
    cols = {h: np.array([r[j] for r in rows], dtype=object) for j, h in enumerate(header)}
    return Table(cols, str(path), np.array(lines), unit="line")


def cache_root(given: str | None) -> Path:
    """Where encoded shards live: ``data.stream.cache``, else ``streams/`` under the
    machine's layerwise cache (``$LAYERWISE_CACHE``, else ``~/.cache/layerwise``)."""
    from layerwise.files import cache_root as machine_cache

    return Path(given).expanduser() if given else machine_cache() / "streams"
