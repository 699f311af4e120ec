"""The error hierarchy. User-facing problems are `CurateError`s; the CLI turns them into messages."""

from __future__ import annotations

import errno
import re


class CurateError(Exception):
    """Base class of every error curate reports to a user (no traceback in the CLI)."""

    exit_code = 1


class ConfigError(CurateError):
    """The configuration is invalid. Carries every problem found, each with its location."""

    exit_code = 2

    def __init__(self, problems: list[str], file: str | None = None):
        self.problems = list(problems)
        self.file = file
        super().__init__(self.problems, file)  # args stay picklable across worker processes

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        n = len(self.problems)
        head = f"{where}{n} configuration problem{'s' if n != 1 else ''}"
        return head + ":\n" + "\n".join(f"  - {p}" for p in self.problems)


class RecordError(CurateError):
    """One record cannot be used: it is quarantined with this reason and the build goes on."""


class FatalError(CurateError):
    """The build cannot go on (unreadable input in --strict mode, a held lock, an infeasible mixture)."""


def os_error_code(exc: BaseException) -> int | None:
    """The operating system's error code behind `exc`: an OSError's `errno`, else, for polars' and
    pyarrow's errors from Rust or C++ (which leave it unset, or are no OSError: polars' ComputeError),
    the code in the message ("No space left on device (os error 28)"), else the one an OSError's type
    stands for."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno
    if found := re.search(r"\(os error (\d+)\)", str(exc)):
        return int(found.group(1))
    return {FileNotFoundError: errno.ENOENT, PermissionError: errno.EACCES}.get(type(exc))
