#!/usr/bin/env python
"""Write the 52,002-row alpaca-format benchmark input (the size of Stanford Alpaca, which is not available here).

The four real alpaca-format files of ../shared/data are concatenated in a fixed order and repeated, cut at
exactly 52,002 rows, and written as one JSON array. Rows keep their own columns (new_codealpaca's extra
``response`` stays), so normalize sees real, slightly mixed data.

Usage: python bin/make_bench_data.py OUT [--shared DIR]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

ROWS = 52_002
SOURCES = (
    "alpaca/code_alpaca_2k.json",
    "alpaca/new_codealpaca.json",
    "llamafactory/alpaca_en_demo.json",
    "llamafactory/alpaca_zh_demo.json",
)
DEFAULT_SHARED = Path(os.environ.get("DATAPREP_SHARED", Path(__file__).resolve().parent.parent.parent / "shared"))


def bench_rows(shared: Path, rows: int = ROWS) -> list[dict]:
    pool: list[dict] = []
    for name in SOURCES:
        pool.extend(json.loads((shared / "data" / name).read_text(encoding="utf-8")))
    return [pool[i % len(pool)] for i in range(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared folder holding data/")
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args()
    rows = bench_rows(args.shared, args.rows)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {len(rows)} rows, {args.out.stat().st_size:,} bytes to {args.out}")


if __name__ == "__main__":
    main()
