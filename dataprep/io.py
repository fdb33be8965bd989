"""Reading records from every supported format in bounded batches, and writing them atomically.

Readers yield :class:`Batch` objects: the records plus where each came from (``file:line``), so every stage
can name the line of a bad row. Malformed input raises :class:`InputError` (one line, file and line named) or,
with ``on_error="reject"``, is handed to ``on_bad`` and reading goes on where that is possible.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import gzip
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dataprep.errors import InputError
from dataprep.records import Record

DEFAULT_BATCH_SIZE = 2048
INPUT_FORMATS = ("json", "jsonl", "csv", "tsv", "parquet", "arrow")


@dataclass
class Batch:
    """A run of records; ``lines[i]`` is record i's 1-based line in ``source`` (0 when there are no lines).

    ``locs`` replaces both when a batch gathers rows of several places (``split`` emits rows it spooled);
    ``split`` names the split of every row when the input was given as ``NAME=PATH``.
    """

    source: str
    records: list[Record] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    locs: list[str] | None = None
    split: str | None = None

    def location(self, i: int) -> str:
        if self.locs is not None:
            return self.locs[i]
        line = self.lines[i]
        return f"{self.source}:{line}" if line else f"{self.source}[{self.indexes[i]}]"

    def take(self, positions: list[int], records: list[Record] | None = None) -> Batch:
        """The rows at ``positions`` (or ``records`` standing in for them, one per position), keeping where each
        came from, so a later stage still names the input line of a row it rejects."""
        rows = records if records is not None else [self.records[i] for i in positions]
        if self.locs is not None:
            return Batch(self.source, rows, locs=[self.locs[i] for i in positions], split=self.split)
        return Batch(self.source, rows, [self.lines[i] for i in positions], [self.indexes[i] for i in positions],
                     split=self.split)

    def __len__(self) -> int:
        return len(self.records)


# on_bad(location, reason, detail, raw_text) is called for each unreadable record when on_error="reject".
BadRecordHandler = Callable[[str, str, str, str], None]


def display_name(path: str) -> str:
    return "<stdin>" if path == "-" else path


def detect_format(path: str, head: bytes = b"") -> str:
    """Pick the reader from the file name, or, for stdin and unknown names, from the first byte."""
    p = Path(path)
    if path != "-" and p.is_dir():
        return "arrow"
    name = p.name.lower()
    for suffix in (".gz",):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    for ext, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".csv", "csv"),
                     (".tsv", "tsv"), (".parquet", "parquet")):
        if name.endswith(ext):
            return fmt
    stripped = head.lstrip(codecs.BOM_UTF8).lstrip()
    if stripped.startswith(b"["):
        return "json"
    return "jsonl"


def _open_bytes(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, not a dataset saved with save_to_disk") from None
    except OSError as exc:
        raise InputError(path, f"cannot open: {exc.strerror}") from None
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    return raw


def _decode(data: bytes, source: str, line: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}:{line}", f"invalid UTF-8 at byte {exc.start}") from None


def _check_object(value: Any, location: str, on_bad: BadRecordHandler | None, raw: str) -> bool:
    if isinstance(value, dict):
        return True
    message = f"expected a JSON object, got {type(value).__name__}"
    if on_bad is None:
        raise InputError(location, message)
    on_bad(location, "not_an_object", message, raw)
    return False


def _read_jsonl(stream: IO[bytes], source: str, batch_size: int, on_bad: BadRecordHandler | None) -> Iterator[Batch]:
    batch = Batch(source)
    index = 0
    for line_no, raw in enumerate(stream, start=1):
        if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        if not raw.strip():
            continue
        location = f"{source}:{line_no}"
        try:
            text = _decode(raw, source, line_no).rstrip("\r\n")
            value = json.loads(text)
        except InputError as exc:
            if on_bad is None:
                raise
            on_bad(location, "invalid_utf8", str(exc).split(": ", 1)[-1], raw.decode("utf-8", "replace").rstrip("\n"))
            continue
        except json.JSONDecodeError as exc:
            message = f"malformed JSON at column {exc.colno}: {exc.msg}"
            if on_bad is None:
                raise InputError(location, message) from None
            on_bad(location, "malformed_json", message, text.rstrip("\n"))
            continue
        if not _check_object(value, location, on_bad, text.rstrip("\n")):
            continue
        batch.records.append(value)
        batch.lines.append(line_no)
        batch.indexes.append(index)
        index += 1
        if len(batch) >= batch_size:
            yield batch
            batch = Batch(source)
    if batch.records:
        yield batch


def _read_json_array(stream: IO[bytes], source: str, batch_size: int, on_bad: BadRecordHandler | None) -> Iterator[Batch]:
    data = stream.read()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{source}:{line}", f"invalid UTF-8 at byte {exc.start}") from None
    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_of(pos: int) -> int:
        return bisect.bisect_right(newlines, pos - 1) + 1 if newlines else 1

    decoder = json.JSONDecoder()
    ws = " \t\r\n"
    pos = len(text) - len(text.lstrip(ws))
    if pos == len(text):
        return
    if text[pos] == "{":  # a single object is a one-record file
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source}:{exc.lineno}", f"malformed JSON at column {exc.colno}: {exc.msg}") from None
        if text[end:].strip():
            raise InputError(f"{source}:{line_of(len(text) - len(text[end:].lstrip()))}", "extra data after the JSON object (is this JSONL? name it .jsonl)")
        yield Batch(source, [value], [line_of(pos)], [0])
        return
    if text[pos] != "[":
        raise InputError(f"{source}:{line_of(pos)}", "expected a JSON array of records")
    pos += 1
    batch = Batch(source)
    index = 0
    while True:
        while pos < len(text) and text[pos] in ws:
            pos += 1
        if pos < len(text) and text[pos] == "]":
            pos += 1
            break
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source}:{exc.lineno}", f"malformed JSON at column {exc.colno}: {exc.msg}") from None
        line = line_of(pos)
        if _check_object(value, f"{source}:{line}", on_bad, text[pos:end]):
            batch.records.append(value)
            batch.lines.append(line)
            batch.indexes.append(index)
            if len(batch) >= batch_size:
                yield batch
                batch = Batch(source)
        index += 1
        pos = end
        while pos < len(text) and text[pos] in ws:
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos < len(text) and text[pos] == "]":
            pos += 1
            break
        else:
            where = f"{source}:{line_of(pos)}"
            raise InputError(where, "malformed JSON: expected ',' or ']' after a record")
    if text[pos:].strip():
        raise InputError(f"{source}:{line_of(len(text) - len(text[pos:].lstrip()))}", "extra data after the JSON array")
    if batch.records:
        yield batch


def _read_delimited(stream: IO[bytes], source: str, batch_size: int, delimiter: str) -> Iterator[Batch]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(text, delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader, None)
        if header is None:
            return
        batch = Batch(source)
        index = 0
        start = reader.line_num + 1  # line_num is where a row ends; a quoted field can span lines
        for row in reader:
            line, start = start, reader.line_num + 1
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(f"{source}:{line}", f"expected {len(header)} columns, got {len(row)}")
            batch.records.append(dict(zip(header, row, strict=True)))
            batch.lines.append(line)
            batch.indexes.append(index)
            index += 1
            if len(batch) >= batch_size:
                yield batch
                batch = Batch(source)
        if batch.records:
            yield batch
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}:{reader.line_num + 1}", f"invalid UTF-8 ({exc.reason})") from None
    except csv.Error as exc:
        raise InputError(f"{source}:{reader.line_num}", f"malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {exc}") from None


def _decode_meta(record: Record) -> Record:
    meta = record.get("meta")
    if isinstance(meta, str) and meta.startswith("{"):
        record["meta"] = json.loads(meta)
    return {k: v for k, v in record.items() if v is not None}


def _read_parquet(path: str, source: str, batch_size: int) -> Iterator[Batch]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path if path != "-" else io.BytesIO(sys.stdin.buffer.read()))
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InputError(source, f"not a readable Parquet file: {exc}") from None
    index = 0
    for rb in parquet.iter_batches(batch_size=batch_size):
        rows = [_decode_meta(r) for r in rb.to_pylist()]
        yield Batch(source, rows, [0] * len(rows), list(range(index, index + len(rows))))
        index += len(rows)


def _read_saved_dataset(path: str, batch_size: int) -> Iterator[Batch]:
    """Read a ``save_to_disk`` directory with pyarrow alone (no ``datasets`` import on the data path).

    A DatasetDict directory yields every split, and each record gets that split's name as ``split``.
    """
    import pyarrow as pa

    root = Path(path)
    if (root / "dataset_dict.json").exists():
        splits = json.loads((root / "dataset_dict.json").read_text())["splits"]
        parts = [(root / name, name) for name in splits]
    elif (root / "state.json").exists():
        parts = [(root, None)]
    else:
        raise InputError(path, "directory is not a dataset saved with save_to_disk (no state.json)")
    for folder, split in parts:
        state = json.loads((folder / "state.json").read_text())
        index = 0
        source = str(folder)
        for entry in state["_data_files"]:
            with pa.memory_map(str(folder / entry["filename"])) as mm:
                reader = pa.ipc.open_stream(mm)
                for rb in reader:
                    for start in range(0, rb.num_rows, batch_size):
                        rows = [_decode_meta(r) for r in rb.slice(start, batch_size).to_pylist()]
                        if split is not None:
                            for r in rows:
                                r.setdefault("split", split)
                        yield Batch(source, rows, [0] * len(rows), list(range(index, index + len(rows))))
                        index += len(rows)


def read_batches(
    path: str,
    *,
    fmt: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_bad: BadRecordHandler | None = None,
) -> Iterator[Batch]:
    """Yield batches of records from ``path`` (``-`` is stdin) in any supported format.

    ``on_bad`` set: unreadable records of line-oriented formats are passed to it and skipped, instead of
    raising InputError. Whole-file problems (not UTF-8 in a JSON array, a truncated array) always raise.
    """
    source = display_name(path)
    fmt = fmt or (detect_format(path) if path != "-" else None)
    if fmt == "arrow":
        yield from _read_saved_dataset(path, batch_size)
        return
    if fmt == "parquet":
        yield from _read_parquet(path, source, batch_size)
        return
    stream = _open_bytes(path)
    try:
        if fmt is None:  # stdin: sniff the first byte without losing it
            head = stream.peek(64)[:64] if hasattr(stream, "peek") else b""
            if not head:
                buffered = io.BufferedReader(stream)  # type: ignore[arg-type]
                head, stream = buffered.peek(64)[:64], buffered
            fmt = detect_format("-", head)
        try:
            if fmt == "jsonl":
                yield from _read_jsonl(stream, source, batch_size, on_bad)
            elif fmt == "json":
                yield from _read_json_array(stream, source, batch_size, on_bad)
            elif fmt in ("csv", "tsv"):
                yield from _read_delimited(stream, source, batch_size, "," if fmt == "csv" else "\t")
            else:
                raise InputError(source, f"unknown input format {fmt!r}; use one of {', '.join(INPUT_FORMATS)}")
        except (gzip.BadGzipFile, EOFError, OSError) as exc:
            raise InputError(source, f"cannot read: {exc}") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def read_records(path: str, **kwargs: Any) -> list[Record]:
    """All records of a file as a list: convenient in Python and tests, not for large inputs."""
    return [r for batch in read_batches(path, **kwargs) for r in batch.records]


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(record: Record) -> str:
    """The one JSON line format of every stage: canonical key order is the caller's, UTF-8 kept as is.

    One encoder built once: json.dumps with options builds a new encoder per call, a cost paid per row.
    """
    return _ENCODER.encode(record)


class AtomicFile:
    """A file that appears at ``path`` only when closed without error: temp file + rename in the same folder."""

    def __init__(self, path: str | os.PathLike[str], mode: str = "w") -> None:
        self.path = Path(path)
        encoding = "utf-8" if "b" not in mode else None
        self.tmp: str | None = None
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
            # /dev/null, /dev/stdout, a FIFO or a link: renaming over it would replace the node itself (as root,
            # for the whole machine), so write through it instead, without atomicity.
            self.handle: IO[Any] = open(self.path, mode, encoding=encoding)  # noqa: SIM115 - closed in commit/abort
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self.handle = os.fdopen(fd, mode, encoding=encoding)

    def commit(self) -> None:
        self.handle.flush()
        if self.tmp is None:
            self.handle.close()
            return
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.handle.close()
        if self.tmp is not None and os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
