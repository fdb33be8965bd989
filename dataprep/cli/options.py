"""Options every streaming command shares, its progress bar, and the few lines that run its stage."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from dataprep.io import INPUT_FORMATS, read_batches
from dataprep.paths import check_paths
from dataprep.sinks import RecordSink
from dataprep.stage import Sink, Stage, StageReport, run


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
                         help='Write rejected rows to FILE (JSONL) with {"stage", "reason", "detail", "location"}.'),
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


def run_command(stage: Stage, input: str, *, input_format: str | None, output: str, rejects: str | None,
                on_error: str, quiet: bool, sink: Callable[[], Sink] | None = None,
                out_dir: str | None = None) -> StageReport:
    """What every streaming command does once its options became a stage: refuse paths that would destroy data,
    read, :func:`stage.run`, summarise. ``sink`` makes the sink (default: ``-o``); ``out_dir`` is a folder it
    replaces as a whole."""
    check_paths([input], None if output == "-" else output, rejects, replaced_folders=[out_dir] if out_dir else [])
    report = StageReport(stage.name, rejects)
    on_bad = report.bad_input if on_error == "reject" else None
    bar = progress(quiet, stage.name)
    try:
        target = sink() if sink is not None else RecordSink(output)
        run(stage, read_batches(input, fmt=input_format, on_bad=on_bad), target, report, bar)
    finally:
        bar.close()
    if not quiet:
        click.echo(report.summary(), err=True)
    return report
