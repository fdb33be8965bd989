"""``dataprep render``: show the exact training text of each record and the spans that will be supervised."""

from __future__ import annotations

import os

import click

from dataprep.cli.options import input_argument, run_command, stream_options
from dataprep.render import RenderStage


@click.command("render")
@input_argument
@click.option("--tokenizer", "tokenizer_dir", metavar="DIR",
              type=click.Path(exists=True, file_okay=False),
              help="Local tokenizer folder: its chat template, and the bos/eos tokens built-in templates write.")
@click.option("--template", metavar="NAME|PATH", default=None,
              help="tokenizer (the tokenizer's own; the default), alpaca, default, chatml, llama3, mistral-v0.1, "
                   "plain, or a Jinja file.")
@click.option("--trust-remote-code", is_flag=True, help="Allow a tokenizer folder that ships Python code.")
@stream_options
def command(
    input: str,
    input_format: str | None,
    tokenizer_dir: str | None,
    template: str | None,
    trust_remote_code: bool,
    output: str,
    rejects: str | None,
    on_error: str,
    quiet: bool,
) -> None:
    """Render canonical records with a chat template: one {"id", "text", "spans", "inserted"} row per record.

    text[start:end] for each span is an assistant turn as it will be trained: its content (with the reasoning
    the template keeps, and tool-call markup) and end-of-turn marker, never the prompt or header. "inserted"
    marks text inside spans that the template writes on its own (Qwen3's empty think block). Spans come from
    one render of the whole conversation, so templates that rewrite history (Qwen3, DeepSeek-R1) work. Records
    the template cannot render or place exactly are rejected with a reason (template_error, template_budget,
    header_not_found, turn_ambiguous, ...). Built-ins take special tokens from --tokenizer: chatml needs
    none; llama3 writes bos_token, alpaca, default and plain write eos_token, mistral-v0.1 writes both.

    \b
    Examples:
      dataprep render data.jsonl --tokenizer ./qwen2.5 | head -n 1
      dataprep render data.jsonl --template chatml -o rendered.jsonl
      dataprep render data.jsonl --tokenizer ./gpt2 --template alpaca --rejects bad.jsonl
      dataprep normalize raw.json | dataprep render - --tokenizer ./tok --template my_template.jinja
    """
    from dataprep.template import load_template

    tokenizer = None
    if tokenizer_dir is not None:
        from dataprep.tokenizer_io import open_tokenizer

        tokenizer = open_tokenizer(tokenizer_dir, trust_remote_code=trust_remote_code)
    chat_template = load_template(template, tokenizer)
    if chat_template.uses_clock and not os.environ.get("SOURCE_DATE_EPOCH") and not quiet:
        click.echo("warning: the template writes today's date (strftime_now); set SOURCE_DATE_EPOCH "
                   "for output that does not change from day to day", err=True)
    run_command(RenderStage(chat_template), input, input_format=input_format, output=output, rejects=rejects,
                on_error=on_error, quiet=quiet)
