"""What a hostile review of whole releases found, one test each (each failed on the code as reviewed): a rollback
that reverted another workflow's template, a file edited in the release folder that was sent, a release folder
only its writer could read. Real store, real SMTP server (the daemon harness)."""
from __future__ import annotations

import os
import stat
from datetime import timedelta

from mauto import release as release_module
from mauto.deploy import deploy, rollback
from mauto.release import release_project
from tests.daemon.harness import DEPLOYED, T0, Daemon, write


def _bodies(daemon: Daemon) -> list[str]:
    return [message.message.get_body(("plain",)).get_content() for message in daemon.smtp.messages]


def test_rolling_back_one_workflow_does_not_revert_another_workflows_template(daemon: Daemon) -> None:
    # WRONG (mauto/deploy.py:567-589, _rollback_release; mauto/release.py:171 release_for): `rollback promo`
    # makes current ALL the files of the latest release in which promo ran v1: every template (also those only
    # other workflows send) and mauto.yaml. Here `hooked`'s template promo/thanks was fixed and deployed after
    # promo v2; rolling back promo silently puts the old `thanks` text (and the old settings) back live, with
    # no plan and no review. RIGHT: a rollback of one workflow restores only the templates that workflow's
    # steps send (or refuses / shows in its dry run every other template and setting it would revert).
    source = (daemon.root / "workflows" / "promo.yaml").read_text()
    write(daemon.root / "workflows" / "promo.yaml", source.replace("version: 1", "version: 2"))
    deploy(daemon.project, daemon.store, DEPLOYED + timedelta(hours=1))  # release 2: promo v2
    write(daemon.root / "templates" / "promo" / "thanks.email.html",
          '---\nsubject: "thanks {{ contact.first_name }}"\n---\n<p>FIXED THANKS</p>'
          '<a href="{{ unsubscribe_url }}">unsubscribe</a>\n')
    deploy(daemon.project, daemon.store, DEPLOYED + timedelta(hours=2))  # release 3: hooked's template fixed
    rollback(daemon.store, "promo", to=1)
    project, _ = release_project(daemon.project, daemon.store)
    assert "FIXED THANKS" in (project.templates_dir / "promo" / "thanks.email.html").read_text()


def test_a_file_edited_in_the_release_folder_is_not_sent(daemon: Daemon) -> None:
    # WRONG (mauto/release.py:205-212, release_project): the folder `<store>.releases/<hash>/` is trusted as soon
    # as its mauto.yaml exists; nothing checks its files against the hashes the store holds. An edit there (or
    # a half-copied / restored-from-backup folder) reaches customers at the next daemon start with no deploy,
    # no plan and no record, and the message still names the release. RIGHT: verify each file's SHA-256
    # against release_files when loading (rewrite the folder, or refuse), so only deployed text is rendered.
    daemon.event("ana", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1))  # hello; writes the release folder
    [folder] = [path for path in daemon.store.local_folder("releases").iterdir()
                if not path.name.startswith(".")]
    (folder / "templates" / "promo" / "again.email.html").write_text(
        '---\nsubject: "again"\n---\n<p>NOT DEPLOYED</p><a href="{{ unsubscribe_url }}">unsubscribe</a>\n')
    release_module._LOADED.clear()  # a daemon restart
    daemon.tick(T0 + timedelta(days=1, minutes=1))
    assert "NOT DEPLOYED" not in _bodies(daemon)[-1]


def test_the_release_folder_is_readable_as_the_store_is(daemon: Daemon) -> None:
    # WRONG (mauto/release.py:223, _write_out): the folder is made with tempfile.mkdtemp, always mode 0700,
    # whatever the umask. Whoever ticks first (an operator's `mauto run --once`) owns a folder the daemon's own
    # user cannot read: the daemon then fails on every tick (load_project of an unreadable mauto.yaml) until
    # someone deletes it. RIGHT: the folder gets the permissions the umask gives (as the store file does).
    old = os.umask(0o022)
    try:
        daemon.tick(T0)
    finally:
        os.umask(old)
    [folder] = [path for path in daemon.store.local_folder("releases").iterdir()
                if not path.name.startswith(".")]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
