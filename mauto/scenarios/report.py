"""`mauto test`'s output: text for a terminal (with its styles), GitHub Actions annotations, JSON."""
from __future__ import annotations

import json

from mauto.scenarios.model import ScenarioRun


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(run: ScenarioRun) -> str:
    """pytest's last line: "1 failed, 13 passed, 1 error in 3 scenario files"."""
    parts = []
    if run.failed:
        parts.append(f"{run.failed} failed")
    parts.append(f"{run.passed} passed")
    if run.errors:
        parts.append(_plural(run.errors, "error"))
    return f"{', '.join(parts)} in {_plural(len(run.scenarios), 'scenario file')}"


def text_lines(run: ScenarioRun, verbose: bool = False) -> list[str]:
    """The report for a terminal: a line per file, then each failure with its diff, then the summary."""
    lines: list[str] = []
    for scenario in run.scenarios:
        if scenario.problems:
            lines.append(f"ERROR {scenario.path}: not a valid scenario")
        elif scenario.failed:
            lines.append(f"FAIL  {scenario.path}: {scenario.failed} of {len(scenario.results)} failed")
        else:
            lines.append(f"PASS  {scenario.path}: {_plural(scenario.passed, 'expectation')}")
        if verbose:
            for result in scenario.results:
                lines.append(f"      {'ok    ' if result.passed else 'FAILED'} {result.expectation.text}")
    details: list[str] = []
    for scenario in run.scenarios:
        for problem in scenario.problems:
            details.append(f"{problem.path}:{problem.line}:{problem.col}: {problem.message}")
        for result in scenario.results:
            if result.passed:
                continue
            expectation = result.expectation
            if details:
                details.append("")
            details.append(f"{scenario.path}:{expectation.pos.line}:{expectation.pos.col}: {expectation.text}: "
                           f"{result.message}")
            details.extend(result.diff)
    if details:
        lines.append("")
        lines.extend(details)
    lines.append("")
    lines.append(summary(run))
    return lines


def line_style(line: str) -> str:
    """A rich style for a line of `text_lines`: diffs in red and green, statuses by outcome."""
    if line.startswith("  - "):
        return "red"
    if line.startswith("  + "):
        return "green"
    if line.startswith(("FAIL", "ERROR", "      FAILED")):
        return "red bold"
    if line.startswith("PASS"):
        return "green"
    if line.startswith("    "):
        return "dim"
    return ""


def as_json(run: ScenarioRun) -> str:
    return json.dumps({
        "scenarios": [scenario.as_dict() for scenario in run.scenarios],
        "summary": {"passed": run.passed, "failed": run.failed, "errors": run.errors, "files": len(run.scenarios)},
    }, indent=2, ensure_ascii=False)


def github_lines(run: ScenarioRun) -> list[str]:
    """GitHub Actions workflow commands: an error annotation per failed expectation and per invalid file."""
    from mauto.lint.formatters import _escape_data, _escape_property

    lines = []
    for scenario in run.scenarios:
        for problem in scenario.problems:
            lines.append(f"::error file={_escape_property(problem.path)},line={problem.line},col={problem.col},"
                         f"title={_escape_property('invalid scenario')}::{_escape_data(problem.message)}")
        for result in scenario.results:
            if result.passed:
                continue
            expectation = result.expectation
            message = "\n".join([result.message, *result.diff])
            lines.append(f"::error file={_escape_property(scenario.path)},line={expectation.pos.line},"
                         f"col={expectation.pos.col},title={_escape_property(expectation.text)}::"
                         f"{_escape_data(message)}")
    return lines
