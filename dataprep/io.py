"""Reading records from every supported format in bounded batches, and writing them atomically.

Readers yield :class:`Batch` objects: the records plus where each came from (``file:line``), so every stage
can name the line of a bad row. Malformed input raises :class:`InputError` (one line, file and line named) or,
with ``on_error="reject"``, is handed to ``on_bad`` and reading goes on where that is possible.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import errno
import gzip
import io
import json
import math
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dataprep.errors import InputError
from dataprep.jsonenc import compact_encoder
from dataprep.records import Record
from dataprep.temps import lock_temp, remove_stale_temps

DEFAULT_BATCH_SIZE = 2048
INPUT_FORMATS = ("json", "jsonl", "csv", "tsv", "parquet", "arrow")
STDOUT = "<stdout>"  # how write errors on standard output name it


@dataclass
class Batch:
    """A run of records; ``lines[i]`` is record i's 1-based line in ``source`` (0 when there are no lines).

    ``locs`` replaces both when a batch gathers rows of several places (``split`` emits rows it spooled);
    ``split`` names the split of every row when the input was given as ``NAME=PATH``. ``canonical`` is set by
    the stages that make canonical records (normalize, split) and kept by :meth:`take`, so a stage after them
    in the same process skips re-checking rows it knows are well formed; rows read from outside never have it.
    ``encoded`` holds each record's JSON line (as :func:`dumps` gives it) once something has made them (normalize
    for alpaca rows, split, or the cache file of ``dataprep run`` that stores the batch first), so the writers after
    it do not encode the rows again; see :func:`json_lines`. Whoever replaces a batch's records makes a new batch,
    which has none.
    A batch that ``split`` emits holds :class:`LazyRecords`: read its records freely, but do not append to them.
    """

    source: str
    records: list[Record] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    locs: list[str] | None = None
    split: str | None = None
    canonical: bool = False
    encoded: list[str] | None = None

    def location(self, i: int) -> str:
        if self.locs is not None:
            return self.locs[i]
        line = self.lines[i]
        return f"{self.source}:{line}" if line else f"{self.source}[{self.indexes[i]}]"

    def take(self, positions: list[int], records: list[Record] | None = None) -> Batch:
        """The rows at ``positions`` (or ``records`` standing in for them, one per position), keeping where each
        came from, so a later stage still names the input line of a row it rejects."""
        # new records (a stage's output) have no JSON yet; the same records keep theirs
        encoded = [self.encoded[i] for i in positions] if self.encoded is not None and records is None else None
        rows: Sequence[Record]
        if records is not None:
            rows = records
        elif isinstance(self.records, LazyRecords) and not self.records.parsed and encoded is not None:
            rows = LazyRecords(encoded)
        else:
            rows = [self.records[i] for i in positions]
        if self.locs is not None:
            return Batch(self.source, rows, locs=[self.locs[i] for i in positions], split=self.split,
                         canonical=self.canonical, encoded=encoded)
        return Batch(self.source, rows, [self.lines[i] for i in positions], [self.indexes[i] for i in positions],
                     split=self.split, canonical=self.canonical, encoded=encoded)

    def __len__(self) -> int:
        return len(self.records)


class LazyRecords(Sequence[Record]):
    """Records known by their JSON lines (as :func:`dumps` wrote them), decoded only when first looked at.

    Rows that only pass through to a writer of JSON lines (``split``'s output on its way to a JSONL file or the
    run's cache) are then never decoded at all; the batch holding them carries the same lines as ``encoded``.
    """

    __slots__ = ("lines", "_rows")

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self._rows: list[Record] | None = None

    @property
    def parsed(self) -> bool:
        return self._rows is not None

    def _all(self) -> list[Record]:
        if self._rows is None:
            self._rows = [json.loads(line) for line in self.lines]
        return self._rows

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, i: Any) -> Any:
        return self._all()[i]

    def __iter__(self) -> Iterator[Record]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        return list(self._all()) == list(other) if isinstance(other, Sequence) else NotImplemented

    __hash__ = None  # type: ignore[assignment]


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

# on_bad(location, reason, detail, raw_text) is called for each unreadable record when on_error="reject".
BadRecordHandler = Callable[[str, str, str, str], None]


def display_name(path: str) -> str:
    return "<stdin>" if path == "-" else path


def first_row(path: str, fmt: str | None = None, limit: int = 1 << 20) -> dict[str, Any] | None:
    """The first record of a JSON or JSONL file, from its first ``limit`` bytes: a look at the rows' format
    without reading the file. None where those bytes do not hold a whole first record, or for other formats."""
    with open(path, "rb") as f:
        head = f.read(limit)
    kind = fmt or detect_format(path, head)
    text = head.removeprefix(codecs.BOM_UTF8).decode("utf-8", errors="ignore")
    decoder = json.JSONDecoder()
    pos = _WHITESPACE.match(text).end()  # type: ignore[union-attr]
    try:
        if kind == "jsonl":
            value = decoder.raw_decode(text, pos)[0]
        elif kind == "json" and text[pos:pos + 1] == "[":
            value = decoder.raw_decode(text, _WHITESPACE.match(text, pos + 1).end())[0]  # type: ignore[union-attr]
        elif kind == "json":
            value = decoder.raw_decode(text, pos)[0]
        else:
            return None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


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


def stdin_bytes() -> IO[bytes]:
    """The binary standard input, or InputError when the process was started with it closed (``<&-``)."""
    if sys.stdin is None:
        raise InputError("<stdin>", "standard input is closed", hint="give a file path instead of -")
    return sys.stdin.buffer


def open_local(path: str) -> IO[bytes]:
    """A local file opened for binary reading; InputError naming the path when it cannot be."""
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, not a dataset saved with save_to_disk") from None
    except OSError as exc:
        raise InputError(path, f"cannot open: {exc.strerror}") from None


def _open_bytes(path: str) -> IO[bytes]:
    if path == "-":
        return stdin_bytes()
    raw = open_local(path)
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    return raw


def _decode(data: bytes, source: str, line: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}:{line}", f"invalid UTF-8 at byte {exc.start}") from None


# --- one record's JSON: strict where Python's json module is lenient ------------------------------------------------


class BadValue(ValueError):
    """A record that parses as Python's JSON but cannot be carried on exactly; ``reason`` is its reject reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise BadValue("duplicate_key", f"duplicate key {key!r} in one object (which value is meant is unknowable)")
    return record


def _constant(name: str) -> Any:
    raise BadValue("non_finite_number", f"{name} is not a JSON number (RFC 8259); no strict reader accepts it")


# Python's json accepts NaN/Infinity and keeps the last of duplicate keys; both would be carried on silently
# (and NaN written back out as non-JSON). The hooks cost about 10% of decoding time.
_STRICT = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant)
_LENIENT = json.JSONDecoder()  # only to find where a rejected array element ends
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_WHITESPACE = re.compile(r"[ \t\r\n]*")  # JSON's whitespace


def _check_unicode(value: Any, text: str) -> None:
    """A ``\ud800`` escape decodes to a lone surrogate, which no UTF-8 writer can encode: refuse it here.

    Escapes only: raw UTF-8 cannot hold a surrogate, so lines without one skip the (slower) full check.
    """
    if _SURROGATE_ESCAPE.search(text) is None:
        return
    try:
        _ENCODER.encode(value).encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start:exc.end]
        raise BadValue("invalid_unicode", f"lone surrogate {bad.encode('unicode_escape').decode()} in a string "
                                          "(not a character; cannot be written as UTF-8)") from None


def _too_deep() -> BadValue:
    return BadValue("too_deeply_nested", f"nested too deeply to read (the limit is about {sys.getrecursionlimit():,} levels)")


def parse_record_text(text: str) -> Any:
    """One JSON value, strictly: raises json.JSONDecodeError, or BadValue for what json accepts but must not be
    carried on (duplicate keys, NaN/Infinity, lone surrogates, nesting deeper than Python can hold)."""
    try:
        try:  # the usual line, one value and nothing around it: skip decode()'s whitespace checks
            value, end = _STRICT.raw_decode(text)
        except json.JSONDecodeError:
            end = -1
        if end != len(text):  # anything else (or an error): decode() itself, for its exact result and message
            value = _STRICT.decode(text)
        _check_unicode(value, text)
    except RecursionError:
        raise _too_deep() from None
    return value


def _check_object(value: Any, location: str, on_bad: BadRecordHandler | None, raw: str) -> bool:
    if isinstance(value, dict):
        return True
    message = f"expected a JSON object, got {type(value).__name__}"
    if on_bad is None:
        raise InputError(location, message)
    on_bad(location, "not_an_object", message, raw)
    return False


def _bad(on_bad: BadRecordHandler | None, location: str, reason: str, detail: str, raw: str) -> None:
    """Hand one unreadable record to ``on_bad``, or stop the run with it."""
    if on_bad is None:
        raise InputError(location, detail)
    on_bad(location, reason, detail, raw)


def _read_jsonl(stream: IO[bytes], source: str, batch_size: int, on_bad: BadRecordHandler | None,
                first_line: int = 1) -> Iterator[Batch]:
    """``first_line``: the number of the stream's first line (a shard of a file starts mid-file)."""
    batch = Batch(source)
    index = 0
    for line_no, raw in enumerate(stream, start=first_line):
        if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        if not raw.strip():
            continue
        location = f"{source}:{line_no}"
        try:
            text = _decode(raw, source, line_no).rstrip("\r\n")
            value = parse_record_text(text)
        except InputError as exc:
            if on_bad is None:
                raise
            on_bad(location, "invalid_utf8", exc.message, raw.decode("utf-8", "replace").rstrip("\n"))
            continue
        except json.JSONDecodeError as exc:
            _bad(on_bad, location, "malformed_json", f"malformed JSON at column {exc.colno}: {exc.msg}", text)
            continue
        except BadValue as exc:
            _bad(on_bad, location, exc.reason, exc.detail, text)
            continue
        if not _check_object(value, location, on_bad, text):
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


def _raw_decode(text: str, pos: int, source: str, line: int, escapes: bool = True) -> tuple[Any, int]:
    """One array element from ``pos``: (value, end), or (BadValue, end) for an element that must be rejected.
    ``escapes=False``: the caller knows the text holds no surrogate escape, so the element is not searched."""
    try:
        value, end = _STRICT.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}:{exc.lineno}", f"malformed JSON at column {exc.colno}: {exc.msg}") from None
    except RecursionError:  # no way to find where this element ends, so the whole file stops here
        raise InputError(f"{source}:{line}", _too_deep().detail) from None
    except BadValue as exc:
        _, end = _LENIENT.raw_decode(text, pos)
        return exc, end
    if escapes:
        try:
            _check_unicode(value, text[pos:end])
        except BadValue as exc:
            return exc, end
    return value, end


def _read_json_array(stream: IO[bytes], source: str, batch_size: int, on_bad: BadRecordHandler | None) -> Iterator[Batch]:
    data = stream.read()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{source}:{line}", f"invalid UTF-8 at byte {exc.start}") from None
    counted = [0, 1]  # the line of position counted[0]; records are read in order, so each newline is counted once

    def line_of(pos: int) -> int:
        at, line = counted
        if pos < at:
            return text.count("\n", 0, pos) + 1
        counted[:] = [pos, line + text.count("\n", at, pos)]
        return counted[1]

    ws = " \t\r\n"
    pos = len(text) - len(text.lstrip(ws))
    if pos == len(text):
        return
    if text[pos] == "{":  # a single object is a one-record file
        value, end = _raw_decode(text, pos, source, line_of(pos))
        if text[end:].strip():
            raise InputError(f"{source}:{line_of(len(text) - len(text[end:].lstrip()))}", "extra data after the JSON object (is this JSONL? name it .jsonl)")
        if isinstance(value, BadValue):
            _bad(on_bad, f"{source}:{line_of(pos)}", value.reason, value.detail, text[pos:end])
            return
        yield Batch(source, [value], [line_of(pos)], [0])
        return
    if text[pos] != "[":
        raise InputError(f"{source}:{line_of(pos)}", "expected a JSON array of records")
    pos += 1
    batch = Batch(source)
    index = 0
    escapes = _SURROGATE_ESCAPE.search(text) is not None  # one search of the file instead of one per record
    scan, skip = _STRICT.scan_once, _WHITESPACE.match
    while True:
        pos = skip(text, pos).end()  # type: ignore[union-attr]
        if pos < len(text) and text[pos] == "]":
            pos += 1
            break
        line = line_of(pos)
        if escapes:
            value, end = _raw_decode(text, pos, source, line)
        else:
            try:  # the decoder's scanner itself: raw_decode's wrapper costs more than it does on a small record
                value, end = scan(text, pos)
            except (StopIteration, ValueError, RecursionError):  # the slow path raises or rejects it exactly
                value, end = _raw_decode(text, pos, source, line, escapes=False)
        if isinstance(value, BadValue):
            _bad(on_bad, f"{source}:{line}", value.reason, value.detail, text[pos:end])
        elif isinstance(value, dict) or _check_object(value, f"{source}:{line}", on_bad, text[pos:end]):
            batch.records.append(value)
            batch.lines.append(line)
            batch.indexes.append(index)
            if len(batch) >= batch_size:
                yield batch
                batch = Batch(source)
        index += 1
        pos = skip(text, end).end()  # type: ignore[union-attr]
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


# CSV fields may be long (a whole response); the csv module's default cap is 128 KiB per field.
CSV_FIELD_LIMIT = 1 << 30


def _read_delimited(stream: IO[bytes], source: str, batch_size: int, delimiter: str,
                    on_bad: BadRecordHandler | None = None) -> Iterator[Batch]:
    """CSV/TSV rows as records of strings. A row with the wrong number of fields goes to ``on_bad`` (reason
    ``malformed_csv``/``malformed_tsv``) when given; undecodable bytes stop the whole file (no resync point)."""
    kind = "TSV" if delimiter == "\t" else "CSV"
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
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
                _bad(on_bad, f"{source}:{line}", f"malformed_{kind.lower()}",
                     f"expected {len(header)} columns, got {len(row)}", delimiter.join(row))
                continue
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
        raise InputError(f"{source}:{reader.line_num}", f"malformed {kind}: {exc}") from None


# --- columnar inputs: Parquet files and save_to_disk folders -------------------------------------------------------


def _decode_meta(record: Record) -> Record:
    """Drop nulls; turn ``meta`` back into an object when it holds JSON object text (the Parquet sink wrote it so).

    Text that is not a strict JSON object (``{not json``, ``{"x": NaN}``) stays text: the reader cannot tell
    a damaged canonical file from a foreign column named meta, so it loses nothing and leaves the verdict to
    the stages (meta must be an object in a canonical record).
    """
    meta = record.get("meta")
    if isinstance(meta, str) and meta.startswith("{"):
        with contextlib.suppress(ValueError):  # JSONDecodeError and BadValue are ValueErrors
            record["meta"] = parse_record_text(meta)
    return {k: v for k, v in record.items() if v is not None}


def _has_float(arrow_type: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_floating(arrow_type):
        return True
    if pa.types.is_struct(arrow_type):
        return any(_has_float(arrow_type.field(i).type) for i in range(arrow_type.num_fields))
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type):
        return _has_float(arrow_type.value_type)
    if pa.types.is_map(arrow_type):
        return _has_float(arrow_type.key_type) or _has_float(arrow_type.item_type)
    return False


def _non_finite(value: Any) -> str | None:
    """The first NaN/Infinity inside ``value`` as text, else None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return next((found for v in value.values() if (found := _non_finite(v)) is not None), None)
    if isinstance(value, (list, tuple)):
        return next((found for v in value if (found := _non_finite(v)) is not None), None)
    return None


def _as_text(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _as_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_text(v) for v in value]
    return value


def _arrow_batches(batches: Iterator[Any], source: str, on_bad: BadRecordHandler | None,
                   first_index: int = 0) -> Iterator[Batch]:
    """Records of Arrow record batches; rows holding NaN/Infinity floats are rejected (``non_finite_number``),
    since JSON cannot carry them. Only columns of a floating type are looked at. ``first_index``: the index of
    the first row (a shard of a file starts at a row group)."""
    index = first_index
    for rb in batches:
        float_columns = [f.name for f in rb.schema if _has_float(f.type)]
        rows = rb.to_pylist()
        if not float_columns:  # the usual case: nothing to look at row by row
            yield Batch(source, [_decode_meta(r) for r in rows], [0] * len(rows), list(range(index, index + len(rows))))
            index += len(rows)
            continue
        out = Batch(source)
        for row in rows:
            found = next((f"{c}: {v}" for c in float_columns if (v := _non_finite(row.get(c))) is not None), None)
            if found is not None:
                _bad(on_bad, f"{source}[{index}]", "non_finite_number",
                     f"{found} is not a JSON number (RFC 8259)", _ENCODER.encode(_as_text(row)))
            else:
                out.records.append(_decode_meta(row))
                out.lines.append(0)
                out.indexes.append(index)
            index += 1
        if out.records:
            yield out


def _read_parquet(path: str, source: str, batch_size: int, on_bad: BadRecordHandler | None = None) -> Iterator[Batch]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path if path != "-" else io.BytesIO(stdin_bytes().read()))
    except InputError:
        raise
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InputError(source, f"not a readable Parquet file: {exc}") from None
    try:
        yield from _arrow_batches(parquet.iter_batches(batch_size=batch_size), source, on_bad)
    except (OSError, ValueError) as exc:  # ArrowInvalid and ArrowIOError are among these
        raise InputError(source, f"not a readable Parquet file: {exc}") from None


def _saved_parts(root: Path) -> list[tuple[Path, str | None, list[str]]]:
    """(folder, split name, Arrow file names) of a save_to_disk folder; InputError naming it if it is damaged."""

    def load(path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(str(root), f"damaged saved dataset: {path.relative_to(root)} is missing") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(str(root), f"damaged saved dataset: {path.relative_to(root)}: {exc}") from None

    if (root / "dataset_dict.json").exists():
        splits = load(root / "dataset_dict.json")
        names = splits.get("splits") if isinstance(splits, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError(str(root), "damaged saved dataset: dataset_dict.json has no list of splits")
        folders = [(root / name, name) for name in names]
    elif (root / "state.json").exists():
        folders = [(root, None)]
    else:
        raise InputError(str(root), "directory is not a dataset saved with save_to_disk (no state.json)")
    parts = []
    for folder, split in folders:
        state = load(folder / "state.json")
        files = state.get("_data_files") if isinstance(state, dict) else None
        if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("filename"), str)
                                                  for f in files):
            raise InputError(str(root), f"damaged saved dataset: {(folder / 'state.json').relative_to(root)} "
                                        "lists no data files")
        parts.append((folder, split, [f["filename"] for f in files]))
    return parts


def _read_saved_dataset(path: str, batch_size: int, on_bad: BadRecordHandler | None = None) -> Iterator[Batch]:
    """Read a ``save_to_disk`` directory with pyarrow alone (no ``datasets`` import on the data path).

    A DatasetDict directory yields every split, and each record gets that split's name as ``split``. A damaged
    folder (unparsable state.json, a missing or garbage .arrow file) is an InputError naming the folder.
    """
    import pyarrow as pa

    root = Path(path)
    for folder, split, files in _saved_parts(root):
        source = str(folder)

        def record_batches(folder: Path = folder, files: list[str] = files) -> Iterator[Any]:
            for name in files:
                where = (folder / name).relative_to(root)
                if not (folder / name).is_file():
                    raise InputError(str(root), f"damaged saved dataset: {where} is missing")
                try:
                    with pa.memory_map(str(folder / name)) as mm:
                        for rb in pa.ipc.open_stream(mm):
                            for start in range(0, rb.num_rows, batch_size):
                                yield rb.slice(start, batch_size)
                except (OSError, ValueError) as exc:  # ArrowInvalid for garbage bytes
                    raise InputError(str(root), f"damaged saved dataset: {where} is not Arrow stream data ({exc})") from None

        for batch in _arrow_batches(record_batches(), source, on_bad):
            if split is not None:
                for r in batch.records:
                    r.setdefault("split", split)
            yield batch


def read_batches(
    path: str,
    *,
    fmt: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_bad: BadRecordHandler | None = None,
    stream: IO[bytes] | None = None,
) -> Iterator[Batch]:
    """Yield batches of records from ``path`` (``-`` is stdin) in any supported format; ``stream``: the bytes of
    ``path`` already open (stdin being hashed as it is read), left open.

    ``on_bad`` set: unreadable records are passed to it and skipped, instead of raising InputError: malformed
    JSON lines, invalid UTF-8 lines, non-objects, duplicate keys, NaN/Infinity, lone surrogates, nesting too
    deep to read (JSONL), ragged CSV/TSV rows, Parquet/Arrow rows with NaN floats. Whole-file problems (not
    UTF-8 in a JSON array, a truncated array, a damaged Parquet file or dataset folder) always raise.
    """
    source = display_name(path)
    fmt = fmt or (detect_format(path) if path != "-" else None)
    if fmt == "arrow":
        yield from _read_saved_dataset(path, batch_size, on_bad)
        return
    if fmt == "parquet":
        yield from _read_parquet(path, source, batch_size, on_bad)
        return
    owned = path != "-" and stream is None
    stream = stream if stream is not None else _open_bytes(path)
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
                yield from _read_delimited(stream, source, batch_size, "," if fmt == "csv" else "\t", on_bad)
            else:
                raise InputError(source, f"unknown input format {fmt!r}; use one of {', '.join(INPUT_FORMATS)}")
        except (gzip.BadGzipFile, EOFError, OSError) as exc:
            raise InputError(source, f"cannot read: {exc}") from None
    finally:
        if owned:
            stream.close()


def read_records(path: str, **kwargs: Any) -> list[Record]:
    """All records of a file as a list: convenient in Python and tests, not for large inputs."""
    return [r for batch in read_batches(path, **kwargs) for r in batch.records]


def dumps(record: Record) -> str:
    """The one JSON line format of every stage: canonical key order is the caller's, UTF-8 kept as is.

    One encoder built once: json.dumps with options builds a new encoder per call, a cost paid per row.
    NaN and Infinity raise ValueError instead of becoming non-JSON text; the readers reject rows holding them
    (``non_finite_number``), so only a stage's own arithmetic can trip this.
    """
    return _dumps(record)


_dumps = compact_encoder()


def json_lines(rows: Batch | Sequence[Record]) -> list[str]:
    """Each row's JSON line (no newline): the ones a batch carries, else :func:`dumps` of each record."""
    if isinstance(rows, Batch):
        if rows.encoded is not None:
            return rows.encoded
        rows = rows.records
    return [dumps(r) for r in rows]


def named_os_error(exc: OSError, path: str | os.PathLike[str]) -> OSError:
    """The same error, naming ``path``: a write to a temp descriptor fails without saying which output it was."""
    return OSError(exc.errno, exc.strerror, str(path))


class _TargetWriter(io.BufferedWriter):
    """A buffered temp file whose write errors (a full disk, a file-size limit) name the target path."""

    target = ""

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except OSError as exc:
            raise named_os_error(exc, self.target) from None

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as exc:
            raise named_os_error(exc, self.target) from None


def name_stdout_errors() -> None:
    """Make write errors on standard output name ``<stdout>`` (a full disk behind ``> file``), like files do."""
    out = sys.stdout
    if out is None or not isinstance(out, io.TextIOWrapper) or isinstance(out.buffer, _TargetWriter):
        return
    try:
        fd = out.fileno()
    except (OSError, ValueError):
        return
    out.flush()
    buffer = _TargetWriter(io.FileIO(fd, "w", closefd=False))
    buffer.target = STDOUT
    sys.stdout = io.TextIOWrapper(buffer, encoding=out.encoding, errors=out.errors, line_buffering=out.line_buffering)


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def _new_file_mode(path: Path) -> int:
    """What a plain ``open(path, "w")`` would give: an existing file keeps its permission bits (as the shell's
    ``>`` does), a new one gets 0666 minus the umask. mkstemp alone makes every output 0600."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


class AtomicFile:
    """A file that appears at ``path`` only when closed without error: temp file + rename in the same folder.

    The temp (``.NAME.XXXXXXXX.tmp``) is locked by this process for its whole life, and temps of ``path`` that
    a killed run left behind are removed first (:mod:`dataprep.temps`). Any failure, including one in the final
    flush, fsync or rename, removes the temp. OSErrors name ``path``, never the temp.
    """

    def __init__(self, path: str | os.PathLike[str], mode: str = "w") -> None:
        self.path = Path(path)
        encoding = "utf-8" if "b" not in mode else None
        self.tmp: str | None = None
        if self.path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder; give the path of a file to write", str(self.path))
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
            # /dev/null, /dev/stdout, a FIFO or a link: renaming over it would replace the node itself (as root,
            # for the whole machine), so write through it instead, without atomicity.
            try:
                self.handle: IO[Any] = open(self.path, mode, encoding=encoding)  # noqa: SIM115 - closed in commit/abort
            except OSError as exc:
                raise named_os_error(exc, self.path) from None
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.path, "file")
            fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        except OSError as exc:
            raise named_os_error(exc, self.path) from None
        try:
            lock_temp(fd)
            os.fchmod(fd, _new_file_mode(self.path))
            raw = _TargetWriter(io.FileIO(fd, "w"))
        except OSError as exc:
            os.close(fd)
            os.unlink(self.tmp)
            raise named_os_error(exc, self.path) from None
        raw.target = str(self.path)
        self.handle = raw if encoding is None else io.TextIOWrapper(raw, encoding=encoding)

    def commit(self) -> None:
        """Flush, fsync and rename into place while still holding the temp's lock; on any failure, abort."""
        try:
            self.handle.flush()
            if self.tmp is None:
                self.handle.close()
                return
            os.fsync(self.handle.fileno())
            os.replace(self.tmp, self.path)
            self.tmp = None
            self.handle.close()
        except OSError as exc:
            self.abort()
            raise named_os_error(exc, self.path) from None
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Remove the temp, then close: a close that fails (its flush hits the full disk again) cannot keep it."""
        if self.tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
            self.tmp = None
        with contextlib.suppress(OSError, ValueError):
            self.handle.close()

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
