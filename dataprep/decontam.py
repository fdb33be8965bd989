"""Decontamination: find training rows that share a long run of words with any row of an evaluation set.

A row is contaminated when some ``n`` consecutive normalized words of its conversation (every turn, see
:func:`shingles.conversation_text`; default ``n`` = 13, as in the GPT-3 paper's overlap analysis) also occur,
in that order, inside one text field of an evaluation row. Normalization (:mod:`dataprep.shingles`) drops case,
punctuation and spacing, so reformatting does not hide an overlap.

Evaluation rows may be in any format dataprep reads (alpaca, ShareGPT, messages, canonical, CSV, Parquet, a
saved dataset): every string anywhere in a row counts, each on its own (n-grams do not run from one field into
the next, so a row's metadata cannot make spurious matches). A text of fewer than ``n`` words has no n-gram
and cannot match; :attr:`EvalIndex.short_rows` counts the rows with no n-gram at all, so a user learns when
``--ngram`` is too long for the evaluation set.

Memory: the evaluation n-grams are held as one sorted ``uint64`` array of hashes plus the ``uint32`` row each
first came from (12 bytes per distinct n-gram) and one location string per evaluation row. The training side
streams: each batch is hashed and looked up with one ``searchsorted``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataprep.errors import UsageProblem
from dataprep.io import read_batches
from dataprep.records import Record
from dataprep.shingles import conversation_text, word_ngrams

DEFAULT_NGRAM = 13
QUOTE_CHARS = 80


@dataclass(frozen=True)
class Overlap:
    """The first evaluation n-gram found in a training row: where it comes from and the words themselves."""

    location: str
    words: str


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value, depth first, in key order."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@dataclass
class EvalIndex:
    """The n-gram hashes of one or more evaluation files, and where each came from."""

    ngram: int = DEFAULT_NGRAM
    hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint32))
    locations: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    short_rows: int = 0

    @classmethod
    def from_files(cls, paths: list[str] | tuple[str, ...], ngram: int = DEFAULT_NGRAM,
                   input_format: str | None = None) -> EvalIndex:
        """Read every row of every file (formats as ``dataprep.io.read_batches`` detects them)."""
        if ngram < 1:
            raise UsageProblem(f"--ngram must be at least 1, got {ngram}")
        index = cls(ngram=ngram, files=list(paths))
        chunks: list[tuple[np.ndarray, np.ndarray]] = []
        for path in paths:
            for batch in read_batches(path, fmt=input_format):
                chunks.append(index._hash_batch(batch.records, [batch.location(i) for i in range(len(batch))]))
        if chunks:
            hashes = np.concatenate([h for h, _ in chunks])
            rows = np.concatenate([r for _, r in chunks])
            order = np.lexsort((rows, hashes))
            hashes, rows = hashes[order], rows[order]
            first = np.ones(len(hashes), dtype=bool)
            first[1:] = hashes[1:] != hashes[:-1]
            index.hashes, index.rows = hashes[first], rows[first]
        return index

    def _hash_batch(self, records: list[Record], locations: list[str]) -> tuple[np.ndarray, np.ndarray]:
        base = len(self.locations)
        texts: list[str] = []
        owner: list[int] = []
        for i, record in enumerate(records):
            for text in _strings(record):
                texts.append(text)
                owner.append(base + i)
        self.locations.extend(locations)
        hashes, counts, _ = word_ngrams(texts, self.ngram)
        rows = np.repeat(np.asarray(owner, dtype=np.uint32), counts)
        per_row = np.bincount(np.asarray(owner, dtype=np.int64) - base, weights=counts, minlength=len(records))
        self.short_rows += int((per_row == 0).sum())
        return hashes, rows

    def __len__(self) -> int:
        return len(self.hashes)

    def check(self, records: list[Record]) -> list[Overlap | None]:
        """For each training record, its first n-gram found in the evaluation set, or ``None``."""
        return self.check_texts([conversation_text(r) for r in records])

    def check_texts(self, texts: list[str]) -> list[Overlap | None]:
        results: list[Overlap | None] = [None] * len(texts)
        if not len(self.hashes) or not texts:
            return results
        hashes, counts, tokens = word_ngrams(texts, self.ngram)
        at = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        hit = np.flatnonzero(self.hashes[at] == hashes)
        if not len(hit):
            return results
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        owner = np.searchsorted(starts, hit, side="right") - 1
        rows, first = np.unique(owner, return_index=True)
        for row, h in zip(rows.tolist(), hit[first].tolist(), strict=True):
            k = h - int(starts[row])
            quote = " ".join(tokens[row].to_list()[k:k + self.ngram])
            if len(quote) > QUOTE_CHARS:
                quote = quote[: QUOTE_CHARS - 1] + "…"
            results[row] = Overlap(self.locations[int(self.rows[at[h]])], quote)
        return results

    def describe(self) -> str:
        """For the summary line: what was loaded."""
        text = (f"{len(self.files)} eval file{'s' if len(self.files) != 1 else ''}, {len(self.locations):,} rows, "
                f"{len(self.hashes):,} {self.ngram}-grams")
        if self.short_rows:
            rows = "row" if self.short_rows == 1 else "rows"
            text += f", {self.short_rows:,} {rows} under {self.ngram} words never match"
        return text
