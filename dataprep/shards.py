"""Cutting inputs into shards that many workers read at once, each with the project's own readers.

A cluster run (:mod:`dataprep.cluster`) cannot hand one big file to one reader. The driver lists and sorts the
inputs and plans **shards**: a JSONL file by byte ranges that start and end on line boundaries, a Parquet file by
row group, anything else (a JSON array, CSV/TSV, a gzip file, a ``save_to_disk`` folder) as one shard, since no
reader can start in its middle. A shard is read by the same functions as a whole file (:mod:`dataprep.io`), told
where it starts: the first line's number (JSONL) or the first row's index (Parquet). Types, ``file:line``
locations, reject reasons and error messages are therefore those of the single-machine path, row for row.

The plan depends only on the files and ``shard_bytes`` (a setting, never the cluster's size), so the shards, and
every name derived from them (output parts), are the same on one machine and on a hundred.

Paths are local paths or URIs that ``pyarrow.fs`` understands (``s3://``, ``gs://``, ``hdfs://``, ``file://``);
the location of a row read from a URI names the URI.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from dataprep.errors import InputError
from dataprep.io import (
    DEFAULT_BATCH_SIZE,
    BadRecordHandler,
    Batch,
    _arrow_batches,
    _read_delimited,
    _read_json_array,
    _read_jsonl,
    detect_format,
    open_local,
    read_batches,
)

SHARD_BYTES = 64 << 20  # JSONL bytes per shard: a worker holds one shard's rows at a time
SCAN_CHUNK = 1 << 20  # bytes read at a time when looking for a line end or counting lines


def is_uri(path: str) -> bool:
    return "://" in path


def filesystem(path: str) -> tuple[Any, str]:
    """``(pyarrow FileSystem, path inside it)`` for a URI or a local path."""
    import pyarrow.fs as pafs

    if is_uri(path):
        try:
            return pafs.FileSystem.from_uri(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError... for an unknown scheme or bucket
            raise InputError(path, f"cannot open: {exc}") from None
    return pafs.LocalFileSystem(), str(Path(path).absolute())


def _open(path: str) -> IO[bytes]:
    """A seekable binary file for a local path or a URI; InputError when it is not there."""
    if not is_uri(path):
        return open_local(path)
    fs, inner = filesystem(path)
    try:
        return fs.open_input_file(inner)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except OSError as exc:
        raise InputError(path, f"cannot open: {exc}") from None


def file_size(path: str) -> int:
    fs, inner = filesystem(path)
    import pyarrow.fs as pafs

    info = fs.get_file_info(inner)
    if info.type == pafs.FileType.NotFound:
        raise InputError(path, "no such file")
    return int(info.size or 0)


def hash_file(path: str) -> tuple[str, int]:
    """sha256 and size of a file's bytes (the cache key and the manifest name inputs by content)."""
    digest = hashlib.sha256()
    size = 0
    with _open(path) as f:
        while chunk := f.read(SCAN_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


@dataclass(frozen=True)
class Shard:
    """One piece of one input: bytes ``start..end`` of a JSONL file, a Parquet row group, or a whole file.

    ``source`` numbers the input (the recipe's order), ``index`` the shard within it (file order), so
    ``(source, index)`` orders shards the way a single reader meets their rows. ``first_line`` is the 1-based
    line ``start`` falls on (JSONL), ``first_row`` the index of the row group's first row (Parquet).
    """

    source: int
    index: int
    path: str
    fmt: str
    start: int = 0
    end: int = -1
    first_line: int = 1
    row_group: int = -1
    first_row: int = 0
    split: str | None = None


def input_format(path: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if is_uri(path):
        return detect_format(path.split("?", 1)[0].rsplit("/", 1)[-1] or "x.jsonl")
    return detect_format(path)


def plan_shards(source: int, path: str, fmt: str | None = None, *, split: str | None = None,
                shard_bytes: int = SHARD_BYTES) -> list[Shard]:
    """The shards of one input, in file order. JSONL shard boundaries sit just after a newline; the line
    numbers they start on are filled in by :func:`number_lines` (the driver counts lines in parallel)."""
    fmt = input_format(path, fmt)
    if fmt == "jsonl" and not path.endswith(".gz"):
        size = file_size(path)
        cuts = [0]
        with _open(path) as f:
            while cuts[-1] + shard_bytes < size:
                cut = _line_end_after(f, cuts[-1] + shard_bytes, size)
                if cut >= size:
                    break
                cuts.append(cut)
        cuts.append(size)
        return [Shard(source, i, path, fmt, cuts[i], cuts[i + 1], split=split) for i in range(len(cuts) - 1)]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with _open(path) as f:
            try:
                meta = pq.ParquetFile(f).metadata
            except Exception as exc:  # pyarrow raises several unrelated types for a bad file
                raise InputError(path, f"not a readable Parquet file: {exc}") from None
        shards, first = [], 0
        for g in range(meta.num_row_groups):
            shards.append(Shard(source, g, path, fmt, row_group=g, first_row=first, split=split))
            first += meta.row_group(g).num_rows
        return shards or [Shard(source, 0, path, fmt, row_group=-1, split=split)]
    if fmt == "arrow" and is_uri(path):
        raise InputError(path, "a save_to_disk folder is read from a local path only",
                         hint="copy it to the machine, or write it as Parquet or JSONL")
    return [Shard(source, 0, path, fmt, split=split)]


def _line_end_after(f: IO[bytes], pos: int, size: int) -> int:
    """The offset just past the first newline at or after ``pos`` (``size`` when there is none)."""
    f.seek(pos)
    while True:
        chunk = f.read(SCAN_CHUNK)
        if not chunk:
            return size
        at = chunk.find(b"\n")
        if at >= 0:
            return pos + at + 1
        pos += len(chunk)


def count_lines(shard: Shard) -> int:
    """Newlines in a JSONL shard's byte range (so the next shard knows its first line's number)."""
    if shard.fmt != "jsonl" or shard.end < 0:
        return 0
    count, left = 0, shard.end - shard.start
    with _open(shard.path) as f:
        f.seek(shard.start)
        while left > 0:
            chunk = f.read(min(SCAN_CHUNK, left))
            if not chunk:
                break
            count += chunk.count(b"\n")
            left -= len(chunk)
    return count


def number_lines(shards: list[Shard], counts: list[int]) -> list[Shard]:
    """The shards of one file with ``first_line`` set from the newline counts of the shards before."""
    from dataclasses import replace

    out, line = [], 1
    for shard, count in zip(shards, counts, strict=True):
        out.append(replace(shard, first_line=line))
        line += count
    return out


def read_shard(shard: Shard, *, batch_size: int = DEFAULT_BATCH_SIZE,
               on_bad: BadRecordHandler | None = None) -> Iterator[Batch]:
    """The records of one shard as batches, exactly as :func:`dataprep.io.read_batches` gives them for the
    same rows of the whole file (locations included); ``batch.split`` is the shard's split."""
    for batch in _read(shard, batch_size, on_bad):
        batch.split = shard.split
        yield batch


def _read(shard: Shard, batch_size: int, on_bad: BadRecordHandler | None) -> Iterator[Batch]:
    source = shard.path
    if shard.fmt == "jsonl" and shard.end >= 0:
        with _open(shard.path) as f:
            f.seek(shard.start)
            data = f.read(shard.end - shard.start)
        try:
            yield from _read_jsonl(io.BytesIO(data), source, batch_size, on_bad, first_line=shard.first_line)
        except OSError as exc:
            raise InputError(source, f"cannot read: {exc}") from None
        return
    if shard.fmt == "parquet" and shard.row_group >= 0:
        import pyarrow.parquet as pq

        with _open(shard.path) as f:
            try:
                parquet = pq.ParquetFile(f)
                batches = parquet.iter_batches(batch_size=batch_size, row_groups=[shard.row_group])
                yield from _arrow_batches(batches, source, on_bad, first_index=shard.first_row)
            except InputError:
                raise
            except (OSError, ValueError) as exc:  # ArrowInvalid and ArrowIOError are among these
                raise InputError(source, f"not a readable Parquet file: {exc}") from None
        return
    if not is_uri(shard.path):  # a whole local file: the reader itself
        yield from read_batches(shard.path, fmt=shard.fmt, batch_size=batch_size, on_bad=on_bad)
        return
    with _open(shard.path) as raw:
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw) if shard.path.endswith(".gz") else raw  # type: ignore[assignment]
        try:
            if shard.fmt == "jsonl":
                yield from _read_jsonl(stream, source, batch_size, on_bad)
            elif shard.fmt == "json":
                yield from _read_json_array(stream, source, batch_size, on_bad)
            elif shard.fmt in ("csv", "tsv"):
                yield from _read_delimited(stream, source, batch_size, "," if shard.fmt == "csv" else "\t", on_bad)
            elif shard.fmt == "parquet":
                yield from _arrow_batches(iter(()), source, on_bad)
            else:
                raise InputError(source, f"unknown input format {shard.fmt!r}")
        except (gzip.BadGzipFile, EOFError, OSError) as exc:
            raise InputError(source, f"cannot read: {exc}") from None
