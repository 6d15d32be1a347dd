"""An `unsubscribed` event does what `mauto contacts unsubscribe` does: the channel's consent off and its address
on the suppression list (so that importing the contact again with consent, or a second contact with the same
address, is never mailed or texted again without a new opt-in). One rule for both: `mauto.consent.withdrawal`."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from mauto.driver.loop import Driver
from mauto.store.contacts import import_contacts, unsubscribe
from tests.daemon.harness import T0, Daemon, write

PHONE = "+447911123456"


def _dan(daemon: Daemon) -> None:
    """dan, with an address and a phone number, consenting to both."""
    path = write(daemon.root / "dan.jsonl", json.dumps({"id": "dan", "email": "dan@example.com", "phone": PHONE,
                                                        "email_consent": True, "sms_consent": True}) + "\n")
    import_contacts(daemon.store, path, fields=daemon.project.contact_fields, zone=daemon.project.timezone)


def _state(daemon: Daemon, contact: str) -> tuple:
    """(email consent, sms consent, address suppressed for email, phone number suppressed for SMS)."""
    [(email, phone, email_consent, sms_consent)] = daemon.rows(
        "SELECT email, phone, email_consent, sms_consent FROM contacts WHERE id = ?", contact)
    store = daemon.store
    return (email_consent, sms_consent, bool(email) and store.is_suppressed(email, "email"),
            bool(phone) and store.is_suppressed(phone, "sms"))


def test_an_unsubscribed_event_suppresses_the_address_as_the_command_does(daemon: Daemon) -> None:
    daemon.event("ana", "unsubscribed", T0)
    report = daemon.tick(T0 + timedelta(minutes=1))
    assert ("suppressed", {"contact": "ana", "channel": "email", "why": "unsubscribed"}) in report.actions
    unsubscribe(daemon.store, "ben", "email")
    assert _state(daemon, "ana") == _state(daemon, "ben") == (0, 0, True, False)
    assert daemon.rows("SELECT channel, reason FROM suppressions") == [("email", "unsubscribed")] * 2
    # Imported again with consent, ana is still not mailed: her address is on the list.
    daemon.event("ana", "signed_up", T0 + timedelta(minutes=3))
    path = write(daemon.root / "again.jsonl", json.dumps({"id": "ana", "email_consent": True}) + "\n")
    import_contacts(daemon.store, path, fields=daemon.project.contact_fields, zone=daemon.project.timezone)
    daemon.tick(T0 + timedelta(minutes=4))
    assert daemon.smtp.messages == []
    assert daemon.rows("SELECT kind, detail FROM step_log WHERE contact = 'ana' AND step = 'hello'") == [
        ("suppressed", "email address on the suppression list")]


def test_an_sms_unsubscribe_suppresses_the_phone_number_only(daemon: Daemon) -> None:
    _dan(daemon)
    daemon.event("dan", "unsubscribed", T0, channel="sms")
    daemon.tick(T0 + timedelta(minutes=1))
    assert _state(daemon, "dan") == (1, 0, False, True)


def test_an_unsubscribe_whose_event_fails_still_suppresses_the_channels_address(daemon: Daemon,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug met while handling the event rolls its handling back; what it says of consent is applied all the
    same (docs/daemon.md), the phone number on the list included."""
    _dan(daemon)

    late_goals = Driver.late_goals

    def broken(self, contact, event, converted):
        if event.name == "unsubscribed":
            raise RuntimeError("a bug met by this contact's data")
        late_goals(self, contact, event, converted)

    monkeypatch.setattr(Driver, "late_goals", broken)
    daemon.event("dan", "unsubscribed", T0, channel="sms")
    report = daemon.tick(T0 + timedelta(minutes=1))
    assert report.errors == 1
    assert _state(daemon, "dan") == (1, 0, False, True)
