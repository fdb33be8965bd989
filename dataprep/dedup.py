"""Near-duplicate detection: MinHash signatures, LSH band keys, and a keep-the-first index in bounded memory.

How two rows are compared. Each row's text (every turn, :func:`shingles.conversation_text`) is normalized
(case, punctuation and whitespace dropped) and cut into overlapping 5-character shingles; two rows are near
duplicates when the Jaccard similarity of their shingle sets is at least the threshold. Character shingles
were chosen by measurement: on real alpaca rows with planted edits (a word in twenty reworded, two sentences
swapped, case and spacing changed) their Jaccard stays at 0.75 or more for 95% of pairs, while the most
similar *distinct* row of a row stays under 0.29 for 99% of rows; word bigrams and trigrams separate the two
groups less well (see ``bin/bench_near_dedup.py``).

Signatures are R-MinHash sketches from ``rensa`` (128 slots, a fixed seed: the same text gives the same
signature on every machine and run). Each signature is cut into ``bands`` bands of ``rows`` slots, and each
band hashed to a 64-bit key that also encodes the band's number: rows that share any key are candidates, and
a candidate is a near duplicate only when the share of equal slots (the estimated Jaccard) reaches the
threshold. ``bands``/``rows`` are chosen so that a pair exactly at the threshold becomes a candidate with
probability at least 0.99; the verification then gives the threshold its sharp meaning.

Keep-the-first. Rows are decided in input order: a row is dropped when it is a near duplicate of a row kept
before it, and the reject names that kept row (the earliest one that verifies). Only kept rows are indexed,
so every dropped row is similar to some kept row, and no two kept rows are (up to the sketch's error).

Memory per kept row: its id, a 256-byte signature (128 slots, 16 bits each: two different slots agree by
chance once in 65,536, far below the estimate's own error), and one 12-byte key entry per band, in sorted
numpy arrays merged like an LSM tree. About 0.6 KiB per kept row at the default threshold; nothing else
grows with the input.

For distributed runs, :func:`signatures` and :func:`band_keys` are pure functions of a batch's texts (and the
seed), so band keys can be grouping keys; the keep-the-first decision needs only, per row, its candidates and
its signature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from dataprep.errors import UsageProblem
from dataprep.records import Record
from dataprep.shingles import POLY, char_shingles, conversation_text, mix64

NUM_PERM = 128
SHINGLE = 5
SEED = 1
DEFAULT_THRESHOLD = 0.7
CANDIDATE_RECALL = 0.99  # P(a pair exactly at the threshold shares a band)
MAX_CANDIDATES = 64  # verified per row, earliest kept first; bounds the work on highly templated data
_BAND_SALT = np.uint64(0xD6E8FEB86659FD93)


def lsh_params(threshold: float, num_perm: int = NUM_PERM, recall: float = CANDIDATE_RECALL) -> tuple[int, int]:
    """``(bands, rows)``: the most rows per band (fewest spurious candidates) that still give a pair at the
    threshold at least ``recall`` probability of sharing a band."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1


def signatures(texts: list[str], num_perm: int = NUM_PERM, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures (``uint32``, one row per text) and a mask of the texts that have any shingle.

    A text without word characters has no shingles and no meaningful signature; callers never match it.
    """
    from rensa import RMinHash

    hashes, counts = char_shingles(texts, SHINGLE)
    if not texts:
        return np.zeros((0, num_perm), dtype=np.uint32), np.zeros(0, dtype=bool)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.uint64)
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, num_perm, seed)
    rows = matrix.to_rows()
    flat = np.fromiter(chain.from_iterable(rows), dtype=np.uint32, count=len(rows) * num_perm)
    return flat.reshape(len(rows), num_perm), counts > 0


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per band per signature (``uint64[n, bands]``); equal keys mean equal band slots
    (up to a 2**-64 chance). The band's number is mixed in, so one index can hold every band's keys."""
    slots = sigs[:, : bands * rows].astype(np.uint64).reshape(len(sigs), bands, rows)
    powers = np.concatenate(([1], np.cumprod(np.full(rows - 1, POLY, dtype=np.uint64)))).astype(np.uint64)
    salts = (np.arange(1, bands + 1, dtype=np.uint64) * _BAND_SALT).astype(np.uint64)
    return mix64((slots * powers).sum(axis=2, dtype=np.uint64) ^ salts)


@dataclass
class KeyIndex:
    """A multimap from uint64 keys to uint32 values in sorted numpy runs (12 bytes an entry).

    Runs are merged when the newest is at least half the size of the one before, so there are at most
    log2(n) runs and each entry is merged O(log n) times. Values come back in insertion order per key.
    """

    runs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(k) for k, _ in self.runs)

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        if not len(keys):
            return
        order = np.lexsort((np.arange(len(keys)), keys))
        self.runs.append((keys[order], values[order].astype(np.uint32)))
        while len(self.runs) > 1 and 2 * len(self.runs[-1][0]) >= len(self.runs[-2][0]):
            new_keys, new_values = self.runs.pop()
            old_keys, old_values = self.runs.pop()
            # equal keys: the older run's entries first, so values stay in insertion order
            at = np.searchsorted(old_keys, new_keys, side="right") + np.arange(len(new_keys))
            merged_keys = np.empty(len(old_keys) + len(new_keys), dtype=np.uint64)
            merged_values = np.empty(len(merged_keys), dtype=np.uint32)
            mask = np.ones(len(merged_keys), dtype=bool)
            mask[at] = False
            merged_keys[at], merged_values[at] = new_keys, new_values
            merged_keys[mask], merged_values[mask] = old_keys, old_values
            self.runs.append((merged_keys, merged_values))

    def lookup(self, keys: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Pairs ``(query position, value)`` for every stored entry equal to a query key, at most ``limit``
        per query key per run (the earliest inserted)."""
        queries, values = [], []
        order = np.argsort(keys)  # sorted queries walk each run once: several times faster on large runs
        ranks = np.empty_like(order)
        ranks[order] = np.arange(len(order))
        sorted_keys = keys[order]
        for run_keys, run_values in self.runs:
            lo = np.searchsorted(run_keys, sorted_keys, side="left")[ranks]
            hi = np.searchsorted(run_keys, sorted_keys, side="right")[ranks]
            count = np.minimum(hi - lo, limit)
            hit = np.flatnonzero(count)
            if not len(hit):
                continue
            count = count[hit]
            first = np.repeat(lo[hit] - np.concatenate(([0], np.cumsum(count)[:-1])), count)
            queries.append(np.repeat(hit, count))
            values.append(run_values[first + np.arange(int(count.sum()))])
        if not queries:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint32)
        return np.concatenate(queries), np.concatenate(values)


@dataclass(frozen=True)
class Match:
    """A row found to be a near duplicate of ``kept_id``, with the estimated Jaccard similarity."""

    kept_id: str
    similarity: float


class NearDedup:
    """Keep-the-first near-duplicate state shared by the batches of one run (see the module's docstring).

    ``check(records)`` decides a batch in order: ``None`` for a kept row (now indexed), a :class:`Match`
    for a dropped one.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, num_perm: int = NUM_PERM, seed: int = SEED) -> None:
        if not 0 < threshold <= 1:
            raise UsageProblem(f"--threshold must be above 0 and at most 1, got {threshold}")
        self.threshold = threshold
        self.num_perm = num_perm
        self.seed = seed
        self.bands, self.rows = lsh_params(threshold, num_perm)
        self.need = math.ceil(threshold * num_perm - 1e-9)  # equal slots needed
        self.index = KeyIndex()
        self.ids: list[str] = []
        self._sig_chunks: list[np.ndarray] = []
        self._chunk_starts: list[int] = []

    def __len__(self) -> int:
        return len(self.ids)

    def _kept_signatures(self, kept: np.ndarray) -> np.ndarray:
        chunk = np.searchsorted(np.asarray(self._chunk_starts), kept, side="right") - 1
        out = np.empty((len(kept), self.num_perm), dtype=np.uint16)
        for c in np.unique(chunk):
            sel = chunk == c
            out[sel] = self._sig_chunks[c][kept[sel] - self._chunk_starts[c]]
        return out

    def check(self, records: list[Record]) -> list[Match | None]:
        sigs, valid = signatures([conversation_text(r) for r in records], self.num_perm, self.seed)
        return self.check_signatures(sigs, valid, [str(r.get("id", "")) for r in records])

    def check_signatures(self, sigs: np.ndarray, valid: np.ndarray, ids: list[str]) -> list[Match | None]:
        """The decision for precomputed signatures (``valid`` False: never matched, always kept)."""
        n = len(ids)
        sig16 = sigs.astype(np.uint16)
        keys = band_keys(sigs, self.bands, self.rows)
        keys[~valid] = 0
        flat = keys.ravel()
        live = np.repeat(valid, self.bands)

        # candidates among rows kept by earlier batches, verified in one vectorized step
        earlier: dict[int, list[tuple[int, int]]] = {}
        query, kept = self.index.lookup(flat[live], MAX_CANDIDATES)
        if len(query):
            row = np.flatnonzero(live)[query] // self.bands
            pairs = np.unique((row << 32) | kept.astype(np.int64))
            pair_rows, pair_kept = pairs >> 32, pairs & 0xFFFFFFFF
            equal = (sig16[pair_rows] == self._kept_signatures(pair_kept)).sum(axis=1)
            for r, k, e in zip(pair_rows.tolist(), pair_kept.tolist(), equal.tolist(), strict=True):
                earlier.setdefault(r, []).append((k, e))

        # rows sharing a key with another row of this batch must be decided one after another
        order = np.argsort(flat, kind="stable")
        sorted_keys = flat[order]
        same = np.zeros(len(flat), dtype=bool)
        same[1:] = sorted_keys[1:] == sorted_keys[:-1]
        shared = same.copy()
        shared[:-1] |= same[1:]
        batch_rows = set((order[shared & live[order]] // self.bands).tolist())

        results: list[Match | None] = [None] * n
        local: dict[int, list[int]] = {}
        new_kept: list[int] = []
        for i in range(n):
            if not valid[i] or (i not in earlier and i not in batch_rows):
                new_kept.append(i)
                continue
            match = self._verify(i, earlier.get(i, []), keys[i], local, sig16, ids)
            if match is not None:
                results[i] = match
                continue
            new_kept.append(i)
            if i in batch_rows:
                for key in keys[i].tolist():
                    local.setdefault(key, []).append(i)
        self._add(np.asarray(new_kept, dtype=np.int64), keys, sig16, valid, ids)
        return results

    def _verify(self, i: int, earlier: list[tuple[int, int]], row_keys: np.ndarray,
                local: dict[int, list[int]], sig16: np.ndarray, ids: list[str]) -> Match | None:
        """The earliest kept row that verifies: rows kept by earlier batches first, then this batch's."""
        candidates = sorted(earlier)[:MAX_CANDIDATES]
        for kept, equal in candidates:
            if equal >= self.need:
                return Match(self.ids[kept], equal / self.num_perm)
        in_batch = sorted({j for key in row_keys.tolist() for j in local.get(key, ())})
        for j in in_batch[: MAX_CANDIDATES - len(candidates)]:
            equal = int((sig16[i] == sig16[j]).sum())
            if equal >= self.need:
                return Match(ids[j], equal / self.num_perm)
        return None

    def _add(self, rows: np.ndarray, keys: np.ndarray, sig16: np.ndarray, valid: np.ndarray, ids: list[str]) -> None:
        start = len(self.ids)
        self.ids.extend(ids[i] for i in rows.tolist())
        indexed = rows[valid[rows]]
        positions = start + np.searchsorted(rows, indexed)
        self.index.add(keys[indexed].ravel(), np.repeat(positions, self.bands))
        self._chunk_starts.append(start)
        self._sig_chunks.append(sig16[rows])
