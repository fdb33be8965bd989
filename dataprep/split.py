"""Deterministic, stratified train/validation/test splits with exact counts and bounded memory.

How a record's split is chosen:

* Its stratum is the tuple of the ``stratify_by`` fields (default: ``len_bucket``, computed here as
  ``min(len(user_text.split()) // width, max_bucket)`` as in seed 004; ``bucket_by="chars"`` counts characters).
* Targets are global: ``round(F * n)`` rows (half rounds up, computed on exact fractions) or a count ``N``.
  Each stratum gets its proportional quota, rounded down, and the rows still missing go to the strata with the
  largest remainders, so the totals are exact and every stratum keeps the ratio to within one row.
* A stratum too small for its share (``size * target < n``, i.e. its quota of some requested split is under
  one row) is merged into its nearest neighbour in sorted key order (by numeric distance when the keys are
  numbers, the lower one on a tie) until none is too small. Nothing is dropped.
* Within a stratum, records are ordered by ``blake2b(seed, id)`` (ties: a hash of the record's JSON, then
  input position) and the first ones go to validation, the next to test, the rest to train. The split of a
  record therefore does not depend on input order, and adding rows moves few existing ones: only those pushed
  across a quota boundary.

Memory: all rows must be seen before any is assigned, so records are spooled to a temporary file (in ``TMPDIR``;
each added batch as one blob of its rows, their JSON and their input locations) and only 20 bytes per row stay in
memory: two 8-byte hashes and a 4-byte stratum index, plus one dict entry per distinct stratum. Assigning (one numpy
sort) briefly needs about 80 bytes more per row; the output is then streamed from the spool a batch at a time.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import IO, Any

import numpy as np

from dataprep.errors import DataprepError, UsageProblem
from dataprep.io import Batch, LazyRecords, dumps
from dataprep.records import Record, in_canonical_order, ordered, user_text
from dataprep.stage import Rejected, canonical_part, remap

STAGE = "split"
SPLITS = ("train", "validation", "test")
BUCKET_BY = ("words", "chars")
TRAIN, VALIDATION, TEST = 0, 1, 2


@dataclass(frozen=True)
class Size:
    """A split's size: a fraction of the rows (``0 < F < 1``) or a count of rows (``N >= 1``)."""

    fraction: Fraction | None = None
    count: int | None = None

    def target(self, n: int) -> int:
        if self.count is not None:
            return self.count
        assert self.fraction is not None
        return math.floor(self.fraction * n + Fraction(1, 2))


def parse_size(text: str, option: str = "--val-size") -> Size:
    """``0.1`` is a fraction, ``100`` a count; ``1.0`` or ``0`` is refused as ambiguous or empty."""
    text = text.strip()
    try:
        if text.isdigit():
            count = int(text)
            if count < 1:
                raise ValueError
            return Size(count=count)
        fraction = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise UsageProblem(f"{option} must be a fraction between 0 and 1 or a whole count of rows, got {text!r}") from None
    if not 0 < fraction < 1:
        raise UsageProblem(f"{option} must be a fraction between 0 and 1 or a whole count of rows, got {text!r}")
    return Size(fraction=fraction)


@dataclass(frozen=True)
class SplitOptions:
    """Everything that decides the assignment: the same options and rows give the same splits anywhere."""

    val_size: Size
    test_size: Size | None = None
    seed: int = 42
    bucket_by: str = "words"
    bucket_width: int = 200
    max_bucket: int = 4
    stratify_by: tuple[str, ...] = ("len_bucket",)

    def __post_init__(self) -> None:
        if self.bucket_by not in BUCKET_BY:
            raise UsageProblem(f"--bucket-by must be one of {', '.join(BUCKET_BY)}, got {self.bucket_by!r}")
        if self.bucket_width < 1 or self.max_bucket < 0:
            raise UsageProblem("--bucket-width must be at least 1 and --max-bucket at least 0")
        fractions = [s.fraction for s in (self.val_size, self.test_size) if s is not None and s.fraction]
        if sum(fractions) > 1:
            raise UsageProblem("--val-size and --test-size together exceed all rows")
        if not self.stratify_by or any(not f for f in self.stratify_by):
            raise UsageProblem("--stratify-by needs field names, e.g. len_bucket or meta.source")


def len_bucket(record: Record, by: str = "words", width: int = 200, max_bucket: int = 4) -> int:
    """Seed 004's length bucket of the last user turn, capped so that very long prompts share one bucket."""
    text = user_text(record)
    size = len(text.split()) if by == "words" else len(text)
    return min(size // width, max_bucket)


class MissingField(KeyError):
    pass


def field_value(record: Record, name: str) -> Any:
    """A top-level field, or ``meta.KEY``; absent or null raises MissingField."""
    if name.startswith("meta.") and name not in record:
        meta = record.get("meta")
        value = meta.get(name[len("meta."):]) if isinstance(meta, dict) else None
    else:
        value = record.get(name)
    if value is None:
        raise MissingField(name)
    return value


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (2, json.dumps(value, sort_keys=True, ensure_ascii=False))


def _hash64(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=8).digest()


def allocate(quotas: list[Fraction], caps: list[int], total: int) -> list[int]:
    """Largest-remainder rounding of ``quotas`` to integers summing to ``total``, never above ``caps``.

    Ties between equal remainders go to the earlier entry, so the result depends only on the arguments.
    """
    counts = [min(math.floor(q), c) for q, c in zip(quotas, caps, strict=True)]
    missing = total - sum(counts)
    by_remainder = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - math.floor(quotas[i])), i))
    while missing > 0:
        progressed = False
        for i in by_remainder:
            if missing and counts[i] < caps[i]:
                counts[i] += 1
                missing -= 1
                progressed = True
        if not progressed:
            raise DataprepError(f"cannot place {total} rows: only {sum(caps)} available")
    return counts


@dataclass
class Group:
    """One stratum after merging: the original stratum keys it holds, in sorted order, and their row count."""

    keys: list[tuple[Any, ...]]
    size: int


def merge_small(
    strata: dict[tuple[Any, ...], int], targets: list[int], n: int, names: tuple[str, ...] = ("len_bucket",)
) -> tuple[list[Group], list[str]]:
    """Merge strata whose share of some target is under one row into a neighbour; name each merged group.

    ``strata`` maps each key (values of the fields ``names``) to its row count. Keys are ordered by value;
    one-field numeric keys measure nearness by distance (the lower neighbour on a tie), anything else takes the
    lower neighbour, or the upper one for the first stratum. The smallest too-small stratum goes first.
    """
    keys = sorted(strata, key=lambda k: tuple(_sort_key(v) for v in k))
    groups = [Group([k], strata[k]) for k in keys]
    numeric = all(len(k) == 1 and _sort_key(k[0])[0] == 0 for k in keys)

    def too_small(g: Group) -> bool:
        return any(t > 0 and g.size * t < n for t in targets)

    while len(groups) > 1:
        small = [i for i, g in enumerate(groups) if too_small(g)]
        if not small:
            break
        i = min(small, key=lambda j: (groups[j].size, j))
        if i == 0:
            j = 1
        elif i == len(groups) - 1 or not numeric:
            j = i - 1
        else:
            below = groups[i].keys[0][0] - groups[i - 1].keys[-1][0]
            above = groups[i + 1].keys[0][0] - groups[i].keys[-1][0]
            j = i - 1 if below <= above else i + 1
        lo, hi = min(i, j), max(i, j)
        groups[lo:hi + 1] = [Group(groups[lo].keys + groups[hi].keys, groups[lo].size + groups[hi].size)]
    merges = [f"{_label(names, g.keys)} ({g.size} rows)" for g in groups if len(g.keys) > 1]
    return groups, merges


def _label(names: tuple[str, ...], keys: list[tuple[Any, ...]]) -> str:
    """``len_bucket=3+4``, or ``(meta.src,len_bucket)=(a,3)+(a,4)`` for several fields."""
    if len(names) == 1:
        return f"{names[0]}=" + "+".join(str(k[0]) for k in keys)
    return f"({','.join(names)})=" + "+".join("(" + ",".join(str(v) for v in k) + ")" for k in keys)


def assign(
    strata: np.ndarray, primary: np.ndarray, tie: np.ndarray, group_val: np.ndarray, group_test: np.ndarray
) -> np.ndarray:
    """Split codes per row: within each group, rows in hash order; the first go to validation, then test.

    ``strata`` holds each row's group index; ``group_val``/``group_test`` how many rows each group gives.
    """
    n = len(strata)
    order = np.lexsort((np.arange(n), tie, primary, strata))
    sorted_groups = strata[order]
    starts = np.searchsorted(sorted_groups, np.arange(len(group_val)), side="left")
    rank = np.arange(n) - starts[sorted_groups]
    val = group_val[sorted_groups]
    test = group_test[sorted_groups]
    codes_sorted = np.where(rank < val, VALIDATION, np.where(rank < val + test, TEST, TRAIN)).astype(np.int8)
    codes = np.empty(n, dtype=np.int8)
    codes[order] = codes_sorted
    return codes


@dataclass
class Quotas:
    """What the strata's sizes decide before any row is placed: each stratum's group (after merging small ones),
    how many validation and test rows each group gives, the split totals and the merges made."""

    group_of: dict[tuple[Any, ...], int]
    val: np.ndarray
    test: np.ndarray
    counts: dict[str, int]
    merges: list[str]


def plan_quotas(strata: dict[tuple[Any, ...], int], options: SplitOptions) -> Quotas:
    """The quotas for rows counted per stratum key; a pure function of the counts and the options, so a cluster
    that counts strata with a groupby gets the quotas a single :class:`Splitter` computes."""
    n = sum(strata.values())
    k_val = options.val_size.target(n)
    k_test = options.test_size.target(n) if options.test_size else 0
    if k_val + k_test > n:
        raise DataprepError(f"split: asked for {k_val + k_test} held-out rows but the input has {n}")
    groups, merges = merge_small(strata, [k_val, k_test], n, options.stratify_by)
    group_of = {key: g for g, group in enumerate(groups) for key in group.keys}
    group_sizes = [g.size for g in groups]
    val = allocate([Fraction(s * k_val, n) for s in group_sizes], group_sizes, k_val) if n else []
    rest = [s - v for s, v in zip(group_sizes, val, strict=True)]
    test = allocate([Fraction(s * k_test, n) for s in group_sizes], rest, k_test) if n else []
    counts = {"train": n - k_val - k_test, "validation": k_val}
    if options.test_size:
        counts["test"] = k_test
    return Quotas(group_of, np.asarray(val, dtype=np.int64), np.asarray(test, dtype=np.int64), counts, merges)


def split_row(record: Record, options: SplitOptions) -> tuple[Record, tuple[Any, ...], bytes]:
    """What decides one row's split, but for ties: the row as split writes it (``len_bucket`` set, ``split``
    dropped), its stratum key and its first ordering hash (``blake2b(seed, id)``). Raises :class:`MissingField`
    for a row without a stratify field."""
    record = dict(record)
    record.pop("split", None)
    record["len_bucket"] = len_bucket(record, options.bucket_by, options.bucket_width, options.max_bucket)
    key = tuple(_hashable(field_value(record, name)) for name in options.stratify_by)
    seed = str(options.seed).encode("utf-8") + b"\x00"
    return record, key, _hash64(seed + str(record.get("id", "")).encode("utf-8"))


def split_keys(record: Record, options: SplitOptions) -> tuple[Record, tuple[Any, ...], bytes, bytes]:
    """:func:`split_row` and the row's JSON line, whose hash orders rows of one stratum with the same first
    hash."""
    record, key, first = split_row(record, options)
    return record, key, first, dumps(record).encode("utf-8")


def with_split(record: Record, line: str, split: str) -> tuple[Record, str]:
    """The row ``record`` (whose JSON is ``line``) with its split set, in canonical key order, and its JSON.

    Nearly every row is in canonical order already, with ``split`` the one key left to add at the end: its JSON
    is then ``line`` with the key appended, so the row is not encoded a second time.
    """
    record["split"] = split
    out = ordered(record)
    if out is record:  # in order with "split" last, so no key ranks after it
        return out, f'{line[:-1]},"split":"{split}"}}'
    return out, dumps(out)


def derive(record: Record, bucket: int, split: str) -> Record:
    """The row split writes for input row ``record`` given its bucket and split: :func:`split_row`'s copy (split
    dropped, ``len_bucket`` set) with :func:`with_split`'s ``split`` and key order. How the run's cache rebuilds
    split's rows from the entry split read them from (:class:`dataprep.cache.RecordsFile` ``derived``)."""
    out = dict(record)
    out.pop("split", None)
    out["len_bucket"] = bucket
    out["split"] = split
    return ordered(out)


@dataclass
class Splitter:
    """Collects records (spooling them to disk), then assigns every split at once and streams them back.

    Use: ``add()`` each batch, then iterate ``finish()``; afterwards ``counts`` and ``merges`` describe the result.
    Each added batch is spooled as one ``marshal`` blob of its rows' JSON lines and input locations: the file
    lives only as long as this process, strings read back far cheaper than records, and the lines (needed for
    the tie hash anyway) become the output's lines, so no row is encoded twice. The rows come back as
    :class:`LazyRecords`, decoded only if something after split looks at them (tokenize does; a JSONL writer
    does not). A row whose keys would not be in canonical order with ``split`` last (rare: ``meta`` or extra
    keys) is spooled as a record as well, to be reordered when its split is known.
    """

    options: SplitOptions
    spool_dir: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    merges: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        spool = tempfile.TemporaryFile(prefix="dataprep-split-", dir=self.spool_dir)  # noqa: SIM115 - see close()
        self._spool: IO[bytes] = spool
        self._strata: dict[tuple[Any, ...], int] = {}
        self._rows_strata: list[np.ndarray] = []
        self._primary: list[np.ndarray] = []
        self._tie: list[np.ndarray] = []
        self._blobs: list[int] = []  # the size of each spooled batch

    def add(self, records: Sequence[Record], locations: list[str] | None = None,
            encoded: list[str] | None = None) -> list[Rejected]:
        """Spool the records (with where each came from, so rows emitted at the end still name their line); a
        record without a stratify field is rejected (``missing_stratify_field``). ``encoded``: the records' JSON
        lines when the caller has them (a row with only ``len_bucket`` added is that line with the key added)."""
        opts = self.options
        rejected: list[Rejected] = []
        strata: list[int] = []
        lines: list[str] = []
        wheres: list[str] = []
        primary: list[bytes] = []
        unordered: dict[int, Record] = {}
        seed = str(opts.seed).encode("utf-8") + b"\x00"
        by_bucket = opts.stratify_by == ("len_bucket",)
        index = self._strata
        for i, record in enumerate(records):
            if encoded is not None and by_bucket and "len_bucket" not in record and "split" not in record:
                # the usual row: its line is given and its stratum is its bucket, so nothing is copied or encoded
                bucket = len_bucket(record, opts.bucket_by, opts.bucket_width, opts.max_bucket)
                key: tuple[Any, ...] = (bucket,)
                first = _hash64(seed + str(record.get("id", "")).encode("utf-8"))
                line = f'{encoded[i][:-1]},"len_bucket":{bucket}}}'
                if not in_canonical_order((*record, "len_bucket", "split")):
                    unordered[len(lines)] = {**record, "len_bucket": bucket}
            else:
                try:
                    record, key, first = split_row(record, opts)
                except MissingField as exc:
                    record = dict(record)
                    record.pop("split", None)
                    record["len_bucket"] = len_bucket(record, opts.bucket_by, opts.bucket_width, opts.max_bucket)
                    rejected.append(Rejected(record, "missing_stratify_field",
                                             f"no value for field {exc.args[0]!r}", index=i))
                    continue
                given = encoded is not None and "len_bucket" not in records[i] and "split" not in records[i]
                line = f'{encoded[i][:-1]},"len_bucket":{record["len_bucket"]}}}' if given else dumps(record)  # type: ignore[index]
                if not in_canonical_order((*record, "split")):
                    unordered[len(lines)] = record
            lines.append(line)
            wheres.append(locations[i] if locations else "")
            stratum = index.get(key)
            if stratum is None:
                stratum = index[key] = len(index)
            strata.append(stratum)
            primary.append(first)
        if lines:
            blob = marshal.dumps((wheres, lines, unordered))
            self._spool.write(blob)
            self._blobs.append(len(blob))
            self._rows_strata.append(np.asarray(strata, dtype=np.int32))
            self._primary.append(np.frombuffer(b"".join(primary), dtype=">u8"))
            self._tie.append(np.frombuffer(b"".join([_hash64(line.encode("utf-8")) for line in lines]), dtype=">u8"))
        return rejected

    def _codes(self) -> np.ndarray:
        stratum_of_row = np.concatenate(self._rows_strata) if self._rows_strata else np.zeros(0, np.int32)
        self._rows_strata = []
        primary = np.concatenate(self._primary) if self._primary else np.zeros(0, ">u8")
        tie = np.concatenate(self._tie) if self._tie else np.zeros(0, ">u8")
        self._primary, self._tie = [], []

        sizes = np.bincount(stratum_of_row, minlength=len(self._strata))
        quotas = plan_quotas({k: int(sizes[i]) for k, i in self._strata.items()}, self.options)
        self.counts, self.merges = quotas.counts, quotas.merges
        group_of_stratum = np.zeros(len(self._strata), dtype=np.int32)
        for key, i in self._strata.items():
            group_of_stratum[i] = quotas.group_of[key]
        return assign(group_of_stratum[stratum_of_row], primary, tie, quotas.val, quotas.test)

    def finish(self) -> Iterator[Batch]:
        """Assign all splits, then yield the rows in input order (a batch per spooled batch), with
        ``len_bucket`` and ``split`` set and their keys in canonical order, as batches that remember each row's
        input location and carry each row's JSON line."""
        codes = self._codes().tolist()
        self._spool.seek(0)
        row = 0
        for size in self._blobs:
            wheres, lines, unordered = marshal.loads(self._spool.read(size))
            names = [SPLITS[c] for c in codes[row:row + len(lines)]]
            row += len(lines)
            out = [f'{line[:-1]},"split":"{name}"}}' for line, name in zip(lines, names, strict=True)]
            for i, record in unordered.items():
                out[i] = with_split(record, lines[i], names[i])[1]
            yield Batch("", LazyRecords(out), locs=wheres, canonical=True, encoded=out)  # type: ignore[arg-type]
        self.close()

    def close(self) -> None:
        self._spool.close()


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True, ensure_ascii=False) if isinstance(value, (dict, list)) else value


class SplitStage:
    """``split`` as a stage: holds every row (spooled), emits them all at the end with their split."""

    name = STAGE

    def __init__(self, options: SplitOptions) -> None:
        self.splitter = Splitter(options)

    def process(self, batch: Batch) -> tuple[list[Record], list[Rejected]]:
        part, positions, malformed = canonical_part(batch)
        locations = [part.location(i) for i in range(len(part))]
        return [], malformed + remap(self.splitter.add(part.records, locations, part.encoded), positions)

    def finish(self) -> Iterator[tuple[Batch, list[Rejected]]]:
        for batch in self.splitter.finish():
            yield batch, []

    def facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = dict(self.splitter.counts)
        if self.splitter.merges:
            facts["merged"] = "; ".join(self.splitter.merges)
        return facts

    def close(self) -> None:
        self.splitter.close()
