"""Hidden temp files and folders beside an output, and removing the ones a dead run left behind.

Every output is built under a hidden temp name in the target's folder and renamed into place at the end
(``.NAME.XXXXXXXX.tmp`` for a file, ``.NAME.tmp-XXXXXXXX`` for a folder, ``XXXXXXXX`` being tempfile's
random part). A run killed with SIGKILL cannot remove its temp, so the next run writing the same target does.

Ownership is an advisory ``flock`` that the writing process holds on its temp from creation to rename: a temp
nobody holds belongs to no live process. That is safer than a pid in the name (pids are reused, and mean
nothing to another machine sharing the folder). The cleaner also leaves alone anything younger than
:data:`GRACE_SECONDS`, which covers the instant between a temp's creation and its owner taking the lock.
Where ``flock`` is unavailable or refused (some network filesystems), nothing is removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so no cleaning either
    fcntl = None  # type: ignore[assignment]

GRACE_SECONDS = 5.0
_RANDOM = r"[a-z0-9_]{8}"  # tempfile's names: 8 characters of this alphabet


def temp_pattern(target: str | os.PathLike[str], kind: str) -> re.Pattern[str]:
    """Names of the temps dataprep makes for ``target``: ``kind`` is ``"file"`` or ``"dir"``."""
    name = re.escape(Path(target).name)
    if kind == "file":
        return re.compile(rf"\.{name}\.{_RANDOM}\.tmp")
    if kind == "dir":
        return re.compile(rf"\.{name}\.tmp-{_RANDOM}")
    if kind == "old":  # a folder set aside while its replacement is swapped in (dataprep.outdir)
        return re.compile(rf"\.{name}\.old-{_RANDOM}")
    raise ValueError(f"kind must be 'file', 'dir' or 'old', not {kind!r}")


def lock_temp(fd: int) -> bool:
    """Take the owner's lock on an open temp (a file, or a folder opened with ``open_dir``). Hold the
    descriptor until the temp is renamed or removed; closing it releases the lock. False: not lockable here."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def open_dir(path: str | os.PathLike[str]) -> int:
    """A descriptor on a folder, for :func:`lock_temp` (``mkdtemp`` returns only a name)."""
    return os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def stale_temps(target: str | os.PathLike[str], kind: str = "file") -> Iterator[Path]:
    """The temps of ``target`` (see :func:`temp_pattern`) that no live process holds, each yielded while this
    process holds its lock (so nobody takes it meanwhile). Errors skip the entry: cleaning is a courtesy and must
    never fail the run that does it.

    Safe against concurrent runs: a temp whose owner lives is locked, and a fresh one is within the grace period.
    """
    if fcntl is None:
        return
    folder = Path(target).parent
    pattern = temp_pattern(target, kind)
    try:
        entries = [e for e in os.scandir(folder) if pattern.fullmatch(e.name)]
    except OSError:
        return
    now = time.time()
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(info.st_mode)
            if now - info.st_mtime < GRACE_SECONDS or not (is_dir or stat.S_ISREG(info.st_mode)):
                continue
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                         | (getattr(os, "O_DIRECTORY", 0) if is_dir else 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises when a live owner holds it
        except OSError:
            os.close(fd)
            continue
        try:
            yield Path(entry.path)
        finally:
            os.close(fd)


def remove_stale_temps(target: str | os.PathLike[str], kind: str = "file") -> list[Path]:
    """Remove the temps of ``target`` that no live process holds (:func:`stale_temps`); return them."""
    removed: list[Path] = []
    for path in stale_temps(target, kind):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed
