"""One writer for a server's many requests: jobs queued from any thread run on one thread, on one connection,
in groups of one transaction each (group commit), so that many small requests share a commit, and so its
fsync, instead of each waiting for its own. The same on both stores: a SQLite file or a PostgreSQL database.

Each job runs inside a savepoint of its group: a job that raises is undone alone and gets its exception; the
others of the group are committed. A job's future is resolved only once its group is committed (or failed):
whoever answers a request after awaiting it answers after the commit. A failure of the store itself (the
disk, a lock held past the timeout, the PostgreSQL connection lost) fails every job of the group, whose
writes are all rolled back.

On PostgreSQL, several servers (each with its own writer) and the daemons write the same rows at once. A job
chosen as a deadlock's victim, or failing to serialize (SQLSTATE class 40), was undone by its savepoint: it
runs again in the next group, after this one has committed and released what the other transaction waited
for (RETRIES times at most, then it fails). A connection found gone as a group begins (the server restarted,
the session ended while the writer was idle) is opened again and the group run on the new one, nothing of it
having run; gone in the middle of a group, it fails that group (its requests get a 503), and the next group
opens a new one: the writer lives on.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from mauto.store.locations import open_store
from mauto.store.postgres import PgStore
from mauto.store.runtime import savepoint
from mauto.store.sqlite import Store

T = TypeVar("T")
Job = Callable[[Store], Any]
MAX_GROUP = 512  # jobs in one transaction at most: a group's commit must not wait on too much work
RETRIES = 3  # times a job that lost a deadlock (or failed to serialize) runs again, in the groups that follow
_STOP = object()
_DONE, _FAILED, _AGAIN = "done", "failed", "again"


class WriterStopped(RuntimeError):
    """The writer is not running (never started, stopped, or died of a bug): nothing can be written."""


class _Item:
    """A job queued, its future, and how many times it ran."""

    __slots__ = ("job", "future", "runs")

    def __init__(self, job: Job, future: Future[Any]) -> None:
        self.job, self.future, self.runs = job, future, 0


def _drain(jobs: queue.SimpleQueue[Any]) -> list[Any]:
    found = []
    while True:
        try:
            found.append(jobs.get_nowait())
        except queue.Empty:
            return found


def _in_transaction(store: Store) -> bool:
    """Whether the group's transaction is still open and usable: SQLite rolls it back by itself on a full disk
    or an I/O error; PostgreSQL's is gone with its connection (or unusable after a failed statement that no
    savepoint undid)."""
    if isinstance(store, PgStore):
        from psycopg.pq import TransactionStatus

        return bool(store.pg.connection.info.transaction_status == TransactionStatus.INTRANS)
    return bool(store.db.conn.in_transaction)


def _connection_lost(store: Store) -> bool:
    """Whether the store's connection cannot serve another group (PostgreSQL's closed by the server, or left
    inside a transaction); a SQLite file's connection always can."""
    if isinstance(store, PgStore):
        from psycopg.pq import TransactionStatus

        connection = store.pg.connection
        return bool(connection.closed or connection.info.transaction_status != TransactionStatus.IDLE)
    return False


def _transient(error: BaseException) -> bool:
    """A PostgreSQL deadlock's victim or a serialization failure (SQLSTATE class 40): the statement was
    undone for another transaction's sake, and the same job succeeds once that one has committed."""
    return type(error).__module__.startswith("psycopg") and str(getattr(error, "sqlstate", "") or "").startswith("40")


def schema_version(store: Store) -> int:
    """The schema version the store holds, read from it now (SQLite's `PRAGMA user_version`, PostgreSQL's
    `mauto_schema`): a health check that reads it knows the store answers."""
    return int(store._user_version() or 0)


class GroupWriter:
    """Runs jobs on the store at `location` (a SQLite file or a `postgresql://` URL, its password from the
    variable `password_env` names), in groups. `on_commit(seconds, jobs)` hears how long each group's
    transaction took (metrics)."""

    def __init__(self, location: Path | str, *, phone_region: str | None = None, shown: str | None = None,
                 timeout: float = 5.0, on_commit: Callable[[float, int], None] | None = None,
                 password_env: str | None = None, log: logging.Logger | None = None) -> None:
        self.location, self.phone_region, self.shown, self.timeout = location, phone_region, shown, timeout
        self.password_env = password_env
        self.on_commit = on_commit
        self.log = log or logging.getLogger(__name__)
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._opened: Future[None] = Future()
        self._reconnected = False  # the last group found the connection gone as it began, and runs again

    def start(self) -> None:
        """Start the writer's thread and open the store there; raises what opening raises."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="mauto-writer", daemon=True)
        self._thread.start()
        self._opened.result()

    def stop(self) -> None:
        """Finish the jobs queued, then close the store."""
        if self._thread is None:
            return
        self._jobs.put(_STOP)
        self._thread.join()
        self._thread = None

    def submit(self, job: Callable[[Store], T]) -> Future[T]:
        future: Future[T] = Future()
        if self._thread is None or not self._thread.is_alive():
            future.set_exception(WriterStopped("the store's writer is not running"))
            return future
        self._jobs.put(_Item(job, future))
        return future

    async def run(self, job: Callable[[Store], T]) -> T:
        """`job` on the store, awaited: returns once its group is committed."""
        return await asyncio.wrap_future(self.submit(job))

    def _open(self) -> Store:
        return open_store(self.location, timeout=self.timeout, shown=self.shown, phone_region=self.phone_region,
                          password_env=self.password_env)

    def _next_group(self, again: list[_Item]) -> tuple[list[_Item], bool]:
        """The next group: the jobs to run again first, then those waiting (waiting for one when there is
        nothing else), MAX_GROUP at most; and whether the writer is asked to stop after it."""
        group = list(again)
        if not group:
            first = self._jobs.get()
            if first is _STOP:
                return [], True
            group.append(first)
        while len(group) < MAX_GROUP:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return group, True
            group.append(item)
        return group, False

    def _run(self) -> None:
        try:
            store: Store | None = self._open()
        except BaseException as error:  # noqa: BLE001 - handed to whoever started the writer
            self._opened.set_exception(error)
            return
        self._opened.set_result(None)
        group: list[_Item] = []
        again: list[_Item] = []
        stopping = False
        try:
            while not stopping or again:
                group, asked = self._next_group(again)
                stopping = stopping or asked
                again = []
                if group and store is None:
                    store = self._reopen(group)
                if group and store is not None:
                    again = self._group(store, group)
                    if _connection_lost(store):
                        self.log.warning("the store's connection was lost; the next write opens a new one")
                        with contextlib.suppress(Exception):
                            store.close()
                        store = None
                group = []
        except BaseException as error:  # noqa: BLE001 - a bug in the writer itself: no job may wait for ever
            for item in [*group, *again, *_drain(self._jobs)]:
                if item is not _STOP and not item.future.done():
                    with contextlib.suppress(Exception):
                        item.future.set_exception(WriterStopped(f"the store's writer stopped: {error!r}"))
            raise
        finally:
            for item in _drain(self._jobs):  # submitted while the writer was stopping: nobody will run them
                if item is not _STOP and not item.future.done():
                    with contextlib.suppress(Exception):
                        item.future.set_exception(WriterStopped("the store's writer stopped"))
            if store is not None:
                store.close()

    def _reopen(self, group: list[_Item]) -> Store | None:
        """A new connection to the store, or None with every job of `group` failed by the reason (the server
        still down): the next group tries again."""
        try:
            store = self._open()
        except Exception as error:  # noqa: BLE001 - the store's failure: this group's requests get it
            for item in group:
                if not item.future.done():
                    with contextlib.suppress(Exception):  # cancelled meanwhile: nobody to tell
                        item.future.set_exception(error)
            return None
        self.log.info("the store's connection is back")
        return store

    def _group(self, store: Store, group: list[_Item]) -> list[_Item]:
        """Run `group` in one transaction, resolve the futures of its jobs; the jobs to run again (the whole
        group when the connection was gone before any of it ran: once, on a new connection)."""
        started = time.perf_counter()
        outcomes: list[tuple[str, Any]] = []
        ran = False  # whether any job began: until then, a connection found gone has done nothing
        try:
            with store.transaction():
                for item in group:
                    # done already: cancelled (and told so, in a group that then ran again); never asked twice
                    if item.runs == 0 and (item.future.done() or not item.future.set_running_or_notify_cancel()):
                        outcomes.append((_FAILED, None))
                        continue
                    item.runs += 1
                    try:
                        with savepoint(store.db, "job"):
                            ran = True
                            outcomes.append((_DONE, item.job(store)))
                    except BaseException as error:  # noqa: BLE001 - this job's own failure: undone alone
                        if not _in_transaction(store):  # the whole transaction is gone (disk full, I/O, connection)
                            raise _GroupLost(error) from error
                        if _transient(error) and item.runs <= RETRIES:
                            outcomes.append((_AGAIN, error))
                            continue
                        outcomes.append((_FAILED, error if isinstance(error, Exception)
                                         else RuntimeError(f"the job stopped: {type(error).__name__}")))
                if not _in_transaction(store):  # nothing left to commit: what the jobs wrote is gone
                    raise _GroupLost(RuntimeError("the transaction was rolled back"))
        except Exception as error:  # noqa: BLE001 - the store's failure: nothing of the group was committed
            if not ran and _connection_lost(store) and not self._reconnected:
                self._reconnected = True  # gone while idle (BEGIN failed): the group again, on a new connection
                return group
            cause = error.cause if isinstance(error, _GroupLost) else error
            for item in group:
                if not item.future.done():
                    with contextlib.suppress(Exception):
                        item.future.set_exception(cause)
            return []
        self._reconnected = False
        if self.on_commit is not None:
            with contextlib.suppress(Exception):
                self.on_commit(time.perf_counter() - started, len(group))
        again = []
        for item, (outcome, value) in zip(group, outcomes, strict=True):
            if item.future.done():
                continue
            if outcome == _AGAIN:
                again.append(item)
            elif outcome == _DONE:
                item.future.set_result(value)
            else:
                item.future.set_exception(value if isinstance(value, BaseException) else RuntimeError("cancelled"))
        return again


class _GroupLost(Exception):
    """The store ended the group's transaction under a job: every job of the group fails with `cause`."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause if isinstance(cause, Exception) else RuntimeError(str(cause))
