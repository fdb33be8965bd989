#!/usr/bin/env python
"""Rows per second of ``dataprep run`` on Ray (1 and 2 workers) against the local engine, on the same recipe.

Inputs: the 52,002-row set of ``bin/make_bench_data.py`` written as JSONL (so it shards), and a ~0.6 GB JSONL made
by repeating it with fresh ids. The recipe: normalize, filter (``min_response_chars: 6``), split (2% validation),
tokenize (``--template plain``, max length 2048). Each measurement is a fresh process; a Ray one starts its own
local cluster with ``num_cpus`` = workers, and the time to start it is printed apart from the run. Every Ray
run's ``save_to_disk`` folder is compared with the local engine's, so a fast wrong answer fails here.

Usage: python bin/bench_ray.py [--runs 3] [--big-runs 1] [--tokenizer DIR] [--shared DIR] [--skip-big]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_bench_data import DEFAULT_SHARED, bench_rows  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RECIPE = {"normalize": {}, "filter": {"min_response_chars": 6}, "split": {"val_size": 0.02, "seed": 42}}
CHILD = """
import json, sys, time
t0 = time.perf_counter()
import ray
ray.init(num_cpus={workers}, include_dashboard=False, log_to_driver=False)
t1 = time.perf_counter()
from dataprep.cache import Cache
from dataprep.cluster.engine import execute
from dataprep.cluster.job import Settings, from_plan
from dataprep.recipe import load_recipe
from dataprep.runner import plan
p = plan(load_recipe({recipe!r}), Cache(None))
execute(from_plan(p, Settings(shard_bytes={shard_bytes}), {disk!r}))
t2 = time.perf_counter()
print(json.dumps({{"start": t1 - t0, "run": t2 - t1}}))
"""


def write_inputs(folder: Path, shared: Path, big: bool) -> dict[str, tuple[Path, int]]:
    rows = bench_rows(shared)
    small = folder / "bench52k.jsonl"
    with open(small, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    out = {"52k": (small, len(rows))}
    if big:
        target = 600 << 20
        path, n, copy = folder / "bench600mb.jsonl", 0, 0
        with open(path, "w", encoding="utf-8") as f:
            while f.tell() < target:
                for r in rows:
                    f.write(json.dumps({**r, "instruction": f"[{copy}] {r.get('instruction', '')}"},
                                       ensure_ascii=False) + "\n")
                n += len(rows)
                copy += 1
        out["600MB"] = (path, n)
    return out


def recipe(folder: Path, data: Path, tokenizer: Path, output: Path) -> Path:
    path = folder / f"{output.name}.yaml"
    body = {"inputs": [{"path": str(data), "format": "alpaca"}], **RECIPE,
            "tokenize": {"tokenizer": str(tokenizer), "template": "plain", "max_length": 2048},
            "output": str(output)}
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def local_run(folder: Path, data: Path, tokenizer: Path) -> float:
    out = folder / "local"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dataprep", "run", str(recipe(folder, data, tokenizer, out)), "--no-cache",
                    "-q"], check=True, cwd=REPO)
    return time.perf_counter() - start


def ray_run(folder: Path, data: Path, tokenizer: Path, workers: int, shard_bytes: int) -> dict[str, float]:
    parts, disk = folder / f"parts{workers}", folder / f"disk{workers}"
    for p in (parts, disk):
        shutil.rmtree(p, ignore_errors=True)
    code = CHILD.format(workers=workers, recipe=str(recipe(folder, data, tokenizer, parts)), shard_bytes=shard_bytes,
                        disk=str(disk))
    done = subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True, text=True)
    times = json.loads(done.stdout.strip().splitlines()[-1])
    same = _same(folder / "local", disk)
    if not same:
        raise SystemExit(f"ray ({workers} workers) wrote other rows than the local engine")
    return times


def _same(a: Path, b: Path) -> bool:
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.arrow"))}
    return files(a) == files(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per engine on the 52k set (median)")
    parser.add_argument("--big-runs", type=int, default=1, help="runs per engine on the 0.6 GB set")
    parser.add_argument("--tokenizer", type=Path, default=None, help="default: SHARED/data/tokenizers/qwen2.5")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--skip-big", action="store_true")
    args = parser.parse_args()
    tokenizer = args.tokenizer or args.shared / "data" / "tokenizers" / "qwen2.5"
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        folder = Path(tmp)
        inputs = write_inputs(folder, args.shared, big=not args.skip_big)
        for name, (data, rows) in inputs.items():
            runs = args.runs if name == "52k" else args.big_runs
            size = data.stat().st_size
            shard_bytes = max(1 << 20, size // 16)  # 16 shards: enough to keep 2 workers busy
            local = statistics.median(local_run(folder, data, tokenizer) for _ in range(runs))
            print(f"{name} ({rows:,} rows, {size / 2**20:,.0f} MiB, {runs} run(s), medians): "
                  f"local engine {local:.1f} s = {rows / local:,.0f} rows/s", flush=True)
            for workers in (1, 2):
                results = [ray_run(folder, data, tokenizer, workers, shard_bytes) for _ in range(runs)]
                run = statistics.median(r["run"] for r in results)
                start = statistics.median(r["start"] for r in results)
                print(f"  ray, {workers} worker(s): {run:.1f} s = {rows / run:,.0f} rows/s (+{start:.1f} s to start "
                      f"the cluster); {run / local:.2f}x the local engine's time; output identical", flush=True)


if __name__ == "__main__":
    main()
