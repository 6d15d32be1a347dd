"""The edges of "one bad item never stops a tick" (docs/daemon.md), found by a hostile review: each test is a
way found to break the isolation, the consent check or erasure, against a real store and a real SMTP server on
127.0.0.1 (the `daemon` fixture of tests/conftest.py)."""
from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from mauto.config import load_project
from mauto.daemon.outbox import retry_message
from mauto.deploy import deploy
from mauto.links import Signer
from mauto.messages import SIMULATION_SECRET
from tests.daemon.harness import T0, WORKFLOW, Daemon, write


def _break_promo(daemon: Daemon) -> None:
    """The deployed `promo` no longer loads (deployed by another mauto, or damaged): docs/daemon.md says its
    enrollments wait, untouched, until it is deployed again."""
    daemon.store.db.execute("DROP TRIGGER workflow_versions_no_update")
    daemon.store.db.execute("UPDATE workflow_versions SET source = 'id: promo\nsteps: [' WHERE id = 'promo'")
    daemon.store.db.conn.commit()


def _mend_promo(daemon: Daemon) -> None:
    daemon.store.db.execute("UPDATE workflow_versions SET source = ? WHERE id = 'promo'", [WORKFLOW])
    daemon.store.db.conn.commit()


# --- consent: an event item that fails takes its unsubscribe down with it ---------------------------------


@pytest.mark.sqlite_only("damages a deployed version past SQLite's immutability trigger")
def test_an_unsubscribe_is_not_lost_when_the_contact_is_waiting_in_a_workflow_that_does_not_load(
        daemon: Daemon) -> None:
    daemon.event("ana", "signed_up", T0)
    assert daemon.tick(T0 + timedelta(minutes=1)).sent == 1  # `hello`; `again` is due a day later
    _break_promo(daemon)
    daemon.event("ana", "unsubscribed", T0 + timedelta(hours=2), channel="email")
    daemon.tick(T0 + timedelta(hours=3))
    # The event failed (delivering it to ana's promo enrollment needs promo), was rolled back whole — the
    # consent withdrawal with it — and marked processed: the unsubscribe is gone for good.
    assert daemon.rows("SELECT email_consent FROM contacts WHERE id = 'ana'") == [(0,)], \
        daemon.rows("SELECT kind, reason FROM failures")
    _mend_promo(daemon)
    daemon.tick(T0 + timedelta(days=1, minutes=5))
    assert [m.message["Subject"] for m in daemon.smtp.messages] == ["hello Ana"]  # never `again Ana`


def test_an_unsubscribe_is_not_lost_when_one_of_the_contact_s_enrollments_does_not_read_back(
        daemon: Daemon) -> None:
    daemon.event("ana", "signed_up", T0)
    daemon.event("ben", "signed_up", T0)
    assert daemon.tick(T0 + timedelta(minutes=1)).sent == 2
    # ben's promo enrollment is damaged; it is not due before tomorrow, so no tick fails it yet
    daemon.store.db.execute("UPDATE enrollments SET data = '{\"id\": \"promo:ben:1\", \"truncated' "
                            "WHERE contact = 'ben'")
    daemon.store.db.conn.commit()
    daemon.event("ben", "email_complained", T0 + timedelta(hours=2))
    daemon.tick(T0 + timedelta(hours=3))
    # a complaint puts the address on the suppression list (docs/daemon.md): it must not be undone
    assert daemon.store.is_suppressed("ben@example.com", "email"), daemon.rows("SELECT kind, reason FROM failures")


# --- state that survives a rollback ---------------------------------------------------------------------


@pytest.mark.sqlite_only("makes the store refuse a row with a trigger in SQLite's syntax")
def test_a_contact_update_rolled_back_with_a_webhook_answer_does_not_enroll_anyone(daemon: Daemon) -> None:
    # `tagger` calls the CRM, tags the contact, then mails; `tagged` takes contacts on `contact_updated`.
    write(daemon.root / "workflows" / "tagger.yaml", f"""\
        id: tagger
        version: 1
        name: Tagger
        category: transactional
        trigger: {{event: ordered}}
        steps:
          - id: crm
            webhook: {{url: "{daemon.http.url('/crm')}", as: crm, retries: 0}}
          - update:
              add_tags: [crm]
          - id: thanks
            email: promo/thanks
        """)
    write(daemon.root / "workflows" / "tagged.yaml", """\
        id: tagged
        version: 1
        name: Tagged
        category: transactional
        trigger: {event: contact_updated}
        steps:
          - id: tagged
            email: promo/hello
        """)
    (daemon.root / "workflows" / "hooked.yaml").unlink()
    daemon.project = load_project(daemon.root / "mauto.yaml")
    deploy(daemon.project, daemon.store, T0 - timedelta(minutes=30))
    # The store refuses tagger's message for ana (one item's failure: the answer's transaction is undone)
    daemon.store.db.execute("CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.workflow = 'tagger' BEGIN "
                            "SELECT RAISE(ABORT, 'refused'); END")
    daemon.store.db.conn.commit()
    daemon.event("ana", "ordered", T0)
    report = daemon.tick(T0 + timedelta(minutes=1))
    assert daemon.rows("SELECT state FROM enrollments WHERE workflow = 'tagger'") == [("failed",)]
    [(fields,)] = daemon.rows("SELECT fields FROM contacts WHERE id = 'ana'")
    assert "crm" not in json.loads(fields).get("tags", [])  # the update was rolled back ...
    assert daemon.rows("SELECT count(*) FROM events WHERE name = 'contact_updated'") == [(0,)]
    # ... yet the contact_updated it emitted stayed in the queue and was processed: `tagged` enrolled ana
    # and mailed her for a change that never happened.
    assert daemon.rows("SELECT count(*) FROM enrollments WHERE workflow = 'tagged'") == [(0,)], report.actions
    assert daemon.smtp.messages == []


@pytest.mark.sqlite_only("damages a deployed version with SQLite's json_set")
def test_a_workflow_version_that_cannot_load_is_still_reported_when_its_batch_is_re_run(daemon: Daemon) -> None:
    daemon.event("ana", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1))
    # ana's enrollment names a version the store does not hold (version 1 is current and loads)
    daemon.store.db.execute("UPDATE enrollments SET version = 7, data = json_set(data, '$.version', 7) "
                            "WHERE contact = 'ana'")
    # and in the same batch another item fails: the batch is rolled back and re-run one item at a time
    daemon.store.db.execute("CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.contact = 'ben' BEGIN "
                            "SELECT RAISE(ABORT, 'refused for ben'); END")
    daemon.store.db.conn.commit()
    daemon.event("ben", "signed_up", T0 + timedelta(days=1, minutes=1))
    report = daemon.tick(T0 + timedelta(days=1, minutes=5))
    # `self.broken` survived the rollback: the re-run skips ana silently; the record of why was rolled back
    assert sorted(daemon.rows("SELECT kind FROM failures")) == [("event",), ("workflow",)]
    assert report.errors == 2


# --- the outbox ---------------------------------------------------------------------------------------------


def test_a_message_sent_stays_sent_when_the_action_log_cannot_be_written(daemon: Daemon) -> None:
    # stderr is a pipe whose reader went away (`mauto daemon 2>&1 | tee …`), or a full disk, once
    failed: list[str] = []

    def log(kind: str, data: dict) -> None:
        if kind == "sent" and not failed:
            failed.append(kind)
            raise BrokenPipeError(32, "Broken pipe")

    daemon.event("ana", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1), log=log)
    assert len(daemon.smtp.messages) == 1
    # the provider took it, and `sent` was committed, then overwritten as `parked` ("could not be sent")
    [(message_id, status, answer)] = daemon.rows("SELECT id, status, answer FROM messages")
    if status == "parked":  # a person who believes `mauto outbox` retries it: Ana gets it twice
        retry_message(daemon.store, message_id, T0 + timedelta(minutes=2))
        daemon.tick(T0 + timedelta(minutes=3))
    assert (status, len(daemon.smtp.messages)) == ("sent", 1), answer


# --- the report -------------------------------------------------------------------------------------------


@pytest.mark.sqlite_only("makes the store refuse a row with a trigger in SQLite's syntax")
def test_the_tick_s_report_lists_what_failed(daemon: Daemon) -> None:
    daemon.store.db.execute("CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.contact = 'ana' BEGIN "
                            "SELECT RAISE(ABORT, 'refused for ana'); END")
    daemon.store.db.conn.commit()
    daemon.event("ana", "signed_up", T0)
    report = daemon.tick(T0 + timedelta(minutes=1))
    assert report.errors == 1
    # issue 10: "with its reason, visible … in the tick's report"; TickReport.problems is never filled
    assert report.to_dict()["problems"] != []


# --- the unsubscribe key ------------------------------------------------------------------------------------


def test_an_empty_key_in_the_store_is_no_key_not_the_public_one(daemon: Daemon) -> None:
    daemon.store.db.execute("UPDATE runner_state SET value = '' WHERE key = 'unsubscribe_secret'")
    daemon.store.db.conn.commit()
    daemon.event("ana", "signed_up", T0)
    with contextlib.suppress(Exception):  # refusing to send is the right answer
        daemon.tick(T0 + timedelta(minutes=1))
    for received in daemon.smtp.messages:
        link = received.message["List-Unsubscribe"].strip("<>")
        assert Signer(SIMULATION_SECRET).check_unsubscribe(urlsplit(link).path.removeprefix("/u/")) is None


# --- erasure --------------------------------------------------------------------------------------------


def test_a_contact_whose_enrollment_does_not_read_back_can_still_be_erased(daemon: Daemon) -> None:
    from mauto.store.contacts import erase

    daemon.event("ana", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1))
    daemon.store.db.execute("UPDATE enrollments SET data = '{\"id\": \"promo:ana:1\", \"truncated' "
                            "WHERE contact = 'ana'")
    daemon.store.db.conn.commit()
    daemon.tick(T0 + timedelta(days=1, minutes=5))  # the tick fails it alone (test_isolation.py)
    assert daemon.rows("SELECT state FROM enrollments WHERE contact = 'ana'") == [("failed",)]
    erase(daemon.store, "ana")  # JSONDecodeError: erasure is impossible for this contact
    assert daemon.rows("SELECT count(*) FROM contacts WHERE id = 'ana'") == [(0,)]


# --- poison the tick cannot get past ------------------------------------------------------------------------


def test_an_event_whose_row_does_not_read_back_fails_alone(daemon: Daemon) -> None:
    # Written by hand or by an older mauto, as the unreadable enrollment of test_isolation.py: here an event.
    daemon.event("ana", "signed_up", T0)
    daemon.event("ben", "signed_up", T0)
    daemon.store.db.execute("UPDATE events SET properties = '{bad' WHERE contact = 'ana' AND processed_at IS NULL")
    daemon.store.db.conn.commit()
    report = daemon.tick(T0 + timedelta(minutes=1))  # JSONDecodeError out of _prepare, every tick, for good
    assert (report.sent, report.errors) == (1, 1)
    assert daemon.rows("SELECT kind, contact FROM failures") == [("event", "ana")]


@pytest.mark.sqlite_only("writes bytes SQLite cannot decode as UTF-8 (PostgreSQL refuses them at the door)")
def test_a_contact_row_sqlite_cannot_decode_is_read_and_is_not_a_store_failure(daemon: Daemon) -> None:
    # Another program wrote a Latin-1 byte into ana's fields. Reading the row raised sqlite3.OperationalError
    # ("Could not decode to UTF-8 column 'fields'"), taken for the store's own failure: every tick stopped
    # (StoreError, exit 2) before anyone got anything. Now the bad byte reads back as U+FFFD: the row is read,
    # the tick goes on, and ana's message carries the replacement character where the bad byte was.
    daemon.store.db.execute("UPDATE contacts SET fields = CAST(X'7B2266697273745F6E616D65223A2022FF227D' AS TEXT) "
                            "WHERE id = 'ana'")
    daemon.store.db.conn.commit()
    daemon.event("ana", "signed_up", T0)
    daemon.event("ben", "signed_up", T0)
    report = daemon.tick(T0 + timedelta(minutes=1))
    assert (report.sent, report.errors) == (2, 0)
    assert "hello \ufffd" in [m.message["Subject"] for m in daemon.smtp.messages]


def test_a_webhook_call_whose_row_does_not_read_back_does_not_stop_all_sending(daemon: Daemon) -> None:
    daemon.http.replies.clear()
    daemon.http.respond("/crm", 503, {"error": "down"})
    daemon.event("ana", "ordered", T0)
    daemon.tick(T0 + timedelta(minutes=1))  # the call is to be retried
    daemon.store.db.execute("UPDATE calls SET request = '{bad'")
    daemon.store.db.conn.commit()
    daemon.event("ben", "signed_up", T0 + timedelta(hours=1))
    # runtime.due_calls raises JSONDecodeError after the drain and before the outbox: no tick sends anything
    report = daemon.tick(T0 + timedelta(hours=2))
    assert report.sent == 1 and report.needs_attention
    assert [m.message["Subject"] for m in daemon.smtp.messages] == ["hello Ben Bcc: evil@example.com"]


def test_a_webhook_s_retry_after_is_honoured(daemon: Daemon) -> None:
    # issue 10: "Retry-After from a 429/503 is logged but ignored: honour it" (done for SMS, not for webhooks)
    daemon.http.replies.clear()
    daemon.http.respond("/crm", 429, {"error": "slow down"}, headers={"Retry-After": "3600"}, times=1)
    daemon.http.respond("/crm", 200, {"id": "crm-1"})
    daemon.event("ana", "ordered", T0)
    daemon.tick(T0 + timedelta(minutes=1))
    daemon.tick(T0 + timedelta(minutes=30))
    assert len([r for r in daemon.http.requests if r.path == "/crm"]) == 1  # asked again after <= 60 s


# --- the per-contact segment items --------------------------------------------------------------------------


def test_a_tick_stopped_between_batches_does_not_lose_the_first_segment_check(daemon: Daemon, monkeypatch) -> None:
    from mauto.daemon import tick as runner

    write(daemon.root / "workflows" / "members.yaml", """\
        id: members
        version: 1
        name: Members
        category: transactional
        trigger: {segment: "contact.email != ''"}
        steps:
          - id: welcome
            email: promo/hello
        """)
    daemon.project = load_project(daemon.root / "mauto.yaml")
    deploy(daemon.project, daemon.store, T0 - timedelta(minutes=30))
    monkeypatch.setattr(runner, "BATCH", 1)
    asked: list[int] = []

    def stopping() -> bool:  # `mauto daemon` got SIGTERM while the first batch ran: it ends after that batch
        asked.append(1)
        return len(asked) > 1

    daemon.tick(T0, stopping=stopping)
    daemon.tick(T0 + timedelta(minutes=1))
    # the `segments` item marked the workflow started and queued one item per contact in memory only: the
    # stop dropped them, and no later tick checks those contacts again (before, one item did it all)
    assert daemon.rows("SELECT contact FROM enrollments WHERE workflow = 'members' ORDER BY contact") == [
        ("ana",), ("ben",), ("cy",)]


# --- `mauto failures` ---------------------------------------------------------------------------------------


def test_mauto_failures_shows_a_provider_s_answer_as_text(daemon: Daemon, tmp_path) -> None:
    from typer.testing import CliRunner

    from mauto.cli import app

    daemon.http.replies.clear()
    daemon.http.respond("/crm", 400, text="[/x] no such customer")  # the endpoint's words, not mauto's
    daemon.event("ana", "ordered", T0)
    daemon.tick(T0 + timedelta(minutes=1))
    assert daemon.rows("SELECT state FROM enrollments WHERE workflow = 'hooked'") == [("failed",)]
    result = CliRunner().invoke(app, ["-p", str(daemon.root / "mauto.yaml"), "failures"],
                                env={"COLUMNS": "200", "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.stderr  # MarkupError: internal error, exit 3
    assert "[/x] no such customer" in result.stdout


# --- the hand-off -----------------------------------------------------------------------------------------


def test_a_message_dropped_while_the_tick_sends_is_not_handed_over(daemon: Daemon) -> None:
    # `outbox drop` takes no tick lock: a person drops a pending message while the tick talks to the server.
    import threading

    from mauto.daemon.outbox import drop_message
    from mauto.store import open_store

    daemon.event("ana", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1), send=False)
    [(message_id,)] = daemon.rows("SELECT id FROM messages")
    daemon.smtp.on("mail", delay=1.0, times=1)  # the server is slow to answer MAIL FROM

    def drop() -> None:
        with open_store(daemon.location, timeout=2.0) as other:
            drop_message(other, message_id, T0 + timedelta(minutes=2))

    person = threading.Timer(0.3, drop)
    person.start()
    daemon.tick(T0 + timedelta(minutes=2))
    person.join()
    # mark_handoff's UPDATE … WHERE status = 'pending' changed nothing, the send went on anyway, and
    # record_delivery wrote `sent` over `cancelled`
    assert daemon.smtp.messages == []
    assert daemon.rows("SELECT status FROM messages") == [("cancelled",)]


def test_a_message_the_provider_accepted_is_not_recorded_as_could_not_be_sent(daemon: Daemon) -> None:
    from mauto.store import runtime
    from mauto.store.sqlite import stamp

    daemon.http.respond("/sms", 200, json={"id": "\ud800"})  # a provider's id with a lone surrogate
    with daemon.store.transaction() as db:
        runtime.insert_messages(db, [{
            "key": "k:1", "message_id": "<k@mauto>", "enrollment": "promo:ana:1", "workflow": "promo", "version": 1,
            "step": "hello", "contact": "ana", "channel": "sms", "template": "promo/hello", "marketing": 0,
            "to_address": "+33612345678", "sender": "SHOP", "subject": None, "body": b"hi", "status": "pending",
            "next_try_at": None, "created_at": stamp(T0), "updated_at": stamp(T0)}])
    daemon.tick(T0 + timedelta(minutes=1))
    assert len([r for r in daemon.http.requests if r.path == "/sms"]) == 1  # accepted: HTTP 200
    [(status, answer)] = daemon.rows("SELECT status, answer FROM messages")
    # recorded `unknown`, "could not be sent: UnicodeEncodeError …": a person reading it retries, and the
    # contact gets the SMS twice
    assert not answer.startswith("could not be sent"), answer
    assert status == "sent"


def test_the_first_segment_check_hands_out_coupons_in_the_simulation_s_order(daemon: Daemon) -> None:
    # The simulation checks every contact in one `segments` item, then handles the contact_updated events the
    # checks emitted; the tick now makes one item per contact, and an event at the same moment goes before
    # the next contact's item (_EVENT < _DUE): the pool's codes go out in another order than simulate says.
    from mauto.simulate import Samples, Simulation, load_contacts, select_workflows
    from mauto.store.coupons import load_coupons

    write(daemon.root / "workflows" / "members.yaml", """\
        id: members
        version: 1
        name: Members
        category: transactional
        trigger: {segment: "contact.email != ''"}
        steps:
          - update: {add_tags: [member]}
          - assign_coupon: {pool: GIFT, as: coupon}
        """)
    write(daemon.root / "workflows" / "tagged.yaml", """\
        id: tagged
        version: 1
        name: Tagged
        category: transactional
        trigger: {event: contact_updated}
        reentry: never
        steps:
          - assign_coupon: {pool: GIFT, as: coupon}
        """)
    daemon.project = load_project(daemon.root / "mauto.yaml")
    codes = [f"GIFT-{number}" for number in range(1, 10)]
    workflows, every = select_workflows(daemon.project, None, T0)
    contacts = load_contacts(daemon.root / "contacts.jsonl", daemon.project)
    simulated = Simulation(daemon.project, workflows, Samples(contacts, [], {"GIFT": codes}), T0,
                           T0 + timedelta(hours=1), every).run()
    expected = sorted((e.workflow, e.contact, e.vars.get("coupon")) for e in simulated.enrollments)
    deploy(daemon.project, daemon.store, T0 - timedelta(minutes=30))
    write(daemon.root / "gift.txt", "\n".join(codes) + "\n")
    load_coupons(daemon.store, "GIFT", daemon.root / "gift.txt")
    daemon.tick(T0)
    ticked = sorted((json.loads(data)["workflow"], json.loads(data)["contact"], json.loads(data)["vars"].get("coupon"))
                    for (data,) in daemon.rows("SELECT data FROM enrollments"))
    assert ticked == expected
