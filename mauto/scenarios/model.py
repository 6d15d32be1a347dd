"""What a scenario is once read, and what running it gives: expectations, their results, the run."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mauto.problem import Problem
from mauto.simulate import Samples
from mauto.workflow.loader import Document, Pos
from mauto.workflow.model import Workflow

CHANNELS = ("email", "sms")


@dataclass
class Expectation:
    """One item of `expect:`, parsed: its kind, the contact, the value, the modifiers, its place in the file."""

    kind: str
    contact: str
    value: Any
    pos: Pos
    options: dict[str, Any] = field(default_factory=dict)  # the modifiers as written: at, channel, workflow...
    at: datetime | None = None
    tolerance: timedelta = timedelta(0)
    text: str = ""  # the expectation in words: "c01 gets cart/reminder-1 at +1h (Tue 24 Nov 10:00 CET)"


@dataclass
class ExpectationResult:
    expectation: Expectation
    passed: bool
    message: str = ""  # what happened instead, in words
    diff: list[str] = field(default_factory=list)  # "- expected", "+ actual", "  context" lines

    def as_dict(self) -> dict[str, Any]:
        expectation = self.expectation
        return {"line": expectation.pos.line, "column": expectation.pos.col, "kind": expectation.kind,
                "contact": expectation.contact, "expectation": expectation.text, "passed": self.passed,
                "message": self.message, "diff": self.diff}


@dataclass
class ScenarioResult:
    path: str
    name: str
    results: list[ExpectationResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # the file could not run

    @property
    def passed(self) -> int:
        return sum(1 for result in self.results if result.passed)

    @property
    def failed(self) -> int:
        return sum(1 for result in self.results if not result.passed)

    @property
    def status(self) -> str:
        return "error" if self.problems else "failed" if self.failed else "passed"

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name, "status": self.status,
                "expectations": [result.as_dict() for result in self.results],
                "problems": [problem.as_dict() for problem in self.problems]}


@dataclass
class ScenarioRun:
    scenarios: list[ScenarioResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(scenario.passed for scenario in self.scenarios)

    @property
    def failed(self) -> int:
        return sum(scenario.failed for scenario in self.scenarios)

    @property
    def errors(self) -> int:
        return sum(1 for scenario in self.scenarios if scenario.problems)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.errors


@dataclass
class Scenario:
    """A scenario ready to run: everything parsed and checked against the project."""

    path: str
    document: Document
    start: datetime
    end: datetime
    workflows: list[Workflow]
    samples: Samples
    expectations: list[Expectation]
    zones: dict[str, str]  # contact -> the zone its times are shown in
