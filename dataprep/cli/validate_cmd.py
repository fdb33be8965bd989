"""``dataprep validate``: check raw or canonical files against a JSON Schema before anything else runs."""

from __future__ import annotations

import json
import os
import sys

import click

from dataprep.errors import InputError
from dataprep.io import INPUT_FORMATS, STDOUT
from dataprep.schemas import SCHEMA_NAMES
from dataprep.validate import RECORD_TIMEOUT, ValidationReport, validate_files


@click.command("validate")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("-s", "--schema", required=True, metavar="NAME|PATH",
              help=f"A shipped schema ({', '.join(SCHEMA_NAMES)}) or a JSON Schema file.")
@click.option("--format", "report_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Report as one line per error, or as one JSON document.")
@click.option("--max-errors", type=click.IntRange(min=1), metavar="N", default=None,
              help="Show only the first N errors; counting goes on, so the summary stays exact.")
@click.option("--input-format", type=click.Choice(INPUT_FORMATS), default=None,
              help="Read every FILE as this format; by default taken from each file name.")
@click.option("--record-timeout", type=click.FloatRange(min=0, min_open=True), default=RECORD_TIMEOUT,
              show_default=True, metavar="SECONDS",
              help="Most time one record may take; a record over it is reported as not checked (invalid).")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr; the report and errors still appear.")
def command(
    files: tuple[str, ...],
    schema: str,
    report_format: str,
    max_errors: int | None,
    input_format: str | None,
    record_timeout: float,
    quiet: bool,
) -> None:
    """Check every record of every FILE against a JSON Schema; list the errors on stdout.

    Each error names the file, the line where the record starts and, in a JSON array or a file without
    lines (Parquet, a saved dataset), the record's 0-based index; then the JSON pointer of the bad value.
    A one-line summary goes to stderr.


    \b
      data.json:40 [record 3]: /output: 5 is not of type 'string'
      chat.jsonl:17: /conversations/2/from: 'bot' is not one of ['human', 'gpt', ...]

    A record's errors are all listed, sorted by pointer. Exit status: 0 when every record is valid, 1 when
    a record is invalid or a file has no records, 2 for a usage or input problem (unknown schema, a schema
    that is not valid JSON Schema, a missing file, malformed JSON; the other files are still checked).
    Duplicate keys, NaN/Infinity and lone surrogates make a record invalid. A schema's $ref resolves only
    inside it and the shipped schemas (nothing is fetched). Turn order (alternation, ending on an assistant
    turn) is not a schema matter: normalize rejects those.

    \b
    Examples:
      dataprep validate data/alpaca_en_demo.json --schema alpaca
      dataprep validate glaive_toolcall_*.json --schema sharegpt --max-errors 20
      dataprep validate train.jsonl val.jsonl --schema canonical --format json > report.json
      dataprep validate rows.jsonl --schema my_rows.schema.json
    """
    report = validate_files(files, schema, max_errors=max_errors, input_format=input_format,
                            record_timeout=record_timeout)
    try:
        _write_report(report, report_format)
    except BrokenPipeError:  # `validate ... | head`: the reader has seen enough; the verdict still stands
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    if not quiet:
        click.echo(report.summary(), err=True)
    if report.unreadable:
        first = report.unreadable[0]
        more = len(report.unreadable) - 1
        raise InputError(first.location, str(first)[len(first.location) + 2:],
                         hint=f"and {more} more unreadable {'file' if more == 1 else 'files'}" if more else first.hint)
    if not report.valid:
        click.get_current_context().exit(1)


def _write_report(report: ValidationReport, report_format: str) -> None:
    """The report on stdout in pieces, then flushed: a write error (a full disk) surfaces here as OSError.

    One large write would not do: on a short write (a file-size limit) Python's text layer drops the rest
    without an error.
    """
    out = sys.stdout
    try:
        if report_format == "json":
            for chunk in json.JSONEncoder(ensure_ascii=False, indent=2, allow_nan=False).iterencode(report.as_dict()):
                out.write(chunk)
            out.write("\n")
        else:
            for line in report.text_lines():
                out.write(line + "\n")
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, STDOUT) from None
