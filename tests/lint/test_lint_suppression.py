"""Inline suppression (`# mauto: ignore[rule-id]`) and what fails a run (`LintResult.failed(strict)`)."""
from __future__ import annotations

from mauto.config import load_project
from mauto.lint import runner
from mauto.lint.problem import ERROR, WARNING

from .conftest import HELLO_EMAIL, NOW, PROJECT_YAML, WELCOME_YAML, LintProject

WF = "workflows/welcome.yaml"
HELLO = "templates/welcome/hello.email.html"
HI = "templates/welcome/hi.sms.txt"

PAST_WAIT = WELCOME_YAML.replace("wait: 1h", 'wait: {until: "2025-11-28"}')        # wait-date-past at 7:19
PAST_AND_MISSING = PAST_WAIT.replace("email: welcome/hello", "email: welcome/helo")  # + template-missing at 9:12


def rules(result) -> list[tuple[str, int, int]]:
    return [(p.rule, p.line, p.col) for p in result.problems]


def test_without_comments_both_findings_are_reported(lint_files):
    assert rules(lint_files({WF: PAST_AND_MISSING})) == [("wait-date-past", 7, 19), ("template-missing", 9, 12)]


def test_ignore_names_the_rule_it_silences(lint_files):
    source = PAST_AND_MISSING.replace('"2025-11-28"}', '"2025-11-28"}  # mauto: ignore[wait-date-past]')
    assert rules(lint_files({WF: source})) == [("template-missing", 9, 12)]


def test_ignore_of_another_rule_silences_nothing(lint_files):
    source = PAST_AND_MISSING.replace('"2025-11-28"}', '"2025-11-28"}  # mauto: ignore[template-missing]')
    assert rules(lint_files({WF: source})) == [("wait-date-past", 7, 19), ("template-missing", 9, 12)]


def test_ignore_applies_to_its_own_line_only(lint_files):
    source = PAST_AND_MISSING.replace("steps:", "steps:  # mauto: ignore[wait-date-past]")
    assert rules(lint_files({WF: source})) == [("wait-date-past", 7, 19), ("template-missing", 9, 12)]


def test_ignore_lists_several_rules(lint_files):
    source = PAST_AND_MISSING.replace('"2025-11-28"}', '"2025-11-28"}  # mauto: ignore[schema, wait-date-past]')
    source = source.replace("welcome/helo", "welcome/helo  #mauto:ignore[template-missing]")
    assert rules(lint_files({WF: source})) == []


def test_bare_ignore_silences_every_rule_on_the_line(lint_files):
    source = PAST_AND_MISSING.replace('"2025-11-28"}', '"2025-11-28"}  # mauto: ignore')
    assert rules(lint_files({WF: source})) == [("template-missing", 9, 12)]


def test_ignore_in_a_template_uses_a_jinja_comment(lint_files):
    email = HELLO_EMAIL.replace("<p>Hello {{ contact.first_name }}</p>",
                                "<p>Hello {{ first_name }}</p>{# mauto: ignore[template-scope] #}")
    assert rules(lint_files({HELLO: email})) == []
    email = email.replace("ignore[template-scope]", "ignore[contact-field]")
    assert rules(lint_files({HELLO: email})) == [("template-scope", 5, 29)]


def test_ignore_in_the_project_file(lint_files):
    project = PROJECT_YAML + "unsubscribe_secret: abc  # mauto: ignore[secret-in-config]\n"
    assert rules(lint_files({"mauto.yaml": project})) == []


def test_ignore_comments_are_read_from_the_current_file(tmp_path):
    """A project linted twice in one process (an editor, a watch mode): the second run sees the edited file."""
    cache = getattr(runner, "_line_cache", None)
    if isinstance(cache, dict):
        cache.clear()
    project = LintProject(tmp_path).write({WF: PAST_WAIT.replace('"2025-11-28"}', '"2025-11-28"}  # mauto: ignore')})
    first = runner.lint(load_project(tmp_path / "mauto.yaml", display_root=tmp_path), NOW)
    assert first.problems == []
    project.write({WF: PAST_WAIT})  # the comment is gone
    second = runner.lint(load_project(tmp_path / "mauto.yaml", display_root=tmp_path), NOW)
    assert rules(second) == [("wait-date-past", 7, 19)]


# --- strict -------------------------------------------------------------------

LONG_SMS = "x" * 161 + "\n"   # sms-length: a warning


def test_errors_fail_with_or_without_strict(lint_files):
    result = lint_files({WF: PAST_WAIT})
    assert (result.errors, result.warnings) == (1, 0)
    assert result.failed() is True
    assert result.failed(strict=True) is True


def test_warnings_fail_only_with_strict(lint_files):
    result = lint_files({HI: LONG_SMS})
    assert [(p.rule, p.severity) for p in result.problems] == [("sms-length", WARNING)]
    assert (result.errors, result.warnings) == (0, 1)
    assert result.failed() is False
    assert result.failed(strict=True) is True


def test_errors_and_warnings_are_counted_apart(lint_files):
    result = lint_files({WF: PAST_AND_MISSING, HI: LONG_SMS})
    assert sorted(p.severity for p in result.problems) == [ERROR, ERROR, WARNING]
    assert (result.errors, result.warnings, result.files) == (2, 1, 2)
    assert result.failed() and result.failed(strict=True)


def test_a_clean_project_never_fails(lint_files):
    result = lint_files({})
    assert result.problems == []
    assert (result.workflows, result.templates) == (1, 3)
    assert not result.failed() and not result.failed(strict=True)


def test_a_silenced_warning_does_not_fail_strict(lint_files):
    result = lint_files({HI: "{# mauto: ignore[sms-length] #}" + LONG_SMS})
    assert result.problems == []
    assert not result.failed(strict=True)


def test_cli_exit_code_follows_strict(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mauto.cli import app

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # where an internal error would be logged
    LintProject(tmp_path).write({HI: LONG_SMS})
    args = ["--project", str(tmp_path), "lint", "--now", NOW.isoformat()]
    lenient = CliRunner().invoke(app, args)
    strict = CliRunner().invoke(app, [*args, "--strict"])
    assert "sms-length" in lenient.output
    assert (lenient.exit_code, strict.exit_code) == (0, 1)
