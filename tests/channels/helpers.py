"""Messages, a handoff callback and an SMTP server with or without SMTPUTF8 for the channel tests."""
from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

from mauto.channels import Outgoing
from mauto.messages import RenderedMessage
from tests.servers import ReceivedMessage, SmtpServer

SENDER = "Lumio <hello@lumio.example>"


class Handoffs:
    """The `handoff` callback the runner gives a transport: counts calls, or raises when told to."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls = 0
        self.error = error

    def __call__(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


def rendered_email(number: int = 1, to: str = "ann@example.com", first_name: str = "Ann",
                   html: bool = True) -> RenderedMessage:
    """A message as MessageRenderer makes it: a subject and text from contact data, an HTML part."""
    return RenderedMessage(
        channel="email", contact=f"c{number}", to=to, at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        workflow="welcome", step="hello", template="welcome/hello", key=f"e{number}:welcome:hello:0",
        marketing=True, subject=f"Welcome, {first_name}", sender=SENDER,
        text=f"Hello {first_name},\n\nthanks for signing up.\n\n. a line that starts with a dot\n",
        html=f"<p>Hello {first_name},</p><p>thanks for signing up.</p>" if html else None,
        headers={"Reply-To": "care@lumio.example"})


def email_outgoing(number: int = 1, to: str = "ann@example.com", first_name: str = "Ann",
                   message: RenderedMessage | None = None) -> Outgoing:
    message = message or rendered_email(number, to, first_name)
    return Outgoing(id=number, key=message.key, channel="email", to=to, sender=message.sender,
                    message_id=message.message_id, body=message.to_bytes(), contact=message.contact,
                    workflow=message.workflow, step=message.step)


def sms_outgoing(number: int = 1, to: str = "+33600000001", text: str = "Your cart misses you: 10% off today") \
        -> Outgoing:
    return Outgoing(id=number, key=f"s{number}:cart:remind:0", channel="sms", to=to, sender="LUMIO",
                    message_id=f"<{number:032x}@mauto>", body=text.encode("utf-8"), contact=f"c{number}",
                    workflow="cart", step="remind")


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class EnvelopeSmtpServer(SmtpServer):
    """An SmtpServer that offers SMTPUTF8 or not (aiosmtpd's `enable_SMTPUTF8`, which its Controller turns on
    by default) and keeps the MAIL FROM options of every message it receives (`mail_options`, in order)."""

    def __init__(self, *, smtputf8: bool, **settings: Any) -> None:
        super().__init__(**settings)
        self._controller.SMTP_kwargs["enable_SMTPUTF8"] = smtputf8
        self.mail_options: list[list[str]] = []

    def _record(self, envelope: Any, content: bytes, server: Any) -> ReceivedMessage:
        self.mail_options.append(list(envelope.mail_options))
        return super()._record(envelope, content, server)
