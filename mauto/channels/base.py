"""What every channel shares: the four outcomes of a hand-off, the outgoing message, the transport interface,
and the retry schedule.

A transport hands one outbox row to a provider and says what became of it:

- `SENT`: the provider accepted it (`provider_id` is its reference when it gives one);
- `RETRY`: it was not accepted, and trying again later cannot send it twice (a refused connection, a 4xx
  reply, an HTTP 503, an SMS read timeout covered by the provider's idempotency key);
- `PARKED`: the provider refused it for good (550 no such user, HTTP 400): a person has to look;
- `UNKNOWN`: the connection was lost after the message was handed off and before the provider answered.
  It may or may not have been delivered (RFC 1047), so it is never retried automatically.

The runner gives `send` a `handoff` callback that records, committed, that the hand-off is beginning. A
transport calls it exactly once, immediately before the point of no return (SMTP: once MAIL FROM and RCPT TO
were accepted, right before DATA; HTTP: right before the request is written), and only if it gets there. If
`handoff()` raises, nothing is sent and the exception propagates. A crash between `handoff()` and the
transport's answer therefore leaves a record that says "maybe sent", never a silent duplicate. A transport
whose hand-off can be repeated without making a second message (the `file` transport: the same key is the
same file) has no point of no return and does not call it: after a crash its message is simply sent again.
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SENT, RETRY, PARKED, UNKNOWN = "sent", "retry", "parked", "unknown"
STATUSES = (SENT, RETRY, PARKED, UNKNOWN)

MAX_ATTEMPTS = 8
"""Hand-off attempts of one message before the runner parks it. With `backoff`'s defaults (60 s doubling up
to an hour, full jitter) the seven waits between eight attempts add up to about an hour on average and
at most 2 h 3 min (60 + 120 + 240 + 480 + 960 + 1920 + 3600 s)."""


@dataclass
class Delivery:
    """What became of one hand-off."""

    status: str  # SENT, RETRY, PARKED or UNKNOWN
    detail: str  # the provider's answer in one line: "250 2.0.0 Ok: queued as ABC", "HTTP 503: ..."
    provider_id: str | None = None
    retry_after: float | None = None
    """RETRY only: the provider asked not to be tried again for this many seconds (HTTP `Retry-After` on a
    429 or 503, at most a day); the runner schedules the next attempt no earlier than that, nor earlier than
    its own backoff. None: the provider said nothing, and the backoff alone decides."""
    pushback: bool = False
    """RETRY only: the provider turned the message away to slow us down (SMTP 421, or a 4xx that says it
    throttles; HTTP 429), not for anything in the message. The runner slows the channel down (`mauto.channels.pace`)
    and tries the message again in the same run, without counting it as a failed attempt."""


@dataclass
class Outgoing:
    """One outbox row, ready to hand off."""

    id: int
    key: str  # idempotency key
    channel: str  # "email" | "sms"
    to: str
    sender: str | None  # email From header value (may be "Name <addr>") or SMS sender id
    message_id: str  # "<hex@mauto>" for email; for SMS the same string is the idempotency key sent to the provider
    body: bytes  # email: the whole RFC 5322 message (bytes(EmailMessage)); sms: UTF-8 text
    contact: str
    workflow: str
    step: str
    envelope: str | None = None  # email: the envelope sender (MAIL FROM) when it is not the From address (VERP)
    ref: str | None = None  # the message's ref (mauto.links): what providers are asked to echo back


Handoff = Callable[[], None]


class Transport:
    """Hands messages of one channel to a provider.

    A context manager: the connection is opened lazily by the first `send` and reused for the next ones;
    leaving the `with` block closes it. `send` never raises for a network or provider problem: it returns a
    `Delivery`. It raises only what `handoff()` raises.
    """

    name = "transport"
    pace: Any = None  # not imported here: mauto.channels.pace imports this module
    """The channel's connections and rate (a `mauto.channels.pace.Pace`); None: one connection, no limit."""

    def clone(self) -> Transport | None:
        """A transport like this one with a connection of its own, for sending over several connections at
        once (each used by one thread); None when the transport cannot have more than one (the default)."""
        return None

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection if one is open (SMTP: QUIT)."""

    def send(self, message: Outgoing, handoff: Handoff) -> Delivery:
        raise NotImplementedError


def backoff(attempt: int, base: float = 60.0, cap: float = 3600.0,
            rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before the next try, after `attempt` failed tries (1 for the first).

    Exponential with full jitter: a random time between 0 and min(cap, base * 2 ** (attempt - 1)). The
    jitter spreads the retries of a batch that failed together (a provider's outage) instead of sending
    them all back at the same moment ("Exponential Backoff And Jitter", AWS Architecture Blog, 2015).
    """
    exponent = min(max(attempt, 1) - 1, 62)  # 2 ** 62 is already far past any cap
    return rng() * min(cap, base * 2.0 ** exponent)


def one_line(text: str, limit: int = 300) -> str:
    """A provider's answer as one line of at most `limit` characters."""
    line = re.sub(r"\s+", " ", text).strip()
    return line if len(line) <= limit else line[:limit - 1] + "…"


def seconds(timeout: float) -> str:
    """A timeout as people write it: 10s, 0.5s."""
    return f"{timeout:g}s"
