"""``dataprep inspect``: decoded rows of a tokenized folder with the supervised tokens marked."""

from __future__ import annotations

import sys

import click


@click.command("inspect")
@click.argument("outdir", metavar="OUTDIR")
@click.option("--split", metavar="NAME", help="Split to show (default: train, else the first).")
@click.option("--index", type=int, metavar="N", help="Show row N (negative counts from the end).")
@click.option("--sample", type=click.IntRange(min=1), metavar="K", help="Show K rows drawn with --seed.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --sample.")
@click.option("--color", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="Colour supervised tokens (auto: on a terminal); otherwise they are wrapped in [[...]].")
def command(outdir: str, split: str | None, index: int | None, sample: int | None, seed: int, color: str) -> None:
    """Print rows of a tokenized dataset as text, supervised tokens highlighted, with length and share.

    Without --index or --sample the first 3 rows are shown. Each row starts with a header line
    `=== split[i] id=... length=N supervised=K (P%)`; classification rows show their label.

    \b
    Examples:
      dataprep inspect out/
      dataprep inspect out/ --split validation --index 7
      dataprep inspect out/ --sample 5 --seed 1 | less -R
    """
    from dataprep.errors import UsageProblem
    from dataprep.inspect import inspect_rows, load_tokenized

    if index is not None and sample is not None:
        raise UsageProblem("--index and --sample cannot be used together")
    use_color = color == "always" or (color == "auto" and sys.stdout.isatty())
    tokenized = load_tokenized(outdir)
    for block in inspect_rows(tokenized, split=split, index=index, sample=sample, seed=seed, color=use_color):
        click.echo(block + "\n", color=use_color)
