"""Path checks: outputs that would destroy an input or each other are refused before any work (issue 10, item 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataprep.errors import UsageProblem
from dataprep.paths import check_paths, check_replaceable_folder, looks_like_path, same_file
from tests.conftest import FIXTURES

ROWS = (FIXTURES / "data" / "canonical.jsonl").read_text(encoding="utf-8")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(ROWS, encoding="utf-8")
    return path


def refused(**kwargs: object) -> str:
    with pytest.raises(UsageProblem) as info:
        check_paths(**kwargs)  # type: ignore[arg-type]
    assert info.value.exit_code == 2
    return info.value.format()


def test_rejects_onto_the_input_is_refused(data: Path) -> None:
    """The report's first case: `filter in.jsonl -o kept.jsonl --rejects in.jsonl` replaced the input."""
    message = refused(inputs=[str(data)], output=str(data.parent / "kept.jsonl"), rejects=str(data))
    assert message == f"--rejects {data} is the input {data}; it would be overwritten (write the rejects to another file)"


def test_rejects_onto_the_output_is_refused(data: Path) -> None:
    """The report's second case: `-o x.jsonl --rejects x.jsonl` replaced the kept rows with the rejects."""
    out = str(data.parent / "x.jsonl")
    assert refused(inputs=[str(data)], output=out, rejects=out) == (
        f"--rejects {out} and -o {out} are the same file; one would overwrite the other (give each output its own path)")


def test_the_same_file_under_other_names(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    link = data.parent / "link.jsonl"
    link.symlink_to(data)
    hard = data.parent / "hard.jsonl"
    os.link(data, hard)
    monkeypatch.chdir(data.parent)
    for alias in (str(link), str(hard), "./in.jsonl", f"../{data.parent.name}/in.jsonl"):
        assert same_file(data, alias)
        assert "is the input" in refused(inputs=[str(data)], rejects=alias)
    new = data.parent / "sub" / ".." / "new.jsonl"
    assert same_file(data.parent / "new.jsonl", new)  # neither exists yet: compared as resolved paths
    (data.parent / "sub").mkdir()
    assert "same file" in refused(inputs=[str(data)], output=str(data.parent / "new.jsonl"), rejects=str(new))


def test_what_is_allowed(data: Path) -> None:
    out = data.parent / "out.jsonl"
    check_paths([str(data)], str(out), str(data.parent / "rej.jsonl"))
    check_paths([str(data)], str(data))  # -o onto the input: an atomic in-place rewrite
    check_paths(["-"], "-", None)
    check_paths([str(data)], "/dev/null", "/dev/null")  # writing to /dev/null destroys nothing
    check_paths([str(data)], str(out) + ".gz", str(out))


def test_o_through_a_link_to_the_input_is_refused(data: Path) -> None:
    link = data.parent / "link.jsonl"
    link.symlink_to(data)
    assert refused(inputs=[str(data)], output=str(link)).startswith(
        f"-o {link} is a link to the input {data}; writing through it would truncate the input while it is read")


def test_extra_outputs_collide_with_inputs_and_each_other(data: Path) -> None:
    folder = data.parent / "splits"
    outs = [str(folder / f"{s}.jsonl") for s in ("train", "validation", "test")]
    check_paths([str(data)], extra_outputs=outs)
    assert "is the input" in refused(inputs=[str(data)], extra_outputs=[*outs, str(data)])
    assert "same file" in refused(inputs=[str(data)], rejects=outs[1], extra_outputs=outs)


def test_an_input_inside_a_replaced_folder_is_refused(data: Path) -> None:
    assert refused(inputs=[str(data)], replaced_folders=[str(data.parent)]).startswith(
        f"input {data} is inside {data.parent}, which this run replaces")
    check_paths([str(data)], replaced_folders=[str(data.parent / "out")])


def test_in_place_rewrite_is_complete_and_a_failed_one_leaves_the_input(data: Path) -> None:
    """Why `-o INPUT` stays allowed: the real command replaces the input only with a complete output."""
    def filter_(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dataprep", "filter", str(data), "-o", str(data), "-q", *args],
                              capture_output=True, text=True, timeout=120)

    assert filter_("--min-response-chars", "20").returncode == 0
    kept = data.read_text(encoding="utf-8")
    rows = [json.loads(line) for line in kept.splitlines()]
    assert 0 < len(rows) < ROWS.count("\n")
    assert all(row in [json.loads(line) for line in ROWS.splitlines()] for row in rows)  # complete rows only
    assert filter_("--banned-words", str(data.parent / "missing.txt")).returncode == 2
    assert data.read_text(encoding="utf-8") == kept
    assert sorted(os.listdir(data.parent)) == ["in.jsonl"]


def test_a_foreign_folder_is_never_replaced(tmp_path: Path) -> None:
    check_replaceable_folder(str(tmp_path / "new"), "dataprep.json")
    (tmp_path / "empty").mkdir()
    check_replaceable_folder(str(tmp_path / "empty"), "dataprep.json")
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "dataprep.json").write_text("{}")
    check_replaceable_folder(str(ours), "dataprep.json")
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(UsageProblem) as info:
        check_replaceable_folder(str(home), "dataprep.json", what="dataprep tokenize")
    assert info.value.format() == (
        f"{home}: folder exists and was not written by dataprep tokenize (no dataprep.json); it is not replaced, "
        "even with --force (remove it yourself or pick another output path)")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageProblem, match="exists and is not a folder"):
        check_replaceable_folder(str(tmp_path / "file"), "dataprep.json")


@pytest.mark.parametrize(("spec", "path"), [("./tok", True), ("../shared/data/tokenizers/qwen2.5", True),
                                             ("/abs/tok", True), ("~/tok", True), ("a/b/c", True),
                                             ("Qwen/Qwen2.5-0.5B", False), ("gpt2", False)])
def test_looks_like_path(spec: str, path: bool) -> None:
    assert looks_like_path(spec) is path
