"""The cluster's decisions over many rows equal the single-process stages, row for row (no Ray needed: the
groupbys are done here with plain dicts, the functions are the ones Ray Data runs)."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest

from dataprep.cluster import decide
from dataprep.cluster.job import ClusterJob, SourceSpec
from dataprep.cluster.work import Decisions, _split_columns, stratum_key
from dataprep.dedup import NUM_PERM, band_keys, lsh_params, signatures
from dataprep.filter import FilterOptions, FilterState, content_key, filter_batch
from dataprep.records import make_record
from dataprep.shingles import conversation_text
from dataprep.split import SplitOptions, Splitter, parse_size, plan_quotas
from dataprep.tokenize.job import TokenizeJob

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau"]


def _texts(seed: int = 5) -> list[dict]:
    """Rows with exact copies, near copies (a word or two changed) and chains A~B~C where A and C differ more."""
    rng = random.Random(seed)
    base = [" ".join(rng.choice(WORDS) for _ in range(60)) for _ in range(30)]
    rows = []
    for i, text in enumerate(base):
        rows.append(text)
        if i % 3 == 0:
            rows.append(text)  # exact copy
        if i % 4 == 0:
            words = text.split()
            words[rng.randrange(60)] = "changed"
            rows.append(" ".join(words))  # near copy
        if i % 5 == 0:  # a chain: each step changes other words
            words = text.split()
            for step in range(3):
                for k in range(8):
                    words[(step * 8 + k * 7) % 60] = f"w{step}{k}"
                rows.append(" ".join(words))
    rng.shuffle(rows)
    rows += [rows[3], "", "!!!"]  # a late copy, and rows without shingles
    return [make_record(id=f"r{i}", prompt="say", response=r or "?") for i, r in enumerate(rows)]


def _local(records: list[dict], options: FilterOptions, batch: int) -> dict[int, tuple[str, str]]:
    state = FilterState.for_options(options)
    found: dict[int, tuple[str, str]] = {}
    for start in range(0, len(records), batch):
        _, rejected = filter_batch(records[start:start + batch], options, state)
        found.update({start + r.index: (r.reason, r.detail) for r in rejected})
    return found


def _cluster(records: list[dict], options: FilterOptions, shard_size: int) -> dict[int, tuple[str, str]]:
    """Scan's columns per shard, the groupbys by hand, then the driver's functions."""
    bands, rows = lsh_params(options.threshold)
    pos = [(i // shard_size) << decide.SHARD_SHIFT | (i % shard_size) for i in range(len(records))]
    sigs, valid = signatures([conversation_text(r) for r in records])
    keys = band_keys(sigs, bands, rows)
    table = pa.table({"source": pa.array([0] * len(records), pa.int32()), "pos": pa.array(pos, pa.int64()),
                      "id": [r["id"] for r in records], "chash": [content_key(r) for r in records],
                      "valid": valid.tolist(), "sig": [s.astype(np.uint16).tobytes() for s in sigs],
                      "bands": pa.array([k.tolist() for k in keys], pa.list_(pa.uint64()))})
    order = list(range(len(records)))
    random.Random(1).shuffle(order)  # the cluster sees rows in any order
    table = table.take(pa.array(order))
    groups: dict[bytes, list[int]] = {}
    for i, h in enumerate(table.column("chash").to_pylist()):
        groups.setdefault(h, []).append(i)
    marked = pa.concat_tables([decide.exact_group(table.take(pa.array(g))) for g in groups.values()])
    reps = marked.filter(np.asarray(marked.column("rep_pos")) == -1)
    exploded = decide.explode_bands(reps)
    by_band: dict[int, list[int]] = {}
    for i, b in enumerate(exploded.column("band").to_pylist()):
        by_band.setdefault(b, []).append(i)
    need = math.ceil(options.threshold * NUM_PERM - 1e-9)
    edges = pa.concat_tables([decide.band_pairs(exploded.take(pa.array(g)), need) for g in by_band.values()])
    near = decide.keep_first(edges)
    copies = marked.filter(np.asarray(marked.column("rep_pos")) != -1)
    index_of = {p: i for i, p in enumerate(pos)}
    return {index_of[p]: finding for (_, p), finding in decide.findings(copies, near).items()}


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.9])
def test_near_dedup_on_the_cluster_drops_the_rows_the_local_filter_drops(threshold: float) -> None:
    records = _texts()
    options = FilterOptions(dedup="near", threshold=threshold)
    local = _local(records, options, batch=7)
    assert local == _local(records, options, batch=1000)  # the local rule does not depend on batches
    assert {reason for reason, _ in local.values()} == {"duplicate", "near_duplicate"}
    assert _cluster(records, options, shard_size=11) == local


def test_exact_dedup_keeps_the_first_and_names_it() -> None:
    records = _texts(seed=9)
    options = FilterOptions(dedup="exact")
    found = _cluster(records, replace(options, dedup="near", threshold=1.0), shard_size=4)
    exact = {i: f for i, f in found.items() if f[0] == "duplicate"}
    assert exact == _local(records, options, batch=5)


def test_keep_first_is_not_connected_components() -> None:
    """A~B and B~C but not A~C: B goes (A is kept before it), C stays (its only match, B, was dropped)."""
    edges = pa.table({"source": pa.array([0, 0], pa.int32()), "a": pa.array([1, 2], pa.int64()),
                      "b": pa.array([2, 3], pa.int64()), "a_id": ["A", "B"], "equal": pa.array([100, 100], pa.int32())})
    assert decide.keep_first(edges) == {(0, 2): ("A", 100)}


def test_split_ranks_give_every_row_the_split_splitter_gives() -> None:
    rng = random.Random(3)
    records = [make_record(id=f"x{i % 180}", prompt=" ".join(["w"] * rng.choice([1, 5, 250, 900])),
                           response="r", meta={"src": rng.choice("ab")}) for i in range(200)]
    options = SplitOptions(val_size=parse_size("0.1"), test_size=parse_size("7"), seed=11, bucket_width=200,
                           stratify_by=("len_bucket", "meta.src"))
    splitter = Splitter(options)
    splitter.add(records)
    local = [r["split"] for b in splitter.finish() for r in b.records]

    job = ClusterJob(sources=[SourceSpec(0, "s", "-")], tokenize=TokenizeJob([], "o", "t"), output="o", key="k",
                     inputs=[], split=options)
    strata, first, second = _split_columns(records, job)
    counts: dict[str, int] = {}
    for s in strata:
        counts[s] = counts.get(s, 0) + 1
    quotas = plan_quotas({stratum_key(k): n for k, n in counts.items()}, options)
    groups = {json.dumps(list(k)): g for k, g in quotas.group_of.items()}
    table = pa.table({"source": pa.array([0] * 200, pa.int32()), "pos": pa.array(range(200), pa.int64()),
                      "primary": pa.array(first, pa.uint64()), "tie": pa.array(second, pa.uint64()),
                      "group": pa.array([groups[s] for s in strata], pa.int32())})
    split = ["train"] * 200
    for g in set(groups.values()):
        held = decide.rank_group(table.filter(pa.compute.equal(table.column("group"), g)), quotas.val, quotas.test)
        for p, code in zip(held.column("pos").to_pylist(), held.column("code").to_pylist(), strict=True):
            split[p] = decide.HELD_OUT[code]
    assert split == local
    assert split.count("test") == 7 and split.count("validation") == 20


def test_decisions_travel_as_json() -> None:
    d = Decisions({3: ("duplicate", "same content as kept id a")}, {5: "validation"})
    assert Decisions.from_json(d.to_json()) == d and Decisions.from_json(None) == Decisions()
