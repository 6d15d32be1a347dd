"""A finding at a place in a file: the one type that lint, the schemas and `mauto test` report with.

A lint rule's finding, a schema error put in words and a mistake in a scenario
file are the same thing: a message at `path:line:col`, from a rule (or check),
at a level. The schema's findings also carry the JSON path of the value they are
about, for the rules that look further at it (`duration` reads the value there).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mauto.workflow.loader import JsonPath, Pos

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True, order=True)
class Problem:
    """One finding: where, which rule, how bad, and what to do about it. Lines and columns start at 1.

    `json_path` is where in the document's data the finding is, when it is about a value; it takes no part
    in comparing or ordering problems (two findings at the same place with the same words are one).
    """

    path: str
    line: int
    col: int
    rule: str = ""
    message: str = ""
    severity: str = ERROR
    json_path: JsonPath = field(default=(), compare=False)

    @property
    def pos(self) -> Pos:
        return Pos(self.line, self.col)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "column": self.col, "rule": self.rule,
                "severity": self.severity, "message": self.message}
