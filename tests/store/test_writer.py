"""The grouped-commit writer (mauto/store/writer.py): jobs of a group commit together, one job's failure is
undone alone, and no job hears it was done unless its group was committed."""
from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from mauto.store import Store
from mauto.store.writer import GroupWriter, WriterStopped


@pytest.fixture
def writer(tmp_path: Path):
    Store(tmp_path / "mauto.db", create=True).close()
    found = GroupWriter(tmp_path / "mauto.db")
    found.start()
    yield found
    found.stop()


def _insert(value: str):
    def job(store: Store) -> str:
        store.db.execute("INSERT INTO runner_state (key, value) VALUES (?, 'x')", [value])
        return value
    return job


def _keys(path: Path) -> list[str]:
    with Store(path) as store:
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


def test_a_failing_job_is_undone_alone(writer: GroupWriter, tmp_path: Path) -> None:
    def boom(store: Store) -> None:
        store.db.execute("INSERT INTO runner_state (key, value) VALUES ('k-boom', 'x')")
        raise ValueError("this job's own failure")

    first, bad, last = _group(writer, _insert("k1"), boom, _insert("k2"))
    assert (first.result(), last.result()) == ("k1", "k2")
    assert isinstance(bad.exception(), ValueError)
    assert _keys(tmp_path / "mauto.db") == ["k1", "k2"]


def test_when_sqlite_ends_the_transaction_no_job_of_the_group_is_said_done(writer: GroupWriter,
                                                                           tmp_path: Path) -> None:
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
    assert _keys(tmp_path / "mauto.db") == []
    # The writer goes on: the next group commits.
    writer.submit(lambda store: store.db.execute("PRAGMA max_page_count = 1073741823")).result(10)
    assert writer.submit(_insert("k3")).result(10) == "k3"
    assert _keys(tmp_path / "mauto.db") == ["k3"]


def test_a_job_raising_a_base_exception_fails_alone_and_the_writer_lives(writer: GroupWriter,
                                                                         tmp_path: Path) -> None:
    def leave(store: Store) -> None:
        raise SystemExit(3)

    bad, good = _group(writer, leave, _insert("k1"))
    assert isinstance(bad.exception(), RuntimeError) and "SystemExit" in str(bad.exception())
    assert good.result() == "k1"
    assert writer.submit(_insert("k2")).result(10) == "k2"


def test_a_stopped_writer_refuses_at_once(tmp_path: Path) -> None:
    Store(tmp_path / "mauto.db", create=True).close()
    writer = GroupWriter(tmp_path / "mauto.db")
    assert isinstance(writer.submit(_insert("k1")).exception(1), WriterStopped)
    writer.start()
    writer.stop()
    assert isinstance(writer.submit(_insert("k1")).exception(1), WriterStopped)
