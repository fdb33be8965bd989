"""The README stays true: its CLI reference is the commands' real --help, every command documents itself."""

from __future__ import annotations

import pytest

from dataprep.cli import COMMANDS
from dataprep.cli.reference import END, START, help_text, reference
from tests.conftest import REPO


def test_readme_cli_reference_matches_help() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index(START): readme.index(END) + len(END)]
    assert block == reference(), "README CLI reference is stale: run bin/update_readme.py"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help_with_examples(name: str) -> None:
    text = help_text(name)
    assert text.startswith(f"Usage: dataprep {name}")
    assert "Examples:" in text, f"dataprep {name} --help shows no examples"


def test_readme_names_the_two_setup_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "bin/demo" in readme and "bin/test" in readme
    ci = (REPO / ".ci" / "run").read_text()
    assert "bin/test" in ci
