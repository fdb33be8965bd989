"""The README's CLI reference, generated from each command's --help so the two cannot drift apart."""

from __future__ import annotations

from dataprep.cli import COMMANDS, cli

START = "<!-- cli-reference:start -->"
END = "<!-- cli-reference:end -->"
WIDTH = 100


def help_text(name: str | None = None) -> str:
    """``dataprep [NAME] --help`` exactly as a user sees it on a terminal at least WIDTH columns wide."""
    from click.testing import CliRunner

    args = ([name] if name else []) + ["--help"]
    result = CliRunner().invoke(cli, args, env={"COLUMNS": str(WIDTH)}, prog_name="dataprep")
    if result.exit_code != 0:
        raise RuntimeError(f"dataprep {' '.join(args)} failed: {result.output}")
    return result.stdout.rstrip() + "\n"


def reference() -> str:
    parts = [START, "", "### `dataprep`", "", "```text", help_text().rstrip(), "```", ""]
    for name in COMMANDS:
        parts += [f"### `dataprep {name}`", "", "```text", help_text(name).rstrip(), "```", ""]
    parts.append(END)
    return "\n".join(parts)


def update(readme: str) -> str:
    """Replace the generated block in README text."""
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    if not rest:
        raise ValueError(f"README has no {START} marker")
    return head + reference() + tail
