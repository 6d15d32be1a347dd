"""The grouped-commit writer (mauto/store/writer.py): jobs of a group commit together, one job's failure is
undone alone, and no job hears it was done unless its group was committed; on both stores (`store_kind`), and
on PostgreSQL through what only it does: another writer's transaction, a deadlock, a connection ended."""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from mauto.store import Store, open_store
from mauto.store.writer import RETRIES, GroupWriter, WriterStopped, schema_version


@pytest.fixture
def location(tmp_path: Path, store_kind: str, request: pytest.FixtureRequest) -> str | Path:
    """A new store: `mauto.db` in tmp_path, or a fresh PostgreSQL database."""
    found: str | Path = tmp_path / "mauto.db"
    if store_kind == "postgresql":
        found = str(request.getfixturevalue("pg_cluster").url())
    open_store(found, create=True).close()
    return found


@pytest.fixture
def writer(location: str | Path):
    found = GroupWriter(location)
    found.start()
    yield found
    found.stop()


def _insert(value: str):
    def job(store: Store) -> str:
        store.db.execute("INSERT INTO runner_state (key, value) VALUES (?, 'x')", [value])
        return value
    return job


def _keys(location: str | Path) -> list[str]:
    with open_store(location) as store:
        return [key for (key,) in store.db.execute("SELECT key FROM runner_state WHERE key LIKE 'k%' ORDER BY key")]


def _group(writer: GroupWriter, *jobs) -> list[Future]:
    """Submit `jobs` so that they run as one group: the writer is held busy until all are queued."""
    gate = threading.Event()
    writer.submit(lambda store: gate.wait(5))
    futures = [writer.submit(job) for job in jobs]
    gate.set()
    for future in futures:
        future.exception(10)
    return futures


def test_a_failing_job_is_undone_alone(writer: GroupWriter, location: str | Path) -> None:
    def boom(store: Store) -> None:
        store.db.execute("INSERT INTO runner_state (key, value) VALUES ('k-boom', 'x')")
        raise ValueError("this job's own failure")

    first, bad, last = _group(writer, _insert("k1"), boom, _insert("k2"))
    assert (first.result(), last.result()) == ("k1", "k2")
    assert isinstance(bad.exception(), ValueError)
    assert _keys(location) == ["k1", "k2"]


def test_a_statement_the_database_refuses_fails_its_job_alone(writer: GroupWriter, location: str | Path) -> None:
    # A unique violation: on PostgreSQL it aborts the whole transaction until the job's savepoint is rolled
    # back to; the jobs after it must still run, and those before it be committed.
    first, twice, last = _group(writer, _insert("k1"), _insert("k1"), _insert("k2"))
    assert (first.result(), last.result()) == ("k1", "k2")
    assert "UNIQUE" in str(twice.exception()).upper()
    assert _keys(location) == ["k1", "k2"]


@pytest.mark.sqlite_only("SQLite's own way of ending a transaction under a job: a full file (PRAGMA max_page_count)")
def test_when_sqlite_ends_the_transaction_no_job_of_the_group_is_said_done(writer: GroupWriter,
                                                                           location: str | Path) -> None:
    # A full disk makes SQLite roll the whole transaction back under the job that hit it: the jobs before it
    # in the group were written in that transaction, and must not hear they were committed (a 2xx).
    def fill(store: Store) -> None:
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count = {pages + 1}")
        store.db.execute("CREATE TABLE filler (x BLOB)")
        for _ in range(100):
            store.db.execute("INSERT INTO filler VALUES (zeroblob(100000))")

    first, full, last = _group(writer, _insert("k1"), fill, _insert("k2"))
    assert all(future.exception() is not None for future in (first, full, last))
    assert _keys(location) == []
    # The writer goes on: the next group commits.
    writer.submit(lambda store: store.db.execute("PRAGMA max_page_count = 1073741823")).result(10)
    assert writer.submit(_insert("k3")).result(10) == "k3"
    assert _keys(location) == ["k3"]


def test_a_job_raising_a_base_exception_fails_alone_and_the_writer_lives(writer: GroupWriter,
                                                                         location: str | Path) -> None:
    def leave(store: Store) -> None:
        raise SystemExit(3)

    bad, good = _group(writer, leave, _insert("k1"))
    assert isinstance(bad.exception(), RuntimeError) and "SystemExit" in str(bad.exception())
    assert good.result() == "k1"
    assert writer.submit(_insert("k2")).result(10) == "k2"


def test_a_stopped_writer_refuses_at_once(location: str | Path) -> None:
    writer = GroupWriter(location)
    assert isinstance(writer.submit(_insert("k1")).exception(1), WriterStopped)
    writer.start()
    writer.stop()
    assert isinstance(writer.submit(_insert("k1")).exception(1), WriterStopped)


def test_the_schema_version_is_read_from_the_store(writer: GroupWriter) -> None:
    from mauto.store import migrations

    assert writer.submit(schema_version).result(10) == migrations.latest()


# --- PostgreSQL: other writers, and the connection --------------------------------------------------------------


@pytest.mark.parametrize("store_kind", ["postgresql"])
def test_a_deadlock_between_two_writers_runs_the_victim_again_and_both_commit(location: str, store_kind: str) -> None:
    # Two servers' writers, each in its group's transaction: A takes k-x then wants k-y, B takes k-y then wants
    # k-x. PostgreSQL breaks the deadlock by failing one statement; its job was undone by its savepoint, and runs
    # again in its writer's next group, once the other has committed: every job is done, each key stored once.
    import psycopg

    runs: list[str] = []

    def insert_once(value: str):
        def job(store: Store) -> int:
            runs.append(value)
            return store.db.execute("INSERT OR IGNORE INTO runner_state (key, value) VALUES (?, 'x')",
                                    [value]).rowcount
        return job

    took_x = threading.Event()
    go = threading.Event()

    def a_takes_x(store: Store) -> int:
        done = insert_once("k-x")(store)
        took_x.set()
        return done

    def a_wants_y(store: Store) -> int:
        go.wait(10)
        return insert_once("k-y")(store)

    first, second = GroupWriter(location), GroupWriter(location)
    first.start()
    second.start()
    try:
        gate = threading.Event()
        first.submit(lambda store: gate.wait(10))
        a = [first.submit(a_takes_x), first.submit(a_wants_y)]
        gate.set()
        assert took_x.wait(10)
        held = threading.Event()
        second.submit(lambda store: held.wait(10))  # B's two jobs in one group, one transaction
        b_y = second.submit(insert_once("k-y"))
        b_x = second.submit(insert_once("k-x"))  # waits for A's transaction
        held.set()
        with psycopg.connect(location, autocommit=True) as admin:
            deadline = time.monotonic() + 10
            while not admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND wait_event_type = 'Lock'").fetchone()[0]:
                assert time.monotonic() < deadline, "B never waited for A"
                time.sleep(0.01)
        go.set()  # A wants k-y, which B holds: a deadlock
        done = [future.result(20) for future in (*a, b_y, b_x)]
    finally:
        first.stop()
        second.stop()
    assert sorted(done) == [0, 0, 1, 1]  # each key inserted once, found there once
    assert _keys(location) == ["k-x", "k-y"]
    assert len(runs) == 5  # the victim (A's k-y or B's k-x) ran twice
    assert RETRIES >= 1


@pytest.mark.parametrize("store_kind", ["postgresql"])
def test_a_connection_ended_mid_group_fails_the_group_and_the_next_one_reconnects(location: str,
                                                                                 store_kind: str) -> None:
    import psycopg

    writer = GroupWriter(location)
    writer.start()
    try:
        gate = threading.Event()
        writer.submit(lambda store: gate.wait(10))
        pid: Future[int] = Future()

        def ended(store: Store) -> None:
            store.db.execute("INSERT INTO runner_state (key, value) VALUES ('k-ended', 'x')")
            pid.set_result(int(store.db.execute("SELECT pg_backend_pid()").fetchone()[0]))
            time.sleep(0.5)  # meanwhile its session is ended
            store.db.execute("SELECT 1")

        futures = [writer.submit(_insert("k1")), writer.submit(ended), writer.submit(_insert("k2"))]
        gate.set()
        with psycopg.connect(location, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid.result(10)])
        errors = [future.exception(10) for future in futures]
        assert all(isinstance(error, psycopg.OperationalError) for error in errors), errors
        assert _keys(location) == []
        assert writer.submit(_insert("k3")).result(10) == "k3"  # on a new connection
    finally:
        writer.stop()
    assert _keys(location) == ["k3"]
