"""The HTML page of ``dataprep stats``: one self-contained file (inline CSS and SVG; no script, no font, no
image or style sheet fetched from anywhere), so it can be mailed, archived or opened offline."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from dataprep.stats.plots import figures, svg
from dataprep.stats.report import SIDE_NAMES, turn_columns, turn_counts

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 62rem;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { padding: 0.2rem 0.7rem; border-bottom: 1px solid #e3e3e3; }
th { text-align: left; background: #f5f5f5; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0 2rem; } figure svg { width: 100%; height: auto; display: block; }
figcaption { color: #555; font-size: 0.85rem; margin-top: 0.3rem; }
.facts li { margin: 0.15rem 0; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{_e(c)}</td>' if i >= numeric_from else f"<td>{_e(c)}</td>"
                         for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _facts(report: dict[str, Any]) -> list[str]:
    items = []
    truncated = report.get("truncated")
    items.append("Truncated rows: " + (", ".join(f"{s} {n:,}" for s, n in truncated.items()) if truncated
                                       else "not recorded"))
    rejected = report.get("rejected")
    items.append(f"Rejected rows ({rejected['source']}): " + ", ".join(f"{r} {n:,}" for r, n in
                 rejected["reasons"].items()) if rejected else "Rejected rows: none recorded")
    dup = report["duplicates"]
    items.append("Duplicate rows: " + ", ".join(f"{s} {n:,}" for s, n in dup["within"].items())
                 + f"; across splits {dup['across_splits']:,}")
    packing = report.get("packing")
    if packing:
        items.append(f"Packing: {packing['sequences']:,} rows in {packing['rows']:,} packed rows of "
                     f"{packing['max_length']:,} tokens, efficiency {_pct(packing['efficiency'])}")
    return items


def _leakage(leakage: dict[str, Any] | None) -> str:
    if not leakage:
        return "<p>Not checked (--no-leakage).</p>"
    if "skipped" in leakage:
        return f"<p>Not checked: {_e(leakage['skipped'])}.</p>"
    rows = [[s, f"{v['rows']:,}", f"{v['near_duplicates']:,}", f"{v['ngram_overlaps']:,}", f"{v['either']:,}",
             _pct(v["either"] / v["rows"]) if v["rows"] else "-"] for s, v in leakage["splits"].items()]
    out = (f"<p>Held-out rows whose text is a near duplicate of a train row (estimated Jaccard ≥ "
           f"{leakage['threshold']}) or shares {leakage['ngram']} words in a row with one; "
           f"{leakage['train_rows']:,} train rows checked.</p>")
    out += _table(["split", "rows", "near duplicates", "n-gram overlaps", "either", "share"], rows)
    examples = [f"<li>{_e(s)} id <code>{_e(ex['id'])}</code> ~ train id <code>{_e(ex['train_id'])}</code> ("
                + (f"similarity {ex['similarity']:.2f}" if "similarity" in ex else f"{ex['ngram']} shared words")
                + ")</li>" for s, v in leakage["splits"].items() for ex in v["examples"]]
    return out + (f"<ul class='facts'>{''.join(examples)}</ul>" if examples else "")


def render_html(report: dict[str, Any]) -> str:
    info = report["input"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>dataprep stats: {_e(info['path'])}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>dataprep stats</h1><p class='meta'><code>{_e(info['path'])}</code> · {_e(info['kind'])} · "
        f"{_e(info['task'])} · {report['rows']:,} rows</p>",
        "<h2>Splits</h2>",
        _table(["split", "rows", "share"],
               [[s, f"{v['rows']:,}", _pct(v["share"])] for s, v in report["splits"].items()]),
    ]
    for unit, title in (("chars", "characters"), ("tokens", "tokens")):
        sides = report["length"].get(unit)
        if not sides:
            continue
        rows = [[SIDE_NAMES[side], split, *(f"{v[q]:,}" for q in ("min", "p50", "p90", "p99", "max")),
                 f"{v['mean']:,.1f}"] for side, entry in sides.items() for split, v in entry["splits"].items()]
        parts += [f"<h2>Length in {title}</h2>",
                  _table(["", "split", "min", "p50", "p90", "p99", "max", "mean"], rows, numeric_from=2)]
    supervised = report.get("supervised")
    if supervised:
        unit = supervised["unit"]
        parts += [f"<h2>Supervised share ({_e(unit)})</h2>", _table(
            ["split", "supervised", "total", "share"],
            [[s, f"{v['supervised']:,}", f"{v['total']:,}", _pct(v["share"])] for s, v in supervised.items()
             if s != "unit"])]
    turns = report.get("turns") or {}
    if turns:
        columns = turn_columns(turns)
        parts += ["<h2>Turns per conversation</h2>", _table(
            ["split", *columns, "mean"],
            [[s, *(f"{n:,}" for n in turn_counts(t["counts"], columns)), f"{t['mean']:.2f}"]
             for s, t in turns.items()])]
    mixture = report.get("mixture") or {}
    if isinstance(mixture.get("sources"), dict):
        parts += ["<h2>Mixture per source</h2>", _table(
            ["source", "rows", "tokens"],
            [[name, f"{v.get('rows', 0):,}", "-" if v.get("tokens") is None else f"{v['tokens']:,}"]
             for name, v in mixture["sources"].items()])]
    parts += ["<h2>Rows kept out, duplicates</h2>",
              "<ul class='facts'>" + "".join(f"<li>{_e(f)}</li>" for f in _facts(report)) + "</ul>",
              "<h2>Leakage between splits</h2>", _leakage(report.get("leakage")), "<h2>Plots</h2>"]
    for name, caption, fig in figures(report):
        parts.append(f'<figure id="plot-{name}">{svg(fig)}<figcaption>{_e(caption)}</figcaption></figure>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(report: dict[str, Any], path: str | Path) -> None:
    """Write the page atomically."""
    from dataprep.io import AtomicFile

    with AtomicFile(path) as file:
        file.handle.write(render_html(report))
