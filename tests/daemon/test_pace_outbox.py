"""The outbox at the provider's pace: parallel SMTP connections, a rate limit held across them, and a provider's
421/429 slowing the channel down instead of parking messages. Real servers on 127.0.0.1, a real SQLite store."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mauto.channels import HttpSmsTransport, SmtpTransport, Transport
from mauto.channels.pace import Pace
from mauto.config import BUILTIN_FIELDS
from mauto.daemon.outbox import send_outbox
from mauto.daemon.report import TickReport
from mauto.store import Store, runtime
from mauto.store.contacts import import_contacts
from mauto.store.sqlite import stamp
from tests.servers import HttpServer, SmtpServer

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class CountingSmtpServer(SmtpServer):
    """An SMTP server that knows how many sessions were open at once, at most."""

    def __init__(self) -> None:
        super().__init__()
        self.peak = 0

    def _opened(self, session: Any) -> int:
        number = super()._opened(session)
        with self._lock:
            self.peak = max(self.peak, len(self._open_sessions))
        return number


@pytest.fixture
def smtp() -> Any:
    with CountingSmtpServer() as server:
        yield server


@pytest.fixture
def http() -> Any:
    with HttpServer() as server:
        yield server


def queued(tmp_path: Path, count: int, channel: str = "email") -> Store:
    """A store with `count` due messages of `channel`, not marketing (no consent to check)."""
    store = Store(tmp_path / "mauto.db", lambda: NOW, create=True, timeout=2.0)
    contacts = tmp_path / "contacts.jsonl"
    contacts.write_text("".join(json.dumps({"id": f"c{number}", "email": f"c{number}@example.com"}) + "\n"
                                for number in range(1, count + 1)), encoding="utf-8")
    import_contacts(store, contacts, fields=dict(BUILTIN_FIELDS), zone="UTC")
    rows = []
    for number in range(1, count + 1):
        if channel == "email":
            to, sender = f"c{number}@example.com", "Shop <shop@example.com>"
            body = (f"From: {sender}\r\nTo: {to}\r\nSubject: hello {number}\r\nMessage-ID: <m{number}@mauto>\r\n"
                    f"\r\nhello {number}\r\n").encode()
        else:
            to, sender, body = f"+336123456{number:02d}", "SHOP", f"hello {number}".encode()
        rows.append({"key": f"k:{number}", "message_id": f"<m{number}@mauto>", "enrollment": f"w:c{number}:1",
                     "workflow": "w", "version": 1, "step": "hello", "contact": f"c{number}", "channel": channel,
                     "template": "w/hello", "marketing": 0, "to_address": to, "sender": sender, "subject": "hello",
                     "body": body, "status": "pending", "next_try_at": None, "created_at": stamp(NOW),
                     "updated_at": stamp(NOW)})
    with store.transaction() as db:
        runtime.insert_messages(db, rows)
    return store


def send(store: Store, transport: Transport,
         channel: str = "email") -> tuple[TickReport, list[tuple[str, dict]], float]:
    actions: list[tuple[str, dict]] = []
    report = TickReport(NOW)
    started = time.monotonic()
    send_outbox(store, NOW, {channel: transport}, lambda kind, data: actions.append((kind, data)), report)
    return report, actions, time.monotonic() - started


def statuses(store: Store) -> Counter:
    return Counter(row[0] for row in store.db.execute("SELECT status FROM messages"))


def smtp_transport(server: SmtpServer, pace: Pace) -> SmtpTransport:
    transport = SmtpTransport(server.host, server.port, timeout=5)
    transport.pace = pace
    return transport


def test_four_connections_are_four_concurrent_smtp_sessions(tmp_path: Path, smtp: CountingSmtpServer) -> None:
    smtp.on("data", delay=0.1)  # each message takes 0.1 s to be answered
    store = queued(tmp_path, 40)
    report, _, elapsed = send(store, smtp_transport(smtp, Pace(None, connections=4)))
    assert report.sent == 40 and statuses(store) == {"sent": 40}
    assert smtp.connections == 4 and smtp.peak == 4
    assert Counter(message.connection for message in smtp.delivered()) == {1: 10, 2: 10, 3: 10, 4: 10} or \
        len({message.connection for message in smtp.delivered()}) == 4
    assert elapsed < 40 * 0.1 / 2  # one connection would take 4 s
    assert sorted(smtp.message_ids().values()) == [1] * 40


def test_one_connection_stays_one_session(tmp_path: Path, smtp: CountingSmtpServer) -> None:
    store = queued(tmp_path, 20)
    report, _, _ = send(store, smtp_transport(smtp, Pace()))
    assert report.sent == 20 and smtp.connections == 1 and smtp.peak == 1


def test_the_rate_is_held_across_connections(tmp_path: Path, smtp: CountingSmtpServer) -> None:
    store = queued(tmp_path, 60)
    report, _, elapsed = send(store, smtp_transport(smtp, Pace(20.0, connections=4)))
    assert report.sent == 60 and statuses(store) == {"sent": 60}
    assert elapsed >= 2.9  # 59 intervals of 1/20 s after the first message
    assert elapsed < 6.0
    assert sorted(smtp.message_ids().values()) == [1] * 60


@pytest.mark.parametrize(("stage", "connections"), [("data", 1), ("mail", 1), ("data", 4)])
def test_a_421_slows_the_channel_down_and_every_message_still_goes_once(
        tmp_path: Path, smtp: CountingSmtpServer, stage: str, connections: int) -> None:
    smtp.on(stage, "421 4.7.0 too fast, slow down", times=3)
    store = queued(tmp_path, 20)
    store.db.execute("UPDATE messages SET attempts = 7")  # one try left before parking (MAX_ATTEMPTS = 8)
    pace = Pace(50.0, connections=connections)
    report, actions, _ = send(store, smtp_transport(smtp, pace))
    assert statuses(store) == {"sent": 20}
    assert (report.sent, report.retried, report.parked, report.unknown) == (20, 0, 0, 0)
    assert sorted(Counter(message.message_id for message in smtp.delivered()).values()) == [1] * 20
    slowed = [data for kind, data in actions if kind == "slowed"]
    assert len(slowed) == 3 and all("421 4.7.0 too fast" in data["answer"] for data in slowed)
    assert pace.pushbacks == 3
    current = pace.current
    assert current is not None and current < 50.0  # slowed, recovering
    # not a failed attempt: none was parked although each had one try left, and the store's `attempts` counts
    # one try a message (the hand-off mark of a try turned away at DATA is taken back)
    attempts = Counter(row[0] for row in store.db.execute("SELECT attempts FROM messages"))
    assert sum(count * (tries - 7) for tries, count in attempts.items()) == 20


def test_a_provider_that_keeps_saying_421_gets_counted_attempts_and_the_channel_waits(
        tmp_path: Path, smtp: CountingSmtpServer) -> None:
    smtp.on("mail", "421 4.7.0 go away")
    store = queued(tmp_path, 5)
    report, actions, elapsed = send(store, smtp_transport(smtp, Pace(50.0)))
    assert [kind for kind, _ in actions] == ["slowed", "slowed", "slowed", "retry"]
    assert report.retried == 1 and statuses(store) == {"pending": 5}
    [(attempts, answer)] = store.db.execute("SELECT attempts, answer FROM messages WHERE attempts > 0").fetchall()
    assert (attempts, answer) == (1, "MAIL FROM: 421 4.7.0 go away")  # one counted attempt; the others untouched
    assert any("the provider keeps turning messages away" in note for note in report.notes)


def test_an_sms_429_with_retry_after_is_waited_out_in_the_run(tmp_path: Path, http: HttpServer) -> None:
    http.respond("/sms", 429, {"error": "slow down"}, headers={"Retry-After": "1"}, times=1)
    http.respond("/sms", 200, {"id": "sm"})
    store = queued(tmp_path, 5, "sms")
    transport = HttpSmsTransport(http.url("/sms"), "t0k3n", timeout=5)
    transport.pace = Pace(10.0, connections=2)
    report, actions, elapsed = send(store, transport, "sms")
    assert statuses(store) == {"sent": 5} and report.sent == 5 and report.retried == 0
    assert elapsed >= 1.0  # the channel waited out the Retry-After
    keys = Counter(request.headers.get("Idempotency-Key") for request in http.requests)
    assert sum(keys.values()) == 6 and sorted(keys.values()) == [1, 1, 1, 1, 2]  # one message twice: the 429
    assert [kind for kind, _ in actions].count("slowed") == 1


def test_a_retry_after_longer_than_a_run_waits_leaves_the_channel_for_a_later_run(
        tmp_path: Path, http: HttpServer) -> None:
    http.respond("/sms", 429, {"error": "slow down"}, headers={"Retry-After": "3600"}, times=1)
    http.respond("/sms", 200, {"id": "sm"})
    store = queued(tmp_path, 3, "sms")
    transport = HttpSmsTransport(http.url("/sms"), "t0k3n", timeout=5)
    transport.pace = Pace(10.0)
    report, _, elapsed = send(store, transport, "sms")
    assert elapsed < 5 and report.retried == 1 and len(http.requests) == 1
    rows = store.db.execute("SELECT status, attempts, next_try_at FROM messages ORDER BY id").fetchall()
    assert [row[0] for row in rows] == ["pending"] * 3
    assert datetime.fromisoformat(rows[0][2]) >= datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # an hour on
    assert rows[1][2] is None and rows[2][2] is None  # untouched: the next run sends them


def test_a_hand_off_cut_off_on_one_of_several_connections_is_unknown_and_the_rest_go(
        tmp_path: Path, smtp: CountingSmtpServer) -> None:
    smtp.on("data", drop=True, times=1)  # read the message, hang up without answering: maybe delivered
    store = queued(tmp_path, 12)
    report, _, _ = send(store, smtp_transport(smtp, Pace(None, connections=4)))
    assert statuses(store) == {"sent": 11, "unknown": 1}
    assert (report.sent, report.unknown) == (11, 1)
    assert store.db.execute("SELECT count(*) FROM messages WHERE handoff_at IS NOT NULL").fetchone()[0] == 0


def test_a_message_dropped_by_hand_while_it_waits_is_not_handed_over_by_a_connection_thread(
        tmp_path: Path, smtp: CountingSmtpServer) -> None:
    smtp.on("data", delay=0.3)
    store = queued(tmp_path, 8)

    def drop() -> None:  # another process (`mauto outbox drop`) decides, after the batch was read
        with sqlite3.connect(tmp_path / "mauto.db", timeout=5) as other:
            other.execute("UPDATE messages SET status = 'cancelled' WHERE key = 'k:8'")

    timer = threading.Timer(0.1, drop)
    timer.start()
    report, actions, _ = send(store, smtp_transport(smtp, Pace(None, connections=4)))
    timer.join()
    assert report.sent == 7 and "<m8@mauto>" not in smtp.message_ids()
    assert ("cancelled", {"key": "k:8", "contact": "c8", "why": "decided meanwhile (outbox drop?); not sent"}) \
        in actions
    assert statuses(store) == {"sent": 7, "cancelled": 1}


def test_a_stop_asked_while_sending_leaves_the_rest_pending_and_untouched(
        tmp_path: Path, smtp: CountingSmtpServer) -> None:
    store = queued(tmp_path, 100)
    stop = threading.Event()
    report = TickReport(NOW)
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    send_outbox(store, NOW, {"email": smtp_transport(smtp, Pace(20.0, connections=4))}, lambda *a: None, report,
                stopping=stop.is_set)
    timer.cancel()
    counts = statuses(store)
    assert 0 < counts["sent"] < 100 and counts["sent"] + counts["pending"] == 100
    assert store.db.execute("SELECT count(*) FROM messages WHERE status = 'pending' AND (attempts > 0 OR "
                            "handoff_at IS NOT NULL)").fetchone()[0] == 0
    assert len(smtp.delivered()) == counts["sent"]
