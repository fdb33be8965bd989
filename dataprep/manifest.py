"""The manifest of a dataset folder (``dataprep.json``): one typed record, written and read through one pair of
functions by every part that makes or consumes such a folder (tokenize, pack, inspect, stats, train, tests).

It says what the folder holds (task, splits with row/token/supervised counts, rejects by reason, labels), how it
was made (options, template, encoder, inputs by content hash) and what a trainer must know (the tokenizer's size
and special ids). ``key`` is the content-addressed cache key: ``sha256(version, task, options, input sha256s
(with their split names), tokenizer file sha256s, template name + text hash + default system prompt)``. Paths and
mtimes are never part of it: the same bytes under another name are the same job, and a changed byte anywhere that
shapes the output is a new one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from dataprep import __version__
from dataprep.errors import DataprepError, InputError
from dataprep.io import display_name
from dataprep.tokenizer_io import HASH_CHUNK

MANIFEST = "dataprep.json"
CARD = "README.md"
TOKENIZER_DIR = "tokenizer"
SPLIT_ORDER = ("train", "validation", "test")
TASKS = ("causal", "classification")


@dataclass
class SplitStats:
    rows: int = 0
    tokens: int = 0
    supervised_tokens: int | None = 0
    truncated: int = 0
    longest: int = 0  # the longest row in tokens: trainers that cut rows again are warned against it (the card)


@dataclass
class Totals:
    rows_in: int = 0
    rows_out: int = 0
    rejected: int = 0
    truncated: int = 0
    tokens: int = 0
    supervised_tokens: int | None = 0


@dataclass
class TokenizerFacts:
    """What a trainer needs to size embeddings and pad: ``len`` counts added tokens, ``vocab_size`` does not."""

    len: int
    vocab_size: int | None = None
    pad_token_id: int | None = None
    eos_token_id: int | None = None
    bos_token_id: int | None = None
    pad_token: str | None = None
    eos_token: str | None = None
    bos_token: str | None = None
    model_input_names: list[str] = field(default_factory=list)
    class_name: str | None = None
    loaded_by: str | None = None
    files_sha256: dict[str, str] = field(default_factory=dict)


@dataclass
class Manifest:
    task: str
    tokenizer: TokenizerFacts
    splits: dict[str, SplitStats]
    key: str = ""
    dataprep_version: str = __version__
    options: dict[str, Any] = field(default_factory=dict)
    template: dict[str, Any] | None = None
    encoder: dict[str, Any] | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    totals: Totals = field(default_factory=Totals)
    labels: dict[str, Any] | None = None
    self_check: dict[str, Any] | None = None
    mixture: dict[str, Any] | None = None
    packing: dict[str, Any] | None = None
    emit_for: str = "dataprep"  # the consumer layout of the splits (dataprep.emit)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        return {k: v for k, v in out.items() if v is not None or k in ("template",)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Build from parsed JSON; a missing or mistyped required part raises ``ValueError`` naming it."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        tok = data.get("tokenizer")
        if not isinstance(tok, dict) or not isinstance(tok.get("len"), int):
            raise ValueError("the manifest has no tokenizer.len")
        task = data.get("task", "causal")
        if task not in TASKS:
            raise ValueError(f"task {task!r} is unknown (known: {', '.join(TASKS)})")
        splits = data.get("splits") or {}
        if not isinstance(splits, dict) or not all(isinstance(s, dict) for s in splits.values()):
            raise ValueError("splits must map split names to counts")
        fields = {f for f in TokenizerFacts.__dataclass_fields__}
        return cls(
            task=task,
            tokenizer=TokenizerFacts(**{k: v for k, v in tok.items() if k in fields}),
            splits={name: SplitStats(**{k: v for k, v in s.items() if k in SplitStats.__dataclass_fields__})
                    for name, s in splits.items()},
            key=str(data.get("key", "")),
            dataprep_version=str(data.get("dataprep_version", "")),
            options=dict(data.get("options") or {}),
            template=data.get("template"),
            encoder=data.get("encoder"),
            inputs=list(data.get("inputs") or []),
            rejected=dict(data.get("rejected") or {}),
            totals=Totals(**{k: v for k, v in (data.get("totals") or {}).items() if k in Totals.__dataclass_fields__}),
            labels=data.get("labels"),
            self_check=data.get("self_check"),
            mixture=data.get("mixture"),
            packing=data.get("packing"),
            emit_for=str(data.get("emit_for", "dataprep")),
        )

    @property
    def label_names(self) -> list[str]:
        return list((self.labels or {}).get("names", []))


def write_manifest(folder: str | Path, manifest: Manifest) -> Path:
    path = Path(folder) / MANIFEST
    path.write_text(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_manifest(folder: str | Path) -> Manifest | None:
    """The manifest of ``folder``, or None when there is none or it cannot be read (tokenize then redoes work)."""
    try:
        return load_manifest(folder)
    except DataprepError:
        return None


def load_manifest(folder: str | Path) -> Manifest:
    """The manifest of ``folder``; a missing or broken one is a one-line error saying what to do."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DataprepError(f"{folder}: no {MANIFEST} here, so this is not a dataset written by dataprep",
                            hint="run dataprep tokenize ... -o DIR first and pass that DIR")
    try:
        return Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, TypeError) as exc:
        raise DataprepError(f"{path}: not a valid manifest: {exc}", hint="re-run dataprep tokenize") from None


# -- inputs and the cache key ------------------------------------------------------------------------------------

@dataclass
class InputFile:
    """One input as read: ``path`` is what the readers open (a spool file for stdin), ``name`` what the user gave."""

    name: str
    path: str
    sha256: str
    bytes: int
    split: str | None = None
    fmt: str | None = None

    def fact(self) -> dict[str, Any]:
        return {"name": self.name, "split": self.split, "bytes": self.bytes, "sha256": self.sha256}


def _hash_stream(stream: IO[bytes], sink: IO[bytes] | None = None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink.write(chunk)
    return digest.hexdigest(), size


class StreamedStdin(io.RawIOBase):
    """Standard input copied to a spool file by a thread (hashed on the way) and read from that file as it grows:
    the facts :func:`hash_input` gives, without waiting for the writer to finish first. In ``normalize |
    tokenize`` both then work at once, and the writer never waits for the reader. Use it only when the cache key
    is not needed before the work (``--force``, or no earlier output): :meth:`fact` waits for the end of input.
    """

    name = "<stdin>"
    path = "-"

    def __init__(self, spool_dir: str, split: str | None = None, fmt: str | None = None) -> None:
        from dataprep.io import detect_format, stdin_bytes

        super().__init__()
        source = stdin_bytes()
        fd, spool = tempfile.mkstemp(prefix="stdin-", dir=spool_dir)
        self.split = split
        self._file = open(spool, "rb", buffering=0)  # noqa: SIM115 - closed by fact()
        self._grown = threading.Condition()
        self._written = 0
        self._done = False
        self._error: BaseException | None = None
        self._sha = ""
        self._thread = threading.Thread(target=self._copy, args=(source, os.fdopen(fd, "wb")),
                                        name="dataprep-stdin", daemon=True)
        self._thread.start()
        self._wait(64)
        with open(spool, "rb") as f:
            self.fmt = fmt or detect_format("-", f.read(64))  # the first 64 bytes, as hash_input reads them

    def _copy(self, source: IO[bytes], sink: IO[bytes]) -> None:
        digest = hashlib.sha256()
        read = getattr(source, "read1", source.read)  # what has arrived, not a full chunk
        try:
            with sink:
                while chunk := read(HASH_CHUNK):
                    digest.update(chunk)
                    sink.write(chunk)
                    sink.flush()
                    with self._grown:
                        self._written += len(chunk)
                        self._grown.notify_all()
        except BaseException as exc:  # noqa: BLE001 - raised again in the reading thread
            self._error = exc
        with self._grown:
            self._sha, self._done = digest.hexdigest(), True
            self._grown.notify_all()

    def _wait(self, size: int) -> None:
        """Until the spool file holds ``size`` bytes or the input has ended."""
        with self._grown:
            while self._written < size and not self._done:
                self._grown.wait()
        if self._error is not None:
            raise self._error

    @property
    def arrived(self) -> int:
        """Bytes of input so far."""
        return self._written

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._wait(self._file.tell() + 1)
        return self._file.readinto(buffer) or 0

    def reader(self) -> IO[bytes]:
        return io.BufferedReader(self, buffer_size=HASH_CHUNK)  # type: ignore[arg-type]

    def fact(self) -> InputFile:
        """The input's facts, once all of it has arrived (the hash covers every byte, read by the run or not)."""
        self._thread.join()
        self._wait(0)
        self._file.close()
        return InputFile(self.name, self.path, self._sha, self._written, self.split, self.fmt)


def hash_input(arg: str, spool_dir: str, split: str | None = None) -> InputFile:
    """sha256 of an input's bytes; stdin is copied to a spool file while hashing, so it can be read afterwards."""
    if arg == "-":
        from dataprep.io import detect_format, stdin_bytes

        source = stdin_bytes()
        fd, spool = tempfile.mkstemp(prefix="stdin-", dir=spool_dir)
        with os.fdopen(fd, "wb") as sink:
            sha, size = _hash_stream(source, sink)
        with open(spool, "rb") as f:
            head = f.read(64)
        return InputFile(display_name(arg), spool, sha, size, split, detect_format("-", head))
    if "://" in arg:  # a pyarrow.fs URI (--engine ray)
        from dataprep.shards import hash_file

        sha, size = hash_file(arg)
        return InputFile(arg, arg, sha, size, split)
    path = Path(arg)
    if path.is_dir():
        digest = hashlib.sha256()
        size = 0
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            with open(p, "rb") as f:
                sha, n = _hash_stream(f)
            digest.update(f"{p.relative_to(path).as_posix()}\0{sha}\n".encode())
            size += n
        return InputFile(arg, arg, digest.hexdigest(), size, split)
    try:
        with open(path, "rb") as f:
            sha, size = _hash_stream(f)
    except FileNotFoundError:
        raise InputError(arg, "no such file") from None
    except OSError as exc:
        raise InputError(arg, f"cannot open: {exc.strerror}") from None
    return InputFile(arg, arg, sha, size, split)


def cache_key(parts: dict[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def key_parts(
    *, task: str, options: dict[str, Any], inputs: list[InputFile], tokenizer_sha256: dict[str, str],
    template: dict[str, Any] | None,
) -> dict[str, Any]:
    """Everything that shapes the output bytes, and nothing else (no paths, no mtimes, no batch size)."""
    return {
        "dataprep_version": __version__,
        "task": task,
        "options": options,
        "inputs": [{"split": f.split, "sha256": f.sha256} for f in inputs],
        "tokenizer_sha256": tokenizer_sha256,
        "template": template,
    }


def split_order(names: list[str]) -> list[str]:
    known = [s for s in SPLIT_ORDER if s in names]
    return known + sorted(s for s in names if s not in SPLIT_ORDER)
