"""The command group itself: version, help, exit codes, errors without tracebacks, lean imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


# --- I/O errors are I/O errors; the same exit status for a missing path everywhere (issue 10, items 8 and 9) ------

DATA = REPO / "fixtures" / "data"


def dataprep(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
    streams = {} if "stdout" in kwargs else {"capture_output": True}
    return subprocess.run([sys.executable, "-m", "dataprep", *map(str, args)], text=True, timeout=300,
                          **streams, **kwargs)  # type: ignore[call-overload]


def file_size_limit(limit: int):  # noqa: ANN201 - a preexec_fn
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_disk_is_exit_2_naming_the_output_and_leaves_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    proc = dataprep("normalize", DATA / "alpaca.json", "-o", out, "-q", preexec_fn=file_size_limit(4096))
    assert (proc.returncode, proc.stderr) == (2, f"Error: {out}: File too large\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    rejects = tmp_path / "rej.jsonl"
    proc = dataprep("filter", DATA / "canonical.jsonl", "--min-response-chars", "1000", "--rejects", rejects, "-q",
                    preexec_fn=file_size_limit(4096))
    assert (proc.returncode, proc.stderr) == (2, f"Error: {rejects}: File too large\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_full_disk_behind_stdout_is_exit_2(tmp_path: Path) -> None:
    with open(tmp_path / "out.jsonl", "w") as out:
        proc = dataprep("normalize", DATA / "alpaca.json", "-q", stdout=out, stderr=subprocess.PIPE,
                        preexec_fn=file_size_limit(4096))
    assert (proc.returncode, proc.stderr) == (2, "Error: <stdout>: File too large\n")


@pytest.mark.parametrize("option", ["-o", "--rejects"])
def test_an_output_that_is_a_folder_is_exit_2(tmp_path: Path, option: str) -> None:
    result = invoke("filter", DATA / "canonical.jsonl", option, tmp_path, "-q")
    assert result.exit_code == 2
    assert result.stderr == f"Error: {tmp_path}: is a folder; give the path of a file to write\n"


def without_root_override() -> None:
    """As root, permissions do not stop writes: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (prctl
    PR_CAPBSET_DROP) in the child, so a 0555 folder is read-only to it as to anyone."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_read_only_folder_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        for option in ("-o", "--rejects"):
            target = tmp_path / "ro" / "out.jsonl"
            proc = dataprep("filter", DATA / "canonical.jsonl", option, target, "-q",
                            preexec_fn=without_root_override if os.geteuid() == 0 else None)
            assert (proc.returncode, proc.stderr) == (2, f"Error: {target}: Permission denied\n")
            assert os.listdir(tmp_path / "ro") == []
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_debug_still_shows_the_traceback_of_an_io_error(tmp_path: Path) -> None:
    proc = dataprep("filter", DATA / "canonical.jsonl", "-o", tmp_path, "-q", env={**os.environ, "DATAPREP_DEBUG": "1"})
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "IsADirectoryError" in proc.stderr
    assert proc.stderr.endswith(f"Error: {tmp_path}: is a folder; give the path of a file to write\n")


def test_debug_is_accepted_after_the_subcommand(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    proc = dataprep("filter", "--debug", missing)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert proc.stderr.endswith(f"Error: {missing}: no such file\n")
    assert "--debug" in invoke("tokenize", "--help").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "{missing}", "-s", "alpaca"], "{missing}: no such file"),
        (["normalize", "{missing}"], "{missing}: no such file"),
        (["filter", "{missing}"], "{missing}: no such file"),
        (["split", "{missing}", "--val-size", "0.1"], "{missing}: no such file"),
        (["render", "{missing}", "--template", "chatml"], "{missing}: no such file"),
        (["tokenize", "{missing}", "-o", "{out}", "--tokenizer", "fixtures/tokenizers/tiny-bpe"],
         "{missing}: no such file"),
        (["tokenize", "fixtures/data/canonical.jsonl", "-o", "{out}", "--tokenizer", "{missing}"],
         "{missing}: no such tokenizer folder"),
        (["inspect", "{missing}"], "{missing}: no such folder"),
        (["train", "--data", "{missing}", "--model", "tiny", "-o", "{out}"], "{missing}: no such dataset folder"),
        (["filter", "fixtures/data/canonical.jsonl", "--banned-words", "{missing}"], "{missing}: no such file"),
        (["normalize", "--dataset-info", "{missing}", "--dataset", "x"], "{missing}: no such file"),
    ],
)
def test_a_missing_path_is_exit_2_in_every_command(tmp_path: Path, args: list[str], message: str) -> None:
    names = {"missing": str(tmp_path / "missing" / "x"), "out": str(tmp_path / "out")}
    result = invoke(*(a.format(**names) for a in args))
    assert result.exit_code == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"Error: {message.format(**names)}")
