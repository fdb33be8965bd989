"""Finding and loading the JSON Schemas that ship with dataprep, or one the user names by path.

The schemas live in the repository's top-level ``schemas/`` folder; a wheel carries them as
``dataprep/schemas``. Looking in the package first and the repository second makes both an installed wheel
and an editable checkout find the same files.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from dataprep.errors import InputError, UsageProblem

SCHEMA_NAMES = ("alpaca", "sharegpt", "messages", "canonical")
SUFFIX = ".schema.json"
REPO_SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def _shipped(name: str) -> Path | None:
    packaged = resources.files("dataprep") / "schemas" / f"{name}{SUFFIX}"
    if packaged.is_file():
        return Path(str(packaged))
    in_repo = REPO_SCHEMAS / f"{name}{SUFFIX}"
    return in_repo if in_repo.is_file() else None


def schema_path(name_or_path: str | Path) -> Path:
    """The file of a shipped schema (``alpaca``) or of a schema given as a path (``my.schema.json``).

    A bare word that is not a shipped name is a usage mistake, not a missing file, so the message lists the
    names; anything that looks like a path must exist.
    """
    text = str(name_or_path)
    if text in SCHEMA_NAMES:
        found = _shipped(text)
        if found is None:
            raise UsageProblem(f"schema {text!r} is not installed", hint=f"looked for {text}{SUFFIX} in {REPO_SCHEMAS}")
        return found
    path = Path(text)
    if path.is_file():
        return path
    if isinstance(name_or_path, Path) or "/" in text or text.endswith(".json"):
        raise InputError(text, "no such schema file")
    raise UsageProblem(f"unknown schema {text!r}; use one of {', '.join(SCHEMA_NAMES)} or a path to a .json file")


def load_schema(name_or_path: str | Path) -> dict[str, Any]:
    """The schema as a dict, checked against its metaschema so a broken schema fails before any data does.

    A schema without ``$schema`` is read as Draft 2020-12, the draft the shipped schemas use.
    """
    from jsonschema import Draft202012Validator, SchemaError, validators

    path = schema_path(name_or_path)
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(str(path), "schema is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}", f"schema is not valid JSON at column {exc.colno}: {exc.msg}") from None
    if not isinstance(schema, dict):
        raise UsageProblem(f"{path}: not a valid JSON Schema: expected an object, got {type(schema).__name__}")
    cls = validators.validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = "/" + "/".join(str(p) for p in exc.path) if exc.path else "/"
        raise UsageProblem(f"{path}: not a valid JSON Schema: {where}: {exc.message}") from None
    return schema
