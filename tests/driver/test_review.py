"""A hostile review of the one-loop refactor (b3fe23c and after): behaviour the loop or its ports changed
without meaning to. Each test states what the code did before the refactor (1f2ddbf: `mauto/simulate.py`'s
`Simulation`, `mauto/runner.py`'s `TickDriver`) and fails on the code that differs.

The simulation tests run on both trees (they use only `mauto.simulate.simulate` and the project files); the
port contract test exists only since the ports do, and holds them to what `mauto/driver/ports.py` promises."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mauto.config import load_project
from mauto.simulate import simulate

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
NINE = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _start_and_schedule(root: Path, write_files: Callable[[Path, dict[str, str | bytes]], Path],
                        reentry: str) -> Path:
    """`a` (on signed_up) starts `w`; `w` also runs on a schedule at 09:00; ana signs up at 09:00."""
    return write_files(root, {
        "mauto.yaml": """
            timezone: UTC
            sender: {email: "Shop <shop@example.com>"}
            channels: {email: {transport: smtp, host: 127.0.0.1, port: 1025}}
            events: {signed_up: {}}
            """,
        "workflows/a.yaml": """
            id: a
            version: 1
            name: A
            category: transactional
            trigger: {event: signed_up}
            steps:
              - start: w
            """,
        "workflows/w.yaml": f"""
            id: w
            version: 1
            name: W
            category: transactional
            trigger: {{schedule: {{cron: "0 9 * * *"}}}}
            reentry: {reentry}
            steps:
              - id: hi
                email: t/hi
            """,
        "templates/t/hi.email.html": "---\nsubject: hi\n---\n<p>hi</p>\n",
        "contacts.yaml": "- {id: ana, email: ana@example.com, email_consent: true}\n",
        "events.yaml": '- {contact: ana, event: signed_up, at: "2026-12-01T09:00:00+00:00"}\n',
    })


def _w_timeline(root: Path) -> list[tuple[datetime, str, str, str]]:
    result = simulate(load_project(root / "mauto.yaml"), None, START, timedelta(hours=2),
                      contacts=root / "contacts.yaml", events=root / "events.yaml")
    return [(entry.at, entry.step, entry.kind, str(entry.detail)) for entry in result.timeline
            if entry.workflow == "w"]


# --- 1. the tick's crash-recovery guard now runs in the simulation ------------------------------------------
#
# Driver._due (mauto/driver/loop.py) returns silently when the contact has any enrollment in the workflow that
# entered at the item's very moment: in the old runner.py that guard was the tick's own ("done by an earlier
# tick that stopped before its end"), and the old simulation went on to `_try_enroll`, which logged why the
# contact did not enter (or entered again). A `start` step that enters the contact at the moment its
# schedule (or date, or inactivity) trigger fires is no earlier run, yet the trigger now vanishes without a
# trace from `mauto simulate` and `mauto test` timelines.


def test_a_schedule_that_fires_when_a_start_step_entered_the_contact_still_says_why_it_skipped(
        tmp_path: Path, write_files) -> None:
    root = _start_and_schedule(tmp_path, write_files, "never")
    assert _w_timeline(root) == [
        (NINE, "trigger", "enter", "started by a"),
        (NINE, "hi", "send", ""),
        (NINE, "end", "complete", "reached the end"),
        (NINE, "trigger", "skip", "entered before (reentry: never)"),  # gone since b3fe23c
    ]


def test_a_schedule_that_fires_when_a_start_step_entered_the_contact_enters_again_when_reentry_allows(
        tmp_path: Path, write_files) -> None:
    # reentry: always, and the first enrollment has ended (one email, done at once): the schedule enters ana
    # again and mails her again, as it did before; now the second entry and its message are silently lost.
    root = _start_and_schedule(tmp_path, write_files, "always")
    sends = [entry for entry in _w_timeline(root) if entry[2] in ("enter", "send")]
    assert sends == [(NINE, "trigger", "enter", "started by a"), (NINE, "hi", "send", ""),
                     (NINE, "trigger", "enter", "schedule 0 9 * * *"), (NINE, "hi", "send", "")], sends


# --- 2. the SQLite enrollments port: an ended enrollment comes back in `active` --------------------------
#
# ports.Enrollments.active promises "the ids of the contact's enrollments that have not ended". The old
# TickDriver took an ended enrollment out of its `active` map with `self.active[contact.id]`, a lazy map that
# loaded the contact's list first; SqliteEnrollments.save removes it only when the list is already loaded,
# and a list loaded later in the same batch is read from the store before the batch is flushed, so it still
# holds the ended one. The memory port answers [] (the contract suite never loads the list after the end).


def test_an_enrollment_ended_before_its_contact_s_list_is_loaded_is_not_listed_active(fresh_daemon) -> None:
    from tests.daemon.harness import T0
    from tests.driver.test_contract import MemorySet, SqliteSet, _enrollment

    listed = {}
    for made in (MemorySet(fresh_daemon), SqliteSet(fresh_daemon)):
        try:
            first = _enrollment(made, "ana")
            made.settle()  # written, and forgotten: what follows reads it back
            enrollments = made.ports.enrollments
            ended = enrollments.get(first.id)  # a wake-up loads the enrollment, not the contact's list
            assert ended is not None
            ended.state, ended.ended_at = "completed", T0
            enrollments.save(ended)
            listed[made.name] = enrollments.active("ana")  # an event for ana, later in the same batch
        finally:
            if made.name == "sqlite":
                fresh_daemon.store.db.execute("ROLLBACK")
    assert listed == {"memory": [], "sqlite": []}
