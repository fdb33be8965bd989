#!/usr/bin/env python
"""Time ``dataprep run`` against the shell pipe of the same stages, on the same 52,002-row input, in the same run.

Every measurement is a fresh process in a fresh temp dir (cold cache); CPU time is the children's user + system
time (``os.wait4``), summed over the pipe's processes. Outputs are compared byte for byte, so a faster run that
wrote something else would fail here instead of looking good.

(a) records: ``normalize | filter --min-response-chars 6 | split --val-size 0.02 --seed 42 -o out.jsonl`` against
    ``dataprep run`` of the same recipe (with its cache, and with ``--no-cache``); also the seed 004 ``datasets``
    code of bin/bench_spine.py, for the CPU ratio of the spine through ``run``.
(b) dataset: the same pipe ``| tokenize --template plain --max-length 2048 -o DIR`` against ``run``; then ``run``
    again with only ``tokenize.max_length`` changed, which reuses normalize, filter and split from the cache.

Usage: python bin/bench_run.py [--runs 3] [--tokenizer DIR] [--shared DIR] [--skip-datasets]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_spine import run_datasets  # noqa: E402
from make_bench_data import DEFAULT_SHARED  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATAPREP = [sys.executable, "-m", "dataprep"]
RECORD_STAGES = (
    ["normalize", "{input}", "-q"],
    ["filter", "-", "--min-response-chars", "6", "-q"],
    ["split", "-", "--val-size", "0.02", "--seed", "42", "-q"],
)
RECIPE = """\
inputs:
  - path: {input}
normalize:
filter:
  min_response_chars: 6
split:
  val_size: 0.02
  seed: 42
{tokenize}output: {output}
"""


def timed(commands: list[list[str]], stdout: Path | None, env: dict[str, str]) -> tuple[float, float]:
    """Run ``commands`` joined by OS pipes (one command: alone); wall seconds and CPU seconds of all of them."""
    start = time.perf_counter()
    procs: list[subprocess.Popen[bytes]] = []
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115 - closed below
    stdin = None
    for i, args in enumerate(commands):
        last = i == len(commands) - 1
        proc = subprocess.Popen(args, stdin=stdin, stdout=out if last else subprocess.PIPE, env=env, cwd=REPO)
        if stdin is not None:
            stdin.close()
        stdin = proc.stdout
        procs.append(proc)
    cpu = 0.0
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"failed: {' '.join(map(str, proc.args))}")
        cpu += usage.ru_utime + usage.ru_stime
    if stdout:
        out.close()  # type: ignore[union-attr]
    return time.perf_counter() - start, cpu


def arrow_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.arrow"))}


def report(name: str, walls: list[float], cpus: list[float]) -> tuple[float, float]:
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    print(f"{name:<44} {wall:6.2f} s wall  {cpu:6.2f} s CPU   (median of {len(walls)})")
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokenizer", default=str(REPO / "fixtures" / "tokenizers" / "tiny-bpe"))
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--skip-datasets", action="store_true", help="do not time the seed 004 datasets code")
    args = parser.parse_args()
    results: dict[str, tuple[list[float], list[float]]] = {}

    def add(name: str, measured: tuple[float, float]) -> None:
        walls, cpus = results.setdefault(name, ([], []))
        walls.append(measured[0])
        cpus.append(measured[1])

    with tempfile.TemporaryDirectory(prefix="dataprep-bench-run-") as root:
        data = Path(root) / "alpaca_52k.json"
        subprocess.run([sys.executable, str(REPO / "bin" / "make_bench_data.py"), str(data), "--shared",
                        str(args.shared)], check=True, stdout=subprocess.DEVNULL)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": root}
        tokenize = (f"tokenize:\n  tokenizer: {args.tokenizer}\n  template: plain\n  max_length: 2048\n")
        print(f"input: {data.stat().st_size:,} bytes, 52,002 rows; {os.cpu_count()} CPUs (shared with other work: "
              "compare numbers of one run, not across runs)")
        for run in range(args.runs):
            work = Path(root) / f"run{run}"
            work.mkdir()
            records = work / "records.yaml"
            records.write_text(RECIPE.format(input=data, tokenize="", output=work / "run" / "out.jsonl"))
            dataset = work / "dataset.yaml"
            dataset.write_text(RECIPE.format(input=data, tokenize=tokenize, output=work / "runds" / "data"))
            pipe = [[*DATAPREP, *(a.format(input=data) for a in stage)] for stage in RECORD_STAGES]
            # -o: the same atomic write (temp file, fsync, rename) as run's output
            add("(a) pipe normalize|filter|split", timed([*pipe[:-1], [*pipe[-1], "-o", str(work / "pipe.jsonl")]],
                                                         None, env))
            add("(a) run, cold cache", timed([[*DATAPREP, "run", str(records), "-q"]], None, env))
            if (work / "run" / "out.jsonl").read_bytes() != (work / "pipe.jsonl").read_bytes():
                raise SystemExit("run and the pipe wrote different records")
            add("(a) run --no-cache", timed([[*DATAPREP, "run", str(records), "-q", "--no-cache"]], None, env))
            if not args.skip_datasets:
                seconds, cpu, _ = run_datasets(data, work)
                add("(a) seed 004 datasets code", (seconds, cpu))
            tok = [*DATAPREP, "tokenize", "-", "--tokenizer", args.tokenizer, "--template", "plain",
                   "--max-length", "2048", "-o", str(work / "pipeds"), "-q"]
            add("(b) pipe normalize|filter|split|tokenize", timed([*pipe, tok], None, env))
            add("(b) run, cold cache", timed([[*DATAPREP, "run", str(dataset), "-q"]], None, env))
            if arrow_files(work / "runds" / "data") != arrow_files(work / "pipeds"):
                raise SystemExit("run and the pipe wrote different Arrow data")
            add("(b) run again, tokenize.max_length changed",
                timed([[*DATAPREP, "run", str(dataset), "-q", "tokenize.max_length=1024"]], None, env))
            add("(b) run --no-cache", timed([[*DATAPREP, "run", str(dataset), "-q", "--no-cache",
                                              f"output={work / 'runnc'}"]], None, env))
            shutil.rmtree(work)
            print(f"run {run + 1} of {args.runs} done", flush=True)
    medians = {name: report(name, *values) for name, values in results.items()}
    pipe_a, pipe_b = medians["(a) pipe normalize|filter|split"], medians["(b) pipe normalize|filter|split|tokenize"]
    for name, (wall, cpu) in medians.items():
        base = pipe_a if name.startswith("(a)") else pipe_b
        if "pipe" not in name and "datasets" not in name:
            print(f"{name:<44} {base[0] / wall:5.2f}x wall, {base[1] / cpu:5.2f}x CPU against the pipe")
    if not args.skip_datasets:
        hf = medians["(a) seed 004 datasets code"]
        for name in ("(a) pipe normalize|filter|split", "(a) run, cold cache", "(a) run --no-cache"):
            print(f"seed 004 datasets code / {name[4:]:<24} {hf[0] / medians[name][0]:5.2f}x wall, "
                  f"{hf[1] / medians[name][1]:5.2f}x CPU")


if __name__ == "__main__":
    main()
