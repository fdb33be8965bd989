"""Leakage inside a dataset's own splits: held-out rows that are near duplicates of, or share a long run of
words with, a training row.

Each row is a list of text segments: its turns (a records file), or the text between special tokens (a
tokenized folder, decoded). Held-out rows (every split but ``train``) are collected first; then their MinHash
signatures (:mod:`dataprep.dedup`, the shingles and threshold of ``filter --dedup near``) and word n-grams
(:mod:`dataprep.shingles`, the normalization and length of ``filter --decontaminate``; an n-gram never runs
from one segment into the next) are indexed. Training rows stream past the index in batches, so memory grows
with the held-out rows only. A held-out row is reported with the first training row (in input order) that
matches it.

Boilerplate: a segment found in many held-out rows (more than 5% of them, and at least 3) is text every row
carries, such as a default system prompt or a constant instruction header, not leakage. Such segments are
left out of both checks, on both sides, and counted in the summary.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataprep.decontam import DEFAULT_NGRAM
from dataprep.dedup import DEFAULT_THRESHOLD, NUM_PERM, KeyIndex, band_keys, lsh_params, signatures
from dataprep.shingles import word_ngrams

EXAMPLES = 5
PER_KEY = 64  # held-out rows looked at per shared key
BOILERPLATE_SHARE = 0.05
BOILERPLATE_MIN_ROWS = 3
BATCH = 2048

Segments = list[str]


def _digest(segment: str) -> bytes:
    return hashlib.blake2b(" ".join(segment.split()).encode("utf-8"), digest_size=12).digest()


@dataclass
class HeldOut:
    """The held-out rows, their index once built, and what training rows were found to share with them."""

    threshold: float = DEFAULT_THRESHOLD
    ngram: int = DEFAULT_NGRAM
    rows: list[tuple[str, str]] = field(default_factory=list)  # (split, id)
    near: dict[int, tuple[str, float]] = field(default_factory=dict)
    overlap: dict[int, str] = field(default_factory=dict)
    train_rows: int = 0
    boilerplate: set[bytes] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.bands, self.band_rows = lsh_params(self.threshold)
        self.need = math.ceil(self.threshold * NUM_PERM - 1e-9)
        self._pending: list[Segments] = []
        self._sigs = np.zeros((0, NUM_PERM), dtype=np.uint16)
        self._bands = KeyIndex()
        self._ngrams = KeyIndex()
        self._built = False

    def add(self, split: str, ids: list[str], rows: list[Segments]) -> None:
        """Collect held-out rows (indexed when the first training batch arrives)."""
        if self._built:
            raise RuntimeError("held-out rows must all come before the first training row")
        self.rows.extend((split, i) for i in ids)
        self._pending.extend(rows)

    def _strip(self, rows: list[Segments]) -> list[Segments]:
        return [[s for s in row if s and _digest(s) not in self.boilerplate] for row in rows]

    def _build(self) -> None:
        self._built = True
        per_row = Counter(d for row in self._pending for d in {_digest(s) for s in row if s})
        limit = max(BOILERPLATE_MIN_ROWS, int(BOILERPLATE_SHARE * len(self._pending)))
        self.boilerplate = {d for d, n in per_row.items() if n > limit}
        rows, self._pending = self._strip(self._pending), []
        chunks = []
        for start in range(0, len(rows), BATCH):
            batch = rows[start:start + BATCH]
            sigs, valid = signatures(["\n".join(r) for r in batch])
            chunks.append(sigs.astype(np.uint16))
            keys = band_keys(sigs, self.bands, self.band_rows)[valid]
            self._bands.add(keys.ravel(), np.repeat(np.flatnonzero(valid) + start, self.bands).astype(np.uint32))
            hashes, owners = self._ngram_hashes(batch, start)
            pairs = np.unique(np.stack([hashes, owners.astype(np.uint64)], axis=1), axis=0)
            self._ngrams.add(pairs[:, 0], pairs[:, 1].astype(np.uint32))
        if chunks:
            self._sigs = np.concatenate(chunks)

    def _ngram_hashes(self, rows: list[Segments], base: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Every segment's n-gram hashes, with the (base-relative) row each came from."""
        texts = [s for row in rows for s in row]
        owner = np.repeat(np.arange(len(rows)), [len(row) for row in rows])
        hashes, counts, _ = word_ngrams(texts, self.ngram)
        return hashes, np.repeat(owner, counts) + base

    def check(self, ids: list[str], rows: list[Segments]) -> None:
        """Look a batch of training rows up; the first match of each held-out row is kept."""
        if not self._built:
            self._build()
        self.train_rows += len(rows)
        if not rows or not self.rows:
            return
        rows = self._strip(rows)
        sigs, valid = signatures(["\n".join(r) for r in rows])
        keys = band_keys(sigs, self.bands, self.band_rows)
        query, found = self._bands.lookup(keys[valid].ravel(), PER_KEY)
        if len(query):
            train = np.flatnonzero(valid)[query // self.bands]
            pairs = np.unique((train.astype(np.int64) << 32) | found.astype(np.int64))
            train, other = pairs >> 32, pairs & 0xFFFFFFFF
            equal = (sigs[train].astype(np.uint16) == self._sigs[other]).sum(axis=1)
            for t, h, e in zip(train.tolist(), other.tolist(), equal.tolist(), strict=True):
                if e >= self.need and h not in self.near:
                    self.near[h] = (ids[t], e / NUM_PERM)
        hashes, owners = self._ngram_hashes(rows)
        query, found = self._ngrams.lookup(hashes, PER_KEY)
        if len(query):
            train = owners[query]
            order = np.lexsort((train, found))
            for t, h in zip(train[order].tolist(), found[order].tolist(), strict=True):
                if h not in self.overlap:
                    self.overlap[h] = ids[t]

    def summary(self) -> dict[str, Any]:
        per_split: dict[str, Any] = {}
        for index, (split, row_id) in enumerate(self.rows):
            entry = per_split.setdefault(split, {"rows": 0, "near_duplicates": 0, "ngram_overlaps": 0, "either": 0,
                                                 "examples": []})
            entry["rows"] += 1
            near, overlap = self.near.get(index), self.overlap.get(index)
            entry["near_duplicates"] += near is not None
            entry["ngram_overlaps"] += overlap is not None
            entry["either"] += near is not None or overlap is not None
            if (near or overlap) and len(entry["examples"]) < EXAMPLES:
                example: dict[str, Any] = {"id": row_id}
                if near is not None:
                    example.update(train_id=near[0], similarity=round(near[1], 3))
                else:
                    example.update(train_id=overlap, ngram=self.ngram)
                entry["examples"].append(example)
        from dataprep.manifest import split_order

        return {"threshold": self.threshold, "ngram": self.ngram, "train_rows": self.train_rows,
                "boilerplate_segments": len(self.boilerplate),
                "splits": {s: per_split[s] for s in split_order(list(per_split))}}
