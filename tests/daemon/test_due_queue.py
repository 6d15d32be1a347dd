"""Several workers on one PostgreSQL store claim contacts from the plan's queue (`runtime.queue_due`,
`runtime.claim_contacts`): the due items are grouped once a tick, and each claim reads the next rows of the
queue through its index. On a real PostgreSQL cluster (tests/pg.py), with the daemon harness's servers."""
from __future__ import annotations

from datetime import timedelta

from mauto.daemon import tick as runner
from mauto.store import open_store, runtime
from mauto.store.sqlite import Rollback
from tests.daemon.harness import T0, Daemon

LATER = T0 + timedelta(minutes=10)


def _three_due(pg_daemon: Daemon) -> None:
    # cy first, then ana, then ben: the order of their first due moment, not of their ids
    for contact, minutes in (("cy", 1), ("ana", 2), ("ben", 3)):
        pg_daemon.event(contact, "ordered", T0 + timedelta(minutes=minutes))


def test_the_plan_queues_each_contact_once_at_its_first_due_moment(pg_daemon: Daemon) -> None:
    _three_due(pg_daemon)
    pg_daemon.event("ana", "signed_up", T0 + timedelta(minutes=5))  # a second item: ana is queued once
    pg_daemon.event("ben", "ordered", LATER + timedelta(hours=1))  # not due yet: not queued for it
    with pg_daemon.store.transaction() as db:
        assert runtime.queue_due(db, LATER) == 3
        queued = [tuple(row) for row in db.execute("SELECT contact, due FROM due_queue ORDER BY due")]
        assert [contact for contact, _ in queued] == ["cy", "ana", "ben"]
        assert queued[1][1].startswith((T0 + timedelta(minutes=2)).isoformat()[:16])
        # a contact is taken out of the queue as it is claimed, in due order, `limit` at a time
        assert [contact for contact, _ in runtime.claim_contacts(db, LATER, 2)] == ["cy", "ana"]
        assert [contact for contact, _ in runtime.claim_contacts(db, LATER, 2)] == ["ben"]
        assert runtime.claim_contacts(db, LATER, 2) == []


def test_a_worker_claims_only_what_is_due_by_its_own_moment(pg_daemon: Daemon) -> None:
    _three_due(pg_daemon)
    with pg_daemon.store.transaction() as db:
        runtime.queue_due(db, LATER)  # planned by a worker whose clock is later
        assert [contact for contact, _ in runtime.claim_contacts(db, T0 + timedelta(minutes=2), 10)] == ["cy", "ana"]
        assert [contact for contact, _ in runtime.claim_contacts(db, LATER, 10)] == ["ben"]


def test_two_workers_never_take_one_contact_and_a_rolled_back_claim_leaves_its_contacts_queued(
        pg_daemon: Daemon) -> None:
    _three_due(pg_daemon)
    with pg_daemon.store.transaction() as db:
        runtime.queue_due(db, LATER)
    other = open_store(pg_daemon.location, timeout=2.0)
    try:
        with other.transaction() as held:  # worker B holds its claim open
            taken = [contact for contact, _ in runtime.claim_contacts(held, LATER, 2)]
            assert taken == ["cy", "ana"]
            with pg_daemon.store.transaction() as db:  # worker A skips B's rows, waits for nothing
                assert [contact for contact, _ in runtime.claim_contacts(db, LATER, 10)] == ["ben"]
            raise Rollback  # B is killed: its transaction never commits
    finally:
        other.close()
    assert sorted(pg_daemon.rows("SELECT contact FROM due_queue")) == [("ana",), ("cy",)]


def test_a_tick_drains_every_contact_of_the_queue_with_many_claims(pg_daemon: Daemon, monkeypatch) -> None:
    """CLAIM contacts at a time: a tick with more due contacts than one claim takes still serves each, once."""
    monkeypatch.setattr(runner, "CLAIM", 1)
    claims: list[list[str]] = []
    claim = runtime.claim_contacts

    def counted(db, until, limit):
        found = claim(db, until, limit)
        claims.append([contact for contact, _ in found])
        return found

    monkeypatch.setattr(runtime, "claim_contacts", counted)
    for contact in ("cy", "ana", "ben"):
        pg_daemon.event(contact, "signed_up", T0 + timedelta(minutes=1))
    pg_daemon.tick(T0 + timedelta(minutes=2))
    assert claims == [["ana"], ["ben"], ["cy"], []]
    # what the tick's sends recorded (email_sent) is the next tick's; every signed_up was handled
    assert pg_daemon.rows("SELECT name, contact FROM events WHERE processed_at IS NULL AND name = 'signed_up'") == []
    assert pg_daemon.rows("SELECT count(*) FROM due_queue") == [(0,)]
    assert sorted(pg_daemon.rows("SELECT contact FROM enrollments WHERE workflow = 'promo'")) == [
        ("ana",), ("ben",), ("cy",)]
