"""Where a stage's kept records go: one interface (``write(rows)``, ``close(ok)``) for every target.

* :class:`RecordSink`: JSONL on stdout or in a file, gzip-compressed JSONL, or Parquet, written batch by batch
  (memory stays bounded) through a temp file that is renamed into place only on ``close(ok=True)``.
* :class:`SplitFilesSink`: one JSONL file per split (``split --out-dir``), built in a hidden folder and swapped in
  as one unit, so a reader never sees a new ``train.jsonl`` beside an old ``validation.jsonl``.

Parquet needs one schema for the whole file. Canonical fields have fixed types (``meta`` is stored as JSON text and
decoded again by the reader); other fields take the type their values have, unified over all batches at the end,
so a field that first appears late is a column like any other, never silently dropped.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from dataprep.errors import DataprepError
from dataprep.io import AtomicFile, Batch, json_lines
from dataprep.records import Record

SPLIT_FILES = ("train", "validation", "test")


def _records(rows: Batch | Sequence[Record]) -> Sequence[Record]:
    return rows.records if isinstance(rows, Batch) else rows


def _parquet_types() -> dict[str, Any]:
    import pyarrow as pa

    text = pa.string()
    return {
        "id": text, "prefix": text, "prompt": text, "query": text, "response": text,
        "history": pa.list_(pa.list_(text)), "reasoning": pa.list_(text), "tools": text, "roles": pa.list_(text),
        "meta": text, "len_bucket": pa.int64(), "split": text,
        "text": text, "spans": pa.list_(pa.list_(pa.int64())), "inserted": pa.list_(pa.list_(pa.int64())),
    }


class _ParquetStream:
    """Parquet for rows whose columns are known only at the end: each batch is spooled as Arrow IPC with its own
    schema, and at close the schemas are unified and the batches streamed into one Parquet file, one row group
    per batch. Memory holds one batch; a field that appears late, or is null in the first batches, is fine."""

    def __init__(self, handle: IO[bytes], path: str) -> None:
        import tempfile

        self.handle = handle
        self.path = path
        self.spool = tempfile.TemporaryDirectory(prefix="dataprep-parquet-")
        self.parts: list[str] = []

    def write(self, records: Sequence[Record]) -> None:
        import pyarrow as pa

        rows = [
            {**r, "meta": json.dumps(r["meta"], ensure_ascii=False)} if isinstance(r.get("meta"), dict) else r
            for r in records
        ]
        known = _parquet_types()
        names = list(dict.fromkeys(k for r in rows for k in r))
        try:
            columns = [pa.array([r.get(n) for r in rows], type=known.get(n)) for n in names]
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataprepError(f"{self.path}: a column has values of several types: {exc}",
                                hint="write JSONL (-o FILE.jsonl) instead") from None
        table = pa.Table.from_arrays(columns, names=names)
        part = os.path.join(self.spool.name, f"{len(self.parts)}.arrow")
        with pa.OSFile(part, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        self.parts.append(part)

    def close(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            tables = [pa.ipc.open_file(pa.memory_map(part)) for part in self.parts]
            try:
                schema = pa.unify_schemas([t.schema for t in tables], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise DataprepError(f"{self.path}: rows do not fit one Parquet schema: {exc}",
                                    hint="write JSONL (-o FILE.jsonl) instead") from None
            null_free = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in schema])
            with pq.ParquetWriter(self.handle, null_free) as writer:
                for reader in tables:
                    table = reader.read_all()
                    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
                               else pa.nulls(table.num_rows, f.type) for f in null_free]
                    writer.write_table(pa.Table.from_arrays(columns, schema=null_free))
        finally:
            self.spool.cleanup()

    def abort(self) -> None:
        self.spool.cleanup()


class RecordSink:
    """Records as JSONL to stdout (``-``) or a file, ``.jsonl.gz``, or ``.parquet``; files appear only on success."""

    def __init__(self, path: str = "-") -> None:
        self.path = path
        self.count = 0
        self._file: AtomicFile | None = None
        self._gzip: IO[bytes] | None = None
        self._parquet: _ParquetStream | None = None
        if path == "-":
            return
        if path.endswith(".parquet"):
            self._file = AtomicFile(path, "wb")
            self._parquet = _ParquetStream(self._file.handle, path)
        elif path.endswith(".gz"):
            self._file = AtomicFile(path, "wb")
            self._gzip = gzip.GzipFile(fileobj=self._file.handle, mode="wb", mtime=0)
        else:
            self._file = AtomicFile(path)

    def write(self, rows: Batch | Sequence[Record]) -> None:
        records = _records(rows)
        self.count += len(records)
        if self._parquet is not None:
            self._parquet.write(records)
            return
        text = "".join(line + "\n" for line in json_lines(rows))
        if self._gzip is not None:
            self._gzip.write(text.encode("utf-8"))
        elif self._file is not None:
            self._file.handle.write(text)
        else:
            sys.stdout.write(text)

    def close(self, ok: bool = True) -> None:
        if self._file is None:
            if ok:
                sys.stdout.flush()
            return
        if not ok:
            if self._parquet is not None:
                self._parquet.abort()
            self._file.abort()
            return
        try:
            if self._parquet is not None:
                self._parquet.close()
            if self._gzip is not None:
                self._gzip.close()
        except BaseException:
            self._file.abort()
            raise
        self._file.commit()

    def __enter__(self) -> RecordSink:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close(ok=exc_type is None)


class SplitFilesSink:
    """``train.jsonl``, ``validation.jsonl`` (and ``test.jsonl``) in ``out_dir``, committed together.

    The files are written in a hidden folder beside ``out_dir`` and the folder is swapped in whole (the old one
    is put back if the swap fails). Because a swap replaces the whole folder, ``out_dir`` must be new, empty, or
    hold only split files: anything else in it is refused up front rather than deleted.
    """

    def __init__(self, out_dir: str, names: Sequence[str]) -> None:
        from dataprep.outdir import Staging

        self.target = Path(out_dir)
        _check_split_folder(self.target)
        self.staging = Staging(self.target)
        self._files = {name: open(self.staging.path / f"{name}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
                       for name in names}

    def write(self, rows: Batch | Sequence[Record]) -> None:
        by_split: dict[str, list[str]] = {name: [] for name in self._files}
        for record, line in zip(_records(rows), json_lines(rows), strict=True):
            by_split[record["split"]].append(line + "\n")
        for name, lines in by_split.items():
            if lines:
                self._files[name].write("".join(lines))

    def close(self, ok: bool = True) -> None:
        try:
            for handle in self._files.values():
                if ok:
                    handle.flush()
                    os.fsync(handle.fileno())
                handle.close()
        except BaseException:
            self.staging.abort()
            raise
        if ok:
            self.staging.commit()
        else:
            self.staging.abort()


def _check_split_folder(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise DataprepError(f"{target}: exists and is not a folder")
    if target.is_dir():
        foreign = sorted(p.name for p in target.iterdir() if p.name not in {f"{s}.jsonl" for s in SPLIT_FILES})
        if foreign:
            raise DataprepError(
                f"{target}: --out-dir is replaced as a whole, and this folder holds other files ({foreign[0]}"
                + (f" and {len(foreign) - 1} more" if len(foreign) > 1 else "") + ")",
                hint="pick a new or empty folder")
