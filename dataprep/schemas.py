"""Finding and loading the JSON Schemas that ship with dataprep, or one the user names by path.

The schemas live in the repository's top-level ``schemas/`` folder; a wheel carries them as
``dataprep/schemas``. Looking in the package first and the repository second makes both an installed wheel
and an editable checkout find the same files.

A schema never fetches anything. ``$ref`` resolves inside the schema document, the shipped schemas
(``urn:dataprep:schema:NAME``) and the JSON Schema metaschemas that come with jsonschema, through a
``referencing`` registry whose retrieval refuses every other URI: a remote or ``file:`` reference is a usage
error when the schema is loaded, before any record is checked (jsonschema would otherwise fetch it once per
record, with no timeout). Loading also refuses schemas whose evaluation cannot end or explodes: a ``$ref``
cycle that never goes into the data (JSON Schema leaves such loops undefined), and in-place applicators
(``anyOf``/``oneOf``/``allOf``/``not``/``if`` through ``$ref``) that expand to more than
:data:`MAX_EXPANSION` subschemas for one value — the 40-level ``anyOf`` bomb expands to 2**41.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

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
    except RecursionError:
        raise UsageProblem(f"{path}: schema is nested too deeply to load") from None
    if not isinstance(schema, dict):
        raise UsageProblem(f"{path}: not a valid JSON Schema: expected an object, got {type(schema).__name__}")
    cls = validators.validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
        check_references(schema, str(path))
    except SchemaError as exc:
        where = "/" + "/".join(str(p) for p in exc.path) if exc.path else "/"
        raise UsageProblem(f"{path}: not a valid JSON Schema: {where}: {exc.message}") from None
    except RecursionError:
        raise UsageProblem(f"{path}: schema is nested too deeply to check") from None
    return schema


# --- local references only, bounded evaluation --------------------------------------------------------------------

MAX_EXPANSION = 100_000
REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
# Keywords whose subschemas apply to the same value (not to a member or an item): chains of these through $ref
# are what can loop forever or multiply.
IN_PLACE_ONE = ("not", "if", "then", "else")
IN_PLACE_LIST = ("allOf", "anyOf", "oneOf")
IN_PLACE_MAP = ("dependentSchemas", "dependencies")


def _shipped_documents() -> list[dict[str, Any]]:
    documents = []
    for name in SCHEMA_NAMES:
        found = _shipped(name)
        if found is not None:
            document = json.loads(found.read_text(encoding="utf-8"))
            if isinstance(document, dict) and isinstance(document.get("$id"), str):
                documents.append(document)
    return documents


def schema_registry(shipped: list[dict[str, Any]] | None = None) -> Any:
    """A ``referencing.Registry`` of the shipped schemas and the metaschemas that retrieves nothing else.

    A ``Registry`` built without ``retrieve`` refuses every unknown URI (NoSuchResource); jsonschema's own
    default registry is the one that falls back to ``urlopen``. Pass this one to the validator
    (``cls(document, registry=...)``); jsonschema adds ``document`` itself as the root resource.
    """
    from jsonschema_specifications import REGISTRY as METASCHEMAS
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    documents = _shipped_documents() if shipped is None else shipped
    resources = [(d["$id"], Resource.from_contents(d, default_specification=DRAFT202012)) for d in documents]
    return METASCHEMAS.combine(Registry().with_resources(resources))


def _pointers(document: Any, prefix: str = "") -> dict[int, str]:
    """JSON pointer of every object in ``document``, by identity, to name a subschema in a message."""
    found: dict[int, str] = {}
    stack = [(document, "")]
    while stack:
        value, pointer = stack.pop()
        if isinstance(value, dict):
            found.setdefault(id(value), prefix + (pointer or "/"))
            stack.extend((v, f"{pointer}/{str(k).replace('~', '~0').replace('/', '~1')}") for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{pointer}/{i}") for i, v in enumerate(value))
    return found


def _refused(ref: str, target: str) -> str:
    scheme = urlsplit(target).scheme
    if scheme in ("http", "https"):
        return f"{ref!r} is a remote reference; dataprep never fetches schemas (copy it under $defs)"
    if scheme == "file":
        return f"{ref!r} is a file reference; dataprep follows none (copy the referenced schema under $defs)"
    return (f"{ref!r} does not resolve inside this schema or a shipped one "
            f"(urn:dataprep:schema:{{{','.join(SCHEMA_NAMES)}}}); nothing else is looked up")


class _ReferenceCheck:
    """Resolve every reference of a schema statically and bound the work one value can cause."""

    def __init__(self, document: dict[str, Any], where: str) -> None:
        from jsonschema import Draft202012Validator, validators
        from referencing.jsonschema import DRAFT202012, specification_with

        meta = validators.validator_for(document, default=Draft202012Validator).META_SCHEMA
        self.spec = specification_with(meta.get("$id") or meta.get("id"), default=DRAFT202012)
        self.where = where
        self.labels = _pointers(document)
        self.shipped = _shipped_documents()
        for shipped in self.shipped:
            self.labels.update(_pointers(shipped, prefix=shipped["$id"] + "#"))
        self.in_place: dict[int, list[dict[str, Any]]] = {}
        self.nodes: dict[int, dict[str, Any]] = {}

    def label(self, node: dict[str, Any]) -> str:
        return self.labels.get(id(node), "(a metaschema)")

    def walk(self, document: dict[str, Any]) -> None:
        root = self.spec.create_resource(document)
        base = root.id() or ""
        registry = schema_registry(self.shipped).with_resource(base, root)
        self._visit(document, registry.resolver(base_uri=base), base, self.spec)

    def _visit(self, node: Any, resolver: Any, base: str, spec: Any, entered: bool = False) -> None:
        """``entered``: ``resolver`` already has ``node``'s own ``$id`` as its base (a resolved ``$ref`` target)."""
        from referencing.exceptions import Unresolvable
        from referencing.jsonschema import UnknownDialect, specification_with

        if not isinstance(node, dict) or id(node) in self.nodes:
            return
        self.nodes[id(node)] = node
        if "$schema" in node:  # a subschema may declare its own draft (2019-09 and later)
            try:
                spec = specification_with(str(node["$schema"]))
            except UnknownDialect:
                raise UsageProblem(f"{self.where}: {self.label(node)}: unknown $schema {node['$schema']!r}") from None
        resource = spec.create_resource(node)
        if resource.id() is not None:
            base = urljoin(base, resource.id())
            if not entered:
                resolver = resolver.in_subresource(resource)
        children: list[dict[str, Any]] = []
        for keyword in REF_KEYWORDS:
            ref = node.get(keyword)
            if not isinstance(ref, str):
                continue
            try:
                resolved = resolver.lookup(ref)
            except Unresolvable:
                raise UsageProblem(f"{self.where}: {self.label(node)}/{keyword}: {_refused(ref, urljoin(base, ref))}") from None
            if isinstance(resolved.contents, dict):
                children.append(resolved.contents)
                self._visit(resolved.contents, resolved.resolver, urljoin(base, ref).partition("#")[0], spec, True)
        children += [node[k] for k in IN_PLACE_ONE if isinstance(node.get(k), dict)]
        children += [s for k in IN_PLACE_LIST if isinstance(node.get(k), list) for s in node[k] if isinstance(s, dict)]
        children += [s for k in IN_PLACE_MAP if isinstance(node.get(k), dict) for s in node[k].values()
                     if isinstance(s, dict)]
        self.in_place[id(node)] = children
        for sub in resource.subresources():
            self._visit(sub.contents, resolver, base, spec)

    def bound(self) -> None:
        """Refuse in-place cycles and explosive expansion; ``cost`` = subschemas one value can be checked by."""
        cost: dict[int, int] = {}
        path: list[dict[str, Any]] = []  # the in-place chain being expanded, to name a loop
        on_path: set[int] = set()

        def expand(node: dict[str, Any]) -> int:
            key = id(node)
            if key in cost:
                return cost[key]
            if key in on_path:
                loop = path[[id(n) for n in path].index(key):] + [node]
                raise UsageProblem(
                    f"{self.where}: {' -> '.join(self.label(n) for n in loop)}: the schema refers back to itself "
                    "without going into the data, so checking a record would never end")
            path.append(node)
            on_path.add(key)
            total = 1 + sum(expand(child) for child in self.in_place.get(key, ()))
            on_path.discard(key)
            path.pop()
            if total > MAX_EXPANSION:
                raise UsageProblem(
                    f"{self.where}: {self.label(node)}: checking one value can take more than {MAX_EXPANSION:,} "
                    "subschema evaluations (anyOf/oneOf/allOf nested through $ref); simplify the schema")
            cost[key] = total
            return total

        for node in self.nodes.values():
            expand(node)


def check_references(document: dict[str, Any], where: str) -> None:
    """Raise UsageProblem unless every reference in ``document`` resolves locally and evaluation is bounded."""
    check = _ReferenceCheck(document, where)
    check.walk(document)
    check.bound()
