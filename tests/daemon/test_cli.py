"""`mauto run --once`, `mauto daemon` and `mauto outbox` as a user runs them (real processes where signals
matter, typer's runner elsewhere), against a real SMTP server on 127.0.0.1."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

from tests.daemon.harness import T0, Daemon, mauto


def test_run_once_logs_each_action_and_ends_with_the_report(fresh_daemon: Daemon) -> None:
    assert mauto(fresh_daemon, "run", "--once", "--now", (T0 - timedelta(hours=1)).isoformat()).exit_code == 0
    fresh_daemon.event("ana", "signed_up", T0)
    result = mauto(fresh_daemon, "run", "--once", "--now", "2026-12-01T09:01:00Z")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("tick 2026-12-01T09:01:00+00:00: 1 enrolled, 0 advanced, 1 sent, 0 retried, "
                                    "0 parked, 0 failed in ")
    lines = result.stderr.splitlines()
    assert lines[0] == "2026-12-01T09:00:00+00:00 enter      ana promo v1 trigger — signed_up"
    assert "2026-12-01T09:00:00+00:00 send       ana promo v1 hello email promo/hello" in lines
    key = f"{fresh_daemon.enrollment('promo', 'ana')}:steps.0:1"
    assert any(line.startswith(f"sent       key={key} contact=ana channel=email answer=250 ")
               for line in lines)
    assert "ana@example.com" not in result.stderr  # contacts by id in the log: erasure cannot reach log files


def test_run_once_json_logs_and_report(fresh_daemon: Daemon) -> None:
    mauto(fresh_daemon, "run", "--once", "--now", (T0 - timedelta(hours=1)).isoformat())
    fresh_daemon.event("ana", "signed_up", T0)
    result = mauto(fresh_daemon, "run", "--once", "--now", "2026-12-01T09:01:00Z", "--log-format", "json", "-f", "json")
    assert result.exit_code == 0
    actions = [json.loads(line) for line in result.stderr.splitlines()]
    assert [a["action"] for a in actions] == ["step", "step", "step", "queued", "sent"]
    key = f"{fresh_daemon.enrollment('promo', 'ana')}:steps.0:1"
    assert actions[-1]["key"] == key and actions[-1]["answer"].startswith("250")
    report = json.loads(result.stdout)
    assert (report["enrolled"], report["sent"], report["parked"]) == (1, 1, 0)


def test_a_parked_message_makes_run_exit_1_and_outbox_shows_it(fresh_daemon: Daemon) -> None:
    mauto(fresh_daemon, "run", "--once", "--now", (T0 - timedelta(hours=1)).isoformat())
    fresh_daemon.smtp.on("rcpt", "550 5.1.1 no such user")
    fresh_daemon.event("ana", "signed_up", T0)
    result = mauto(fresh_daemon, "run", "--once", "--now", "2026-12-01T09:01:00Z", "--quiet")
    assert result.exit_code == 1
    key = f"{fresh_daemon.enrollment('promo', 'ana')}:steps.0:1"
    assert result.stderr.splitlines() == [f"parked     key={key} contact=ana channel=email "
                                          "answer=RCPT TO: 550 5.1.1 no such user"]
    listed = mauto(fresh_daemon, "outbox", "--failed")
    assert listed.exit_code == 0
    assert listed.stdout.splitlines()[0] == "0 pending, 0 sent, 1 parked, 0 unknown, 0 cancelled"
    assert "1   parked  ana      promo/hello  1      RCPT TO: 550 5.1.1 no such user" in listed.stdout
    as_json = json.loads(mauto(fresh_daemon, "outbox", "--failed", "-f", "json").stdout)
    assert [m["status"] for m in as_json["messages"]] == ["parked"]
    retried = mauto(fresh_daemon, "outbox", "retry", "1")
    assert retried.stdout == (f"message 1 ({key}) is pending again (was parked); "
                              "the next tick sends it\n")
    dropped = mauto(fresh_daemon, "outbox", "drop", "1")
    assert dropped.stdout == f"message 1 ({key}) dropped (was pending)\n"
    again = mauto(fresh_daemon, "outbox", "drop", "1")
    assert again.exit_code == 2 and "message 1 is cancelled: only parked, unknown or pending" in again.stderr
    missing = mauto(fresh_daemon, "outbox", "retry", "99")
    assert missing.exit_code == 2 and "no message 99 in the outbox" in missing.stderr


def test_run_without_once_and_a_bad_interval_are_usage_errors(fresh_daemon: Daemon) -> None:
    result = mauto(fresh_daemon, "run")
    assert result.exit_code == 2 and "needs --once" in result.stderr
    result = mauto(fresh_daemon, "daemon", "--interval", "soon")
    assert result.exit_code == 2 and result.stderr.startswith("--interval soon: ")


def test_the_daemon_ticks_and_stops_cleanly_on_sigterm(fresh_daemon: Daemon) -> None:
    fresh_daemon.store.close()
    env = {**os.environ, "MAUTO_TEST_SMS_TOKEN": "t0k3n", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "mauto", "-p", str(fresh_daemon.root / "mauto.yaml"), "daemon",
                                "--interval", "1s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               text=True)
    try:
        deadline = time.monotonic() + 30
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            lines.append(line)
            if line.startswith("tick "):
                break
        assert any(line.startswith("tick ") for line in lines), "".join(lines)
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, rest
    assert "stop       signal=SIGTERM" in rest
