"""``dataprep normalize``: any supported source format in, canonical records (or another format) out."""

from __future__ import annotations

import click
from click.core import ParameterSource

from dataprep.cli.options import input_argument, run_command, stream_options
from dataprep.errors import UsageProblem
from dataprep.formats.dataset_info import load_entry
from dataprep.normalize import FROM_FORMATS, TO_FORMATS, NormalizeOptions, NormalizeStage, parse_map


@click.command(name="normalize")
@input_argument
@click.option("--from", "source", type=click.Choice(FROM_FORMATS), default=None,
              help="Source format. Default: auto (told from the first record's keys), or the dataset_info entry's.")
@click.option("--map", "mapping", metavar="FIELD=COLUMN,...",
              help="Read canonical FIELD (prompt, query, response, prefix/system, history, id, "
                   "messages/conversations, tools) from source COLUMN.")
@click.option("--dataset-info", metavar="FILE", help="A LLaMA-Factory dataset_info.json to take the format from.")
@click.option("--dataset", metavar="NAME", help="The entry of --dataset-info; INPUT defaults to its file_name.")
@click.option("--to", "target", type=click.Choice(TO_FORMATS), default="canonical", show_default=True,
              help="Output format. Rows the target cannot carry are rejected as lossy_export.")
@stream_options
@click.pass_context
def command(
    ctx: click.Context,
    input: str,
    input_format: str | None,
    source: str | None,
    mapping: str | None,
    dataset_info: str | None,
    dataset: str | None,
    target: str,
    output: str,
    rejects: str | None,
    on_error: str,
    quiet: bool,
) -> None:
    """Convert alpaca, ShareGPT, OpenAI messages or canonical rows into canonical records.

    Rows that cannot be represented (roles that do not alternate, a conversation ending on a user turn,
    missing or wrong-typed fields) are rejected with a reason, never repaired. Columns without a canonical
    place are kept in "meta". Tool calls (ShareGPT function_call/observation turns, OpenAI tool_calls) are kept.

    \b
    Examples:
      dataprep normalize alpaca.json > train.jsonl
      dataprep normalize chats.json --from sharegpt --rejects bad.jsonl -o train.jsonl
      dataprep normalize qa.jsonl --map prompt=question,response=answer
      dataprep normalize --dataset-info data/dataset_info.json --dataset glaive_toolcall_en_demo
      dataprep normalize train.jsonl --to messages > messages.jsonl
    """
    input_given = ctx.get_parameter_source("input") != ParameterSource.DEFAULT
    options, entry_file = _options(source, mapping, dataset_info, dataset, target, input_given)
    input = input if input_given or entry_file is None else entry_file
    notify = None if quiet else (lambda message: click.echo(message, err=True))
    run_command(NormalizeStage(options, notify), input, input_format=input_format, output=output, rejects=rejects,
                on_error=on_error, quiet=quiet)


def _options(
    source: str | None, mapping: str | None, dataset_info: str | None, dataset: str | None, target: str,
    input_given: bool,
) -> tuple[NormalizeOptions, str | None]:
    """The options, and the local file a dataset_info entry names (None without one)."""
    columns = parse_map(mapping)
    if dataset_info is None or dataset is None:
        if dataset_info or dataset:
            raise UsageProblem("--dataset-info and --dataset go together")
        return NormalizeOptions(source or "auto", columns, {}, target), None
    entry = load_entry(dataset_info, dataset)
    if source not in (None, "auto", entry.fmt):
        raise UsageProblem(f"--from {source} contradicts dataset {entry.name!r}, which is {entry.fmt}")
    if entry.path is None and not input_given:
        where = f" ({entry.remote})" if entry.remote else ""
        raise UsageProblem(f"dataset {entry.name!r} has no local file{where}", hint="download it and pass it as INPUT")
    return NormalizeOptions(entry.fmt, {**entry.columns, **columns}, entry.tags, target), entry.path
