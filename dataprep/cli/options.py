"""Options every streaming stage shares, and the loop that runs a stage over batches with accounting."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

import click

from dataprep.io import INPUT_FORMATS, Batch, RecordWriter, read_batches
from dataprep.records import Record
from dataprep.stage import Rejected, StageReport

BatchFn = Callable[[Batch], tuple[list[Record], list[Rejected]]]


def input_argument(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--input-format",
        type=click.Choice(INPUT_FORMATS),
        default=None,
        help="Input format; by default taken from the file name (stdin: JSON array or JSONL, sniffed).",
    )(f)
    return click.argument("input", default="-", metavar="INPUT")(f)


def stream_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``-o``, ``--rejects``, ``--on-error``, ``--quiet``: the same on every streaming stage."""
    for decorator in reversed(
        [
            click.option("-o", "--output", default="-", metavar="FILE",
                         help="Write to FILE (.jsonl, .jsonl.gz or .parquet), atomically. Default: stdout."),
            click.option("--rejects", metavar="FILE", default=None,
                         help='Write rejected rows to FILE (JSONL) with {"stage", "reason", "detail"}.'),
            click.option("--on-error", type=click.Choice(["fail", "reject"]), default="fail", show_default=True,
                         help="Malformed input lines: stop with exit 2, or send them to --rejects and carry on."),
            click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors on stderr."),
        ]
    ):
        f = decorator(f)
    return f


def progress(quiet: bool, desc: str, unit: str = "rows") -> Any:
    """A tqdm bar on stderr when it is a terminal; otherwise a do-nothing stand-in."""
    if quiet or not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def run_stream(
    stage: str,
    input: str,
    *,
    output: str,
    rejects: str | None,
    on_error: str,
    quiet: bool,
    process: BatchFn,
    finish: Callable[[], Iterable[tuple[list[Record], list[Rejected]]]] | None = None,
    input_format: str | None = None,
    report: StageReport | None = None,
    writer: Any = None,
) -> StageReport:
    """Read ``input`` in batches, run ``process`` on each, write what it keeps, account for what it rejects.

    ``finish`` yields more (kept, rejected) pairs after the input ends (``split`` emits everything there).
    Output and rejects files appear only if the whole run succeeds. ``writer`` stands in for the RecordWriter of
    ``output``: anything with ``write(rows)`` and ``close(ok)`` (split writes pre-encoded lines, or one file per
    split).
    """
    report = report or StageReport(stage, rejects)
    writer = writer or RecordWriter(output)
    bar = progress(quiet, stage)
    ok = False
    try:
        on_bad = report.bad_input if on_error == "reject" else None
        for batch in read_batches(input, fmt=input_format, on_bad=on_bad):
            report.rows_in += len(batch)
            kept, rejected = process(batch)
            report.emit(len(kept), rejected)
            writer.write(kept)
            bar.update(len(batch))
        if finish is not None:
            for kept, rejected in finish():
                report.emit(len(kept), rejected)
                writer.write(kept)
        report.check()
        ok = True
    finally:
        bar.close()
        writer.close(ok=ok)
        report.close(ok=ok)
    if not quiet:
        click.echo(report.summary(), err=True)
    return report
