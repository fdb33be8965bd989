"""Checking every record of one or more files against a JSON Schema, with each error's file, line and pointer.

Validation is the gate before normalize: it finds the mixed types and missing fields that otherwise surface
deep inside a training run as an Arrow cast error. The report lists every error of every record (none is
dropped for being "less relevant"), sorted by JSON pointer inside a record so the output is byte-stable.
An unreadable file does not stop the others from being checked; it is reported and makes the run fail.

Evaluation is bounded. The schema is checked at load (``dataprep.schemas``: local references only, no
in-place cycles, no exponential ``anyOf`` nesting), and each record gets a wall-clock budget
(``record_timeout``): a backtracking ``pattern`` such as ``^(a|aa)+$`` on a hostile value stops there and the
record is reported as not checkable, instead of hanging the run. The budget is a SIGALRM timer, because the
regular-expression engine only yields to signals; it is armed only on the main thread (elsewhere records are
unbounded, as in plain jsonschema).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from referencing.exceptions import Unresolvable

from dataprep.errors import InputError, UsageProblem
from dataprep.io import detect_format, display_name, read_batches
from dataprep.schemas import load_schema, schema_registry

LINE_PER_RECORD = ("jsonl", "csv", "tsv")
# Records Python's json would read but that are not JSON data anyone can rely on: reported as invalid records
# (exit 1), while the rest of the file is still checked. Other reader faults make the file unreadable (exit 2).
RECORD_FAULTS = frozenset(("duplicate_key", "non_finite_number", "invalid_unicode", "too_deeply_nested"))
MAX_MESSAGE_CHARS = 300
RECORD_TIMEOUT = 2.0


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
    return _where(exc.location, source)[0]


def _where(location: str, source: str) -> tuple[int | None, int | None]:
    """(line, index) of a reader location: ``file:12`` or, for files without lines, ``file[3]``."""
    tail = location[len(source):] if location.startswith(source) else ""
    if tail[1:].isdigit() and tail[0] == ":":
        return int(tail[1:]), None
    if tail.startswith("[") and tail.endswith("]") and tail[1:-1].isdigit():
        return None, int(tail[1:-1])
    return None, None


def make_validator(schema: str) -> Any:
    """A validator for a shipped schema name or a schema file, of the draft the schema declares.

    It resolves ``$ref`` through :func:`dataprep.schemas.schema_registry`, which never retrieves anything.
    """
    from jsonschema import Draft202012Validator, validators

    document = load_schema(schema)
    return validators.validator_for(document, default=Draft202012Validator)(document, registry=schema_registry())


class _OutOfTime(BaseException):
    """Raised by the timer's signal handler; a BaseException so no ``except Exception`` in jsonschema eats it."""


class RecordTimer:
    """A per-record wall-clock budget: ``with timer: ... timer.run(fn)`` raises _OutOfTime past ``seconds``."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.armed = (seconds is not None and hasattr(signal, "setitimer")
                      and threading.current_thread() is threading.main_thread())
        self._previous: Any = None

    def __enter__(self) -> RecordTimer:
        if self.armed and signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0):
            self.armed = False  # the process already has a real-time alarm of its own: leave it alone
        if self.armed:
            self._previous = signal.signal(signal.SIGALRM, self._expire)
        return self

    def __exit__(self, *_: object) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)

    @staticmethod
    def _expire(signum: int, frame: FrameType | None) -> None:
        raise _OutOfTime

    def errors(self, validator: Any, record: Any) -> list[Any]:
        """All errors of ``record``, sorted; _OutOfTime when the budget runs out first."""
        if not self.armed:
            return sorted(validator.iter_errors(record), key=_sort_key)
        try:
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
            return sorted(validator.iter_errors(record), key=_sort_key)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)


def _record_problems(timer: RecordTimer, validator: Any, record: Any) -> list[tuple[str, str]]:
    """(pointer, message) for each error of one record; a record that cannot be checked is one problem."""
    try:
        try:
            errors = timer.errors(validator, record)
        except RecursionError:
            return [("/", "nested too deeply to check against this schema")]
        except Unresolvable as exc:  # load_schema resolved every $ref; this is a dynamic one it could not see
            raise UsageProblem(f"schema reference cannot be resolved: {exc}") from None
    except _OutOfTime:
        return [("/", f"not checked: the schema took longer than {timer.seconds:g} s on this record "
                      "(a backtracking pattern or nested anyOf/oneOf?); see --record-timeout")]
    return [(json_pointer(e.absolute_path), _short(e.message)) for e in errors]


def validate_files(
    paths: Iterable[str],
    schema: str,
    *,
    max_errors: int | None = None,
    input_format: str | None = None,
    record_timeout: float | None = RECORD_TIMEOUT,
) -> ValidationReport:
    """Check every record of every file against ``schema`` (a shipped name or a path).

    ``record_timeout`` bounds the seconds spent on one record (None: no bound); a record over it is reported
    as not checked and counts as invalid, so the run fails.

    A file with no records is an error ("no records"): a CI job fed an empty file by mistake should fail.
    An unreadable file (missing, malformed JSON, not UTF-8) is kept in ``report.unreadable``; the records
    read before the fault are still checked and counted.
    """
    validator = make_validator(schema)
    report = ValidationReport(schema=schema, max_errors=max_errors)
    with RecordTimer(record_timeout) as timer:
        for path in paths:
            _check_file(path, validator, timer, report, input_format)
    return report


def _check_file(path: str, validator: Any, timer: RecordTimer, report: ValidationReport,
                input_format: str | None) -> None:
    source = display_name(path)
    fmt = input_format or (detect_format(path) if path != "-" else None)
    result = FileResult(source, line_per_record=fmt in LINE_PER_RECORD)
    report.files.append(result)

    def record_fault(location: str, reason: str, detail: str, raw: str) -> None:
        if reason not in RECORD_FAULTS:
            raise InputError(location, detail)
        result.records += 1
        result.invalid_records += 1
        line, index = _where(location, source)
        report.add(result, Problem(source, line, index, "/", detail))

    try:
        for batch in read_batches(path, fmt=input_format, on_bad=record_fault):
            for i, record in enumerate(batch.records):
                problems = _record_problems(timer, validator, record)
                result.records += 1
                if not problems:
                    continue
                result.invalid_records += 1
                line = batch.lines[i] or None
                for pointer, message in problems:
                    report.add(result, Problem(batch.source, line, batch.indexes[i], pointer, message))
    except InputError as exc:
        result.unreadable = True
        report.unreadable.append(exc)
        message = exc.message
        report.problems.append(Problem(source, _location_line(exc, source), None, None, message))
        return
    if result.records == 0:
        report.add(result, Problem(source, None, None, None, "no records"))
