"""Erasing a contact the daemon knows: its enrollments end, what was written about it is scrubbed, the next tick
goes on (it used to crash on the erased contact's wake-up)."""
from __future__ import annotations

import fcntl
import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from mauto.cli import app
from mauto.store.contacts import erase
from tests.daemon.harness import T0, Daemon


def test_an_erased_contact_in_flight_is_ended_and_scrubbed_and_the_next_tick_goes_on(daemon: Daemon) -> None:
    daemon.event("ana", "signed_up", T0)
    daemon.event("ben", "signed_up", T0)
    daemon.event("ana", "ordered", T0)  # the webhook step: a call with ana's id in its body
    assert daemon.tick(T0 + timedelta(minutes=1)).sent == 3
    done = erase(daemon.store, "ana")
    anonymous = done["anonymous_id"]
    assert done["enrollments_ended"] == 1  # promo waits a day; hooked had completed
    [(state, reason, data)] = daemon.rows("SELECT state, reason, data FROM enrollments WHERE contact = ? AND "
                                          "workflow = 'promo'", anonymous)
    assert (state, reason) == ("exited", "the contact was erased")
    assert json.loads(data)["contact"] == anonymous and json.loads(data)["trigger_event"] is None
    assert daemon.rows("SELECT to_address, subject, length(body) FROM messages WHERE contact = ?", anonymous) == [
        (None, None, 0), (None, None, 0)]
    assert daemon.rows("SELECT request FROM calls") == [("{}",)]
    assert {detail for (detail,) in daemon.rows("SELECT detail FROM step_log WHERE contact = ?", anonymous)} == {""}
    dump = "\n".join(str(row) for table in ("enrollments", "messages", "calls", "step_log", "tasks")
                     for row in daemon.rows(f"SELECT * FROM {table}"))
    assert "ana@example.com" not in dump and "Ana" not in dump

    report = daemon.tick(T0 + timedelta(days=1, minutes=5))  # used to raise AttributeError on ana's wake-up
    assert (report.advanced, report.sent, report.failed) == (1, 1, 0)
    assert sorted(m.message["Subject"].split()[0] for m in daemon.smtp.messages) == ["again", "hello", "hello",
                                                                                     "thanks"]


def test_a_contact_erased_in_the_middle_of_a_tick_is_ended_not_a_crash(daemon: Daemon, monkeypatch) -> None:
    # The store's erase ends enrollments in flight; a tick that had one loaded before the erase ends it itself.
    daemon.event("ana", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1))
    from mauto.daemon import tick
    from mauto.store import runtime

    loaded = runtime.due_enrollments

    def erase_after_loading(db, until, contacts=None):
        found = list(loaded(db, until, contacts))
        daemon.store.db.execute("UPDATE contacts SET erased_at = '2026-12-02T00:00:00Z', email = NULL")
        return iter(found)

    monkeypatch.setattr(tick.runtime, "due_enrollments", erase_after_loading)
    report = daemon.tick(T0 + timedelta(days=1, minutes=5))
    assert (report.advanced, report.sent) == (0, 0)
    assert daemon.rows("SELECT state, reason FROM enrollments") == [("exited", "the contact was erased")]


@pytest.mark.sqlite_only("holds the flock beside the SQLite file (PostgreSQL: tests/daemon/test_postgres.py)")
def test_erase_waits_for_a_running_tick_and_says_so_when_it_does_not_end(daemon: Daemon, monkeypatch) -> None:
    from mauto.daemon import lock

    monkeypatch.chdir(daemon.root)
    original = lock.TickLock.acquire
    monkeypatch.setattr(lock.TickLock, "acquire", lambda self, wait=0.0, doing="": original(self, 0.3, doing))
    with open(f"{daemon.root / 'mauto.db'}.lock", "w", encoding="utf-8") as holder:
        holder.write("pid 4242 on mail-1, since 2026-12-01T09:00:00Z")
        holder.flush()
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        result = CliRunner().invoke(app, ["contacts", "erase", "ana", "--yes"])
    assert result.exit_code == 1, result.output
    assert "another tick is running against this store (pid 4242 on mail-1, since 2026-12-01T09:00:00Z); " \
           "nothing was erased; try again" in result.output
    assert daemon.rows("SELECT count(*) FROM contacts WHERE id = 'ana'") == [(1,)]
    result = CliRunner().invoke(app, ["contacts", "erase", "ana", "--yes"])
    assert result.exit_code == 0, result.output
    assert daemon.rows("SELECT count(*) FROM contacts WHERE id = 'ana'") == [(0,)]
