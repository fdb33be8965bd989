#!/usr/bin/env python
"""Benchmark ``dataprep tokenize`` against the raw speed of HF ``tokenizers`` on the same texts, in the same run.

Sets (both rendered by the tokenizer's own template, here Qwen2.5's, ``--max-length 1024`` for the first):

* ``bench``: the 52,002-row alpaca-format set of ``bin/make_bench_data.py``, normalized to canonical records;
* ``long``: long multi-turn data — LIMA's conversations, glaive tool calls, and conversations of 20-60 turns
  made from the alpaca demo rows (with no ``--max-length``, so nothing is cut).

For each set, medians of ``--runs``:

* raw: ``encode_batch`` of HF ``tokenizers`` alone on the texts dataprep renders (rendered beforehand, not timed),
  in batches of the same size, with the same Rust thread pool — the yardstick;
* dataprep, in-process (``tokenize_to_disk``: read, render, locate spans, encode, label, write, manifest), with
  the reference encoder (``--encoder hf``) and with the fast one (``--encoder fast``, when ``dataprep[fast]`` is
  installed);
* for ``bench`` also whole processes: ``dataprep normalize RAW | dataprep tokenize - ...`` (start-up, imports
  and the JSON between the two included) with each encoder, and the larger peak RSS of the two processes.

Ratio = raw time / dataprep time: above 1.0 the whole job finishes before HF could merely encode the texts.
Targets (issue "Tokenize for every chat template…"): bench, reference encoder >= 1.0x; fast encoder >= 2.5x;
long data >= 0.5x. On a shared machine wall times swing; CPU times of the process are printed too.

Usage: python bin/bench_tokenize.py [--runs 3] [--rows 52002] [--shared DIR] [--tokenizer DIR] [--sets bench,long]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
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


def bench_input(tmp: Path, shared: Path, rows: int) -> tuple[Path, Path]:
    """The raw alpaca file (for the whole-process pipe) and its canonical JSONL (for the in-process runs)."""
    raw = tmp / "alpaca.json"
    subprocess.run([sys.executable, str(REPO / "bin" / "make_bench_data.py"), str(raw), "--shared", str(shared),
                    "--rows", str(rows)], check=True)
    canonical = tmp / "canonical.jsonl"
    subprocess.run([sys.executable, "-m", "dataprep", "normalize", str(raw), "-o", str(canonical), "-q"],
                   check=True, cwd=REPO)
    return raw, canonical


def long_input(tmp: Path, shared: Path) -> Path:
    """LIMA, glaive tool calls and 20-60-turn conversations built from the alpaca demo rows, as canonical JSONL."""
    from dataprep.formats.dataset_info import load_entry
    from dataprep.io import dumps, read_records
    from dataprep.normalize import NormalizeOptions, normalize_batch
    from dataprep.records import make_record

    folder = shared / "data" / "llamafactory"
    rows = normalize_batch(read_records(str(folder / "lima.json")), NormalizeOptions("alpaca"))[0]
    entry = load_entry(str(folder / "dataset_info.json"), "glaive_toolcall_en_demo")
    rows += normalize_batch(read_records(entry.path), NormalizeOptions(entry.fmt, entry.columns, entry.tags))[0]
    demo = read_records(str(folder / "alpaca_en_demo.json"))
    rng = random.Random(0)
    for n in range(300):
        turns = [rng.choice(demo) for _ in range(rng.randint(20, 60))]
        pairs = [[t["instruction"], t["output"]] for t in turns]
        rows.append(make_record(prompt=pairs[-1][0], response=pairs[-1][1], history=pairs[:-1], id=f"long-{n}"))
    path = tmp / "long.jsonl"
    path.write_text("".join(dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def rendered_texts(canonical: Path, tokenizer: str) -> list[str]:
    from dataprep.io import read_records
    from dataprep.template import load_template
    from dataprep.tokenizer_io import open_tokenizer

    template = load_template(None, open_tokenizer(tokenizer))
    out = []
    for record in read_records(str(canonical)):
        try:
            out.append(template.render(record).text)
        except Exception:  # noqa: BLE001 - a row dataprep rejects is not encoded by either side
            continue
    return out


def time_raw(texts: list[str], tokenizer: str, batch_size: int) -> tuple[float, float]:
    from tokenizers import Tokenizer

    backend = Tokenizer.from_file(str(Path(tokenizer) / "tokenizer.json"))
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(texts), batch_size):
        backend.encode_batch(texts[i:i + batch_size], add_special_tokens=False)
    return time.perf_counter() - start, time.process_time() - cpu


def time_dataprep(canonical: Path, tokenizer: str, out: Path, batch_size: int, encoder: str,
                  max_length: int | None) -> tuple[float, float, object]:
    from dataprep.tokenize import CausalOptions, TokenizeJob, tokenize_to_disk

    job = TokenizeJob(inputs=[str(canonical)], outdir=str(out), tokenizer=tokenizer, force=True,
                      batch_size=batch_size, causal=CausalOptions(max_length=max_length, encoder=encoder))
    start, cpu = time.perf_counter(), time.process_time()
    result = tokenize_to_disk(job)
    return time.perf_counter() - start, time.process_time() - cpu, result.manifest


def time_pipe(raw: Path, tokenizer: str, out: Path, encoder: str) -> tuple[float, float]:
    """``normalize RAW | tokenize -`` as two processes: wall time and the larger of their peak RSS (MiB).

    Each side's peak comes from GNU time (``-f %M``). This process's own children counters would not do: a child
    is forked from this process, and Linux counts the RSS it had before exec (this process's own, with the
    in-process runs' tokenizers loaded) into the child's peak.
    """
    timer = shutil.which("time")  # GNU time; without it the peak is not measured (nan)
    rss = [out.parent / f"rss-{side}.txt" for side in ("normalize", "tokenize")]
    wrap = [f"{timer} -f %M -o {path} " if timer else "" for path in rss]
    cmd = (f"{wrap[0]}{sys.executable} -m dataprep normalize {raw} -q | {wrap[1]}{sys.executable} -m dataprep "
           f"tokenize - -o {out} --tokenizer {tokenizer} --max-length 1024 --encoder {encoder} --force -q")
    start = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, cwd=REPO)
    wall = time.perf_counter() - start
    return wall, max(int(p.read_text().split()[-1]) for p in rss) / 1024 if timer else float("nan")


def report(label: str, seconds: list[float], cpu: list[float], raw: float, raw_cpu: float) -> dict:
    t, c = statistics.median(seconds), statistics.median(cpu)
    print(f"  {label:<34} {t:7.2f}s wall {c:7.2f}s CPU   ratio {raw / t:5.2f}x wall, {raw_cpu / c:5.2f}x CPU",
          flush=True)
    return {"s": round(t, 3), "cpu_s": round(c, 3), "ratio": round(raw / t, 3), "cpu_ratio": round(raw_cpu / c, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=52_002)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--tokenizer", default=None, help="default: SHARED/data/tokenizers/qwen2.5")
    parser.add_argument("--sets", default="bench,long")
    args = parser.parse_args()
    tokenizer = args.tokenizer or str(args.shared / "data" / "tokenizers" / "qwen2.5")
    encoders = ["hf"] + (["fast"] if importlib.util.find_spec("fastokens") else [])
    tmp = Path(tempfile.mkdtemp(prefix="bench-tokenize-"))
    results: dict = {"cpus": os.cpu_count()}
    try:
        sets = args.sets.split(",")
        raw_file, canonical = bench_input(tmp, args.shared, args.rows) if "bench" in sets else (None, None)
        inputs = ([("bench", canonical, 1024)] if "bench" in sets else []) + (
            [("long", long_input(tmp, args.shared), None)] if "long" in sets else [])
        for name, data, max_length in inputs:
            texts = rendered_texts(data, tokenizer)
            chars = sum(map(len, texts))
            print(f"{name}: {len(texts):,} rows, {chars / 1e6:.1f} M characters rendered; {os.cpu_count()} CPUs")
            raws, raw_cpus = zip(*(time_raw(texts, tokenizer, args.batch_size) for _ in range(args.runs)),
                                 strict=True)
            raw, raw_cpu = statistics.median(raws), statistics.median(raw_cpus)
            print(f"  {'raw HF encode_batch':<34} {raw:7.2f}s wall {raw_cpu:7.2f}s CPU", flush=True)
            entry = results.setdefault(name, {"rows": len(texts), "raw_s": round(raw, 3)})
            for encoder in encoders:
                runs = [time_dataprep(data, tokenizer, tmp / "out", args.batch_size, encoder, max_length)
                        for _ in range(args.runs)]
                entry[f"dataprep_{encoder}"] = report(f"dataprep tokenize (--encoder {encoder})",
                                                      [r[0] for r in runs], [r[1] for r in runs], raw, raw_cpu)
            if name == "bench":
                for encoder in encoders:
                    pipes = [time_pipe(raw_file, tokenizer, tmp / "pipe", encoder) for _ in range(args.runs)]
                    wall = statistics.median(p[0] for p in pipes)
                    peak = max(p[1] for p in pipes)
                    print(f"  {'normalize | tokenize (--encoder ' + encoder + ')':<34} {wall:7.2f}s wall"
                          f"{'':14} ratio {raw / wall:5.2f}x wall; peak RSS {peak:,.0f} MiB", flush=True)
                    entry[f"pipe_{encoder}"] = {"s": round(wall, 3), "ratio": round(raw / wall, 3),
                                                "peak_rss_mib": round(peak)}
        print(json.dumps(results))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
