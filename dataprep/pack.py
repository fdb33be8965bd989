"""``dataprep pack``: put the rows of a tokenized folder into rows of at most N tokens, losslessly.

**Planning** is best-fit decreasing over a whole split, from the lengths alone: rows are taken longest first (ties:
lower row index first) and each goes into the open pack with the least room that still fits it, or a new pack. The
open packs sit in free lists, one per remainder 0..N, with a bitset of the non-empty ones, so "least room >= L" is
one shift and one lowest-set-bit on a Python int. Rows of equal length are placed in bulk: with L fixed, the best
fit for the next row is always the pack just used while it still has room (no pack lies between L and its new
remainder), so a run of c rows fills packs of remainder r with ``r // L`` rows each, in the packs' FIFO order: the
same result as placing them one by one, with one numpy step per (length, remainder) pair instead of one Python step
per row. Among packs with equal room, the one that has had that room longest wins (each free list is FIFO). No
``hash()``, no randomness: same lengths, same plan.

**Writing** streams: the split's Arrow files are memory-mapped and each output batch of packs gathers its token
ranges straight from the mapped buffers (one fancy index per column), so memory holds the lengths, the plan and
one output batch. (``pyarrow``'s ``take`` on a chunked column would first concatenate the whole column in RAM.)

A packed row has ``input_ids``, ``labels``, ``position_ids`` (0.. for each original row), ``seq_lengths``, ``ids``
and ``source_rows`` (the original rows' ids and indexes in their split: unpacking gives the rows back) and
``length``. It has no ``attention_mask`` on purpose: an all-ones 2D mask handed to a model makes transformers treat
the pack as one sequence, so examples would attend to each other. Consumers use ``position_ids`` (transformers
builds the block-diagonal mask from them for SDPA/eager; flash-attention runs varlen) or rebuild the mask from
``seq_lengths``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dataprep import manifest as mf
from dataprep.emit import DEFAULT_TARGET, packed_columns, packed_schema
from dataprep.errors import DataprepError, InputError
from dataprep.manifest import Manifest, SplitStats, Totals
from dataprep.outdir import FolderSink, OutputDir
from dataprep.paths import check_paths, check_replaceable_folder
from dataprep.stage import Rejected, StageReport, run
from dataprep.tokenize.layout import IGNORE_INDEX, concat_ranges

STRATEGY = "bfd"
PACKED_SCHEMA = pa.schema([
    ("input_ids", pa.list_(pa.int32())),
    ("labels", pa.list_(pa.int32())),
    ("position_ids", pa.list_(pa.int32())),
    ("seq_lengths", pa.list_(pa.int32())),
    ("ids", pa.list_(pa.string())),
    ("source_rows", pa.list_(pa.int64())),
    ("length", pa.int32()),
])
TOKEN_COLUMNS = ("input_ids", "labels")
LENGTH_CHUNK = 65_536  # rows per length batch fed to the stage (only lengths: 0.5 MiB)
BATCH_TOKENS = 1 << 20  # packed tokens per output batch: 4 MiB per int32 column


# -- planning ------------------------------------------------------------------------------------------------------

@dataclass
class PackPlan:
    """Pack p holds rows ``order[offsets[p]:offsets[p + 1]]`` (indexes into the planned lengths), longest first."""

    order: np.ndarray
    offsets: np.ndarray

    @property
    def packs(self) -> int:
        return len(self.offsets) - 1

    def pack_lengths(self, lengths: np.ndarray) -> np.ndarray:
        """Tokens in each pack."""
        sums = np.zeros(len(self.order) + 1, dtype=np.int64)
        np.cumsum(lengths[self.order], out=sums[1:])
        return np.diff(sums[self.offsets])


def plan_bfd(lengths: np.ndarray, capacity: int) -> PackPlan:
    """Best-fit decreasing of ``lengths`` (each in 1..capacity) into packs of ``capacity`` tokens; see the module."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) and (lengths.min() < 1 or lengths.max() > capacity):
        raise ValueError(f"lengths must lie in 1..{capacity}")
    order = np.argsort(-lengths, kind="stable")  # longest first, lower index first among equals
    pack_of = np.empty(len(order), dtype=np.int64)
    free: dict[int, list[int]] = {}  # remainder -> open packs with exactly that room, oldest first
    nonempty = 0  # bit r set <=> free[r] is not empty
    opened = 0

    def add(room: int, packs: Sequence[int]) -> None:
        nonlocal nonempty
        if room and len(packs):
            free.setdefault(room, []).extend(packs)
            nonempty |= 1 << room

    sorted_lengths = lengths[order]
    starts = np.flatnonzero(np.diff(sorted_lengths, prepend=0))  # first row of each length (lengths are >= 1)
    ends = np.append(starts[1:], len(order))[:len(starts)]
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        size = int(sorted_lengths[start])
        pos, left = start, end - start
        while left:
            above = nonempty >> size
            if not above:  # nothing open fits: open packs of `capacity`, each taking `per` rows
                per = capacity // size
                count = -(-left // per)
                new = np.arange(opened, opened + count)
                pack_of[pos:pos + left] = np.repeat(new, per)[:left]
                opened += count
                last = left - (count - 1) * per
                add(capacity - per * size, new[:-1].tolist() if last < per else new.tolist())
                if last < per:
                    add(capacity - last * size, [int(new[-1])])
                break
            room = size + (above & -above).bit_length() - 1
            packs = free[room]
            per = room // size
            full = min(left // per, len(packs))
            partial = left - full * per if full < len(packs) else 0
            used = packs[:full + (1 if partial else 0)]
            del packs[:len(used)]
            if not packs:
                del free[room]
                nonempty &= ~(1 << room)
            taken = full * per + partial
            pack_of[pos:pos + taken] = np.repeat(np.asarray(used, dtype=np.int64), per)[:taken]
            add(room - per * size, used[:full])
            if partial:
                add(room - partial * size, used[full:])
            pos += taken
            left -= taken
    grouped = np.argsort(pack_of, kind="stable")  # by pack, each pack's rows in placement order
    counts = np.bincount(pack_of, minlength=opened)
    offsets = np.zeros(opened + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return PackPlan(order[grouped], offsets)


def greedy_packs(lengths: np.ndarray, capacity: int) -> int:
    """Packs used by greedy in-order packing (a pack is closed when the next row does not fit): the baseline."""
    packs, used = 0, capacity
    for n in np.asarray(lengths).tolist():
        if used + n > capacity:
            packs += 1
            used = 0
        used += n
    return packs


# -- reading a tokenized split memory-mapped ------------------------------------------------------------------------

class _MappedFile:
    """One Arrow IPC file of a split, mapped; token columns as element offsets into flat views of the mapping."""

    def __init__(self, path: str) -> None:
        self.buffer = pa.memory_map(path).read_buffer()
        self.table = pa.ipc.open_stream(self.buffer).read_all()
        self.views: dict[str, np.ndarray] = {}
        self.starts: dict[str, np.ndarray] = {}
        self.lengths: dict[str, np.ndarray] = {}
        for name in TOKEN_COLUMNS:
            column = self.table.column(name)
            if not pa.types.is_list(column.type) or not pa.types.is_integer(column.type.value_type):
                raise DataprepError(f"{path}: column {name!r} is {column.type}, not a list of token ids")
            width = column.type.value_type.bit_width // 8
            self.views[name] = np.frombuffer(self.buffer, dtype=column.type.value_type.to_pandas_dtype(),
                                             count=self.buffer.size // width)
            starts, lengths = [], []
            for chunk in column.chunks:
                if chunk.null_count or chunk.values.null_count:
                    raise DataprepError(f"{path}: column {name!r} has nulls")
                offsets = np.asarray(chunk.offsets, dtype=np.int64)
                data = chunk.values.buffers()[1]
                byte = 0  # a chunk of empty lists may have no data buffer to point at
                if data is not None and len(chunk.values):
                    byte = data.address - self.buffer.address + chunk.values.offset * width
                if byte % width or not 0 <= byte <= self.buffer.size:
                    raise DataprepError(f"{path}: column {name!r} is not memory-mapped as expected")
                starts.append(byte // width + offsets[:-1])
                lengths.append(np.diff(offsets))
            self.starts[name] = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
            self.lengths[name] = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        if not np.array_equal(self.lengths["input_ids"], self.lengths["labels"]):
            bad = int(np.flatnonzero(self.lengths["input_ids"] != self.lengths["labels"])[0])
            raise DataprepError(f"{path}: row {bad} has {self.lengths['input_ids'][bad]} input_ids but "
                                f"{self.lengths['labels'][bad]} labels")


class SplitSource:
    """A split of a tokenized folder, read without loading it: row lengths, and tokens gathered by row index."""

    def __init__(self, name: str, files: list[str]) -> None:
        self.name = name
        self.files = [_MappedFile(path) for path in files]
        sizes = [f.table.num_rows for f in self.files]
        self.first_row = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.lengths = np.concatenate([f.lengths["input_ids"] for f in self.files]) if self.files else (
            np.zeros(0, dtype=np.int64))
        ids = [chunk for f in self.files for chunk in f.table.column("id").chunks]
        self.ids = pa.chunked_array(ids, pa.string()).combine_chunks() if ids else pa.array([], pa.string())

    def __len__(self) -> int:
        return len(self.lengths)

    def gather(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The tokens of ``rows``, concatenated in that order, per token column (int32)."""
        lengths = self.lengths[rows]
        out_starts = np.zeros(len(rows), dtype=np.int64)
        np.cumsum(lengths[:-1], out=out_starts[1:])
        total = int(lengths.sum())
        out = {name: np.empty(total, dtype=np.int32) for name in TOKEN_COLUMNS}
        which = np.searchsorted(self.first_row, rows, side="right") - 1
        for i, f in enumerate(self.files):
            mine = np.flatnonzero(which == i) if len(self.files) > 1 else np.arange(len(rows))
            if not len(mine):
                continue
            local = rows[mine] - self.first_row[i]
            target = concat_ranges(out_starts[mine], lengths[mine])
            for name in TOKEN_COLUMNS:
                out[name][target] = f.views[name][concat_ranges(f.starts[name][local], lengths[mine])]
        return out


def open_splits(folder: str | Path) -> dict[str, SplitSource]:
    """The splits of a tokenized folder, each memory-mapped; a folder ``datasets`` cannot read is refused."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError) as exc:
        raise DataprepError(f"{folder}: cannot load the saved dataset: {exc}") from None
    if not isinstance(loaded, datasets.DatasetDict):
        raise DataprepError(f"{folder}: holds a single dataset, not the split folders dataprep tokenize writes")
    sources = {}
    for name in mf.split_order(list(loaded)):
        ds = loaded[name]
        missing = [c for c in ("id", *TOKEN_COLUMNS) if c not in ds.column_names]
        if missing:
            raise DataprepError(f"{folder}: split {name!r} lacks column(s) {', '.join(missing)}")
        source = SplitSource(name, [f["filename"] for f in ds.cache_files])
        if len(source) != len(ds):
            raise DataprepError(f"{folder}: split {name!r} is a view of its files (select/shuffle)",
                                hint="save it with save_to_disk, or tokenize again")
        sources[name] = source
    return sources


# -- the stage -----------------------------------------------------------------------------------------------------

@dataclass
class LengthBatch:
    """The lengths of rows ``start..start+len`` of one split: what the stage sees of the input."""

    split: str
    start: int
    lengths: np.ndarray
    root: str

    def __len__(self) -> int:
        return len(self.lengths)

    def location(self, i: int) -> str:
        return f"{self.root}/{self.split}[{self.start + i}]"


@dataclass
class PackedBatch:
    """Packed rows of one split as an Arrow batch; ``len()`` counts the original rows inside (what ``run`` counts)."""

    split: str
    batch: pa.RecordBatch
    rows: int
    tokens: int
    supervised: int

    def __len__(self) -> int:
        return self.rows


@dataclass
class SplitPacking:
    rows_in: int = 0
    rows_packed: int = 0
    rejected: int = 0
    packs: int = 0
    tokens: int = 0


class PackStage:
    """Best-fit decreasing packing as a :class:`~dataprep.stage.Stage` over :class:`LengthBatch` es.

    ``process`` only records lengths and rejects rows over ``max_length`` (``too_long``); ``finish`` plans each
    split and emits :class:`PackedBatch` es gathered from ``sources``. ``progress`` (optional) advances by the rows
    written, since that is where the time goes.
    """

    name = "pack"

    def __init__(self, sources: dict[str, SplitSource], max_length: int, *, progress: Any = None,
                 batch_tokens: int = BATCH_TOKENS) -> None:
        if max_length < 1:
            raise ValueError("max_length must be at least 1")
        self.sources = sources
        self.max_length = max_length
        self.progress = progress
        self.packs_per_batch = max(1, batch_tokens // max_length)
        self.splits: dict[str, SplitPacking] = {}
        self._kept: dict[str, list[np.ndarray]] = {}

    def process(self, batch: LengthBatch) -> tuple[Sequence[Any], list[Rejected]]:
        stats = self.splits.setdefault(batch.split, SplitPacking())
        stats.rows_in += len(batch)
        fits = batch.lengths <= self.max_length
        self._kept.setdefault(batch.split, []).append(batch.start + np.flatnonzero(fits))
        rejected = []
        ids = self.sources[batch.split].ids
        for i in np.flatnonzero(~fits).tolist():
            n = int(batch.lengths[i])
            record = {"id": ids[batch.start + i].as_py(), "split": batch.split, "length": n}
            rejected.append(Rejected(record, "too_long", f"{n} tokens > --max-length {self.max_length}", index=i))
        stats.rejected += len(rejected)
        return (), rejected

    def finish(self) -> Iterator[tuple[Sequence[Any], list[Rejected]]]:
        for split, stats in self.splits.items():
            source = self.sources[split]
            rows = np.concatenate(self._kept.pop(split))
            plan = plan_bfd(source.lengths[rows], self.max_length)
            stats.packs = plan.packs
            for first in range(0, plan.packs, self.packs_per_batch):
                packed = self._build(source, rows, plan, first, min(first + self.packs_per_batch, plan.packs))
                stats.rows_packed += packed.rows
                stats.tokens += packed.tokens
                if self.progress is not None:
                    self.progress.update(packed.rows)
                yield packed, []
            assert stats.rows_in == stats.rows_packed + stats.rejected, (split, stats)

    def facts(self) -> dict[str, Any]:
        packs = sum(s.packs for s in self.splits.values())
        tokens = sum(s.tokens for s in self.splits.values())
        per_split = " ".join(f"{name}={s.packs:,}" for name, s in self.splits.items())
        return {"packs": f"{packs:,}" + (f" ({per_split})" if per_split else ""),
                "efficiency": f"{100 * efficiency(tokens, packs, self.max_length):.1f}%",
                "max length": self.max_length}

    def _build(self, source: SplitSource, rows: np.ndarray, plan: PackPlan, first: int, last: int) -> PackedBatch:
        members = rows[plan.order[plan.offsets[first]:plan.offsets[last]]]
        lengths = source.lengths[members]
        tokens = source.gather(members)
        row_offsets = (plan.offsets[first:last + 1] - plan.offsets[first]).astype(np.int32)
        token_ends = np.cumsum(lengths)
        token_offsets = np.concatenate([[0], token_ends[row_offsets[1:] - 1]]).astype(np.int32)
        row_starts = token_ends - lengths
        positions = (np.arange(int(token_ends[-1])) - np.repeat(row_starts, lengths)).astype(np.int32)

        def token_list(values: np.ndarray) -> pa.Array:
            return pa.ListArray.from_arrays(pa.array(token_offsets), pa.array(values))

        def row_list(values: pa.Array) -> pa.Array:
            return pa.ListArray.from_arrays(pa.array(row_offsets), values)

        batch = pa.RecordBatch.from_arrays([
            token_list(tokens["input_ids"]),
            token_list(tokens["labels"]),
            token_list(positions),
            row_list(pa.array(lengths.astype(np.int32))),
            row_list(source.ids.take(pa.array(members))),
            row_list(pa.array(members, pa.int64())),
            pa.array(np.diff(token_offsets)),
        ], schema=PACKED_SCHEMA)
        supervised = int(np.count_nonzero(tokens["labels"] != IGNORE_INDEX))
        return PackedBatch(source.name, batch, len(members), int(token_ends[-1]), supervised)


def efficiency(tokens: int, packs: int, capacity: int) -> float:
    """Real tokens over the room the packs offer: 1.0 means no padding at all."""
    return tokens / (packs * capacity) if packs else 0.0


def length_batches(sources: dict[str, SplitSource], root: str, size: int = LENGTH_CHUNK) -> Iterator[LengthBatch]:
    for name, source in sources.items():
        for start in range(0, len(source), size):
            yield LengthBatch(name, start, source.lengths[start:start + size], root)


class PackSink(FolderSink):
    """Writes packed batches to their split of an :class:`OutputDir`; ``finalize`` completes the folder on success."""

    def __init__(self, out: OutputDir, emit_for: str = DEFAULT_TARGET) -> None:
        super().__init__(out)
        self.emit_for = emit_for
        self.splits: dict[str, SplitStats] = {}

    def write(self, packed: PackedBatch) -> None:
        self.out.write(packed.split, packed_columns(self.emit_for, packed.batch))
        s = self.splits.setdefault(packed.split, SplitStats())
        s.rows += packed.batch.num_rows
        s.tokens += packed.tokens
        assert s.supervised_tokens is not None
        s.supervised_tokens += packed.supervised



# -- the job -------------------------------------------------------------------------------------------------------

@dataclass
class PackJob:
    """What ``dataprep pack`` was asked to do."""

    input: str
    outdir: str
    max_length: int
    force: bool = False
    rejects: str | None = None
    batch_tokens: int = BATCH_TOKENS
    emit_for: str = DEFAULT_TARGET  # dataprep, or trl (adds the masks TRL 0.17-1.6 read instead of labels)


@dataclass
class PackResult:
    up_to_date: bool
    manifest: Manifest
    summary: str
    report: StageReport | None = None
    splits: dict[str, SplitPacking] = field(default_factory=dict)


def check_input(folder: str) -> Manifest:
    """The manifest of a folder pack can read: written by tokenize, causal, not packed already."""
    if not Path(folder).is_dir():
        raise InputError(folder, "no such folder", hint="pass the OUTDIR of dataprep tokenize")
    manifest = mf.load_manifest(folder)
    if manifest.packing is not None:
        raise DataprepError(f"{folder}: is already packed (max length {manifest.packing.get('max_length')})",
                            hint="pack the tokenized folder it was made from")
    if manifest.task != "causal":
        raise DataprepError(f"{folder}: task {manifest.task!r}; only causal-LM rows can be packed")
    return manifest


def pack_to_disk(job: PackJob, *, progress: Any = None) -> PackResult:
    """Pack the tokenized folder ``job.input`` into ``job.outdir``; skip the work when it is up to date."""
    if job.max_length < 1:
        raise DataprepError("--max-length must be at least 1")
    source_manifest = check_input(job.input)
    source_dir, target = Path(job.input).resolve(), Path(job.outdir).resolve()
    if source_dir == target or source_dir in target.parents or target in source_dir.parents:
        raise DataprepError(f"{job.outdir}: is, holds or lies inside the input folder {job.input}",
                            hint="write the packed rows beside it, e.g. -o packed/")
    check_paths([job.input], None, job.rejects, replaced_folders=[job.outdir])
    check_replaceable_folder(job.outdir, mf.MANIFEST)
    out = OutputDir(job.outdir, packed_schema(job.emit_for, PACKED_SCHEMA))
    report = StageReport("pack", job.rejects)
    options = {"max_length": job.max_length, "strategy": STRATEGY, "emit_for": job.emit_for}
    try:
        source = mf.hash_input(job.input, str(out.work))
        key = mf.cache_key(mf.key_parts(task="causal", options={"pack": options}, inputs=[source],
                                        tokenizer_sha256=source_manifest.tokenizer.files_sha256,
                                        template=source_manifest.template))
        old = mf.read_manifest(job.outdir)
        if old is not None and old.key == key and not job.force:
            out.abort()
            report.close(ok=False)
            packs = (old.packing or {}).get("packs", 0)
            return PackResult(True, old, f"pack: {job.outdir} is up to date (key {key[:12]}, {packs:,} packs of "
                                         f"{old.totals.rows_out:,} rows; --force to redo)")
        sources = open_splits(job.input)
    except BaseException:
        out.abort()
        report.close(ok=False)
        raise
    stage = PackStage(sources, job.max_length, progress=progress, batch_tokens=job.batch_tokens)
    manifest = Manifest(task="causal", tokenizer=source_manifest.tokenizer, splits={}, key=key,
                        options=dict(source_manifest.options), template=source_manifest.template,
                        encoder=source_manifest.encoder, inputs=[source.fact()], mixture=source_manifest.mixture,
                        emit_for=job.emit_for)
    sink = PackSink(out, job.emit_for)

    def finalize(sink: PackSink) -> None:
        from dataprep.card import dataset_card

        out.finish_splits(key)
        shutil.copytree(Path(job.input) / mf.TOKENIZER_DIR, out.staging / mf.TOKENIZER_DIR)
        manifest.splits = {s: sink.splits[s] for s in out.splits}
        manifest.rejected = dict(sorted(report.reasons.items()))
        stats = list(manifest.splits.values())
        manifest.totals = Totals(rows_in=report.rows_in, rows_out=report.rows_out, rejected=report.rejected,
                                 tokens=sum(s.tokens for s in stats),
                                 supervised_tokens=sum(s.supervised_tokens or 0 for s in stats))
        manifest.packing = packing_facts(stage, source_manifest.key)
        mf.write_manifest(out.staging, manifest)
        (out.staging / mf.CARD).write_text(dataset_card(manifest), encoding="utf-8")

    sink.finalize = finalize
    started = time.perf_counter()
    run(stage, length_batches(sources, job.input), sink, report)
    elapsed = max(time.perf_counter() - started, 1e-9)
    report.extra["rows/s"] = f"{report.rows_in / elapsed:,.0f}"
    return PackResult(False, manifest, report.summary(), report, stage.splits)


def packing_facts(stage: PackStage, source_key: str) -> dict[str, Any]:
    """The manifest's ``packing`` record: totals, then the same figures per split."""
    n = stage.max_length
    splits = {name: {"rows_in": s.rows_in, "rows_packed": s.rows_packed, "rejected": s.rejected, "packs": s.packs,
                     "tokens": s.tokens, "efficiency": round(efficiency(s.tokens, s.packs, n), 6)}
              for name, s in stage.splits.items()}
    packs = sum(s.packs for s in stage.splits.values())
    tokens = sum(s.tokens for s in stage.splits.values())
    return {"strategy": STRATEGY, "max_length": n,
            "rows_in": sum(s.rows_in for s in stage.splits.values()),
            "rows_packed": sum(s.rows_packed for s in stage.splits.values()),
            "packs": packs, "tokens": tokens, "efficiency": round(efficiency(tokens, packs, n), 6),
            "splits": splits, "source_key": source_key}
