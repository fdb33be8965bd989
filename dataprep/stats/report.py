"""The text report of ``dataprep stats``: aligned tables, one section per question a user asks of a dataset."""

from __future__ import annotations

from typing import Any

MAX_TURNS = 6  # turn counts from here on share one column ("6+")
SIDE_NAMES = {"prompt": "prompt", "response": "response", "whole": "whole row"}


def _table(header: list[str], rows: list[list[str]], left: int = 1, indent: str = "  ") -> list[str]:
    """Left-align the first ``left`` columns (names), right-align the others (numbers)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(c).ljust(w) if i < left else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append(indent + "  ".join(cells).rstrip())
    return lines


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def turn_columns(turns: dict[str, Any]) -> list[str]:
    """Turn-count columns: 1 .. MAX_TURNS-1, then "MAX_TURNS+" when any row has that many."""
    seen = {int(k) for t in turns.values() for k in t["counts"]}
    columns = [str(k) for k in range(min(seen, default=1), min(max(seen, default=1), MAX_TURNS - 1) + 1)]
    if any(k >= MAX_TURNS for k in seen):
        columns.append(f"{MAX_TURNS}+")
    return columns


def turn_counts(counts: dict[str, int], columns: list[str]) -> list[int]:
    out = []
    for column in columns:
        if column.endswith("+"):
            out.append(sum(v for k, v in counts.items() if int(k) >= int(column[:-1])))
        else:
            out.append(counts.get(column, 0))
    return out


def render_text(report: dict[str, Any]) -> str:
    info = report["input"]
    splits = list(report["splits"])
    lines = [f"dataprep stats: {info['path']} ({info['kind']}, {info['task']}, {report['rows']:,} rows)", ""]

    lines.append("Rows per split")
    rows = [[s, f"{v['rows']:,}", _pct(v["share"])] for s, v in report["splits"].items()]
    lines += _table(["split", "rows", "share"], rows) + [""]

    buckets = report["buckets"]
    what = "tokens per row" if buckets["by"] == "tokens" else f"{buckets['by']}: words of the user turn // 200, max 4"
    lines.append(f"Rows per length bucket ({what})")
    rows = [[label, *(f"{buckets['counts'][s][i]:,}" for s in splits)] for i, label in enumerate(buckets["labels"])]
    lines += _table(["bucket", *splits], rows) + [""]

    for unit, title in (("chars", "characters"), ("tokens", "tokens")):
        sides = report["length"].get(unit)
        if not sides:
            continue
        note = " (plain text, no chat template)" if unit == "tokens" and info["kind"] == "records" else ""
        lines.append(f"Length in {title}{note}")
        rows = []
        for side, entry in sides.items():
            for k, (split, v) in enumerate(entry["splits"].items()):
                name = SIDE_NAMES[side] if k == 0 else ""
                rows.append([name, split, *(f"{v[q]:,}" for q in ("min", "p50", "p90", "p99", "max")),
                             f"{v['mean']:,.1f}", f"{v['total']:,}"])
        lines += _table(["", "split", "min", "p50", "p90", "p99", "max", "mean", "total"], rows, left=2) + [""]

    turns = report.get("turns") or {}
    if turns:
        what = "user-assistant exchanges" if info["kind"] == "records" else "supervised runs = assistant turns"
        lines.append(f"Turns per conversation ({what})")
        columns = turn_columns(turns)
        rows = [[s, *(f"{n:,}" for n in turn_counts(t["counts"], columns)), f"{t['mean']:.2f}"]
                for s, t in turns.items()]
        lines += _table(["split", *columns, "mean"], rows) + [""]

    supervised = report.get("supervised")
    if supervised:
        unit = supervised["unit"]
        lines.append(f"Supervised share (response {unit} / all {unit})")
        rows = [[s, f"{v['supervised']:,}", f"{v['total']:,}", _pct(v["share"])]
                for s, v in supervised.items() if s != "unit"]
        lines += _table(["split", "supervised", "total", "share"], rows) + [""]

    truncated = report.get("truncated")
    lines.append("Truncated rows: " + (", ".join(f"{s} {n:,}" for s, n in truncated.items()) if truncated
                                       else "not recorded (only a tokenized folder's manifest has them)"))
    rejected = report.get("rejected")
    if rejected:
        lines.append(f"Rejected rows ({rejected['source']}): " + ", ".join(
            f"{reason} {n:,}" for reason, n in sorted(rejected["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))))
    else:
        lines.append("Rejected rows: none recorded")
    dup = report["duplicates"]
    lines.append("Duplicate rows (same content as an earlier row): " + ", ".join(
        f"{s} {n:,}" for s, n in dup["within"].items()) + f"; across splits {dup['across_splits']:,}")
    lines.append("")

    mixture = report.get("mixture")
    if mixture and isinstance(mixture.get("sources"), dict):
        lines.append("Mixture per source (as realised)")
        rows = [[name, f"{v.get('rows', 0):,}", f"{v.get('tokens', 0):,}" if v.get("tokens") is not None else "-"]
                for name, v in mixture["sources"].items()]
        lines += _table(["source", "rows", "tokens"], rows) + [""]

    packing = report.get("packing")
    if packing:
        lines.append(f"Packing: {packing['sequences']:,} rows in {packing['rows']:,} packed rows of "
                     f"{packing['max_length']:,} tokens ({packing['mean_sequences_per_row']:.2f} per packed row); "
                     f"efficiency {_pct(packing['efficiency'])} (real tokens / (packed rows x max length))")
        lines.append("")

    leakage = report.get("leakage")
    if leakage:
        lines += _leakage(leakage)
    return "\n".join(lines).rstrip() + "\n"


def _leakage(leakage: dict[str, Any]) -> list[str]:
    if "skipped" in leakage:
        return [f"Leakage between splits: not checked ({leakage['skipped']})"]
    lines = [f"Leakage: held-out rows near a train row (estimated Jaccard >= {leakage['threshold']}) or sharing "
             f"{leakage['ngram']} words in a row with one ({leakage['train_rows']:,} train rows checked)"]
    rows = [[s, f"{v['rows']:,}", f"{v['near_duplicates']:,}", f"{v['ngram_overlaps']:,}", f"{v['either']:,}",
             _pct(v["either"] / v["rows"]) if v["rows"] else "-"] for s, v in leakage["splits"].items()]
    lines += _table(["split", "rows", "near dup", "n-gram", "either", "share"], rows)
    for split, v in leakage["splits"].items():
        for ex in v["examples"]:
            how = f"similarity {ex['similarity']:.2f}" if "similarity" in ex else f"{ex['ngram']} shared words"
            lines.append(f"    e.g. {split} id {ex['id']} ~ train id {ex['train_id']} ({how})")
    return lines
