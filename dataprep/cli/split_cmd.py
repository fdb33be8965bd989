"""``dataprep split``: add ``len_bucket`` and a deterministic, stratified ``split`` to every record."""

from __future__ import annotations

import click

from dataprep.cli.options import input_argument, run_command, stream_options
from dataprep.errors import UsageProblem
from dataprep.sinks import SplitFilesSink
from dataprep.split import BUCKET_BY, SPLITS, SplitOptions, SplitStage, parse_size


@click.command("split")
@input_argument
@click.option("--val-size", required=True, metavar="F|N",
              help="Validation rows: a fraction below 1 (0.02) or a whole count (500).")
@click.option("--test-size", metavar="F|N", help="Test rows, as for --val-size. Default: no test split.")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the hash that orders records.")
@click.option("--bucket-by", type=click.Choice(BUCKET_BY), default="words", show_default=True,
              help="Measure the user turn in whitespace-separated words or in characters for len_bucket.")
@click.option("--bucket-width", type=click.IntRange(min=1), default=200, show_default=True, metavar="W",
              help="len_bucket = min(length // W, B).")
@click.option("--max-bucket", type=click.IntRange(min=0), default=4, show_default=True, metavar="B",
              help="Highest len_bucket; longer user turns share it.")
@click.option("--stratify-by", default="len_bucket", show_default=True, metavar="FIELD[,FIELD]",
              help="Keep split ratios within each value of these fields (top-level names or meta.KEY).")
@click.option("--out-dir", metavar="DIR",
              help="Write train.jsonl, validation.jsonl (and test.jsonl) in DIR instead of one stream.")
@stream_options
def command(
    input: str,
    input_format: str | None,
    val_size: str,
    test_size: str | None,
    seed: int,
    bucket_by: str,
    bucket_width: int,
    max_bucket: int,
    stratify_by: str,
    out_dir: str | None,
    output: str,
    rejects: str | None,
    on_error: str,
    quiet: bool,
) -> None:
    """Assign every record to train, validation or test, stratified by length bucket, with exact counts.

    A record's split depends only on its id, its stratum and the seed, never on input order. Records keep
    their input order and gain len_bucket and split, so `| dataprep tokenize` can write one dataset per split.
    Strata too small for their share are merged into a neighbour (the summary says which), never dropped.

    \b
    Examples:
      dataprep split data.jsonl --val-size 0.02 --seed 42 > split.jsonl
      dataprep split data.jsonl --val-size 500 --test-size 500 --out-dir splits/
      dataprep filter raw.jsonl | dataprep split - --val-size 0.1 --stratify-by len_bucket,meta.source
    """
    if out_dir and output != "-":
        raise UsageProblem("use either --out-dir or -o/--output, not both")
    options = SplitOptions(
        val_size=parse_size(val_size, "--val-size"),
        test_size=parse_size(test_size, "--test-size") if test_size else None,
        seed=seed,
        bucket_by=bucket_by,
        bucket_width=bucket_width,
        max_bucket=max_bucket,
        stratify_by=tuple(name.strip() for name in stratify_by.split(",")),
    )
    stage = SplitStage(options)
    names = list(SPLITS if options.test_size is not None else SPLITS[:2])
    try:
        run_command(stage, input, input_format=input_format, output=output, rejects=rejects, on_error=on_error,
                    quiet=quiet, sink=(lambda: SplitFilesSink(out_dir, names)) if out_dir else None, out_dir=out_dir)
    finally:
        stage.close()
