"""The daemon's guarantees (docs/daemon.md), each against a real store, a real SMTP server and a real HTTP
server on 127.0.0.1: no mock of smtplib or of the HTTP client."""
from __future__ import annotations

import fcntl
import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mauto.daemon import tick as runner
from mauto.daemon.lock import RunnerBusy, TickLock
from mauto.daemon.outbox import drop_message, retry_message
from mauto.deploy import deploy
from mauto.errors import MautoError
from mauto.store import open_store, runtime
from tests.daemon.harness import DEPLOYED, T0, Daemon, write
from tests.servers import HttpServer, SmtpServer


def test_a_tick_enrolls_sends_once_and_the_wait_resumes_a_day_later(daemon: Daemon) -> None:
    daemon.event("ana", "signed_up", T0)
    report = daemon.tick(T0 + timedelta(minutes=1))
    assert (report.enrolled, report.sent, report.failed) == (1, 1, 0)
    assert report.line().startswith("tick 2026-12-01T09:01:00+00:00: 1 enrolled, 0 advanced, 1 sent, 0 retried, "
                                    "0 parked, 0 failed in ")
    [received] = daemon.smtp.messages
    assert received.rcpt_tos == ["ana@example.com"] and received.message["Subject"] == "hello Ana"
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received.message["Message-ID"] == daemon.rows("SELECT message_id FROM messages")[0][0]
    assert daemon.tick(T0 + timedelta(hours=23)).sent == 0  # nothing due: nothing sent again
    report = daemon.tick(T0 + timedelta(days=1, minutes=5))
    assert (report.advanced, report.sent) == (1, 1)
    assert [m.message["Subject"] for m in daemon.smtp.messages] == ["hello Ana", "again Ana"]
    # the second send is decided at its own moment, not at the tick's
    assert daemon.rows("SELECT created_at FROM messages WHERE step = 'again'") == [
        ("2026-12-02T09:00:00.000000+00:00",)]
    assert set(daemon.smtp.message_ids().values()) == {1}


def test_a_big_tick_reads_enrollments_back_and_one_left_without_a_wake_up_still_goes_on(daemon: Daemon,
                                                                                          monkeypatch) -> None:
    # Past runner.KEEP a tick keeps nothing it loaded between batches; an enrollment the store holds as active
    # with no wake-up (wake_at NULL: left so by an older tick) must still be advanced, from where it stands.
    monkeypatch.setattr(runner, "KEEP", 0)
    monkeypatch.setattr(runner, "BATCH", 1)
    daemon.event("ana", "signed_up", T0)
    daemon.event("ben", "signed_up", T0)
    assert daemon.tick(T0 + timedelta(minutes=1)).sent == 2
    [(ident, data)] = daemon.rows("SELECT id, data FROM enrollments WHERE contact = 'ben'")
    left = dict(json.loads(data), wake_at=None)
    daemon.store.db.execute("UPDATE enrollments SET wake_at = NULL, data = ? WHERE id = ?", [json.dumps(left), ident])
    daemon.store.db.conn.commit()
    report = daemon.tick(T0 + timedelta(days=1, minutes=5))
    assert (report.advanced, report.sent) == (2, 2)
    assert sorted(m.message["Subject"] for m in daemon.smtp.messages) == [
        "again Ana", "again Ben Bcc: evil@example.com", "hello Ana", "hello Ben Bcc: evil@example.com"]
    # ben went on at the tick's moment (he had no wake-up), ana at her own
    assert daemon.rows("SELECT contact, created_at FROM messages WHERE step = 'again' ORDER BY contact") == [
        ("ana", "2026-12-02T09:00:00.000000+00:00"), ("ben", "2026-12-02T09:05:00.000000+00:00")]


def test_a_newline_in_a_first_name_adds_no_header(daemon: Daemon) -> None:
    daemon.event("ben", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1))
    [received] = daemon.smtp.messages
    assert received.rcpt_tos == ["ben@example.com"]
    headers = received.content.split(b"\r\n\r\n", 1)[0]
    assert received.message["Bcc"] is None and b"\nBcc:" not in headers
    assert received.message["Subject"] == "hello Ben Bcc: evil@example.com"


def test_marketing_never_goes_without_consent(daemon: Daemon) -> None:
    daemon.event("cy", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1))
    assert daemon.smtp.messages == [] and daemon.statuses() == {}
    assert daemon.rows("SELECT step, detail FROM step_log WHERE contact = 'cy' AND kind = 'suppressed'") == [
        ("hello", "no email consent")]


def test_a_bounce_suppresses_the_address_and_a_queued_message_is_cancelled(daemon: Daemon) -> None:
    daemon.event("ana", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1))
    daemon.tick(T0 + timedelta(days=1), send=False)  # `again` queued, not yet sent
    daemon.event("ana", "email_bounced", T0 + timedelta(days=1, minutes=1), kind="hard")
    report = daemon.tick(T0 + timedelta(days=1, minutes=2))
    assert report.cancelled == 1 and report.sent == 0
    assert [m.message["Subject"] for m in daemon.smtp.messages] == ["hello Ana"]
    [(status, answer)] = daemon.rows("SELECT status, answer FROM messages WHERE step = 'again'")
    assert status == "cancelled" and "suppression list" in answer
    assert daemon.store.is_suppressed("ANA@example.com", "email")


def test_a_temporary_refusal_is_retried_with_backoff_and_sent_once(daemon: Daemon) -> None:
    daemon.smtp.on("rcpt", "451 4.3.0 try again later", times=1)
    daemon.event("ana", "signed_up", T0)
    report = daemon.tick(T0 + timedelta(minutes=1))
    assert (report.sent, report.retried) == (0, 1)
    [(status, attempts, next_try_at, answer)] = daemon.rows(
        "SELECT status, attempts, next_try_at, answer FROM messages")
    assert status == "pending" and attempts == 1 and "451" in answer
    assert T0 + timedelta(minutes=1) < datetime.fromisoformat(next_try_at) <= T0 + timedelta(minutes=2)
    daemon.tick(T0 + timedelta(minutes=5))
    assert daemon.statuses() == {f"{daemon.enrollment('promo', 'ana')}:steps.0:1": "sent"}
    assert len(daemon.smtp.delivered()) == 1 and set(daemon.smtp.message_ids().values()) == {1}


def test_a_permanent_refusal_is_parked_with_the_answer_and_can_be_retried_by_hand(daemon: Daemon) -> None:
    daemon.smtp.on("rcpt", "550 5.1.1 no such user", times=1)
    daemon.event("ana", "signed_up", T0)
    report = daemon.tick(T0 + timedelta(minutes=1))
    assert report.parked == 1
    [(message_id, status, answer)] = daemon.rows("SELECT id, status, answer FROM messages")
    assert status == "parked" and answer == "RCPT TO: 550 5.1.1 no such user"
    assert daemon.tick(T0 + timedelta(hours=1)).sent == 0  # parked stays parked
    retry_message(daemon.store, message_id, T0 + timedelta(hours=1))
    assert daemon.tick(T0 + timedelta(hours=1, minutes=1)).sent == 1
    assert len(daemon.smtp.delivered()) == 1


def test_out_of_retries_is_parked(daemon: Daemon) -> None:
    daemon.smtp.on("mail", "451 4.3.0 busy")  # a 421 is pushback, which slows the channel (test_pace_outbox)
    daemon.event("ana", "signed_up", T0)
    now = T0 + timedelta(minutes=1)
    for _ in range(12):
        daemon.tick(now)
        now += timedelta(hours=2)
    [(status, attempts, answer)] = daemon.rows("SELECT status, attempts, answer FROM messages WHERE step = 'hello'")
    assert status == "parked" and attempts == 8 and answer == "gave up after 8 attempts: MAIL FROM: 451 4.3.0 busy"


def test_a_hand_off_cut_off_is_unknown_and_never_resent(daemon: Daemon) -> None:
    daemon.smtp.on("data", drop=True, times=1)
    daemon.event("ana", "signed_up", T0)
    report = daemon.tick(T0 + timedelta(minutes=1))
    assert report.unknown == 1 and report.sent == 0
    assert daemon.statuses() == {f"{daemon.enrollment('promo', 'ana')}:steps.0:1": "unknown"}
    daemon.tick(T0 + timedelta(hours=3))
    assert len(daemon.smtp.messages) == 1  # it may have arrived: never resent blind
    [(message_id,)] = daemon.rows("SELECT id FROM messages")
    drop_message(daemon.store, message_id, T0 + timedelta(hours=3))
    assert daemon.statuses() == {f"{daemon.enrollment('promo', 'ana')}:steps.0:1": "cancelled"}


def test_a_crash_during_the_hand_off_leaves_the_message_unknown(daemon: Daemon) -> None:
    daemon.event("ana", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1), send=False)
    [(message_id,)] = daemon.rows("SELECT id FROM messages")
    with open_store(daemon.location, timeout=2.0) as other:  # another process began the hand-off, then died
        runtime.mark_handoff(other, message_id, "2026-12-01T09:01:00+00:00")
    gone = getattr(daemon.store, "gone", None)  # PostgreSQL: its session ends a moment after the connection
    deadline = time.monotonic() + 5
    while gone is not None and not gone(getattr(other, "worker", "")) and time.monotonic() < deadline:
        time.sleep(0.02)
    report = daemon.tick(T0 + timedelta(minutes=2))
    assert report.unknown == 1 and report.sent == 0 and daemon.smtp.messages == []
    assert daemon.statuses() == {f"{daemon.enrollment('promo', 'ana')}:steps.0:1": "unknown"}


@pytest.mark.sqlite_only("makes the store refuse a row with a trigger in SQLite's syntax")
def test_advancing_and_queueing_commit_together(daemon: Daemon) -> None:
    # A failure of the store itself (here SQLite's own error inside the insert of the message) stops the tick
    # and undoes the whole batch: nothing half-written.
    daemon.event("ana", "signed_up", T0)
    daemon.store.db.execute("CREATE TRIGGER boom BEFORE INSERT ON messages BEGIN "
                            "INSERT INTO vanished (x) VALUES (1); END")
    with pytest.raises(MautoError, match="no such table: main.vanished"):
        daemon.tick(T0 + timedelta(minutes=1))
    assert daemon.rows("SELECT count(*) FROM enrollments") == [(0,)]
    assert daemon.rows("SELECT count(*) FROM step_log") == [(0,)]
    assert daemon.rows("SELECT count(*) FROM events WHERE name = 'signed_up' AND processed_at IS NULL") == [(1,)]
    daemon.store.db.execute("DROP TRIGGER boom")
    assert daemon.tick(T0 + timedelta(minutes=2)).sent == 1
    assert daemon.rows("SELECT state, position FROM enrollments") == [("active", "steps.2")]
    assert len(daemon.smtp.messages) == 1


@pytest.mark.sqlite_only("makes the store refuse a row with a trigger in SQLite's syntax")
def test_an_item_the_store_refuses_fails_alone_and_the_others_are_sent(daemon: Daemon) -> None:
    # A write refused for one item's data (a constraint) is that item's failure: it is undone whole (no
    # enrollment, no step, no message), recorded with its reason, and the rest of its batch is committed.
    daemon.event("ana", "signed_up", T0)
    daemon.event("ben", "signed_up", T0)
    daemon.store.db.execute("CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.contact = 'ana' BEGIN "
                            "SELECT RAISE(ABORT, 'refused for ana'); END")
    report = daemon.tick(T0 + timedelta(minutes=1))
    assert (report.sent, report.errors, report.needs_attention) == (1, 1, True)
    assert daemon.rows("SELECT contact, state FROM enrollments") == [("ben", "active")]
    assert daemon.rows("SELECT DISTINCT contact FROM step_log") == [("ben",)]
    assert daemon.rows("SELECT contact FROM messages") == [("ben",)]
    # not tried forever (ben's email_sent waits for the next tick)
    assert daemon.rows("SELECT count(*) FROM events WHERE processed_at IS NULL AND name != 'email_sent'") == [(0,)]
    [(kind, contact, reason)] = daemon.rows("SELECT kind, contact, reason FROM failures")
    assert (kind, contact) == ("event", "ana")
    assert reason == "event signed_up: IntegrityError: refused for ana"


def test_a_template_error_fails_that_enrollment_and_the_batch_goes_on(daemon: Daemon) -> None:
    write(daemon.root / "templates" / "promo" / "hello.email.html",
          '---\nsubject: "hi"\n---\n{{ contact.first_name.nope() }}<a href="{{ unsubscribe_url }}">stop</a>\n')
    deploy(daemon.project, daemon.store, T0 - timedelta(minutes=30))  # the daemon renders what was deployed
    daemon.event("ana", "signed_up", T0)
    daemon.event("ben", "signed_up", T0)
    report = daemon.tick(T0 + timedelta(minutes=1))
    assert report.failed == 2 and report.sent == 0
    [(state, reason)] = set(daemon.rows("SELECT state, substr(reason, 1, 30) FROM enrollments"))
    assert state == "failed" and reason.startswith("template promo/hello")


def test_a_webhook_answer_goes_into_vars_and_the_workflow_goes_on(daemon: Daemon) -> None:
    daemon.event("ana", "ordered", T0)
    report = daemon.tick(T0 + timedelta(minutes=1))
    assert report.calls == 1 and report.sent == 1
    [request] = [r for r in daemon.http.requests if r.path == "/crm"]
    assert request.json == {"contact": "ana"} and request.headers["Idempotency-Key"] == \
        f"{daemon.enrollment('hooked', 'ana')}:steps.0:1"
    [(data,)] = daemon.rows("SELECT data FROM enrollments WHERE workflow = 'hooked'")
    assert json.loads(data)["vars"]["crm"] == {"id": "crm-1"}


def test_a_webhook_that_keeps_failing_fails_its_enrollment_after_its_retries(daemon: Daemon) -> None:
    daemon.http.replies.clear()
    daemon.http.respond("/crm", 503, {"error": "down"})
    daemon.event("ana", "ordered", T0)
    now = T0 + timedelta(minutes=1)
    for _ in range(5):
        daemon.tick(now)
        now += timedelta(hours=2)
    assert len([r for r in daemon.http.requests if r.path == "/crm"]) == 3  # the call and 2 retries
    [(state, reason)] = daemon.rows("SELECT state, reason FROM enrollments WHERE workflow = 'hooked'")
    assert state == "failed" and "HTTP 503" in reason and "after 3 attempts" in reason
    assert daemon.smtp.messages == []


@pytest.mark.sqlite_only("holds the flock beside the SQLite file (PostgreSQL: tests/daemon/test_postgres.py)")
def test_a_second_tick_while_one_runs_exits_at_once_naming_the_holder(daemon: Daemon) -> None:
    with TickLock(daemon.store.path, "mauto.db"), \
            pytest.raises(RunnerBusy, match=rf"another tick is running against this store \(pid {os.getpid()} on "):
        daemon.tick(T0)


@pytest.mark.sqlite_only("the flock beside the SQLite file (PostgreSQL's advisory lock ends with its session)")
def test_a_lock_left_by_a_dead_process_is_taken_over(daemon: Daemon) -> None:
    lock = Path(f"{daemon.store.path}.lock")
    lock.write_text("pid 999999 on somewhere, since 2026-12-01T08:00:00Z")  # no flock: its process is gone
    report = daemon.tick(T0)
    assert report.notes == ["took over the lock left by pid 999999 on somewhere, since 2026-12-01T08:00:00Z, "
                            "which is no longer running"]
    with open(lock) as handle:  # and it is free again afterwards
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_the_clock_never_goes_back(daemon: Daemon) -> None:
    daemon.tick(T0)
    with pytest.raises(MautoError, match="before the last tick"):
        daemon.tick(T0 - timedelta(minutes=5))


def test_an_event_before_the_deploy_enrolls_nobody(daemon: Daemon) -> None:
    daemon.event("ana", "signed_up", DEPLOYED - timedelta(days=1))
    report = daemon.tick(T0)
    assert report.enrolled == 0 and daemon.rows("SELECT count(*) FROM enrollments") == [(0,)]


def test_an_event_between_the_deploy_and_the_first_tick_is_processed_by_it(tmp_path: Path) -> None:
    with SmtpServer() as smtp, HttpServer() as http:
        fresh = Daemon(tmp_path, smtp, http)
        fresh.event("ana", "signed_up", DEPLOYED + timedelta(hours=1))
        report = fresh.tick(DEPLOYED + timedelta(hours=2))
        fresh.store.close()
    assert (report.enrolled, report.sent) == (1, 1)
