"""The channel's pace (mauto.channels.pace): a token bucket with AIMD on pushback, on a fake clock; what the
transports report as pushback (SMTP 421, HTTP 429) against real servers on 127.0.0.1; the settings in mauto.yaml."""
from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from mauto.channels import RETRY, SENT, HttpSmsTransport, SmtpTransport, build_transports
from mauto.channels.pace import Pace, attach_paces, configured_pace
from mauto.config import Project
from mauto.errors import MautoError
from tests.servers import HttpServer, SmtpServer

from .helpers import Handoffs, email_outgoing


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def taken(pace: Pace) -> int:
    """Take every token there is now; how many."""
    count = 0
    while pace.try_take()[1] is not None:
        count += 1
    return count


def test_the_rate_is_held_one_token_at_a_time() -> None:
    clock = FakeClock()
    pace = Pace(10.0, clock=clock)
    assert taken(pace) == 1  # the bucket starts full: one token (burst 1)
    wait, ticket = pace.try_take()
    assert ticket is None and wait == pytest.approx(0.1)
    sent = 0
    for _ in range(100):  # 10 s in steps of 0.1 s: one message each
        clock.advance(0.1)
        sent += taken(pace)
    assert sent == 100
    clock.advance(60)  # idle for a minute: still one token saved up, not 600
    assert taken(pace) == 1


def test_a_burst_saves_up_to_burst_tokens() -> None:
    clock = FakeClock()
    pace = Pace(10.0, burst=5, clock=clock)
    assert taken(pace) == 5
    clock.advance(0.25)
    assert taken(pace) == 2  # 2.5 tokens earned: two whole ones
    clock.advance(10)
    assert taken(pace) == 5
    with pytest.raises(ValueError, match="burst must be from 1 to the rate"):
        Pace(10.0, burst=11)


def test_a_pushback_halves_the_rate_once_for_the_messages_in_flight_down_to_a_floor_and_it_recovers() -> None:
    clock = FakeClock()
    pace = Pace(12.0, connections=4, clock=clock)
    _, first = pace.try_take()
    clock.advance(1)
    _, second = pace.try_take()  # in flight together with the first
    pace.pushback(first)
    assert pace.current == 6.0
    pace.pushback(second)  # sent before the halving: the same pushback, not a new one
    assert pace.current == 6.0
    wait, ticket = pace.try_take()  # and the next message waits a whole interval at the new rate
    assert ticket is None and wait == pytest.approx(1 / 6)
    for _ in range(20):
        clock.advance(100)
        _, ticket = pace.try_take()
        pace.pushback(ticket)
    assert pace.current == pytest.approx(0.2)  # the floor: 12/60 (above 0.1/s)
    for _ in range(9):
        pace.success()
    assert pace.current == pytest.approx(0.2)  # not before a run of 10 successes
    pace.success()
    assert pace.current == pytest.approx(1.4)  # + a tenth of the configured rate
    for _ in range(200):
        pace.success()
    assert pace.current == 12.0  # back to the configured rate, never above


def test_the_floor_is_at_least_a_tenth_of_a_message_a_second_and_never_above_the_rate() -> None:
    clock = FakeClock()
    fast, slow = Pace(3.0, clock=clock), Pace(0.05, clock=clock)
    for _ in range(20):
        clock.advance(100)
        for pace in (fast, slow):
            pace.pushback(pace.try_take()[1])
    assert fast.current == pytest.approx(0.1)  # 3/60 = 0.05 is below 0.1
    assert slow.current == pytest.approx(0.05)  # already below 0.1: stays at its rate


def test_retry_after_pauses_the_channel_for_as_long_as_asked() -> None:
    clock = FakeClock()
    pace = Pace(10.0, clock=clock)
    _, ticket = pace.try_take()
    pace.pushback(ticket, retry_after=30.0)
    assert pace.wait() == pytest.approx(30.0)
    clock.advance(29.9)
    assert pace.try_take()[1] is None
    clock.advance(0.1)
    assert pace.try_take()[1] is not None  # the first message goes as soon as the pause ends
    assert pace.try_take()[1] is None  # then at the halved rate
    assert pace.wait() == pytest.approx(0.2)


def test_a_channel_without_a_rate_is_not_limited_but_pauses_on_a_pushback() -> None:
    clock = FakeClock()
    pace = Pace(None, clock=clock)
    assert taken_some(pace, 1000) == 1000
    pace.pushback(pace.try_take()[1])
    assert pace.current is None and pace.wait() == pytest.approx(1.0)
    clock.advance(1.0)
    assert pace.try_take()[1] is not None
    pace.pushback(pace.try_take()[1], retry_after=5)
    assert pace.wait() == pytest.approx(5.0)
    pace.new_run()  # a pause does not outlast its run: the message carries it in its next_try_at
    assert pace.wait() == 0.0


def taken_some(pace: Pace, most: int) -> int:
    return sum(1 for _ in range(most) if pace.try_take()[1] is not None)


def test_the_share_divides_the_rate_and_the_connections_among_workers() -> None:
    pace = Pace(14.0, connections=4, share=0.5)
    assert (pace.configured, pace.current, pace.connections) == (7.0, 7.0, 2)
    pace.share = 1 / 3
    assert pace.configured == pytest.approx(14 / 3) and pace.connections == 1
    pace.share = 1 / 8
    assert pace.connections == 1  # at least one
    pace.share = 1.0
    assert (pace.configured, pace.current, pace.connections) == (14.0, pytest.approx(14.0), 4)
    with pytest.raises(ValueError, match="share must be above 0 and at most 1"):
        pace.share = 0


def test_threads_taking_tokens_together_never_get_more_than_there_are() -> None:
    clock = FakeClock()
    pace = Pace(100.0, burst=50, clock=clock)
    counts: list[int] = []
    start = threading.Barrier(8)

    def take() -> None:
        start.wait()
        counts.append(sum(1 for _ in range(1000) if pace.try_take()[1] is not None))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 50


# --- what the transports report ---


def test_smtp_421_and_a_throttling_4xx_are_pushback_and_other_4xx_are_not(smtp_server: SmtpServer) -> None:
    transport = SmtpTransport(smtp_server.host, smtp_server.port, timeout=5)
    smtp_server.on("data", "421 4.7.0 too fast, come back later", times=1)
    smtp_server.on("mail", "454 4.7.0 Throttling failure: Maximum sending rate exceeded.", times=1)
    smtp_server.on("rcpt", "451 4.3.0 mailbox busy", times=1)
    with transport:
        answers = [transport.send(email_outgoing(number), Handoffs()) for number in range(1, 5)]
    assert [(answer.status, answer.pushback, answer.detail) for answer in answers] == [
        (RETRY, True, "MAIL FROM: 454 4.7.0 Throttling failure: Maximum sending rate exceeded."),
        (RETRY, False, "RCPT TO: 451 4.3.0 mailbox busy"),
        (RETRY, True, "421 4.7.0 too fast, come back later"),
        (SENT, False, "250 2.0.0 Ok: queued as Q0002")]


def test_smtp_421_to_mail_from_on_a_fresh_connection_is_pushback(smtp_server: SmtpServer) -> None:
    smtp_server.on("mail", "421 4.7.0 slow down", times=2)  # the reused connection is re-opened once
    with SmtpTransport(smtp_server.host, smtp_server.port, timeout=5) as transport:
        answer = transport.send(email_outgoing(1), Handoffs())
    assert (answer.status, answer.pushback, answer.detail) == (RETRY, True, "MAIL FROM: 421 4.7.0 slow down")


def test_http_429_is_pushback_with_its_retry_after_and_503_is_not(http_server: HttpServer) -> None:
    from mauto.channels import Outgoing

    http_server.respond("/sms", 429, {"error": "slow down"}, headers={"Retry-After": "2"}, times=1)
    http_server.respond("/sms", 503, {"error": "down"}, times=1)
    transport = HttpSmsTransport(http_server.url("/sms"), "t0k3n", timeout=5)
    message = Outgoing(1, "k1", "sms", "+33612345678", "SHOP", "k1-id", b"hi", "c1", "w", "s")
    with transport:
        first, second = (transport.send(message, Handoffs()) for _ in range(2))
    assert (first.status, first.pushback, first.retry_after) == (RETRY, True, 2.0)
    assert (second.status, second.pushback) == (RETRY, False)


def test_clones_have_their_own_connection_and_share_the_pace(smtp_server: SmtpServer) -> None:
    transport = SmtpTransport(smtp_server.host, smtp_server.port, timeout=5)
    transport.pace = Pace(5.0, connections=2)
    twin = transport.clone()
    assert twin is not transport and twin.pace is transport.pace and twin.where == transport.where
    with transport, twin:
        assert transport.send(email_outgoing(1), Handoffs()).status == SENT
        assert twin.send(email_outgoing(2), Handoffs()).status == SENT
    assert smtp_server.connections == 2


# --- mauto.yaml ---


def test_connections_and_rate_come_from_mauto_yaml(project_at: Callable[[str], Project]) -> None:
    project = project_at("store: m.db\nchannels:\n"
                         "  email: {transport: smtp, host: 127.0.0.1, connections: 4, rate: 14}\n"
                         "  sms: {transport: console, rate: 0.5}\n")
    transports = attach_paces(project, build_transports(project, {}))
    email, sms = transports["email"].pace, transports["sms"].pace
    assert email is not None and (email.connections, email.rate) == (4, 14.0)
    assert sms is not None and (sms.connections, sms.rate) == (1, 0.5)
    bare = configured_pace(project_at("store: m.db\n"), "email")
    assert (bare.connections, bare.rate) == (1, None)


@pytest.mark.parametrize(("setting", "message"), [
    ("connections: 0", "mauto.yaml:3:44: channels.email.connections: must be a whole number from 1 to 64, not 0"),
    ("rate: fast", "mauto.yaml:3:37: channels.email.rate: must be a number of messages a second above 0 and at "
                   "most 100000, e.g. 14 or 0.5, not 'fast'"),
])
def test_a_bad_pace_is_an_error_at_its_place(project_at: Callable[[str], Project], setting: str,
                                             message: str) -> None:
    project = project_at(f"store: m.db\nchannels:\n  email: {{transport: console, {setting}}}\n")
    with pytest.raises(MautoError) as raised:
        configured_pace(project, "email")
    assert str(raised.value).replace(str(project.root) + "/", "") == message
