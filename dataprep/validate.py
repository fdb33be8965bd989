"""Checking every record of one or more files against a JSON Schema, with each error's file, line and pointer.

Validation is the gate before normalize: it finds the mixed types and missing fields that otherwise surface
deep inside a training run as an Arrow cast error. The report lists every error of every record (none is
dropped for being "less relevant"), sorted by JSON pointer inside a record so the output is byte-stable.
An unreadable file does not stop the others from being checked; it is reported and makes the run fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dataprep.errors import InputError
from dataprep.io import detect_format, display_name, read_batches
from dataprep.schemas import load_schema

LINE_PER_RECORD = ("jsonl", "csv", "tsv")
MAX_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class Problem:
    """One error. ``pointer`` is None for a problem with the whole file (empty, unreadable)."""

    file: str
    line: int | None
    index: int | None
    pointer: str | None
    message: str

    def text(self, show_index: bool = True) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.index is not None and (show_index or not self.line):
            where += f" [record {self.index}]"
        if self.pointer is None:
            return f"{where}: {self.message}"
        return f"{where}: {self.pointer}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "index": self.index, "pointer": self.pointer,
                "message": self.message}


@dataclass
class FileResult:
    file: str
    line_per_record: bool
    records: int = 0
    invalid_records: int = 0
    errors: int = 0
    unreadable: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "records": self.records, "invalid_records": self.invalid_records,
                "errors": self.errors, "readable": not self.unreadable}


@dataclass
class ValidationReport:
    """The outcome of a run. ``problems`` holds at most ``max_errors`` data errors (plus every unreadable
    file); the counts are always complete, so a truncated report still says how bad things are."""

    schema: str
    files: list[FileResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    error_count: int = 0
    max_errors: int | None = None
    unreadable: list[InputError] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(f.records for f in self.files)

    @property
    def invalid_records(self) -> int:
        return sum(f.invalid_records for f in self.files)

    @property
    def truncated(self) -> bool:
        return self.max_errors is not None and self.error_count > self.max_errors

    @property
    def valid(self) -> bool:
        return self.error_count == 0 and not self.unreadable

    def add(self, result: FileResult, problem: Problem) -> None:
        result.errors += 1
        self.error_count += 1
        if self.max_errors is None or self.error_count <= self.max_errors:
            self.problems.append(problem)

    def text_lines(self) -> Iterator[str]:
        line_per_record = {f.file: f.line_per_record for f in self.files}
        for problem in self.problems:
            yield problem.text(show_index=not line_per_record.get(problem.file, False))
        if self.truncated:
            hidden = self.error_count - len(self.problems) + len(self.unreadable)
            yield f"... {hidden:,} more {_plural(hidden, 'error')} not shown (--max-errors {self.max_errors})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "schema": self.schema,
            "files": [f.as_dict() for f in self.files],
            "records": self.records,
            "invalid_records": self.invalid_records,
            "error_count": self.error_count,
            "truncated": self.truncated,
            "errors": [p.as_dict() for p in self.problems],
        }

    def summary(self) -> str:
        n_files, n_records, n_invalid = len(self.files), self.records, self.invalid_records
        text = (f"validate: {n_files:,} {_plural(n_files, 'file')}, {n_records:,} {_plural(n_records, 'record')}, "
                f"{n_invalid:,} invalid {_plural(n_invalid, 'record')}, "
                f"{self.error_count:,} {_plural(self.error_count, 'error')}")
        if self.unreadable:
            text += f", {len(self.unreadable):,} unreadable {_plural(len(self.unreadable), 'file')}"
        if self.truncated:
            text += f" (first {self.max_errors:,} shown)"
        return text


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def json_pointer(path: Iterable[Any]) -> str:
    """RFC 6901 pointer of an error's location; ``/`` (not the empty string) names the record itself."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "/" + "/".join(parts)


def _sort_key(error: Any) -> tuple[Any, ...]:
    segments = tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in error.absolute_path)
    return segments, error.message


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 1] + "…"


def _location_line(exc: InputError, source: str) -> int | None:
    _, _, tail = exc.location.rpartition(":")
    return int(tail) if exc.location.startswith(source) and tail.isdigit() else None


def make_validator(schema: str) -> Any:
    """A validator for a shipped schema name or a schema file, of the draft the schema declares."""
    from jsonschema import Draft202012Validator, validators

    document = load_schema(schema)
    return validators.validator_for(document, default=Draft202012Validator)(document)


def validate_files(
    paths: Iterable[str],
    schema: str,
    *,
    max_errors: int | None = None,
    input_format: str | None = None,
) -> ValidationReport:
    """Check every record of every file against ``schema`` (a shipped name or a path).

    A file with no records is an error ("no records"): a CI job fed an empty file by mistake should fail.
    An unreadable file (missing, malformed JSON, not UTF-8) is kept in ``report.unreadable``; the records
    read before the fault are still checked and counted.
    """
    validator = make_validator(schema)
    report = ValidationReport(schema=schema, max_errors=max_errors)
    for path in paths:
        source = display_name(path)
        fmt = input_format or (detect_format(path) if path != "-" else None)
        result = FileResult(source, line_per_record=fmt in LINE_PER_RECORD)
        report.files.append(result)
        try:
            for batch in read_batches(path, fmt=input_format):
                for i, record in enumerate(batch.records):
                    errors = sorted(validator.iter_errors(record), key=_sort_key)
                    result.records += 1
                    if not errors:
                        continue
                    result.invalid_records += 1
                    line = batch.lines[i] or None
                    for error in errors:
                        pointer = json_pointer(error.absolute_path)
                        report.add(result, Problem(batch.source, line, batch.indexes[i], pointer, _short(error.message)))
        except InputError as exc:
            result.unreadable = True
            report.unreadable.append(exc)
            message = str(exc)[len(exc.location) + 2:]
            report.problems.append(Problem(source, _location_line(exc, source), None, None, message))
            continue
        if result.records == 0:
            report.add(result, Problem(source, None, None, None, "no records"))
    return report
