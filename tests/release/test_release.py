"""Whole releases: the daemon renders only what was deployed. A template edited on disk after a deploy changes
nothing sent until the next deploy; `plan` shows the change with the steps that use it and the contacts in
flight; `rollback` restores the templates a version was deployed with; `status` names the release."""
from __future__ import annotations

from datetime import timedelta

from mauto.deploy import deploy, plan, rollback
from mauto.release import release_project
from tests.daemon.harness import DEPLOYED, T0, Daemon, mauto, write


def _bodies(daemon: Daemon) -> list[str]:
    return [message.message.get_body(("plain",)).get_content() for message in daemon.smtp.messages]


def test_a_template_edited_on_disk_changes_nothing_sent_until_the_next_deploy(daemon: Daemon) -> None:
    daemon.event("ana", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1))  # hello
    write(daemon.root / "templates" / "promo" / "again.email.html",
          '---\nsubject: "again {{ contact.first_name }}"\n---\n<p>EDITED-AFTER-DEPLOY</p>'
          '<a href="{{ unsubscribe_url }}">unsubscribe</a>\n')
    [waiting] = plan(daemon.project, daemon.store, T0).release.templates
    assert waiting.waiting == 1  # ana, in flight in promo, will get the edited `again` once it is deployed
    assert "(promo: again; 1 contact in flight there)" in mauto(daemon, "plan").stdout
    daemon.tick(T0 + timedelta(days=1, minutes=1))  # again, for ana: rendered from the release
    assert [body.split()[0] for body in _bodies(daemon)] == ["hello", "again"]
    assert "EDITED-AFTER-DEPLOY" not in _bodies(daemon)[1]

    shown = plan(daemon.project, daemon.store, T0)
    [template] = shown.release.templates
    assert (template.path, template.kind, template.used_by) == ("templates/promo/again.email.html", "changed",
                                                               ["promo: again"])
    assert template.waiting == 0  # ana's `again` went out (from the release) and she completed
    assert "-<p>again {{ contact.first_name }}</p><a href=\"{{ unsubscribe_url }}\">unsubscribe</a>" in template.diff
    assert shown.has_changes and shown.release.settings == []
    text = mauto(daemon, "plan").stdout
    assert "~ templates/promo/again.email.html (promo: again)" in text and "+<p>EDITED-AFTER-DEPLOY</p>" in text

    result = deploy(daemon.project, daemon.store, T0 + timedelta(days=1, hours=1))
    assert result.release == 2
    daemon.event("ben", "signed_up", T0 + timedelta(days=1, hours=2))
    daemon.tick(T0 + timedelta(days=2, hours=3))  # ben: hello, then again (a day later), from release 2
    assert "EDITED-AFTER-DEPLOY" in _bodies(daemon)[-1]
    # each message names the release it was rendered from
    assert daemon.rows("SELECT contact, step, release FROM messages ORDER BY id") == [
        ("ana", "hello", 1), ("ana", "again", 1), ("ben", "hello", 2), ("ben", "again", 2)]
    status = mauto(daemon, "status").stdout
    assert status.splitlines()[0].startswith("release #2 (") and ", deploy by " in status.splitlines()[0]


def test_rollback_restores_the_templates_a_version_was_sent_with(daemon: Daemon) -> None:
    source = (daemon.root / "workflows" / "promo.yaml").read_text()
    write(daemon.root / "workflows" / "promo.yaml", source.replace("version: 1", "version: 2"))
    write(daemon.root / "templates" / "promo" / "hello.email.html",
          '---\nsubject: "hello {{ contact.first_name }}"\n---\n<p>REWRITTEN OFFER</p>'
          '<a href="{{ unsubscribe_url }}">unsubscribe</a>\n')
    deploy(daemon.project, daemon.store, T0 - timedelta(minutes=30))
    project, release = release_project(daemon.project, daemon.store)
    assert release == 2 and "REWRITTEN OFFER" in (project.templates_dir / "promo" / "hello.email.html").read_text()

    summary = rollback(daemon.store, "promo", to=1)
    assert summary["templates_from_release"] == 1
    daemon.event("ana", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1))
    [body] = _bodies(daemon)
    assert body.split()[0] == "hello" and "REWRITTEN OFFER" not in body  # v1's text, from release 1's files
    assert daemon.rows("SELECT id, note FROM releases ORDER BY id") == [
        (1, "deploy"), (2, "deploy"), (3, "rollback of promo to v1 (its templates as in release #1: "
                                         "promo/hello.email.html)")]


def test_a_deploy_that_changes_nothing_makes_no_release(daemon: Daemon) -> None:
    again = deploy(daemon.project, daemon.store, DEPLOYED + timedelta(hours=1))
    assert again.release is None and not again.plan.has_changes
    assert daemon.rows("SELECT count(*) FROM releases") == [(1,)]


def test_releases_are_immutable(daemon: Daemon, store_kind: str) -> None:
    import sqlite3

    import pytest

    # SQLite's triggers RAISE(ABORT, …); PostgreSQL's raise the same message from PL/pgSQL
    refused: type[Exception] = sqlite3.IntegrityError
    if store_kind == "postgresql":
        import psycopg

        refused = psycopg.errors.RaiseException
    for statement in ("UPDATE releases SET note = 'x'", "DELETE FROM release_files",
                      "UPDATE release_blobs SET text = ''"):
        with pytest.raises(refused, match="a release is immutable"):
            daemon.store.db.execute(statement)
    assert daemon.rows("SELECT note FROM releases") == [("deploy",)]


def test_a_template_the_release_dropped_still_reaches_the_contacts_in_flight_on_the_version_that_sends_it(
        daemon: Daemon) -> None:
    daemon.event("ana", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1))  # hello; ana waits a day on v1 before `again`
    source = (daemon.root / "workflows" / "promo.yaml").read_text()
    v2 = source.replace("version: 1", "version: 2").split("  - wait: 1d")[0]  # v2: hello only
    write(daemon.root / "workflows" / "promo.yaml", v2)
    (daemon.root / "templates" / "promo" / "again.email.html").unlink()
    shown = plan(daemon.project, daemon.store, T0)
    [dropped] = [template for template in shown.release.templates if template.kind == "removed"]
    assert dropped.path == "templates/promo/again.email.html"
    deploy(daemon.project, daemon.store, T0 + timedelta(hours=1))  # in_flight: finish (the default)
    daemon.tick(T0 + timedelta(days=1, minutes=1))
    assert [body.split()[0] for body in _bodies(daemon)] == ["hello", "again"]  # from release 1's text
