"""One tick at a time per store: the lock, and the error that names its holder."""
from __future__ import annotations

import fcntl
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mauto.errors import ExitCode, MautoError


class RunnerBusy(MautoError):
    """Another tick holds the store's lock."""

    exit_code = ExitCode.FINDINGS


class TickLock:
    """One tick at a time per store: an exclusive `flock` on `<store>.lock`.

    The kernel releases a flock when its process dies, however it dies, so a lock left by a killed tick never
    blocks the next one; the file keeps the last holder's pid, host and start time, to name it when busy and
    to say when a dead holder's lock was taken over.
    """

    def __init__(self, store_path: Path, shown: str) -> None:
        self.path = Path(f"{store_path}.lock")
        self.shown = f"{shown}.lock"
        self.handle: Any = None
        self.took_over: str | None = None  # "pid 123 on host (started …)" when the last holder died holding it

    def acquire(self, wait: float = 0.0, doing: str = "this one did nothing") -> TickLock:
        """Take the lock, or raise RunnerBusy naming the holder; `wait` seconds for it first (polling)."""
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open as long as the lock is
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise RunnerBusy(f"another tick is running against this store ({holder}); {doing}",
                                 self.shown) from None
        handle.seek(0)
        previous = handle.read().strip()
        if previous.startswith("pid "):
            pid_text, _, rest = previous[4:].partition(" ")
            if not rest.endswith("(finished)") and pid_text.isdigit() and not _alive(int(pid_text)):
                self.took_over = previous
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}")
        handle.flush()
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is not None:
            self.handle.seek(0)
            text = self.handle.read().strip()
            self.handle.seek(0)
            self.handle.truncate()
            self.handle.write(f"{text} (finished)")
            self.handle.flush()
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None

    def __enter__(self) -> TickLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class AdvisoryTickLock:
    """One tick at a time per PostgreSQL store: a session advisory lock (`pg_try_advisory_lock`). PostgreSQL
    releases it when the holder's connection ends, however its process ends, so a killed tick never blocks the
    next one."""

    NAME = "mauto:tick"

    def __init__(self, store: Any, shared: bool = False) -> None:
        self.store = store
        self.shared = shared  # the daemons' ticks hold it shared (several at once); `contacts erase` alone
        self.took_over: str | None = None
        self.held = False

    def acquire(self, wait: float = 0.0, doing: str = "this one did nothing") -> AdvisoryTickLock:
        # Waiting, in PostgreSQL's queue for the lock: the ticks in hand end and none starts meanwhile (their
        # try-locks step aside), where polling with try-locks never got a turn while several daemons' ticks overlap
        got = self.store.advisory(self.NAME, wait=True, shared=self.shared, timeout=wait) if wait > 0 \
            else self.store.advisory(self.NAME, shared=self.shared)
        if not got:
            raise RunnerBusy(f"another tick is running against this store (it holds the advisory lock "
                             f"`{self.NAME}`); {doing}", self.store.shown)
        self.held = True
        return self

    def release(self) -> None:
        if self.held:
            self.store.release_advisory(self.NAME, shared=self.shared)
            self.held = False

    def __enter__(self) -> AdvisoryTickLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def tick_lock(store: Any) -> TickLock | AdvisoryTickLock | None:
    """The lock one tick holds on `store`: a flock beside a SQLite file, an advisory lock in PostgreSQL, none for
    a store in memory."""
    if getattr(store, "dialect", "sqlite") == "postgresql":
        return AdvisoryTickLock(store)
    if str(store.path) == ":memory:":
        return None
    return TickLock(store.path, store.shown)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
