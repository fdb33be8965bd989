"""``dataprep filter``: drop records by length, banned words, patterns and exact duplicates."""

from __future__ import annotations

import click

from dataprep.cli.options import input_argument, run_command, stream_options
from dataprep.filter import DEDUP_MODES, FilterOptions, FilterStage, load_banned_words


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
              help="exact: drop records whose casefolded, whitespace-collapsed text was seen; keeps the first.")
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
    output: str,
    rejects: str | None,
    on_error: str,
    quiet: bool,
) -> None:
    """Drop canonical records that break a rule; each reject gets the first rule it fails as its reason.

    Rules in order: empty_response (always on), response_too_short, response_too_long, prompt_too_short,
    too_long, banned_word, regex_match, duplicate.

    \b
    Examples:
      dataprep filter data.jsonl --min-response-chars 6 > kept.jsonl
      dataprep normalize raw.json | dataprep filter - --dedup exact --rejects rejects.jsonl
      dataprep filter data.jsonl --banned-words banned.txt --drop-regex 'https?://' -o kept.jsonl
    """
    options = FilterOptions(
        min_response_chars=min_response_chars,
        max_response_chars=max_response_chars,
        min_prompt_chars=min_prompt_chars,
        max_chars=max_chars,
        banned_words=load_banned_words(banned_words) if banned_words else (),
        drop_regex=drop_regex,
        dedup=dedup,
    )
    run_command(FilterStage(options), input, input_format=input_format, output=output, rejects=rejects,
                on_error=on_error, quiet=quiet)
