"""``dataprep pack``: a tokenized folder → rows of at most N tokens, best-fit decreasing over each whole split."""

from __future__ import annotations

import click

from dataprep.cli.options import progress


@click.command("pack")
@click.argument("source", metavar="OUTDIR")
@click.option("-o", "--output", "outdir", required=True, metavar="PACKED",
              help="Folder to write (same layout as tokenize's: DatasetDict + tokenizer/ + dataprep.json + README.md).")
@click.option("--max-length", required=True, type=click.IntRange(min=1), metavar="N",
              help="Tokens per packed row; a longer row is rejected (too_long), never split.")
@click.option("--force", is_flag=True, help="Redo the work even if PACKED is up to date (a folder dataprep did not write is never replaced).")
@click.option("--rejects", metavar="FILE", default=None,
              help='Write rejected rows to FILE (JSONL) with {"stage", "reason", "detail", "location"}.')
@click.option("--emit-for", type=click.Choice(["dataprep", "trl", "llamafactory", "axolotl", "plain"]),
              default="dataprep", show_default=True,
              help="The consumer's layout: dataprep (dataprep train, TRL >= 1.7 with padding_free) or trl (adds "
                   "assistant_masks and completion_mask, which TRL 0.17-1.6 read instead of labels). The "
                   "three-column layouts cannot keep packed examples apart and are refused.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors on stderr.")
def command(source: str, outdir: str, max_length: int, force: bool, rejects: str | None, emit_for: str,
            quiet: bool) -> None:
    """Pack the rows of a tokenized folder (dataprep tokenize's OUTDIR) into rows of at most N tokens.

    Best-fit decreasing over each whole split: rows longest first, each into the pack with the least room
    that fits it. Rows keep their split; nothing is cut or dropped silently: a row over N is rejected
    (too_long, with its length). The plan needs only the lengths and the rows stream from the memory-mapped
    input, so memory stays flat however large the set.

    A packed row holds input_ids, labels, position_ids (restarting at 0 for each original row), seq_lengths,
    ids and source_rows (the original rows' ids and indexes: unpacking gives them back) and length. There
    is no attention_mask: examples are kept apart by position_ids (dataprep train: flash-attention varlen on
    a GPU when installed, SDPA with a block-diagonal mask elsewhere); other consumers rebuild the mask from
    seq_lengths. The summary and dataprep.json give the efficiency: real tokens / (packs x N).

    In TRL: SFTConfig(padding_free=True, max_length=None) reads seq_lengths for the position_ids and trains on
    exactly these labels (tested with TRL 1.16); its default max_length (1,024) would cut longer packs.

    Run again on the same input with the same N and PACKED is found up to date; --force redoes it.

    \b
    Examples:
      dataprep pack out/ -o packed/ --max-length 2048
      dataprep pack out/ -o packed/ --max-length 4096 --rejects too_long.jsonl
      dataprep pack out/ -o packed-trl/ --max-length 2048 --emit-for trl
    """
    from dataprep.pack import PackJob, pack_to_disk

    bar = progress(quiet, "pack")
    try:
        result = pack_to_disk(PackJob(source, outdir, max_length, force=force, rejects=rejects, emit_for=emit_for),
                              progress=bar)
    finally:
        bar.close()
    if not quiet:
        click.echo(result.summary, err=True)
