"""A recipe: a whole preparation (inputs, mixture, stages, output) in one YAML file, loaded into a strict model.

The stage sections are not written out by hand: they are built from the stages' own option dataclasses
(``NormalizeOptions``, ``FilterOptions``, ``SplitOptions``, and ``TokenizeJob`` with ``CausalOptions`` and
``ClassifyOptions`` flattened into one ``tokenize`` section), field by field, with the dataclass's type and
default. A field added to a stage's options is a recipe key the day it lands, type-checked, its default shown by
``--dry-run``, and the dataclass's own ``__post_init__`` checks run on it. The few dataclass fields a recipe sets
elsewhere (an input's format and column map, the output folder) are listed in ``ELSEWHERE``; a test checks that
every field is one or the other.

Errors: every problem is found before anything runs and all are reported at once, one per line, each with the
file, the line and the dotted path of the key (``recipe.yaml:14: tokenize.max_length: ...``). The YAML is read
with PyYAML's safe loader (no tag can build an object); line numbers come from its node tree.

A stage runs when its section is present: ``filter:`` alone (or ``filter: {}``) runs it with its defaults, and the
override ``filter=false`` switches it off. ``key=value`` overrides any field (``output=out/x``,
``tokenize.max_length=4096``, ``inputs.0.rows=500``, ``inputs.alpaca.rows=500``); the value is read as YAML, so
numbers, ``null`` and ``[lists]`` work, and it goes through the same checks as the file. Relative paths are taken
from the working directory, as on the command line.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)

from dataprep.errors import DataprepError, UsageProblem
from dataprep.filter import FilterOptions
from dataprep.io import INPUT_FORMATS
from dataprep.normalize import FROM_FORMATS, NormalizeOptions
from dataprep.split import Size, SplitOptions, parse_size
from dataprep.tokenize.options import CausalOptions, ClassifyOptions, TokenizeJob

STAGES = ("validate", "normalize", "filter", "split", "tokenize")
OUTPUT_STAGES = ("pack", "stats")  # stages on the written output: pack the dataset folder, describe the result
RECORD_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
TASK_OPTIONS: dict[str, type] = {"causal": CausalOptions, "classification": ClassifyOptions}

# Dataclass fields a recipe sets somewhere other than the stage's own section, and where.
ELSEWHERE: dict[type, dict[str, str]] = {
    NormalizeOptions: {"source": "inputs[].format", "columns": "inputs[].map", "tags": "inputs[].tags"},
    TokenizeJob: {
        "inputs": "the rows the stages before it keep", "outdir": "output",
        "causal": "tokenize.<causal options>", "classify": "tokenize.<classification options>",
        "force": "dataprep run --force", "input_format": "inputs[].input_format", "rejects": "rejects",
        "on_error": "on_error",
    },
}


class RecipeError(UsageProblem):
    """A recipe that cannot run; the message holds one line per problem (exit status 2)."""

    def __init__(self, source: str, problems: list[str]) -> None:
        problems = sorted(problems, key=lambda text: _line_of(source, text))
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} {noun} in the recipe\n" + "\n".join(problems))
        self.problems = problems


def _line_of(source: str, problem: str) -> tuple[int, int]:
    """Sort key: problems in file order, then those of overrides."""
    head = problem[len(source) + 1:].split(":", 1)[0] if problem.startswith(source + ":") else ""
    return (0, int(head)) if head.isdigit() else (1, 0)


# -- stage sections, derived from the option dataclasses --------------------------------------------------------

def _check_size(value: float | int | str) -> float | int | str:
    try:
        parse_size(str(value), "SIZE")
    except UsageProblem as exc:
        raise ValueError(str(exc).replace("SIZE ", "")) from None
    return value


SizeValue = Annotated[float | int | str, AfterValidator(_check_size)]
# Types a recipe writes differently from the dataclass: a split size is the number (or text) the CLI takes.
FIELD_TYPES: dict[Any, Any] = {Size: SizeValue, Size | None: SizeValue | None}
# Strict types (YAML already gives numbers, booleans and text; ``true`` is not 1), but a YAML list may fill a tuple.
STRICT = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


def dataclass_fields(cls: type, skip: Sequence[str] = ()) -> dict[str, tuple[Any, Any]]:
    """``name -> (type, default)`` of a dataclass, as ``pydantic.create_model`` takes them."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, tuple[Any, Any]] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind = FIELD_TYPES.get(hints[f.name], hints[f.name])
        if typing.get_origin(kind) is tuple:
            kind = Annotated[kind, Field(strict=False)]
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=f.default_factory)
        else:
            default = ...
        fields[f.name] = (kind, default)
    return fields


def _build(cls: type, values: dict[str, Any]) -> Any:
    """The dataclass from section values: sizes parsed, the dataclass's own checks run."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        if hints[name] in (Size, Size | None) and value is not None:
            value = parse_size(str(value), f"--{name.replace('_', '-')}")
        kwargs[name] = value
    return cls(**kwargs)


def _in_recipe_words(exc: Exception, names: Sequence[str]) -> ValueError:
    """A dataclass's own check, said in recipe words: ``--val-size`` becomes ``val_size``."""
    def key(m: re.Match[str]) -> str:
        name = m.group(1).replace("-", "_")
        return name if name in names else m.group(0)

    return ValueError(re.sub(r"--([a-z][a-z-]*)", key, str(exc)))


class Section(BaseModel):
    """A stage section whose fields are its dataclass's; :meth:`options` builds that dataclass."""

    model_config = STRICT
    dataclass: ClassVar[type]

    def options(self, **elsewhere: Any) -> Any:
        return _build(self.dataclass, {**{n: getattr(self, n) for n in type(self).model_fields}, **elsewhere})

    @model_validator(mode="after")
    def _dataclass_checks(self) -> Section:
        try:
            self.options()
        except (DataprepError, ValueError) as exc:
            raise _in_recipe_words(exc, list(type(self).model_fields)) from None
        return self


def section(cls: type, skip: Sequence[str] = ()) -> type[Section]:
    model = create_model(f"{cls.__name__}Section", __base__=Section, **dataclass_fields(cls, skip))  # type: ignore[call-overload]
    model.dataclass = cls
    return model


NormalizeSection = section(NormalizeOptions, skip=tuple(ELSEWHERE[NormalizeOptions]))
FilterSection = section(FilterOptions)
SplitSection = section(SplitOptions)


def _tokenize_fields() -> tuple[dict[str, tuple[Any, Any]], dict[str, set[str]]]:
    """The job's own fields plus every task's options, flattened; shared names (max_length) must agree.

    A task's required field (classification's ``text``) becomes optional here and is required by the validator
    when that task is chosen.
    """
    fields = dataclass_fields(TokenizeJob, skip=tuple(ELSEWHERE[TokenizeJob]))
    owners: dict[str, set[str]] = {}
    for task, cls in TASK_OPTIONS.items():
        for name, (kind, default) in dataclass_fields(cls).items():
            if name in fields and name not in owners:
                raise TypeError(f"tokenize option {name!r} of {cls.__name__} clashes with TokenizeJob.{name}")
            entry = (kind | None, None) if default is ... else (kind, default)
            if name in owners and fields[name] != entry:
                raise TypeError(f"tokenize option {name!r} has different types or defaults across tasks")
            fields[name] = entry
            owners.setdefault(name, set()).add(task)
    return fields, owners


_TOKENIZE_FIELDS, TASK_FIELDS = _tokenize_fields()


class TokenizeBase(BaseModel):
    """``tokenize``: the tokenizer and template, and the options of the chosen ``task`` (flattened)."""

    model_config = STRICT

    def task_options(self) -> Any:
        cls = TASK_OPTIONS[self.task]  # type: ignore[attr-defined]
        return _build(cls, {f.name: getattr(self, f.name) for f in dataclasses.fields(cls)})

    def job(self, outdir: str, **elsewhere: Any) -> TokenizeJob:
        own = {n: getattr(self, n) for n in type(self).model_fields if n not in TASK_FIELDS}
        task = {"causal": self.task_options()} if self.task == "causal" else {"classify": self.task_options()}  # type: ignore[attr-defined]
        return TokenizeJob(inputs=[], outdir=outdir, **own, **task, **elsewhere)

    @model_validator(mode="after")
    def _task_checks(self) -> TokenizeBase:
        task = self.task  # type: ignore[attr-defined]
        if task not in TASK_OPTIONS:
            raise ValueError(f"task must be one of {', '.join(TASK_OPTIONS)}, got {task!r}")
        foreign = sorted(n for n in self.model_fields_set if n in TASK_FIELDS and task not in TASK_FIELDS[n])
        if foreign:
            owners = " or ".join(sorted(TASK_FIELDS[foreign[0]]))
            raise ValueError(f"{', '.join(foreign)} only appl{'ies' if len(foreign) == 1 else 'y'} with task {owners}")
        cls = TASK_OPTIONS[task]
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and getattr(self, f.name) is None]
        if missing:
            raise ValueError(f"task {task} needs {', '.join(missing)}")
        try:
            self.task_options()
        except (DataprepError, ValueError) as exc:
            raise _in_recipe_words(exc, list(type(self).model_fields)) from None
        return self


TokenizeSection = create_model("TokenizeSection", __base__=TokenizeBase, **_TOKENIZE_FIELDS)  # type: ignore[call-overload]


# -- inputs, mixture, the recipe ---------------------------------------------------------------------------------

class InputSpec(BaseModel):
    """One source: a file (``path``) or a LLaMA-Factory ``dataset_info`` entry, and its share of the mixture."""

    model_config = STRICT
    name: str | None = None
    path: str | None = None
    dataset_info: str | None = None
    dataset: str | None = None
    format: Literal[FROM_FORMATS] = "auto"  # type: ignore[valid-type]
    map: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    input_format: Literal[INPUT_FORMATS] | None = None  # type: ignore[valid-type]
    split: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    weight: float | None = Field(default=None, gt=0)
    rows: int | None = Field(default=None, ge=1)
    tokens: int | None = Field(default=None, ge=1)

    @property
    def target(self) -> tuple[str, float] | None:
        """``("weight"|"rows"|"tokens", value)``, or None: every row, once."""
        for kind in ("weight", "rows", "tokens"):
            value = getattr(self, kind)
            if value is not None:
                return kind, value
        return None


class MixSpec(BaseModel):
    """``seed`` orders each source's rows for sampling; ``rows`` is the total when inputs give weights."""

    model_config = STRICT
    seed: int = 42
    rows: int | None = Field(default=None, ge=1)


class ValidateSection(BaseModel):
    """``schema``: a shipped name or a path; by default each input's own format. ``max_errors``: lines shown."""

    model_config = STRICT
    schema_: str | None = Field(default=None, alias="schema")
    max_errors: int = Field(default=20, ge=1)


class PackSection(BaseModel):
    """``pack``: the tokenized dataset is packed (``dataprep pack``) into ``output``; ``max_length`` per row,
    ``emit_for`` the packed layout (``dataprep pack --emit-for``)."""

    model_config = STRICT
    max_length: int = Field(ge=1)
    emit_for: Literal["dataprep", "trl"] = "dataprep"


class StatsSection(BaseModel):
    """``stats``: the output described (``dataprep stats``): a page, plots, a JSON report; none named: the text
    report on stdout."""

    model_config = STRICT
    html: str | None = None
    png: str | None = None
    json_: str | None = Field(default=None, alias="json")
    leakage: bool = True


class Recipe(BaseModel):
    model_config = STRICT
    inputs: list[InputSpec] = Field(min_length=1)
    mix: MixSpec = Field(default_factory=MixSpec)
    validate_: ValidateSection | None = Field(default=None, alias="validate")
    normalize: NormalizeSection | None = None  # type: ignore[valid-type]
    filter: FilterSection | None = None  # type: ignore[valid-type]
    split: SplitSection | None = None  # type: ignore[valid-type]
    tokenize: TokenizeSection | None = None  # type: ignore[valid-type]
    pack: PackSection | None = None
    stats: StatsSection | None = None
    output: str
    rejects: str | None = None
    on_error: Literal["fail", "reject"] = "fail"

    @property
    def stages(self) -> list[str]:
        return [s for s in STAGES if getattr(self, "validate_" if s == "validate" else s) is not None]


# -- loading -----------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class LoadedRecipe:
    """A recipe that passed every check, with what was resolved on the way (each input's name and entry)."""

    recipe: Recipe
    source: str
    names: list[str]
    entries: list[Any]  # dataprep.formats.dataset_info.DatasetEntry or None, per input

    def resolved(self) -> dict[str, Any]:
        """The recipe as it will run, every default filled in (``--dry-run``): stages that do not run, an input's
        unset alternatives and the options of the other tokenize task are left out."""
        data = self.recipe.model_dump(mode="json", by_alias=True)
        data = {k: v for k, v in data.items() if v is not None or k not in (*STAGES, *OUTPUT_STAGES)}
        for spec, name in zip(data["inputs"], self.names, strict=True):
            spec["name"] = name
            for k in [k for k, v in spec.items() if v is None]:
                del spec[k]
        tokenize = data.get("tokenize")
        if tokenize is not None:
            for k in [k for k in tokenize if k in TASK_FIELDS and tokenize["task"] not in TASK_FIELDS[k]]:
                del tokenize[k]
        return data


def load_recipe(path: str, overrides: Sequence[str] = ()) -> LoadedRecipe:
    """Read, override, check: a :class:`LoadedRecipe`, or :class:`RecipeError` listing every problem."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageProblem(f"{path}: no such recipe file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageProblem(f"{path}: cannot read the recipe: {exc}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(path, [f"{where}: not valid YAML: {problem}"]) from None
    if not isinstance(data, dict):
        raise RecipeError(path, [f"{path}:1: a recipe is a mapping (inputs:, output:, stages...)"])
    lines = _Lines(path, root)
    problems: list[str] = []
    for item in overrides:
        try:
            lines.overridden.add(_apply_override(data, item))
        except UsageProblem as exc:
            problems.append(f"override {item!r}: {exc}")
    _stage_switches(data)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        problems += [_describe(error, lines) for error in _merge_unions(exc.errors())]
        raise RecipeError(path, problems) from None
    if problems:
        raise RecipeError(path, problems)
    loaded = LoadedRecipe(recipe, path, [], [])
    problems += _semantics(loaded, lines)
    if problems:
        raise RecipeError(path, problems)
    return loaded


def _stage_switches(data: dict[str, Any]) -> None:
    """``filter:`` with nothing after it means run with defaults; ``filter: false`` means do not run."""
    for name in (*STAGES, *OUTPUT_STAGES):
        if name in data and data[name] is None:
            data[name] = {}
        elif data.get(name) is False:
            del data[name]


class _Lines:
    """Line numbers of keys in the recipe file, from PyYAML's node tree."""

    def __init__(self, path: str, root: Any) -> None:
        self.path = path
        self.root = root
        self.overridden: set[tuple[str, ...]] = set()

    def at(self, loc: Sequence[Any]) -> str:
        key = tuple(str(p) for p in loc)
        if any(key[:len(o)] == o for o in self.overridden):
            return f"{self.path} (override)"
        node, line = self.root, 1
        for part in loc:
            if node is None:
                break
            if node.start_mark is not None:
                line = node.start_mark.line + 1
            node, key_line = _child(node, part)
            if key_line is not None:
                line = key_line
        if node is not None and getattr(node, "start_mark", None) is not None and not _is_container(node):
            line = node.start_mark.line + 1
        return f"{self.path}:{line}"


def _is_container(node: Any) -> bool:
    import yaml

    return isinstance(node, (yaml.MappingNode, yaml.SequenceNode))


def _child(node: Any, part: Any) -> tuple[Any, int | None]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                return value, key.start_mark.line + 1
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item = node.value[part]
        return item, item.start_mark.line + 1
    return None, None


def dotted(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc) or "(top)"


TYPE_TAGS = {"float": "a number", "int": "an integer", "str": "text", "bool": "true or false", "none": "null"}


def _merge_unions(errors: list[Any]) -> list[Any]:
    """One error per key: pydantic reports a value that fits no member of a union once per member (loc ends in
    ``float``, ``int``, ...); say it once, naming what would fit."""
    merged: list[Any] = []
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for error in errors:
        loc = tuple(error["loc"])
        tag = loc[-1] if loc else None
        if not (isinstance(tag, str) and (tag in TYPE_TAGS or "[" in tag)):
            merged.append(error)
            continue
        key = loc[:-1]
        if key not in seen:
            seen[key] = {**error, "loc": key, "type": "union", "kinds": []}
            merged.append(seen[key])
        seen[key]["kinds"].append(TYPE_TAGS.get(tag, tag))
    for error in seen.values():
        error["msg"] = "expected " + " or ".join(dict.fromkeys(error["kinds"]))
    return merged


def _describe(error: dict[str, Any], lines: _Lines) -> str:
    loc = [p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    loc = [p.replace("[", "").replace("]", "") if isinstance(p, str) else p for p in loc]
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        if len(loc) == 1:
            stages = (*STAGES, *OUTPUT_STAGES)
            message = f"unknown key (stages: {', '.join(stages)}; also {', '.join(k for k in known if k not in stages)})"
        else:
            message = "unknown key" + (f"; did you mean {close[0]}?" if close else f" (known: {', '.join(known)})")
    elif kind == "missing":
        message = "required"
    elif kind == "value_error":
        message = message.removeprefix("Value error, ")
    else:
        given = error.get("input")
        if not isinstance(given, (dict, list)):
            message += f" (got {given!r})"
    return f"{lines.at(loc)}: {dotted(loc)}: {message}"


def _known_keys(loc: Sequence[Any]) -> list[str]:
    model: Any = Recipe
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return []
        model = _model_of(field.annotation)
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _model_of(annotation: Any) -> Any:
    for arg in (annotation, *typing.get_args(annotation)):
        for inner in (arg, *typing.get_args(arg)):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


def _apply_override(data: dict[str, Any], item: str) -> tuple[str, ...]:
    """Set ``a.b.c=value`` in the raw recipe; returns the path it set. ``inputs.NAME`` finds an input by name."""
    import yaml

    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UsageProblem("expected KEY=VALUE, e.g. tokenize.max_length=4096")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    parts: list[str] = [p for p in re.split(r"\.|\[(\d+)\]", key.strip()) if p]
    node: Any = data
    path: list[str] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            index = _list_index(node, part)
            path.append(str(index))
            if last:
                node[index] = value
            else:
                node = node[index]
            continue
        if not isinstance(node, dict):
            raise UsageProblem(f"{'.'.join(path)} is not a mapping")
        path.append(part)
        if last:
            node[part] = value
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
    return tuple(path)


def _list_index(items: list[Any], part: str) -> int:
    if part.isdigit():
        index = int(part)
        if index >= len(items):
            raise UsageProblem(f"there are only {len(items)} inputs; indexes start at 0")
        return index
    for index, item in enumerate(items):
        if isinstance(item, dict) and _default_name(item) == part:
            return index
    raise UsageProblem(f"no input named {part!r}")


def _default_name(item: dict[str, Any]) -> str | None:
    if item.get("name"):
        return str(item["name"])
    if item.get("dataset"):
        return str(item["dataset"])
    if item.get("path"):
        name = Path(str(item["path"])).name
        for suffix in (".gz", ".jsonl", ".json", ".csv", ".tsv", ".parquet"):
            name = name.removesuffix(suffix)
        return name
    return None


def _semantics(loaded: LoadedRecipe, lines: _Lines) -> list[str]:
    """What no single field can say: sources exist and are named once, the mixture is one kind, stages agree."""
    from dataprep.formats.dataset_info import load_entry
    from dataprep.schemas import SCHEMA_NAMES

    recipe = loaded.recipe
    problems: list[str] = []

    def problem(loc: Sequence[Any], message: str) -> None:
        problems.append(f"{lines.at(loc)}: {dotted(loc)}: {message}")

    seen: dict[str, int] = {}
    for i, spec in enumerate(recipe.inputs):
        entry = None
        if spec.dataset_info or spec.dataset:
            if not (spec.dataset_info and spec.dataset):
                problem(("inputs", i), "dataset_info and dataset go together")
            else:
                try:
                    entry = load_entry(spec.dataset_info, spec.dataset)
                except DataprepError as exc:
                    problem(("inputs", i, "dataset"), exc.format())
                else:
                    if spec.format not in ("auto", entry.fmt):
                        problem(("inputs", i, "format"), f"contradicts dataset {entry.name!r}, which is {entry.fmt}")
                    if entry.path is None and spec.path is None:
                        where = f" ({entry.remote})" if entry.remote else ""
                        problem(("inputs", i, "dataset"), f"dataset {entry.name!r} has no local file{where}; "
                                "download it and give its path")
        elif spec.path is None:
            problem(("inputs", i), "give a path, or dataset_info and dataset")
        path = spec.path or (entry.path if entry else None)
        if path is not None and "://" not in path and not Path(path).exists():  # URIs: --engine ray reads them
            problem(("inputs", i, "path" if spec.path else "dataset"), f"no such file: {path}")
        for slot in spec.map:
            try:
                from dataprep.formats import slot_name

                slot_name(slot)
            except UsageProblem as exc:
                problem(("inputs", i, "map", slot), str(exc))
        name = spec.name or _default_name(spec.model_dump(by_alias=True)) or f"input{i}"
        if name in seen:
            problem(("inputs", i, "name"), f"{name!r} already names inputs.{seen[name]}; give each input a name")
        seen.setdefault(name, i)
        loaded.names.append(name)
        loaded.entries.append(entry)
        kinds = [k for k in ("weight", "rows", "tokens") if getattr(spec, k) is not None]
        if len(kinds) > 1:
            problem(("inputs", i, kinds[1]), f"give one of weight, rows, tokens (this input has {', '.join(kinds)})")
        if spec.tokens is not None and recipe.tokenize is None:
            problem(("inputs", i, "tokens"), "a token budget needs the tokenize stage")
        if spec.split is not None and recipe.split is not None:
            problem(("inputs", i, "split"), "an input's split and the split stage exclude each other")
        if recipe.validate_ is not None:
            schema = spec.schema_ or recipe.validate_.schema_ or (entry.fmt if entry else spec.format)
            if schema == "auto" or (schema not in SCHEMA_NAMES and not Path(schema).is_file()):
                problem(("inputs", i), "validate needs a schema: set validate.schema, the input's schema, or its "
                        "format")
    weighted = [i for i, s in enumerate(recipe.inputs) if s.weight is not None]
    if weighted and len(weighted) != len(recipe.inputs):
        i = next(i for i, s in enumerate(recipe.inputs) if s.weight is None)
        problem(("inputs", i), "weights are shares: give every input a weight, or none")
    if recipe.mix.rows is not None and not weighted:
        problem(("mix", "rows"), "a total number of rows goes with weights on the inputs")
    normalize = recipe.normalize
    if recipe.tokenize is not None:
        if normalize is not None and normalize.to != "canonical":
            problem(("normalize", "to"), "tokenize reads canonical records; export formats are for record output")
        if recipe.output.endswith(RECORD_SUFFIXES):
            problem(("output",), "with tokenize the output is a dataset folder, not a file")
    else:
        if not recipe.output.endswith(RECORD_SUFFIXES):
            problem(("output",), f"without tokenize the output is a records file ({', '.join(RECORD_SUFFIXES)})")
        if not any(getattr(recipe, s) is not None for s in ("normalize", "filter", "split")):
            problem(("output",), "nothing to write: add a stage (normalize, filter, split or tokenize)")
    if recipe.pack is not None and (recipe.tokenize is None or recipe.tokenize.task != "causal"):  # type: ignore[attr-defined]
        problem(("pack",), "packs the rows of a causal tokenize stage: add tokenize (task causal)")
    if recipe.pack is not None and recipe.tokenize is not None and recipe.tokenize.emit_for != "dataprep":  # type: ignore[attr-defined]
        problem(("tokenize", "emit_for"), "pack reads the dataprep layout: set pack.emit_for (dataprep or trl) "
                "instead, or drop pack and let the trainer pack")
    return problems
