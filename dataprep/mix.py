"""Mixing sources: how many times each row of each source goes into the output, exactly and seed-stably.

Every decision is a pure function of the rows' ids, their splits, their token counts and the seed, never of
arrival order or Python's salted ``hash()``, so a cluster that sees the rows in another order picks the same ones.

* **Order.** A source's rows are ranked by ``blake2b(seed, id)`` (ties: position in the source, which is fixed by
  the input and the stages before). Taking ``k`` rows means taking the first ``k`` in that order; taking more rows
  than there are cycles through the order again, so every row is copied ``k // n`` times and the first ``k % n``
  once more. Up- and down-sampling are the same rule.
* **Splits.** The split is decided before mixing, on each distinct row, so a row and its copies always share a
  split (no copy of a training row lands in validation). A source's quota is shared among its splits in proportion
  to its rows (or tokens) there, by largest remainders, so every split keeps the mixture.
* **Targets**, per source: ``rows`` (exactly that many), ``tokens`` (rows in order while the running total stays
  within the budget; the shortfall of one split carries to the next, the largest last, so the source ends within
  one row of its budget and never over it), or ``weight`` (a share of the output's rows: with ``total`` rows, or
  else the largest total that needs no source up-sampled). No target: every row once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from dataprep.split import allocate

TARGETS = ("weight", "rows", "tokens")


@dataclass
class SourceRows:
    """What mixing needs to know of a source's rows (after every stage before the mixture), in source order."""

    name: str
    ids: Sequence[str]
    splits: Sequence[str]
    tokens: np.ndarray | None = None  # tokens per row, when the rows are tokenized
    target: tuple[str, float] | None = None  # ("rows"|"tokens"|"weight", value), None: every row once

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class SourceMix:
    """The realised mixture of one source: a count per row (0 = left out), and the totals per split."""

    name: str
    counts: np.ndarray
    available: int
    target: tuple[str, float] | None
    rows: int = 0
    tokens: int | None = None
    splits: dict[str, dict[str, int | None]] = field(default_factory=dict)

    def fact(self) -> dict[str, object]:
        """The manifest's shape: ``{"rows", "tokens", "splits": {split: {"rows", "tokens"}}}`` plus the target."""
        out: dict[str, object] = {"rows": self.rows, "tokens": self.tokens, "splits": self.splits,
                                  "available_rows": self.available}
        if self.target is not None:
            out["target"] = {self.target[0]: self.target[1]}
        return out


def rank(ids: Sequence[str], seed: int) -> np.ndarray:
    """Positions of ``ids`` in sampling order: by ``blake2b(seed, id)``, ties by position."""
    prefix = str(seed).encode("utf-8") + b"\x00"
    keys = np.frombuffer(b"".join(hashlib.blake2b(prefix + str(i).encode("utf-8"), digest_size=8).digest()
                                  for i in ids), dtype=">u8")
    return np.lexsort((np.arange(len(ids)), keys))


def take(order: np.ndarray, k: int) -> np.ndarray:
    """Counts per row for the first ``k`` rows of ``order`` taken cyclically (``k`` may exceed the rows)."""
    n = len(order)
    counts = np.zeros(n, dtype=np.int64)
    if n == 0 or k <= 0:
        return counts
    counts[:] = k // n
    counts[order[: k % n]] += 1
    return counts


def take_tokens(order: np.ndarray, lengths: np.ndarray, budget: int) -> np.ndarray:
    """Counts per row for the longest cyclic prefix of ``order`` whose tokens stay within ``budget``."""
    n = len(order)
    counts = np.zeros(n, dtype=np.int64)
    total = int(lengths.sum())
    if n == 0 or budget <= 0 or total == 0:
        return counts
    rounds, rest = divmod(budget, total)
    counts[:] = rounds
    cumulative = np.cumsum(lengths[order])
    fits = int(np.searchsorted(cumulative, rest, side="right"))
    counts[order[:fits]] += 1
    return counts


def split_order(names: Sequence[str], weights: dict[str, int]) -> list[str]:
    """Splits smallest first, so the largest takes the remainders; ties by name."""
    return sorted(names, key=lambda s: (weights[s], s))


def row_quotas(sources: Sequence[SourceRows], total: int | None) -> list[int | None]:
    """Rows per source: its ``rows`` target, its share of the total by ``weight``, or None (every row once)."""
    weights = [s.target[1] for s in sources if s.target and s.target[0] == "weight"]
    quotas: list[int | None] = [int(s.target[1]) if s.target and s.target[0] == "rows" else None for s in sources]
    if not weights:
        return quotas
    shares = [Fraction(s.target[1]).limit_denominator(10**9) for s in sources]  # type: ignore[index]
    whole = sum(shares)
    shares = [w / whole for w in shares]
    caps = [len(s) for s in sources]
    if total is None:  # the largest total that needs no up-sampling
        total = min((int(Fraction(len(s)) / share) for s, share in zip(sources, shares, strict=True) if share),
                    default=0)
    else:
        caps = [total] * len(sources)
    return list(allocate([share * total for share in shares], caps, total))


def mix(sources: Sequence[SourceRows], seed: int, total: int | None = None) -> list[SourceMix]:
    """The count of every row of every source; see the module docstring for the rules."""
    quotas = row_quotas(sources, total)
    result = []
    for source, quota in zip(sources, quotas, strict=True):
        splits = np.asarray(source.splits, dtype=object)
        names = sorted(set(source.splits))
        members = {name: np.flatnonzero(splits == name) for name in names}
        order = rank(source.ids, seed)
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        # each split's rows in the source's sampling order
        orders = {name: rows[np.argsort(position[rows], kind="stable")] for name, rows in members.items()}
        counts = np.ones(len(source), dtype=np.int64)
        target = source.target
        if target is not None and target[0] == "tokens":
            assert source.tokens is not None, "a token budget needs tokenized rows"
            counts = _by_tokens(orders, source.tokens, int(target[1]))
        elif quota is not None:
            sizes = {name: len(rows) for name, rows in members.items()}
            ordered = split_order(names, sizes)
            shares = allocate([Fraction(sizes[s] * quota, len(source)) for s in ordered],
                              [quota] * len(ordered), quota) if len(source) else []
            counts = np.zeros(len(source), dtype=np.int64)
            for name, k in zip(ordered, shares, strict=True):
                counts[orders[name]] = take(np.arange(len(orders[name])), k)  # local j = j-th in order
        result.append(_realised(source, counts, members))
    return result


def _by_tokens(orders: dict[str, np.ndarray], lengths: np.ndarray, budget: int) -> np.ndarray:
    counts = np.zeros(len(lengths), dtype=np.int64)
    tokens = {name: int(lengths[rows].sum()) for name, rows in orders.items()}
    whole = sum(tokens.values())
    if whole == 0:
        return counts
    done = 0
    seen = 0
    for name in split_order(list(orders), tokens):
        seen += tokens[name]
        share = budget * seen // whole - done  # this split's share, plus what the earlier ones left over
        rows = orders[name]
        picked = take_tokens(np.arange(len(rows)), lengths[rows], share)
        counts[rows] = picked
        done += int((picked * lengths[rows]).sum())
    return counts


def _realised(source: SourceRows, counts: np.ndarray, members: dict[str, np.ndarray]) -> SourceMix:
    out = SourceMix(source.name, counts, len(source), source.target, rows=int(counts.sum()))
    if source.tokens is not None:
        out.tokens = int((counts * source.tokens).sum())
    for name, rows in members.items():
        out.splits[name] = {
            "rows": int(counts[rows].sum()),
            "tokens": int((counts[rows] * source.tokens[rows]).sum()) if source.tokens is not None else None,
        }
    return out
