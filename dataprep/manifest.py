"""The output folder of ``dataprep tokenize``: Arrow splits written in a temp dir, a content-addressed manifest,
a dataset card, and one atomic rename at the end.

Cache key. ``key = sha256(version, task, options, input sha256s (with their split names), tokenizer file
sha256s, template name + text hash + default system prompt)``. Paths and mtimes are never part of it: the same
bytes under another name are the same job, and a changed byte anywhere that shapes the output is a new one.

Atomicity. Everything is built in ``.OUTDIR.tmp-*`` beside OUTDIR; on success an existing OUTDIR is renamed
aside, the new one renamed in, and the old one removed. A run that dies leaves OUTDIR as it was (or absent),
plus at worst a hidden temp folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from dataprep import __version__
from dataprep.errors import DataprepError, InputError
from dataprep.io import display_name
from dataprep.tokenizer_io import HASH_CHUNK

MANIFEST = "dataprep.json"
CARD = "README.md"
TOKENIZER_DIR = "tokenizer"
SPLIT_ORDER = ("train", "validation", "test")


@dataclass
class InputFile:
    """One input as read: ``path`` is what the readers open (a spool file for stdin), ``name`` what the user gave."""

    name: str
    path: str
    sha256: str
    bytes: int
    split: str | None = None
    fmt: str | None = None


def _hash_stream(stream: IO[bytes], sink: IO[bytes] | None = None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink.write(chunk)
    return digest.hexdigest(), size


def hash_input(arg: str, spool_dir: str, split: str | None = None) -> InputFile:
    """sha256 of an input's bytes; stdin is copied to a spool file while hashing, so it can be read afterwards."""
    if arg == "-":
        from dataprep.io import detect_format

        fd, spool = tempfile.mkstemp(prefix="stdin-", dir=spool_dir)
        with os.fdopen(fd, "wb") as sink:
            sha, size = _hash_stream(sys.stdin.buffer, sink)
        with open(spool, "rb") as f:
            head = f.read(64)
        return InputFile(display_name(arg), spool, sha, size, split, detect_format("-", head))
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


def read_manifest(outdir: str | Path) -> dict[str, Any] | None:
    path = Path(outdir) / MANIFEST
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def check_target(outdir: str | Path, force: bool) -> None:
    """Refuse to replace a folder that is not ours: a non-empty OUTDIR without a manifest needs --force."""
    path = Path(outdir)
    if path.exists() and not path.is_dir():
        raise DataprepError(f"{outdir}: exists and is not a folder")
    if path.is_dir() and not force and read_manifest(path) is None and any(path.iterdir()):
        raise DataprepError(
            f"{outdir}: folder exists and was not written by dataprep tokenize (no {MANIFEST})",
            hint="pick another -o, or pass --force to replace it",
        )


def split_order(names: list[str]) -> list[str]:
    known = [s for s in SPLIT_ORDER if s in names]
    return known + sorted(s for s in names if s not in SPLIT_ORDER)


class OutputDir:
    """Builds the dataset folder beside OUTDIR and swaps it in on :meth:`commit`; :meth:`abort` leaves no trace."""

    def __init__(self, outdir: str | Path, schema: pa.Schema) -> None:
        self.target = Path(outdir)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-", dir=self.target.parent))
        self.staging = self.work / "out"
        self.staging.mkdir()
        self.parts = self.work / "parts"
        self.parts.mkdir()
        self.schema = schema
        self._writers: dict[str, pa.ipc.RecordBatchStreamWriter] = {}

    def write(self, split: str, batch: pa.RecordBatch) -> None:
        writer = self._writers.get(split)
        if writer is None:
            writer = pa.ipc.new_stream(str(self.parts / f"{split}.arrow"), self.schema)
            self._writers[split] = writer
        writer.write_batch(batch)

    @property
    def splits(self) -> list[str]:
        return split_order(list(self._writers))

    def finish_splits(self, key: str, rewrite: Any = None) -> None:
        """Close the split files and save them as a DatasetDict (memory-mapped, so RAM stays flat).

        ``rewrite(split_path) -> path`` may replace a split file first (classification maps label names to ids).
        The fingerprint comes from the cache key, so two runs write byte-identical state files.
        """
        from datasets import Dataset, DatasetDict
        from datasets.table import MemoryMappedTable
        from datasets.utils.tqdm import (
            are_progress_bars_disabled,
            disable_progress_bars,
            enable_progress_bars,
        )

        for writer in self._writers.values():
            writer.close()
        parts = {}
        for split in self.splits:
            path = self.parts / f"{split}.arrow"
            if rewrite is not None:
                path = rewrite(path)
            fingerprint = hashlib.sha256(f"{key}:{split}".encode()).hexdigest()[:16]
            parts[split] = Dataset(MemoryMappedTable.from_file(str(path)), fingerprint=fingerprint)
        quiet_before = are_progress_bars_disabled()
        disable_progress_bars()  # stderr carries our own summary, not datasets' bars
        try:
            DatasetDict(parts).save_to_disk(str(self.staging))
        finally:
            if not quiet_before:
                enable_progress_bars()

    def commit(self) -> None:
        aside = None
        if self.target.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.old-", dir=self.target.parent))
            os.replace(self.target, aside / "old")
        os.replace(self.staging, self.target)
        shutil.rmtree(self.work, ignore_errors=True)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)

    def abort(self) -> None:
        for writer in self._writers.values():
            with contextlib.suppress(OSError, pa.ArrowException):
                writer.close()
        shutil.rmtree(self.work, ignore_errors=True)


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")


def dataset_card(manifest: dict[str, Any]) -> str:
    """A README for people with the same facts as the manifest."""
    tok = manifest["tokenizer"]
    opts = manifest["options"]
    lines = [
        "# Tokenized dataset",
        "",
        f"Written by dataprep {manifest['dataprep_version']} (`dataprep tokenize`), task **{manifest['task']}**.",
        "Load it with `datasets.load_from_disk(<this folder>)`; the tokenizer is in `tokenizer/`.",
        "",
        "## Splits",
        "",
        "| split | rows | tokens | supervised tokens | truncated |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, s in manifest["splits"].items():
        supervised = "n/a" if s["supervised_tokens"] is None else f"{s['supervised_tokens']:,}"
        lines.append(f"| {name} | {s['rows']:,} | {s['tokens']:,} | {supervised} | {s['truncated']:,} |")
    lines += ["", "## Rows", ""]
    totals = manifest["totals"]
    lines.append(f"{totals['rows_in']:,} rows in, {totals['rows_out']:,} written, {totals['rejected']:,} rejected.")
    if manifest["rejected"]:
        lines.append("")
        lines += [f"- `{reason}`: {n:,}" for reason, n in manifest["rejected"].items()]
    lines += ["", "## How it was made", ""]
    lines += [f"- {k}: `{json.dumps(v, ensure_ascii=False)}`" for k, v in opts.items()]
    template = manifest.get("template")
    if template:
        lines.append(f"- template: `{template['name']}` (text sha256 `{template['sha256'][:16]}…`)")
        system = template.get("default_system")
        lines.append(f"- default system prompt: {json.dumps(system, ensure_ascii=False) if system else 'none'}")
    labels = manifest.get("labels")
    if labels:
        lines.append("- labels: " + ", ".join(f"{i} = `{n}`" for i, n in enumerate(labels["names"])))
    lines += ["", "## Tokenizer", ""]
    lines.append(f"- class `{tok['class']}`, len {tok['len']:,} (vocab {tok['vocab_size']:,})")
    lines.append(f"- pad id {tok['pad_token_id']}, eos id {tok['eos_token_id']}, bos id {tok['bos_token_id']}")
    lines += [f"- `{name}` sha256 `{sha}`" for name, sha in tok["files_sha256"].items()]
    lines += ["", "## Inputs", ""]
    lines += [
        f"- `{i['name']}`" + (f" → split `{i['split']}`" if i.get("split") else "") + f": {i['bytes']:,} bytes, "
        f"sha256 `{i['sha256']}`"
        for i in manifest["inputs"]
    ]
    lines += ["", f"Cache key: `{manifest['key']}`", ""]
    return "\n".join(lines)
