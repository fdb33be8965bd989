#!/usr/bin/env python
"""Render throughput, old method against new: rows/s and renders per row on real data and real templates.

old: the growing-prefix method (2 renders per assistant turn), loaded from the git history of
dataprep/template.py (``--old-rev``); new: one real render + one tagged render per row (dataprep.template).
Also the sandbox's own cost: the new render with the work/size budget against the same template compiled in a
plain sandbox without it.

Usage: python bin/bench_render.py [--shared ../shared/data] [--repeat 3] [--old-rev 254b93f]
Prints one line per (data, template): medians of --repeat runs. Time on a shared machine is noisy.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dataprep import records  # noqa: E402
from dataprep.template import load_template  # noqa: E402


def old_module(rev: str) -> Any:
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:dataprep/template.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_template.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("old_template", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_template"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def alpaca_records(path: Path) -> list[records.Record]:
    return [records.make_record(prompt=r["instruction"], query=r.get("input", ""), response=r["output"],
                                history=r.get("history")) for r in json.loads(path.read_text(encoding="utf-8"))]


def timed(render: Any, rows: list[records.Record], repeat: int) -> tuple[float, int]:
    times, rejected = [], 0
    for _ in range(repeat):
        rejected = 0
        start = time.perf_counter()
        for record in rows:
            try:
                render(record)
            except records.RecordError:
                rejected += 1
        times.append(time.perf_counter() - start)
    return statistics.median(times), rejected


class Counting:
    """Counts calls of a template's render function, to report renders per row."""

    def __init__(self, template: Any) -> None:
        self.template, self.calls = template, 0
        original = template._render

        def counted(*args: Any, **kwargs: Any) -> str:
            self.calls += 1
            return original(*args, **kwargs)

        template._render = counted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--old-rev", default="254b93f")
    args = parser.parse_args()
    shared = Path(args.shared)
    from transformers import AutoTokenizer

    old = old_module(args.old_rev)
    data = {"lima (multi-turn rows)": [r for r in alpaca_records(shared / "llamafactory" / "lima.json") if r["history"]],
            "lima (all)": alpaca_records(shared / "llamafactory" / "lima.json"),
            "alpaca_en_demo": alpaca_records(shared / "llamafactory" / "alpaca_en_demo.json")}
    print(f"{'data':24} {'template':8} {'rows':>5} {'old rows/s':>11} {'new rows/s':>11} {'new/old':>8} "
          f"{'renders/row old':>16} {'new':>5} {'old rejects':>11} {'new rejects':>11}")
    for name in ("qwen2.5", "qwen3"):
        tokenizer = AutoTokenizer.from_pretrained(str(shared / "tokenizers" / name))
        new = load_template(None, tokenizer)
        previous = old.load_template(None, tokenizer)
        for label, rows in data.items():
            counted_old, counted_new = Counting(previous), Counting(new)
            t_old, rej_old = timed(previous.render, rows, args.repeat)
            t_new, rej_new = timed(new.render, rows, args.repeat)
            per_old = counted_old.calls / (args.repeat * len(rows))
            per_new = counted_new.calls / (args.repeat * len(rows))
            print(f"{label:24} {name:8} {len(rows):>5} {len(rows) / t_old:>11.0f} {len(rows) / t_new:>11.0f} "
                  f"{t_old / t_new:>7.2f}x {per_old:>16.2f} {per_new:>5.2f} {rej_old:>11} {rej_new:>11}")
            previous._render = type(previous)._render.__get__(previous)
            new._render = type(new)._render.__get__(new)
    # the budget's own cost: the same renders, bounded vs unbounded (plain transformers-like sandbox)
    tokenizer = AutoTokenizer.from_pretrained(str(shared / "tokenizers" / "qwen3"))
    rows = data["alpaca_en_demo"]
    bounded = load_template(None, tokenizer)
    plain = old.load_template(None, tokenizer)
    messages = [bounded.messages_of(r) for r in rows]
    t_bounded, _ = timed(lambda m: bounded.render_messages(*m), messages, args.repeat)
    t_plain, _ = timed(lambda m: plain.render_messages(*m), messages, args.repeat)
    print(f"budget overhead (qwen3, alpaca_en_demo, one render per row): bounded {t_bounded * 1e6 / len(rows):.0f} "
          f"us/row, unbounded {t_plain * 1e6 / len(rows):.0f} us/row, {100 * (t_bounded / t_plain - 1):+.1f}%")


if __name__ == "__main__":
    main()
