"""Killed with SIGKILL at any point of a tick and started again, the daemon loses no enrollment and sends no
message twice: `mauto run --once` in a subprocess, killed at random moments over many runs, against a real
SMTP server; then every Message-ID is counted at the server."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from tests.daemon.harness import T0, Daemon
from tests.servers import HttpServer, SmtpServer

CONTACTS = 40
KILLED_RUNS = 24


def mauto(root: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "MAUTO_TEST_SMS_TOKEN": "t0k3n", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "mauto", "-p", str(root / "mauto.yaml"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_sigkill_at_random_moments_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    seed = int(os.environ.get("MAUTO_CRASH_SEED", time.time_ns() % 1_000_000))
    chance = random.Random(seed)
    with SmtpServer() as smtp, HttpServer() as http:
        smtp.on("data", delay=0.05)  # a little time inside each hand-off, so that kills land there too
        daemon = Daemon(tmp_path, smtp, http)
        rows = [{"id": f"p{n:03d}", "email": f"p{n:03d}@example.com", "email_consent": True, "first_name": f"P{n}"}
                for n in range(CONTACTS)]
        (tmp_path / "more.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
        from mauto.store.contacts import import_contacts

        import_contacts(daemon.store, tmp_path / "more.jsonl", fields=daemon.project.contact_fields,
                        zone=daemon.project.timezone)
        daemon.tick(T0 - timedelta(hours=1))
        for row in rows:
            daemon.event(row["id"], "signed_up", T0)
        daemon.store.close()
        kills = Counter()
        half = KILLED_RUNS // 2
        moments = [T0 + timedelta(minutes=1)] * half + [T0 + timedelta(days=1, minutes=1)] * half
        runs = 0
        # More runs (at the last moment) while too few were killed: on a fast machine a run that finds little
        # left to do ends before its kill; the guarantee needs kills, not a fixed number of runs.
        while runs < len(moments) or (kills["killed"] < KILLED_RUNS // 3 and runs < 3 * KILLED_RUNS):
            now = moments[min(runs, len(moments) - 1)]
            runs += 1
            process = mauto(tmp_path, "run", "--once", "--quiet", "--now", now.isoformat())
            time.sleep(chance.uniform(0.2, 1.6))  # Python's start-up is ~0.4 s: some die early, most mid-tick
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills["killed"] += 1
            else:
                kills["finished"] += 1
            process.communicate(timeout=30)
        assert kills["killed"] >= KILLED_RUNS // 3, f"too few runs were killed to prove anything: {kills} (seed {seed})"
        for now in (T0 + timedelta(days=1, minutes=2), T0 + timedelta(days=1, hours=3)):  # let it finish
            done = mauto(tmp_path, "run", "--once", "--quiet", "--now", now.isoformat())
            out, err = done.communicate(timeout=60)
            assert done.returncode in (0, 1), err.decode()
        received = smtp.message_ids()

    import sqlite3

    db = sqlite3.connect(tmp_path / "mauto.db")
    messages = {key: (message_id, status) for key, message_id, status in
                db.execute("SELECT key, message_id, status FROM messages")}
    enrollments = db.execute("SELECT contact, state, position FROM enrollments WHERE workflow = 'promo'").fetchall()
    context = f"(seed {seed}, {dict(kills)})"
    # no message arrived twice
    assert [mid for mid, count in received.items() if count > 1] == [], context
    # no enrollment lost: every contact is in, and past both sends
    assert sorted(contact for contact, _, _ in enrollments) == sorted(row["id"] for row in rows), context
    assert {(state, position) for _, state, position in enrollments} == {("completed", None)}, context
    # every message is accounted for: two per contact, each sent or waiting for a person (unknown)
    assert len(messages) == 2 * CONTACTS, context
    assert set(status for _, status in messages.values()) <= {"sent", "unknown"}, context
    by_id = {message_id: status for message_id, status in messages.values()}
    for key, (message_id, status) in messages.items():
        if status == "sent":
            assert received[message_id] == 1, f"{key} is sent but arrived {received[message_id]} times {context}"
    # whatever the server got that the store does not call sent is unknown: never resent blind
    for message_id in received:
        assert by_id[message_id] in ("sent", "unknown"), context
