"""Errors that reach the user, and the exit codes mauto returns."""
from __future__ import annotations

import enum
import re
from pathlib import Path


class ExitCode(enum.IntEnum):
    OK = 0
    FINDINGS = 1  # lint errors, failed tests
    USAGE = 2  # bad options, missing files, no project
    INTERNAL = 3  # a bug in mauto: traceback written to the log file
    INTERRUPTED = 130


class MautoError(Exception):
    """An error the user can fix, at a place in one of their files."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None,
                 col: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.col = col

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = self.path
            if self.line:
                where += f":{self.line}"
                if self.col:
                    where += f":{self.col}"
            where += ": "
        return where + self.message


class ProjectNotFound(MautoError):
    """No mauto.yaml in the current directory or any parent."""


class YamlError(MautoError):
    """A file that is not the YAML mauto accepts."""


class UsageError(MautoError):
    """A bad command-line argument."""


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_CONTROL_BUT_TAB = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def printable(text: str, keep_tab: bool = False) -> str:
    """`text` with its control characters (CR, LF, ESC, NUL ... the Unicode line separators, and lone
    surrogates, which no output can encode) written as escapes: a value from a contact's data can never start
    a new line in a log or move a terminal's cursor. `keep_tab` leaves tabs as they are."""
    return (_CONTROL_BUT_TAB if keep_tab else _CONTROL).sub(lambda match: repr(match.group())[1:-1], text)
