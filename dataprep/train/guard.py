"""A guard that runs inside any trainer: the labels the model is given are dataprep's, token for token.

Trainers lose labels silently: a collator that rebuilds them from ``input_ids`` (``DataCollatorForLanguageModeling``),
a second truncation (TRL's ``max_length`` of 1,024 by default), a packer that drops the ``labels`` column (TRL
0.20-1.6). None of these raise; the run just trains on other tokens. The guard looks at what actually reaches the
model on the first few training steps, finds each sequence's row in the dataset folder, and compares the
supervised targets with the row's. A difference stops the run with one line that says what happened and what to
change.

How a sequence is found. Every row of the split (or every original row inside a packed row, from ``seq_lengths``
or restarting ``position_ids``) gets a 64-bit polynomial hash of its ``input_ids``, computed with numpy a slice
of the memory-mapped Arrow data at a time. A sequence in a batch is hashed the same way, looked up, and its tokens
compared in full. A sequence that is not a whole row is searched for as a row's start or end, so a cut row is
reported as cut, with the supervised tokens it lost. A sequence found nowhere and carrying supervised labels means
the trainer re-tokenized or mixed in other data, and stops the run too.

What is compared. The targets a causal loss uses: ``labels[1:]`` of each sequence. The first label never counts
(nothing predicts it inside its own sequence), so a packer that blanks it, as TRL's padding-free collator does,
is not a change.

Batches are split into sequences by ``attention_mask`` (right or left padding), then by ``cu_seq_lens_q`` or by
``position_ids`` restarts (padding-free and packed batches). Only training batches are checked (the model is in
training mode), the first ``batches`` of them, then the hook removes itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from transformers import TrainerCallback

from dataprep.errors import DataprepError

IGNORE_INDEX = -100
DEFAULT_BATCHES = 8
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_LENGTH_MIX = np.uint64(0xC2B2AE3D27D4EB4F)
_SLICE_TOKENS = 1 << 22  # tokens hashed per numpy pass: bounds the temporary arrays to ~100 MB


class LabelsChanged(DataprepError):
    """The trainer gave the model labels that differ from the dataset's."""


@dataclass
class Finding:
    """One sequence the model saw that is not its dataset row's labels."""

    kind: str  # "changed" (whole row, other labels), "cut" (a row's start or end only), "unknown" (no such row)
    where: str
    tokens: int
    row: int | None = None
    row_id: str | None = None
    row_tokens: int | None = None
    segment: int | None = None  # the original row's index in SplitRows (a packed row holds several)
    extra: int = 0  # targets the trainer supervises that dataprep masked
    lost: int = 0  # targets dataprep supervises that the trainer does not (a cut row's tail included)
    moved: int = 0  # targets supervised by both, with another token id

    def describe(self) -> str:
        row = f"row {self.row}" + (f" (id {self.row_id!r})" if self.row_id is not None else "")
        if self.kind == "unknown":
            return (f"a sequence of {self.tokens:,} tokens with {self.extra:,} supervised targets ({self.where}) "
                    "is no row of the dataset")
        if self.kind == "cut":
            text = f"{row} of {self.row_tokens:,} tokens reached the model cut to {self.tokens:,}"
        else:
            text = f"{row} reached the model with other labels"
        counts = [f"{self.lost:,} supervised tokens lost"] if self.lost else []
        if self.extra:
            counts.append(f"{self.extra:,} masked tokens trained")
        if self.moved:
            counts.append(f"{self.moved:,} targets with another token")
        return f"{text} ({', '.join(counts) or 'same targets'}; {self.where})"


@dataclass
class GuardReport:
    """What the guard has checked so far."""

    batches: int = 0
    sequences: int = 0
    tokens: int = 0
    targets: int = 0  # supervised targets seen equal to the dataset's
    findings: list[Finding] = field(default_factory=list)

    def summary(self) -> str:
        batches = f"{self.batches} batch" + ("es" if self.batches != 1 else "")
        return (f"label guard: {batches}, {self.sequences:,} sequences, {self.targets:,} supervised targets, "
                "all equal to the dataset's")


class SplitRows:
    """The rows of one split, indexed by a hash of their ``input_ids``; the data stays memory-mapped.

    ``table`` needs ``input_ids`` and ``labels``; ``id`` is used in messages when present; ``seq_lengths`` or
    ``position_ids`` mark packed rows, whose original rows are indexed one by one.
    """

    def __init__(self, table: pa.Table) -> None:
        for name in ("input_ids", "labels"):
            if name not in table.column_names:
                raise DataprepError(f"the guard needs a {name!r} column (columns: {', '.join(table.column_names)})")
        self._ids: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._row_ids: list[pa.Array | None] = []
        self._first_row: list[int] = []
        starts, lengths, chunk_of, row_of = [], [], [], []
        rows_before = 0
        for c, batch in enumerate(table.to_batches()):
            ids_col, labels_col = batch.column("input_ids"), batch.column("labels")
            ids, labels = _values(ids_col), _values(labels_col)
            if len(ids) != len(labels) or not np.array_equal(_offsets(ids_col), _offsets(labels_col)):
                raise DataprepError("input_ids and labels differ in length in some row of the dataset")
            seg_starts, seg_lengths, seg_rows = _segments(batch, _offsets(ids_col))
            self._ids.append(ids)
            self._labels.append(labels)
            self._row_ids.append(batch.column("id") if "id" in batch.schema.names else None)
            self._first_row.append(rows_before)
            starts.append(seg_starts)
            lengths.append(seg_lengths)
            chunk_of.append(np.full(len(seg_starts), c, dtype=np.int32))
            row_of.append(seg_rows + rows_before)
            rows_before += batch.num_rows
        self.starts = _cat(starts, np.int64)
        self.lengths = _cat(lengths, np.int64)
        self.chunk = _cat(chunk_of, np.int32)
        self.row = _cat(row_of, np.int64)
        self._powers = _powers(int(self.lengths.max()) if len(self.lengths) else 1)
        hashes = np.concatenate([np.zeros(0, dtype=np.uint64),
                                 *(self._hash_chunk(c) for c in range(len(self._ids)))])
        self._order = np.argsort(hashes, kind="stable")
        self._sorted = hashes[self._order]

    def __len__(self) -> int:
        return len(self.lengths)

    def supervised_labels(self) -> int:
        """Labels that are not -100 in the whole split: the manifest's ``supervised_tokens``."""
        return sum(int(np.count_nonzero(labels != IGNORE_INDEX)) for labels in self._labels)

    def supervised_targets(self) -> int:
        """Targets a causal loss trains on: ``labels[1:]`` of each original row that are not -100."""
        total = self.supervised_labels()
        for c, labels in enumerate(self._labels):
            total -= int(np.count_nonzero(labels[self.starts[self.chunk == c]] != IGNORE_INDEX))
        return total

    def _hash_chunk(self, c: int) -> np.ndarray:
        sel = np.flatnonzero(self.chunk == c)
        out = np.empty(len(sel), dtype=np.uint64)
        done = 0
        while done < len(sel):
            # as many segments as fit in one slice of tokens (at least one)
            cum = np.cumsum(self.lengths[sel[done:]])
            take = max(1, int(np.searchsorted(cum, _SLICE_TOKENS, side="right")))
            part = sel[done:done + take]
            out[done:done + take] = _hash_many(self._ids[c], self.starts[part], self.lengths[part], self._powers)
            done += take
        return out

    def find(self, ids: np.ndarray) -> int | None:
        """The first segment whose tokens are exactly ``ids``, or ``None``."""
        found = self.find_all(ids)
        return found[0] if found else None

    def find_all(self, ids: np.ndarray) -> list[int]:
        """Every segment whose tokens are exactly ``ids`` (a dataset may hold the same row more than once)."""
        if len(ids) > len(self._powers) or not len(ids):
            return []
        h = _hash_many(ids, np.zeros(1, dtype=np.int64), np.array([len(ids)]), self._powers)[0]
        lo, hi = np.searchsorted(self._sorted, h, "left"), np.searchsorted(self._sorted, h, "right")
        return [int(k) for k in self._order[lo:hi]
                if self.lengths[k] == len(ids) and np.array_equal(self.tokens(int(k)), ids)]

    def find_part(self, ids: np.ndarray) -> tuple[int, int] | None:
        """A longer segment that starts (offset 0) or ends (offset > 0) with ``ids``: (segment, offset).

        Only called for a sequence :meth:`find` missed, so it may scan: candidates are narrowed one token at a
        time, vectorised over every longer segment of a chunk.
        """
        n = len(ids)
        for from_end in (False, True):
            for c, values in enumerate(self._ids):
                cand = np.flatnonzero((self.chunk == c) & (self.lengths > n))
                for k in range(n):
                    if not len(cand):
                        break
                    pos = self.starts[cand] + (self.lengths[cand] - n + k if from_end else k)
                    cand = cand[values[pos] == ids[k]]
                if len(cand):
                    seg = int(cand[0])
                    return seg, int(self.lengths[seg] - n) if from_end else 0
        return None

    def tokens(self, seg: int) -> np.ndarray:
        s = self.starts[seg]
        return self._ids[self.chunk[seg]][s:s + self.lengths[seg]]

    def labels(self, seg: int) -> np.ndarray:
        s = self.starts[seg]
        return self._labels[self.chunk[seg]][s:s + self.lengths[seg]]

    def row_id(self, seg: int) -> str | None:
        ids = self._row_ids[self.chunk[seg]]
        if ids is None:
            return None
        return str(ids[int(self.row[seg]) - self._first_row[self.chunk[seg]]].as_py())


def _values(col: pa.Array) -> np.ndarray:
    """The flat values of a list column's rows (a sliced column's too), without a copy where Arrow allows."""
    return col.values.to_numpy(zero_copy_only=False)[col.offsets[0].as_py():col.offsets[-1].as_py()]


def _offsets(col: pa.Array) -> np.ndarray:
    offsets = col.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    return offsets - offsets[0]


def _cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)


def _segments(batch: pa.RecordBatch, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start, length and row of each original row in a batch: the rows themselves, or their packed parts."""
    lengths = np.diff(offsets)
    rows = np.arange(batch.num_rows, dtype=np.int64)
    if "seq_lengths" in batch.schema.names:
        col = batch.column("seq_lengths")
        seg_lengths = _values(col).astype(np.int64)
        seg_rows = np.repeat(rows, np.diff(_offsets(col)))
        if not np.array_equal(np.bincount(seg_rows, weights=seg_lengths, minlength=len(rows)), lengths):
            raise DataprepError("the seq_lengths of a packed row do not add up to its length")
        return np.cumsum(seg_lengths) - seg_lengths, seg_lengths, seg_rows
    if "position_ids" in batch.schema.names:
        pos = _values(batch.column("position_ids"))
        first = np.zeros(len(pos), dtype=bool)
        first[offsets[:-1][lengths > 0]] = True
        first[pos == 0] = True
        seg_starts = np.flatnonzero(first)
        seg_lengths = np.diff(np.r_[seg_starts, offsets[-1]])
        return seg_starts, seg_lengths, np.searchsorted(offsets, seg_starts, side="right") - 1
    keep = lengths > 0
    return offsets[:-1][keep], lengths[keep], rows[keep]


def _powers(n: int) -> np.ndarray:
    powers = np.empty(n, dtype=np.uint64)
    powers[0] = 1
    if n > 1:
        powers[1:] = np.cumprod(np.full(n - 1, _MULTIPLIER, dtype=np.uint64))
    return powers


def _hash_many(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, powers: np.ndarray) -> np.ndarray:
    """sum((token + 1) * M**i) + length * L (mod 2**64) for each segment, in one vectorised pass."""
    total = int(lengths.sum())
    seg = np.repeat(np.arange(len(lengths)), lengths)
    before = np.cumsum(lengths) - lengths
    within = np.arange(total, dtype=np.int64) - before[seg]
    tokens = values[starts[seg] + within].astype(np.int64).astype(np.uint64) + np.uint64(1)
    with np.errstate(over="ignore"):
        sums = np.add.reduceat(tokens * powers[within], before) if total else np.zeros(0, dtype=np.uint64)
        return sums + lengths.astype(np.uint64) * _LENGTH_MIX


def _numpy(x: Any) -> np.ndarray | None:
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def batch_sequences(batch: Mapping[str, Any]) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """The sequences of a model batch as (input_ids, labels, where), unpadded and unpacked."""
    ids = _numpy(batch["input_ids"])
    labels = _numpy(batch["labels"])
    if ids.ndim == 1:
        ids, labels = ids[None], labels[None]
    mask = _numpy(batch.get("attention_mask"))
    if mask is not None and mask.shape != ids.shape:
        mask = None  # a 4D mask: the sequences come from position_ids
    pos = _numpy(batch.get("position_ids"))
    if pos is not None:
        pos = np.broadcast_to(pos, ids.shape)
    cu = _numpy(batch.get("cu_seq_lens_q"))
    out = []
    for b in range(ids.shape[0]):
        keep = np.flatnonzero(mask[b] != 0) if mask is not None else np.arange(ids.shape[1])
        if cu is not None and ids.shape[0] == 1:
            bounds = cu.reshape(-1).astype(np.int64)
            cuts = [(int(s), int(e)) for s, e in zip(bounds[:-1], bounds[1:], strict=True) if e > s]
            pieces = [keep[(keep >= s) & (keep < e)] for s, e in cuts]
        elif pos is not None and len(keep):
            p = pos[b][keep]
            restart = np.flatnonzero(np.diff(p) != 1) + 1
            pieces = np.split(keep, restart)
        else:
            pieces = [keep]
        for piece in pieces:
            if len(piece):
                where = f"batch row {b}, positions {int(piece[0])}-{int(piece[-1])}"
                out.append((ids[b][piece], labels[b][piece], where))
    return out


class LabelGuard:
    """Checks the first ``batches`` training batches against the rows of a dataset split.

    Use :meth:`from_folder` on a folder written by dataprep, then :meth:`callback` for a transformers/TRL/
    LLaMA-Factory trainer, or call :meth:`check` on each batch of a hand-written loop.
    """

    def __init__(self, rows: SplitRows, *, batches: int = DEFAULT_BATCHES, name: str = "the dataset") -> None:
        self.rows = rows
        self.batches = batches
        self.name = name
        self.report = GuardReport()

    @classmethod
    def from_folder(cls, path: str | Path, split: str = "train", *, batches: int = DEFAULT_BATCHES) -> LabelGuard:
        """Index ``split`` of a dataprep folder; refuse a folder whose labels no longer match its manifest."""
        root = Path(path)
        rows = SplitRows(read_split(root, split))
        manifest_file = root / "dataprep.json"
        if manifest_file.is_file():
            facts = json.loads(manifest_file.read_text(encoding="utf-8")).get("splits", {}).get(split, {})
            expected = facts.get("supervised_tokens")
            if expected is not None and rows.supervised_labels() != expected:
                raise DataprepError(f"{root}: split {split!r} no longer has the {expected:,} supervised tokens "
                                    "its manifest counts; the folder was changed after dataprep wrote it")
        return cls(rows, batches=batches, name=f"{root} ({split})")

    @classmethod
    def from_dataset(cls, dataset: Any, *, batches: int = DEFAULT_BATCHES, name: str = "the dataset") -> LabelGuard:
        """Index a ``datasets.Dataset`` (or a ``pyarrow.Table``) with ``input_ids`` and ``labels``."""
        if isinstance(dataset, pa.Table):
            table = dataset
        else:
            if getattr(dataset, "_indices", None) is not None:
                dataset = dataset.flatten_indices()
            table = dataset.data.table
        return cls(SplitRows(table), batches=batches, name=name)

    @property
    def done(self) -> bool:
        return self.report.batches >= self.batches

    def check(self, batch: Mapping[str, Any]) -> GuardReport:
        """Compare one batch's sequences with their rows; raise :class:`LabelsChanged` on any difference."""
        report = self.report
        findings = []
        for ids, labels, where in batch_sequences(batch):
            ids = ids.astype(np.int64, copy=False)
            labels = labels.astype(np.int64, copy=False)
            report.sequences += 1
            report.tokens += len(ids)
            finding = self._compare(ids, labels, f"training batch {report.batches + 1}, {where}")
            if finding is None:
                report.targets += int(np.count_nonzero(labels[1:] != IGNORE_INDEX))
            elif finding.kind != "ignored":
                findings.append(finding)
        report.batches += 1
        if findings:
            report.findings.extend(findings)
            raise LabelsChanged(_message(findings, self.name), hint=_hint(findings, self.rows))
        return report

    def _compare(self, ids: np.ndarray, labels: np.ndarray, where: str) -> Finding | None:
        seg = self.rows.find(ids)
        if seg is not None:
            return _diff(self.rows.labels(seg)[1:], labels[1:], Finding(
                "changed", where, len(ids), int(self.rows.row[seg]), self.rows.row_id(seg), len(ids), segment=seg))
        supervised = int(np.count_nonzero(labels[1:] != IGNORE_INDEX))
        if supervised == 0:  # padding, or a piece nothing is learned from: harmless whatever it is
            return Finding("ignored", where, len(ids))
        part = self.rows.find_part(ids)
        if part is None:
            return Finding("unknown", where, len(ids), extra=supervised)
        seg, offset = part
        full = self.rows.labels(seg)
        finding = Finding("cut", where, len(ids), int(self.rows.row[seg]), self.rows.row_id(seg),
                          int(self.rows.lengths[seg]), segment=seg)
        _diff(full[offset + 1:offset + len(ids)], labels[1:], finding)
        outside = np.r_[full[1:offset + 1], full[offset + len(ids):]] if offset else full[len(ids):]
        finding.lost += int(np.count_nonzero(outside != IGNORE_INDEX))
        return finding

    def callback(self, *, verbose: bool = True) -> LabelGuardCallback:
        return LabelGuardCallback(self, verbose=verbose)


def _diff(expected: np.ndarray, got: np.ndarray, finding: Finding) -> Finding | None:
    exp_sup, got_sup = expected != IGNORE_INDEX, got != IGNORE_INDEX
    finding.extra += int(np.count_nonzero(got_sup & ~exp_sup))
    finding.lost += int(np.count_nonzero(exp_sup & ~got_sup))
    finding.moved += int(np.count_nonzero(exp_sup & got_sup & (expected != got)))
    if finding.kind == "changed" and not (finding.extra or finding.lost or finding.moved):
        return None
    return finding


def _message(findings: list[Finding], name: str) -> str:
    kinds = {k: [f for f in findings if f.kind == k] for k in ("cut", "changed", "unknown")}
    parts = []
    if kinds["cut"]:
        parts.append(f"{len(kinds['cut'])} cut ({sum(f.lost for f in kinds['cut']):,} supervised tokens lost)")
    if kinds["changed"]:
        extra = sum(f.extra for f in kinds["changed"])
        lost = sum(f.lost for f in kinds["changed"])
        counts = [f"{extra:,} masked tokens trained"] if extra else []
        counts += [f"{lost:,} supervised tokens lost"] if lost else []
        parts.append(f"{len(kinds['changed'])} with other labels ({', '.join(counts) or 'other target ids'})")
    if kinds["unknown"]:
        parts.append(f"{len(kinds['unknown'])} not in the dataset")
    return (f"label guard: the trainer changed the labels of {len(findings)} sequence(s) of {name}: "
            f"{'; '.join(parts)}. First: {findings[0].describe()}")


def _hint(findings: list[Finding], rows: SplitRows) -> str:
    kinds = {f.kind for f in findings}
    longest = int(rows.lengths.max()) if len(rows) else 0
    if "cut" in kinds:
        return (f"the trainer truncates rows (TRL's SFTConfig max_length defaults to 1024, axolotl's sequence_len "
                f"to 512): set it to None or to at least {longest:,}, this split's longest row")
    if "changed" in kinds and any(f.extra for f in findings):
        return ("the trainer rebuilt labels from input_ids: use DataCollatorForSeq2Seq (not "
                "DataCollatorForLanguageModeling), or for TRL 0.20-1.6 with packing or liger write the folder "
                "with --emit-for trl")
    if "unknown" in kinds:
        return "the trainer re-tokenized the rows, split them (packing_strategy='bfd_split'?) or mixed in other data"
    return "the trainer's collator or loss rewrote the labels; feed the dataset's labels column as it is"


def read_split(root: Path, split: str) -> pa.Table:
    """One split of a ``save_to_disk`` folder as a memory-mapped Arrow table (no datasets import, no copy)."""
    folder = root / split
    state = folder / "state.json"
    if not state.is_file():
        raise DataprepError(f"{root}: no split {split!r} here (no {state.name})")
    files = [folder / f["filename"] for f in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
    tables = []
    for file in files:
        source = pa.memory_map(str(file))
        tables.append(pa.ipc.open_stream(source).read_all())
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


@dataclass
class EpochAudit:
    """A whole epoch of a trainer's batches held against a split: every row once, every target dataprep's."""

    rows: int  # original rows in the split
    targets: int  # their supervised targets (labels[1:] that are not -100)
    seen: int = 0  # rows that reached the model whole
    missing: int = 0  # rows that never reached the model, whole or cut (their targets count as lost)
    repeated: int = 0  # extra sightings of rows seen before
    changed: int = 0  # whole rows whose targets differ
    cut: int = 0  # sequences that are only a row's start or end
    unknown: int = 0  # supervised sequences that are no row
    trained: int = 0  # supervised targets in the batches
    extra: int = 0
    lost: int = 0
    moved: int = 0

    @property
    def exact(self) -> bool:
        return (self.seen == self.rows and self.trained == self.targets
                and not (self.missing or self.repeated or self.changed or self.cut or self.unknown
                         or self.extra or self.lost or self.moved))

    def summary(self) -> str:
        head = "exact" if self.exact else "NOT exact"
        return (f"{head}: {self.seen:,}/{self.rows:,} rows seen, {self.trained:,}/{self.targets:,} supervised "
                f"targets; missing {self.missing}, repeated {self.repeated}, changed {self.changed}, cut "
                f"{self.cut}, unknown {self.unknown}; +{self.extra:,} masked tokens trained, -{self.lost:,} "
                f"supervised lost, {self.moved:,} moved")


def audit_epoch(rows: SplitRows, batches: Iterable[Mapping[str, Any]]) -> EpochAudit:
    """Hold an epoch of batches (e.g. ``trainer.get_train_dataloader()``) against ``rows``.

    The study behind this module, as a function: a trainer is exact on a dataset when every row reaches the model
    once, whole, with dataprep's targets. Unlike :class:`LabelGuard` it never raises; it counts.
    """
    audit = EpochAudit(rows=len(rows), targets=rows.supervised_targets())
    seen = np.zeros(len(rows), dtype=np.int64)
    part_seen = np.zeros(len(rows), dtype=bool)
    guard = LabelGuard(rows, batches=0)
    for batch in batches:
        for ids, labels, where in batch_sequences(batch):
            ids, labels = ids.astype(np.int64, copy=False), labels.astype(np.int64, copy=False)
            audit.trained += int(np.count_nonzero(labels[1:] != IGNORE_INDEX))
            same = rows.find_all(ids)
            seg = next((k for k in same if not seen[k]), same[0] if same else None)  # duplicates: each once
            if seg is not None:
                seen[seg] += 1
            finding = guard._compare(ids, labels, where) if seg is None or seen[seg] == 1 else None
            if finding is None or finding.kind == "ignored":
                continue
            if finding.kind == "cut":
                part_seen[finding.segment] = True
            audit.extra += finding.extra
            audit.lost += finding.lost
            audit.moved += finding.moved
            setattr(audit, finding.kind, getattr(audit, finding.kind) + 1)
    audit.seen = int(np.count_nonzero(seen))
    dropped = np.flatnonzero((seen == 0) & ~part_seen)
    audit.missing = len(dropped)
    audit.lost += sum(int(np.count_nonzero(rows.labels(int(k))[1:] != IGNORE_INDEX)) for k in dropped)
    audit.repeated = int((seen[seen > 1] - 1).sum())
    return audit


class LabelGuardCallback(TrainerCallback):
    """A ``TrainerCallback`` (transformers ``Trainer``, TRL, LLaMA-Factory) that runs :class:`LabelGuard` on the
    inputs of the model's first training forwards, through a forward pre-hook, so it sees the batch after every
    collator, packer and device move. The hook removes itself once the guard is done.
    """

    def __init__(self, guard: LabelGuard, *, verbose: bool = True) -> None:
        self.guard = guard
        self.verbose = verbose
        self._handle: Any = None
        self._warned = False
        self._told = False

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is not None and self._handle is None and not self.guard.done:
            self._handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not module.training or self.guard.done:
            return
        batch = dict(kwargs)
        if args:
            batch.setdefault("input_ids", args[0])
        if batch.get("labels") is None or batch.get("input_ids") is None:
            if not self._warned:
                print("label guard: the model is called without labels (the loss is computed outside it); "
                      "nothing to check", file=sys.stderr)
                self._warned = True
            self._remove()
            return
        try:
            self.guard.check(batch)
        except LabelsChanged:
            self._remove()  # the run stops here; a caller that goes on anyway is not checked twice
            raise
        if self.guard.done:
            self._finish()

    def _remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _finish(self) -> None:
        self._remove()
        if self.verbose and self.guard.report.batches and not self._told:
            print(self.guard.report.summary(), file=sys.stderr)
            self._told = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._finish()


def guard_callback(path: str | Path, split: str = "train", *, batches: int = DEFAULT_BATCHES) -> LabelGuardCallback:
    """``callbacks=[guard_callback("path/to/folder")]``: the one line a training script adds."""
    return LabelGuard.from_folder(path, split, batches=batches).callback()


def check_batches(guard: LabelGuard, batches: Iterable[Mapping[str, Any]]) -> GuardReport:
    """Run the guard over batches of a hand-written loop (it stops looking after ``guard.batches``)."""
    for batch in batches:
        if guard.done:
            break
        guard.check(batch)
    return guard.report
