"""The stage cache of ``dataprep run``: each stage's output, stored under a key made of everything that shapes it.

Layout (one folder per entry, written hidden and renamed into place whole, so a reader never sees half an entry)::

    CACHE/normalize/<key>/rows.jsonl.zst     the kept rows, one line each: JSON location TAB JSON record
                          rejects.jsonl      the rejects exactly as a --rejects file holds them
                          meta.json          the stage's counts and summary facts
    CACHE/filter/<key>/...                   (same)
    CACHE/split/<key>/rows-<i>.jsonl.zst     one file per source, in source order
    CACHE/tokenize/<key>/tokens.arrow        Arrow IPC: the dataset columns + split + truncated per row
    CACHE/validate/<key>/meta.json           a passed validation

Keys (:func:`key`) are sha256 of a JSON document holding the stage name, dataprep's version, the upstream key (for
the first stage: the input's sha256, path and read settings), the stage's options, and for tokenize the tokenizer
files' sha256 and the template text's sha256. A changed byte anywhere upstream gives a new key; nothing is ever
invalidated in place, and old entries are simply left behind (delete the folder to reclaim the space).

Rows are stored as the JSON the pipe would carry, compressed with zstd (pyarrow's codec: fast, and JSONL of SFT
records shrinks about 3.5x). Reading them back gives records equal to the ones written, so a later stage computes
the same bytes from a cached input as from a fresh one. A stage that passes rows on unchanged (filter) does not
store them again: a kept row is the line ``=N``, row N of the entry it read from (``meta.json`` names it), which
makes its entry nearly free to write; reading it reads that entry alongside. Split, which adds two fields to each
row it keeps, stores a row taken from such an entry as just those two fields (``+BUCKET TAB SPLIT``, its meta's
``sources_from`` naming the entry per source), so a run writes and compresses the rows' text once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dataprep import __version__
from dataprep.io import Batch, dumps

ROWS = "rows.jsonl.zst"
REJECTS = "rejects.jsonl"
META = "meta.json"
TOKENS = "tokens.arrow"
CODEC = "zstd"


def key(stage: str, **parts: Any) -> str:
    """The content address of a stage's output; ``parts`` are JSON-able (sizes and fractions as text)."""
    blob = json.dumps({"stage": stage, "dataprep_version": __version__, **parts}, sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Cache:
    """Entries under ``root``; ``root=None`` keeps them in a temporary folder removed by :meth:`close`."""

    def __init__(self, root: str | Path | None) -> None:
        self._tmp = None if root is not None else tempfile.TemporaryDirectory(prefix="dataprep-cache-")
        self.root = Path(root if root is not None else self._tmp.name)  # type: ignore[union-attr]
        self.persistent = root is not None

    def path(self, stage: str, digest: str) -> Path:
        return self.root / stage / digest

    def has(self, stage: str, digest: str) -> bool:
        """An entry is there, and so are the entries its rows refer to, if any."""
        if not (self.path(stage, digest) / META).is_file():
            return False
        meta = self.meta(stage, digest)
        upstream = [meta["rows_from"]] if meta.get("rows_from") else []
        upstream += [u for u in (meta.get("sources_from") or {}).values() if u]
        return all(self.has(*u) for u in upstream)

    def read_rows(self, stage: str, digest: str, name: str = ROWS, split: str | None = None) -> Iterator[Batch]:
        """The rows an entry holds, as batches that know where each row came from."""
        upstream = self.meta(stage, digest).get("rows_from")
        rows = self.read_rows(*upstream) if upstream else None
        return read_records(self.path(stage, digest) / name, split=split, upstream=rows)

    def read_split(self, digest: str, index: int) -> Iterator[Batch]:
        """Split's rows of source ``index``; rows stored as derived (``+B TAB S``) are rebuilt from the rows of the
        entry that split read them from."""
        upstream = (self.meta("split", digest).get("sources_from") or {}).get(str(index))
        rows = self.read_rows(*upstream) if upstream else None
        return read_records(self.path("split", digest) / split_rows(index), upstream=rows, lockstep=rows is not None)

    def meta(self, stage: str, digest: str) -> dict[str, Any]:
        return json.loads((self.path(stage, digest) / META).read_text(encoding="utf-8"))

    def new(self, stage: str, digest: str) -> Entry:
        return Entry(self.path(stage, digest))

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


class Entry:
    """An entry being written: files go to a hidden folder beside its place; :meth:`commit` renames it in."""

    def __init__(self, target: Path) -> None:
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f".{target.name[:16]}.tmp-{os.getpid()}-", dir=target.parent))
        self.meta: dict[str, Any] = {}

    def file(self, name: str) -> Path:
        return self.folder / name

    def commit(self) -> None:
        (self.folder / META).write_text(json.dumps(self.meta, indent=1, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
        try:
            os.replace(self.folder, self.target)
        except OSError:  # another run committed the same entry first: same key, same content
            if not (self.target / META).is_file():
                raise
            shutil.rmtree(self.folder, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class Tracked:
    """A stage wrapped so that the rows file of its entry can name the input rows it passes on unchanged.

    While a batch is processed, ``current`` maps each of its rows (by object identity: they are alive in the batch)
    to its number in the stage's whole input, which is the order of the entry it read from.
    """

    def __init__(self, stage: Any) -> None:
        self.stage = stage
        self.name = stage.name
        self.seen = 0
        self.current: dict[int, int] = {}

    def process(self, batch: Batch) -> Any:
        self.current = {id(r): self.seen + i for i, r in enumerate(batch.records)}
        self.seen += len(batch)
        return self.stage.process(batch)

    def finish(self) -> Any:
        self.current = {}
        return self.stage.finish()

    def facts(self) -> dict[str, Any]:
        return self.stage.facts()


def split_rows(index: int) -> str:
    """The name of split's rows file for source ``index``."""
    return f"rows-{index}.jsonl.zst"


# split's own two keys at the end of a row's line: what a derived row stores
_SPLIT_TAIL = re.compile(r',"len_bucket":(-?\d+),"split":"(train|validation|test)"\}$')


class RecordsFile:
    """A Sink writing batches of records, with where each came from, as a cached rows file; with ``tracked``, a
    row that is an unchanged input row is written as ``=N`` (in increasing N, so reading is one pass).

    ``derived`` is for split's rows of a source whose rows split took one for one, in order, from an entry (it
    rejected none): row i then is that entry's row i with split's two fields set, and is stored as just those,
    ``+BUCKET TAB SPLIT``, which :func:`read_records` turns back into the row as split made it
    (:func:`dataprep.split.derive`). A row whose line does not end in those two keys (keys that rank after
    ``split``) is stored whole, and still stands for its input row.

    Compression runs in a worker thread (zstd releases the GIL), so it overlaps the stages' Python work; at most
    :data:`PENDING` batches wait for it, which keeps memory bounded.
    """

    PENDING = 4

    def __init__(self, path: Path, tracked: Tracked | None = None, derived: bool = False) -> None:
        import pyarrow as pa

        self.path = path
        self.rows = 0
        self.tracked = tracked
        self.derived = derived
        self._last = -1
        self._stream = pa.CompressedOutputStream(str(path), CODEC)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataprep-cache")
        self._pending: deque[Future[Any]] = deque()

    def write(self, batch: Batch) -> None:
        if batch.encoded is None and self.tracked is None:
            batch.encoded = [dumps(r) for r in batch.records]  # the next stages may reuse them (split, output)
        encoded = batch.encoded
        where = _json_locations(batch)
        if self.derived:  # rows only, so split's rows (LazyRecords) are never decoded here
            lines = []
            for w, e in zip(where, encoded, strict=True):  # type: ignore[arg-type]
                tail = _SPLIT_TAIL.search(e, max(0, len(e) - 64))
                lines.append(f"+{tail[1]}\t{tail[2]}\n" if tail else f"{w}\t{e}\n")
        elif self.tracked is None:
            lines = [f"{w}\t{e}\n" for w, e in zip(where, encoded, strict=True)]  # type: ignore[arg-type]
        else:
            known = self.tracked.current
            lines = []
            for i, r in enumerate(batch.records):
                n = known.get(id(r))
                if n is not None and n > self._last:
                    lines.append(f"={n}\n")
                    self._last = n
                else:
                    lines.append(f"{where[i]}\t{encoded[i] if encoded is not None else dumps(r)}\n")
        if len(self._pending) >= self.PENDING:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._stream.write, "".join(lines).encode("utf-8")))
        self.rows += len(batch)

    def close(self, ok: bool) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown()
            with contextlib.suppress(OSError):
                self._stream.close()


def _json_locations(batch: Batch) -> list[str]:
    """Each row's location as JSON text; a batch read from one file shares the escaped file name."""
    if batch.locs is not None:
        return [dumps(loc) for loc in batch.locs]
    head = dumps(batch.source)[:-1]  # ``:``, ``[``, ``]`` and digits need no escaping
    return [f'{head}:{line}"' if line else f'{head}[{index}]"' for line, index in zip(batch.lines, batch.indexes,
                                                                                        strict=True)]


def read_records(path: Path, batch_size: int = 2048, split: str | None = None,
                 upstream: Iterator[Batch] | None = None, lockstep: bool = False) -> Iterator[Batch]:
    """The batches a :class:`RecordsFile` holds, each row with its original location; ``=N`` lines are taken
    from ``upstream``, the rows of the entry they refer to. ``lockstep`` (a ``derived`` file): line i stands for
    upstream row i, and a ``+`` line is rebuilt from it."""
    import io

    import pyarrow as pa

    from dataprep.split import derive

    ahead = _rows(upstream) if upstream is not None else None
    position = -1
    with pa.CompressedInputStream(pa.OSFile(str(path)), CODEC) as raw:
        batch = Batch("", locs=[], split=split)
        for line in io.TextIOWrapper(raw, encoding="utf-8", newline="\n"):  # type: ignore[arg-type]
            if lockstep:
                if ahead is None:
                    raise ValueError(f"{path}: its rows stand for the rows of an entry, and none was given")
                where, record = next(ahead)
            if line.startswith("="):
                wanted = int(line[1:])
                while position < wanted:
                    where, record = next(ahead)  # type: ignore[arg-type]
                    position += 1
                batch.records.append(record)
                batch.locs.append(where)  # type: ignore[union-attr]
            elif line.startswith("+"):
                bucket, _, name = line[1:].rstrip("\n").partition("\t")
                batch.records.append(derive(record, int(bucket), name))
                batch.locs.append(where)  # type: ignore[union-attr]
            else:
                where, _, text = line.partition("\t")
                batch.records.append(json.loads(text))
                batch.locs.append(json.loads(where))  # type: ignore[union-attr]
            if len(batch) >= batch_size:
                yield batch
                batch = Batch("", locs=[], split=split)
        if batch.records:
            yield batch


def _rows(batches: Iterator[Batch]) -> Iterator[tuple[str, Any]]:
    for batch in batches:
        for i, record in enumerate(batch.records):
            yield batch.location(i), record
