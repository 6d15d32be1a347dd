"""The command line: whole outputs and exit codes (0 clean, 1 findings, 2 usage, 3 a bug in mauto)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mauto import __version__
from mauto.cli import app

ROOT = Path(__file__).resolve().parents[1]  # the repository: also the bundled sample project
NOW = ["--now", "2026-11-23T12:00:00+00:00"]

pytestmark = pytest.mark.usefixtures("cli_environment")

PROJECT = {
    "mauto.yaml": """
        timezone: Europe/Paris
        unsubscribe_url: "https://shop.example/unsubscribe/{{ token }}"
        channels:
          email: {transport: smtp, host: 127.0.0.1, port: 1025}
          sms: {transport: console}
        contact_fields:
          first_name: string
        events:
          signed_up: {source: string}
    """,
    "workflows/welcome.yaml": """
        id: welcome
        version: 1
        name: Welcome
        trigger: {event: signed_up}
        steps:
          - wait: 1h
          - id: hello
            email: welcome/hello
    """,
    "templates/layouts/base.html": """
        <html><body>
        {% block body %}{% endblock %}
        <p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
        </body></html>
    """,
    "templates/welcome/hello.email.html": """
        ---
        subject: Welcome, {{ contact.first_name }}
        ---
        {% extends "layouts/base.html" %}
        {% block body %}<p>Hello {{ contact.first_name }}</p>{% endblock %}
    """,
}

LONG_SMS = "Our spring sale starts today: every lamp, bulb and sensor is 20% off until Sunday. " * 3

ERRORS = {
    "workflows/welcome.yaml": """
        id: welcome
        version: 1
        name: Welcome
        trigger: {event: signed_up}
        steps:
          - wait: 3 days
          - id: hello
            email: welcome/hello
    """,
    "workflows/other.yaml": "id: other\nid: again\n",
}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def project(tmp_path: Path, write_files, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean project in tmp_path, which is also the current folder (paths are shown relative to it)."""
    write_files(tmp_path, PROJECT)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_version(runner: CliRunner):
    result = runner.invoke(app, ["--version"])
    assert (result.exit_code, result.stdout) == (0, f"mauto {__version__}\n")


def test_no_arguments_shows_help_and_exits_2(runner: CliRunner):
    result = runner.invoke(app, [])
    assert result.exit_code == 2
    assert "Usage: mauto [OPTIONS] COMMAND [ARGS]..." in result.output
    assert "lint" in result.output and "schema" in result.output


# --- lint: exit codes and whole outputs ------------------------------------------------

def test_clean_project_exits_0(runner: CliRunner, project: Path):
    result = runner.invoke(app, ["lint", *NOW])
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, "All checks passed: 1 workflow, 2 templates.\n", "")


def test_errors_exit_1_with_one_line_each_then_a_summary(runner: CliRunner, project: Path, write_files):
    write_files(project, ERRORS)
    result = runner.invoke(app, ["lint", *NOW])
    assert result.exit_code == 1
    assert result.stdout == (
        "workflows/other.yaml:2:1: yaml-syntax duplicate key `id` (first defined at line 1); "
        "YAML would silently keep only the last one\n"
        "workflows/welcome.yaml:6:11: duration `wait` in step 1: `3 days` is not a duration; write `3d`\n"
        "Found 2 errors in 2 files.\n"
    )
    assert result.stderr == ""


def test_warnings_pass_unless_strict(runner: CliRunner, project: Path, write_files):
    write_files(project, {"templates/promo/sale.sms.txt": LONG_SMS})
    expected = ("templates/promo/sale.sms.txt:1:1: sms-length SMS is at least 248 GSM-7 characters before "
                "placeholders: 2 segments, each billed; one segment holds 160\n"
                "Found 1 warning in 1 file.\n")
    result = runner.invoke(app, ["lint", *NOW])
    assert (result.exit_code, result.stdout) == (0, expected)
    result = runner.invoke(app, ["lint", "--strict", *NOW])
    assert (result.exit_code, result.stdout) == (1, expected)


def test_json_format(runner: CliRunner, project: Path, write_files):
    write_files(project, ERRORS)
    result = runner.invoke(app, ["lint", "--format", "json", *NOW])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "problems": [
            {"path": "workflows/other.yaml", "line": 2, "column": 1, "rule": "yaml-syntax", "severity": "error",
             "message": "duplicate key `id` (first defined at line 1); YAML would silently keep only the last one"},
            {"path": "workflows/welcome.yaml", "line": 6, "column": 11, "rule": "duration", "severity": "error",
             "message": "`wait` in step 1: `3 days` is not a duration; write `3d`"},
        ],
        "summary": {"errors": 2, "warnings": 0, "workflows": 2, "templates": 2},
    }


def test_json_format_when_clean(runner: CliRunner, project: Path):
    result = runner.invoke(app, ["lint", "-f", "json", *NOW])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"problems": [], "summary": {"errors": 0, "warnings": 0, "workflows": 1,
                                                                     "templates": 2}}


def test_github_format(runner: CliRunner, project: Path, write_files):
    write_files(project, {**ERRORS, "templates/promo/sale.sms.txt": LONG_SMS})
    result = runner.invoke(app, ["lint", "--format", "github", *NOW])
    assert result.exit_code == 1
    assert result.stdout == (
        "::warning file=templates/promo/sale.sms.txt,line=1,col=1,title=sms-length::SMS is at least 248 GSM-7 "
        "characters before placeholders: 2 segments, each billed; one segment holds 160\n"
        "::error file=workflows/other.yaml,line=2,col=1,title=yaml-syntax::duplicate key `id` (first defined at "
        "line 1); YAML would silently keep only the last one\n"
        "::error file=workflows/welcome.yaml,line=6,col=11,title=duration::`wait` in step 1: `3 days` is not a "
        "duration; write `3d`\n"
        "Found 2 errors and 1 warning in 3 files.\n"
    )


def test_github_format_escapes_what_the_workflow_command_syntax_needs():
    from mauto.lint.formatters import github_lines
    from mauto.lint.problem import Problem
    from mauto.lint.runner import LintResult

    result = LintResult([Problem("a:b,c.yaml", 1, 2, "schema", "50% done\nnext line")])
    assert github_lines(result) == ["::error file=a%3Ab%2Cc.yaml,line=1,col=2,title=schema::50%25 done%0Anext line"]


def test_lint_paths_report_only_on_those_files(runner: CliRunner, project: Path, write_files):
    write_files(project, ERRORS)
    result = runner.invoke(app, ["lint", "workflows/welcome.yaml", *NOW])
    assert result.exit_code == 1
    assert result.stdout == ("workflows/welcome.yaml:6:11: duration `wait` in step 1: `3 days` is not a duration; "
                             "write `3d`\nFound 1 error in 1 file.\n")


def test_ignore_comment_silences_one_rule_on_its_line(runner: CliRunner, project: Path, write_files):
    write_files(project, {"workflows/welcome.yaml": ERRORS["workflows/welcome.yaml"].replace(
        "wait: 3 days", "wait: 3 days  # mauto: ignore[duration]")})
    result = runner.invoke(app, ["lint", *NOW])
    assert (result.exit_code, result.stdout) == (0, "All checks passed: 1 workflow, 2 templates.\n")


# --- lint: usage errors exit 2 ------------------------------------------------------------

def test_unknown_format_is_a_usage_error(runner: CliRunner, project: Path):
    result = runner.invoke(app, ["lint", "--format", "xml"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Invalid value for '--format'" in result.stderr and "'xml'" in result.stderr


def test_a_missing_path_is_a_usage_error(runner: CliRunner, project: Path):
    result = runner.invoke(app, ["lint", "nope.yaml", *NOW])
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", "nope.yaml: no such file or folder\n")


def test_no_project_found_is_a_usage_error(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    result = runner.invoke(app, ["lint", *NOW])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (f"no mauto.yaml in {empty.resolve()} or any parent folder; run mauto inside a project "
                             "or pass --project PATH\n")


def test_an_explicit_project_that_does_not_exist(runner: CliRunner, tmp_path: Path):
    result = runner.invoke(app, ["--project", str(tmp_path / "nowhere"), "lint", *NOW])
    assert (result.exit_code, result.stderr) == (2, f"no project file at {tmp_path / 'nowhere'}\n")


def test_unknown_explain_rule_is_a_usage_error(runner: CliRunner):
    from mauto.lint.rules import RULES

    result = runner.invoke(app, ["lint", "--explain", "no-such-rule"])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"no rule `no-such-rule`; rules: {', '.join(RULES)}\n"


def test_a_bad_now_is_a_usage_error(runner: CliRunner, project: Path):
    result = runner.invoke(app, ["lint", "--now", "yesterday"])
    assert result.exit_code == 2
    assert result.stderr == "--now yesterday: not an ISO 8601 time such as 2026-11-23T09:00:00+01:00\n"


def test_a_project_file_that_is_not_yaml_is_a_finding(runner: CliRunner, project: Path, write_files):
    write_files(project, {"mauto.yaml": "timezone: Europe/Paris\ntimezone: UTC\n"})
    result = runner.invoke(app, ["lint", *NOW])
    assert result.exit_code == 1
    assert result.stdout.startswith("mauto.yaml:2:1: yaml-syntax duplicate key `timezone` (first defined at line 1); "
                                    "YAML would silently keep only the last one\n")
    assert result.stderr == ""


def test_a_project_file_that_is_not_yaml_is_one_finding_not_a_cascade(runner: CliRunner, project: Path,
                                                                       write_files):
    broken = "contact_fields:\n  first_name: string\ncontact_fields:\n  first_name: string\n"
    write_files(project, {"mauto.yaml": broken})
    result = runner.invoke(app, ["lint", *NOW])
    assert result.exit_code == 1
    assert result.stdout == ("mauto.yaml:3:1: yaml-syntax duplicate key `contact_fields` (first defined at line 1); "
                             "YAML would silently keep only the last one\nFound 1 error in 1 file.\n")


# --- lint --explain -----------------------------------------------------------------------

def test_explain_prints_the_rules_documentation(runner: CliRunner):
    from mauto.lint.rules import RULES

    result = runner.invoke(app, ["lint", "--explain", "duration"])
    assert result.exit_code == 0
    assert result.stdout == f"duration (error)\n\n{RULES['duration'].__doc__.strip()}\n"
    assert result.stdout.startswith("duration (error)\n\nDurations are a number and a unit: `30m`")
    assert "Bad:" in result.stdout and "Good:" in result.stdout


def test_explain_needs_no_project(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["lint", "--explain", "sms-length"])
    assert result.exit_code == 0
    assert result.stdout.startswith("sms-length (warning)\n\n")


# --- finding the project ------------------------------------------------------------------

def test_project_option_takes_the_file(runner: CliRunner, tmp_path: Path, write_files,
                                       monkeypatch: pytest.MonkeyPatch):
    write_files(tmp_path / "shop", {**PROJECT, **ERRORS})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = runner.invoke(app, ["--project", str(tmp_path / "shop" / "mauto.yaml"), "lint", *NOW])
    assert result.exit_code == 1
    # outside the current folder, paths are shown as they are
    assert result.stdout.splitlines()[0].startswith(f"{tmp_path / 'shop' / 'workflows' / 'other.yaml'}:2:1: "
                                                    "yaml-syntax duplicate key `id`")
    assert result.stdout.endswith("Found 2 errors in 2 files.\n")


def test_project_option_takes_the_folder(runner: CliRunner, tmp_path: Path, write_files,
                                         monkeypatch: pytest.MonkeyPatch):
    write_files(tmp_path / "shop", PROJECT)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["-p", "shop", "lint", *NOW])
    assert (result.exit_code, result.stdout) == (0, "All checks passed: 1 workflow, 2 templates.\n")


def test_project_is_found_in_a_parent_folder(runner: CliRunner, project: Path, write_files,
                                             monkeypatch: pytest.MonkeyPatch):
    write_files(project, ERRORS)
    monkeypatch.chdir(project / "workflows")
    result = runner.invoke(app, ["lint", *NOW])
    assert result.exit_code == 1
    assert result.stdout == (
        "other.yaml:2:1: yaml-syntax duplicate key `id` (first defined at line 1); "
        "YAML would silently keep only the last one\n"
        "welcome.yaml:6:11: duration `wait` in step 1: `3 days` is not a duration; write `3d`\n"
        "Found 2 errors in 2 files.\n"
    )


def test_the_nearest_project_wins(runner: CliRunner, project: Path, write_files, monkeypatch: pytest.MonkeyPatch):
    write_files(project, ERRORS)  # the outer project has errors
    inner = project / "nested"
    write_files(inner, PROJECT)   # the inner one is clean
    monkeypatch.chdir(inner / "templates")
    result = runner.invoke(app, ["lint", *NOW])
    assert (result.exit_code, result.stdout) == (0, "All checks passed: 1 workflow, 2 templates.\n")


# --- schema ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["workflow", "project"])
def test_schema_prints_the_shipped_schema(runner: CliRunner, name: str):
    from jsonschema import Draft202012Validator

    result = runner.invoke(app, ["schema", name])
    assert result.exit_code == 0
    shipped = (ROOT / "schema" / f"{name}.schema.json").read_text(encoding="utf-8")
    assert result.stdout == shipped
    printed = json.loads(result.stdout)
    assert printed == json.loads(shipped)
    Draft202012Validator.check_schema(printed)


def test_schema_of_an_unknown_kind_is_a_usage_error(runner: CliRunner):
    result = runner.invoke(app, ["schema", "contacts"])
    assert result.exit_code == 2
    assert "'contacts'" in result.stderr


# --- errors nobody expected -------------------------------------------------------------------

def test_an_unexpected_exception_is_one_line_and_a_log_file(runner: CliRunner, project: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch):
    from mauto.lint import runner as lint_runner

    def broken(*args, **kwargs):
        raise RuntimeError("the rule exploded")

    monkeypatch.setattr(lint_runner, "lint", broken)
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    result = runner.invoke(app, ["lint", *NOW])
    log = cache / "mauto" / "mauto.log"
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == (f"internal error: RuntimeError: the rule exploded; the traceback is in {log}. "
                             "Please report it.\n")
    logged = log.read_text(encoding="utf-8")
    assert f"mauto {__version__}" in logged
    assert "Traceback (most recent call last):" in logged
    assert 'raise RuntimeError("the rule exploded")' in logged
    assert logged.rstrip().endswith("RuntimeError: the rule exploded")


def test_the_log_file_is_appended_to(runner: CliRunner, project: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch):
    from mauto.lint import runner as lint_runner

    monkeypatch.setattr(lint_runner, "lint", lambda *a, **k: 1 / 0)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for _ in range(2):
        assert runner.invoke(app, ["lint", *NOW]).exit_code == 3
    logged = (tmp_path / "cache" / "mauto" / "mauto.log").read_text(encoding="utf-8")
    assert logged.count("ZeroDivisionError: division by zero") == 2


def test_the_internal_error_message_is_one_line_even_for_a_multi_line_exception(
        runner: CliRunner, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from mauto.lint import runner as lint_runner

    def broken(*args, **kwargs):
        raise ValueError("first line\n  second line")

    monkeypatch.setattr(lint_runner, "lint", broken)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = runner.invoke(app, ["lint", *NOW])
    assert result.exit_code == 3
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_filter_typo_in_a_template_is_a_finding(runner: CliRunner, project: Path, write_files, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_files(project, {"templates/promo/typo.sms.txt": "Hi {{ contact.first_name | uper }}\n"})
    result = runner.invoke(app, ["lint", *NOW])
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("templates/promo/typo.sms.txt:1:")
    assert "uper" in result.stdout


def test_deeply_nested_workflows_are_findings_not_crashes(runner: CliRunner, project: Path, write_files):
    outcomes = {}
    for depth in range(100, 300, 20):
        inner = "{wait: 1d}"
        for _ in range(depth):
            inner = "{if: 'true', then: [" + inner + "]}"
        write_files(project, {"workflows/deep.yaml": "id: deep\nversion: 1\nname: Deep\n"
                                                     "trigger: {event: signed_up}\nsteps: [" + inner + "]\n"})
        outcomes[depth] = runner.invoke(app, ["lint", *NOW]).exit_code
    assert set(outcomes.values()) <= {0, 1}, outcomes


def test_ctrl_c_exits_130(runner: CliRunner, project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from mauto.lint import runner as lint_runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lint_runner, "lint", interrupted)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = runner.invoke(app, ["lint", *NOW])
    assert (result.exit_code, result.stderr) == (130, "interrupted\n")
    assert not (tmp_path / "cache" / "mauto" / "mauto.log").exists()


# --- the bundled sample project -----------------------------------------------------------------

def test_the_sample_project_is_clean(runner: CliRunner, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    result = runner.invoke(app, ["--project", str(ROOT), "lint"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("All checks passed: "), result.output
    workflows = len([path for path in (ROOT / "workflows").rglob("*") if path.suffix in (".yaml", ".yml")])
    assert f"{workflows} workflows" in result.stdout
