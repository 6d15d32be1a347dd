"""What an event says of a contact's consent: the one rule the loop, the store, the outbox and
`mauto contacts unsubscribe` share."""
from __future__ import annotations

from typing import Any

SUPPRESSING = {"email_bounced": "email", "email_complained": "email"}  # events that put an address on the list
ADDRESS_FIELD = {"email": "email", "sms": "phone"}  # the contact field holding each channel's address


def withdrawal(name: str, properties: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the channel whose address goes on the suppression list, the channel whose consent is withdrawn), each
    None when the event says nothing of it. A hard bounce or a complaint suppresses the email address (only a
    bounce said to be soft spares it). An unsubscribe (email unless it says `channel: sms`) withdraws its
    channel's consent and puts the channel's address on the suppression list, whether it came as an event
    (a provider, `mauto events ingest`, the events API) or from `mauto contacts unsubscribe`: a contact
    imported again later with consent is not written to again on that channel."""
    suppress = SUPPRESSING.get(name)
    if suppress and name == "email_bounced" and properties.get("kind") == "soft":
        suppress = None  # no kind, null or anything else is hard
    withdraw = None
    if name == "unsubscribed":
        channel = properties.get("channel", "email")
        if channel in ADDRESS_FIELD:
            suppress = withdraw = channel
    return suppress, withdraw
