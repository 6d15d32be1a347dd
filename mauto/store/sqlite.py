"""The SQLite store: one file, WAL mode, foreign keys on, a busy timeout, versioned schema."""
from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from mauto.errors import ExitCode, MautoError
from mauto.store import migrations

Clock = Callable[[], datetime]
TABLES = ("contacts", "events", "coupons", "suppressions", "workflow_versions", "workflows", "enrollments",
          "messages", "calls", "step_log", "tasks", "segment_members", "timers", "runner_state", "failures",
          "api_keys", "soft_bounces", "notifications_seen", "split_winners",
          "message_feedback", "releases", "release_files", "release_blobs", "held_events", "workers")
DEFAULT_TIMEOUT = 5.0  # seconds a write waits for another writer before giving up


class StoreError(MautoError):
    """The store cannot be used as it is: missing, not a mauto store, too new, needs a migration."""

    exit_code = ExitCode.USAGE


class NoStore(StoreError):
    """There is no store at the location yet (no SQLite file; a PostgreSQL database without mauto's schema)."""


class StoreLocked(StoreError):
    """Another process holds the database longer than the busy timeout."""

    exit_code = ExitCode.FINDINGS


def store_failure(error: BaseException) -> bool:
    """Whether an error is the store's own (the disk, a lock, a damaged file), which stops the tick, rather
    than one item's (a value SQLite refuses, a bug met by one contact's data), which fails that item alone."""
    if isinstance(error, StoreError):
        return True
    if type(error).__module__.startswith("psycopg"):  # PostgreSQL: the connection, a lock, the server itself
        import psycopg

        return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError, psycopg.InternalError))
    if isinstance(error, (sqlite3.OperationalError, sqlite3.InternalError)):
        return True
    return type(error) is sqlite3.DatabaseError  # "database disk image is malformed", "file is not a database"


class Rollback(Exception):
    """Raised inside `Store.transaction()` to undo the transaction without an error."""


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def wall_clock() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime) -> str:
    """A time as the store keeps it: UTC, ISO 8601, fixed width, so that text order is time order."""
    if moment.tzinfo is None:
        raise ValueError(f"naive time {moment!r}: the store needs times with an offset")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def row_lock(db: Any, clause: str = "FOR NO KEY UPDATE") -> str:
    """What a SELECT appends to lock the rows it reads for its transaction: `clause` on PostgreSQL, where other
    transactions write beside it; nothing on SQLite, whose writer holds the whole file (nor can it parse one)."""
    return f" {clause}" if getattr(db, "dialect", "sqlite") == "postgresql" else ""


def normalise_address(address: str, channel: str, region: str | None = None) -> str:
    """The one form an address is compared in (mauto.addresses.comparison_form): an email checked and
    lower-cased, its domain in Unicode; a phone number in E.164 (`+33612345678`), national numbers read in
    `region` (the project's `phone_region`). A value that cannot be parsed at all (stored by an older
    version) keeps the old form: an email trimmed and lower-cased, a phone number's digits with a leading +."""
    from mauto.addresses import comparison_form

    return comparison_form(address, channel, region)


def address_hash(address: str, channel: str, region: str | None = None) -> str:
    """The SHA-256 of the address's normal form (`normalise_address`): what the suppression list keeps."""
    return hashlib.sha256(normalise_address(address, channel, region).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class StoreInfo:
    path: str
    version: int
    latest: int
    journal_mode: str
    size: int
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "schema_version": self.version, "latest_version": self.latest,
                "journal_mode": self.journal_mode, "size_bytes": self.size, "rows": self.counts}


class Store:
    """A mauto store in one SQLite file.

    Opening checks the schema version before anything is written: a file from a newer
    mauto is refused untouched; an older one must be migrated (`migrate=True`, or
    `mauto db migrate`). `now` is the caller's clock: every timestamp the store writes
    comes from it.
    """

    def __init__(self, path: str | Path, now: Clock | None = None, *, create: bool = False,
                 migrate: bool = False, timeout: float = DEFAULT_TIMEOUT, shown: str | None = None,
                 phone_region: str | None = None) -> None:
        self.path = Path(path)
        self.phone_region = phone_region  # national phone numbers on the suppression list are read in it
        self.shown = shown or str(path)
        self.now = now or wall_clock
        self.timeout = timeout
        self.applied: list[int] = []  # migrations applied by this object
        if str(path) != ":memory:" and not self.path.exists():
            if not create:
                raise NoStore("no store here; create it with `mauto db init`", self.shown)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(str(path), timeout=timeout)
        # Text that is not UTF-8 (a row written by another program, or by hand) reads back with U+FFFD where
        # its bad bytes were: one damaged value must not make every query that meets it fail ("Could not
        # decode to UTF-8"), which would stop every tick. About 0.3 µs a value more than the C default.
        connection.text_factory = _text
        self.db = Database(connection, execute_plugins=False)
        try:
            with self.guard():
                self.version = self._user_version()
                if self.version > migrations.latest():
                    raise StoreError(f"this store has schema version {self.version}, written by a newer mauto; "
                                     f"this mauto knows versions up to {migrations.latest()}. Upgrade mauto; "
                                     "the file was not changed", self.shown)
                if self.version < migrations.latest() and not (migrate or create):
                    raise StoreError(f"this store has schema version {self.version}; this mauto needs "
                                     f"{migrations.latest()}: run `mauto db migrate`", self.shown)
                # Only now, knowing the file is ours, may anything be written to it.
                self.db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
                if str(path) != ":memory:":
                    self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA synchronous = FULL")  # each commit on disk before it returns (the default)
                self.db.execute("PRAGMA foreign_keys = ON")
                if self.version < migrations.latest():
                    self.migrate()
        except BaseException:
            connection.close()
            raise

    # --- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _user_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> list[int]:
        """Apply the pending migrations, each in its own transaction with its version number."""
        applied = []
        for version in migrations.pending(self._user_version()):
            with self.transaction():
                migrations.MIGRATIONS[version](self.db)
                self.db.execute(f"PRAGMA user_version = {int(version)}")
            applied.append(version)
        self.applied.extend(applied)
        self.version = self._user_version()
        return applied

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """SQLite's errors as messages about this file."""
        try:
            yield
        except sqlite3.OperationalError as error:
            text = str(error)
            if "locked" in text or "busy" in text:
                raise StoreLocked(f"the store is locked: another mauto (or another program) is using it and "
                                  f"did not finish within {self.timeout:g}s; try again when it has finished",
                                  self.shown) from None
            raise StoreError(f"SQLite: {text}", self.shown) from None
        except sqlite3.DatabaseError as error:
            text = str(error)
            if "not a database" in text or "malformed" in text:
                raise StoreError(f"not a mauto store (SQLite: {text})", self.shown) from None
            raise StoreError(f"SQLite: {text}", self.shown) from None

    @contextlib.contextmanager
    def transaction(self, durable: bool = True) -> Iterator[Database]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so that a second writer waits at the start,
        never half-way; committed at the end, rolled back on any exception (`Rollback` is swallowed).

        `durable=False` commits without waiting for the disk (WAL with `synchronous = NORMAL`): the commit
        survives the process being killed, and reaches the disk with the next durable commit; only a power
        loss before that can undo it. For records whose loss is safe (the outbox's answers: a lost one leaves
        the message `unknown`, never resent)."""
        with self.guard():
            if not durable:
                self.db.execute("PRAGMA synchronous = NORMAL")
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    with self.db.conn:  # commits, or rolls back on an exception
                        yield self.db
                except Rollback:
                    pass
            finally:
                if not durable:
                    self.db.execute("PRAGMA synchronous = FULL")

    def stamp(self) -> str:
        return stamp(self.now())

    def local_folder(self, kind: str) -> Path:
        """A folder on this machine for what a process keeps beside the store (rendered releases):
        `<file>.<kind>` next to the SQLite file."""
        return Path(f"{self.path}.{kind}")

    @property
    def dialect(self) -> str:
        return "sqlite"

    # --- reading -----------------------------------------------------------------------

    def info(self) -> StoreInfo:
        with self.guard():
            counts = {table: self.db.execute(f"SELECT count(*) FROM [{table}]").fetchone()[0]
                      for table in TABLES if self.db[table].exists()}
            mode = self.db.execute("PRAGMA journal_mode").fetchone()[0]
        size = os.path.getsize(self.path) if self.path.exists() else 0
        return StoreInfo(self.shown, self.version, migrations.latest(), mode, size, counts)

    def is_suppressed(self, address: str, channel: str) -> bool:
        with self.guard():
            row = self.db.execute("SELECT 1 FROM suppressions WHERE address_hash = ? AND channel = ?",
                                  [address_hash(address, channel, self.phone_region), channel]).fetchone()
        return row is not None

    def suppress(self, address: str, channel: str, reason: str) -> bool:
        """Put an address on the suppression list (inside the caller's transaction); False if it already was."""
        before = self.db.conn.total_changes
        self.db.execute("INSERT OR IGNORE INTO suppressions (address_hash, channel, reason, at) VALUES (?, ?, ?, ?)",
                        [address_hash(address, channel, self.phone_region), channel, reason, self.stamp()])
        return self.db.conn.total_changes > before
