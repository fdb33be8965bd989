"""Source formats, one adapter module each, in both directions: ``read`` a source row into a canonical record,
``write`` a canonical record out as a row of that format.

Columns are addressed by canonical *slot* (prompt, query, response, prefix, history, messages, tools, id); each
format names its default source column per slot, and ``--map``/dataset_info ``columns`` rename them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from dataprep.errors import UsageProblem
from dataprep.formats import alpaca, canonical, fields, messages, sharegpt
from dataprep.records import CANONICAL_FIELDS, Record

SOURCE_FORMATS = ("alpaca", "sharegpt", "messages", "canonical")
ADAPTERS = {"alpaca": alpaca, "sharegpt": sharegpt, "messages": messages, "canonical": canonical}
SLOT_ALIASES = {"system": "prefix", "conversations": "messages"}
SLOTS = ("prefix", "prompt", "query", "response", "history", "id", "messages", "tools")

Reader = Callable[[Mapping[str, Any]], Record]
Writer = Callable[[Record], dict[str, Any]]
EncodedReader = Callable[[Mapping[str, Any]], tuple[Record, "str | None"]]  # the record, and its line or None


def slot_name(name: str) -> str:
    """``system`` and ``conversations`` are LLaMA-Factory's names for the prefix and messages slots."""
    slot = SLOT_ALIASES.get(name, name)
    if slot not in SLOTS:
        raise UsageProblem(f"cannot map onto {name!r}; canonical fields are {', '.join(SLOTS)} (or system, conversations)")
    return slot


def source_columns(fmt: str, mapping: Mapping[str, str]) -> dict[str, str]:
    """The format's default column per slot, overridden by ``mapping`` (slot -> source column)."""
    columns = dict(ADAPTERS[fmt].COLUMNS)
    for slot, column in mapping.items():
        if slot not in columns:
            raise UsageProblem(
                f"--map {slot}=... does not apply to {fmt} input; it maps {', '.join(sorted(columns))}"
            )
        columns[slot] = column
    return columns


def reader(fmt: str, mapping: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None) -> Reader:
    """A one-argument function reading rows of ``fmt``, with the column names and role tags resolved once."""
    if fmt not in ADAPTERS:
        raise UsageProblem(f"unknown format {fmt!r}; use one of {', '.join(SOURCE_FORMATS)}")
    columns = source_columns(fmt, mapping or {})
    used = frozenset(columns.values()) | frozenset(fields.PASSTHROUGH)
    if fmt == "canonical":
        used |= frozenset(canonical.FIXED)
    if fmt == "sharegpt":
        tags = dict(tags or {})
        return partial(sharegpt.read, columns=columns, used=used, tags=tags, roles=sharegpt.role_names(tags))
    return partial(ADAPTERS[fmt].read, columns=columns, used=used)


def encoded_reader(fmt: str, mapping: Mapping[str, str] | None = None) -> EncodedReader | None:
    """For a format whose adapter can give rows' JSON lines as it reads them (``encoded_reader``: alpaca), that
    reader, made like :func:`reader`; else None."""
    adapter = ADAPTERS.get(fmt)
    if adapter is None or not hasattr(adapter, "encoded_reader"):
        return None
    columns = source_columns(fmt, mapping or {})
    return adapter.encoded_reader(columns, frozenset(columns.values()) | frozenset(fields.PASSTHROUGH))


def writer(fmt: str) -> Writer:
    if fmt not in ADAPTERS:
        raise UsageProblem(f"unknown output format {fmt!r}; use one of {', '.join(SOURCE_FORMATS)}")
    return ADAPTERS[fmt].write


def detect_schema(record: Mapping[str, Any], mapping: Mapping[str, str] | None = None) -> str:
    """Tell the format from one row's keys; refuse (UsageProblem) when none or several fit.

    canonical needs every canonical field (what normalize writes); alpaca its prompt and response columns;
    a ``conversations`` column is ShareGPT and a ``messages`` column messages (a column named with
    ``--map messages=...`` is ShareGPT when its first turn has ``from``).
    """
    mapping = mapping or {}
    found = []
    if all(name in record for name in CANONICAL_FIELDS):
        found.append("canonical")
    prompt = mapping.get("prompt", alpaca.COLUMNS["prompt"])
    if prompt in record and mapping.get("response", alpaca.COLUMNS["response"]) in record:
        found.append("alpaca")
    if "messages" in mapping:
        turns = record.get(mapping["messages"])
        if isinstance(turns, list):
            first = turns[0] if turns and isinstance(turns[0], dict) else {}
            found.append("sharegpt" if "from" in first else "messages")
    else:
        found.extend(fmt for fmt in ("sharegpt", "messages") if isinstance(record.get(ADAPTERS[fmt].COLUMNS["messages"]), list))
    if len(found) == 1:
        return found[0]
    shown = ", ".join(sorted(record)[:12]) or "none"
    if not found:
        raise UsageProblem(
            f"cannot tell the input format from its keys ({shown})",
            hint="name it with --from alpaca|sharegpt|messages|canonical, or rename columns with --map",
        )
    raise UsageProblem(f"the input fits several formats ({', '.join(found)}) by its keys ({shown})",
                       hint=f"choose one with --from {'|'.join(found)}")
