"""`mauto serve` on a PostgreSQL store: several servers on one database, each with its own writer, and a writer
whose connection is killed under it. The servers are real (`mauto serve` subprocesses, or uvicorn in a thread),
the database is the tests' cluster (tests/pg.py)."""
from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.pg import Cluster
from tests.serve.conftest import HOST, Served, free_socket
from tests.serve.test_crash import mauto_serve, stopped, wait_healthy
from tests.servers import SmtpServer

AT = "2026-12-01T10:00:00+00:00"
CONTACTS = ("ana", "ben", "cy")


@pytest.fixture
def served_pg(tmp_path: Path, smtp: SmtpServer, pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a PostgreSQL store's releases go there
    harness = Served(tmp_path, smtp, store_url=pg_cluster.url()).start()
    try:
        yield harness
    finally:
        harness.stop()


def _events(ids: list[str]) -> list[dict[str, Any]]:
    return [{"id": event_id, "contact": CONTACTS[int(event_id.rsplit("-", 1)[1]) % 3], "event": "page_viewed",
             "at": AT, "url": f"/p/{event_id}"} for event_id in ids]


def _stored(url: str) -> Counter[str]:
    with psycopg.connect(url) as connection:
        return Counter({event_id: count for event_id, count in connection.execute(
            "SELECT id, count(*) FROM events WHERE name = 'page_viewed' GROUP BY id")})


def test_two_mauto_serve_on_one_database_store_each_event_once(tmp_path: Path, pg_cluster: Cluster,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Two `mauto serve` processes (each its own writer and connection) are posted the same 400 events at once by
    # eight clients, four a server, in batches of 10 ordered differently by each: the same id inserted by both
    # servers at the same moment (one waits for the other's commit, then finds it there), and in opposite orders
    # (a deadlock between their transactions, which PostgreSQL breaks by failing one statement: its job runs
    # again in the next group). Every answer a 202, and each event counted accepted once, stored once.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    url = pg_cluster.url()
    with SmtpServer() as smtp:
        harness = Served(tmp_path, smtp, store_url=url)
    harness.sock.close()
    harness.stop()
    spare = free_socket()
    ports = [harness.port, spare.getsockname()[1]]
    spare.close()
    logs = [tmp_path / f"serve-{n}.log" for n in range(2)]
    processes = [mauto_serve(tmp_path, port, log) for port, log in zip(ports, logs, strict=True)]
    ids = [f"twice-{n}" for n in range(400)]
    answers: list[tuple[int, Any]] = []
    try:
        for process, port, log in zip(processes, ports, logs, strict=True):
            wait_healthy(process, f"http://{HOST}:{port}", log)

        def post_all(port: int, order: list[str]) -> None:
            with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=30.0) as client:
                for start in range(0, len(order), 10):
                    answer = client.post("/v1/events", json=_events(order[start:start + 10]),
                                         headers={"Authorization": f"Bearer {harness.key}"})
                    answers.append((answer.status_code, answer.json()))

        shuffled = random.Random(15)
        orders = [ids, ids[::-1], *(shuffled.sample(ids, len(ids)) for _ in range(6))]
        with ThreadPoolExecutor(len(orders)) as pool:
            for future in [pool.submit(post_all, ports[n % 2], order) for n, order in enumerate(orders)]:
                future.result()
    finally:
        for process in processes:
            stopped(process, signal.SIGTERM)
    assert [(status, body) for status, body in answers if status != 202] == []
    # Counted once: what all the answers say was accepted is each event once, the rest duplicates.
    assert sum(body["accepted"] for _, body in answers) == len(ids)
    assert sum(body["duplicates"] for _, body in answers) == len(ids) * (len(orders) - 1)
    stored = _stored(url)
    assert set(stored) == set(ids) and set(stored.values()) == {1}
    for log in logs:
        assert "Traceback" not in log.read_text()
    # stopped as systemd stops it: requests finished, the writer stopped, then SIGTERM raised again (uvicorn)
    assert [process.returncode for process in processes] == [-signal.SIGTERM] * 2, [
        log.read_text()[-2000:] for log in logs]


def _writer_backend(admin: psycopg.Connection) -> int:
    """The pid of the backend serving the writer's connection, once it waits for the lock on `events`."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND "
                            "wait_event_type = 'Lock' AND pid <> pg_backend_pid()").fetchone()
        if row is not None:
            return int(row[0])
        time.sleep(0.02)
    raise AssertionError("the writer never waited for the lock on events")


def test_a_killed_connection_fails_its_group_with_503_and_the_writer_reconnects(served_pg: Served) -> None:
    served = served_pg
    writer = served.app.state.server.writer
    assert served.post_events(b"[]").status_code == 422  # the key checked, and cached for 2 s: no lookup below
    # The writer held busy, so that the four requests below queue up and run as one group.
    gate = threading.Event()
    holding = writer.submit(lambda store: gate.wait(10))
    admin = psycopg.connect(str(served.location), autocommit=True)
    locker = psycopg.connect(str(served.location))
    locker.execute("LOCK TABLE events IN EXCLUSIVE MODE")  # the group's first insert waits on it
    batches = [[f"kill-{n}"] for n in range(4)]
    with ThreadPoolExecutor(len(batches)) as pool:
        futures = [pool.submit(served.post_events, _events(batch)) for batch in batches]
        deadline = time.monotonic() + 10
        while writer._jobs.qsize() < len(batches):  # each request's key checked, its write queued
            assert time.monotonic() < deadline, "the requests did not queue"
            time.sleep(0.01)
        gate.set()
        holding.result(10)
        admin.execute("SELECT pg_terminate_backend(%s)", [_writer_backend(admin)])
        answers = [future.result() for future in futures]
    locker.rollback()
    locker.close()
    assert [answer.status_code for answer in answers] == [503] * 4
    assert all(answer.headers["retry-after"] == "5" for answer in answers)
    assert answers[0].json() == {"error": "the store is unavailable; try again shortly"}
    assert _stored(str(served.location)) == Counter()
    # The next requests are written through a new connection: the same batches, accepted now, once.
    for batch in batches:
        answer = served.post_events(_events(batch))
        assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "duplicates": 0})
    assert served.client.get("/healthz").status_code == 200
    assert _stored(str(served.location)) == Counter({batch[0]: 1 for batch in batches})
    admin.close()


def test_a_connection_ended_while_the_writer_was_idle_is_opened_again_unseen(served_pg: Served) -> None:
    # Every session of the database ended while nothing was being written (a restart, a failover, an idle
    # timeout): the writer's next group finds its connection gone as it begins, before anything of it ran, and
    # runs on a new one. Nobody gets a 503 for it.
    served = served_pg
    assert served.post_events(_events(["idle-0"])).status_code == 202
    with psycopg.connect(str(served.location), autocommit=True) as admin:
        ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                              "datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
    assert ended >= 2  # the writer's and the test's own
    time.sleep(0.2)
    for n in range(1, 4):
        answer = served.post_events(_events([f"idle-{n}"]))
        assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "duplicates": 0})
    assert _stored(str(served.location)) == Counter({f"idle-{n}": 1 for n in range(4)})


def test_the_health_check_reads_the_schema_version_from_the_database(served_pg: Served) -> None:
    with psycopg.connect(str(served_pg.location), autocommit=True) as admin:
        version = admin.execute("SELECT version FROM mauto_schema").fetchone()[0]
    answer = served_pg.client.get("/healthz")
    assert (answer.status_code, answer.json()) == (200, {"status": "ok", "schema_version": version})
    assert json.loads(served_pg.client.get("/healthz").text)["schema_version"] == version
