"""Output folders: built hidden, swapped in whole, the old one kept when anything fails, stale temps cleaned."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pytest

from dataprep.outdir import OutputDir, Staging, clean_stale, swap_in
from dataprep.temps import lock_temp, open_dir


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_output_dir_abort_leaves_nothing_and_commit_replaces(tmp_path):
    schema = pa.schema([("id", pa.string())])
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    out = OutputDir(target, schema)
    out.write("train", pa.RecordBatch.from_pydict({"id": ["a"]}, schema=schema))
    out.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (target / "old.txt").read_text() == "old"
    out = OutputDir(target, schema)
    out.write("validation", pa.RecordBatch.from_pydict({"id": ["b"]}, schema=schema))
    out.write("train", pa.RecordBatch.from_pydict({"id": ["a"]}, schema=schema))
    assert out.splits == ["train", "validation"]
    out.finish_splits("key")
    out.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert not (target / "old.txt").exists()
    assert json.loads((target / "dataset_dict.json").read_text())["splits"] == ["train", "validation"]



def test_a_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = tmp_path / "ds"
    target.mkdir()
    (target / "old.txt").write_text("old")
    new = tmp_path / "new"
    new.mkdir()
    real_replace = os.replace
    calls = []

    def failing_second_rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_second_rename)
    with pytest.raises(OSError):
        swap_in(new, target)
    monkeypatch.undo()
    assert (target / "old.txt").read_text() == "old"
    assert names(tmp_path) == ["ds", "new"]


def aged(path: Path) -> Path:
    """A hidden folder as a dead run leaves it: unlocked and older than the cleaner's grace period."""
    path.mkdir(parents=True, exist_ok=True)
    os.utime(path, (time.time() - 60, time.time() - 60))
    return path


def test_stale_temps_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "ds"
    target.mkdir()
    aged(tmp_path / ".ds.tmp-dead0000")
    live = aged(tmp_path / ".ds.tmp-live0000")
    aged(tmp_path / ".other.tmp-dead0000")
    fd = open_dir(live)
    assert lock_temp(fd)  # a live run holds its folder
    try:
        clean_stale(target)
    finally:
        os.close(fd)
    assert names(tmp_path) == [".ds.tmp-live0000", ".other.tmp-dead0000", "ds"]


def test_a_crash_between_the_renames_is_undone_by_the_next_run(tmp_path):
    """Killed after the old folder went aside and before the new one came in: the next run puts it back."""
    target = tmp_path / "ds"
    aside = tmp_path / ".ds.old-dead0000"
    (aside / "old").mkdir(parents=True)
    (aside / "old" / "data.txt").write_text("precious")
    aged(aside)
    staging = Staging(target)
    assert (target / "data.txt").read_text() == "precious"
    staging.abort()
    assert names(tmp_path) == ["ds"]


def test_a_live_commit_holds_its_aside_folder(tmp_path):
    """While the old folder is aside, another run does not restore or remove it (it is locked)."""
    target = tmp_path / "ds"
    target.mkdir()
    (target / "v1").write_text("1")
    staging = Staging(target)
    (staging.path / "v2").write_text("2")
    real_replace = os.replace
    seen = []

    def replace_and_clean(src, dst):
        real_replace(src, dst)
        if Path(dst).name == "old":  # the old folder just went aside: another run cleans now
            os.utime(Path(dst).parent, (time.time() - 60, time.time() - 60))
            seen.append(clean_stale(target))

    os.replace = replace_and_clean
    try:
        staging.commit()
    finally:
        os.replace = real_replace
    assert seen == [[]]
    assert names(target) == ["v2"] and names(tmp_path) == ["ds"]


def test_split_files_are_a_function_of_the_rows_not_of_how_they_arrived(tmp_path):
    """The same rows in batches of other sizes, sliced out of larger arrays or not, give the same bytes."""
    from dataprep.outdir import WRITE_ROWS

    schema = pa.schema([("id", pa.string()), ("ids", pa.list_(pa.int32())), ("length", pa.int32())])
    n = 2 * WRITE_ROWS + 345
    whole = pa.record_batch([pa.array([f"r{i}" for i in range(n + 7)]),
                             pa.array([[i, i + 1][: i % 3] for i in range(n + 7)], pa.list_(pa.int32())),
                             pa.array([i % 3 for i in range(n + 7)], pa.int32())], schema=schema)

    def fresh(a, b):  # rows a..b built anew, with 7 rows more in its buffers (an array a batch was cut from)
        rows = pa.Table.from_batches([whole]).slice(a, b - a + 7).to_pylist()
        return pa.RecordBatch.from_pylist(rows, schema=schema).slice(0, b - a)

    def write(name, cuts):
        out = OutputDir(tmp_path / name, schema)
        for a, b in zip(cuts, cuts[1:], strict=False):
            out.write("train", fresh(a, b) if name == "fresh" else whole.slice(a, b - a))
        out.finish_splits("key")
        out.commit()
        return (tmp_path / name / "train" / "data-00000-of-00001.arrow").read_bytes()

    one = write("one", [0, n])
    assert write("many", [0, 1, 999, 1000, 1500, 2048, n]) == one
    assert write("fresh", [0, 1000, 2000, n]) == one
    assert [b.num_rows for b in pa.ipc.open_stream(one)] == [WRITE_ROWS, WRITE_ROWS, 345]
