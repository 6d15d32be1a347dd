"""`mauto status` shows the daemons alive on the store: two real `mauto daemon` processes on one store (SQLite and
PostgreSQL), one stopped by SIGTERM, one killed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from mauto.store.workers import listed
from tests.daemon.harness import Daemon, mauto


def _daemon(fresh_daemon: Daemon) -> subprocess.Popen:
    env = {**os.environ, "MAUTO_TEST_SMS_TOKEN": "t0k3n", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "mauto", "-p", str(fresh_daemon.root / "mauto.yaml"), "daemon",
                             "--interval", "1s"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)


def _workers(fresh_daemon: Daemon) -> list[dict]:
    with fresh_daemon.store.transaction() as db:
        return listed(db, datetime.now(UTC))


def test_status_lists_the_daemons_alive_and_those_gone(fresh_daemon: Daemon, store_kind: str) -> None:
    first, second = _daemon(fresh_daemon), _daemon(fresh_daemon)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = _workers(fresh_daemon)
            if len(rows) == 2 and all(row["ticks"] >= 1 for row in rows):
                break
            time.sleep(0.3)
        assert {row["pid"] for row in rows} == {first.pid, second.pid}, rows
        assert all(row["alive"] and row["ticks"] >= 1 for row in rows), rows
        result = mauto(fresh_daemon, "status")
        assert result.exit_code == 0, result.output
        assert "workers alive: 2: " in result.stdout and f"pid {first.pid} (" in result.stdout
        shown = json.loads(mauto(fresh_daemon, "status", "--format", "json").stdout)
        assert {row["pid"]: row["alive"] for row in shown["workers"]} == {first.pid: True, second.pid: True}
        assert [row["id"] for row in shown["workflows"]] == ["hooked", "promo"] and shown["release"]["id"] >= 1

        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
        second.kill()  # as a machine lost: no goodbye
        second.wait(timeout=30)
        rows = {row["pid"]: row for row in _workers(fresh_daemon)}
        assert rows[first.pid]["state"] == "stopped" and not rows[first.pid]["alive"]
        assert rows[second.pid]["alive"]  # silent only once twice its interval and a minute have passed
        result = mauto(fresh_daemon, "status")
        assert "workers alive: 1: " in result.stdout and "workers gone today: 1: " in result.stdout
        assert f"pid {first.pid} (stopped" in result.stdout
        with fresh_daemon.store.transaction() as db:
            later = {row["pid"]: row for row in listed(db, datetime.now(UTC) + timedelta(minutes=2))}
        assert not later[second.pid]["alive"]
        with fresh_daemon.store.transaction() as db:
            assert listed(db, datetime.now(UTC) + timedelta(days=2)) == []  # forgotten after a day
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_status_says_nothing_of_workers_when_ticks_come_from_cron(fresh_daemon: Daemon, store_kind: str) -> None:
    assert mauto(fresh_daemon, "run", "--once", "--now", "2026-12-01T09:01:00Z").exit_code == 0
    result = mauto(fresh_daemon, "status")
    assert result.exit_code == 0 and "workers" not in result.stdout


@pytest.mark.parametrize("store_kind", ["postgresql"])  # one tick at a time on SQLite: the whole rate
def test_each_daemon_takes_its_share_of_a_channel_s_rate(fresh_daemon: Daemon, store_kind: str) -> None:
    from mauto.channels.pace import pace_of
    from mauto.daemon.tick import _share_paces
    from mauto.store.workers import beat

    now = datetime.now(UTC)
    with fresh_daemon.store.transaction() as db:
        for pid in (101, 102):
            beat(db, f"mail-{pid}", "mail", pid, now, now, timedelta(seconds=30), "idle")
        beat(db, "mail-103", "mail", 103, now, now, timedelta(seconds=30), "stopped")
    _share_paces(fresh_daemon.store, fresh_daemon.transports)
    assert {pace_of(transport).share for transport in fresh_daemon.transports.values()} == {0.5}
