#!/usr/bin/env python
"""Benchmark ``dataprep tokenize`` against the raw speed of the Rust tokenizer on the same texts.

Input: the 52,002-row alpaca-format set of ``bin/make_bench_data.py``, normalized to canonical records, tokenized
with the Qwen2.5 tokenizer and its own chat template at ``--max-length 1024``. Prints, as medians of N runs:

* dataprep: the library call ``tokenize_to_disk`` (read JSONL, render, encode, label, write Arrow, save_to_disk,
  manifest), rows/s and tokens/s;
* raw: ``tokenizer._tokenizer.encode_batch`` alone, on the texts dataprep renders (rendered beforehand, not timed),
  in batches of the same size, with the same Rust thread pool;
* the ratio raw time / dataprep time (1.0 = tokenizing costs nothing beyond the Rust encoder), in wall time and
  in CPU time of the process (all threads): on a shared machine the CPU ratio is the steadier of the two;
* peak RSS of one ``dataprep tokenize`` CLI process (a separate run) and its wall time including start-up.

Usage: python bin/bench_tokenize.py [--runs 3] [--rows 52002] [--shared DIR] [--tokenizer DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_SHARED = Path(os.environ.get("DATAPREP_SHARED", REPO.parent / "shared"))


def build_input(tmp: Path, shared: Path, rows: int) -> Path:
    """The alpaca set via make_bench_data.py, then ``dataprep normalize`` to canonical JSONL."""
    raw = tmp / "alpaca.json"
    subprocess.run([sys.executable, str(REPO / "bin" / "make_bench_data.py"), str(raw), "--shared", str(shared),
                    "--rows", str(rows)], check=True)
    canonical = tmp / "canonical.jsonl"
    subprocess.run([sys.executable, "-m", "dataprep", "normalize", str(raw), "-o", str(canonical), "-q"],
                   check=True, cwd=REPO)
    return canonical


def time_dataprep(canonical: Path, tokenizer: str, tmp: Path, batch_size: int) -> tuple[float, float, dict]:
    from dataprep.tokenize import CausalOptions, TokenizeJob, tokenize_to_disk

    out = tmp / "out"
    job = TokenizeJob(inputs=[str(canonical)], outdir=str(out), tokenizer=tokenizer,
                      causal=CausalOptions(max_length=1024), force=True, batch_size=batch_size)
    start, cpu = time.perf_counter(), time.process_time()
    result = tokenize_to_disk(job)
    return time.perf_counter() - start, time.process_time() - cpu, result.manifest


def rendered_texts(canonical: Path, tokenizer: str) -> list[str]:
    from dataprep.io import read_records
    from dataprep.template import load_template
    from dataprep.tokenizer_io import load_tokenizer

    tok = load_tokenizer(tokenizer)
    template = load_template(None, tok)
    return [template.render(r).text for r in read_records(str(canonical))]


def time_raw(texts: list[str], tokenizer: str, batch_size: int) -> tuple[float, float, int]:
    from dataprep.tokenizer_io import load_tokenizer

    backend = load_tokenizer(tokenizer)._tokenizer
    start, cpu = time.perf_counter(), time.process_time()
    tokens = 0
    for i in range(0, len(texts), batch_size):
        tokens += sum(len(e) for e in backend.encode_batch(texts[i:i + batch_size], add_special_tokens=False))
    return time.perf_counter() - start, time.process_time() - cpu, tokens


def cli_peak(canonical: Path, tokenizer: str, tmp: Path) -> tuple[float, float]:
    out = tmp / "cli-out"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dataprep", "tokenize", str(canonical), "-o", str(out), "--tokenizer",
                    tokenizer, "--max-length", "1024", "--force", "-q"], check=True, cwd=REPO)
    wall = time.perf_counter() - start
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=52_002)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--tokenizer", default=None, help="default: SHARED/data/tokenizers/qwen2.5")
    args = parser.parse_args()
    tokenizer = args.tokenizer or str(args.shared / "data" / "tokenizers" / "qwen2.5")
    tmp = Path(tempfile.mkdtemp(prefix="bench-tokenize-"))
    try:
        canonical = build_input(tmp, args.shared, args.rows)
        print(f"input: {args.rows:,} rows, {canonical.stat().st_size / 1e6:.1f} MB canonical JSONL; "
              f"cpus: {os.cpu_count()}", flush=True)
        texts = rendered_texts(canonical, tokenizer)
        ours, raw, ours_cpu, raw_cpu, manifest = [], [], [], [], {}
        for run in range(args.runs):
            seconds, cpu, manifest = time_dataprep(canonical, tokenizer, tmp, args.batch_size)
            raw_seconds, raw_cpu_s, raw_tokens = time_raw(texts, tokenizer, args.batch_size)
            ours.append(seconds)
            raw.append(raw_seconds)
            ours_cpu.append(cpu)
            raw_cpu.append(raw_cpu_s)
            print(f"run {run + 1}: dataprep {seconds:.2f}s ({cpu:.2f} CPU s), raw encode_batch {raw_seconds:.2f}s "
                  f"({raw_cpu_s:.2f} CPU s)", flush=True)
        totals = manifest.totals
        t_ours, t_raw = statistics.median(ours), statistics.median(raw)
        c_ours, c_raw = statistics.median(ours_cpu), statistics.median(raw_cpu)
        print(f"dataprep tokenize: {t_ours:.2f}s  {totals.rows_in / t_ours:,.0f} rows/s  "
              f"{totals.tokens / t_ours:,.0f} tokens/s  ({totals.rows_out:,} rows out, "
              f"{totals.tokens:,} tokens, {totals.truncated:,} truncated, {totals.rejected:,} rejected)")
        print(f"raw Rust encode_batch: {t_raw:.2f}s  {len(texts) / t_raw:,.0f} rows/s  "
              f"{raw_tokens / t_raw:,.0f} tokens/s")
        print(f"ratio raw/dataprep: {t_raw / t_ours:.2f} wall, {c_raw / c_ours:.2f} CPU (target >= 0.70)")
        wall, peak = cli_peak(canonical, tokenizer, tmp)
        print(f"CLI process: {wall:.2f}s wall incl. start-up and imports, peak RSS {peak:,.0f} MiB")
        print(json.dumps({"rows": totals.rows_in, "dataprep_s": round(t_ours, 3), "raw_s": round(t_raw, 3),
                          "ratio": round(t_raw / t_ours, 3), "cpu_ratio": round(c_raw / c_ours, 3),
                          "peak_rss_mib": round(peak), "cli_wall_s": round(wall, 2)}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
