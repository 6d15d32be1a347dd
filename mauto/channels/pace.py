"""Sending at the provider's pace: a channel's parallel connections and its rate, slowed down by pushback.

`mauto.yaml` sets them per channel (docs/daemon.md, "Sending at the provider's pace"):

```yaml
channels:
  email: {transport: smtp, host: email-smtp.eu-west-1.amazonaws.com, connections: 4, rate: 14}
```

A `Pace` is a token bucket: `rate` tokens a second, at most `burst` saved up (1 by default: the messages go
evenly spaced, as providers count them), one token a message. It is also the channel's memory of what the
provider tolerates, additive increase / multiplicative decrease as TCP does (RFC 5681):

- a pushback (SMTP 421 or a 4xx that says it throttles, HTTP 429: `Delivery.pushback`) halves the current rate,
  never below a floor (1/60 of the configured rate, or 0.1/s, whichever is higher, but never above the
  configured rate itself), and pauses the channel for the provider's Retry-After when it gave one. Pushbacks
  of messages that were already on their way when the rate was last halved do not halve it again (one
  decrease a "window", as TCP): four connections turned away at once slow the channel down once, not 16-fold.
- after `RECOVERY_RUN` successes in a row the rate goes up by a tenth of the configured rate, back up to it.

A channel with no `rate` has no limit, so nothing to halve: a pushback pauses it (for Retry-After, else
`UNLIMITED_PAUSE`). Give the channel a `rate` for it to slow down and recover.

Several workers (daemons sharing one PostgreSQL store) share the provider's limits: each worker's pace has a
`share` (1.0 alone; 1/live workers when several run), which divides the configured rate and the connections
(at least one connection each): together they stay within what the provider allows.

The rate and what was learned last for as long as the transport does (a daemon's life); a pause does not
outlast the run it met in (the message it concerns carries the wait in its `next_try_at`).
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mauto.channels.base import Transport

MAX_CONNECTIONS = 64
MAX_RATE = 100_000.0
RECOVERY_RUN = 10  # successes in a row before the rate goes up a step
RECOVERY_STEPS = 10  # a step is this fraction of the configured rate: from half to whole in 5 runs
FLOOR_SHARE = 1 / 60  # the rate never goes below this share of the configured one...
FLOOR_RATE = 0.1  # ... nor below this many messages a second (unless the configured rate is lower)
UNLIMITED_PAUSE = 1.0  # seconds a channel without a rate pauses on a pushback without Retry-After


def _floor(rate: float) -> float:
    return min(rate, max(rate * FLOOR_SHARE, FLOOR_RATE))


class Pace:
    """One channel's connections and rate (thread-safe); see the module's docstring.

    `rate`: messages a second over all connections (None: no limit); `connections`: parallel connections;
    `burst`: how many tokens the bucket holds (1 to `rate`); `share`: this worker's share of both;
    `clock`: seconds, monotonic (tests give a fake one)."""

    def __init__(self, rate: float | None = None, connections: int = 1, *, burst: float = 1.0, share: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate is not None and not 0 < rate <= MAX_RATE:
            raise ValueError(f"rate must be above 0 and at most {MAX_RATE:g} messages a second, not {rate!r}")
        if isinstance(connections, bool) or not isinstance(connections, int) or \
                not 1 <= connections <= MAX_CONNECTIONS:
            raise ValueError(f"connections must be a whole number from 1 to {MAX_CONNECTIONS}, not {connections!r}")
        if not 1 <= burst <= max(1.0, rate or 1.0):
            raise ValueError(f"burst must be from 1 to the rate, not {burst!r}")
        self.rate, self.burst, self._connections = rate, float(burst), connections
        self._clock = clock
        self._lock = threading.Lock()
        self._share = 1.0
        self._current: float | None = rate  # the rate allowed now; None: no limit
        self._target: float | None = rate  # what it recovers to: the configured rate (times the share)
        self._tokens = self.burst
        self._stamp = clock()
        self._paused_until = -math.inf
        self._epoch = 0  # bumped by each halving: a pushback of an older epoch does not halve again
        self._successes = 0
        self.pushbacks = 0  # pushbacks met, all told
        self.share = share

    # --- settings ---

    @property
    def share(self) -> float:
        """This worker's share of the channel's rate and connections (0 < share <= 1)."""
        return self._share

    @share.setter
    def share(self, value: float) -> None:
        if not 0 < value <= 1:
            raise ValueError(f"share must be above 0 and at most 1, not {value!r}")
        with self._lock:
            scale, self._share = value / self._share, value
            if self._current is not None:
                self._current *= scale
            if self._target is not None:
                self._target *= scale
            if self.rate is not None and self._current is not None:
                self._current = max(self._current, _floor(self.rate * value))

    @property
    def connections(self) -> int:
        """Parallel connections for this worker: its share of the configured ones, at least one."""
        return max(1, math.floor(self._connections * self._share + 1e-9))

    @property
    def configured(self) -> float | None:
        """This worker's share of the configured rate (None: no limit)."""
        return None if self.rate is None else self.rate * self._share

    @property
    def current(self) -> float | None:
        """The rate allowed now, messages a second (None: no limit)."""
        with self._lock:
            return self._current

    # --- sending ---

    def try_take(self) -> tuple[float, int | None]:
        """Take a token if one is there: `(0.0, ticket)`, the ticket to give `pushback`; else `(seconds to
        wait, None)` and nothing is taken."""
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return self._paused_until - now, None
            if self._current is not None:
                self._refill(now)
                if self._tokens < 1.0:
                    return (1.0 - self._tokens) / self._current, None
                self._tokens -= 1.0
            return 0.0, self._epoch

    def acquire(self, stopping: Callable[[], bool] = lambda: False,
                sleep: Callable[[float], None] = time.sleep) -> int | None:
        """Wait for a token and take it: the ticket; None when `stopping()` said so meanwhile."""
        while True:
            wait, ticket = self.try_take()
            if ticket is not None:
                return ticket
            if stopping():
                return None
            sleep(min(wait, 0.25))  # short naps: a daemon asked to stop does not wait out a long pause

    def give_back(self) -> None:
        """A token taken for a message that did not go after all (its consent withdrawn): its turn is free."""
        with self._lock:
            if self._current is not None:
                self._tokens = min(max(1.0, min(self.burst, self._current)), self._tokens + 1.0)

    def wait(self) -> float:
        """Seconds before a token can be taken (0: now); nothing is taken."""
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return self._paused_until - now
            if self._current is None:
                return 0.0
            self._refill(now)
            return max(0.0, (1.0 - self._tokens) / self._current)

    def success(self) -> None:
        """A message went through: after a run of them, the rate goes up a step."""
        with self._lock:
            if self._current is None or self._target is None:
                return
            self._successes += 1
            if self._successes < RECOVERY_RUN:
                return
            self._successes = 0
            self._current = min(self._target, self._current + self._target / RECOVERY_STEPS)

    def pushback(self, ticket: int | None, retry_after: float | None = None) -> None:
        """The provider said to slow down (421, 429) to the message sent with `ticket`: halve the rate (once
        for the messages in flight together) and pause for `retry_after` seconds when given."""
        with self._lock:
            now = self._clock()
            self.pushbacks += 1
            self._successes = 0
            if ticket is None or ticket == self._epoch:
                self._epoch += 1
                if self._current is not None and self._target is not None:
                    self._current = max(_floor(self._target), self._current / 2)
            if retry_after is not None and retry_after > 0:
                self._paused_until = max(self._paused_until, now + retry_after)
                self._tokens, self._stamp = 1.0, self._paused_until  # the first message goes when it ends
            elif self._current is None:
                self._paused_until = max(self._paused_until, now + UNLIMITED_PAUSE)
            else:
                self._tokens, self._stamp = 0.0, max(now, self._stamp)  # the next one a whole interval later

    def new_run(self) -> None:
        """A new run: the last run's pause is over (its message waits by its own `next_try_at`)."""
        with self._lock:
            self._paused_until = -math.inf
            self._stamp = min(self._stamp, self._clock())

    # --- inside ---

    def _refill(self, now: float) -> None:
        assert self._current is not None
        if now > self._stamp:
            burst = max(1.0, min(self.burst, self._current))  # a slowed-down channel saves up less
            self._tokens = min(burst, self._tokens + (now - self._stamp) * self._current)
            self._stamp = now


def pace_of(transport: Transport) -> Pace:
    """The transport's pace; one without limits (one connection, no rate) given to it when it has none."""
    pace = getattr(transport, "pace", None)
    if pace is None:
        pace = transport.pace = Pace()  # kept: what the provider tolerates is learnt for the transport's life
    return pace


def configured_pace(project: Any, channel: str, settings: Mapping[str, Any] | None = None) -> Pace:
    """The pace `channels.<channel>` in `project`'s mauto.yaml (a `mauto.config.Project`, not imported here:
    mauto.config imports the channels) asks for (`connections`, `rate`); MautoError at the place of a bad value
    (`mauto lint` reports it too, from the schema)."""
    from mauto.errors import MautoError

    data = settings if settings is not None else (project.data.get("channels") or {}).get(channel) or {}
    if not isinstance(data, Mapping):
        data = {}

    def error(key: str, message: str) -> MautoError:
        position = project.document.pos(("channels", channel, key))
        return MautoError(f"channels.{channel}.{key}: {message}", project.document.path, position.line,
                          position.col)

    connections = data.get("connections", 1)
    if isinstance(connections, bool) or not isinstance(connections, int) or \
            not 1 <= connections <= MAX_CONNECTIONS:
        raise error("connections", f"must be a whole number from 1 to {MAX_CONNECTIONS}, not {connections!r}")
    rate = data.get("rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                             or not 0 < rate <= MAX_RATE or not math.isfinite(rate)):
        raise error("rate", f"must be a number of messages a second above 0 and at most {MAX_RATE:g}, e.g. 14 "
                            f"or 0.5, not {rate!r}")
    return Pace(float(rate) if rate is not None else None, connections)


def attach_paces(project: Any, transports: dict[str, Transport]) -> dict[str, Transport]:
    """Give each transport the pace mauto.yaml configures for its channel (see `configured_pace`)."""
    for channel, transport in transports.items():
        transport.pace = configured_pace(project, channel)
    return transports
