#!/usr/bin/env python
"""What the hard-edge guards cost: bounded schema evaluation in ``validate`` and the strict JSON reader.

(a) validate: every record of the 52,002-row alpaca set (bin/make_bench_data.py) against the shipped
    ``alpaca`` schema, and its normalized form against ``canonical``: plain jsonschema (the validator built as
    before: no registry, no timer) against dataprep's path (local-only registry, per-record SIGALRM budget).
    Records are parsed once beforehand, so only evaluation is timed.
(b) reading: the same rows as JSONL through ``read_batches``, with Python's lenient decoder swapped in against
    the strict one (duplicate keys, NaN/Infinity and lone-surrogate checks).

Prints the median of --runs runs of each and the ratio. In-process timings; the machine may be shared.
Usage: python bin/bench_edges.py [--runs 5] [--shared DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_bench_data import DEFAULT_SHARED, bench_rows  # noqa: E402

from dataprep.io import read_batches  # noqa: E402
from dataprep.normalize import NormalizeOptions, normalize_batch  # noqa: E402
from dataprep.schemas import load_schema  # noqa: E402
from dataprep.validate import RecordTimer, _record_problems, make_validator  # noqa: E402


def median_time(fn, runs: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_schema(name: str, records: list[dict], runs: int) -> None:
    from jsonschema import Draft202012Validator, validators

    document = load_schema(name)
    plain = validators.validator_for(document, default=Draft202012Validator)(document)
    ours = make_validator(name)

    def before() -> None:
        for record in records:
            list(plain.iter_errors(record))

    def after() -> None:
        with RecordTimer(2.0) as timer:
            for record in records:
                _record_problems(timer, ours, record)

    t_before, t_after = median_time(before, runs), median_time(after, runs)
    print(f"validate {name:9} {len(records):,} records: plain jsonschema {t_before:.3f} s, bounded {t_after:.3f} s, "
          f"ratio {t_after / t_before:.2f} ({1e6 * (t_after - t_before) / len(records):.1f} µs/record)")


def bench_reader(rows: list[dict], runs: int) -> None:
    import dataprep.io

    strict = dataprep.io._STRICT
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

        def read(decoder: json.JSONDecoder) -> None:
            dataprep.io._STRICT = decoder
            try:
                for _ in read_batches(str(path)):
                    pass
            finally:
                dataprep.io._STRICT = strict

        t_before = median_time(lambda: read(json.JSONDecoder()), runs)
        t_after = median_time(lambda: read(strict), runs)
    print(f"read JSONL {len(rows):,} rows with read_batches: Python's lenient json {t_before:.3f} s, strict "
          f"{t_after:.3f} s, ratio {t_after / t_before:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    args = parser.parse_args()
    rows = bench_rows(args.shared)
    canonical, _ = normalize_batch([dict(r) for r in rows], NormalizeOptions(source="alpaca"))
    bench_schema("alpaca", rows, args.runs)
    bench_schema("canonical", canonical, args.runs)
    bench_reader(rows, args.runs)


if __name__ == "__main__":
    main()
