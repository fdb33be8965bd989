"""Normalized words and 64-bit hashes of their n-grams, for near-duplicate detection and decontamination.

Normalization: lowercase, then keep word characters only. A word is a run of Unicode word characters
(``\\w``), except that each Han, Hiragana, Katakana or Hangul character is a word of its own: those scripts
write no spaces, and a whole Chinese sentence as one "word" would make n-grams useless. Punctuation,
whitespace and case therefore never tell two texts apart. The split runs in polars (Rust regex, all cores).

Character shingles (near-dedup) hash code points with the splitmix64 mixer, so signatures are the same on
every machine and run (no Python ``hash()``, whose salt changes per process). Word n-grams (decontamination)
hash words with polars' string hash: those hashes are only compared within one process, never stored, so
only their collision rate (2**-64) matters, not their values. An n-gram's hash is a polynomial over its
items' hashes, finished with the mixer; everything after the split is numpy over whole batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dataprep.records import Record

if TYPE_CHECKING:
    import polars as pl

_SEPARATE = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
WORD = rf"[{_SEPARATE}]|[^\W{_SEPARATE}]+"
# An odd multiplier that is 3 mod 4, so that swapping two items changes the sum by (1 - P) * d, a number with
# a single factor of two: no n-gram collides with its own permutation more often than by chance.
POLY = np.uint64(0x9E3779B97F4A7C17)
WORD_SEED = 0x5EED


def conversation_text(record: Record) -> str:
    """Every turn of a canonical record, system prompt first, one per line: the text dedup compares.

    ``tools`` (the same function list repeats across many rows) and ``meta`` are left out.
    """
    parts = [record.get("prefix") or ""]
    for pair in record.get("history") or []:
        parts.extend(str(t) for t in pair)
    parts += [record.get("prompt") or "", record.get("query") or "", record.get("response") or ""]
    return "\n".join(p for p in parts if p)


def split_words(texts: list[str]) -> pl.Series:
    """The normalized words of each text, as a polars list column (polars is imported here, on first use: a run
    without dedup or decontamination never loads it)."""
    import polars as pl

    return pl.Series(texts, dtype=pl.String).str.to_lowercase().str.extract_all(WORD)


def words(text: str) -> list[str]:
    """The normalized words of one text."""
    return split_words([text])[0].to_list()


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection on uint64 that spreads every input bit over the whole output."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def window_hashes(items: np.ndarray, lengths: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every run of ``n`` consecutive items inside each row; ``items`` holds the rows back to back.

    Returns the hashes (rows back to back) and how many each row has: ``max(len - n + 1, 0)``. A row shorter
    than ``n`` has none.
    """
    total = int(lengths.sum())
    acc = np.zeros(total, dtype=np.uint64)
    power = np.ones(1, dtype=np.uint64)
    for k in range(n):
        if k >= total:
            break
        acc[: total - k] += items[k:] * power
        power = power * POLY
    counts = np.maximum(lengths - n + 1, 0)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    positions = np.repeat(starts - offsets, counts) + np.arange(int(counts.sum()), dtype=np.int64)
    return mix64(acc[positions]), counts


def char_shingles(texts: list[str], n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the ``n``-character windows of each text's normalized words joined by single spaces.

    A normalized text shorter than ``n`` characters (but not empty) is one shingle, itself; an empty one
    (no word characters at all) has none. Returns the hashes back to back and the count per text.
    """
    normal = split_words(texts).list.join(" ").to_list()
    lengths = np.fromiter(map(len, normal), dtype=np.int64, count=len(normal))
    joined = "".join(t.ljust(n, "\x00") if 0 < len(t) < n else t for t in normal)
    lengths = np.where((lengths > 0) & (lengths < n), n, lengths)
    points = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    return window_hashes(mix64(points + np.uint64(0x632BE59BD9B4E019)), lengths, n)


def word_ngrams(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray, pl.Series]:
    """Hashes of every ``n``-word window of each text (none for a text of fewer than ``n`` words).

    Returns the hashes back to back, the count per text, and the words of each text (to quote a match).
    """
    tokens = split_words(texts)
    lengths = tokens.list.len().to_numpy().astype(np.int64)
    flat = tokens.explode().drop_nulls().hash(seed=WORD_SEED).to_numpy()
    hashes, counts = window_hashes(mix64(flat), lengths, n)
    return hashes, counts, tokens
