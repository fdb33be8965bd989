"""dataprep.dedup: stable signatures, LSH parameters, the key index, keep-the-first, and planted near-duplicates.

Stated quality (also in the README): at the default threshold 0.7, at least 95% of planted near-duplicates of
real alpaca rows (every edit kind: case/spacing, swapped sentences, one word in twenty reworded, all three) are
dropped naming their original, and at least 99.5% of distinct rows (no other row within Jaccard 0.5) are kept.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import subprocess
import sys
from collections import Counter
from types import ModuleType

import numpy as np
import pytest

from dataprep.dedup import (
    CANDIDATE_RECALL,
    DEFAULT_THRESHOLD,
    KeyIndex,
    NearDedup,
    band_keys,
    lsh_params,
    signatures,
)
from dataprep.records import make_record
from dataprep.shingles import char_shingles, conversation_text
from tests.conftest import REPO

GOLDEN_TEXTS = ["The quick brown fox jumps over the lazy dog.", "Write a Python function that adds two numbers.",
                "我爱北京天安门", "ab", "", "!!!"]
GOLDEN = "2a1b9866b3b396b04a9e44f5811552af6e677cc1d5e4f2d1ddef70790e34ea55"


def load_planter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("plant_near_dups", REPO / "bin" / "plant_near_dups.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exact_jaccard(a: str, b: str) -> float:
    hashes, counts = char_shingles([a, b])
    x, y = set(hashes[: counts[0]].tolist()), set(hashes[counts[0]:].tolist())
    return len(x & y) / len(x | y)


def test_signatures_are_stable_across_processes_and_hash_seeds():
    sigs, valid = signatures(GOLDEN_TEXTS)
    assert hashlib.sha256(sigs.tobytes()).hexdigest() == GOLDEN
    assert valid.tolist() == [True, True, True, True, False, False]
    code = ("import hashlib; from dataprep.dedup import signatures; from tests.test_dedup import GOLDEN_TEXTS; "
            "print(hashlib.sha256(signatures(GOLDEN_TEXTS)[0].tobytes()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert out.stdout.strip() == GOLDEN


def test_normalization_makes_case_spacing_and_punctuation_irrelevant():
    a = "Hello, World!  How are you?"
    assert exact_jaccard(a, "hello world how ARE you") == 1.0
    sigs, _ = signatures([a, "hello\n\nworld -- how are you"])
    assert (sigs[0] == sigs[1]).all()


@pytest.mark.parametrize("threshold", [0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
def test_lsh_params_reach_the_candidate_recall_with_the_most_rows_per_band(threshold):
    bands, rows = lsh_params(threshold)
    assert bands * rows <= 128
    assert 1 - (1 - threshold**rows) ** bands >= CANDIDATE_RECALL
    more = rows + 1
    assert 1 - (1 - threshold**more) ** (128 // more) < CANDIDATE_RECALL


def test_band_keys_are_equal_exactly_when_band_slots_are():
    rng = np.random.default_rng(0)
    sigs = rng.integers(0, 2**32, size=(50, 128), dtype=np.uint64).astype(np.uint32)
    sigs[1] = sigs[0]
    sigs[2, :6] = sigs[0, :6]  # band 0 only
    keys = band_keys(sigs, 21, 6)
    assert (keys[0] == keys[1]).all()
    assert keys[0, 0] == keys[2, 0] and (keys[0, 1:] != keys[2, 1:]).all()
    assert len(np.unique(keys[3:])) == keys[3:].size  # no collisions otherwise, across bands too


def test_key_index_is_a_multimap_in_insertion_order():
    rng = np.random.default_rng(1)
    index, reference = KeyIndex(), {}
    value = 0
    for size in [5, 3, 40, 1, 200, 7, 90]:
        keys = rng.integers(0, 60, size=size, dtype=np.uint64)
        values = np.arange(value, value + size, dtype=np.uint32)
        value += size
        index.add(keys, values)
        for k, v in zip(keys.tolist(), values.tolist(), strict=True):
            reference.setdefault(k, []).append(v)
    assert len(index) == value and len(index.runs) <= 4
    queries = np.arange(70, dtype=np.uint64)
    positions, found = index.lookup(queries, limit=1000)
    got: dict[int, list[int]] = {}
    for p, v in zip(positions.tolist(), found.tolist(), strict=True):
        got.setdefault(int(queries[p]), []).append(v)
    assert {k: sorted(v) for k, v in got.items()} == reference
    positions, found = index.lookup(queries, limit=2)
    assert max(Counter(positions.tolist()).values()) <= 2 * len(index.runs)


def test_estimated_similarity_tracks_exact_jaccard():
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(400)]
    errors = []
    for _ in range(60):
        base = [rng.choice(vocab) for _ in range(120)]
        edited = list(base)
        for _ in range(rng.randrange(1, 30)):
            edited[rng.randrange(len(edited))] = rng.choice(vocab)
        a, b = " ".join(base), " ".join(edited)
        sigs, _ = signatures([a, b])
        errors.append(abs(float((sigs[0] == sigs[1]).mean()) - exact_jaccard(a, b)))
    assert np.mean(errors) < 0.04 and max(errors) < 0.15


def test_keeps_the_first_and_names_it_within_and_across_batches():
    text = ("Photosynthesis turns light, water and carbon dioxide into sugar and oxygen inside the chloroplasts "
            "of green plants, algae and some bacteria.")
    first = make_record(prompt="Explain photosynthesis.", response=text, id="first")
    near = make_record(prompt="explain PHOTOSYNTHESIS", response=text.replace("green ", ""), id="near")
    other = make_record(prompt="Name a prime number.", response="Seven is a prime number.", id="other")
    late = make_record(prompt="Explain photosynthesis!", response=text + " Really.", id="late")
    empty = make_record(prompt="?", response="!!!", id="nowords")
    state = NearDedup()
    assert state.threshold == DEFAULT_THRESHOLD
    result = state.check([first, near, other, empty, dict(empty, id="nowords2")])
    assert [r is None for r in result] == [True, False, True, True, True]
    assert result[1] is not None and result[1].kept_id == "first" and result[1].similarity >= 0.7
    later = state.check([late])[0]
    assert later is not None and later.kept_id == "first"
    assert len(state) == 4  # first, other and the two rows without words; dropped rows are never indexed


def test_a_dropped_row_is_not_a_representative():
    """A ~ B and B ~ C but not A ~ C: B is dropped for A, and C stays (B was never kept)."""
    words = [f"word{i}" for i in range(60)]
    a = " ".join(words)
    b = " ".join(words[8:] + [f"new{i}" for i in range(8)])
    c = " ".join(words[16:] + [f"new{i}" for i in range(16)])
    assert exact_jaccard(a, b) >= 0.75 and exact_jaccard(b, c) >= 0.75 and exact_jaccard(a, c) < 0.6
    rows = [make_record(prompt=t, response="ok", id=name) for name, t in (("A", a), ("B", b), ("C", c))]
    for batches in ([rows], [rows[:1], rows[1:]], [rows[:2], rows[2:]]):
        state = NearDedup(0.68)
        decisions = [m for batch in batches for m in state.check(batch)]
        assert [None if m is None else m.kept_id for m in decisions] == [None, "A", None]


@pytest.mark.slow
def test_planted_near_duplicates_of_real_rows(shared_data):
    from dataprep.io import read_records
    from dataprep.normalize import NormalizeOptions, normalize_batch

    raw = read_records(str(shared_data / "llamafactory" / "alpaca_en_demo.json"))
    raw += read_records(str(shared_data / "alpaca" / "code_alpaca_2k.json"))
    records, _ = normalize_batch(raw, NormalizeOptions(source="alpaca"))
    records = [r for r in records if len(conversation_text(r).split()) >= 20][:900]
    hashes, counts = char_shingles([conversation_text(r) for r in records])
    shingle_sets = [set(s.tolist()) for s in np.split(hashes, np.cumsum(counts)[:-1])]
    distinct, kept_sets = [], []
    for record, shingles in zip(records, shingle_sets, strict=True):
        if all(3 * len(shingles & s) < len(shingles) + len(s) for s in kept_sets):  # Jaccard < 0.5
            distinct.append(record)
            kept_sets.append(shingles)
    assert len(distinct) > 800
    rows, truth = load_planter().planted_set(distinct, len(distinct), seed=0)
    state = NearDedup()
    decisions = {}
    for start in range(0, len(rows), 256):
        batch = rows[start:start + 256]
        decisions.update(zip([r["id"] for r in batch], state.check(batch), strict=True))
    caught: Counter[str] = Counter()
    for copy_id, original_id in truth.items():
        match = decisions[copy_id]
        caught[copy_id.split("~")[1]] += match is not None and match.kept_id == original_id
    per_kind = Counter(copy_id.split("~")[1] for copy_id in truth)
    recall = {kind: caught[kind] / per_kind[kind] for kind in per_kind}
    assert recall["format"] == 1.0 and recall["reorder"] >= 0.98
    assert min(recall.values()) >= 0.93 and sum(caught.values()) / len(truth) >= 0.95, recall
    survived = sum(decisions[r["id"]] is None for r in distinct)
    assert survived / len(distinct) >= 0.995
