"""What an event says of a contact's consent: the one rule the loop, the store and the outbox share."""
from __future__ import annotations

from typing import Any

SUPPRESSING = {"email_bounced": "email", "email_complained": "email"}  # events that put an address on the list


def withdrawal(name: str, properties: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the channel whose address goes on the suppression list, the channel whose consent is withdrawn), each
    None when the event says nothing of it. A hard bounce or a complaint suppresses the email address (only a
    bounce said to be soft spares it); an unsubscribe withdraws its channel's consent (email unless it says
    `channel: sms`)."""
    suppress = SUPPRESSING.get(name)
    if suppress and name == "email_bounced" and properties.get("kind") == "soft":
        suppress = None  # no kind, null or anything else is hard
    withdraw = None
    if name == "unsubscribed":
        channel = properties.get("channel", "email")
        withdraw = channel if channel in ("email", "sms") else None
    return suppress, withdraw
