"""``dataprep stats``: the report of a records file or a tokenized/packed folder, as text, JSON, HTML or PNG."""

from __future__ import annotations

import json

import click

from dataprep.cli.options import progress
from dataprep.decontam import DEFAULT_NGRAM
from dataprep.dedup import DEFAULT_THRESHOLD
from dataprep.io import INPUT_FORMATS


@click.command("stats")
@click.argument("input", metavar="INPUT|OUTDIR")
@click.option("--tokenizer", metavar="DIR",
              help="Also count a records file's prompt and response in tokens of this tokenizer (plain text).")
@click.option("--html", "html", metavar="FILE", help="Write one self-contained HTML page with the plots.")
@click.option("--png", "png", metavar="DIR", help="Write each plot as a PNG image into DIR.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="The report on stdout: aligned text, or one JSON document.")
@click.option("--leakage/--no-leakage", default=True, show_default=True,
              help="Check held-out rows against train rows (near duplicates and shared word runs).")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=DEFAULT_THRESHOLD,
              show_default=True, metavar="T", help="Leakage: estimated Jaccard similarity of a near duplicate.")
@click.option("--ngram", type=click.IntRange(min=1), default=DEFAULT_NGRAM, show_default=True, metavar="N",
              help="Leakage: length of a shared run of normalized words.")
@click.option("--input-format", type=click.Choice(INPUT_FORMATS), default=None,
              help="Format of a records INPUT; by default taken from the file name.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors on stderr.")
def command(input: str, tokenizer: str | None, html: str | None, png: str | None, fmt: str, leakage: bool,
            threshold: float, ngram: int, input_format: str | None, quiet: bool) -> None:
    """Describe a dataset: rows per split and length bucket, lengths, turns, supervised share, rejects,
    duplicates, mixture, packing, and leakage between splits.

    INPUT is any records file dataprep reads (canonical rows, or alpaca/ShareGPT/messages rows, which are
    normalized on the fly; `-` is stdin) or a folder written by `dataprep tokenize` or `dataprep pack`.
    Lengths are in characters (records) and tokens (a folder, or --tokenizer); the prompt side is the system
    prompt and the user turns, the response side the assistant turns (the supervised tokens of a folder).
    Leakage lists validation/test rows whose text is a near duplicate of a train row (MinHash, as
    `filter --dedup near`) or shares --ngram words in a row with one (as `filter --decontaminate`).

    The report goes to stdout; progress and a one-line summary to stderr.

    \b
    Examples:
      dataprep stats splits.jsonl
      dataprep stats out/ --html report.html --png plots/
      dataprep stats data.jsonl --tokenizer ./tok --format json | jq .length.tokens
    """
    from dataprep.stats import compute_stats
    from dataprep.stats.report import render_text

    bar = progress(quiet, "stats")
    try:
        report = compute_stats(input, tokenizer=tokenizer, input_format=input_format, leakage=leakage,
                               threshold=threshold, ngram=ngram, progress=bar.update)
    finally:
        bar.close()
    written = []
    if html:
        from dataprep.stats.page import write_html

        write_html(report, html)
        written.append(html)
    if png:
        from dataprep.stats.plots import write_pngs

        paths = write_pngs(report, png)
        written.append(f"{len(paths)} PNGs in {png}")
    if fmt == "json":
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        click.echo(render_text(report), nl=False)
    if not quiet:
        splits = " ".join(f"{name}={v['rows']}" for name, v in report["splits"].items())
        line = f"stats: {report['rows']:,} rows ({report['input']['kind']}), splits: {splits}"
        click.echo(line + (f"; wrote {', '.join(written)}" if written else ""), err=True)
