"""`mauto test`: scenario files run through the engine, expectations checked against the timeline.

Every expectation kind is tested both ways on a small project of its own (a
cart workflow with an A/B split, a coupon workflow), with the message that
says what happened instead; whole outputs are compared for the diff, the
GitHub annotations and the exit codes; bad scenario files are reported at
their line and column; the bundled scenarios of the sample project pass.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import typer
from jsonschema import Draft202012Validator
from rich.text import Text
from typer.testing import CliRunner

from mauto import cli, scenarios
from mauto.config import load_project
from mauto.errors import ExitCode, UsageError
from mauto.lint.runner import workflow_files

ROOT = Path(__file__).resolve().parents[1]  # the repository: also the bundled sample project

pytestmark = pytest.mark.usefixtures("cli_environment")

EMAIL = """
    ---
    subject: Hello
    ---
    {% extends "layouts/base.html" %}
    {% block body %}<p>Hello</p>{% endblock %}
"""

PROJECT = {
    "mauto.yaml": """
        timezone: Europe/Paris
        unsubscribe_url: "https://shop.example/unsubscribe/{{ token }}"
        channels:
          email: {transport: smtp, host: 127.0.0.1, port: 1025}
          sms: {transport: console}
        contact_fields:
          first_name: string
          plan: string
    """,
    # No quiet hours or send days in this project: every time below is exact.
    "workflows/cart.yaml": """
        id: cart
        version: 1
        name: Cart
        trigger: {event: cart_abandoned, where: "event.value >= 20"}
        exit_on: [unsubscribed]
        goal: {event: order_placed, within: 7d}
        steps:
          - wait: 1h
          - split:
              id: subject
              variants:
                a: {weight: 50, steps: [{id: reminder-a, email: cart/reminder}]}
                b: {weight: 50, steps: [{id: reminder-b, email: cart/reminder}]}
          - wait: 1d
          - if: "contact.sms_consent"
            then:
              - id: last-call-sms
                sms: cart/last-call
            else:
              - id: last-call
                email: cart/last-call
          - score: 5
          - update: {set: {plan: reminded}, add_tags: [reminded]}
    """,
    "workflows/coupon.yaml": """
        id: coupon
        version: 1
        name: Coupon
        trigger: {event: coupon_requested}
        steps:
          - assign_coupon: {pool: GIFT, as: code}
          - id: gift
            email: gift/code
    """,
    "templates/layouts/base.html": """
        <html><body>
        {% block body %}{% endblock %}
        <p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
        </body></html>
    """,
    "templates/cart/reminder.email.html": EMAIL,
    "templates/cart/last-call.email.html": EMAIL,
    "templates/cart/last-call.sms.txt": "Last call: your cart is waiting.\n",
    "templates/gift/code.email.html": EMAIL,
}

# c1 (New York, texts allowed) gets variant b, c2 (Paris) variant a; c3's cart is too small; c4 orders.
HEAD = """\
start: 2026-11-24T09:00:00+01:00
for: 5d
contacts:
  - {id: c1, email: c1@shop.example, phone: "+12125550100", timezone: America/New_York, email_consent: true, sms_consent: true}
  - {id: c2, email: c2@shop.example, email_consent: true}
  - {id: c3, email: c3@shop.example, email_consent: true}
  - {id: c4, email: c4@shop.example, email_consent: true}
events:
  - {contact: c1, event: cart_abandoned, at: "+0h", value: 50}
  - {contact: c2, event: cart_abandoned, at: "+0h", value: 50}
  - {contact: c3, event: cart_abandoned, at: "+0h", value: 10}
  - {contact: c4, event: cart_abandoned, at: "+0h", value: 50}
  - {contact: c4, event: order_placed, at: "+2h"}
expect:
"""  # noqa: E501 - a scenario file: one contact a line, as people write them


@pytest.fixture
def project(tmp_path: Path, write_files, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The small project in tmp_path, which is also the current folder (paths are shown relative to it)."""
    write_files(tmp_path, PROJECT)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def scenario(project: Path, text: str, name: str = "cart.yaml") -> Path:
    path = project / "scenarios" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run(project: Path, *paths: Path) -> scenarios.ScenarioRun:
    return scenarios.run_scenarios(load_project(project / "mauto.yaml"), list(paths) or None)


def expect(*items: str) -> str:
    return HEAD + "".join(f"  - {item}\n" for item in items)


# --- the command line ----------------------------------------------------------------------------------

def _app() -> typer.Typer:
    """mauto's app once `mauto test` is in mauto/cli.py; until then, the same command on an app of its own."""
    if "test" in typer.main.get_command(cli.app).commands:
        return cli.app
    app = typer.Typer(name="mauto", add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                      rich_markup_mode=None)
    app.callback()(cli.root)

    @app.command(name="test")
    @cli.handle_errors
    def run_tests(
        ctx: typer.Context,
        paths: list[Path] | None = typer.Argument(None, metavar="SCENARIO_OR_DIR",
                                                     help="Scenario files or folders (default: scenarios/)."),
        output_format: cli.LintFormat = typer.Option(cli.LintFormat.text, "--format", "-f",
                                                     help="text, json or github."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="List every expectation, not only failures."),
    ) -> None:
        """Run the scenarios in scenarios/ through the engine; a failure shows expected against actual."""
        run = scenarios.run_scenarios(cli._project(ctx), paths or None)
        if output_format is cli.LintFormat.json:
            print(scenarios.as_json(run))
        elif output_format is cli.LintFormat.github:
            for line in scenarios.github_lines(run):
                print(line)
            print(scenarios.summary(run))
        else:
            out = cli._out()
            for line in scenarios.text_lines(run, verbose):
                out.print(Text(line, style=scenarios.line_style(line)))
        if not run.ok:
            raise typer.Exit(int(ExitCode.FINDINGS))

    return app


@pytest.fixture
def mauto():
    runner = CliRunner()
    app = _app()
    return lambda *args: runner.invoke(app, list(args))


def test_passing_scenarios_exit_0_with_a_line_per_file(project: Path, mauto):
    scenario(project, expect("{contact: c2, gets: cart/reminder, at: '+1h'}", "{contact: c3, gets_no: email}"))
    scenario(project, expect("{contact: c1, gets: sms}"), "sms.yaml")
    result = mauto("test")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "PASS  scenarios/cart.yaml: 2 expectations\n"
        "PASS  scenarios/sms.yaml: 1 expectation\n"
        "\n"
        "3 passed in 2 scenario files\n"
    )


def test_a_failed_expectation_exits_1_with_its_diff(project: Path, mauto):
    scenario(project, expect("{contact: c2, gets: cart/reminder, at: '+1h'}",
                             "{contact: c1, gets: cart/reminder, at: '+2h'}"))
    result = mauto("test")
    assert result.exit_code == 1
    # Times in c1's own zone; `-` the expected line at its time, `+` what happened instead.
    assert result.stdout == (
        "FAIL  scenarios/cart.yaml: 1 of 2 failed\n"
        "\n"
        "scenarios/cart.yaml:16:5: c1 gets cart/reminder at +2h (Tue 24 Nov 05:00 EST): "
        "sent at Tue 24 Nov 04:00 EST instead\n"
        "    Tue 24 Nov 03:00 EST  cart  trigger        enter                cart_abandoned\n"
        "    Tue 24 Nov 03:00 EST  cart  1              wait                 until Tue 24 Nov 04:00 EST\n"
        "    Tue 24 Nov 04:00 EST  cart  2              split                variant b (50%)\n"
        "  + Tue 24 Nov 04:00 EST  cart  reminder-b     email cart/reminder\n"
        "    Tue 24 Nov 04:00 EST  cart  3              wait                 until Wed 25 Nov 04:00 EST\n"
        "  - Tue 24 Nov 05:00 EST  cart                 email cart/reminder\n"
        "    Wed 25 Nov 04:00 EST  cart  4              branch               contact.sms_consent → true "
        "(contact.sms_consent = True)\n"
        "    Wed 25 Nov 04:00 EST  cart  last-call-sms  sms cart/last-call\n"
        "    Wed 25 Nov 04:00 EST  cart  5              score                +5 → 5\n"
        "    Wed 25 Nov 04:00 EST  cart  6              update               plan = 'reminded', +tag reminded\n"
        "    Wed 25 Nov 04:00 EST  cart  end            complete             reached the end\n"
        "\n"
        "1 failed, 1 passed in 1 scenario file\n"
    )


def test_verbose_lists_every_expectation(project: Path, mauto):
    scenario(project, expect("{contact: c2, variant: {split: subject, is: a}}",
                             "{contact: c2, variant: {split: subject, is: b}}"))
    result = mauto("test", "--verbose")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[:3] == [
        "FAIL  scenarios/cart.yaml: 1 of 2 failed",
        "      ok     c2 is in variant a of subject (cart)",
        "      FAILED c2 is in variant b of subject (cart)",
    ]
    assert ("    Tue 24 Nov 09:00 CET  cart  1           wait                  until Tue 24 Nov 10:00 CET\n"
            "  - any time              cart  2           split                 variant b\n"
            "  + Tue 24 Nov 10:00 CET  cart  2           split                 variant a (50%)\n"
            "    Tue 24 Nov 10:00 CET  cart  reminder-a  email cart/reminder\n") in result.stdout


def test_github_format_annotates_failures_and_bad_files(project: Path, mauto):
    scenario(project, expect("{contact: c1, gets_no: sms}"))
    scenario(project, "start: 2026-11-24T09:00:00+01:00\ncontacts: []\nexpect:\n  - {contact: c1, get: sms}\n",
             "typo.yaml")
    result = mauto("test", "--format", "github")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "::error file=scenarios/cart.yaml,line=15,col=5,title=c1 gets no sms::sent at Wed 25 Nov 04:00 EST"
        "%0A    Tue 24 Nov 03:00 EST  cart  trigger        enter                cart_abandoned"
        "%0A    Tue 24 Nov 03:00 EST  cart  1              wait                 until Tue 24 Nov 04:00 EST"
        "%0A    Tue 24 Nov 04:00 EST  cart  2              split                variant b (50%25)"
        "%0A    Tue 24 Nov 04:00 EST  cart  reminder-b     email cart/reminder"
        "%0A    Tue 24 Nov 04:00 EST  cart  3              wait                 until Wed 25 Nov 04:00 EST"
        "%0A    Wed 25 Nov 04:00 EST  cart  4              branch               contact.sms_consent → true "
        "(contact.sms_consent = True)"
        "%0A  + Wed 25 Nov 04:00 EST  cart  last-call-sms  sms cart/last-call"
        "%0A    Wed 25 Nov 04:00 EST  cart  5              score                +5 → 5"
        "%0A    Wed 25 Nov 04:00 EST  cart  6              update               plan = 'reminded', +tag reminded"
        "%0A    Wed 25 Nov 04:00 EST  cart  end            complete             reached the end"
    )
    assert lines[1:] == [
        "::error file=scenarios/typo.yaml,line=4,col=19,title=invalid scenario::unknown key `get` in "
        "expectation 1; did you mean `gets`?",
        "1 failed, 0 passed, 1 error in 2 scenario files",
    ]


def test_github_title_escapes_commas_and_colons(project: Path, mauto):
    scenario(project, expect("{contact: c2, fields: {score: 6, plan: other}}"))
    result = mauto("test", "--format", "github")
    assert result.stdout == (
        "::error file=scenarios/cart.yaml,line=15,col=5,title=c2 ends with score = 6%2C plan = 'other'::"
        "score is 5; plan is 'reminded'"
        "%0A    Wed 25 Nov 10:00 CET  cart  5  score   +5 → 5"
        "%0A    Wed 25 Nov 10:00 CET  cart  6  update  plan = 'reminded', +tag reminded"
        "%0A  - score = 6%0A  + score = 5%0A  - plan = 'other'%0A  + plan = 'reminded'\n"
        "1 failed, 0 passed in 1 scenario file\n")


def test_json_format(project: Path, mauto):
    scenario(project, expect("{contact: c2, messages: 2}", "{contact: c2, messages: 3}"))
    result = mauto("test", "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["summary"] == {"passed": 1, "failed": 1, "errors": 0, "files": 1}
    [only] = report["scenarios"]
    assert (only["path"], only["name"], only["status"], only["problems"]) == (
        "scenarios/cart.yaml", "cart", "failed", [])
    passed, failed = only["expectations"]
    assert passed == {"line": 15, "column": 5, "kind": "messages", "contact": "c2",
                      "expectation": "c2 gets 2 messages", "passed": True, "message": "", "diff": []}
    assert (failed["line"], failed["passed"], failed["message"]) == (16, False, "got 2")
    assert [line[:4] for line in failed["diff"] if line.startswith("  +")] == ["  + ", "  + "]


def test_json_format_gives_a_bad_files_problems_as_lint_does(project: Path, mauto):
    # One problem type for lint, the schemas and scenarios: the same keys as `mauto lint --format json`.
    scenario(project, "start: 2026-11-24T09:00:00+01:00\nfor: 3 days\ncontacts: []\n"
                      "expect:\n  - {contact: c1, get: sms}\n", "bad.yaml")
    result = mauto("test", "--format", "json")
    assert result.exit_code == 1
    [only] = json.loads(result.stdout)["scenarios"]
    assert only["problems"] == [
        {"path": "scenarios/bad.yaml", "line": 2, "column": 6, "rule": "duration", "severity": "error",
         "message": "`for`: `3 days` is not a duration; write `3d`"},
        {"path": "scenarios/bad.yaml", "line": 5, "column": 19, "rule": "schema", "severity": "error",
         "message": "unknown key `get` in expectation 1; did you mean `gets`?"},
    ]


def test_an_invalid_scenario_exits_1_and_the_others_still_run(project: Path, mauto):
    scenario(project, expect("{contact: c2, completes: cart}"))
    scenario(project, "start: 2026-11-24T09:00:00+01:00\nfor: 3 days\ncontacts: []\nexpect: []\n", "bad.yaml")
    result = mauto("test")
    assert result.exit_code == 1
    assert result.stdout == (
        "ERROR scenarios/bad.yaml: not a valid scenario\n"
        "PASS  scenarios/cart.yaml: 1 expectation\n"
        "\n"
        "scenarios/bad.yaml:2:6: `for`: `3 days` is not a duration; write `3d`\n"
        "scenarios/bad.yaml:4:9: `expect` needs at least 1 item\n"
        "\n"
        "1 passed, 1 error in 2 scenario files\n"
    )


def test_paths_choose_files_and_folders(project: Path, mauto):
    scenario(project, expect("{contact: c2, completes: cart}"))
    scenario(project, expect("{contact: c2, exits: cart}"), "failing.yaml")
    (project / "more").mkdir()
    (project / "more" / "other.yaml").write_text(expect("{contact: c4, converts: cart}"), encoding="utf-8")
    result = mauto("test", "scenarios/cart.yaml", "more")
    assert (result.exit_code, result.stdout.splitlines()[:2]) == (
        0, ["PASS  scenarios/cart.yaml: 1 expectation", "PASS  more/other.yaml: 1 expectation"])


def test_no_scenarios_is_a_usage_error(project: Path, mauto):
    result = mauto("test")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == "no scenario files in scenarios/; write one (see docs/testing.md) or pass PATH\n"


def test_a_missing_path_is_a_usage_error(project: Path, mauto):
    result = mauto("test", "scenarios/nope.yaml")
    assert (result.exit_code, result.stderr) == (2, "scenarios/nope.yaml: no such file or folder\n")


def test_a_workflow_given_as_a_scenario_is_a_usage_error(project: Path, mauto):
    result = mauto("test", "workflows/cart.yaml")
    assert (result.exit_code, result.stderr) == (
        2, "workflows/cart.yaml: a workflow, not a scenario; mauto test runs scenario files (scenarios/*.yaml) "
           "that name the workflows they test\n")


def test_an_unknown_format_is_a_usage_error(project: Path, mauto):
    scenario(project, expect("{contact: c2, completes: cart}"))
    assert mauto("test", "--format", "xml").exit_code == 2


def test_a_project_with_lint_errors_is_refused(project: Path, mauto, write_files):
    scenario(project, expect("{contact: c2, completes: cart}"))
    write_files(project, {"workflows/broken.yaml": "id: broken\nversion: 1\nname: Broken\n"
                                                   "trigger: {event: go}\nsteps:\n  - wait: 3 days\n"})
    result = mauto("test")
    assert result.exit_code == 2
    assert result.stderr == ("the project has 1 lint error; fix them first (mauto lint):\n"
                             "  workflows/broken.yaml:6:11: duration `wait` in step 1: `3 days` is not a duration; "
                             "write `3d`\n")


# --- each expectation kind, both ways ------------------------------------------------------------------

KINDS = [
    # (expectation, None when it passes, else what the failure says happened instead)
    ("{contact: c2, gets: cart/reminder, at: '+1h'}", None),
    ("{contact: c2, gets: cart/reminder, at: '+2h'}", "sent at Tue 24 Nov 10:00 CET instead"),
    ("{contact: c2, gets: cart/reminder, at: '+1h5m', tolerance: 10m}", None),
    ("{contact: c2, gets: cart/reminder, at: '+1h15m', tolerance: 10m}", "sent at Tue 24 Nov 10:00 CET instead"),
    ("{contact: c2, gets: cart/reminder, at: 2026-11-24T10:00:00+01:00}", None),
    ("{contact: c2, gets: cart/reminder, at: '2026-11-24T10:00'}", None),  # no offset: the project's zone
    ("{contact: c1, gets: cart/last-call, channel: sms}", None),
    ("{contact: c2, gets: cart/last-call, channel: sms}",
     "sent as email cart/last-call by cart step last-call instead, at Wed 25 Nov 10:00 CET"),
    ("{contact: c1, gets: sms}", None),
    ("{contact: c2, gets: sms}", "never sent; c2 finished cart at Wed 25 Nov 10:00 CET"),
    ("{contact: c2, gets: cart/reminder, step: reminder-a}", None),
    ("{contact: c2, gets: cart/reminder, step: reminder-b}",
     "sent as email cart/reminder by cart step reminder-a instead, at Tue 24 Nov 10:00 CET"),
    ("{contact: c2, gets: email, workflow: cart}", None),
    ("{contact: c3, gets: email, workflow: cart}",
     "never sent; c3 never entered cart: its cart_abandoned event at Tue 24 Nov 09:00 CET did not match the "
     "trigger's `where: event.value >= 20`"),
    ("{contact: c2, gets_no: sms}", None),
    ("{contact: c1, gets_no: sms}", "sent at Wed 25 Nov 04:00 EST"),
    ("{contact: c4, gets_no: cart/last-call}", None),
    ("{contact: c2, gets_no: cart/last-call}", "sent at Wed 25 Nov 10:00 CET"),
    ("{contact: c2, gets_no: cart/last-call, channel: sms}", None),
    ("{contact: c2, messages: 2}", None),
    ("{contact: c2, messages: 3}", "got 2"),
    ("{contact: c1, messages: 1, channel: sms}", None),
    ("{contact: c1, messages: 2, template: cart/reminder}", "got 1"),
    ("{contact: c3, messages: 0}", None),
    ("{contact: c2, enters: cart, at: '+0h'}", None),
    ("{contact: c2, enters: cart, at: '+1h'}", "entered at Tue 24 Nov 09:00 CET instead"),
    ("{contact: c3, enters: cart}", "c3 never entered cart: its cart_abandoned event at Tue 24 Nov 09:00 CET did "
                                    "not match the trigger's `where: event.value >= 20`"),
    ("{contact: c3, does_not_enter: cart}", None),
    ("{contact: c2, does_not_enter: cart}", "entered at Tue 24 Nov 09:00 CET: cart_abandoned"),
    ("{contact: c3, does_not_enter: coupon}", None),
    ("{contact: c4, exits: cart, at: '+2h'}", None),
    ("{contact: c4, exits: cart, reason: goal order_placed}", None),
    ("{contact: c4, exits: cart, reason: exit_on}", "exited for another reason: goal order_placed"),
    ("{contact: c2, exits: cart}", "c2 finished cart at Wed 25 Nov 10:00 CET"),
    ("{contact: c2, completes: cart}", None),
    ("{contact: c4, completes: cart}", "c4 left cart at Tue 24 Nov 11:00 CET: goal order_placed"),
    ("{contact: c4, converts: cart, at: '+2h'}", None),
    ("{contact: c2, converts: cart}", "never converted; c2 finished cart at Wed 25 Nov 10:00 CET"),
    ("{contact: c2, does_not_convert: cart}", None),
    ("{contact: c4, does_not_convert: cart}", "converted at Tue 24 Nov 11:00 CET"),
    ("{contact: c2, variant: {split: subject, is: a}}", None),
    ("{contact: c1, variant: {split: subject, is: b, workflow: cart}}", None),
    ("{contact: c2, variant: {split: subject, is: b}}", "got variant a"),
    ("{contact: c3, variant: {split: subject, is: a}}",
     "never reached the split; c3 never entered cart: its cart_abandoned event at Tue 24 Nov 09:00 CET did not "
     "match the trigger's `where: event.value >= 20`"),
    ("{contact: c1, reaches: last-call-sms}", None),
    ("{contact: c1, reaches: '4', workflow: cart, at: '+1d1h'}", None),
    ("{contact: c2, reaches: last-call-sms}", "never reached; c2 finished cart at Wed 25 Nov 10:00 CET"),
    ("{contact: c2, does_not_reach: last-call-sms}", None),
    ("{contact: c1, does_not_reach: last-call-sms}", "reached at Wed 25 Nov 04:00 EST"),
    ("{contact: c2, fields: {score: 5, plan: reminded, tags: [reminded]}}", None),
    ("{contact: c4, fields: {score: 5, tags: [reminded]}}", "score is 0; tags is []"),
    ("{contact: c3, fields: {email_consent: true, sms_consent: false, lists: []}}", None),
]


@pytest.mark.parametrize(("item", "failure"), KINDS, ids=[item for item, _ in KINDS])
def test_expectation_kinds(project: Path, item: str, failure: str | None):
    outcome = run(project, scenario(project, expect(item)))
    [only] = outcome.scenarios
    assert only.problems == []
    [result] = only.results
    assert (result.passed, result.message) == (failure is None, failure or "")


def test_every_kind_is_tested_both_ways():
    kinds = {kind: set() for kind in scenarios.KINDS if kind != "fails"}  # fails: tests of their own below
    for item, failure in KINDS:
        kind = next(kind for kind in scenarios.KINDS if f" {kind}:" in item)
        kinds[kind].add(failure is None)
    assert {kind: sorted(ways) for kind, ways in kinds.items()} == {kind: [False, True] for kind in kinds}


def test_the_failure_diff_marks_the_lines_that_happened_instead(project: Path):
    outcome = run(project, scenario(project, expect("{contact: c4, completes: cart}")))
    assert outcome.scenarios[0].results[0].diff == [
        "    Tue 24 Nov 09:00 CET  cart  trigger     enter                cart_abandoned",
        "    Tue 24 Nov 09:00 CET  cart  1           wait                 until Tue 24 Nov 10:00 CET",
        "    Tue 24 Nov 10:00 CET  cart  2           split                variant b (50%)",
        "    Tue 24 Nov 10:00 CET  cart  reminder-b  email cart/reminder",
        "    Tue 24 Nov 10:00 CET  cart  3           wait                 until Wed 25 Nov 10:00 CET",
        "    Tue 24 Nov 11:00 CET  cart  3           goal                 order_placed",
        "  - any time              cart  end         complete",
        "  + Tue 24 Nov 11:00 CET  cart  3           exit                 goal order_placed",
    ]


def test_a_contact_nothing_happened_to(project: Path):
    outcome = run(project, scenario(project, expect("{contact: c3, gets: cart/reminder, at: '+1h'}")))
    assert outcome.scenarios[0].results[0].diff == [
        "  - Tue 24 Nov 10:00 CET  cart  email cart/reminder",
        "    (nothing happened to c3 in cart)",
    ]


def test_fields_show_expected_and_actual_values_after_the_changes(project: Path):
    outcome = run(project, scenario(project, expect("{contact: c2, fields: {plan: gold, score: 5}}")))
    result = outcome.scenarios[0].results[0]
    assert (result.passed, result.message) == (False, "plan is 'reminded'")
    assert result.diff == [
        "    Wed 25 Nov 10:00 CET  cart  5  score   +5 → 5",
        "    Wed 25 Nov 10:00 CET  cart  6  update  plan = 'reminded', +tag reminded",
        "  - plan = 'gold'",
        "  + plan = 'reminded'",
    ]


# --- failures of the workflows themselves ------------------------------------------------------------------

COUPON = """\
start: 2026-11-24T09:00:00+01:00
for: 1d
contacts:
  - {id: c5, email: c5@shop.example, email_consent: true}
events:
  - {contact: c5, event: coupon_requested, at: "+1h"}
"""


def test_a_step_that_fails_fails_the_scenario(project: Path):
    outcome = run(project, scenario(project, COUPON + "expect:\n  - {contact: c5, enters: coupon}\n"))
    [passed, failure] = outcome.scenarios[0].results
    assert passed.passed and not failure.passed
    assert (failure.expectation.pos.line, failure.expectation.text, failure.message) == (
        7, "no step fails for c5 in coupon",
        "step 1 failed at Tue 24 Nov 10:00 CET: coupon pool GIFT is empty (the scenario has no `coupons`: "
        "add `coupons: samples/coupons.yaml` or pools of its own)")
    assert failure.diff == [
        "    Tue 24 Nov 10:00 CET  coupon  trigger  enter   coupon_requested",
        "  + Tue 24 Nov 10:00 CET  coupon  1        failed  coupon pool GIFT is empty",
    ]


def test_an_expected_failure_passes(project: Path):
    text = COUPON + "expect:\n  - {contact: c5, fails: coupon, reason: pool GIFT is empty}\n"
    outcome = run(project, scenario(project, text))
    assert [result.passed for result in outcome.scenarios[0].results] == [True]


@pytest.mark.parametrize(("item", "message"), [
    ("{contact: c5, fails: coupon, reason: timeout}", "failed for another reason: coupon pool GIFT is empty"),
    ("{contact: c5, fails: cart}", "nothing failed; c5 never entered cart: no cart_abandoned event for c5 in the run"),
])
def test_fails_when_nothing_or_something_else_failed(project: Path, item: str, message: str):
    outcome = run(project, scenario(project, COUPON + f"expect:\n  - {item}\n"))
    assert [(result.passed, result.message) for result in outcome.scenarios[0].results][0] == (False, message)


def test_coupons_given_inline_let_the_step_run(project: Path):
    text = COUPON + "coupons: {GIFT: [GIFT-1]}\nexpect:\n  - {contact: c5, gets: gift/code, at: '+1h'}\n"
    outcome = run(project, scenario(project, text))
    assert [result.passed for result in outcome.scenarios[0].results] == [True]


# --- data: inline or from files -------------------------------------------------------------------------

def test_contacts_and_events_from_files_relative_to_the_project(project: Path, write_files):
    write_files(project, {
        "data/contacts.csv": "id,email,email_consent\nc2,c2@shop.example,true\n",
        "data/events.yaml": "- {contact: c2, event: cart_abandoned, at: '+0h', value: 50}\n",
    })
    text = ("start: 2026-11-24T09:00:00+01:00\nfor: 5d\ncontacts: data/contacts.csv\nevents: data/events.yaml\n"
            "expect:\n  - {contact: c2, completes: cart}\n")
    outcome = run(project, scenario(project, text))
    assert [result.passed for result in outcome.scenarios[0].results] == [True]


def test_history_before_the_start_triggers_nothing(project: Path):
    history = HEAD.replace('at: "+0h", value: 50}', 'at: "-1d", value: 50}', 1)  # c1's abandoned cart
    text = history + "  - {contact: c1, does_not_enter: cart}\n"
    outcome = run(project, scenario(project, text))
    assert [result.passed for result in outcome.scenarios[0].results] == [True]


def test_workflows_limits_which_triggers_run(project: Path):
    text = HEAD.replace("start:", "workflows: [coupon]\nstart:") + "  - {contact: c2, does_not_enter: cart}\n"
    outcome = run(project, scenario(project, text))
    assert [result.passed for result in outcome.scenarios[0].results] == [True]


def test_the_project_is_linted_as_of_the_start_not_the_wall_clock(project: Path, write_files):
    # Past by the wall clock (a lint error for `mauto lint` today), still ahead at the scenario's start.
    write_files(project, {"workflows/sale.yaml": """
        id: sale
        version: 1
        name: Sale
        trigger: {event: sale_signup}
        steps:
          - wait: {until: "2020-01-06T09:00:00+01:00"}
          - id: sale-open
            email: cart/reminder
    """})
    text = ("start: 2020-01-01T09:00:00+01:00\nfor: 10d\ncontacts:\n  - {id: c2, email: c2@shop.example, "
            "email_consent: true}\nevents:\n  - {contact: c2, event: sale_signup, at: '+0h'}\n"
            "expect:\n  - {contact: c2, gets: cart/reminder, at: 2020-01-06T09:00:00+01:00}\n")
    outcome = run(project, scenario(project, text))
    assert [result.passed for result in outcome.scenarios[0].results] == [True]


# --- bad scenario files, at their line and column ------------------------------------------------------------

BAD = [
    ("contacts: []\nexpect: [{contact: c1, gets: sms}]\n", ["1:1: the scenario is missing `start`"]),
    ("start: 2026-11-24T09:00:00+01:00\nexpect: [{contact: c1, gets: sms}]\n",
     ["1:1: the scenario is missing `contacts`"]),
    ("start: 2026-11-24T09:00:00+01:00\ncontacts: []\nexpects: [{contact: c1, gets: sms}]\n",
     ["1:1: the scenario is missing `expect`", "3:1: unknown key `expects`; did you mean `expect`?"]),
    ("start: next tuesday\ncontacts: []\nexpect: [{contact: c1, gets: sms}]\n",
     ["1:8: `start`: `next tuesday` is not an ISO 8601 time (2026-03-02T10:00:00+01:00) or a time relative to the "
      "start (+2h, -40d)"]),
    ("start: 2026-11-24T09:00:00+01:00\nfor: 1 month\ncontacts: []\nexpect: [{contact: c1, gets: sms}]\n",
     ["2:6: `for`: `1 month` is not a duration; write a number and a unit (s, m, h, d, w), e.g. 30m, 1h, 3d, 2w"]),
    ("start: 2026-11-24T09:00:00+01:00\ncontacts: []\nexpect:\n  - {contact: c1}\n",
     ["4:5: expectation 1 has nothing to check; add one of: gets, gets_no, messages, enters, does_not_enter, exits, "
      "completes, converts, does_not_convert, variant, reaches, does_not_reach, fields, fails"]),
    ("start: 2026-11-24T09:00:00+01:00\ncontacts: []\nexpect:\n  - {gets: sms}\n",
     ["4:5: expectation 1 is missing `contact`"]),
    ("start: 2026-11-24T09:00:00+01:00\ncontacts: []\nexpect:\n  - {contact: c1, gets: sms, exits: cart}\n",
     ["4:30: expectation 1 checks two things, `gets` and `exits`; an expectation checks one: make them separate "
      "items"]),
    ("start: 2026-11-24T09:00:00+01:00\ncontacts: []\nexpect:\n  - {contact: c1, gets_no: sms, at: '+1h'}\n",
     ["4:33: `at` does not go with `gets_no` in expectation 1; a `gets_no` expectation takes: contact, gets_no, "
      "channel, workflow, step"]),
    ("start: 2026-11-24T09:00:00+01:00\ncontacts: []\nexpect:\n  - {contact: c1, enter: cart}\n",
     ["4:19: unknown key `enter` in expectation 1; did you mean `enters`?"]),
    ("start: 2026-11-24T09:00:00+01:00\ncontacts: []\nexpect:\n  - {contact: c1, gets: sms, channel: fax}\n",
     ["4:39: `channel` in expectation 1 must be one of email, sms, not the string `fax`"]),
    ("start: 2026-11-24T09:00:00+01:00\ncontacts: []\nexpect:\n  - {contact: c1, gets: Cart Reminder}\n",
     ["4:25: `gets` in expectation 1: `Cart Reminder` is not a template name; write its path under templates/ "
      "without the extension, e.g. cart/reminder-1"]),
    ("start: 2026-11-24T09:00:00+01:00\ncontacts: []\nexpect:\n  - {contact: c1, messages: -1}\n",
     ["4:29: `messages` in expectation 1 must be at least 0, not -1"]),
    ("start: 2026-11-24T09:00:00+01:00\ncontacts: []\nexpect:\n  - {contact: c1, variant: {split: subject}}\n",
     ["4:19: `variant` in expectation 1 is missing `is`"]),
    ("start: 2026-11-24T09:00:00+01:00\ncontacts: []\nexpect:\n  - {contact: c1, gets: sms, tolerance: 5 min}\n",
     ["4:41: `tolerance` in expectation 1: `5 min` is not a duration; write `5m`"]),
    ("start: 2026-11-24T09:00:00+01:00\ncontacts:\n  - {email: a@shop.example}\nexpect: [{contact: c1, gets: sms}]\n",
     ["3:5: contact 1 is missing `id`"]),
    ("start: 2026-11-24T09:00:00+01:00\ncontacts: 12\nexpect: [{contact: c1, gets: sms}]\n",
     ["2:11: `contacts` must be a string or a list, not the number 12"]),
    ("start: 2026-11-24T09:00:00+01:00\ncontacts: []\ncoupons: {GIFT: GIFT-1}\nexpect: [{contact: c1, gets: sms}]\n",
     ["3:17: `coupons.GIFT` must be a list, not the string `GIFT-1`"]),
    ("- a list\n", ["1:1: the scenario must be a mapping, not a list"]),
    ("", ["1:1: the scenario must be a mapping, not empty"]),
    ("start: [2026\n", ["2:1: invalid YAML: did not find expected ',' or ']'"]),
    ("start: 1\nstart: 2\n", ["2:1: duplicate key `start` (first defined at line 1); YAML would silently keep only "
                              "the last one"]),
]


@pytest.mark.parametrize(("text", "problems"), BAD, ids=[problems[0] for _, problems in BAD])
def test_bad_scenario_files(project: Path, text: str, problems: list[str]):
    path = project / "scenarios" / "bad.yaml"
    path.parent.mkdir()
    path.write_text(text, encoding="utf-8")
    [only] = run(project, path).scenarios
    assert only.status == "error" and only.results == []
    assert [f"{p.line}:{p.col}: {p.message}" for p in only.problems] == problems
    assert {p.path for p in only.problems} == {"scenarios/bad.yaml"}


CONTACTS = """\
start: 2026-11-24T09:00:00+01:00
contacts:
  - {id: c1, email: c1@shop.example, email_consent: maybe, shoe_size: 42, frist_name: Al}
  - {id: c1}
  - {id: ""}
events:
  - {contact: c9, event: cart_abandoned, at: "+1h"}
  - {contact: c1, event: cart_abandoned, at: soon}
expect:
  - {contact: c2, gets: cart/reminder}
"""

REFERENCES = """\
start: 2026-11-24T09:00:00+01:00
workflows: [cart, crat]
contacts:
  - {id: c1, email: c1@shop.example}
expect:
  - {contact: c1, gets: cart/remindr}
  - {contact: c1, gets: cart/reminder, channel: sms}
  - {contact: c1, reaches: last-cal}
  - {contact: c1, reaches: gift, workflow: cart}
  - {contact: c1, variant: {split: subject, is: c}}
  - {contact: c1, variant: {split: subjet, is: a}}
  - {contact: c1, converts: coupon}
  - {contact: c1, enters: cupon}
  - {contact: c1, gets: sms, channel: email}
  - {contact: c1, gets: sms, at: "+40d"}
  - {contact: c1, gets: sms, at: "-1h"}
  - {contact: c1, fields: {shoe: 1, score: many}}
"""


@pytest.mark.parametrize(("text", "problems"), [
    (CONTACTS, [
        "3:53: contact `c1`, field `email_consent`: must be true or false, not `maybe`",
        "3:60: unknown contact field `shoe_size`; declare it under `contact_fields` in mauto.yaml",
        "3:75: unknown contact field `frist_name`; did you mean `first_name`?",
        "4:10: duplicate contact id `c1`",
        "5:10: `id` must not be empty",
        "7:15: event for unknown contact `c9`",
        "8:46: `at`: `soon` is not an ISO 8601 time (2026-03-02T10:00:00+01:00) or a time relative to the start "
        "(+2h, -40d)",
        "10:15: no contact `c2` in this scenario",
    ]),
    (REFERENCES, [
        "2:19: no workflow `crat` in this project; did you mean `cart`?",
        "6:25: no template `cart/remindr` (templates/cart/remindr.email.html or .sms.txt); did you mean "
        "`cart/reminder`?",
        "7:25: no sms template `cart/reminder` (templates/cart/reminder.sms.txt); `cart/reminder` is an email "
        "template",
        "8:28: no step `last-cal` in any workflow; did you mean `last-call`?",
        "9:28: no step `gift` in workflow `cart`",
        "10:49: split `subject` has no variant `c`; its variants: a, b",
        "11:36: no split `subjet`; did you mean `subject`?",
        "12:29: workflow `coupon` has no `goal`: nothing to convert",
        "13:27: no workflow `cupon` in this project; did you mean `coupon`?",
        "14:39: `channel: email` contradicts `gets: sms`",
        "15:34: `at` is after the run ends (Thu 24 Dec 09:00 CET: `start` + 30d); make `for` longer",
        "16:34: `at` is before the run starts (Tue 24 Nov 09:00 CET); nothing can happen then",
        "17:28: unknown contact field `shoe`; did you mean `score`?",
        "17:44: field `score`: must be an integer, not `many`",
    ]),
], ids=["contacts and events", "references to the project"])
def test_bad_data_and_references(project: Path, text: str, problems: list[str]):
    [only] = run(project, scenario(project, text, "bad.yaml")).scenarios
    assert [f"{p.line}:{p.col}: {p.message}" for p in only.problems] == problems


def test_a_missing_data_file_is_one_problem_not_a_cascade(project: Path):
    text = "start: 2026-11-24T09:00:00+01:00\ncontacts: data/nope.yaml\nexpect:\n  - {contact: c1, gets: sms}\n"
    [only] = run(project, scenario(project, text, "bad.yaml")).scenarios
    assert [f"{p.path}:{p.line}:{p.col}: {p.message}" for p in only.problems] == [
        "scenarios/bad.yaml:2:11: `contacts`: no such file data/nope.yaml (paths are relative to mauto.yaml)"]


def test_a_bad_row_in_a_data_file_is_reported_in_that_file(project: Path, write_files):
    write_files(project, {"data/contacts.yaml": "- {id: c1, email_consent: maybe}\n"})
    text = "start: 2026-11-24T09:00:00+01:00\ncontacts: data/contacts.yaml\nexpect:\n  - {contact: c1, gets: sms}\n"
    [only] = run(project, scenario(project, text, "bad.yaml")).scenarios
    assert [f"{p.path}:{p.line}:{p.col}: {p.message}" for p in only.problems] == [
        "data/contacts.yaml:1:1: field `email_consent`: must be true or false, not `maybe`"]


# --- finding the files ---------------------------------------------------------------------------------------

def test_scenario_files_default_to_the_scenarios_folder_sorted(project: Path):
    for name in ("b.yaml", "a.yml", "sub/c.yaml", "notes.md"):
        (project / "scenarios" / name).parent.mkdir(parents=True, exist_ok=True)
        (project / "scenarios" / name).write_text("", encoding="utf-8")
    files = scenarios.scenario_files(load_project(project / "mauto.yaml"))
    assert [path.relative_to(project / "scenarios").as_posix() for path in files] == ["a.yml", "b.yaml",
                                                                                      "sub/c.yaml"]


def test_a_file_given_twice_runs_once(project: Path):
    path = scenario(project, expect("{contact: c2, completes: cart}"))
    assert scenarios.scenario_files(load_project(project / "mauto.yaml"), [path, Path("scenarios/cart.yaml")]) \
        == [path]


def test_an_empty_folder_is_a_usage_error(project: Path):
    (project / "empty").mkdir()
    with pytest.raises(UsageError, match="empty: no scenario files"):
        scenarios.scenario_files(load_project(project / "mauto.yaml"), [project / "empty"])


# --- the schema and the bundled scenarios ------------------------------------------------------------------

def test_the_scenario_schema_is_a_valid_2020_12_schema_with_every_kind():
    schema = json.loads((ROOT / "mauto" / "data" / "scenario.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    expectation = schema["$defs"]["expectation"]
    assert list(expectation["dependentSchemas"]) == list(scenarios.KINDS)
    assert all(value.get("description") for value in expectation["properties"].values())


def test_the_bundled_scenarios_pass(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    outcome = scenarios.run_scenarios(load_project(ROOT / "mauto.yaml"))
    failures = [line for line in scenarios.text_lines(outcome) if not line.startswith(("PASS", "    "))]
    assert outcome.ok, "\n".join(failures)
    assert outcome.passed >= 100


def test_every_workflow_of_the_sample_project_has_a_scenario():
    text = "".join(path.read_text(encoding="utf-8") for path in (ROOT / "scenarios").glob("*.yaml"))
    missing = []
    for path in workflow_files(ROOT / "workflows"):
        source = path.read_text(encoding="utf-8")
        workflow_id = path.stem
        templates = [line.split(":", 1)[1].strip() for line in source.splitlines()
                     if line.strip().startswith(("email:", "sms:"))]
        if workflow_id not in text and not any(template in text for template in templates):
            missing.append(workflow_id)
    assert missing == []


def test_the_docs_describe_every_expectation_kind():
    page = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    assert "mauto test" in page
    assert [kind for kind in scenarios.KINDS if f"`{kind}`" not in page] == []
