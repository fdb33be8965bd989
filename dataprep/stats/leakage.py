"""Leakage inside a dataset's own splits: held-out rows that are near duplicates of, or share a long run of
words with, a training row.

The held-out rows (every split but ``train``) are indexed first: their MinHash band keys and signatures
(:mod:`dataprep.dedup`, same shingles and threshold as ``filter --dedup near``) and their word n-grams
(:mod:`dataprep.shingles`, same normalization and length as ``filter --decontaminate``). Training rows then
stream past the index in batches, so memory grows with the held-out rows only. A held-out row is reported
with the first training row (in input order) that matches it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataprep.decontam import DEFAULT_NGRAM
from dataprep.dedup import DEFAULT_THRESHOLD, NUM_PERM, KeyIndex, band_keys, lsh_params, signatures
from dataprep.shingles import word_ngrams

EXAMPLES = 5
PER_KEY = 64  # held-out rows looked at per shared key; bounds the work on boilerplate


@dataclass
class HeldOut:
    """Index of the held-out rows, and what the training rows were found to share with them."""

    threshold: float = DEFAULT_THRESHOLD
    ngram: int = DEFAULT_NGRAM
    bands_index: KeyIndex = field(default_factory=KeyIndex)
    ngram_index: KeyIndex = field(default_factory=KeyIndex)
    rows: list[tuple[str, str]] = field(default_factory=list)  # (split, id)
    near: dict[int, tuple[str, float]] = field(default_factory=dict)
    overlap: dict[int, str] = field(default_factory=dict)
    train_rows: int = 0

    def __post_init__(self) -> None:
        self.bands, self.band_rows = lsh_params(self.threshold)
        self.need = math.ceil(self.threshold * NUM_PERM - 1e-9)
        self._sigs: list[np.ndarray] = []

    def add(self, split: str, ids: list[str], texts: list[str]) -> None:
        """Index a batch of held-out rows."""
        if not texts:
            return
        base = len(self.rows)
        self.rows.extend((split, i) for i in ids)
        sigs, valid = signatures(texts)
        self._sigs.append(sigs.astype(np.uint16))
        keys = band_keys(sigs, self.bands, self.band_rows)[valid]
        self.bands_index.add(keys.ravel(), np.repeat(np.flatnonzero(valid) + base, self.bands).astype(np.uint32))
        hashes, counts, _ = word_ngrams(texts, self.ngram)
        self.ngram_index.add(hashes, np.repeat(np.arange(base, base + len(texts)), counts).astype(np.uint32))

    def check(self, ids: list[str], texts: list[str]) -> None:
        """Look a batch of training rows up; the first match of each held-out row is kept."""
        self.train_rows += len(texts)
        if not texts or not self.rows:
            return
        held = np.concatenate(self._sigs)
        sigs, valid = signatures(texts)
        keys = band_keys(sigs, self.bands, self.band_rows)
        query, found = self.bands_index.lookup(keys[valid].ravel(), PER_KEY)
        if len(query):
            train = np.flatnonzero(valid)[query // self.bands]
            pairs = np.unique((train.astype(np.int64) << 32) | found.astype(np.int64))
            train, other = pairs >> 32, pairs & 0xFFFFFFFF
            equal = (sigs[train].astype(np.uint16) == held[other]).sum(axis=1)
            for t, h, e in zip(train.tolist(), other.tolist(), equal.tolist(), strict=True):
                if e >= self.need and h not in self.near:
                    self.near[h] = (ids[t], e / NUM_PERM)
        hashes, counts, _ = word_ngrams(texts, self.ngram)
        query, found = self.ngram_index.lookup(hashes, PER_KEY)
        if len(query):
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
            train = np.searchsorted(starts, query, side="right") - 1
            order = np.lexsort((train, found))
            for t, h in zip(train[order].tolist(), found[order].tolist(), strict=True):
                if h not in self.overlap:
                    self.overlap[h] = ids[t]

    def summary(self) -> dict[str, Any]:
        per_split: dict[str, Any] = {}
        for index, (split, _) in enumerate(self.rows):
            entry = per_split.setdefault(split, {"rows": 0, "near_duplicates": 0, "ngram_overlaps": 0, "either": 0,
                                                 "examples": []})
            entry["rows"] += 1
            near, overlap = self.near.get(index), self.overlap.get(index)
            entry["near_duplicates"] += near is not None
            entry["ngram_overlaps"] += overlap is not None
            entry["either"] += near is not None or overlap is not None
            if (near or overlap) and len(entry["examples"]) < EXAMPLES:
                example: dict[str, Any] = {"id": self.rows[index][1]}
                if near is not None:
                    example.update(train_id=near[0], similarity=round(near[1], 3))
                else:
                    example.update(train_id=overlap, ngram=self.ngram)
                entry["examples"].append(example)
        return {"threshold": self.threshold, "ngram": self.ngram, "train_rows": self.train_rows,
                "splits": per_split}
