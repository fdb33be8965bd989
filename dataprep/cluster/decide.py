"""The decisions that look at more than one row, as pure functions of stable keys: the cluster's half of
``filter``'s dedup and ``split``.

A row's **key** is ``(source, pos)`` with ``pos = shard << 32 | index``: the input's number in the recipe, the
shard's number in its file, the row's index in the shard. Ordering by key is ordering by input position, so "the
first row" of a single reader and "the smallest key" of a cluster are the same row, whatever order the rows reach
the workers in. Each function below is run by Ray Data on one group (``map_groups``) or by the driver on the small
result, and gives what :mod:`dataprep.filter` / :mod:`dataprep.dedup` / :mod:`dataprep.split` give on one machine:

* exact duplicates (:func:`exact_group`): within a content hash, the smallest key is the representative; the
  others are its copies.
* near duplicates: the representatives of one source that share a band key are candidate pairs
  (:func:`band_pairs`, at most :data:`dataprep.dedup.MAX_CANDIDATES` earlier rows per row and band, as the local
  index looks them up), verified on the 16-bit signatures; then :func:`keep_first` walks the verified pairs in key
  order and drops a row when an earlier *kept* row verifies, naming the earliest one. That is the local
  keep-the-first rule (not connected components: with A~B and B~C but not A~C, both keep A and C). A copy of a row
  dropped as a near duplicate is dropped with the same finding, as locally.
* split (:func:`rank_group`): the strata are counted with a groupby, :func:`dataprep.split.plan_quotas` turns the
  counts into quotas, and each group's rows are ranked by ``(blake2b(seed, id), hash of the row, key)``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dataprep.dedup import MAX_CANDIDATES, NUM_PERM

SHARD_SHIFT = 32
HELD_OUT = {1: "validation", 2: "test"}  # split codes of dataprep.split (0 is train)


def exact_group(group: pa.Table) -> pa.Table:
    """One content hash's rows (one source): every row, with ``rep_pos``/``rep_id`` naming the representative
    (the smallest key) on its copies and ``-1``/null on the representative itself."""
    group = group.sort_by([("pos", "ascending")])
    n = group.num_rows
    rep_pos = np.full(n, -1, dtype=np.int64)
    rep_id: list[str | None] = [None] * n
    if n > 1:
        rep_pos[1:] = group.column("pos")[0].as_py()
        rep_id[1:] = [group.column("id")[0].as_py()] * (n - 1)
    return group.append_column("rep_pos", pa.array(rep_pos)).append_column("rep_id", pa.array(rep_id, pa.string()))


def explode_bands(batch: pa.Table) -> pa.Table:
    """One row per (representative, band key) for the candidate groupby; rows without shingles have no bands."""
    valid = batch.filter(batch.column("valid"))
    bands = valid.column("bands").combine_chunks() if valid.num_rows else pa.array([], pa.list_(pa.uint64()))
    counts = np.diff(np.asarray(bands.offsets)) if valid.num_rows else np.zeros(0, dtype=np.int64)
    take = pa.array(np.repeat(np.arange(valid.num_rows), counts))
    return pa.table({
        "source": valid.column("source").take(take),
        "band": bands.flatten(),
        "pos": valid.column("pos").take(take),
        "id": valid.column("id").take(take),
        "sig": valid.column("sig").take(take),
    })


def band_pairs(group: pa.Table, need: int, limit: int = MAX_CANDIDATES) -> pa.Table:
    """Verified pairs among the rows sharing one band key: each row against the ``limit`` earliest rows before
    it; a pair is kept when at least ``need`` of the 16-bit signature slots agree."""
    group = group.sort_by([("pos", "ascending")])
    n = group.num_rows
    empty = pa.table({"source": pa.array([], pa.int32()), "a": pa.array([], pa.int64()),
                      "b": pa.array([], pa.int64()), "a_id": pa.array([], pa.string()),
                      "equal": pa.array([], pa.int32())})
    if n < 2:
        return empty
    sigs = np.frombuffer(b"".join(group.column("sig").to_pylist()), dtype=np.uint16).reshape(n, NUM_PERM)
    later = np.arange(1, n)
    per = np.minimum(later, limit)
    b = np.repeat(later, per)
    a = np.arange(int(per.sum())) - np.repeat(np.cumsum(per) - per, per)
    equal = (sigs[a] == sigs[b]).sum(axis=1)
    hit = equal >= need
    a, b, equal = a[hit], b[hit], equal[hit]
    if not len(a):
        return empty
    pos = np.asarray(group.column("pos"))
    ids = group.column("id")
    return pa.table({"source": pa.array(np.full(len(a), group.column("source")[0].as_py(), dtype=np.int32)),
                     "a": pa.array(pos[a]), "b": pa.array(pos[b]), "a_id": ids.take(pa.array(a)),
                     "equal": pa.array(equal.astype(np.int32))})


def keep_first(edges: pa.Table) -> dict[tuple[int, int], tuple[str, int]]:
    """``(source, pos) -> (kept id, equal slots)`` for every row dropped as a near duplicate.

    ``edges`` are verified pairs ``a < b`` (any source, duplicates allowed). Rows are decided in key order: a
    row goes when some earlier row that was kept verifies, and the finding names the earliest such row.
    """
    dropped: dict[tuple[int, int], tuple[str, int]] = {}
    if not edges.num_rows:
        return dropped
    edges = edges.sort_by([("source", "ascending"), ("b", "ascending"), ("a", "ascending")])
    source, a, b = (np.asarray(edges.column(c)) for c in ("source", "a", "b"))
    a_id = edges.column("a_id").to_pylist()
    equal = np.asarray(edges.column("equal"))
    start = 0
    n = len(b)
    while start < n:
        end = start + 1
        while end < n and b[end] == b[start] and source[end] == source[start]:
            end += 1
        src = int(source[start])
        for k in range(start, end):  # the earliest candidate that is itself kept
            if (src, int(a[k])) not in dropped:
                dropped[(src, int(b[start]))] = (a_id[k], int(equal[k]))
                break
        start = end
    return dropped


def findings(copies: pa.Table | None, near: dict[tuple[int, int], tuple[str, int]]) -> dict[tuple[int, int],
                                                                                         tuple[str, str]]:
    """``(source, pos) -> (reason, detail)`` of every row filter's duplicate rules drop, in the words of
    :data:`dataprep.filter.RULES`: near duplicates (from :func:`keep_first`), and copies (rows of
    :func:`exact_group` with a representative), which share their representative's fate."""
    from dataprep.dedup import Match
    from dataprep.filter import RULE

    def near_detail(kept_id: str, equal: int) -> tuple[str, str]:
        return "near_duplicate", RULE["near_duplicate"].detail(Match(kept_id, equal / NUM_PERM), None)

    out = {key: near_detail(*found) for key, found in near.items()}
    if copies is not None:
        columns = (copies.column(c).to_pylist() for c in ("source", "pos", "rep_pos", "rep_id"))
        for source, pos, rep_pos, rep_id in zip(*columns, strict=True):
            found = near.get((source, rep_pos))
            out[(source, pos)] = near_detail(*found) if found else (
                "duplicate", RULE["duplicate"].detail(rep_id, None))
    return out


def rank_group(group: pa.Table, val: np.ndarray, test: np.ndarray) -> pa.Table:
    """One split group's held-out rows: ranked by ``(primary, tie, source, pos)``, the first ``val[g]`` go to
    validation and the next ``test[g]`` to test (as :func:`dataprep.split.assign` ranks them)."""
    g = int(group.column("group")[0].as_py())
    order = np.lexsort((np.asarray(group.column("pos")), np.asarray(group.column("source")),
                        np.asarray(group.column("tie")), np.asarray(group.column("primary"))))
    k_val, k_test = int(val[g]), int(test[g])
    held = order[:k_val + k_test]
    codes = np.where(np.arange(len(held)) < k_val, 1, 2).astype(np.int8)
    take = pa.array(held)
    return pa.table({"source": group.column("source").take(take), "pos": group.column("pos").take(take),
                     "code": pa.array(codes)})
