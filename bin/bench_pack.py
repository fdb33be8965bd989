#!/usr/bin/env python
"""Benchmark ``dataprep pack``: planning and packing speed, memory, and packing efficiency against greedy.

Three parts, each printed as one line (times are medians of ``--runs``):

* plan: best-fit decreasing of 1,000,000 synthetic lengths (log-normal, like SFT data: median ~200 tokens, long
  tail, clipped to N=2048) from the lengths alone; rows/s of the planner, its efficiency and greedy in-order's;
* synthetic: ``dataprep pack`` as a CLI process on a 1,000,000-row tokenized folder in tokenize's layout (random
  ids, lengths log-normal with median ~45, N=512): rows/s including start-up, peak RSS of the process, and its
  peak anonymous RSS (sampled every 20 ms; the rest of the RSS is pages of the memory-mapped input and output,
  which the kernel can drop at will);
* real: the same on the 52,002-row alpaca-format set (``bin/make_bench_data.py``) tokenized with the Qwen2.5
  tokenizer at max length 1024 (not timed), packed at N=1024 and 2048.

Efficiency is real tokens / (packs x N). Greedy in-order is the next-fit baseline (a pack is closed when the next
row does not fit); the lower bound is ceil(tokens / N) packs.

Usage: python bin/bench_pack.py [--runs 3] [--rows 1000000] [--real-rows 52002] [--shared DIR] [--no-real]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_SHARED = Path(os.environ.get("DATAPREP_SHARED", REPO.parent / "shared"))
TINY_BPE = REPO / "fixtures" / "tokenizers" / "tiny-bpe"


def lognormal_lengths(rows: int, median: float, capacity: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(median), 0.9, rows).astype(np.int64), 1, capacity)


def efficiencies(lengths: np.ndarray, packs: int, capacity: int) -> str:
    from dataprep.pack import greedy_packs

    tokens = int(lengths.sum())
    greedy = greedy_packs(lengths, capacity)
    bound = -(-tokens // capacity)
    return (f"bfd {packs:,} packs ({100 * tokens / (packs * capacity):.2f}%), greedy in order {greedy:,} "
            f"({100 * tokens / (greedy * capacity):.2f}%), lower bound {bound:,}")


def bench_plan(rows: int, runs: int) -> None:
    from dataprep.pack import plan_bfd

    lengths = lognormal_lengths(rows, 200, 2048)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        plan = plan_bfd(lengths, 2048)
        times.append(time.perf_counter() - start)
    t = statistics.median(times)
    print(f"plan: {rows:,} lengths, N=2048: {t:.2f}s, {rows / t:,.0f} rows/s; {efficiencies(lengths, plan.packs, 2048)}")


def write_synthetic(folder: Path, lengths: np.ndarray, chunk: int = 65_536) -> None:
    """A tokenized folder in tokenize's layout (random ids, the first 40% of each row unsupervised)."""
    import pyarrow as pa
    from transformers import AutoTokenizer

    from dataprep.manifest import Manifest, SplitStats, TokenizerFacts, Totals, write_manifest
    from dataprep.outdir import OutputDir
    from dataprep.tokenize import CAUSAL_SCHEMA

    rng = np.random.default_rng(1)
    out = OutputDir(folder, CAUSAL_SCHEMA)
    tokens = supervised = 0
    for start in range(0, len(lengths), chunk):
        n = lengths[start:start + chunk]
        offsets = np.zeros(len(n) + 1, dtype=np.int32)
        np.cumsum(n, out=offsets[1:])
        ids = rng.integers(3, 1500, int(offsets[-1]), dtype=np.int32)
        position = np.arange(int(offsets[-1])) - np.repeat(offsets[:-1], n)
        labels = np.where(position >= np.repeat((n * 2) // 5, n), ids, -100).astype(np.int32)
        lists = pa.array(offsets)
        out.write("train", pa.RecordBatch.from_arrays([
            pa.array([str(i) for i in range(start, start + len(n))]),
            pa.ListArray.from_arrays(lists, pa.array(ids)),
            pa.ListArray.from_arrays(lists, pa.array(np.ones(len(ids), dtype=np.int8))),
            pa.ListArray.from_arrays(lists, pa.array(labels)),
            pa.array(n.astype(np.int32)),
        ], schema=CAUSAL_SCHEMA))
        tokens += len(ids)
        supervised += int((labels != -100).sum())
    out.finish_splits("synthetic")
    tokenizer = AutoTokenizer.from_pretrained(str(TINY_BPE))
    tokenizer.save_pretrained(str(out.staging / "tokenizer"))
    rows = len(lengths)
    write_manifest(out.staging, Manifest(
        task="causal", tokenizer=TokenizerFacts(len=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                                eos_token_id=tokenizer.eos_token_id),
        splits={"train": SplitStats(rows=rows, tokens=tokens, supervised_tokens=supervised)}, key="synthetic",
        totals=Totals(rows_in=rows, rows_out=rows, tokens=tokens, supervised_tokens=supervised)))
    out.commit()


def sample_memory(pid: int, stop: threading.Event, peak: dict[str, int]) -> None:
    """Largest RssAnon and VmHWM (the kernel's own peak RSS) of ``pid`` seen, every 20 ms, in KiB."""
    while not stop.is_set():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        for key in peak:
            m = re.search(key + r":\s+(\d+)", status)
            if m:
                peak[key] = max(peak[key], int(m.group(1)))
        time.sleep(0.02)


def run_pack(folder: Path, out: Path, capacity: int) -> tuple[float, dict[str, int], str]:
    """One ``dataprep pack`` process: wall seconds, peak RSS and anonymous RSS (KiB), its summary line."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dataprep", "pack", str(folder), "-o", str(out), "--max-length",
                             str(capacity), "--force"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    stop, peak = threading.Event(), {"VmHWM": 0, "RssAnon": 0}
    sampler = threading.Thread(target=sample_memory, args=(proc.pid, stop, peak))
    sampler.start()
    _, err = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(err)
    return time.perf_counter() - start, peak, err.strip().splitlines()[-1]


def bench_folder(label: str, folder: Path, out: Path, capacity: int, runs: int) -> None:
    import datasets

    from dataprep.manifest import load_manifest

    results = [run_pack(folder, out, capacity) for _ in range(runs)]
    wall = statistics.median(r[0] for r in results)
    anon = max(r[1]["RssAnon"] for r in results)
    peak_rss = max(r[1]["VmHWM"] for r in results)
    packing = load_manifest(out).packing or {}
    lengths = np.concatenate([np.asarray(ds["length"]) for ds in datasets.load_from_disk(str(folder)).values()])
    lengths = lengths[lengths <= capacity]
    rows = packing["rows_in"]
    print(f"{label}, N={capacity}: {rows:,} rows in {wall:.1f}s, {rows / wall:,.0f} rows/s (CLI, start-up included); "
          f"peak RSS {peak_rss / 1024:,.0f} MiB, of it anonymous {anon / 1024:,.0f} MiB; "
          f"{efficiencies(lengths, packing['packs'], capacity)}")
    print(f"  {results[-1][2]}")


def tokenize_real(tmp: Path, shared: Path, rows: int) -> Path:
    from bench_tokenize import bench_input

    from dataprep.tokenize import CausalOptions, TokenizeJob, tokenize_to_disk

    _, canonical = bench_input(tmp, shared, rows)
    folder = tmp / "alpaca-qwen"
    tokenize_to_disk(TokenizeJob(inputs=[str(canonical)], outdir=str(folder),
                                 tokenizer=str(shared / "data" / "tokenizers" / "qwen2.5"),
                                 causal=CausalOptions(max_length=1024)))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--real-rows", type=int, default=52_002)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--no-real", action="store_true", help="skip the real alpaca part")
    args = parser.parse_args()
    bench_plan(args.rows, args.runs)
    with tempfile.TemporaryDirectory(prefix="bench-pack-") as name:
        tmp = Path(name)
        synthetic = tmp / "synthetic"
        write_synthetic(synthetic, lognormal_lengths(args.rows, 45, 512, seed=2))
        bench_folder("synthetic", synthetic, tmp / "packed-synthetic", 512, args.runs)
        qwen = args.shared / "data" / "tokenizers" / "qwen2.5"
        if args.no_real or not qwen.is_dir():
            print("real: skipped" + ("" if args.no_real else f" ({qwen} not present)"))
            return
        real = tokenize_real(tmp, args.shared, args.real_rows)
        for capacity in (1024, 2048):
            bench_folder("real alpaca (Qwen2.5)", real, tmp / f"packed-real-{capacity}", capacity, args.runs)


if __name__ == "__main__":
    main()
