"""The ``dataprep`` command. Commands load lazily, so ``dataprep filter`` never imports transformers or torch.

The boundary between the library and the user: domain errors and operating-system errors (a full disk, a
read-only folder, a folder where a file was expected) become one line naming the path, with exit status 2
for I/O; anything else is a bug of ours and says so. SIGINT exits 130 and SIGTERM 143, both after the
``finally`` blocks have removed every temp file.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import traceback
from types import FrameType

import click

from dataprep import __version__
from dataprep.errors import DataprepError, describe_os_error
from dataprep.io import STDOUT, name_stdout_errors

# name -> (module, one-line help). The help is listed here so `dataprep --help` imports no command module.
COMMANDS = {
    "validate": ("dataprep.cli.validate_cmd", "Check raw JSON/JSONL/CSV records against a JSON Schema."),
    "normalize": ("dataprep.cli.normalize_cmd", "Convert alpaca/sharegpt/messages data to canonical records."),
    "filter": ("dataprep.cli.filter_cmd", "Drop empty, too short/long, banned or duplicate records."),
    "split": ("dataprep.cli.split_cmd", "Assign train/validation/test splits, stratified and deterministic."),
    "render": ("dataprep.cli.render_cmd", "Show the rendered text of each record with supervised spans."),
    "tokenize": ("dataprep.cli.tokenize_cmd", "Write a token-exact Arrow DatasetDict with label masks."),
    "pack": ("dataprep.cli.pack_cmd", "Pack tokenized rows into rows of at most N tokens (best-fit decreasing)."),
    "inspect": ("dataprep.cli.inspect_cmd", "Show tokenized rows with the supervised tokens highlighted."),
    "stats": ("dataprep.cli.stats_cmd", "Describe a dataset: lengths, splits, rejects, duplicates, leakage, plots."),
    "run": ("dataprep.cli.run_cmd", "Run a YAML recipe's stages in one process, mixed and cached."),
    "train": ("dataprep.cli.train_cmd", "Fine-tune a model on a tokenized dataset (needs dataprep[train])."),
}


class Failure(click.ClickException):
    """A domain error on its way out: click prints ``Error: ...`` and exits with the error's status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup runs as it does for Ctrl-C."""


class LazyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DataprepError as exc:
            if debug_enabled():
                traceback.print_exc()
            raise Failure(exc.format(), exc.exit_code) from None
        except BrokenPipeError:  # click itself would turn EPIPE into exit status 1
            _silence_stdout()
            raise click.exceptions.Exit(0) from None
        except OSError as exc:
            if exc.errno is None:  # not from the system (transformers raises bare OSErrors): a bug, reported as one
                raise
            if debug_enabled():
                traceback.print_exc()
            if exc.filename == STDOUT:  # what is left in its buffer would fail again at exit
                _silence_stdout()
            raise Failure(describe_os_error(exc), 2) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        command: click.Command = importlib.import_module(COMMANDS[name][0]).command
        if not any(p.name == "debug" for p in command.params):  # `dataprep filter --debug ...` works too
            command.params.append(click.Option(
                ["--debug"], is_flag=True, expose_value=False, is_eager=True, callback=_enable_debug,
                help="Show a traceback on errors (same as DATAPREP_DEBUG=1)."))
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, summary) in COMMANDS.items()])


def debug_enabled() -> bool:
    return os.environ.get("DATAPREP_DEBUG", "") not in ("", "0")


def _enable_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        os.environ["DATAPREP_DEBUG"] = "1"


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dataprep")
@click.option("--debug", is_flag=True, help="Show a traceback on errors (same as DATAPREP_DEBUG=1).")
def cli(debug: bool) -> None:
    """Turn raw instruction data into exact, reproducible SFT training sets.

    \b
    A typical pipeline (JSONL flows between stages on stdout):
      dataprep normalize data.json | dataprep filter - | dataprep split - --val-size 0.1 \\
        | dataprep tokenize - --tokenizer ./tok -o out/

    Every stage prints a one-line summary on stderr: rows in, out, and rejected by reason.
    """
    if debug:
        os.environ["DATAPREP_DEBUG"] = "1"


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    """Entry point: domain errors become one line on stderr; a broken pipe (``| head``) exits quietly."""
    from dataprep.memory import limit_malloc_arenas, single_blas_thread

    limit_malloc_arenas()
    single_blas_thread()
    signal.signal(signal.SIGTERM, _terminate)
    name_stdout_errors()
    try:
        status = cli.main(args=argv, prog_name="dataprep", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(0)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Terminated:
        click.echo("Terminated.", err=True)
        sys.exit(128 + signal.SIGTERM)
    except OSError as exc:  # raised outside a command (the group's own option handling)
        if exc.errno is None:
            _internal_error(exc)
        if debug_enabled():
            traceback.print_exc()
        if exc.filename == STDOUT:
            _silence_stdout()
        click.echo(f"Error: {describe_os_error(exc)}", err=True)
        sys.exit(2)
    except Exception as exc:
        _internal_error(exc)
    _flush_stdout()
    if isinstance(status, int) and status:  # click returns ctx.exit(N)'s status instead of raising
        sys.exit(status)


def _internal_error(exc: Exception) -> None:
    """A bug of ours: one line unless asked for the traceback; exit status 1."""
    if debug_enabled():
        traceback.print_exc()
    else:
        click.echo(f"Error: internal error: {type(exc).__name__}: {exc} (run with DATAPREP_DEBUG=1 for a traceback)",
                   err=True)
    sys.exit(1)


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _flush_stdout() -> None:
    """Data left in stdout's buffer goes out now, so a failed write (a full disk behind ``>``) is reported."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except OSError as exc:
        _silence_stdout()
        click.echo(f"Error: {describe_os_error(OSError(exc.errno, exc.strerror, STDOUT))}", err=True)
        sys.exit(2)
