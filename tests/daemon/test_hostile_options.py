"""Options no command can take: each a clear error naming the option, exit 1 or 2, nothing written, never
an internal error (exit 3) — and what a contact's data can do to the action log."""
from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from tests.daemon.harness import T0, Daemon, mauto


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--once", "--now", "9999-12-31T23:59:59-12:00"],
     "--now `9999-12-31T23:59:59-12:00` is outside the times mauto handles (years 1000 to 8999)"),
    (["run", "--once", "--now", "0001-01-01T00:00:00+05:00"],
     "--now `0001-01-01T00:00:00+05:00` is outside the times mauto handles (years 1000 to 8999)"),
    (["daemon", "--interval", "99999999999d"],
     "--interval 99999999999d: `99999999999d` is longer than mauto handles (at most 365000d (about 1,000 years))"),
    (["simulate", "--for", "99999999999d"],
     "--for: `99999999999d` is longer than mauto handles (at most 365000d (about 1,000 years))"),
    (["simulate", "--for", "4000d"], "--for 4000d: a simulation covers at most 3650d (10 years)"),
    (["simulate", "--for", "0s"], "--for 0s: must be longer than 0s"),
    (["simulate", "--start", "8999-12-01T00:00:00Z", "--for", "3650d"],
     "--start + --for: the simulation's end `9009-11-29T00:00:00+00:00` is outside the times mauto handles"),
    (["contacts", "import", "contacts.jsonl", "--skip-invalid", "--rejects", "-"],
     "--rejects -: name a file (standard output carries the command's report)"),
])
def test_an_option_out_of_range_is_a_usage_error(fresh_daemon: Daemon, args: list[str], message: str) -> None:
    before = fresh_daemon.rows("SELECT count(*) FROM runner_state")
    result = mauto(fresh_daemon, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr.replace("\n", " ") and "internal error" not in result.stderr
    assert fresh_daemon.rows("SELECT count(*) FROM runner_state") == before


@pytest.mark.parametrize("command", ["retry", "drop"])
def test_an_outbox_id_past_sqlite_s_range_is_a_usage_error(fresh_daemon: Daemon, command: str) -> None:
    result = mauto(fresh_daemon, "outbox", command, "99999999999999999999999")
    assert result.exit_code == 2 and "internal error" not in result.output
    assert "Invalid value for 'ID'" in result.output and "9223372036854775807" in result.output


def test_a_contact_s_line_breaks_cannot_forge_a_line_of_the_action_log(fresh_daemon: Daemon) -> None:
    mauto(fresh_daemon, "run", "--once", "--now", (T0 - timedelta(hours=1)).isoformat())
    # Written before imports refused control characters in ids (they do now): data already in a store.
    forged = "ana\r\nsent       key=forged contact=eve"
    fresh_daemon.store.db.execute("UPDATE contacts SET id = ? WHERE id = 'ana'", [forged])
    fresh_daemon.store.db.execute("INSERT INTO events (contact, name, at, properties, received_at) VALUES "
                            "(?, 'signed_up', ?, '{}', ?)", [forged, T0.isoformat(), T0.isoformat()])
    fresh_daemon.store.db.commit()
    result = mauto(fresh_daemon, "run", "--once", "--now", "2026-12-01T09:01:00Z")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert not any(line.startswith("sent       key=forged") for line in lines), lines
    assert any("ana\\r\\nsent       key=forged contact=eve promo v1 trigger" in line for line in lines), lines


@pytest.mark.sqlite_only("makes the store refuse a row with a trigger in SQLite's syntax")
def test_failures_lists_what_ticks_could_not_handle(fresh_daemon: Daemon) -> None:
    mauto(fresh_daemon, "run", "--once", "--now", (T0 - timedelta(hours=1)).isoformat())
    fresh_daemon.event("ana", "signed_up", T0)
    fresh_daemon.store.db.execute("CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.contact = 'ana' BEGIN "
                            "SELECT RAISE(ABORT, 'refused for ana'); END")
    fresh_daemon.store.db.commit()
    ran = mauto(fresh_daemon, "run", "--once", "--now", "2026-12-01T09:01:00Z")
    assert ran.exit_code == 1  # something failed: docs/fresh_daemon.md, "Exit codes"
    assert ", 1 error in " in ran.stdout
    assert "error      event=signed_up contact=ana at=2026-12-01T09:00:00+00:00 why=IntegrityError: refused " \
           "for ana" in ran.stderr
    listed = mauto(fresh_daemon, "failures")
    assert listed.exit_code == 0
    assert "event signed_up: IntegrityError: refused for ana" in listed.stdout and "ana" in listed.stdout


def test_export_into_a_closed_pipe_ends_quietly(fresh_daemon: Daemon) -> None:
    for number in range(2000):
        fresh_daemon.store.db.execute("INSERT INTO contacts (id, email_consent, sms_consent, fields, created_at, "
                                "updated_at) VALUES (?, 0, 0, '{}', '2026-12-01', '2026-12-01')", [f"c{number:05}"])
    fresh_daemon.store.db.commit()
    command = f"{sys.executable} -m mauto -p {fresh_daemon.root / 'mauto.yaml'} contacts export | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("id,") and done.stderr == "", done.stderr
    assert done.returncode == 0
