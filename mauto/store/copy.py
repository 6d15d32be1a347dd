"""`mauto db copy`: a whole store into another, SQLite or PostgreSQL either way, checked row for row.

The target must be empty (a store `mauto db init` made, or nothing yet: a new SQLite file, or an empty
PostgreSQL database, is created). The source is read in one read transaction, so the copy is one moment of it
whatever writes meanwhile, and the caller holds the source's tick lock so no tick is half-way through; the
target is written in one transaction, checked against the source row for row before it commits: all or
nothing. A failed copy into a SQLite file it created removes the file.

Tables go in an order the foreign keys accept, worked out from SQLite's own schema at the store's version
(`PRAGMA foreign_key_list`); columns come from its `PRAGMA table_info`, the names both stores share. What a
store hands out by counting goes on from where the source was: the events' `seq` (AUTOINCREMENT in SQLite, a
sequence in PostgreSQL, never reused since the daemon keeps a cursor on it), PostgreSQL's identity columns,
and the coupons' rowid (the order codes are handed out in). The store's `unsubscribe_secret` comes along, so
the links already sent, and the enrollment ids made from it, still verify.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from mauto.errors import ExitCode
from mauto.store import migrations
from mauto.store.locations import open_store
from mauto.store.sqlite import NoStore, Store, StoreError

CHUNK = 2000  # rows read and inserted at a time: memory stays flat however large the store
SECRET = "unsubscribe_secret"  # the runner_state row creating a store writes: not a sign the target is in use
FILLED_BY_TRIGGER = ("message_feedback",)  # the events' AFTER INSERT trigger writes it: emptied, then copied
ROWID_TABLES = ("coupons",)  # the implicit rowid the store's SQL orders by (a column in PostgreSQL)
AUTOINCREMENT = ("events",)  # SQLite keeps their high-water mark in sqlite_sequence


class CopyRefused(StoreError):
    """The copy was not made, and nothing was written: the target is not empty, is at another schema version, or
    would not be the same as the source (a value it refuses, or reads back otherwise)."""

    exit_code = ExitCode.FINDINGS


@dataclass
class CopyResult:
    """What `copy_store` copied: the rows of each table, in the order they were written."""

    source: str
    target: str
    schema_version: int
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "schema_version": self.schema_version,
                "checked": True, "rows": dict(self.counts), "total_rows": self.total,
                "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class Table:
    """One table of the schema, as SQLite's pragmas describe it."""

    name: str
    columns: tuple[str, ...]  # with `rowid` first for the tables whose rowid is carried over
    key: tuple[str, ...]  # the primary key (every column when there is none): the order rows are compared in
    counter: str | None  # the column the store hands out by counting (INTEGER PRIMARY KEY, a carried rowid)


def copy_store(source: Store, target_location: str | Path, *, shown_target: str, password_env: str | None = None,
               progress: Callable[[str, int], None] | None = None,
               lock: contextlib.AbstractContextManager[Any] | None = None) -> CopyResult:
    """Copy every row of `source` into the store at `target_location` (a `postgresql://` URL or a SQLite file),
    which must be empty; the copy is compared with the source row for row before it commits.

    `lock`: entered around the read, so that nothing writes the source half-way through a tick; the CLI
    passes the source's tick lock (`mauto.daemon.lock.tick_lock`), which this layer does not import.
    `progress(table, rows so far)` is called as rows are written. Raises `StoreError` (nothing written) when
    the target cannot be opened, `CopyRefused` (exit 1) when it is at another schema version, is not empty, or the
    copy would differ."""
    started = time.monotonic()
    if source.version != migrations.latest():
        raise StoreError(f"this store has schema version {source.version}; this mauto needs "
                         f"{migrations.latest()}: run `mauto db migrate` before copying it", source.shown)
    file = None if _is_url(target_location) else Path(target_location)
    made_file = file is not None and not file.exists()  # removed again if the copy fails
    if file is not None and file.is_dir():
        raise StoreError("is a folder: give the SQLite file to copy into", shown_target)
    create = made_file or (file is not None and file.stat().st_size == 0)  # an empty file is no store yet
    try:
        try:  # an existing store is opened as it is: one at an older version is refused, not migrated
            target = open_store(target_location if file is None else file, create=create, shown=shown_target,
                                password_env=password_env, timeout=source.timeout)
        except NoStore:
            if file is not None:
                raise
            target = open_store(target_location, create=True, shown=shown_target, password_env=password_env,
                                timeout=source.timeout)  # an empty PostgreSQL database: the schema is made
    except BaseException:
        if made_file and file is not None:
            _remove_sqlite(file)
        raise
    try:
        with target:
            result = CopyResult(source.shown, shown_target, source.version)
            _copy(source, target, result, progress, lock)
    except BaseException:
        if made_file and file is not None:
            _remove_sqlite(file)
        raise
    result.seconds = time.monotonic() - started
    return result


def _copy(source: Store, target: Store, result: CopyResult, progress: Callable[[str, int], None] | None,
          lock: contextlib.AbstractContextManager[Any] | None) -> None:
    if target.version != source.version:
        raise CopyRefused(f"the target has schema version {target.version} and the source {source.version}: "
                          "both must be at this mauto's version (run `mauto db migrate` on the older one); "
                          "nothing was written", target.shown)
    tables = schema_tables(source.version)
    with lock if lock is not None else contextlib.nullcontext(), _read_snapshot(source), \
            _driver_errors(target, "nothing was written"), target.transaction():
        _refuse_unless_empty(target, tables)
        target.db.execute(f"DELETE FROM runner_state WHERE key = '{SECRET}'")  # the source's comes instead
        for table in tables:
            if table.name in FILLED_BY_TRIGGER:
                target.db.execute(f'DELETE FROM "{table.name}"')
            result.counts[table.name] = _copy_table(source, target, table, progress)
        _carry_counters(source, target, tables)
        for table in tables:
            _check_table(source, target, table, result.counts[table.name])


# --- the schema ---------------------------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def schema_tables(version: int) -> tuple[Table, ...]:
    """The store's tables at `version` in an order their foreign keys accept (a table after those it refers
    to; the tables a trigger fills last), from SQLite's schema built in memory."""
    import sqlite3

    from sqlite_utils import Database

    db = Database(sqlite3.connect(":memory:"))
    try:
        for number in sorted(migrations.MIGRATIONS):
            if number > version:
                break
            migrations.MIGRATIONS[number](db)
        names = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")]
        parents = {name: {row[2] for row in db.execute(f'PRAGMA foreign_key_list("{name}")')} - {name}
                   for name in names}
        described = {}
        for name in names:
            info = db.execute(f'PRAGMA table_info("{name}")').fetchall()  # cid, name, type, notnull, default, pk
            columns = tuple(row[1] for row in info)
            key = tuple(row[1] for row in sorted((row for row in info if row[5]), key=lambda row: row[5]))
            # SQLite's INTEGER PRIMARY KEY is its rowid; in PostgreSQL an identity column, as is a carried rowid
            integer_key = [row[1] for row in info if row[5] and row[2].upper() == "INTEGER"]
            counter = integer_key[0] if len(key) == 1 and integer_key else None
            if name in ROWID_TABLES:
                columns, counter = ("rowid", *columns), "rowid"
            described[name] = Table(name, columns, key or columns, counter)
    finally:
        db.close()
    order = _topological([name for name in names if name not in FILLED_BY_TRIGGER], parents)
    return tuple(described[name] for name in [*order, *(name for name in names if name in FILLED_BY_TRIGGER)])


def _topological(names: Sequence[str], parents: dict[str, set[str]]) -> list[str]:
    """`names` with every table after the tables it refers to, otherwise in creation order."""
    order: list[str] = []
    waiting = list(names)
    while waiting:
        ready = next((name for name in waiting if parents[name] <= set(order)), None)
        if ready is None:
            raise AssertionError(f"the foreign keys between {', '.join(waiting)} form a cycle")
        order.append(ready)
        waiting.remove(ready)
    return order


# --- reading the source, writing the target -----------------------------------------------------------------------

@contextlib.contextmanager
def _read_snapshot(source: Store) -> Iterator[None]:
    """One read transaction over the source: every table read at the same moment."""
    with source.guard():
        if source.dialect == "postgresql":
            connection = source.db.connection  # type: ignore[attr-defined]
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        else:
            connection = source.db.conn
            connection.execute("BEGIN")  # deferred: the snapshot is taken by the first read
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):  # a broken connection must not hide why the copy stopped
                connection.execute("ROLLBACK")
            raise
        connection.execute("ROLLBACK")  # read only: nothing to keep


def _rows(store: Store, table: Table) -> Generator[list[tuple[Any, ...]], None, None]:
    """The table's rows in key order, `CHUNK` at a time, streamed (a server-side cursor in PostgreSQL)."""
    columns = ", ".join(_name(column) for column in table.columns)
    sql = f'SELECT {columns} FROM "{table.name}" ORDER BY {", ".join(_name(column) for column in table.key)}'
    with store.guard():
        if store.dialect == "postgresql":
            connection = store.db.connection  # type: ignore[attr-defined]
            with connection.cursor(name=f"mauto_copy_{table.name}") as cursor:
                cursor.execute(sql)
                while chunk := cursor.fetchmany(CHUNK):
                    yield chunk
        else:
            cursor = store.db.conn.execute(sql)
            try:
                while chunk := cursor.fetchmany(CHUNK):
                    yield chunk
            finally:
                cursor.close()


def _copy_table(source: Store, target: Store, table: Table, progress: Callable[[str, int], None] | None) -> int:
    columns = ", ".join(_name(column) for column in table.columns)
    insert = f'INSERT INTO "{table.name}" ({columns}) VALUES ({", ".join("?" for _ in table.columns)})'
    copied = 0
    with contextlib.closing(_rows(source, table)) as chunks:
        for chunk in chunks:
            try:
                if target.dialect == "postgresql":
                    _copy_in(target, table, chunk)
                else:
                    target.db.conn.executemany(insert, chunk)
            except Exception as error:
                if not _is_driver_error(error):
                    raise
                raise CopyRefused(f"cannot copy table `{table.name}` into it: {_first_line(error)}; nothing was "
                                  "written", target.shown) from None
            copied += len(chunk)
            if progress is not None:
                progress(table.name, copied)
    if progress is not None and not copied:
        progress(table.name, 0)
    return copied


def _copy_in(target: Store, table: Table, chunk: list[tuple[Any, ...]]) -> None:
    """Rows into PostgreSQL by COPY: about twice as fast as executemany. Each value goes as its
    text and the column's type reads it (an integer from SQLite's dynamic types lands as its text in a TEXT
    column, which the check then finds: 1 is not '1')."""
    columns = ", ".join(_name(column) for column in table.columns)
    connection = target.db.connection  # type: ignore[attr-defined]
    with connection.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy:
        for row in chunk:
            copy.write_row(row)


def _refuse_unless_empty(target: Store, tables: Sequence[Table]) -> None:
    for table in tables:
        where = f" WHERE key <> '{SECRET}'" if table.name == "runner_state" else ""
        count = int(target.db.execute(f'SELECT count(*) FROM "{table.name}"{where}').fetchone()[0])
        if count:
            raise CopyRefused(f"not empty: table `{table.name}` has {count:,} row{'s' if count != 1 else ''}; "
                              "mauto db copy writes only into an empty store (a new file or database, or one "
                              "`mauto db init` made); nothing was written", target.shown)


def _carry_counters(source: Store, target: Store, tables: Sequence[Table]) -> None:
    """What the target hands out next: after the source's last, whether or not that row is still there."""
    for table, column in ((table.name, table.counter) for table in tables if table.counter is not None):
        highest = max(_high_water(source, table, column), _max(target, table, column))
        if target.dialect == "postgresql":
            sequence = f"pg_get_serial_sequence('{table}', '{column}')"
            if highest >= 1:
                target.db.execute(f"SELECT setval({sequence}, {int(highest)}, true)")
            else:  # nothing handed out yet: the next is 1
                target.db.execute(f"SELECT setval({sequence}, 1, false)")
        elif table in AUTOINCREMENT and highest > _high_water(target, table, column):
            # SQLite raised it to the largest seq inserted; a deleted last event's seq must not come again
            target.db.execute("DELETE FROM sqlite_sequence WHERE name = ?", [table])
            target.db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", [table, int(highest)])


def _high_water(store: Store, table: str, column: str) -> int:
    """The last value the store handed out for `table.column` (0 when none, or when only the rows tell)."""
    if store.dialect == "postgresql":
        row = store.db.execute(f"SELECT pg_sequence_last_value(pg_get_serial_sequence('{table}', '{column}')"
                               "::regclass)").fetchone()
        return int(row[0]) if row is not None and row[0] is not None else 0
    if table not in AUTOINCREMENT:
        return 0
    row = store.db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", [table]).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def _max(store: Store, table: str, column: str) -> int:
    row = store.db.execute(f'SELECT max({_name(column)}) FROM "{table}"').fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


# --- the check ----------------------------------------------------------------------------------------------------

def _check_table(source: Store, target: Store, table: Table, copied: int) -> None:
    """Both sides in key order, value by value, type included (1 is not '1'); the first difference stops the
    copy, naming the table, the row's key and the column."""
    # closed here, before the transactions end: a server-side cursor left open outlives its transaction
    with contextlib.closing(_rows(source, table)) as source_chunks, \
            contextlib.closing(_rows(target, table)) as target_chunks:
        _compare(table, _flatten(source_chunks), _flatten(target_chunks), copied, target)


def _compare(table: Table, source_rows: Iterator[tuple[Any, ...]], target_rows: Iterator[tuple[Any, ...]],
             copied: int, target: Store) -> None:
    missing = object()
    seen = 0
    for expected in source_rows:
        got = next(target_rows, missing)
        if got is missing:
            raise _differs(table, f"the copy has {seen:,} rows, the source more; the copy was rolled back, "
                                  "nothing was written", target)
        assert isinstance(got, tuple)
        seen += 1
        if expected == got and list(map(type, expected)) == list(map(type, got)):
            continue  # the common case, at C speed (== alone takes 1 for 1.0 and b'x' for a memoryview of it)
        for column, before, after in zip(table.columns, expected, got, strict=True):
            if not _same(before, after):
                key = ", ".join(f"{name}={_shown(expected[table.columns.index(name)])}" for name in table.key)
                raise _differs(table, f"the row {key} differs in column `{column}`: {_shown(before)} in the "
                                      f"source, {_shown(after)} in the copy; the copy was rolled back, nothing "
                                      "was written", target)
    if next(target_rows, missing) is not missing or seen != copied:
        raise _differs(table, f"the copy has more rows than the {seen:,} of the source; the copy was rolled back, "
                              "nothing was written", target)


def _flatten(chunks: Iterator[list[tuple[Any, ...]]]) -> Iterator[tuple[Any, ...]]:
    for chunk in chunks:
        for row in chunk:
            yield tuple(row)


def _same(before: Any, after: Any) -> bool:
    before, after = _plain(before), _plain(after)
    if type(before) is not type(after):
        return False
    if isinstance(before, float) and math.isnan(before) and math.isnan(after):
        return True
    return bool(before == after)


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, (memoryview, bytearray)) else value


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(_plain(value))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _differs(table: Table, message: str, target: Store) -> CopyRefused:
    return CopyRefused(f"the copy of table `{table.name}` does not match the source: {message}", target.shown)


# --- helpers ------------------------------------------------------------------------------------------------------

def _is_url(location: str | os.PathLike[str]) -> bool:
    return str(location).startswith(("postgresql://", "postgres://"))


def _name(column: str) -> str:
    return column if column == "rowid" else f'"{column}"'  # a quoted "rowid" is no rowid to SQLite


def _is_driver_error(error: BaseException) -> bool:
    """Whether an error is the database's refusal (a value the column does not take, a broken constraint)."""
    import sqlite3

    if isinstance(error, sqlite3.Error):
        return True
    module = type(error).__module__
    return module == "psycopg" or module.startswith("psycopg.")


@contextlib.contextmanager
def _driver_errors(store: Store, tail: str) -> Iterator[None]:
    """A database error anywhere in the copy as a message about the target, never a traceback."""
    try:
        yield
    except StoreError:
        raise
    except Exception as error:
        if not _is_driver_error(error):
            raise
        raise CopyRefused(f"the copy failed: {_first_line(error)}; {tail}", store.shown) from None


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _remove_sqlite(path: Path) -> None:
    """A SQLite file this copy created, and its WAL and shared-memory files: nothing half-made is left."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()
