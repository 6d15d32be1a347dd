"""Blackout dates (holidays) beside quiet hours and send days: `limits.blackout_dates` in mauto.yaml, or a
workflow's own `settings.blackout_dates` (a list instead of the project's, or false for none). A marketing
send due on such a day, in the contact's zone, waits for the next allowed moment, saying why in the step log.

Before: `blackout_dates` was an unknown key (a schema error) and nothing moved a send off a holiday.
"""
from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest

from mauto.config import load_project
from mauto.engine.interpreter import Settings
from mauto.engine.records import ContactState, Event
from mauto.engine.timing import QuietHours, SendRules, next_allowed
from mauto.errors import MautoError
from mauto.lint import runner

from .helpers import NEW_YORK, PARIS, Run, contact, paris, same, workflow

NIGHT = {"start": "21:00", "end": "08:00"}
CHRISTMAS = {"quiet_hours": NIGHT, "blackout_dates": ["2026-12-25", "2027-01-01"]}
SEND = """
    steps:
      - id: hello
        email: t/hi
    """


def postponed(run: Run) -> list[str]:
    return [str(entry.detail) for entry in run.entries("postponed")]


def test_a_send_due_on_a_blackout_date_waits_for_the_next_allowed_moment():
    run = Run(workflow(SEND), limits=CHRISTMAS)
    run.enroll(paris(2026, 12, 25, 10, 0))
    assert postponed(run) == ["blackout 2026-12-25; quiet hours 21:00–08:00 → 2026-12-26T08:00:00+01:00"]
    assert same(run.enrollment.wake_time, paris(2026, 12, 26, 8, 0))
    run.run_until(paris(2026, 12, 27, 0, 0))
    [(moment, channel, template)] = run.sends()
    assert same(moment, paris(2026, 12, 26, 8, 0)) and (channel, template) == ("email", "t/hi")
    [sent] = run.entries("send")
    assert sent.detail == f"postponed from {paris(2026, 12, 25, 10, 0).isoformat()}"
    for day in (24, 26):  # the day before and the day after are not touched
        run = Run(workflow(SEND), limits=CHRISTMAS)
        run.enroll(paris(2026, 12, day, 10, 0))
        assert postponed(run) == [] and same(run.sends()[0][0], paris(2026, 12, day, 10, 0))
    # transactional messages ignore blackout dates, as they ignore quiet hours
    run = Run(workflow("category: transactional\n" + SEND.strip("\n").replace("    ", "", 1)), limits=CHRISTMAS)
    run.enroll(paris(2026, 12, 25, 10, 0))
    assert postponed(run) == [] and same(run.sends()[0][0], paris(2026, 12, 25, 10, 0))


def test_the_blackout_date_is_the_contacts_own():
    # 03:00 on the 26th in Paris is still 21:00 on Christmas Day in New York.
    moment = paris(2026, 12, 26, 3, 0)
    parisian = Run(workflow(SEND), contact("ana"), limits={"blackout_dates": ["2026-12-25"]})
    parisian.enroll(moment)
    assert postponed(parisian) == [] and same(parisian.sends()[0][0], moment)
    new_yorker = Run(workflow(SEND), contact("bob", timezone="America/New_York"),
                     limits={"blackout_dates": ["2026-12-25"]})
    new_yorker.enroll(moment)
    assert postponed(new_yorker) == ["blackout 2026-12-25 → 2026-12-26T00:00:00-05:00"]
    assert same(new_yorker.enrollment.wake_time, datetime(2026, 12, 26, 0, 0, tzinfo=NEW_YORK))


def test_consecutive_blackout_dates_and_send_days_are_skipped_together():
    rules = SendRules(QuietHours(time(21, 0), time(8, 0)), ("mon", "tue", "wed", "thu", "fri"),
                      blackout=frozenset({date(2026, 12, 24), date(2026, 12, 25), date(2026, 12, 28)}))
    moment, why = next_allowed(paris(2026, 12, 24, 10, 0), PARIS, rules)  # Thursday
    assert same(moment, paris(2026, 12, 29, 8, 0))  # Tuesday: Christmas Eve, Day, the weekend, the 28th
    assert why == ["blackout 2026-12-24", "blackout 2026-12-25", "sat is not a send day", "blackout 2026-12-28",
                   "quiet hours 21:00–08:00"]
    # a long run of blackout dates is skipped whole (more than the 32 moves next_allowed makes)
    january = frozenset(date(2027, 1, day) for day in range(1, 32))
    moment, why = next_allowed(paris(2027, 1, 1, 12, 0), PARIS, SendRules(blackout=january))
    assert same(moment, paris(2027, 2, 1, 0, 0)) and len(why) == 31


def test_a_workflow_may_replace_the_projects_blackout_dates_or_turn_them_off():
    own = Run(workflow("settings:\n  blackout_dates: [\"2026-12-24\"]\n" + SEND.strip("\n").replace("    ", "", 1)),
              limits=CHRISTMAS)
    own.enroll(paris(2026, 12, 25, 10, 0))  # the project's Christmas is not this workflow's
    assert postponed(own) == [] and same(own.sends()[0][0], paris(2026, 12, 25, 10, 0))
    own = Run(own.workflow, limits=CHRISTMAS)
    own.enroll(paris(2026, 12, 24, 10, 0))
    assert postponed(own) == ["blackout 2026-12-24; quiet hours 21:00–08:00 → 2026-12-25T08:00:00+01:00"]
    off = Run(workflow("settings:\n  blackout_dates: false\n" + SEND.strip("\n").replace("    ", "", 1)),
              limits=CHRISTMAS)
    off.enroll(paris(2026, 12, 25, 10, 0))  # the Christmas greeting goes out on Christmas Day
    assert postponed(off) == [] and same(off.sends()[0][0], paris(2026, 12, 25, 10, 0))


def test_a_simulation_keeps_the_projects_blackout_dates(sim_with_limits):
    project = sim_with_limits('limits:\n  quiet_hours: {start: "21:00", end: "08:00"}\n'
                              '  blackout_dates: ["2026-12-25"]\n')
    result = project.run(["""
        id: greet
        version: 1
        name: Greet
        trigger: {event: signed_up}
        steps:
          - id: hello
            email: t/hi
        """], [ContactState("ana", {"email": "ana@example.com", "email_consent": True, "timezone": "Europe/Paris"})],
        [Event("ana", "signed_up", paris(2026, 12, 25, 9, 30))],
        paris(2026, 12, 24, 0, 0), paris(2026, 12, 28, 0, 0))
    [message] = result.messages
    assert same(message.at, paris(2026, 12, 26, 8, 0))
    [entry] = [entry for entry in result.timeline if entry.kind == "postponed"]
    assert str(entry.detail) == "blackout 2026-12-25; quiet hours 21:00–08:00 → 2026-12-26T08:00:00+01:00"


# --- bad dates: errors at their place --------------------------------------------------------------------

PROJECT = """\
timezone: Europe/Paris
unsubscribe_url: "https://shop.example/unsubscribe/{{ token }}"
limits:
  blackout_dates:
    - "2026-12-25"
    - 2026-02-29
"""


def _lint(root: Path, project: str, workflow_text: str | None = None):
    (root / "mauto.yaml").write_text(project, encoding="utf-8")
    (root / "workflows").mkdir(exist_ok=True)
    if workflow_text is not None:
        (root / "workflows" / "wf.yaml").write_text(workflow_text, encoding="utf-8")
    cache = getattr(runner, "_line_cache", None)
    if isinstance(cache, dict):
        cache.clear()
    result = runner.lint(load_project(root / "mauto.yaml", display_root=root), datetime(2026, 11, 23, tzinfo=UTC))
    return [(problem.path, problem.line, problem.col, problem.rule) for problem in result.problems
            if "blackout_dates" in problem.message]


def test_a_date_that_does_not_exist_is_a_lint_error_at_its_line(tmp_path: Path):
    assert _lint(tmp_path, PROJECT) == [("mauto.yaml", 6, 7, "schema")]  # 2026 is not a leap year
    assert _lint(tmp_path, PROJECT.replace("2026-02-29", "2028-02-29")) == []  # 2028 is
    for bad in ("25/12/2026", "2026-12-32", "2026-13-01", "'2026-12-25T00:00'", "9999-12-25"):
        assert _lint(tmp_path, PROJECT.replace("2026-02-29", bad)) == [("mauto.yaml", 6, 7, "schema")], bad


def test_a_bad_date_in_a_workflows_settings_is_a_lint_error_at_its_line(tmp_path: Path):
    source = ("id: wf\nversion: 1\nname: W\ntrigger: {event: go}\nsettings:\n"
              "  blackout_dates: [\"2026-12-25\", \"2026-11-31\"]\nsteps:\n  - wait: 1h\n")
    assert _lint(tmp_path, PROJECT.replace("2026-02-29", "2028-02-29"), source) == [
        ("workflows/wf.yaml", 6, 34, "schema")]


def test_the_engine_refuses_a_bad_date_at_its_place_in_mauto_yaml(tmp_path: Path):
    (tmp_path / "mauto.yaml").write_text(PROJECT, encoding="utf-8")
    project = load_project(tmp_path / "mauto.yaml", display_root=tmp_path)
    with pytest.raises(MautoError) as raised:
        Settings.from_project(project)
    assert str(raised.value) == ("mauto.yaml:6:7: limits.blackout_dates: `2026-02-29` is not a date; write "
                                 "YYYY-MM-DD, e.g. 2026-12-25")
    (tmp_path / "mauto.yaml").write_text(PROJECT.replace("2026-02-29", "2028-02-29"), encoding="utf-8")
    project = load_project(tmp_path / "mauto.yaml", display_root=tmp_path)
    assert project.blackout_dates == frozenset({date(2026, 12, 25), date(2028, 2, 29)})
    assert Settings.from_project(project).limits["blackout_dates"] == ["2026-12-25", "2028-02-29"]
