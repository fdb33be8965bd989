"""LLaMA-Factory dataset_info.json entries stay inside their folder (issue 10, item 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataprep.errors import UsageProblem
from dataprep.formats.dataset_info import load_entry
from tests.conftest import FIXTURES, invoke


def registry(folder: Path, entry: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "dataset_info.json"
    path.write_text(json.dumps({"d": entry}), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/passwd", "sub/../../outside.json"])
def test_file_name_outside_the_folder_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "outside.json").write_text("[]")
    info = registry(tmp_path / "reg", {"file_name": name})
    with pytest.raises(UsageProblem) as exc:
        load_entry(str(info), "d")
    assert exc.value.format() == (
        f"{info}: dataset 'd': file_name {name!r} points outside the registry's folder {info.parent} "
        "(dataprep reads only files beside dataset_info.json; pass another file as INPUT)")


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    info = registry(tmp_path / "reg", {"file_name": "data.json"})
    (info.parent / "data.json").symlink_to("/etc/passwd")
    with pytest.raises(UsageProblem, match="points outside the registry's folder"):
        load_entry(str(info), "d")
    info = registry(tmp_path / "reg2", {"script_url": "scripts"})
    (info.parent / "scripts").symlink_to(tmp_path / "reg")
    with pytest.raises(UsageProblem, match="script_url 'scripts' points outside"):
        load_entry(str(info), "d")


def test_files_inside_the_folder_still_work(tmp_path: Path) -> None:
    info = registry(tmp_path / "reg", {"file_name": "sub/alpaca.json"})
    (info.parent / "sub").mkdir()
    (info.parent / "sub" / "alpaca.json").write_bytes((FIXTURES / "data" / "alpaca.json").read_bytes())
    assert load_entry(str(info), "d").path == str(info.parent / "sub" / "alpaca.json")


def test_the_replay_reads_nothing_and_writes_no_rejects(tmp_path: Path) -> None:
    info = registry(tmp_path / "reg", {"file_name": "../../../../etc/passwd"})
    rejects = tmp_path / "r.jsonl"
    result = invoke("normalize", "--dataset-info", info, "--dataset", "d", "--on-error", "reject",
                    "--rejects", rejects, "-q")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "points outside the registry's folder" in result.stderr
    assert not rejects.exists()
