"""Sending: the outbox handed to the channels, once per message, and what a person decides by hand."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from mauto.channels import base as channels
from mauto.daemon.report import TickReport
from mauto.driver.sqlite import Log
from mauto.engine.interpreter import refusal
from mauto.errors import MautoError, printable
from mauto.messages import dated
from mauto.store import runtime
from mauto.store.runtime import failure_reason as _reason
from mauto.store.sqlite import Store, stamp
from mauto.store.sqlite import store_failure as _store_failure

SEND_BATCH = 200  # messages read from the outbox at a time


def _refusal(db: Any, contact_id: str, channel: str, store: Store) -> str | None:
    """Why a marketing message may not go now (the contact changed since it was queued), or None.

    What the store knows at the hand-off wins: consent, the suppression list, and withdrawals received but not
    yet processed (an `unsubscribed` stamped after the moment the message was decided for)."""
    info = runtime.address_of(db, contact_id)
    if info is None:
        return "the contact was erased"
    address = info["email"] if channel == "email" else info["phone"]
    suppressed = bool(address) and store.is_suppressed(address, channel)
    found = refusal(channel, address, info[f"{channel}_consent"], suppressed)
    if found:
        return found
    if channel in runtime.withdrawals_pending(db, contact_id):
        return f"the contact withdrew {'email' if channel == 'email' else 'SMS'} consent (an event not yet processed)"
    return None


class _NotPending(Exception):
    """Raised by the hand-off mark when the message is no longer pending: the transport stops before DATA."""


class _Outbox:
    """One tick's sending: the transports opened so far, and the channels found unusable (misconfigured)."""

    def __init__(self, store: Store, now: datetime, transports: dict[str, channels.Transport], log: Log,
                 report: TickReport) -> None:
        self.store, self.now, self.at = store, now, stamp(now)
        self.transports, self.log, self.report = transports, log, report
        self.opened: dict[str, channels.Transport] = {}
        self.unusable: dict[str, str] = {}  # channel -> why: its messages wait for the next tick
        self.started = time.monotonic()  # a Retry-After counts from the answer, which came this long after `now`

    def close(self) -> None:
        for transport in self.opened.values():
            with contextlib.suppress(Exception):  # closing a connection that failed already: nothing to tell
                transport.__exit__(None, None, None)

    def transport(self, channel: str) -> channels.Transport | None:
        if channel in self.unusable:
            return None
        transport = self.opened.get(channel)
        if transport is not None:
            return transport
        try:
            if channel not in self.transports:
                raise MautoError(f"no transport for {channel} messages: configure channels.{channel} in mauto.yaml")
            transport = self.opened[channel] = self.transports[channel].__enter__()
        except Exception as error:  # noqa: BLE001 - a channel that cannot open leaves its messages waiting
            if _store_failure(error):
                raise
            self._unusable(channel, _reason(error))
            return None
        return transport

    def _unusable(self, channel: str, why: str) -> None:
        self.unusable[channel] = why
        self.report.errors += 1
        self.report.notes.append(f"{channel} messages were not sent: {why}; they wait in the outbox")
        self.log("error", {"channel": channel, "why": why})

    def send(self, row: dict[str, Any]) -> None:
        """Hand one message over, or decide why not; whatever this message's data does, never raise for it
        (the store's own failures aside)."""
        self.decided = False  # set once the message's fate is recorded: nothing after may record it again
        try:
            self._send(row)
        except Exception as error:  # noqa: BLE001 - one message's surprise parks it (never sent blind)
            if _store_failure(error):
                raise
            if self.decided:  # recorded already (sent, say); what failed after is not the message's
                self.report.notes.append(f"message {row['id']}: {_reason(error)}")
                return
            with self.store.guard():
                status = self.store.db.execute("SELECT status, handoff_at FROM messages WHERE id = ?",
                                               [row["id"]]).fetchone()
            handed = status is not None and status[1] is not None
            verdict = "unknown" if handed else "parked"
            answer = f"could not be sent: {_reason(error)}"
            runtime.record_delivery(self.store, row["id"], verdict, answer, self.at)
            if handed:
                self.report.unknown += 1
            else:
                self.report.parked += 1
            self.log(verdict, {"key": row["key"], "contact": row["contact"], "channel": row["channel"],
                               "answer": answer})

    def _send(self, row: dict[str, Any]) -> None:
        store, at, report, log = self.store, self.at, self.report, self.log
        channel = row["channel"]
        if row["marketing"]:
            try:
                with store.guard():
                    refusal = _refusal(store.db, row["contact"], channel, store)
            except Exception as error:  # noqa: BLE001 - consent that cannot be checked is consent not given
                if _store_failure(error):
                    raise
                refusal = f"consent could not be checked ({_reason(error)})"
            if refusal:
                runtime.record_delivery(store, row["id"], "cancelled", f"not sent: {refusal}", at)
                self.decided = True
                report.cancelled += 1
                log("cancelled", {"key": row["key"], "contact": row["contact"], "why": refusal})
                return
        transport = self.transport(channel)
        if transport is None:
            return  # the channel cannot be used this tick: the message stays pending, untouched
        body = bytes(row["body"])
        if channel == "email":  # dated when it is handed over, not when it was planned (a late tick)
            body = dated(body, self.now)
        outgoing = channels.Outgoing(row["id"], row["key"], channel, row["to_address"] or "", row["sender"],
                                     row["message_id"], body, row["contact"], row["workflow"], row["step"],
                                     row["envelope"], row["ref"])
        handed = []

        def handoff() -> None:
            if not runtime.mark_handoff(store, row["id"], at):
                raise _NotPending  # a person dropped it (or it was decided) since it was read: never send it
            handed.append(True)

        try:
            delivery = transport.send(outgoing, handoff)
        except _NotPending:
            self.decided = True
            log("cancelled", {"key": row["key"], "contact": row["contact"],
                              "why": "decided meanwhile (outbox drop?); not sent"})
            return
        except Exception as error:  # noqa: BLE001 - a transport's surprise is this message's, not the tick's
            if _store_failure(error):
                raise
            if isinstance(error, MautoError) and not handed:  # the channel's configuration: all its messages wait
                self._unusable(channel, _reason(error))
                return
            status = channels.UNKNOWN if handed else channels.RETRY
            delivery = channels.Delivery(status, _reason(error))
        self._record(row, delivery, bool(handed))

    def _record(self, row: dict[str, Any], delivery: channels.Delivery, handed: bool) -> None:
        """The provider's answer, recorded once; then counted and logged."""
        attempts = row["attempts"] + 1
        detail, verdict = delivery.detail, "parked"
        count_attempt, provider_id, next_try_at = not handed, None, None
        extra: dict[str, Any] = {}
        if delivery.status == channels.SENT:
            verdict, provider_id = "sent", delivery.provider_id
        elif delivery.status == channels.RETRY and attempts < channels.MAX_ATTEMPTS:
            delay = channels.backoff(attempts)
            if delivery.retry_after is not None:  # the provider's Retry-After: never earlier than it asked
                delay = max(delay, delivery.retry_after + time.monotonic() - self.started)
            retry_at = self.now + timedelta(seconds=delay)
            verdict, next_try_at = "pending", stamp(retry_at)
            extra = {"attempt": attempts, "next_try_at": retry_at.isoformat()}
        elif delivery.status == channels.UNKNOWN:
            verdict, count_attempt = "unknown", False
        elif delivery.status != channels.PARKED:
            detail = f"gave up after {attempts} attempts: {detail}"
        runtime.record_delivery(self.store, row["id"], verdict, detail, self.at, next_try_at=next_try_at,
                                provider_id=provider_id, count_attempt=count_attempt)
        self.decided = True  # recorded: whatever the log does now, the message is not recorded again
        counted = {"sent": "sent", "pending": "retried", "unknown": "unknown", "parked": "parked"}[verdict]
        setattr(self.report, counted, getattr(self.report, counted) + 1)
        # The contact by id, never by address: the action log goes to files that erasure cannot reach.
        self.log({"pending": "retry"}.get(verdict, verdict), {
            "key": row["key"], "contact": row["contact"], "channel": row["channel"],
            "answer": _without_address(detail, row["to_address"]), **extra})


def _without_address(text: str | None, address: str | None) -> str | None:
    """A provider's answer for the log, the recipient's address in it replaced ("550 <ana@…> rejected")."""
    if not text or not address:
        return text
    from mauto.channels.smtp import idna_address

    # The address as given, lower-cased, as servers quote the envelope (ASCII domain), as reasons quote it
    # (repr, printable).
    forms = {address, address.lower(), repr(address)[1:-1], printable(address)}
    with contextlib.suppress(ValueError):
        forms.add(idna_address(address))
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "<recipient>")
    return text


def send_outbox(store: Store, now: datetime, transports: dict[str, channels.Transport], log: Log,
                report: TickReport, stopping: Callable[[], bool] = lambda: False,
                progress: Callable[[int], None] | None = None) -> None:
    """Hand every due message to its channel, once: the hand-off is recorded before it begins."""
    outbox = _Outbox(store, now, transports, log, report)
    after = 0
    try:
        while not stopping():
            with store.guard():
                batch = runtime.due_messages(store.db, now, after, SEND_BATCH)
            if not batch:
                break
            for row in batch:
                if stopping():
                    break
                after = row["id"]
                outbox.send(row)
                if progress is not None:
                    progress(1)
    finally:
        outbox.close()


def retry_message(store: Store, message_id: int, now: datetime) -> dict[str, Any]:
    """Put a parked or unknown message back in the queue (a person decided it should go): sent by the next tick.

    An `unknown` message may already have been delivered (its hand-off was cut off): retrying it is the person's
    call, never mauto's. A sent or cancelled message cannot be retried."""
    return _decide(store, message_id, now, "pending", "retry asked", "retried", stamp(now))


def drop_message(store: Store, message_id: int, now: datetime) -> dict[str, Any]:
    """Decide not to send a parked, unknown or pending message: it becomes `cancelled`, with who decided."""
    return _decide(store, message_id, now, "cancelled", "dropped by hand", "dropped")


def _decide(store: Store, message_id: int, now: datetime, status: str, what: str, verb: str,
            next_try_at: str | None = None) -> dict[str, Any]:
    with store.transaction() as db:
        row = runtime.message(db, message_id)
        if row is None:
            raise MautoError(f"no message {message_id} in the outbox", store.shown)
        if row["status"] not in ("parked", "unknown", "pending"):
            raise MautoError(f"message {message_id} is {row['status']}: only parked, unknown or pending messages "
                             f"can be {verb}", store.shown)
        runtime.set_message_status(db, message_id, status, f"{what} at {now.isoformat()} "
                                   f"(was {row['status']}: {row['answer'] or '-'})", stamp(now), next_try_at)
    return {**row, "status": status, "was": row["status"]}
