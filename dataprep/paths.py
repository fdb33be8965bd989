"""Output paths that would destroy data, refused before any work starts.

Decisions (each command calls :func:`check_paths` with its inputs and outputs before reading anything):

- ``--rejects`` naming an input, or the same file as ``-o``, is refused: the rows would silently replace the
  input or the kept rows. So is any output that is another output of the same run.
- ``-o`` naming an input is allowed: it is a safe in-place rewrite. The output is built in a temp file and
  renamed over the input only after the whole input was read and the run succeeded (like ``sort -o f f``); a
  failed run leaves the input as it was. Not through a symlink: AtomicFile writes through links (replacing a
  link by a file would be a surprise, and ``/dev/stdout`` is one), which would truncate the input while it
  is being read, so ``-o LINK`` to an input is refused.
- An input inside a folder the run replaces (tokenize's OUTDIR, ``split --out-dir``) is refused: the input
  would be deleted with the old folder.
- A non-empty folder that dataprep did not write is never replaced, even with ``--force``
  (:func:`check_replaceable_folder`): the user removes it, dataprep does not delete what it did not make.

"Same file" means the same inode for paths that exist (hard links, symlinks, ``./a`` vs ``a``), else the same
path once symlinks in its existing part are resolved. ``-`` (stdin/stdout) and character devices such as
``/dev/null`` never collide.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from dataprep.errors import UsageProblem


def looks_like_path(spec: str) -> bool:
    """True for ``./tok``, ``../tok``, ``/abs/tok``, ``~/tok`` and ``a/b/c``: not a hub id (``org/name``)."""
    return spec.startswith((".", "/", "~")) or spec.count("/") >= 2 or (os.sep != "/" and os.sep in spec)


def _identity(path: str) -> tuple[str, object] | None:
    """What makes two paths the same file; None for stdin/stdout and devices, which cannot be destroyed."""
    if path == "-":
        return None
    try:
        info = os.stat(path)
    except OSError:
        return ("path", os.path.realpath(path))
    if stat.S_ISCHR(info.st_mode):
        return None
    return ("inode", (info.st_dev, info.st_ino))


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether writing ``b`` would overwrite ``a`` (see the module docstring for what counts as the same)."""
    first, second = _identity(os.fspath(a)), _identity(os.fspath(b))
    return first is not None and first == second


def _inside(path: str, folder: str) -> bool:
    if path == "-":
        return False
    real, root = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return real == root or real.is_relative_to(root)


def check_paths(
    inputs: Iterable[str],
    output: str | None = None,
    rejects: str | None = None,
    *,
    extra_outputs: Iterable[str] = (),
    replaced_folders: Iterable[str] = (),
) -> None:
    """Raise UsageProblem (exit 2) for outputs that would destroy an input or each other.

    ``output`` is ``-o`` (a file; it may be an input: an in-place rewrite), ``rejects`` is ``--rejects``,
    ``extra_outputs`` are further files the run writes (none may be an input or another output), and
    ``replaced_folders`` are folders the run replaces as a whole (no input may live inside one).
    """
    inputs = [i for i in inputs if i != "-"]
    if output and os.path.islink(output):
        for source in inputs:
            if same_file(source, output):
                raise UsageProblem(f"-o {output} is a link to the input {source}; writing through it would truncate "
                                   "the input while it is read", hint=f"write to {source} itself (a safe in-place "
                                   "rewrite) or to another file")
    named = [("--rejects", rejects)] if rejects else []
    named += [("output", extra) for extra in extra_outputs]
    for label, path in named:
        for source in inputs:
            if same_file(source, path):
                raise UsageProblem(f"{label} {path} is the input {source}; it would be overwritten",
                                   hint="write the rejects to another file")
    outputs = ([("-o", output)] if output else []) + named
    for i, (label, path) in enumerate(outputs):
        for other_label, other in outputs[:i]:
            if same_file(other, path):
                raise UsageProblem(f"{label} {path} and {other_label} {other} are the same file; one would overwrite "
                                   "the other", hint="give each output its own path")
    for folder in replaced_folders:
        for source in inputs:
            if _inside(source, folder):
                raise UsageProblem(f"input {source} is inside {folder}, which this run replaces",
                                   hint="move the input out of it first, or write elsewhere")


def check_replaceable_folder(path: str, marker: str, *, what: str = "dataprep") -> None:
    """Refuse to replace a non-empty folder without ``marker`` (the file dataprep writes in its folders).

    Used before ``--force`` replaces an output folder: dataprep deletes only folders it wrote.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UsageProblem(f"{path}: exists and is not a folder", hint="pick another output path")
    if folder.is_dir() and not (folder / marker).is_file() and any(folder.iterdir()):
        raise UsageProblem(
            f"{path}: folder exists and was not written by {what} (no {marker}); it is not replaced, even with --force",
            hint="remove it yourself or pick another output path")
