"""A transport that keeps what it is given: for tests of the runner, without a server.

`RecordingTransport(script=[...])` answers each send with the next Delivery of `script` (then SENT), or with
what a callable of the message returns; it calls `handoff()` before "sending", as a real transport does, and
does not record a message whose handoff raised.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from mauto.channels.base import SENT, Delivery, Handoff, Outgoing, Transport


class RecordingTransport(Transport):
    name = "recording"

    def __init__(self, channel: str = "email",
                 script: Iterable[Delivery] | Callable[[Outgoing], Delivery] | None = None) -> None:
        self.channel = channel
        self.sent: list[Outgoing] = []  # every message handed off, in order, whatever the answer
        self.opened = 0  # `with` blocks entered
        self.closed = 0
        self._answer = script if callable(script) else None
        self._script = deque(script) if script is not None and not callable(script) else deque()

    def __enter__(self) -> RecordingTransport:
        self.opened += 1
        return self

    def close(self) -> None:
        self.closed += 1

    def send(self, message: Outgoing, handoff: Handoff) -> Delivery:
        handoff()
        self.sent.append(message)
        if self._answer is not None:
            return self._answer(message)
        if self._script:
            return self._script.popleft()
        return Delivery(SENT, "recorded", provider_id=f"rec-{len(self.sent)}")
