"""What a user met running the daemon as a new user would (issue 11's bugs): a message sent by a tick that ran
late carries the moment it was sent, and a tick that could not take a coupon says so in its exit code."""
from __future__ import annotations

from datetime import timedelta
from email.utils import parsedate_to_datetime

from mauto.config import load_project
from mauto.deploy import deploy
from tests.daemon.harness import DEPLOYED, T0, Daemon, mauto, write

GIFT = """\
id: gift
version: 1
name: Gift
category: marketing
trigger: {event: signed_up}
steps:
  - assign_coupon: {pool: EMPTY, as: coupon}
  - id: thanks
    email: promo/thanks
"""


def test_a_message_sent_by_a_late_tick_is_dated_when_it_is_sent(daemon: Daemon) -> None:
    daemon.event("ana", "signed_up", T0)
    late = T0 + timedelta(hours=12, minutes=3)  # cron was down half a day: hello, due at T0, goes now
    assert daemon.tick(late).sent == 1
    [received] = daemon.smtp.messages
    assert parsedate_to_datetime(received.message["Date"]) == late.replace(microsecond=0)
    [(stored,)] = daemon.rows("SELECT body FROM messages")
    assert b"Date: Tue, 01 Dec 2026 09:00:00 +0000" in bytes(stored)  # the store keeps what was planned


def test_a_tick_that_cannot_take_a_coupon_fails_the_enrollment_and_exits_1(fresh_daemon: Daemon) -> None:
    write(fresh_daemon.root / "workflows" / "gift.yaml", GIFT)
    fresh_daemon.project = load_project(fresh_daemon.root / "mauto.yaml")
    deploy(fresh_daemon.project, fresh_daemon.store, DEPLOYED + timedelta(minutes=1))
    assert mauto(fresh_daemon, "run", "--once", "--now", (T0 - timedelta(hours=1)).isoformat()).exit_code == 0
    fresh_daemon.event("ana", "signed_up", T0)
    result = mauto(fresh_daemon, "run", "--once", "--now", "2026-12-01T09:01:00Z")
    assert result.exit_code == 1, result.output
    assert ", 1 failed" in result.stdout
    [(state, reason)] = fresh_daemon.rows("SELECT state, reason FROM enrollments WHERE workflow = 'gift'")
    assert state == "failed" and "EMPTY" in reason, reason
