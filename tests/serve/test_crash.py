"""Killed with SIGKILL while clients post events, `mauto serve` loses no event it acknowledged and stores none
twice: the server runs as a real subprocess (`mauto serve`), eight client threads post small batches with unique
ids through httpx, the server is killed mid-load and started again, several times; then the store is read.

An event whose request got a `202` was committed before the answer, so it is in the store, once. An event whose
request was cut by the kill may or may not be there (it may have been committed just before the kill, or not):
its client cannot know, so it posts the batch again to the restarted server, as a client of the API should, and
the ids make that safe (`accepted` + `duplicates` = the batch). After the last round every unacknowledged batch
is posted once more, and then every event ever posted is in the store exactly once."""
from __future__ import annotations

import itertools
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.serve.conftest import HOST, Served
from tests.servers import SmtpServer

CLIENTS = 8
CUT_ROUNDS = 3  # rounds whose kill must cut requests in flight
MAX_ROUNDS = 8  # bounded: a round whose kill cut nothing (all clients between requests) is run again
AT = "2026-12-01T10:00:00+00:00"
CONTACTS = ("ana", "ben", "cy")


@dataclass
class Tally:
    """What the clients saw, shared by their threads."""

    acknowledged: set[str] = field(default_factory=set)  # ids of batches answered 202
    unknown: queue.SimpleQueue[list[str]] = field(default_factory=queue.SimpleQueue)  # batches whose answer was cut
    failures: list[tuple[float, float, str]] = field(default_factory=list)  # (started, ended, error) per cut request
    answers: Counter[int] = field(default_factory=Counter)  # status codes
    wrong: list[str] = field(default_factory=list)  # answers that break the API's promises
    retried_committed: int = 0  # retried batches the store already held (committed, never acknowledged)
    lock: threading.Lock = field(default_factory=threading.Lock)


def mauto_serve(root: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:  # the server logs every request: to a file, never to a pipe nobody reads
        return subprocess.Popen([sys.executable, "-m", "mauto", "-p", str(root / "mauto.yaml"), "serve",
                                 "--port", str(port)], stdout=sink, stderr=sink, cwd=root,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_healthy(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, f"mauto serve exited {process.returncode}: {log.read_text()[-2000:]}"
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"mauto serve did not answer /healthz within 20 s: {log.read_text()[-2000:]}")


def post(client: httpx.Client, key: str, batch: list[str], tally: Tally, retry: bool) -> bool:
    """Post one batch; False when the request was cut (the batch is then queued to be posted again)."""
    events = [{"id": event_id, "contact": random.choice(CONTACTS), "event": "page_viewed", "at": AT,
               "url": f"/p/{event_id}"} for event_id in batch]
    started = time.monotonic()
    try:
        answer = client.post("/v1/events", json=events, headers={"Authorization": f"Bearer {key}"})
    except httpx.TransportError as error:
        with tally.lock:
            tally.failures.append((started, time.monotonic(), type(error).__name__))
        tally.unknown.put(batch)
        return False
    with tally.lock:
        tally.answers[answer.status_code] += 1
        if answer.status_code != 202:
            tally.wrong.append(f"{answer.status_code} {answer.text[:200]} for {batch}")
            return True
        counts = answer.json()
        if counts["accepted"] + counts["duplicates"] != len(batch) or (not retry and counts["duplicates"]):
            tally.wrong.append(f"{counts} for {'a retried' if retry else 'a new'} batch of {len(batch)}")
        tally.retried_committed += retry and counts["duplicates"] == len(batch)
        tally.acknowledged.update(batch)
    return True


def client_loop(base: str, key: str, ids: Iterator[int], tally: Tally, stop: threading.Event) -> None:
    """Post until told to stop: first the batches whose answer was cut in an earlier round, then new ones."""
    with httpx.Client(base_url=base, timeout=10.0) as client:
        while not stop.is_set():
            try:
                batch, retry = tally.unknown.get_nowait(), True
            except queue.Empty:
                batch, retry = [f"crash-{next(ids)}" for _ in range(random.randint(1, 5))], False
            if not post(client, key, batch, tally, retry):
                stop.wait(0.05)  # the server is gone: wait to be stopped rather than spin


def stored(db_path: Path) -> tuple[Counter[str], dict[str, int], str]:
    """How many times each posted event's id is in the events table; any id there more than once, whatever
    its event; the store's integrity check."""
    db = sqlite3.connect(db_path, timeout=10)
    try:
        counts = Counter({event_id: count for event_id, count in db.execute(
            "SELECT id, count(*) FROM events WHERE name = 'page_viewed' GROUP BY id")})
        twice = {event_id: count for event_id, count in db.execute(
            "SELECT id, count(*) FROM events WHERE id IS NOT NULL GROUP BY id HAVING count(*) > 1")}
        return counts, twice, db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def stopped(process: subprocess.Popen[bytes], how: signal.Signals) -> None:
    if process.poll() is None:
        process.send_signal(how)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def test_sigkill_while_clients_post_loses_no_acknowledged_event_and_stores_none_twice(tmp_path: Path) -> None:
    with SmtpServer() as smtp:  # the harness's project wants one; `mauto serve` sends nothing
        harness = Served(tmp_path, smtp)  # the project, its store (with its signing key) and an API key
    harness.sock.close()  # the port is the one mauto.yaml's public_url names; the subprocess binds it
    harness.stop()
    key, port, base = harness.key, harness.port, f"http://{HOST}:{harness.port}"
    log = tmp_path / "serve.log"
    tally = Tally()
    ids = itertools.count()
    rounds: list[dict[str, Any]] = []

    while sum(1 for done in rounds if done["cut"]) < CUT_ROUNDS and len(rounds) < MAX_ROUNDS:
        process = mauto_serve(tmp_path, port, log)
        try:
            wait_healthy(process, base, log)
            stop = threading.Event()
            clients = [threading.Thread(target=client_loop, args=(base, key, ids, tally, stop), daemon=True)
                       for _ in range(CLIENTS)]
            for client in clients:
                client.start()
            time.sleep(random.uniform(0.8, 1.6))
            killed_at = time.monotonic()
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            stop.set()
            for client in clients:
                client.join(15)
            assert not any(client.is_alive() for client in clients), "a client thread hangs"
        finally:
            stopped(process, signal.SIGKILL)
        with tally.lock:
            # in flight at the kill: started before it, and ended without an answer
            cut = sum(1 for started, _, _ in tally.failures if started < killed_at)
            tally.failures.clear()
        rounds.append({"cut": cut, "returncode": process.returncode})

    # Read before any retry of the batches cut by the last kill: each of those may or may not be there.
    counts, twice, integrity = stored(tmp_path / "mauto.db")
    pending: list[list[str]] = []
    while not tally.unknown.empty():
        pending.append(tally.unknown.get())
    unacknowledged = {event_id for batch in pending for event_id in batch}
    context = (f"rounds {rounds}, answers {dict(tally.answers)}, {len(tally.acknowledged)} events acknowledged, "
               f"{len(unacknowledged)} not ({len(unacknowledged & set(counts))} of them stored all the same), "
               f"{tally.retried_committed} retried batches found already stored")
    assert integrity == "ok", context
    assert sum(1 for done in rounds if done["cut"]) >= CUT_ROUNDS, f"too few kills cut a request in flight: {context}"
    assert all(done["returncode"] == -signal.SIGKILL for done in rounds), context
    assert tally.wrong == [], context
    assert tally.answers[202] > 0, context
    missing = sorted(tally.acknowledged - set(counts))
    assert missing == [], f"{len(missing)} acknowledged events are not in the store: {missing[:20]} {context}"
    assert twice == {}, context

    # Post every batch whose answer was cut once more (a server that is not killed this time): all accepted or
    # already there, and then every event posted is in the store, once.
    posted = tally.acknowledged | unacknowledged
    process = mauto_serve(tmp_path, port, log)
    try:
        wait_healthy(process, base, log)
        with httpx.Client(base_url=base, timeout=10.0) as client:
            for batch in pending:
                assert post(client, key, batch, tally, retry=True), f"the retry of {batch} was cut"
    finally:
        stopped(process, signal.SIGTERM)
    counts, twice, integrity = stored(tmp_path / "mauto.db")
    assert integrity == "ok" and tally.wrong == [] and twice == {}, context
    assert set(counts) == posted, f"{len(posted - set(counts))} posted events are missing {context}"
    assert set(counts.values()) == {1}, context
