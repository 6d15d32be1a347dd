"""A hostile review of "audiences in SQL" in the daemon (mauto/driver/loop.py `Driver.segment_candidates`,
mauto/driver/sqlite.py `SqliteContacts.matching`): a segment's first check now looks only at the contacts the
compiled query keeps (mauto/store/audience_sql.py `audience_ids`), and must still enter every contact the
Python check (`Driver.check_segment`) would enter, as it did when it checked every contact and as `mauto
simulate` (which still checks every contact) does. Each test failed on the code as the review found it, and
says what was wrong and what the right answer is."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mauto.config import load_project
from mauto.deploy import deploy
from mauto.simulate import simulate
from tests.daemon.harness import Daemon, write

# 11:00 UTC on Tuesday 1 December 2026 is 01:00 on Wednesday 2 December in Pacific/Kiritimati (UTC+14).
DEPLOYED = datetime.fromisoformat("2026-12-01T11:00:00+00:00")
CHECKED = DEPLOYED + timedelta(minutes=30)

SEGMENT = "contact.first_name == now|date('%A')"


def _weekday_workflow(daemon: Daemon, settings: str) -> None:
    write(daemon.root / "workflows" / "weekday.yaml", f"""\
        id: weekday
        version: 1
        name: Weekday
        category: transactional
        trigger: {{segment: "{SEGMENT}"}}
        {settings}
        steps:
          - update: {{add_tags: [weekday]}}
        """)
    daemon.project = load_project(daemon.root / "mauto.yaml")


def _set_fields(daemon: Daemon, contact: str, fields: dict) -> None:
    with daemon.store.transaction() as db:
        db.execute("UPDATE contacts SET fields = ? WHERE id = ?", [json.dumps(fields), contact])


def _simulated(daemon: Daemon, contacts: list[dict], tmp_path: Path) -> list[str]:
    """The contacts `mauto simulate` enters into `weekday` at CHECKED (it checks every contact in Python)."""
    path = tmp_path / "sim-contacts.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in contacts), encoding="utf-8")
    events = tmp_path / "sim-events.jsonl"
    events.write_text("", encoding="utf-8")
    result = simulate(daemon.project, None, CHECKED, timedelta(minutes=5), contacts=path, events=events)
    return sorted({entry.contact for entry in result.timeline if entry.workflow == "weekday" and entry.kind == "enter"})


# --- 1. a constant the SQL computes in the project's zone, the check in the workflow's or contact's ----------
#
# compile_where folds the parts that read no contact (`now|date('%A')`) once, with `_zone` = the zone it is
# given: SqliteContacts.matching passes the project's (`self.zone`). But Driver.check_segment evaluates the
# segment in `Engine.scope(workflow, contact, ...)`, whose zone is `Engine.zone_name(workflow, contact)`: the
# workflow's `settings.timezone`, else the contact's own `timezone` field. The `date` filter
# (mauto/workflow/expressions.py `date_filter`) shows `now` in that zone. So at 11:30 UTC on a Tuesday the query
# looks for first_name == 'Tuesday' (UTC), while the check, for a contact in Pacific/Kiritimati, looks for
# 'Wednesday': the query drops ana, the first check never looks at her, and she is never entered; before the
# change (every contact checked), and in `mauto simulate`, she is. Right answer: ana enters `weekday` at the
# first check. (A fix: treat a constant that calls the `date` filter, or any filter reading `_zone`, as not
# compiled when the check's zone can differ per contact, or compile with the zone the check will use.) Fixed:
# SqliteContacts.matching gives compile_where no zone, and a part reading it does not compile: every contact.


@pytest.mark.parametrize("how", ["workflow-zone", "contact-zone"])
def test_a_segment_reading_now_in_the_checks_zone_enters_the_contact_it_matches(
        daemon: Daemon, tmp_path: Path, how: str) -> None:
    if how == "workflow-zone":
        _weekday_workflow(daemon, "settings: {timezone: Pacific/Kiritimati}")
        ana = {"first_name": "Wednesday"}
    else:
        _weekday_workflow(daemon, "")
        ana = {"first_name": "Wednesday", "timezone": "Pacific/Kiritimati"}
    _set_fields(daemon, "ana", ana)
    contacts = [{"id": "ana", "email": "ana@example.com", "email_consent": True, **ana}]
    assert _simulated(daemon, contacts, tmp_path) == ["ana"]  # simulate: every contact checked in Python
    deploy(daemon.project, daemon.store, DEPLOYED)
    daemon.tick(CHECKED)
    assert daemon.rows("SELECT contact FROM enrollments WHERE workflow = 'weekday'") == [("ana",)]



# --- 2. on PostgreSQL one contact's odd fields text fails the whole first check ------------------------------
#
# `SqliteContacts.matching` runs `audience_ids`, whose PostgreSQL query reads every row's fields through
# jsonb_to_record(fields::jsonb) (audience_sql `_record_join`). For a fields text that is not a JSON object (`[]`,
# which Python's record_of reads as no fields) or holds a number past numeric's range (`1e999999`, Python's inf),
# PostgreSQL raises for the whole statement: the `segments` item fails ("segments trigger: InvalidParameterValue:
# cannot call populate_composite on an array" in `failures`), and no contact is checked: ana, who matches, is
# not entered. Before (every contact checked in Python), and on SQLite, ana enters and cy (the odd row) is found
# outside the segment. Right answer: ana enters at the first check. (The same rows make the date triggers' query
# raise: tests/store/test_audience_review.py.)


@pytest.mark.parametrize("fields", ["[]", '{"n": 1e999999}'])
def test_one_contacts_odd_fields_text_does_not_fail_the_segments_first_check(daemon: Daemon, fields: str) -> None:
    _weekday_workflow(daemon, "")
    with daemon.store.transaction() as db:
        db.execute("UPDATE contacts SET fields = ? WHERE id = 'cy'", [fields])
    _set_fields(daemon, "ana", {"first_name": "Tuesday"})  # 11:30 UTC on a Tuesday, in the project's zone (UTC)
    deploy(daemon.project, daemon.store, DEPLOYED)
    report = daemon.tick(CHECKED)
    assert report.problems == []
    assert daemon.rows("SELECT contact FROM enrollments WHERE workflow = 'weekday'") == [("ana",)]
