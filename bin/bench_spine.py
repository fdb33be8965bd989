#!/usr/bin/env python
"""Time the spine (normalize | filter | split) against the seed 004 notebook's Hugging Face ``datasets`` code.

Both sides start from the same 52,002-row alpaca JSON (bin/make_bench_data.py) and run in fresh processes,
so both pay their imports; each run gets a fresh temp dir (and, for ``datasets``, a fresh cache_dir).

(a) dataprep: three processes joined by OS pipes, exactly as the shell runs
    ``dataprep normalize F | dataprep filter - --min-response-chars 6 | dataprep split - --val-size 0.02
    --seed 42 > out.jsonl``; each stage's peak RSS comes from ``os.wait4``.
(b) datasets: load_dataset('json'), .filter(keep_example), .map(build_messages), .map(add_length_bucket),
    the ClassLabel cast and train_test_split(test_size=0.02, seed=42, stratify_by_column='len_bucket').

Prints the median wall time of each over --runs runs, their ratio, and the row counts both produced.
Usage: python bin/bench_spine.py [--runs 3] [--shared DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_bench_data import DEFAULT_SHARED  # noqa: E402

STAGES = (
    ["normalize", "{input}"],
    ["filter", "-", "--min-response-chars", "6"],
    ["split", "-", "--val-size", "0.02", "--seed", "42"],
)

HF_CODE = r"""
import sys
from collections import Counter
from datasets import ClassLabel, load_dataset

data_file, cache_dir = sys.argv[1], sys.argv[2]
train_raw = load_dataset("json", data_files=data_file, cache_dir=cache_dir)["train"]

def keep_example(example):
    answer = example["output"].strip()
    return len(answer) > 5

filtered = train_raw.filter(keep_example)

def build_messages(example):
    prompt = example["instruction"].strip()
    if example["input"]:
        prompt += "\n" + example["input"].strip()
    return {"messages": [{"role": "user", "content": prompt},
                         {"role": "assistant", "content": example["output"].strip()}]}

structured = filtered.map(build_messages)
structured = structured.remove_columns([c for c in structured.column_names if c != "messages"])

def add_length_bucket(example):
    example["len_bucket"] = min(len(example["messages"][0]["content"].split()) // 200, 4)
    return example

bucketed = structured.map(add_length_bucket)
counts = Counter(bucketed["len_bucket"])
valid = sorted(b for b, c in counts.items() if c >= 2)
if len(valid) < len(counts):
    bucketed = bucketed.filter(lambda example: example["len_bucket"] in valid)
remap = {b: i for i, b in enumerate(valid)}

def remap_bucket(example):
    example["len_bucket"] = remap[example["len_bucket"]]
    return example

bucketed = bucketed.map(remap_bucket)
bucketed = bucketed.cast_column("len_bucket", ClassLabel(num_classes=len(valid)))
split = bucketed.train_test_split(test_size=0.02, seed=42, stratify_by_column="len_bucket")
print(len(split["train"]), len(split["test"]))
"""


def run_dataprep(data: Path, work: Path) -> tuple[float, list[float], list[int], int]:
    """Wall seconds, CPU seconds and peak RSS (KiB) per stage, rows written."""
    out_path = work / "out.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(work)}
    start = time.perf_counter()
    procs: list[subprocess.Popen[bytes]] = []
    with open(out_path, "wb") as out, open(work / "stderr.txt", "wb") as err:
        stdin = None
        for i, stage in enumerate(STAGES):
            args = [a.format(input=data) for a in stage]
            proc = subprocess.Popen([sys.executable, "-m", "dataprep", *args], stdin=stdin, env=env, stderr=err,
                                    stdout=out if i == len(STAGES) - 1 else subprocess.PIPE)
            if stdin is not None:
                stdin.close()
            stdin = proc.stdout
            procs.append(proc)
        peaks, cpu = [], []
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode:
                raise SystemExit(f"dataprep {proc.args[3]} failed:\n{(work / 'stderr.txt').read_text()}")
            peaks.append(usage.ru_maxrss)
            cpu.append(usage.ru_utime + usage.ru_stime)
    elapsed = time.perf_counter() - start
    with open(out_path, "rb") as f:
        rows = sum(1 for _ in f)
    return elapsed, cpu, peaks, rows


def run_datasets(data: Path, work: Path) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds, and the train/test sizes it printed."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(work / "hf"),
           "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", HF_CODE, str(data), str(work / "cache")], env=env,
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if result.returncode:
        raise SystemExit(f"datasets run failed:\n{result.stderr[-3000:]}")
    return elapsed, cpu, result.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dataprep-bench-") as root:
        data = Path(root) / "alpaca_52k.json"
        # In a child process: a child's peak RSS starts from its parent's, so this process must stay small.
        subprocess.run([sys.executable, str(Path(__file__).with_name("make_bench_data.py")), str(data),
                        "--shared", str(args.shared)], check=True, stdout=subprocess.DEVNULL)
        print(f"input: {data.stat().st_size:,} bytes, 52,002 rows; {os.cpu_count()} CPUs")
        ours, theirs, our_cpu, their_cpu, peaks_all, stage_cpu = [], [], [], [], [], []
        for run in range(args.runs):
            with tempfile.TemporaryDirectory(dir=root) as work:
                seconds, cpu, peaks, rows = run_dataprep(data, Path(work))
                ours.append(seconds)
                our_cpu.append(sum(cpu))
                stage_cpu.append(cpu)
                peaks_all.append(peaks)
                print(f"run {run + 1}: dataprep {seconds:.2f} s wall, {sum(cpu):.2f} s CPU ({rows} rows out)",
                      flush=True)
            with tempfile.TemporaryDirectory(dir=root) as work:
                seconds, cpu, counts = run_datasets(data, Path(work))
                theirs.append(seconds)
                their_cpu.append(cpu)
                print(f"run {run + 1}: datasets {seconds:.2f} s wall, {cpu:.2f} s CPU (train, test = {counts})",
                      flush=True)
    a, b = statistics.median(ours), statistics.median(theirs)
    ca, cb = statistics.median(our_cpu), statistics.median(their_cpu)
    print(f"dataprep normalize|filter|split median: {a:.2f} s wall, {ca:.2f} s CPU")
    print(f"datasets (seed 004 code) median:       {b:.2f} s wall, {cb:.2f} s CPU")
    print(f"speed-up: {b / a:.1f}x wall, {cb / ca:.1f}x CPU")
    print(f"best of {args.runs} (least disturbed by other load): dataprep {min(ours):.2f} s, datasets "
          f"{min(theirs):.2f} s, {min(theirs) / min(ours):.1f}x")
    for i, (name, *_) in enumerate(STAGES):
        cpu = statistics.median(c[i] for c in stage_cpu)
        print(f"{name}: {cpu:.2f} s CPU (median), peak RSS {max(p[i] for p in peaks_all) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
