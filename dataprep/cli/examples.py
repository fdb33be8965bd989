"""The README's example sessions, run for real so the outputs they show are what the code prints.

A ``console`` block right after a ``<!-- example -->`` line is a session: each ``$ command`` (continued by a
trailing backslash) is run with bash, in order, in one scratch folder where ``fixtures/`` and ``recipes/`` are
the repository's and ``../shared`` the real-data folder, so later commands read what earlier ones wrote, as a
reader following the tour would. The text under a command is its stdout (trailing blank lines dropped), then its stderr; a command
ending in ``; echo "exit $?"`` shows its exit status last. Any other command must exit 0.

``bin/update_readme.py`` rewrites the outputs; ``tests/test_docs.py`` reruns the sessions and compares, with
figures that depend on the machine (rows/s, seconds, tokens/s, training losses) masked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MARKER = "<!-- example -->"
FENCE = "```"
EXIT_SUFFIX = '; echo "exit $?"'
SHARED_PREFIX = "../shared/"
_VOLATILE = [
    (re.compile(r"rows/s: [\d,.]+"), "rows/s: N"),
    (re.compile(r"in [\d.]+s, [\d,.]+ tokens/s"), "in Ns, N tokens/s"),
    (re.compile(r"\) in [\d.]+s\b"), ") in Ns"),  # dataprep run's closing line
]
_TRAIN_NUMBER = re.compile(r"\d[\d,]*(\.\d+)?(e-?\d+)?")


@dataclass
class Command:
    text: str  # as written, continuation lines included
    output: list[str] = field(default_factory=list)

    @property
    def script(self) -> str:
        return self.text.replace("\\\n", " ")


def sessions(readme: str) -> Iterator[tuple[int, int, list[Command]]]:
    """(first line, end line, commands) of each example block; line numbers index ``readme.splitlines()``."""
    lines = readme.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARKER and i + 1 < len(lines) and lines[i + 1].startswith(FENCE):
            start = i + 2  # the block ends at a bare fence; "```python" printed by a command does not end it
            end = next(j for j in range(start, len(lines)) if lines[j].strip() == FENCE)
            yield start, end, _parse(lines[start:end])
            i = end
        i += 1


def _parse(block: list[str]) -> list[Command]:
    commands: list[Command] = []
    continued = False
    for line in block:
        if continued:
            commands[-1].text += "\n" + line
        elif line.startswith("$ "):
            commands.append(Command(line[2:]))
        elif commands:
            commands[-1].output.append(line)
        continued = bool(commands) and line.endswith("\\") and not commands[-1].output
    return commands


def mask(line: str) -> str:
    """The line without the figures that change from run to run or machine to machine."""
    for pattern, replacement in _VOLATILE:
        line = pattern.sub(replacement, line)
    if line.startswith("train:"):
        line = _TRAIN_NUMBER.sub("N", line)
    return line


class Runner:
    """A scratch folder laid out like a checkout beside ``../shared``; commands run there one after another."""

    def __init__(self, repo: Path, shared: Path | None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dataprep-readme-"))
        self.cwd = self.root / "repo"
        self.cwd.mkdir()
        for folder in ("fixtures", "recipes"):
            (self.cwd / folder).symlink_to(repo / folder)
        self.shared = shared is not None and shared.is_dir()
        if self.shared:
            (self.root / "shared").symlink_to(shared)  # type: ignore[arg-type]
        self.skipped_outputs: set[str] = set()
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "COLUMNS": "100",
                    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.env.pop("DATAPREP_DEBUG", None)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def can_run(self, command: Command) -> bool:
        """False without the real data, for commands that read it or read what such a command wrote."""
        words = set(re.findall(r"[\w./-]+", command.script))
        if (not self.shared and SHARED_PREFIX in command.script) or words & self.skipped_outputs:
            self.skipped_outputs |= set(re.findall(r"(?:-o|>|--rejects|--html|--png)\s+([\w./-]+)", command.script))
            return False
        return True

    def run(self, command: Command) -> list[str]:
        script = command.script
        show_exit = script.endswith(EXIT_SUFFIX)
        if show_exit:
            script = script[: -len(EXIT_SUFFIX)]
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", script], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0 and not show_exit:
            raise RuntimeError(f"README example failed (exit {proc.returncode}): $ {script}\n{proc.stderr}")
        lines = proc.stdout.splitlines()
        while lines and not lines[-1].strip():  # blank lines at the end of a block are invisible anyway
            lines.pop()
        lines += proc.stderr.splitlines()
        return lines + [f"exit {proc.returncode}"] if show_exit else lines


def run_all(readme: str, repo: Path, shared: Path | None) -> Iterator[tuple[int, Command, list[str] | None]]:
    """(block start line, command, what it printed now, or None when it needs the absent real data)."""
    runner = Runner(repo, shared)
    try:
        for start, _, commands in sessions(readme):
            for command in commands:
                yield start, command, runner.run(command) if runner.can_run(command) else None
    finally:
        runner.close()


def update(readme: str, repo: Path, shared: Path | None) -> str:
    """README text with every example's output replaced by what the command prints now (kept when skipped)."""
    fresh: dict[int, list[tuple[Command, list[str] | None]]] = {}
    for start, command, printed in run_all(readme, repo, shared):
        fresh.setdefault(start, []).append((command, printed))
    lines = readme.splitlines()
    for start, end, _ in reversed(list(sessions(readme))):
        block: list[str] = []
        for command, printed in fresh.get(start, []):
            block += ("$ " + command.text).splitlines()
            block += command.output if printed is None else printed
        lines[start:end] = block
    return "\n".join(lines) + ("\n" if readme.endswith("\n") else "")
