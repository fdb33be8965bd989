"""Mixing: exact counts, budgets within one row, and choices that depend on ids and the seed, never on order."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep.mix import SourceRows, mix, rank

SPLITS = st.sampled_from(["train", "train", "train", "validation", "test"])


@st.composite
def sources(draw: st.DrawFn) -> SourceRows:
    n = draw(st.integers(1, 60))
    ids = [f"id-{draw(st.integers(0, 40))}" for _ in range(n)]  # duplicate ids happen
    splits = [draw(SPLITS) for _ in range(n)]
    tokens = np.asarray([draw(st.integers(1, 50)) for _ in range(n)], dtype=np.int64)
    return SourceRows("s", ids, splits, tokens)


@settings(max_examples=150, deadline=None)
@given(sources(), st.integers(1, 300), st.integers(0, 2**31))
def test_rows_are_exact_and_kept_per_split(source: SourceRows, k: int, seed: int) -> None:
    source.target = ("rows", k)
    (m,) = mix([source], seed)
    assert m.rows == k == int(m.counts.sum())
    splits = np.asarray(source.splits)
    for name in set(source.splits):
        share = k * int((splits == name).sum()) / len(source)
        assert abs(m.splits[name]["rows"] - share) < 1 + 1e-9  # largest remainders: within one row of the share
    assert m.counts.max() - m.counts.min() <= 1 or len(set(source.splits)) > 1


@settings(max_examples=150, deadline=None)
@given(sources(), st.integers(1, 5000), st.integers(0, 2**31))
def test_token_budgets_are_met_within_one_row_and_never_exceeded(source: SourceRows, budget: int, seed: int) -> None:
    source.target = ("tokens", budget)
    (m,) = mix([source], seed)
    assert m.tokens is not None and m.tokens <= budget
    assert budget - m.tokens < int(source.tokens.max())  # type: ignore[union-attr]
    assert sum(s["tokens"] for s in m.splits.values()) == m.tokens


@settings(max_examples=100, deadline=None)
@given(sources(), st.integers(1, 200), st.randoms(use_true_random=False))
def test_the_choice_follows_the_rows_not_their_order(source: SourceRows, k: int, shuffler) -> None:
    """Rows with distinct ids: the same rows (by id) are picked whatever order they arrive in."""
    keep = {i: n for n, i in enumerate(source.ids)}
    rows = sorted(keep.values())
    base = SourceRows("s", [source.ids[r] for r in rows], [source.splits[r] for r in rows], None, ("rows", k))
    order = list(range(len(rows)))
    shuffler.shuffle(order)
    moved = SourceRows("s", [base.ids[i] for i in order], [base.splits[i] for i in order], None, ("rows", k))
    (a,), (b,) = mix([base], 42), mix([moved], 42)
    assert dict(zip(base.ids, a.counts.tolist(), strict=True)) == dict(zip(moved.ids, b.counts.tolist(), strict=True))


def test_weights_share_the_output_and_do_not_up_sample_by_default() -> None:
    a = SourceRows("a", [f"a{i}" for i in range(100)], ["train"] * 100, None, ("weight", 3))
    b = SourceRows("b", [f"b{i}" for i in range(10)], ["train"] * 10, None, ("weight", 1))
    ma, mb = mix([a, b], seed=1)
    assert (ma.rows, mb.rows) == (30, 10) and ma.counts.max() == 1
    ma, mb = mix([a, b], seed=1, total=200)
    assert (ma.rows, mb.rows) == (150, 50) and mb.counts.tolist() == [5] * 10


def test_rank_is_blake2b_of_seed_and_id() -> None:
    import hashlib

    ids = ["x", "y", "z", "w"]
    keys = [hashlib.blake2b(b"7\x00" + i.encode(), digest_size=8).digest() for i in ids]
    assert rank(ids, 7).tolist() == sorted(range(4), key=lambda i: keys[i])
    assert rank(ids, 7).tolist() != rank(ids, 8).tolist() or rank(ids, 9).tolist() != rank(ids, 7).tolist()
