"""The plots of ``dataprep stats``, drawn from the report dict with matplotlib (no pyplot state, Agg only).

Every plot shows shares of a split's rows (not raw counts) wherever splits are compared, so a 2% validation
split sits on the same scale as its training split; each split keeps one colour in every plot. Lengths use a
log axis: row lengths span three or four orders of magnitude. SVG output is made reproducible (fixed ids,
no date) so the same report gives the same page.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dataprep.stats.report import turn_columns, turn_counts

SPLIT_COLORS = {"train": "#1f6fb4", "validation": "#e8710a", "test": "#2a9d3c", "all": "#1f6fb4"}
OTHER_COLORS = ("#8e44ad", "#c0392b", "#7f8c8d", "#16a085", "#b7950b")
SIDE_TITLES = {"prompt": "prompt (system + user turns)", "response": "response (assistant turns)",
               "whole": "whole row"}
UNIT_NAMES = {"chars": "characters", "tokens": "tokens"}
WIDTH = 8.0
DPI = 110


def split_color(name: str, order: list[str]) -> str:
    if name in SPLIT_COLORS:
        return SPLIT_COLORS[name]
    others = [s for s in order if s not in SPLIT_COLORS]
    return OTHER_COLORS[others.index(name) % len(OTHER_COLORS)] if name in others else OTHER_COLORS[0]


def _figure(height: float) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    return fig


def _style(ax: Any) -> None:
    ax.grid(axis="y", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _percent_axis(ax: Any) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))


def _plain_log_ticks(ax: Any) -> None:
    """1, 10, 100, 1,000 rather than powers of ten: lengths read at a glance."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))


def _count_axis(axis: Any) -> None:
    """Whole numbers with thousands separators (counts of rows or tokens)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True, nbins=5))
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))


def _split_legend(fig: Any, report: dict[str, Any], splits: list[str]) -> None:
    """One legend for the whole figure, above the plots: the same split has the same colour everywhere."""
    from matplotlib.patches import Patch

    order = list(report["splits"])
    handles = [Patch(color=split_color(s, order), label=f"{s} ({report['splits'][s]['rows']:,} rows)")
               for s in splits]
    fig.legend(handles=handles, loc="outside upper right", ncols=len(handles), frameon=False, fontsize=9)


def lengths_figure(report: dict[str, Any], unit: str) -> Any:
    """One panel per side (prompt, response, whole row): a step histogram per split, in % of its rows."""
    sides = report["length"][unit]
    order = list(report["splits"])
    fig = _figure(2.3 * len(sides) + 0.8)
    axes = fig.subplots(len(sides), 1, squeeze=False)[:, 0]
    shown: list[str] = []
    for ax, (side, entry) in zip(axes, sides.items(), strict=True):
        edges = entry["edges"]
        present = {s: v for s, v in entry["splits"].items() if v["rows"]}
        low = max(1, min(v["min"] for v in present.values()))
        high = max(v["max"] for v in present.values())
        for split, v in present.items():
            share = [100 * c / v["rows"] for c in v["hist"]]
            ax.stairs(share, [max(e, 0.8) for e in edges], color=split_color(split, order), linewidth=1.8)
            if split not in shown:
                shown.append(split)
        ax.set_xscale("log")
        ax.set_xlim(max(low * 0.8, 0.8), high * 1.25)
        _plain_log_ticks(ax)
        medians = ", ".join(f"{s} {v['p50']:,}" for s, v in present.items())
        ax.set_title(f"{SIDE_TITLES[side]} · median {medians}", loc="left", fontsize=9.5)
        ax.set_ylabel("% of split's rows")
        _percent_axis(ax)
        _style(ax)
    axes[-1].set_xlabel(f"{UNIT_NAMES[unit]} per row (log scale)")
    fig.suptitle(f"Length in {UNIT_NAMES[unit]}, per split", fontsize=12, x=0.01, ha="left")
    _split_legend(fig, report, shown)
    return fig


def _grouped_bars(ax: Any, labels: list[str], series: dict[str, list[float]], order: list[str]) -> None:
    n = max(len(series), 1)
    width = 0.8 / n
    for k, (split, values) in enumerate(series.items()):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(labels))]
        ax.bar(xs, values, width=width * 0.95, color=split_color(split, order))
    ax.set_xticks(range(len(labels)), labels)
    _style(ax)


def buckets_figure(report: dict[str, Any]) -> Any:
    buckets = report["buckets"]
    order = list(report["splits"])
    labels = buckets["labels"]
    shares = {s: [100 * c / max(sum(v), 1) for c in v] for s, v in buckets["counts"].items()}
    fig = _figure(3.4)
    ax = fig.subplots()
    _grouped_bars(ax, labels, shares, order)
    if buckets["by"] == "tokens":
        ax.set_xlabel("tokens per row")
    else:
        ax.set_xlabel("length bucket: words of the user turn // 200 (4 = 800 words or more)")
    if len(labels) > 6:
        ax.tick_params(axis="x", labelrotation=30)
    ax.set_ylabel("% of split's rows")
    _percent_axis(ax)
    fig.suptitle("Rows per length bucket, per split", fontsize=12, x=0.01, ha="left")
    _split_legend(fig, report, list(shares))
    return fig


def turns_figure(report: dict[str, Any]) -> Any:
    turns = report["turns"]
    order = list(report["splits"])
    columns = turn_columns(turns)
    counts = {s: turn_counts(t["counts"], columns) for s, t in turns.items()}
    shares = {s: [100 * c / max(sum(v), 1) for c in v] for s, v in counts.items()}
    fig = _figure(3.2)
    ax = fig.subplots()
    _grouped_bars(ax, columns, shares, order)
    what = "user-assistant exchanges" if report["input"]["kind"] == "records" else "assistant turns (supervised runs)"
    ax.set_xlabel(f"{what} per conversation")
    ax.set_ylabel("% of split's rows")
    _percent_axis(ax)
    fig.suptitle("Turns per conversation, per split", fontsize=12, x=0.01, ha="left")
    _split_legend(fig, report, list(shares))
    return fig


def _hbars(title: str, items: list[tuple[str, float]], xlabel: str, color: str) -> Any:
    fig = _figure(0.9 + 0.32 * max(len(items), 1))
    names = [name for name, _ in items][::-1]
    values = [value for _, value in items][::-1]
    _bar_axis(fig.subplots(), names, values, [f"{v:,.0f}" for v in values], xlabel, color, margin=0.15)
    fig.suptitle(title, fontsize=12, x=0.01, ha="left")
    return fig


def _bar_axis(ax: Any, names: list[str], values: list[float], labels: list[str], xlabel: str, color: str, *,
              margin: float) -> None:
    """Horizontal bars with their values written beside them, on a light grid (the rejects and sources plots)."""
    bars = ax.barh(names, values, color=color)
    ax.bar_label(bars, labels=labels, padding=3, fontsize=8)
    _count_axis(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.margins(x=margin)
    ax.grid(axis="x", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def rejects_figure(report: dict[str, Any]) -> Any:
    rejected = report["rejected"]
    items = sorted(rejected["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))
    return _hbars(f"Rejected rows by reason ({rejected['source']})", items, "rows rejected", "#c0392b")


def sources_figure(report: dict[str, Any]) -> Any:
    sources = report["mixture"]["sources"]
    names = list(sources)
    fig = _figure(1.1 + 0.34 * len(names))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, label, color in ((axes[0], "rows", "rows", "#1f6fb4"), (axes[1], "tokens", "tokens", "#2a9d3c")):
        values = [float(sources[n].get(key) or 0) for n in names][::-1]
        total = sum(values) or 1
        _bar_axis(ax, names[::-1], values, [f"{v:,.0f} ({100 * v / total:.0f}%)" for v in values], label, color,
                  margin=0.35)
    fig.suptitle("Realised mixture per source", fontsize=12, x=0.01, ha="left")
    return fig


def packing_figure(report: dict[str, Any]) -> Any:
    packing = report["packing"]
    items = [(f"{k} rows", float(v)) for k, v in packing["sequences_per_row"].items()]
    title = (f"Original rows per packed row (efficiency {100 * packing['efficiency']:.1f}% of "
             f"{packing['max_length']:,}-token rows)")
    return _hbars(title, items, "packed rows", "#8e44ad")


PLOTS: tuple[tuple[str, str, Callable[[dict[str, Any]], bool], Callable[[dict[str, Any]], Any]], ...] = (
    ("lengths_chars", "Each split as a share of its own rows, so splits of any size compare; bins are even on "
     "the log axis.", lambda r: "chars" in r["length"], lambda r: lengths_figure(r, "chars")),
    ("lengths_tokens", "Each split as a share of its own rows, so splits of any size compare; bins are even on "
     "the log axis.", lambda r: "tokens" in r["length"], lambda r: lengths_figure(r, "tokens")),
    ("buckets", "A stratified split gives every split the same shares.", lambda r: bool(r["buckets"]["labels"]),
     buckets_figure),
    ("turns", "Conversations by number of turns, as a share of each split's rows.", lambda r: bool(r.get("turns")),
     turns_figure),
    ("rejects", "Rows left out before this dataset was written, by reason.", lambda r: bool(r.get("rejected")),
     rejects_figure),
    ("sources", "Rows and tokens each source contributed, with its share.",
     lambda r: bool((r.get("mixture") or {}).get("sources")), sources_figure),
    ("packing", "How many original rows each packed row holds.", lambda r: bool(r.get("packing")),
     packing_figure),
)


def figures(report: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """``(name, caption, Figure)`` for every plot the report has data for."""
    return [(name, caption, draw(report)) for name, caption, has, draw in PLOTS if has(report)]


def svg(fig: Any) -> str:
    """The figure as SVG markup with glyphs as paths (no fonts needed) and no date or random ids."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "dataprep", "svg.fonttype": "path"}):
        fig.savefig(buffer, format="svg", metadata=dict.fromkeys(("Date", "Creator", "Format", "Type")))
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def write_pngs(report: dict[str, Any], folder: str | Path) -> list[Path]:
    """One PNG per plot in ``folder`` (created), named after the plot; each file appears whole or not at all."""
    from dataprep.io import AtomicFile

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, _, fig in figures(report):
        path = out / f"{name}.png"
        with AtomicFile(path, "wb") as file:
            fig.savefig(file.handle, format="png", metadata={"Software": None})
        paths.append(path)
    return paths
