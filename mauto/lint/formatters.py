"""Lint output: text (ruff/flake8 style), JSON, and GitHub Actions annotations."""
from __future__ import annotations

import json

from mauto.lint.runner import LintResult


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(result: LintResult) -> str:
    if not result.problems:
        return (f"All checks passed: {_plural(result.workflows, 'workflow')}, "
                f"{_plural(result.templates, 'template')}.")
    parts = []
    if result.errors:
        parts.append(_plural(result.errors, "error"))
    if result.warnings:
        parts.append(_plural(result.warnings, "warning"))
    return f"Found {' and '.join(parts)} in {_plural(result.files, 'file')}."


def text_lines(result: LintResult) -> list[str]:
    return [f"{p.path}:{p.line}:{p.col}: {p.rule} {p.message}" for p in result.problems]


def as_json(result: LintResult) -> str:
    return json.dumps({
        "problems": [problem.as_dict() for problem in result.problems],
        "summary": {"errors": result.errors, "warnings": result.warnings, "workflows": result.workflows,
                    "templates": result.templates},
    }, indent=2, ensure_ascii=False)


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def github_lines(result: LintResult) -> list[str]:
    """Workflow commands that GitHub Actions turns into inline annotations on the pull request."""
    return [f"::{p.severity} file={_escape_property(p.path)},line={p.line},col={p.col},"
            f"title={_escape_property(p.rule)}::{_escape_data(p.message)}" for p in result.problems]
