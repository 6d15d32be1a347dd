"""One writer for a server's many requests: jobs queued from any thread run on one thread, on one connection,
in groups of one transaction each (group commit), so that many small requests share a commit, and so its
fsync, instead of each waiting for its own.

Each job runs inside a savepoint of its group: a job that raises is undone alone and gets its exception; the
others of the group are committed. A job's future is resolved only once its group is committed (or failed):
whoever answers a request after awaiting it answers after the commit. A failure of the store itself (the
disk, a lock held past the timeout) fails every job of the group, whose writes are all rolled back.
"""
from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from mauto.store.runtime import savepoint
from mauto.store.sqlite import Store

T = TypeVar("T")
Job = Callable[[Store], Any]
MAX_GROUP = 512  # jobs in one transaction at most: a group's commit must not wait on too much work
_STOP = object()


class WriterStopped(RuntimeError):
    """The writer is not running (never started, stopped, or died of a bug): nothing can be written."""


def _drain(jobs: queue.SimpleQueue[Any]) -> list[Any]:
    found = []
    while True:
        try:
            found.append(jobs.get_nowait())
        except queue.Empty:
            return found


class GroupWriter:
    """Runs jobs on the store at `path`, in groups. `on_commit(seconds, jobs)` hears how long each group's
    transaction took (metrics)."""

    def __init__(self, path: Path, *, phone_region: str | None = None, shown: str | None = None,
                 timeout: float = 5.0, on_commit: Callable[[float, int], None] | None = None) -> None:
        self.path, self.phone_region, self.shown, self.timeout = path, phone_region, shown, timeout
        self.on_commit = on_commit
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._opened: Future[None] = Future()

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
        self._jobs.put((job, future))
        return future

    async def run(self, job: Callable[[Store], T]) -> T:
        """`job` on the store, awaited: returns once its group is committed."""
        return await asyncio.wrap_future(self.submit(job))

    def _run(self) -> None:
        try:
            store = Store(self.path, timeout=self.timeout, shown=self.shown, phone_region=self.phone_region)
        except BaseException as error:  # noqa: BLE001 - handed to whoever started the writer
            self._opened.set_exception(error)
            return
        self._opened.set_result(None)
        group: list[Any] = []
        try:
            while True:
                first = self._jobs.get()
                if first is _STOP:
                    return
                group = [first]
                stopping = False
                while len(group) < MAX_GROUP:
                    try:
                        item = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    group.append(item)
                self._group(store, group)
                group = []
                if stopping:
                    return
        except BaseException as error:  # noqa: BLE001 - a bug in the writer itself: no job may wait for ever
            for item in [*group, *_drain(self._jobs)]:
                if item is not _STOP and not item[1].done():
                    with contextlib.suppress(Exception):
                        item[1].set_exception(WriterStopped(f"the store's writer stopped: {error!r}"))
            raise
        finally:
            store.close()

    def _group(self, store: Store, group: list[tuple[Job, Future[Any]]]) -> None:
        started = time.perf_counter()
        outcomes: list[tuple[bool, Any]] = []
        conn = store.db.conn
        try:
            with store.transaction():
                for job, future in group:
                    if not future.set_running_or_notify_cancel():
                        outcomes.append((False, None))
                        continue
                    try:
                        with savepoint(store.db, "job"):
                            outcomes.append((True, job(store)))
                    except BaseException as error:  # noqa: BLE001 - this job's own failure: undone alone
                        if not conn.in_transaction:  # SQLite rolled the whole transaction back (disk full, I/O)
                            raise _GroupLost(error) from error
                        outcomes.append((False, error if isinstance(error, Exception)
                                         else RuntimeError(f"the job stopped: {type(error).__name__}")))
                if not conn.in_transaction:  # nothing left to commit: what the jobs wrote is gone
                    raise _GroupLost(RuntimeError("the transaction was rolled back"))
        except Exception as error:  # noqa: BLE001 - the store's failure: nothing of the group was committed
            cause = error.cause if isinstance(error, _GroupLost) else error
            for _, future in group:
                if not future.done():
                    with contextlib.suppress(Exception):
                        future.set_exception(cause)
            return
        if self.on_commit is not None:
            with contextlib.suppress(Exception):
                self.on_commit(time.perf_counter() - started, len(group))
        for (_, future), (done, value) in zip(group, outcomes, strict=True):
            if future.done():
                continue
            if done:
                future.set_result(value)
            else:
                future.set_exception(value if isinstance(value, BaseException) else RuntimeError("cancelled"))


class _GroupLost(Exception):
    """SQLite ended the group's transaction under a job: every job of the group fails with `cause`."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause if isinstance(cause, Exception) else RuntimeError(str(cause))
