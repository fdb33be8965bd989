"""``dataprep filter``: drop records by length, banned words, patterns, evaluation overlap and duplicates."""

from __future__ import annotations

import click

from dataprep.cli.options import input_argument, run_command, stream_options
from dataprep.filter import (
    DEDUP_MODES,
    DEFAULT_NGRAM,
    DEFAULT_THRESHOLD,
    FilterOptions,
    FilterStage,
    load_banned_words,
)


@click.command("filter")
@input_argument
@click.option("--min-response-chars", type=click.IntRange(min=0), metavar="N",
              help="Reject a response shorter than N characters after stripping whitespace.")
@click.option("--max-response-chars", type=click.IntRange(min=0), metavar="N",
              help="Reject a response longer than N characters after stripping whitespace.")
@click.option("--min-prompt-chars", type=click.IntRange(min=0), metavar="N",
              help="Reject a user turn (prompt + newline + query, stripped) shorter than N characters.")
@click.option("--max-chars", type=click.IntRange(min=0), metavar="N",
              help="Reject a record whose text (prefix, prompt, query, response, history) exceeds N characters.")
@click.option("--banned-words", metavar="FILE",
              help="Reject records containing a word or phrase of FILE (one per line; whole word, any case).")
@click.option("--drop-regex", metavar="PATTERN", multiple=True,
              help="Reject records whose text matches PATTERN (Rust regex syntax). Repeatable.")
@click.option("--dedup", type=click.Choice(DEDUP_MODES),
              help="exact: drop records whose casefolded, whitespace-collapsed text was seen; near: also drop "
                   "records similar to a kept one (MinHash of 5-character shingles). Keeps the first.")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=None, metavar="T",
              help=f"--dedup near: the estimated Jaccard similarity that makes a near duplicate. "
                   f"[default: {DEFAULT_THRESHOLD}]")
@click.option("--decontaminate", metavar="EVAL", multiple=True,
              help="Reject records sharing --ngram consecutive words with any row of EVAL (any readable format; "
                   "every string of the row). Repeatable.")
@click.option("--ngram", type=click.IntRange(min=1), default=DEFAULT_NGRAM, show_default=True, metavar="N",
              help="--decontaminate: overlap length in normalized words (case and punctuation dropped).")
@stream_options
def command(
    input: str,
    input_format: str | None,
    min_response_chars: int | None,
    max_response_chars: int | None,
    min_prompt_chars: int | None,
    max_chars: int | None,
    banned_words: str | None,
    drop_regex: tuple[str, ...],
    dedup: str | None,
    threshold: float | None,
    decontaminate: tuple[str, ...],
    ngram: int,
    output: str,
    rejects: str | None,
    on_error: str,
    quiet: bool,
) -> None:
    """Drop canonical records that break a rule; each reject gets the first rule it fails as its reason.

    Rules in order: empty_response (always on), response_too_short, response_too_long, prompt_too_short,
    too_long, banned_word, regex_match, contaminated, duplicate, near_duplicate.

    contaminated names the evaluation file and row (file:line or file[index]) and quotes the shared words;
    duplicate and near_duplicate name the id of the kept record (the first of its group, in input order).

    \b
    Examples:
      dataprep filter data.jsonl --min-response-chars 6 > kept.jsonl
      dataprep normalize raw.json | dataprep filter - --dedup exact --rejects rejects.jsonl
      dataprep filter data.jsonl --banned-words banned.txt --drop-regex 'https?://' -o kept.jsonl
      dataprep filter data.jsonl --dedup near --threshold 0.8 --decontaminate mmlu_test.jsonl -o kept.jsonl
    """
    if threshold is not None and dedup != "near":
        raise click.UsageError("--threshold applies to --dedup near")
    options = FilterOptions(
        min_response_chars=min_response_chars,
        max_response_chars=max_response_chars,
        min_prompt_chars=min_prompt_chars,
        max_chars=max_chars,
        banned_words=load_banned_words(banned_words) if banned_words else (),
        drop_regex=drop_regex,
        dedup=dedup,
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
        decontaminate=decontaminate,
        ngram=ngram,
    )
    run_command(FilterStage(options), input, input_format=input_format, output=output, rejects=rejects,
                on_error=on_error, quiet=quiet)
