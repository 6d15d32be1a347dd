"""What recipients and providers say back about a message, in one shape whatever brought it (a provider's
webhook, a bounce in the bounce mailbox, an inbound SMS): `Feedback`. `mauto serve` and `mauto bounces ingest`
read it from their input; `mauto.store.feedback` records it."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

HARD_BOUNCE = "hard_bounce"  # the address does not exist / will never accept: suppressed at once
SOFT_BOUNCE = "soft_bounce"  # a temporary failure (mailbox full): counted, suppressed past a threshold
COMPLAINT = "complaint"  # the recipient marked the message as spam: suppressed at once
DELIVERED = "delivered"  # the provider delivered it: an `email_delivered` / `sms_delivered` event
SMS_STOP = "sms_stop"  # an inbound SMS saying STOP (or the like): SMS consent withdrawn
KINDS = (HARD_BOUNCE, SOFT_BOUNCE, COMPLAINT, DELIVERED, SMS_STOP)


@dataclass(frozen=True)
class Feedback:
    """One thing said back about one message or address.

    The message is found by `ref` (mauto's own reference, carried by the VERP address or a header/metadata
    the provider echoes back) first, else by `provider_id` (the provider's message id, which the outbox
    keeps); an address alone (a bounce that names no message) still suppresses that address."""

    kind: str  # one of KINDS
    provider: str  # "ses", "sendgrid", "mailgun", "postmark", "twilio", "mailbox", ...
    channel: str = "email"  # "email" | "sms"
    address: str | None = None  # the recipient's address or number, as the provider gives it
    ref: str | None = None
    provider_id: str | None = None
    at: datetime | None = None  # when it happened, as the provider says (None: when it was received)
    reason: str = ""  # one line: the provider's diagnostic ("550 5.1.1 user unknown"), never a secret
    id: str | None = None  # the provider's id for this notification: the same notification twice is recorded once
    details: dict[str, str] = field(default_factory=dict)  # extra properties for the event (e.g. feedback type)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown feedback kind {self.kind!r}")
