#!/usr/bin/env python
"""Time near-dedup and decontamination on the 52,002-row set, and (``--compare``) the MinHash backends.

Input: the benchmark set of bin/make_bench_data.py, normalized (``dataprep normalize``); made on the fly in a
temp dir when ``--input`` is not given. Rows are read once; the timings cover the filter stage only (the
stateful rules and the polars row rules), in-process, median of ``--runs`` runs, wall and CPU seconds.

- near:   ``filter_batch`` with ``dedup="near"`` (exact duplicates first, then MinHash/LSH at 0.7);
- decont: ``filter_batch`` with ``decontaminate`` = LLaMA-Factory's alpaca_en_demo and LIMA as the
          "evaluation" set (the first is inside the benchmark pool, so real overlaps are found);
- plain:  ``filter_batch`` with no stateful rule, for reference;
- minhash: ``NearDedup.check`` on every row (no exact pass first: the set repeats 8,529 distinct rows, which
          ``near`` mostly drops as exact duplicates before any signature is computed).

``--compare`` times 128-slot signatures of the same 5-character shingle hashes with rensa, a numpy MinHash
(multiply-shift permutations, ``minimum.reduceat``) and datasketch 2.0.0 (``MinHash.update_batch``, on the
first 4,096 rows), and checks each one's error against exact Jaccard on planted pairs and its determinism.

Usage: python bin/bench_dedup.py [--input normalized.jsonl] [--runs 3] [--compare] [--shared DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import chain
from pathlib import Path

import numpy as np

BIN = Path(__file__).resolve().parent
sys.path.insert(0, str(BIN))
from make_bench_data import DEFAULT_SHARED  # noqa: E402

from dataprep.dedup import NearDedup  # noqa: E402
from dataprep.filter import FilterOptions, FilterState, filter_batch  # noqa: E402
from dataprep.io import read_batches, read_records  # noqa: E402
from dataprep.shingles import char_shingles, conversation_text  # noqa: E402


def bench_input(shared: Path, tmp: Path) -> str:
    raw, out = tmp / "bench.json", tmp / "bench.jsonl"
    subprocess.run([sys.executable, str(BIN / "make_bench_data.py"), str(raw), "--shared", str(shared)], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "dataprep", "normalize", str(raw), "-o", str(out), "-q"], check=True)
    return str(out)


def time_filter(batches: list[list[dict]], options: FilterOptions, runs: int) -> tuple[float, float, dict, FilterState]:
    walls, cpus = [], []
    reasons: dict[str, int] = {}
    state = FilterState()
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        state = FilterState.for_options(options)
        reasons = {}
        for batch in batches:
            for r in filter_batch(batch, options, state)[1]:
                reasons[r.reason] = reasons.get(r.reason, 0) + 1
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), reasons, state


def near_state_bytes(state: FilterState) -> tuple[int, int]:
    near = state.near
    assert near is not None
    arrays = sum(k.nbytes + v.nbytes for k, v in near.index.runs) + sum(c.nbytes for c in near._sig_chunks)
    ids = sum(sys.getsizeof(i) + 8 for i in near.ids)
    return arrays + ids, len(near)


def numpy_minhash(hashes: np.ndarray, counts: np.ndarray, num_perm: int = 128, chunk: int = 16) -> np.ndarray:
    """Classic MinHash: 128 multiply-shift permutations of the shingle hashes, minimum per row."""
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = np.empty((len(counts), num_perm), dtype=np.uint32)
    for c in range(0, num_perm, chunk):
        values = ((hashes[None, :] * a[c:c + chunk, None] + b[c:c + chunk, None]) >> np.uint64(32)).astype(np.uint32)
        out[:, c:c + chunk] = np.minimum.reduceat(values, offsets, axis=1).T
    return out


def rensa_minhash(hashes: np.ndarray, counts: np.ndarray, num_perm: int = 128) -> np.ndarray:
    from rensa import RMinHash

    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.uint64)
    rows = RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, num_perm, 1).to_rows()
    return np.fromiter(chain.from_iterable(rows), dtype=np.uint32, count=len(rows) * num_perm).reshape(-1, num_perm)


def datasketch_minhash(hashes: np.ndarray, counts: np.ndarray, num_perm: int = 128) -> np.ndarray:
    from datasketch import MinHash

    offsets = np.concatenate(([0], np.cumsum(counts)))
    low = hashes & np.uint64(0xFFFFFFFF)
    out = np.empty((len(counts), num_perm), dtype=np.uint32)
    for i in range(len(counts)):
        m = MinHash(num_perm=num_perm, seed=1, hashfunc=lambda x: x)
        m.update_batch(low[offsets[i]:offsets[i + 1]].tolist())
        out[i] = m.hashvalues
    return out


def compare(records: list[dict]) -> None:
    texts = [conversation_text(r) for r in records]
    spec = importlib.util.spec_from_file_location("plant", BIN / "plant_near_dups.py")
    assert spec is not None and spec.loader is not None
    plant = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plant)
    import random

    originals = [r for r in records[:8000] if len(conversation_text(r).split()) >= 20][:300]
    pairs = [(conversation_text(r), conversation_text(plant.plant(r, kind, random.Random(i))))
             for i, r in enumerate(originals) for kind in ("reword", "mixed")]
    flat = [t for pair in pairs for t in pair]
    ph, pc = char_shingles(flat)
    sets = [set(s.tolist()) for s in np.split(ph, np.cumsum(pc)[:-1])]
    exact = np.array([len(sets[2 * i] & sets[2 * i + 1]) / len(sets[2 * i] | sets[2 * i + 1])
                      for i in range(len(pairs))])
    hashes, counts = char_shingles(texts)
    print(f"compare: {len(texts):,} rows, {len(hashes):,} shingles; error vs exact Jaccard on {len(pairs)} "
          f"planted pairs (exact mean {exact.mean():.2f})")
    for name, fn, limit in (("rensa", rensa_minhash, None), ("numpy", numpy_minhash, None),
                            ("datasketch", datasketch_minhash, 4096)):
        n = len(counts) if limit is None else limit
        sub_h, sub_c = hashes[: int(counts[:n].sum())], counts[:n]
        start = time.perf_counter()
        sigs = fn(sub_h, sub_c)
        elapsed = time.perf_counter() - start
        again = fn(sub_h[: int(sub_c[:200].sum())], sub_c[:200])
        psig = fn(ph, pc)
        est = (psig[0::2] == psig[1::2]).mean(axis=1)
        err = np.abs(est - exact)
        print(f"  {name:<10} {n / elapsed:>10,.0f} rows/s ({elapsed:.2f} s for {n:,} rows); "
              f"|error| mean {err.mean():.3f}, p95 {np.quantile(err, 0.95):.3f}; "
              f"deterministic: {bool((again == sigs[:200]).all())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", help="normalized 52,002-row JSONL (made when absent)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare", action="store_true", help="also compare MinHash backends")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.input or bench_input(args.shared, Path(tmp))
        batches = [b.records for b in read_batches(path)]
    n = sum(map(len, batches))
    evals = tuple(str(args.shared / "data" / "llamafactory" / name) for name in ("alpaca_en_demo.json", "lima.json"))
    cases = (("plain", FilterOptions()), ("near", FilterOptions(dedup="near")),
             ("decont", FilterOptions(decontaminate=evals)))
    for name, options in cases:
        wall, cpu, reasons, state = time_filter(batches, options, args.runs)
        line = f"{name:<7} {n:,} rows: {wall:.2f} s wall, {cpu:.2f} s CPU, {n / wall:,.0f} rows/s; rejected {reasons}"
        if name == "near":
            size, kept = near_state_bytes(state)
            line += f"; state {size / 2**20:.1f} MiB for {kept:,} kept rows ({size / kept:.0f} B/row)"
        if name == "decont" and state.evals is not None:
            line += f"; {state.evals.describe()}"
        print(line, flush=True)
    walls, cpus = [], []
    for _ in range(args.runs):
        wall, cpu = time.perf_counter(), time.process_time()
        near = NearDedup()
        dropped = sum(m is not None for batch in batches for m in near.check(batch))
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    print(f"minhash {n:,} rows: {wall:.2f} s wall, {cpu:.2f} s CPU, {n / wall:,.0f} rows/s; {dropped:,} dropped")
    if args.compare:
        compare([r for b in batches for r in b] if batches else read_records(path))


if __name__ == "__main__":
    main()
