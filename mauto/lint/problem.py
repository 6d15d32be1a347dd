"""A lint finding."""
from __future__ import annotations

from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True, order=True)
class Problem:
    """One finding: where, which rule, how bad, and what to do about it. Lines and columns start at 1."""

    path: str
    line: int
    col: int
    rule: str = ""
    message: str = ""
    severity: str = ERROR

    def as_dict(self) -> dict:
        return {"path": self.path, "line": self.line, "column": self.col, "rule": self.rule,
                "severity": self.severity, "message": self.message}
