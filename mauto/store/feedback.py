"""What recipients and providers say, recorded: unsubscribes, list departures, opens, clicks, bounces,
complaints, deliveries. Each function writes inside the caller's transaction (the server's grouped writer, or
`mauto bounces ingest`); the events it adds are processed by the next tick, as ingested events are."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mauto.feedback import COMPLAINT, DELIVERED, HARD_BOUNCE, SMS_STOP, SOFT_BOUNCE, Feedback
from mauto.store.contact_rows import ADDRESS, CONSENT
from mauto.store.sqlite import Store, address_hash, row_lock, stamp

SOFT_BOUNCE_LIMIT = 3  # soft bounces of one address before it is suppressed (`serve.soft_bounce_limit`)
SOFT_BOUNCE_WINDOW_DAYS = 30  # an address whose last soft bounce is older starts counting again


@dataclass(frozen=True)
class SentMessage:
    """An outbox row as the server needs it: who it went to, and which step of which workflow sent it."""

    id: int
    ref: str
    contact: str
    channel: str
    workflow: str
    step: str
    template: str
    to_address: str | None
    marketing: bool

    def properties(self) -> dict[str, Any]:
        """What every event about this message carries."""
        return {"workflow": self.workflow, "step": self.step, "template": self.template, "message": self.ref}


_MESSAGE = "SELECT id, ref, contact, channel, workflow, step, template, to_address, marketing FROM messages "


def _message(row: Any) -> SentMessage | None:
    return SentMessage(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], bool(row[8])) \
        if row is not None else None


def message_by_ref(db: Any, ref: str) -> SentMessage | None:
    return _message(db.execute(_MESSAGE + "WHERE ref = ?", [ref]).fetchone())


def message_by_provider_id(db: Any, provider_id: str) -> SentMessage | None:
    """The message a provider named by its own id (the outbox keeps the id the provider answered with). Some
    providers quote it with angle brackets, or with a suffix after a dot: the exact id, else the bare one."""
    bare = provider_id.strip().strip("<>")
    row = db.execute(_MESSAGE + "WHERE provider_id IN (?, ?) ORDER BY id DESC LIMIT 1",
                     [provider_id, bare]).fetchone()
    return _message(row)


def contact_exists(db: Any, contact_id: str) -> bool:
    return db.execute("SELECT 1 FROM contacts WHERE id = ? AND erased_at IS NULL", [contact_id]).fetchone() \
        is not None


def add_event(db: Any, contact: str, name: str, at: datetime, properties: dict[str, Any], received_at: str,
              event_id: str | None = None) -> bool:
    """One event for the next tick; False when its id was recorded already (idempotent)."""
    cursor = db.execute("INSERT OR IGNORE INTO events (id, contact, name, at, properties, received_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)", [event_id, contact, name, stamp(at),
                                                      json.dumps(properties, ensure_ascii=False), received_at])
    return bool(cursor.rowcount)


def unsubscribe(store: Store, contact_id: str, channel: str, at: datetime, properties: dict[str, Any]) -> bool:
    """Consent off on `channel`, the contact's address on the suppression list, an `unsubscribed` event: all
    at once, the next tick sends nothing more (and the outbox refuses what is queued). False when the contact
    had unsubscribed already (or was erased): nothing is written twice."""
    db = store.db
    row = db.execute(f"SELECT {ADDRESS[channel]}, {CONSENT[channel]} FROM contacts WHERE id = ? AND erased_at IS NULL",
                     [contact_id]).fetchone()
    if row is None:
        return False
    address = row[0]
    suppressed = store.suppress(address, channel, "unsubscribed") if address else False
    now = stamp(at)
    # The consent turned off only where it is on, in the same statement: of two servers unsubscribing the
    # contact at once (PostgreSQL), the second waits for the first's row and then changes nothing, so the
    # `unsubscribed` event is written once.
    changed = db.execute(f"UPDATE contacts SET {CONSENT[channel]} = 0, updated_at = ? WHERE id = ? AND "
                         f"{CONSENT[channel]} != 0", [now, contact_id]).rowcount
    if not changed and not suppressed:
        return False
    add_event(db, contact_id, "unsubscribed", at, {"channel": channel, **properties}, now)
    return True


def _fields(db: Any, contact_id: str, lock: bool = False) -> dict[str, Any] | None:
    """The contact's fields; `lock`: the row locked for the transaction on PostgreSQL, to write them back (a
    tick's claim holding the contact finishes first, and its write is read, not undone)."""
    locked = row_lock(db) if lock else ""
    row = db.execute(f"SELECT fields FROM contacts WHERE id = ? AND erased_at IS NULL{locked}", [contact_id]).fetchone()
    if row is None:
        return None
    try:
        fields = json.loads(row[0]) if row[0] else {}
    except ValueError:
        return {}
    return fields if isinstance(fields, dict) else {}


def _lists(fields: dict[str, Any]) -> list[str]:
    lists = fields.get("lists")
    return [name for name in lists if isinstance(name, str)] if isinstance(lists, list) else []


def contact_lists(db: Any, contact_id: str) -> list[str] | None:
    """The lists the contact is on (None: no such contact)."""
    fields = _fields(db, contact_id)
    return _lists(fields) if fields is not None else None


def leave_lists(db: Any, contact_id: str, names: set[str], at: datetime) -> list[str]:
    """Take the contact off the lists `names`; a `contact_updated` event says so. The lists left."""
    fields = _fields(db, contact_id, lock=True)
    if fields is None:
        return []
    lists = _lists(fields)
    left = [name for name in lists if name in names]
    if not left:
        return []
    now = stamp(at)
    fields["lists"] = [name for name in lists if name not in names]
    db.execute("UPDATE contacts SET fields = ?, updated_at = ? WHERE id = ?",
               [json.dumps(fields, ensure_ascii=False), now, contact_id])
    add_event(db, contact_id, "contact_updated", at, {"changed": ["lists"], "previous": {"lists": lists}}, now)
    return left


def seen(db: Any, provider: str, notification_id: str | None, at: str) -> bool:
    """Whether a provider's notification was recorded before; records it when not."""
    if not notification_id:
        return False
    cursor = db.execute("INSERT OR IGNORE INTO notifications_seen (provider, id, at) VALUES (?, ?, ?)",
                        [provider, notification_id[:200], at])
    return not cursor.rowcount


@dataclass
class Recorded:
    """What one piece of feedback did."""

    matched: bool = False  # found its message (or, for a STOP, its contact)
    suppressed: bool = False
    event: str | None = None  # the event added, if any
    duplicate: bool = False  # this notification was recorded before: nothing done
    note: str = ""  # why nothing was done, when nothing was


def _find(db: Any, feedback: Feedback) -> SentMessage | None:
    found = message_by_ref(db, feedback.ref) if feedback.ref else None
    if found is None and feedback.ref:  # a VERP address lower-cased on its way back
        found = _message(db.execute(_MESSAGE + "WHERE ref = ? COLLATE NOCASE AND ref IS NOT NULL LIMIT 1",
                                    [feedback.ref]).fetchone())
    if found is None and feedback.provider_id:
        found = message_by_provider_id(db, feedback.provider_id)
    return found


def record(store: Store, feedback: Feedback, now: datetime, soft_limit: int = SOFT_BOUNCE_LIMIT) -> Recorded:
    """Record one piece of feedback (inside the caller's transaction).

    - a hard bounce or a complaint puts the address on the suppression list at once (the address the message
      went to, else the one the provider names), and adds `email_bounced` (kind hard) / `email_complained`;
    - a soft bounce counts against the address; the `soft_limit`-th within 30 days suppresses it; it adds
      `email_bounced` with kind soft;
    - a delivery adds `email_delivered` / `sms_delivered`;
    - an SMS STOP unsubscribes every contact with that number from SMS (consent off, number suppressed).
    Events need the message: feedback that names no message mauto sent still suppresses, and says so."""
    db = store.db
    result = Recorded()
    received = stamp(now)
    if seen(db, feedback.provider, feedback.id, received):
        result.duplicate, result.note = True, "recorded before"
        return result
    at = feedback.at or now
    if feedback.kind == SMS_STOP:
        return _stop(store, feedback, at, result)
    message = _find(db, feedback)
    result.matched = message is not None
    if message is None and feedback.provider == "mailbox":
        # Anyone can write to the bounce address and name any address in a DSN: only a bounce of a message we
        # sent (its ref, which only that message's envelope carried) acts, and on the address it went to.
        result.note = "no message of ours has this ref: nothing done"
        return result
    address = (message.to_address if message is not None else None) or feedback.address
    channel = message.channel if message is not None else feedback.channel
    reason = f"{feedback.kind.replace('_', ' ')} ({feedback.provider})"
    if feedback.kind in (HARD_BOUNCE, COMPLAINT) and address:
        result.suppressed = store.suppress(address, channel, reason)
    elif feedback.kind == SOFT_BOUNCE and address:
        result.suppressed = _soft_bounce(store, address, channel, at, soft_limit, reason)
    if message is None:
        result.note = "no message of ours matches it" + ("; the address was suppressed" if result.suppressed else "")
        return result
    name, extra = {
        HARD_BOUNCE: ("email_bounced", {"kind": "hard"}),
        SOFT_BOUNCE: ("email_bounced", {"kind": "soft"}),
        COMPLAINT: ("email_complained", {}),
        DELIVERED: (f"{message.channel}_delivered", {}),
    }[feedback.kind]
    if message.channel == "sms" and feedback.kind in (HARD_BOUNCE, SOFT_BOUNCE):
        name, extra = "sms_failed", {}
    properties = {**message.properties(), **extra, "provider": feedback.provider}
    if feedback.reason:
        properties["reason"] = feedback.reason
    properties.update(feedback.details)
    if contact_exists(db, message.contact):
        add_event(db, message.contact, name, at, properties, received)
        result.event = name
    else:
        result.note = "the contact was erased"
    return result


def _soft_bounce(store: Store, address: str, channel: str, when: datetime, limit: int, reason: str) -> bool:
    """Count a soft bounce of `when` (the moment the provider gives: an old mailbox read late counts as old)
    against the address: the `limit`-th within SOFT_BOUNCE_WINDOW_DAYS of the first suppresses it; a bounce
    past that window starts a new count."""
    db = store.db
    digest = address_hash(address, channel, store.phone_region)
    at = stamp(when)
    # Counted in the upsert itself: two servers counting bounces of one address at once (PostgreSQL) each add
    # one, where a read then a write would lose one. CASE for min() and max(): PostgreSQL has no scalar ones.
    within = f"abs(julianday(excluded.first_at) - julianday(soft_bounces.first_at)) < {SOFT_BOUNCE_WINDOW_DAYS}"
    count = int(db.execute(
        "INSERT INTO soft_bounces (address_hash, channel, count, first_at, last_at) VALUES (?, ?, 1, ?, ?) "
        f"ON CONFLICT (address_hash, channel) DO UPDATE SET count = CASE WHEN {within} THEN soft_bounces.count + 1 "
        f"ELSE 1 END, first_at = CASE WHEN NOT ({within}) OR excluded.first_at < soft_bounces.first_at THEN "
        "excluded.first_at ELSE soft_bounces.first_at END, last_at = CASE WHEN excluded.last_at > "
        "soft_bounces.last_at THEN excluded.last_at ELSE soft_bounces.last_at END RETURNING count",
        [digest, channel, at, at]).fetchone()[0])
    if count >= limit:
        return store.suppress(address, channel, f"{reason}: {count} soft bounces")
    return False


def _stop(store: Store, feedback: Feedback, at: datetime, result: Recorded) -> Recorded:
    """STOP from a number: every contact with it leaves SMS; the number is suppressed even when no contact
    has it (a number mauto never texted must not be texted later either)."""
    from mauto.addresses import normalise_phone

    number = feedback.address or ""
    try:
        wanted = normalise_phone(number, store.phone_region)
    except ValueError:
        result.note = "not a phone number"
        return result
    db = store.db
    contacts = [contact for (contact, phone) in db.execute(
        "SELECT id, phone FROM contacts WHERE phone IS NOT NULL AND erased_at IS NULL AND phone = ?", [wanted])]
    properties = {"source": "sms-stop", "provider": feedback.provider}
    for contact in contacts:
        if unsubscribe(store, contact, "sms", at, properties):
            result.event = "unsubscribed"
    result.suppressed = store.suppress(number, "sms", f"STOP ({feedback.provider})") or bool(result.event)
    result.matched = bool(contacts)
    if not contacts:
        result.note = "no contact has this number; it was suppressed"
    return result
