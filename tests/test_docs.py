"""The README stays true: its CLI reference is the commands' real --help, its tour sessions print what they show,
every command documents itself, and the set-up script explains what it needs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dataprep.cli import COMMANDS, examples
from dataprep.cli.reference import END, START, help_text, reference
from tests.conftest import REPO, SHARED, SHARED_DATA


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


def test_every_tour_session_is_a_generated_example() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    tour = readme[readme.index("## Tour"): readme.index("## Recipes")]
    assert tour.count("```console") == tour.count(examples.MARKER) > 0
    commands = [c for _, _, block in examples.sessions(readme) for c in block]
    assert len(commands) >= 17 and all(c.script.startswith(("dataprep ", "echo ", "jq ")) for c in commands)


def test_examples_parse_continuations_and_fences() -> None:
    text = "\n".join([
        examples.MARKER, "```console", "$ dataprep a \\", "    --b c", "out 1", "```python", "x", "```<|e|>",
        "$ dataprep d; echo \"exit $?\"", "exit 1", "```", "after"])
    [(start, end, commands)] = list(examples.sessions(text))
    assert (start, end) == (2, 10)
    assert [(c.script, c.output) for c in commands] == [
        ("dataprep a      --b c", ["out 1", "```python", "x", "```<|e|>"]),
        ('dataprep d; echo "exit $?"', ["exit 1"])]


def test_mask_hides_only_machine_dependent_figures() -> None:
    assert examples.mask("tokenize: 40 in, 40 out; tokens: 3,926, rows/s: 87") == "tokenize: 40 in, 40 out; tokens: 3,926, rows/s: N"
    assert examples.mask("train: step 10/40 loss 6.628 lr 4.6e-06") == "train: step N/N loss N lr N"
    assert examples.mask("split: 24 in, 24 out") == "split: 24 in, 24 out"


def test_without_real_data_what_its_commands_write_is_skipped_too(tmp_path: Path) -> None:
    runner = examples.Runner(REPO, None)
    try:
        wrote = examples.Command("dataprep filter in.jsonl --decontaminate ../shared/data/x.jsonl "
                                 "--rejects bad.jsonl > kept.jsonl")
        assert not runner.can_run(wrote)
        for reads in ("jq -r .detail bad.jsonl", "wc -l kept.jsonl"):
            assert not runner.can_run(examples.Command(reads)), reads
        assert runner.can_run(examples.Command("dataprep normalize fixtures/data/alpaca.json"))
    finally:
        runner.close()


@pytest.mark.slow
@pytest.mark.parametrize("real_data", [True, False], ids=["with-shared", "fresh-machine"])
def test_readme_examples_print_what_they_show(real_data: bool) -> None:
    """Run the tour in order, as a reader would; what each command prints must be what the README shows. Without
    the real data (a fresh machine) the commands that need it, or what they wrote, are skipped."""
    if real_data and not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    stale = []
    ran = 0
    for _, command, printed in examples.run_all(readme, REPO, SHARED if real_data else None):
        if printed is None:
            continue
        ran += 1
        if [examples.mask(line) for line in printed] != [examples.mask(line) for line in command.output]:
            stale.append(f"$ {command.text}\n--- README\n" + "\n".join(command.output) + "\n--- now\n" + "\n".join(printed))
    assert ran >= 11
    assert not stale, "README examples are stale: run bin/update_readme.py\n\n" + "\n\n".join(stale)


def fake_python(tmp_path: Path, version: str, venv_ok: bool) -> Path:
    """An interpreter without venv/ensurepip, as on Debian without python3-venv (cannot be had for real here)."""
    script = tmp_path / "python3"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$*" in --version) echo "Python {version}";; *"version_info"*) exit {int(version.startswith("3.8"))};;\n'
        f'  *"import venv, ensurepip"*) exit {0 if venv_ok else 1};; *) exit 3;; esac\n')
    script.chmod(0o755)
    return script


@pytest.mark.parametrize(("version", "venv_ok", "message"), [
    ("3.11.2", False, "bin/install: On Debian/Ubuntu: sudo apt install python3-venv"),
    ("3.8.10", True, "bin/install: Python 3.8.10 is too old; dataprep needs Python 3.10 or newer"),
])
def test_install_explains_what_is_missing(tmp_path: Path, version: str, venv_ok: bool, message: str) -> None:
    """Run from a copy of bin/ in an empty checkout, so the real .venv is never touched."""
    checkout = tmp_path / "checkout"
    (checkout / "bin").mkdir(parents=True)
    shutil.copy(REPO / "bin" / "install", checkout / "bin" / "install")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON": str(fake_python(tmp_path, version, venv_ok))}
    proc = subprocess.run([str(checkout / "bin" / "install")], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert not (checkout / ".venv").exists()
