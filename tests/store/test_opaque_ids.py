"""Enrollment ids, and the idempotency keys made from them (messages, webhook calls), name no contact: an id of
the store is the workflow's id and an HMAC, under the store's own key, of (workflow, contact, entry number). A
contact whose id is an email address leaves nothing of it behind when erased; a batch re-run after a crash makes
the same ids; enrollments written by an older mauto keep theirs."""
from __future__ import annotations

import json
import re
from datetime import timedelta

from mauto.daemon.report import TickReport
from mauto.driver.sqlite import Batch, SqliteEnrollments
from mauto.engine.records import ContactState
from mauto.engine.state import Enrollment
from mauto.store import runtime
from mauto.store.contacts import erase, import_contacts
from mauto.workflow.loader import load
from mauto.workflow.model import build
from tests.daemon.harness import T0, Daemon, write

ZOE = "zoe@example.com"  # a contact whose id is her address, as many CRMs export them


def _zoe(daemon: Daemon) -> None:
    path = write(daemon.root / "zoe.jsonl", json.dumps(
        {"id": ZOE, "email": ZOE, "email_consent": True, "first_name": "Zoe"}) + "\n")
    import_contacts(daemon.store, path, fields=daemon.project.contact_fields, zone=daemon.project.timezone)


def test_ids_and_keys_name_no_contact_and_erasure_leaves_nothing_of_its_id(daemon: Daemon) -> None:
    _zoe(daemon)
    daemon.http.respond("/crm", 200, {"id": "crm-9"})
    daemon.event(ZOE, "signed_up", T0)
    daemon.event(ZOE, "ordered", T0)  # the webhook step: a call, keyed by the enrollment
    assert daemon.tick(T0 + timedelta(minutes=1)).sent == 2
    ids = [row[0] for row in daemon.rows("SELECT id FROM enrollments ORDER BY workflow")]
    assert [re.fullmatch(r"(hooked|promo):[0-9a-f]{20}", enrollment) is not None for enrollment in ids] == [True, True]
    keys = [row[0] for row in daemon.rows("SELECT key FROM messages ORDER BY id")] + \
           [row[0] for row in daemon.rows("SELECT key FROM calls")]
    assert sorted(keys) == sorted([f"{ids[1]}:steps.0:1", f"{ids[0]}:steps.1:1", f"{ids[0]}:steps.0:1"])
    assert not any(ZOE in key or "zoe" in key for key in keys + ids)

    erase(daemon.store, ZOE)
    daemon.store.close()
    # Nothing in the store's file holds her id any longer, the enrollments' ids and the keys included.
    stored = b"".join(path.read_bytes() for path in daemon.root.glob("mauto.db*") if path.is_file())
    assert ZOE.encode() not in stored and b"zoe@" not in stored


def test_an_id_is_the_same_for_the_same_entry_and_made_with_the_stores_key(daemon: Daemon) -> None:
    """What a batch re-run after a crash relies on: the same workflow, contact and history give the same id (and
    so the same message keys, which the outbox queues once). Another store, with another key, makes another."""
    from mauto.driver.sqlite import enrollment_id

    workflow = build(load(daemon.root / "workflows" / "promo.yaml"))
    ana = ContactState("ana", {})

    def made() -> str:
        batch = Batch(daemon.store, T0, TickReport(T0), lambda kind, data: None)
        return SqliteEnrollments(batch, lambda *args: None).new_id(workflow, ana, [])

    with daemon.store.transaction() as db:
        key = runtime.get_state(db, "unsubscribe_secret")
        assert key
        first = made()
    with daemon.store.transaction():
        assert made() == first == enrollment_id(key, "promo", "ana", 1)
    assert enrollment_id(key, "promo", "ana", 2) != first
    assert enrollment_id("another store's key", "promo", "ana", 1) != first


def test_an_enrollment_an_older_mauto_wrote_keeps_its_id_and_its_keys(daemon: Daemon) -> None:
    old = Enrollment("promo:ana:1", "promo", 1, "ana", T0, state="active", position="steps.2",
                     wake_at=T0 + timedelta(days=1), waiting={"wait": "steps.1"},
                     occurrences={"send:steps.0": 1, "steps.0": 1, "steps.1": 1}, cause="signed_up")
    with daemon.store.transaction() as db:
        runtime.save_enrollments(db, [old])
    daemon.tick(T0 + timedelta(days=1, minutes=1))
    assert daemon.rows("SELECT id, state FROM enrollments") == [("promo:ana:1", "completed")]
    assert daemon.statuses() == {"promo:ana:1:steps.2:1": "sent"}
