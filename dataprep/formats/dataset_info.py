"""LLaMA-Factory ``dataset_info.json`` entries: which file, which format, which columns, which role tags.

Only SFT entries can be honoured. Preference data (``ranking``, ``chosen``/``rejected``), KTO labels and
entries that live only on a hub or behind a loading script are refused with the reason, exit status 2.
Media columns (images, videos, audios) are not mapped, so they travel in ``meta``.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataprep.errors import InputError, UsageProblem
from dataprep.formats import sharegpt, slot_name

FORMATTINGS = {"alpaca": "alpaca", "sharegpt": "sharegpt"}
MEDIA_COLUMNS = frozenset(("images", "videos", "audios"))
PREFERENCE_COLUMNS = frozenset(("chosen", "rejected"))
KTO_COLUMNS = frozenset(("kto_tag", "tag"))
REMOTE_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url")
DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".parquet", ".json.gz", ".jsonl.gz")


@dataclass(frozen=True)
class DatasetEntry:
    """One entry, resolved: ``path`` is None when the entry names no local file."""

    name: str
    fmt: str
    columns: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    path: str | None = None
    remote: str | None = None


def load_entry(info_path: str, name: str) -> DatasetEntry:
    registry = _load_registry(info_path)
    if name not in registry:
        close = difflib.get_close_matches(name, list(registry), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"{len(registry)} entries, e.g. {', '.join(list(registry)[:5])}"
        raise UsageProblem(f"{info_path}: no dataset {name!r}", hint=hint)
    entry = registry[name]
    if not isinstance(entry, dict):
        raise InputError(info_path, f"entry {name!r} is not an object")
    where = f"{info_path}: dataset {name!r}"
    if entry.get("ranking"):
        raise UsageProblem(f"{where} is preference (ranking) data; normalize makes SFT records only")
    formatting = entry.get("formatting", "alpaca")
    if formatting not in FORMATTINGS:
        raise UsageProblem(f"{where} has formatting {formatting!r}; supported: {', '.join(FORMATTINGS)}")
    columns: dict[str, str] = {}
    for role, column in (entry.get("columns") or {}).items():
        if role in MEDIA_COLUMNS:
            continue
        if role in KTO_COLUMNS:
            raise UsageProblem(f"{where} is KTO data (column {role!r}); normalize makes SFT records only")
        if role in PREFERENCE_COLUMNS:
            raise UsageProblem(f"{where} is preference data (column {role!r}); normalize makes SFT records only")
        try:
            columns[slot_name(role)] = column
        except UsageProblem:
            raise UsageProblem(f"{where} maps a column role dataprep does not know: {role!r}") from None
    tags = {k: v for k, v in (entry.get("tags") or {}).items() if k in sharegpt.TAGS}
    unknown_tags = sorted(set(entry.get("tags") or {}) - set(tags))
    if unknown_tags:
        raise UsageProblem(f"{where} has tags dataprep does not know: {', '.join(unknown_tags)}")
    remote = next((f"{key} {entry[key]}" for key in REMOTE_KEYS if key in entry), None)
    return DatasetEntry(name, FORMATTINGS[formatting], columns, tags, _local_file(info_path, entry, where), remote)


def _load_registry(info_path: str) -> dict[str, Any]:
    try:
        text = Path(info_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(info_path, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(info_path, f"cannot read: {exc}") from None
    try:
        registry = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{info_path}:{exc.lineno}", f"malformed JSON at column {exc.colno}: {exc.msg}") from None
    if not isinstance(registry, dict):
        raise InputError(info_path, "expected a JSON object of dataset entries")
    return registry


def _local_file(info_path: str, entry: dict[str, Any], where: str) -> str | None:
    """``file_name`` relative to the registry's folder; a folder (or a local ``script_url`` folder) must hold
    exactly one data file, since loading scripts are never run.

    The path must stay inside the registry's folder once symlinks are resolved: a registry that came with a
    downloaded dataset must not make dataprep read ``../../etc/passwd`` (and copy its lines into a rejects file).
    """
    name = entry.get("file_name") or entry.get("script_url")
    if not name:
        return None
    folder = Path(info_path).parent
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()):
        key = "file_name" if "file_name" in entry else "script_url"
        raise UsageProblem(f"{where}: {key} {name!r} points outside the registry's folder {folder}",
                           hint="dataprep reads only files beside dataset_info.json; pass another file as INPUT")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(DATA_SUFFIXES))
        if len(files) != 1:
            raise UsageProblem(
                f"{where}: folder {path} holds {len(files)} data files; pass the one to read as INPUT",
                hint="loading scripts are not run",
            )
        return str(files[0])
    if "file_name" not in entry:
        return None
    return str(path)
