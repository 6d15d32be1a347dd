"""Channels: the only code that talks to the network. Email over SMTP, SMS over an HTTP provider, the
workflow `webhook` step, and console/file transports for local use.

The runner builds the transports once per tick with `build_transports(project)` and, for each channel,
hands its due outbox rows to `transport.send(outgoing, handoff)` inside one `with transport:` block (one
connection a batch). `base.py` explains the four outcomes and the `handoff` contract.
"""
from __future__ import annotations

from mauto.channels.base import (
    MAX_ATTEMPTS,
    PARKED,
    RETRY,
    SENT,
    STATUSES,
    UNKNOWN,
    Delivery,
    Outgoing,
    Transport,
    backoff,
)
from mauto.channels.build import build_transports
from mauto.channels.console import ConsoleTransport
from mauto.channels.files import FileTransport
from mauto.channels.recording import RecordingTransport
from mauto.channels.sms import HttpSmsTransport
from mauto.channels.smtp import SmtpTransport
from mauto.channels.webhook import WebhookResult, call_webhook

__all__ = [
    "MAX_ATTEMPTS", "PARKED", "RETRY", "SENT", "STATUSES", "UNKNOWN", "ConsoleTransport", "Delivery",
    "FileTransport", "HttpSmsTransport", "Outgoing", "RecordingTransport", "SmtpTransport", "Transport",
    "WebhookResult", "backoff", "build_transports", "call_webhook",
]
