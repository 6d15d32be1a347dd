"""Fixtures for the lint tests: a small project in tmp_path, linted at a fixed moment.

The `check` fixture is yamllint's `check(source, problem=(line, col))` for a
whole project: give it the files that differ from a clean base project, the
rule, and where the rule must report; it asserts that the rule reports exactly
there (and nowhere else), and that no other rule reports anything unless the
test says which ones may. Called without `problem`, it asserts that the
project is entirely clean, so every passing variant is also a check that the
rules raise no false alarms.
"""
from __future__ import annotations

import itertools
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mauto.config import load_project
from mauto.lint import runner
from mauto.lint.problem import Problem
from mauto.lint.runner import LintResult

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

# rule id -> the tests marked @fails / @passes with it; the meta-test compares both with RULES
FAIL_TESTS: dict[str, list[str]] = {}
PASS_TESTS: dict[str, list[str]] = {}


def fails(rule: str):
    """Mark a failing case of `rule`: the test must see that rule report where it expects (check/expect)."""
    def mark(test):
        FAIL_TESTS.setdefault(rule, []).append(f"{test.__module__}.{test.__name__}")
        return pytest.mark.lint_case(rule, "reported")(test)
    return mark


def passes(rule: str):
    """Mark a passing variant for `rule`: the test must see a project lint entirely clean (check/expect)."""
    def mark(test):
        PASS_TESTS.setdefault(rule, []).append(f"{test.__module__}.{test.__name__}")
        return pytest.mark.lint_case(rule, "clean")(test)
    return mark


def text(source: str) -> str:
    """A file's text written indented in a test: dedented, without the first newline."""
    return textwrap.dedent(source).lstrip("\n")


PROJECT_YAML = text("""
    timezone: Europe/Paris
    unsubscribe_url: "https://shop.example/unsubscribe/{{ token }}"
    channels:
      email: {transport: smtp, host: 127.0.0.1, port: 1025, username_env: SMTP_USER, password_env: SMTP_PASSWORD}
      sms: {transport: console}
    contact_fields:
      first_name: string
      country: string
      birthday: date
      lifecycle: {enum: [lead, customer]}
    segments:
      vip: "contact.score >= 100"
    events:
      signed_up: {source: string}
      cart_abandoned: {cart_value: number, items: integer}
      order_placed: {total: number}
    """)

WELCOME_YAML = text("""
    id: welcome
    version: 1
    name: Welcome
    trigger:
      event: signed_up
    steps:
      - wait: 1h
      - id: hello
        email: welcome/hello
    """)

BASE_LAYOUT = text("""
    <html><body>
    {% block body %}{% endblock %}
    <p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
    </body></html>
    """)

HELLO_EMAIL = text("""
    ---
    subject: Welcome, {{ contact.first_name }}
    ---
    {% extends "layouts/base.html" %}
    {% block body %}<p>Hello {{ contact.first_name }}</p>{% endblock %}
    """)

HI_SMS = "Welcome to the shop! Reply STOP to opt out.\n"

BASE_FILES: dict[str, str] = {
    "mauto.yaml": PROJECT_YAML,
    "workflows/welcome.yaml": WELCOME_YAML,
    "templates/layouts/base.html": BASE_LAYOUT,
    "templates/welcome/hello.email.html": HELLO_EMAIL,
    "templates/welcome/hi.sms.txt": HI_SMS,
}


@dataclass
class LintProject:
    """A project under `root`: the base files, overridden (or with None, removed) per test."""

    root: Path

    def write(self, files: dict[str, str | bytes | None] | None = None) -> LintProject:
        for name, content in {**BASE_FILES, **(files or {})}.items():
            path = self.root / name
            if content is None:
                if path.exists():
                    path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return self

    def lint(self, paths: list[Path] | None = None, base: str | None = None, now: datetime = NOW) -> LintResult:
        # runner caches file lines by display path for its whole process; each test's project is new
        # (see test_lint_suppression.py::test_ignore_comments_are_read_from_the_current_file)
        cache = getattr(runner, "_line_cache", None)
        if isinstance(cache, dict):
            cache.clear()
        project = load_project(self.root / "mauto.yaml", display_root=self.root)
        return runner.lint(project, now, paths, base)


def where(problems: Iterable[Problem]) -> list[tuple[str, int, int]]:
    return sorted((p.path, p.line, p.col) for p in problems)


def show(problems: Iterable[Problem]) -> str:
    return "\n".join(f"  {p.path}:{p.line}:{p.col}: {p.rule} ({p.severity}) {p.message}" for p in problems) or "  none"


def pytest_configure(config):
    config.addinivalue_line("markers", "lint_case(rule, outcome): a failing (`reported`) or passing (`clean`) case "
                                       "of a lint rule; set by @fails / @passes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.lint_call_passed = report.passed


@pytest.fixture
def seen_cases() -> set[tuple[str, str]]:
    """(rule, "reported" | "clean") for each expectation a test has seen met."""
    return set()


@pytest.fixture(autouse=True)
def _lint_case_is_exercised(request, seen_cases):
    yield
    marker = request.node.get_closest_marker("lint_case")
    if marker is not None and getattr(request.node, "lint_call_passed", False):
        assert tuple(marker.args) in seen_cases, \
            f"marked as a {marker.args[1]} case of {marker.args[0]}, but never checked one"


@pytest.fixture
def expect(seen_cases: set[tuple[str, str]]):
    """expect(result, rule, problem=(line, col) | [...], path=..., message=..., also=...) -> the rule's problems.

    Asserts that `rule` reported exactly at those places of `path` (a place may
    also be (path, line, col) for findings in several files; none: the
    result is entirely clean), that each message contains `message` (a string
    or a tuple of parts), and that no other rule reported, except those in `also`.
    """
    from mauto.lint.rules import RULES

    def run(result: LintResult, rule: str, problem=None, *, path: str = "mauto.yaml",
            message: str | tuple[str, ...] = (), also: Iterable[str] = ()) -> list[Problem]:
        assert rule in RULES, f"no rule {rule}"
        if problem is None:
            assert result.problems == [], f"expected no problems, got:\n{show(result.problems)}"
            seen_cases.add((rule, "clean"))
            return []
        found = [p for p in result.problems if p.rule == rule]
        others = [p for p in result.problems if p.rule != rule and p.rule not in set(also)]
        expected = [problem] if isinstance(problem, tuple) else list(problem)
        places = sorted(tuple(item) if len(item) == 3 else (path, *item) for item in expected)
        assert where(found) == places, \
            f"{rule}: expected at {expected} in {path}, got:\n{show(result.problems)}"
        parts = (message,) if isinstance(message, str) else message
        for found_problem in found:
            assert found_problem.severity == RULES[rule].LEVEL
            for part in parts:
                assert part in found_problem.message, f"`{part}` not in: {found_problem.message}"
        assert others == [], f"other rules reported too:\n{show(others)}"
        seen_cases.add((rule, "reported"))
        return found

    return run


@pytest.fixture
def lint_files(tmp_path: Path):
    """lint_files(files, **lint options) -> LintResult: a new project (base files + `files`), linted."""
    counter = itertools.count()

    def run(files: dict[str, str | bytes | None], **options) -> LintResult:
        return LintProject(tmp_path / f"lint-{next(counter)}").write(files).lint(**options)

    return run


@pytest.fixture
def check(tmp_path: Path, expect):
    """check(files, rule, problem=(line, col) | [(line, col) or (path, line, col), ...], path=..., message=...,
    also=...) -> problems.

    Writes a new project (the base files, with `files` over them; None removes
    a base file), lints it and asserts as `expect` does. `path` defaults to the
    first workflow among `files`, else mauto.yaml. With `problem=None` the
    whole project must be clean.
    """
    counter = itertools.count()

    def run(files: dict[str, str | bytes | None], rule: str, problem=None, *, path: str | None = None,
            message: str | tuple[str, ...] = (), also: Iterable[str] = (), now: datetime = NOW) -> list[Problem]:
        result = LintProject(tmp_path / f"project-{next(counter)}").write(files).lint(now=now)
        if path is None:
            path = next((name for name in files if name.startswith("workflows/")), "mauto.yaml")
        return expect(result, rule, problem, path=path, message=message, also=also)

    return run
