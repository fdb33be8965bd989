"""Temps beside an output: signals remove them, a killed run's are removed by the next run, a live run's never.

These run the real command in a subprocess that reads a FIFO, so a test decides exactly when it is mid-run:
the output temps exist, nothing is committed, and the process waits for more input.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dataprep.temps import GRACE_SECONDS, lock_temp, open_dir, remove_stale_temps, temp_pattern
from tests.conftest import FIXTURES

ROWS = (FIXTURES / "data" / "canonical.jsonl").read_text(encoding="utf-8")


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def age(path: Path, seconds: float = GRACE_SECONDS + 60) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


class MidRun:
    """``dataprep filter FIFO -o out.jsonl --rejects rej.jsonl`` stopped mid-run, its temps in place."""

    def __init__(self, folder: Path, *extra: str) -> None:
        self.fifo = folder / "in.jsonl"
        os.mkfifo(self.fifo)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dataprep", "filter", str(self.fifo), "-o", str(folder / "out.jsonl"),
             "--rejects", str(folder / "rej.jsonl"), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.feed = open(self.fifo, "w", encoding="utf-8")  # noqa: SIM115 - closed by finish()
        self.feed.write(ROWS)
        self.feed.flush()
        deadline = time.monotonic() + 60
        while len(hidden(folder)) < 2:
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "the run never created its temps"
            time.sleep(0.05)

    def finish(self) -> subprocess.CompletedProcess[str]:
        self.feed.close()
        out, err = self.proc.communicate(timeout=120)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)

    def signal(self, signum: int) -> subprocess.CompletedProcess[str]:
        self.proc.send_signal(signum)
        out, err = self.proc.communicate(timeout=120)
        self.feed.close()
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)


def test_temp_names_are_specific_to_their_target() -> None:
    pattern = temp_pattern("out/data.jsonl", "file")
    assert pattern.fullmatch(".data.jsonl.k3_9abcd.tmp")
    assert not pattern.fullmatch(".data.jsonl.k3_9abcd.tmp.swp")
    assert not pattern.fullmatch(".data.jsonl.tmp")  # a user's own file is never touched
    assert not pattern.fullmatch(".dataXjsonl.k3_9abcd.tmp")  # the dot is literal
    assert temp_pattern("out/ds", "dir").fullmatch(".ds.tmp-abcdefgh")
    with pytest.raises(ValueError):
        temp_pattern("x", "link")


@pytest.mark.parametrize(("signum", "status", "message"), [(signal.SIGTERM, 143, "Terminated."),
                                                            (signal.SIGINT, 130, "Aborted.")])
def test_a_signal_removes_the_temps_and_keeps_the_old_output(tmp_path: Path, signum: int, status: int,
                                                             message: str) -> None:
    (tmp_path / "out.jsonl").write_text("OLD\n", encoding="utf-8")
    run = MidRun(tmp_path)
    proc = run.signal(signum)
    assert proc.returncode == status
    assert proc.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in proc.stderr
    assert hidden(tmp_path) == []
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8") == "OLD\n"
    assert not (tmp_path / "rej.jsonl").exists()


def test_a_killed_runs_temps_are_removed_by_the_next_run(tmp_path: Path) -> None:
    run = MidRun(tmp_path)
    proc = run.signal(signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    stale = hidden(tmp_path)
    assert len(stale) == 2 and all(name.endswith(".tmp") for name in stale)
    for name in stale:
        age(tmp_path / name)
    source = tmp_path / "rows.jsonl"
    source.write_text(ROWS, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "dataprep", "filter", str(source), "-o", str(tmp_path / "out.jsonl"),
                           "--rejects", str(tmp_path / "rej.jsonl"), "-q"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert hidden(tmp_path) == []
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8").count("\n") == 20


def test_a_live_runs_temps_are_never_touched(tmp_path: Path) -> None:
    """Even when they look old, a concurrent run's temps are locked, so another run on the same target leaves
    them alone, and both runs end with a complete file."""
    live = MidRun(tmp_path)
    temps = hidden(tmp_path)
    for name in temps:
        age(tmp_path / name)
    assert remove_stale_temps(tmp_path / "out.jsonl") == []
    source = tmp_path / "rows.jsonl"
    source.write_text(ROWS.splitlines(keepends=True)[0], encoding="utf-8")
    other = subprocess.run([sys.executable, "-m", "dataprep", "filter", str(source), "-o", str(tmp_path / "out.jsonl"),
                            "--rejects", str(tmp_path / "rej.jsonl"), "-q"], capture_output=True, text=True)
    assert other.returncode == 0, other.stderr
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8").count("\n") == 1
    assert hidden(tmp_path) == temps
    proc = live.finish()
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8").count("\n") == 20
    assert hidden(tmp_path) == []


def test_fresh_temps_are_within_the_grace_period(tmp_path: Path) -> None:
    """The instant between mkstemp and flock: an unlocked but brand-new temp is not stale yet."""
    temp = tmp_path / ".out.jsonl.abcd1234.tmp"
    temp.write_text("x")
    assert remove_stale_temps(tmp_path / "out.jsonl") == []
    age(temp)
    assert remove_stale_temps(tmp_path / "out.jsonl") == [temp]
    assert not temp.exists()


def test_folder_temps_for_outdir(tmp_path: Path) -> None:
    """What the tokenize OUTDIR writer calls: a locked temp folder survives, an abandoned one goes."""
    live, dead = tmp_path / ".ds.tmp-live0000", tmp_path / ".ds.tmp-dead0000"
    for folder in (live, dead):
        (folder / "out").mkdir(parents=True)
        (folder / "out" / "data.arrow").write_bytes(b"x" * 100)
        age(folder)
    fd = open_dir(live)
    try:
        assert lock_temp(fd)
        assert remove_stale_temps(tmp_path / "ds", "dir") == [dead]
        assert live.is_dir() and not dead.exists()
    finally:
        os.close(fd)
    assert remove_stale_temps(tmp_path / "ds", "dir") == [live]


def test_a_lock_is_released_when_its_holder_thread_closes_it(tmp_path: Path) -> None:
    temp = tmp_path / ".out.jsonl.abcd1234.tmp"
    temp.write_text("x")
    age(temp)
    fd = os.open(temp, os.O_RDONLY)
    assert lock_temp(fd)
    assert remove_stale_temps(tmp_path / "out.jsonl") == []
    thread = threading.Thread(target=os.close, args=(fd,))
    thread.start()
    thread.join()
    assert remove_stale_temps(tmp_path / "out.jsonl") == [temp]


def test_links_and_other_targets_are_left_alone(tmp_path: Path) -> None:
    real = tmp_path / "precious.txt"
    real.write_text("keep")
    link = tmp_path / ".out.jsonl.abcd1234.tmp"
    link.symlink_to(real)
    other = tmp_path / ".other.jsonl.abcd1234.tmp"
    other.write_text("x")
    age(other)
    os.utime(link, (0, 0), follow_symlinks=False)
    assert remove_stale_temps(tmp_path / "out.jsonl") == []
    assert link.is_symlink() and real.read_text() == "keep" and other.exists()
