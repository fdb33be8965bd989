"""Domain errors. The CLI turns them into one-line messages; a traceback only with --debug/DATAPREP_DEBUG."""

from __future__ import annotations

from typing import Any


class DataprepError(Exception):
    """A failure the user can act on. Exit status 1 (invalid data, a refused operation)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def format(self) -> str:
        text = str(self)
        return f"{text} ({self.hint})" if self.hint else text

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as message and attributes, whatever the subclass's ``__init__`` takes (a worker process sends
        its errors to the main process this way)."""
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type[DataprepError], args: tuple[Any, ...], state: dict[str, Any]) -> DataprepError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class InputError(DataprepError):
    """Unreadable or malformed input: a file that is missing, not UTF-8, or not valid JSON. Exit status 2."""

    exit_code = 2

    def __init__(self, location: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{location}: {message}", hint=hint)
        self.location = location
        self.message = message  # without the location: what a reject's detail says


class UsageProblem(DataprepError):
    """Options that cannot work together, found after click's own parsing. Exit status 2."""

    exit_code = 2


class MissingExtra(DataprepError):
    """An optional dependency group is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed",
            hint=f'install it with: pip install "dataprep[{extra}]"',
        )


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error: the path(s) and what the system said, never the Python type."""
    reason = exc.strerror or str(exc)
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    if len(paths) == 2:
        return f"{paths[0]} -> {paths[1]}: {reason}"
    return f"{paths[0]}: {reason}" if paths else f"I/O error: {reason}"
