"""The command group itself: version, help, exit codes, errors without tracebacks, lean imports."""

from __future__ import annotations

import subprocess
import sys

from dataprep import __version__
from tests.conftest import REPO, invoke


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"dataprep, version {__version__}"


def test_group_help_lists_every_command_without_importing_them() -> None:
    code = (
        "import sys; from dataprep.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('dataprep.cli.') and m.endswith('_cmd')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "normalize" in out and "train" in out
    assert out.strip().splitlines()[-1] == "[]"


def test_unknown_command_is_a_usage_error() -> None:
    result = invoke("frobnicate")
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in result.stderr


def test_data_prep_commands_do_not_import_heavy_libraries() -> None:
    """normalize/filter/split start fast in a pipe: no torch, transformers or datasets on their import path."""
    code = (
        "import sys\n"
        "import dataprep.cli.validate_cmd, dataprep.cli.normalize_cmd, dataprep.cli.filter_cmd, dataprep.cli.split_cmd\n"
        "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]"


def test_missing_input_is_one_line_exit_2_and_debug_shows_traceback(tmp_path) -> None:
    missing = tmp_path / "nope.jsonl"
    proc = subprocess.run([sys.executable, "-m", "dataprep", "filter", str(missing)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"Error: {missing}: no such file"
    proc = subprocess.run([sys.executable, "-m", "dataprep", "--debug", "filter", str(missing)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
