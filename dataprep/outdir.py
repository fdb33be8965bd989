"""Output folders that appear whole or not at all: built hidden beside the target, swapped in at the end.

A folder is built in ``.NAME.tmp-XXXXXXXX`` beside ``NAME``. Committing renames an existing ``NAME`` aside to
``.NAME.old-XXXXXXXX``, renames the new folder in, and only then removes the old one; if the second rename
fails, the old folder is renamed back, so a failed commit leaves ``NAME`` exactly as it was, never absent.

A run killed between those steps leaves hidden folders. Each is locked by its process while it lives
(:mod:`dataprep.temps`), so the next run on the same target removes the unlocked ones, and puts an orphaned
``.NAME.old-*`` back when ``NAME`` itself is missing (a crash between the two renames). Folders of a live run
are never touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa

from dataprep.temps import lock_temp, open_dir, remove_stale_temps, stale_temps


def clean_stale(target: Path) -> list[Path]:
    """Remove hidden build/aside folders of ``target`` left by dead runs; restore an orphaned old folder.

    Returns what was removed or restored, so a caller can say so.
    """
    touched = remove_stale_temps(target, "dir")
    for aside in stale_temps(target, "old"):
        with contextlib.suppress(OSError):
            kept = aside / "old"
            if not target.exists() and kept.is_dir():
                os.replace(kept, target)
            shutil.rmtree(aside)
            touched.append(aside)
    return touched


class _Hidden:
    """A hidden folder beside ``target``, locked by this process for as long as it exists."""

    def __init__(self, target: Path, kind: str) -> None:
        parent = target.parent if str(target.parent) else Path(".")
        parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{target.name}.{kind}-", dir=parent))
        self._fd = open_dir(self.path)
        lock_temp(self._fd)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.release()

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def swap_in(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target``; an existing ``target`` is replaced, or restored if that fails."""
    aside = None
    if target.exists():
        aside = _Hidden(target, "old")
        os.replace(target, aside.path / "old")
    try:
        os.replace(new, target)
    except BaseException:
        if aside is not None:
            os.replace(aside.path / "old", target)
            aside.remove()
        raise
    if aside is not None:
        aside.remove()


class Staging:
    """A hidden work folder for ``target``; ``path`` is what will become ``target`` on :meth:`commit`."""

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)
        clean_stale(self.target)
        self._hidden = _Hidden(self.target, "tmp")
        self.work = self._hidden.path
        self.path = self.work / "out"
        self.path.mkdir()

    def commit(self) -> None:
        try:
            swap_in(self.path, self.target)
        finally:
            self._hidden.remove()

    def abort(self) -> None:
        self._hidden.remove()


WRITE_ROWS = 1000  # rows per record batch of a split file (the batch size datasets' own writer uses)


class OutputDir(Staging):
    """A ``datasets`` DatasetDict folder built split by split from Arrow record batches (memory stays flat).

    Rows are written in record batches of exactly :data:`WRITE_ROWS` (the last one shorter), whatever batches
    they arrive in: the files are then a function of the rows alone, so a folder assembled from a cluster's
    parts is byte-identical to the one a single process writes.
    """

    def __init__(self, outdir: str | Path, schema: pa.Schema) -> None:
        super().__init__(outdir)
        self.parts = self.work / "parts"
        self.parts.mkdir()
        self.schema = schema
        self._writers: dict[str, pa.ipc.RecordBatchStreamWriter] = {}
        self._pending: dict[str, list[pa.RecordBatch]] = {}

    @property
    def staging(self) -> Path:
        return self.path

    def write(self, split: str, batch: pa.RecordBatch) -> None:
        if split not in self._writers:
            self._writers[split] = pa.ipc.new_stream(str(self.parts / f"{split}.arrow"), self.schema)
            self._pending[split] = []
        pending = self._pending[split]
        pending.append(batch)
        if sum(b.num_rows for b in pending) >= WRITE_ROWS:
            self._flush(split, last=False)

    def _flush(self, split: str, last: bool) -> None:
        pending = self._pending[split]
        table = pa.Table.from_batches(pending, schema=self.schema)
        whole = table.num_rows if last else table.num_rows - table.num_rows % WRITE_ROWS
        writer = self._writers[split]
        for start in range(0, whole, WRITE_ROWS):
            piece = table.slice(start, min(WRITE_ROWS, whole - start))
            # fresh buffers of exactly the piece's size: the IPC writer copies a whole buffer that an unsliced
            # array shares with rows beyond it, so bytes would depend on how the rows arrived
            columns = [pa.concat_arrays([column.chunk(0).slice(0, 0), *column.chunks]) for column in piece.columns]
            writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self.schema))
        self._pending[split] = table.slice(whole).to_batches() if whole < table.num_rows else []

    @property
    def splits(self) -> list[str]:
        from dataprep.manifest import split_order

        return split_order(list(self._writers))

    def finish_splits(self, key: str, rewrite: Any = None) -> None:
        """Close the split files and put them in place as a DatasetDict that datasets 3.x to 5.x load.

        ``rewrite(split_path) -> path`` may replace a split file first (classification maps label names to ids).
        The files are moved, not copied (:func:`dataprep.emit.write_dataset_dict`), and the fingerprints come
        from the cache key, so two runs write byte-identical folders.
        """
        from dataprep.emit import write_dataset_dict

        for split, writer in self._writers.items():
            self._flush(split, last=True)
            writer.close()
        parts = {}
        for split in self.splits:
            path = self.parts / f"{split}.arrow"
            parts[split] = rewrite(path) if rewrite is not None else path
        fingerprints = {split: hashlib.sha256(f"{key}:{split}".encode()).hexdigest()[:16] for split in parts}
        write_dataset_dict(self.path, parts, fingerprints)

    def abort(self) -> None:
        for writer in self._writers.values():
            with contextlib.suppress(OSError, pa.ArrowException):
                writer.close()
        super().abort()


class FolderSink:
    """A sink that builds an :class:`OutputDir`: ``close(ok=True)`` lets ``finalize(sink)`` add what the folder
    needs (the DatasetDict, manifest, card, tokenizer) and swaps it in; ``close(ok=False)`` leaves no trace."""

    def __init__(self, out: OutputDir) -> None:
        self.out = out
        self.finalize: Any = None

    def close(self, ok: bool) -> None:
        if not ok:
            self.out.abort()
            return
        try:
            self.finalize(self)
        except BaseException:
            self.out.abort()
            raise
        self.out.commit()
