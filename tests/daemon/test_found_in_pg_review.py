"""A hostile review of several workers on one PostgreSQL store (mauto.daemon.tick.shared_tick, runtime's claims,
PgStore): one test per finding, each failing on the code as reviewed, each passing since its fix.

Every test runs on a real PostgreSQL cluster (tests/pg.py), with the daemon harness's real SMTP and HTTP servers
on 127.0.0.1 (tests/daemon/harness.py)."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from mauto.config import load_project
from mauto.daemon import tick as runner
from mauto.deploy import deploy
from mauto.store import open_store
from mauto.store.contacts import import_contacts
from mauto.store.coupons import load_coupons
from mauto.store.events import ingest_events
from tests.daemon.harness import T0, Daemon, write

# --- 1. one worker that cannot use a channel holds that channel's messages from every other worker -------------


def test_a_worker_whose_channel_is_down_leaves_the_messages_to_the_others(pg_daemon: Daemon) -> None:
    pg_daemon.event("ana", "signed_up", T0)
    # Worker `broken`: a daemon on a machine set up for SMS only (its mauto.yaml has no email channel, or its
    # email transport cannot open there): its email lane is held, the messages "wait in the outbox".
    broken = open_store(pg_daemon.location, timeout=2.0)
    try:
        transports = {"sms": pg_daemon.transports["sms"]}
        report = runner.tick(pg_daemon.project, broken, T0 + timedelta(minutes=1), transports)
        assert report.sent == 0 and any("email messages were not sent" in note for note in report.notes)
        assert list(pg_daemon.statuses().values()) == ["pending"]
        # A healthy worker ticks next (seconds later): the message waits for nothing it can do.
        healthy = pg_daemon.tick(T0 + timedelta(minutes=2))
        assert healthy.sent == 1, pg_daemon.rows("SELECT status, claimed_by, claimed_until FROM messages")
        assert len(pg_daemon.smtp.messages) == 1
    finally:
        broken.close()


# --- 2. a deploy during a tick: claims pair the new versions with the plan's release -----------------------------

WELCOME = """\
id: promo
version: 2
name: Promo
category: marketing
trigger: {event: signed_up}
reentry: never
steps:
  - id: welcome
    email: promo/welcome
"""


def test_a_deploy_during_a_tick_never_pairs_new_versions_with_the_old_release(pg_daemon: Daemon,
                                                                              monkeypatch) -> None:
    pg_daemon.event("ana", "signed_up", T0)
    write(pg_daemon.root / "workflows" / "promo.yaml", WELCOME)
    write(pg_daemon.root / "templates" / "promo" / "welcome.email.html",
          '---\nsubject: "welcome"\n---\n<p>welcome</p><a href="{{ unsubscribe_url }}">unsubscribe</a>\n')
    new = load_project(pg_daemon.root / "mauto.yaml")
    claim = runner.runtime.claim_contacts
    deployed: list[bool] = []

    def deploy_then_claim(db, *args, **kwargs):  # another operator's `mauto deploy`, between plan and claim
        if not deployed:
            deployed.append(True)
            other = open_store(pg_daemon.location, timeout=2.0)
            try:
                deploy(new, other, T0 + timedelta(seconds=30))
            finally:
                other.close()
        return claim(db, *args, **kwargs)

    monkeypatch.setattr(runner.runtime, "claim_contacts", deploy_then_claim)
    report = pg_daemon.tick(T0 + timedelta(minutes=1))
    assert deployed
    failures = pg_daemon.rows("SELECT kind, reason FROM failures")
    steps = pg_daemon.rows("SELECT workflow, step, kind, detail FROM step_log WHERE contact = 'ana'")
    assert failures == [] and report.errors == 0, (failures, steps)
    # either version, as long as it is whole: v1 with v1's templates, or v2 with v2's
    assert pg_daemon.rows("SELECT template FROM messages WHERE contact = 'ana'") in (
        [("promo/hello",)], [("promo/welcome",)]), steps


# --- 3. the last coupon of a pool: to whoever reached the step first, as `mauto simulate` gives it ---------------

COUPON_PROJECT = {
    "mauto.yaml": """\
        store: STORE
        timezone: UTC
        sender: {email: "Shop <shop@example.com>"}
        channels:
          email: {transport: file, path: outbox}
        events: {ordered: {}}
        """,
    "workflows/thanks.yaml": """\
        id: thanks
        version: 1
        name: Thanks
        category: transactional
        trigger: {event: ordered}
        steps:
          - assign_coupon: {pool: LAST, as: coupon}
          - id: mail
            email: thanks/mail
        """,
    "templates/thanks/mail.email.html": '---\nsubject: "thanks"\n---\n<p>{{ vars.coupon }}</p>\n',
}


FILLERS = [f"m{number:03}" for number in range(runner.CLAIM)]  # ids between amy's and zoe's


def test_the_last_coupon_goes_to_the_contact_who_came_first(tmp_path: Path, pg_cluster, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    url = str(pg_cluster.url())
    for name, text in COUPON_PROJECT.items():
        write(tmp_path / name, text.replace("STORE", url))
    (tmp_path / "contacts.jsonl").write_text(
        "\n".join(json.dumps({"id": name, "email": f"{name}@example.com"}) for name in ("amy", *FILLERS, "zoe"))
        + "\n",
        encoding="utf-8")
    (tmp_path / "codes.txt").write_text("ONLY-ONE\n", encoding="utf-8")
    project = load_project(tmp_path / "mauto.yaml")
    deployed = T0 - timedelta(days=1)
    store = open_store(url, lambda: deployed, create=True, timeout=2.0)
    try:
        deploy(project, store, deployed)
        import_contacts(store, tmp_path / "contacts.jsonl", fields=project.contact_fields, zone=project.timezone)
        load_coupons(store, "LAST", tmp_path / "codes.txt")
        runner.tick(project, store, T0 - timedelta(hours=1), {}, send=False)
        # zoe orders first, amy half an hour later, 200 others later still (a busy hour: more contacts due than
        # one claim takes); one tick sees them all
        orders = [("zoe", T0), ("amy", T0 + timedelta(minutes=30))]
        orders += [(name, T0 + timedelta(minutes=50)) for name in FILLERS]
        (tmp_path / "events.jsonl").write_text("".join(
            json.dumps({"contact": name, "event": "ordered", "at": at.isoformat()}) + "\n" for name, at in orders),
            encoding="utf-8")
        assert ingest_events(store, tmp_path / "events.jsonl", catalogue=project.events, zone=project.timezone).ok
        runner.tick(project, store, T0 + timedelta(hours=1), {}, send=False)
        got = dict(store.db.execute("SELECT assigned_to, code FROM coupons").fetchall())
    finally:
        store.close()
    assert got == {"zoe": "ONLY-ONE"}


# --- 4. a contact held by one worker's claim; another worker's hand-off to that contact -------------------------


def test_a_hand_off_to_a_contact_another_worker_holds_ends_sent_or_unknown(pg_daemon: Daemon) -> None:
    pg_daemon.event("ana", "signed_up", T0)
    pg_daemon.tick(T0 + timedelta(minutes=1), send=False)  # ana's hello, in the outbox
    pg_daemon.event("ana", "signed_up", T0 + timedelta(minutes=2))
    [(key, status)] = pg_daemon.statuses().items()
    assert status == "pending"
    other = open_store(pg_daemon.location, timeout=2.0)  # worker B, in the middle of a claim that took ana
    try:
        with other.transaction() as db:
            # the lock a claim takes on the contact (B's plan and the queue are done; B holds ana's row)
            assert db.execute("SELECT id FROM contacts WHERE id = 'ana' FOR NO KEY UPDATE").fetchall() == [("ana",)]
            report = pg_daemon.tick(T0 + timedelta(minutes=3))  # worker A sends meanwhile, not held up by B
        assert len(pg_daemon.smtp.messages) == 1 and report.sent == 1  # the server took it
    finally:
        other.close()
    pg_daemon.tick(T0 + timedelta(minutes=4))  # worker A, alive, ticks again
    pg_daemon.tick(T0 + timedelta(minutes=5))
    row = pg_daemon.rows("SELECT status, handoff_at IS NOT NULL FROM messages WHERE key = ?", key)
    assert row[0][0] in ("sent", "unknown"), row
