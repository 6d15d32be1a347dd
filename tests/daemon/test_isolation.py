"""One bad item never stops a tick, and nobody is mailed against their will (docs/daemon.md): each test puts
poison into a real store (data written by an older mauto, by hand, or by a bug) and ticks against a real SMTP
server on 127.0.0.1."""
from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from mauto.deploy import deploy
from mauto.errors import MautoError
from mauto.links import Signer
from mauto.messages import SIMULATION_SECRET
from tests.daemon.harness import T0, Daemon


@pytest.mark.sqlite_only("damages a deployed version past SQLite's immutability trigger")
def test_a_deployed_workflow_whose_wait_overflows_fails_alone_and_the_tick_goes_on(daemon: Daemon) -> None:
    # Deployed by an older mauto, before lint knew the bound: a wait past the year 9999 (an OverflowError
    # in every tick, before).
    daemon.store.db.execute("DROP TRIGGER workflow_versions_no_update")
    daemon.store.db.execute("UPDATE workflow_versions SET source = replace(source, 'wait: 1d', "
                            "'wait: 99999999999d') WHERE id = 'promo'")
    daemon.event("ana", "signed_up", T0)
    daemon.event("ben", "ordered", T0)
    report = daemon.tick(T0 + timedelta(minutes=1))
    assert (report.failed, report.calls, report.needs_attention) == (1, 1, True)
    assert sorted(m.message["Subject"] for m in daemon.smtp.messages) == ["hello Ana",
                                                                          "thanks Ben Bcc: evil@example.com"]
    [(state, reason)] = daemon.rows("SELECT state, reason FROM enrollments WHERE workflow = 'promo'")
    assert state == "failed" and "99999999999d" in reason, reason
    assert daemon.rows("SELECT count(*) FROM events WHERE processed_at IS NULL AND name != 'email_sent'") == [(0,)]
    # The next tick is not stuck on it either.
    daemon.event("ben", "signed_up", T0 + timedelta(hours=1))
    assert daemon.tick(T0 + timedelta(hours=2)).sent == 1


def test_an_enrollment_whose_data_does_not_read_back_fails_alone(daemon: Daemon) -> None:
    daemon.event("ana", "signed_up", T0)
    daemon.event("ben", "signed_up", T0)
    assert daemon.tick(T0 + timedelta(minutes=1)).sent == 2
    daemon.store.db.execute("UPDATE enrollments SET data = '{\"id\": \"promo:ana:1\", \"truncated' "
                            "WHERE contact = 'ana'")
    report = daemon.tick(T0 + timedelta(days=1, minutes=5))
    assert (report.sent, report.failed, report.needs_attention) == (1, 1, True)
    assert daemon.rows("SELECT contact, state FROM enrollments ORDER BY contact") == [("ana", "failed"),
                                                                                     ("ben", "completed")]
    [(reason,)] = daemon.rows("SELECT reason FROM enrollments WHERE contact = 'ana'")
    assert reason.startswith("could not go on: JSONDecodeError: Unterminated string")
    assert daemon.rows("SELECT kind, contact FROM failures") == [("enrollment", "ana")]
    assert daemon.tick(T0 + timedelta(days=2)).failed == 0  # failed once, not again every tick


def test_an_unsubscribe_the_store_knows_at_the_hand_off_wins(daemon: Daemon) -> None:
    # The provider's clock runs a few minutes ahead: the unsubscribe is stamped after the tick's moment, so the
    # tick does not process it yet, but it is in the store when the message is handed over.
    daemon.event("ana", "signed_up", T0)
    daemon.event("ana", "unsubscribed", T0 + timedelta(minutes=4), channel="email")
    report = daemon.tick(T0 + timedelta(minutes=1))
    assert (report.sent, report.cancelled) == (0, 1)
    assert daemon.smtp.messages == []
    assert daemon.rows("SELECT status, answer FROM messages") == [
        ("cancelled", "not sent: the contact withdrew email consent (an event not yet processed)")]


def test_a_tick_never_signs_unsubscribe_links_with_the_public_simulation_key(daemon: Daemon, monkeypatch) -> None:
    daemon.event("ana", "signed_up", T0)
    [(secret,)] = daemon.rows("SELECT value FROM runner_state WHERE key = 'unsubscribe_secret'")
    assert len(secret) >= 40  # made by the store (migration 4), never the simulations' constant
    daemon.tick(T0 + timedelta(minutes=1))
    [received] = daemon.smtp.messages
    link = received.message["List-Unsubscribe"].strip("<>")
    token = urlsplit(link).path.removeprefix("/u/")
    assert Signer(secret).check_unsubscribe(token) is not None
    assert Signer(SIMULATION_SECRET).check_unsubscribe(token) is None


def test_the_environment_s_key_wins_over_the_store_s(daemon: Daemon, monkeypatch) -> None:
    from mauto.config import load_project

    (daemon.root / "mauto.yaml").write_text((daemon.root / "mauto.yaml").read_text(encoding="utf-8")
                                            + "unsubscribe_secret_env: SHOP_UNSUBSCRIBE_KEY\n", encoding="utf-8")
    daemon.project = load_project(daemon.root / "mauto.yaml")
    deploy(daemon.project, daemon.store, T0 - timedelta(minutes=30))  # the daemon runs what was deployed
    monkeypatch.setenv("SHOP_UNSUBSCRIBE_KEY", "k" * 40)
    daemon.event("ana", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1))
    [received] = daemon.smtp.messages
    token = urlsplit(received.message["List-Unsubscribe"].strip("<>")).path.removeprefix("/u/")
    assert Signer("k" * 40).check_unsubscribe(token) is not None


def test_with_no_key_anywhere_nothing_is_sent_and_the_tick_says_why(daemon: Daemon) -> None:
    daemon.store.db.execute("DELETE FROM runner_state WHERE key = 'unsubscribe_secret'")
    daemon.event("ana", "signed_up", T0)
    with pytest.raises(MautoError, match=r"no key to sign unsubscribe links with: run `mauto db init`"):
        daemon.tick(T0 + timedelta(minutes=1))
    assert daemon.rows("SELECT count(*) FROM messages") == [(0,)] and daemon.smtp.messages == []
    assert daemon.rows("SELECT count(*) FROM enrollments") == [(0,)]


def test_a_channel_that_cannot_open_leaves_its_messages_waiting_and_the_others_go(daemon: Daemon) -> None:
    daemon.event("ana", "signed_up", T0)
    daemon.transports.pop("email")  # as if mauto.yaml named no email transport this tick
    report = daemon.tick(T0 + timedelta(minutes=1))
    assert report.errors == 1 and report.needs_attention
    assert report.notes == ["email messages were not sent: no transport for email messages: configure "
                            "channels.email in mauto.yaml; they wait in the outbox"]
    assert daemon.rows("SELECT status, attempts FROM messages") == [("pending", 0)]


def test_erasure_leaves_nothing_of_the_contact_in_the_store(daemon: Daemon) -> None:
    from mauto.store.contacts import erase

    daemon.smtp.on("rcpt", "550 5.1.1 <ana@example.com>: Recipient address rejected")
    daemon.http.respond("/crm", 500, text="no customer named Ana at ana@example.com")
    daemon.event("ana", "signed_up", T0)
    daemon.event("ana", "ordered", T0)
    daemon.tick(T0 + timedelta(minutes=1))
    daemon.tick(T0 + timedelta(hours=3))  # the webhook's retries run out: the enrollment fails with its answer
    daemon.store.db.execute("INSERT INTO tasks (key, contact, workflow, step, title, created_at) VALUES "
                            "('k', 'ana', 'promo', 'call', 'Call Ana (ana@example.com)', '2026-12-01')")
    daemon.store.db.execute("INSERT INTO failures (at, kind, contact, reason) VALUES "
                            "('2026-12-01', 'event', 'ana', 'ValueError: ana@example.com')")
    daemon.store.db.commit()
    dump = _dump(daemon)
    assert "ana@example.com" in dump and "Ana" in dump  # the test would prove nothing otherwise
    erase(daemon.store, "ana")
    dump = _dump(daemon)
    assert "ana@example.com" not in dump and "Ana" not in dump, dump


def _dump(daemon: Daemon) -> str:
    tables = ("contacts", "events", "enrollments", "messages", "calls", "step_log", "tasks", "failures")
    return "\n".join(json.dumps([str(value) for value in row]) for table in tables
                     for row in daemon.rows(f"SELECT * FROM {table}"))


def test_a_provider_s_retry_after_is_honoured(daemon: Daemon) -> None:
    from datetime import datetime

    from mauto.store import runtime
    from mauto.store.sqlite import stamp

    daemon.http.respond("/sms", 429, json={"error": "slow down"}, headers={"Retry-After": "3600"}, times=1)
    daemon.http.respond("/sms", 200, json={"id": "sms-1"})
    with daemon.store.transaction() as db:
        runtime.insert_messages(db, [{
            "key": "k:1", "message_id": "<k@mauto>", "enrollment": "promo:ana:1", "workflow": "promo", "version": 1,
            "step": "hello", "contact": "ana", "channel": "sms", "template": "promo/hello", "marketing": 0,
            "to_address": "+33612345678", "sender": "SHOP", "subject": None, "body": b"hi", "status": "pending",
            "next_try_at": None, "created_at": stamp(T0), "updated_at": stamp(T0)}])
    assert daemon.tick(T0 + timedelta(minutes=1)).retried == 1
    [(next_try_at,)] = daemon.rows("SELECT next_try_at FROM messages")
    assert datetime.fromisoformat(next_try_at) >= T0 + timedelta(minutes=61)  # not the 0-60 s of the backoff
    asked = len([r for r in daemon.http.requests if r.path == "/sms"])
    assert daemon.tick(T0 + timedelta(minutes=30)).sent == 0
    assert len([r for r in daemon.http.requests if r.path == "/sms"]) == asked
    assert daemon.tick(T0 + timedelta(minutes=62)).sent == 1
