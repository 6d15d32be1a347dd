"""The PostgreSQL store: the same tables, the same SQL and the same guarantees as the SQLite file, for a team
whose contacts have outgrown one machine or who runs several daemons.

`store:` in mauto.yaml takes a `postgresql://` URL (psycopg 3, the `postgresql` extra). The password never sits
in mauto.yaml: libpq reads it from `PGPASSWORD` or `~/.pgpass`, or `store_password_env:` names a variable.

One SQL for both. The store's modules write their SQL once, in the dialect SQLite reads; `translate` turns a
statement into PostgreSQL's once (cached): `?` placeholders, `INSERT OR IGNORE`, `json_extract`, `[quoted]`
names and a few functions. The schema is SQLite's at the baseline version, column types mapped
(`schema_statements`), with the triggers written again in PL/pgSQL; migrations after the baseline come in pairs
(`migrations.MIGRATIONS` and `PG_MIGRATIONS`), and a test holds the two schemas to the same tables and columns.
Text compares in the "C" collation, byte order, as SQLite's BINARY and Python's `str` do.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from mauto.store import migrations
from mauto.store.sqlite import (
    TABLES,
    Clock,
    NoStore,
    Rollback,
    Store,
    StoreError,
    StoreInfo,
    StoreLocked,
    wall_clock,
)

WORKER_LOCK = "mauto:worker:"  # + the worker's name: held by its session while it lives
BASELINE = 8  # the schema version a new PostgreSQL store is created at, from SQLite's schema at that version
PG_MIGRATIONS: dict[int, Callable[[Any], None]] = {}  # the PostgreSQL half of each migration after BASELINE


def pg_table(sql: str) -> str:
    """A SQLite CREATE TABLE statement with PostgreSQL's types (see `_TYPES`)."""
    for pattern, spelling in _TYPES:
        sql = pattern.sub(spelling, sql)
    return re.sub(r"\)\s*WITHOUT\s+ROWID\s*$", ")", sql, flags=re.IGNORECASE)


def _migration_9(db: Any) -> None:
    db.connection.execute(pg_table(migrations.WORKERS_TABLE))


def _migration_10(db: Any) -> None:
    for statement in migrations.MESSAGE_CLAIMS:
        db.connection.execute(pg_table(statement))


def _migration_11(db: Any) -> None:
    # UNLOGGED: rebuilt by every plan, so a crash of the server that empties it loses nothing but this tick's order
    for statement in migrations.DUE_QUEUE:
        db.connection.execute(pg_table(statement))


def is_url(location: str | os.PathLike[str]) -> bool:
    return str(location).startswith(("postgresql://", "postgres://"))


def shown_url(url: str) -> str:
    """The URL without its password (in the user part, or `?password=` as libpq also reads it), to name the store
    in messages and logs."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rpartition("@")
        parts = parts._replace(netloc=f"{netloc[0].partition(':')[0]}:***@{netloc[2]}")
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(key == "password" for key, _ in pairs):
            parts = parts._replace(query=urlencode([(key, "***" if key == "password" else value)
                                                    for key, value in pairs], safe="*"))
    return urlunsplit(parts)


# --- one SQL for both ---------------------------------------------------------------------------------------

_TOKENS = re.compile(r"""('(?:[^']|'')*')|("(?:[^"]|"")*")|(\[[^\]]+\])|(\?)|(%)|(?<!:):([A-Za-z_]\w*)""")
_JSON_EXTRACT = re.compile(r"json_extract\(", re.IGNORECASE)
_FUNCTIONS = (
    (re.compile(r"\bjson_valid\(", re.IGNORECASE), "mauto_json_valid("),
    (re.compile(r"\bjulianday\(", re.IGNORECASE), "mauto_julianday("),
    (re.compile(r"\bjson_object\(", re.IGNORECASE), "json_build_object("),
    (re.compile(r"\bifnull\(", re.IGNORECASE), "coalesce("),
    # `a = ? COLLATE NOCASE` (ASCII letters folded) as the expression index `lower(a)` reads it
    (re.compile(r"\b([\w.]+)\s*=\s*\?\s+COLLATE\s+NOCASE\b", re.IGNORECASE), r"lower(\1) = lower(?)"),
    (re.compile(r"\s+COLLATE\s+NOCASE\b", re.IGNORECASE), ""),
    (re.compile(r"(?<![\w.])temp\.(?=\w)"), "pg_temp."),
    (re.compile(r"\bIS\s+NOT\s+\?", re.IGNORECASE), "IS DISTINCT FROM ?"),  # SQLite's IS compares NULLs too
    (re.compile(r"\bIS\s+\?", re.IGNORECASE), "IS NOT DISTINCT FROM ?"),  # SQLite's schema of temporary tables
)
_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)


def _outside_quotes(sql: str) -> str:
    """Placeholders to psycopg's (`?` to `%s`, `:name` to `%(name)s`, a literal `%` doubled) and `[name]` to
    `"name"`, leaving string literals alone."""
    def swap(match: re.Match[str]) -> str:
        literal, quoted, bracketed, mark, percent, named = match.groups()
        if named is not None:
            return f"%({named})s"
        if literal is not None:
            return literal.replace("%", "%%")
        if quoted is not None:
            return quoted
        if bracketed is not None:
            return '"' + bracketed[1:-1] + '"'
        if mark is not None:
            return "%s"
        return "%%"

    return _TOKENS.sub(swap, sql)


def _argument_end(sql: str, start: int, closing: bool = False) -> int:
    """The index of the comma that ends the function argument starting at `start` (parentheses balanced), or
    with `closing` of the parenthesis that ends the call."""
    depth, index, quote = 0, start, False
    while index < len(sql):
        char = sql[index]
        if char == "'":
            quote = not quote
        elif not quote:
            if char == "(":
                depth += 1
            elif char == ")":
                if depth == 0 and closing:
                    return index
                depth -= 1
            elif char == "," and depth == 0 and not closing:
                return index
        index += 1
    raise ValueError(f"cannot translate json_extract in: {sql}")


def _json_paths(sql: str) -> str:
    """`json_extract(x, '$.a.b')` to `(x)::jsonb #>> '{a,b}'`: the value as text (numbers and true/false as
    their JSON spelling), NULL where SQLite gives NULL."""
    while (match := _JSON_EXTRACT.search(sql)) is not None:
        start = match.end()
        comma = _argument_end(sql, start)
        path_match = re.match(r"\s*'\$\.([^']*)'\s*\)", sql[comma + 1:])
        given = re.match(r"\s*\?\s*\)", sql[comma + 1:])  # the path as a parameter: '$.a.b'
        if path_match is not None:
            path = "'{" + ",".join(path_match.group(1).split(".")) + "}'"
            end = comma + 1 + path_match.end()
        elif given is not None:
            path = "string_to_array(substr(?, 3), '.')"
            end = comma + 1 + given.end()
        else:
            raise ValueError(f"cannot translate json_extract in: {sql}")
        sql = f"{sql[:match.start()]}(({sql[start:comma]})::jsonb #>> {path}){sql[end:]}"
    return sql


_GROUP_ARRAY = re.compile(r"\bjson_group_array\(", re.IGNORECASE)


def _group_arrays(sql: str) -> str:
    """`json_group_array(x)` to `(json_agg(x)::text)`: JSON text, as SQLite gives (psycopg would decode json)."""
    while (match := _GROUP_ARRAY.search(sql)) is not None:
        end = _argument_end(sql, match.end(), closing=True)
        sql = f"{sql[:match.start()]}(json_agg({sql[match.end():end]})::text){sql[end + 1:]}"
    return sql


_CASEFOLD = re.compile(r"\bmauto_casefold\(", re.IGNORECASE)


def _casefolds(sql: str) -> str:
    """`mauto_casefold(x)` (Python's casefold, which SQLite's connection is given) to `lower((x) COLLATE
    "und-x-icu")`: the text columns are in the "C" collation, whose lower() folds A to Z only; ICU's folds every
    alphabet (É to é), as Python does."""
    while (match := _CASEFOLD.search(sql)) is not None:
        end = _argument_end(sql, match.end(), closing=True)
        sql = f'{sql[:match.start()]}lower(({sql[match.end():end]}) COLLATE "und-x-icu"){sql[end + 1:]}'
    return sql


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """A statement written for SQLite, as PostgreSQL reads it (see the module's docstring)."""
    ignore = _OR_IGNORE.match(sql) is not None
    if ignore:
        sql = _OR_IGNORE.sub("INSERT INTO", sql, count=1)
    sql = _casefolds(_group_arrays(_json_paths(sql)))
    for pattern, spelling in _FUNCTIONS:
        sql = pattern.sub(spelling, sql)
    if ignore:
        returning = _RETURNING.search(sql)
        if returning is not None:
            sql = f"{sql[:returning.start()]}ON CONFLICT DO NOTHING {sql[returning.start():]}"
        else:
            sql = sql.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    return _outside_quotes(sql)


# --- a connection that reads as sqlite-utils' Database does for the store's modules -------------------------

_INSERT_INTO = re.compile(r"^\s*INSERT\s+(?:OR\s+\w+\s+)?INTO\s+(\w+)", re.IGNORECASE)
_WRITES = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
_IDENTITY = {"events": "seq", "messages": "id", "calls": "id", "step_log": "id", "tasks": "id",
             "releases": "id", "failures": "id", "api_keys": "id"}


class Cursor:
    """A psycopg cursor as the store's modules use sqlite3's: iteration, fetchone/fetchall, description,
    rowcount, and `lastrowid` for an INSERT into a table with an identity column."""

    def __init__(self, cursor: Any, lastrowid: int | None = None) -> None:
        self._cursor = cursor
        self.lastrowid = lastrowid

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description is not None else None

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall() if self._cursor.description is not None else []

    def fetchmany(self, size: int) -> list[Any]:
        return self._cursor.fetchmany(size) if self._cursor.description is not None else []

    def __iter__(self) -> Iterator[Any]:
        if self._cursor.description is None:
            return iter(())
        return iter(self._cursor)


class Connection:
    """What the store's modules call on `db.conn`: executemany, total_changes, create_function."""

    def __init__(self, database: PgDatabase) -> None:
        self._database = database

    @property
    def total_changes(self) -> int:
        return self._database.changes

    def executemany(self, sql: str, rows: Any) -> Cursor:
        return self._database.executemany(sql, rows)

    def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        return self._database.execute(sql, parameters)

    def commit(self) -> None:
        """Outside `PgStore.transaction()` every statement is its own transaction (autocommit): nothing to do."""

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        """The functions the SQLite connection is given exist in PostgreSQL already (`translate` maps them)."""


class PgDatabase:
    """The PostgreSQL connection behind a `PgStore`, answering `execute`, `query` and `conn` as
    sqlite-utils' `Database` does, with every statement `translate`d."""

    dialect = "postgresql"

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.conn = Connection(self)
        self.changes = 0  # rows inserted, updated or deleted through this connection (sqlite3's total_changes)

    def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        statement = translate(sql)
        insert = _INSERT_INTO.match(sql)
        identity = _IDENTITY.get(insert.group(1).lower()) if insert is not None else None
        wants_id = identity is not None and _RETURNING.search(statement) is None
        if wants_id:
            statement += f" RETURNING {identity}"
        cursor = self.connection.cursor()
        cursor.execute(statement, _parameters(parameters))
        if _WRITES.match(sql):
            self.changes += max(cursor.rowcount, 0)
        if wants_id:
            row = cursor.fetchone()
            return Cursor(_Done(cursor.rowcount), int(row[0]) if row is not None else None)
        return Cursor(cursor)

    def executemany(self, sql: str, rows: Any) -> Cursor:
        cursor = self.connection.cursor()
        rows = [_parameters(row) for row in rows]
        if not rows:
            return Cursor(_Done())
        cursor.executemany(translate(sql), rows)
        self.changes += max(cursor.rowcount, 0)
        return Cursor(_Done(cursor.rowcount))

    def query(self, sql: str, parameters: Any = ()) -> Iterator[dict[str, Any]]:
        cursor = self.execute(sql, parameters)
        names = [column[0] for column in cursor.description or ()]
        for row in cursor:
            yield dict(zip(names, row, strict=True))

    def commit(self) -> None:
        """Outside `PgStore.transaction()` every statement is its own transaction (autocommit): nothing to do."""

    def close(self) -> None:
        self.connection.close()


class _Done:
    """A statement whose rows were read already (or that returns none), with how many it changed."""

    description = None

    def __init__(self, rowcount: int = -1) -> None:
        self.rowcount = rowcount


def _parameters(parameters: Any) -> Any:
    if isinstance(parameters, dict):
        return {key: _value(value) for key, value in parameters.items()}
    return [_value(value) for value in parameters]


def _value(value: Any) -> Any:
    """SQLite's values as PostgreSQL's columns take them: booleans as 0/1 (the columns are integers, as in
    SQLite), memoryview as bytes."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


# --- the schema -----------------------------------------------------------------------------------------------

_TYPES = (  # case-sensitive: the types are upper case in the DDL, column names (`text`) lower
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY(\s+AUTOINCREMENT)?"),
     "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\bTEXT\b"), 'TEXT COLLATE "C"'),
)

_ROWID = ("coupons",)  # the tables whose rowid the store's SQL reads
_FUNCTIONS_SQL = [
    # SQLite's json_valid and julianday, which the store's SQL calls (translate keeps their names apart)
    """CREATE OR REPLACE FUNCTION mauto_json_valid(value TEXT) RETURNS BOOLEAN LANGUAGE plpgsql IMMUTABLE AS $$
       BEGIN PERFORM value::jsonb; RETURN value IS NOT NULL; EXCEPTION WHEN others THEN RETURN false; END $$""",
    """CREATE OR REPLACE FUNCTION mauto_julianday(value TEXT) RETURNS DOUBLE PRECISION LANGUAGE plpgsql
       IMMUTABLE AS $$ BEGIN RETURN extract(epoch FROM value::timestamptz) / 86400.0 + 2440587.5;
       EXCEPTION WHEN others THEN RETURN NULL; END $$""",
    """CREATE OR REPLACE FUNCTION mauto_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END $$""",
    # message_feedback kept from events, whichever way an event arrives (migration 7's trigger in SQLite)
    """CREATE OR REPLACE FUNCTION mauto_message_feedback() RETURNS trigger LANGUAGE plpgsql AS $$
       DECLARE properties jsonb;
       BEGIN
         IF new.name NOT IN ('email_opened', 'email_clicked', 'unsubscribed', 'email_bounced', 'email_complained')
            OR NOT mauto_json_valid(new.properties) THEN RETURN NULL; END IF;
         properties := new.properties::jsonb;
         IF jsonb_typeof(properties) <> 'object' OR properties->>'workflow' IS NULL
            OR properties->>'message' IS NULL THEN RETURN NULL; END IF;
         INSERT INTO message_feedback (workflow, step, kind, message, human, at)
         VALUES (properties->>'workflow', coalesce(properties->>'step', ''), new.name, properties->>'message',
                 CASE WHEN coalesce(properties->>'prefetched', '0') IN ('0', 'false') THEN 1 ELSE 0 END, new.at)
         ON CONFLICT (workflow, step, kind, message) DO UPDATE SET
           at = CASE WHEN excluded.human > message_feedback.human THEN excluded.at
                     WHEN excluded.human = message_feedback.human THEN least(message_feedback.at, excluded.at)
                     ELSE message_feedback.at END,
           human = greatest(message_feedback.human, excluded.human);
         RETURN NULL;
       END $$""",
]


def _sqlite_schema(version: int) -> list[tuple[str, str, str]]:
    """(type, name, sql) of every table and index of a SQLite store at `version`, in creation order."""
    import sqlite3

    from sqlite_utils import Database

    db = Database(sqlite3.connect(":memory:"))
    for number in sorted(migrations.MIGRATIONS):
        if number > version:
            break
        migrations.MIGRATIONS[number](db)
    rows = db.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid").fetchall()
    db.close()
    return [(kind, name, sql) for kind, name, sql in rows if not name.startswith("sqlite_")]


def schema_statements(version: int = BASELINE) -> list[str]:
    """The PostgreSQL statements that create a store at `version`: SQLite's tables and indexes with their types
    mapped, the functions above, and SQLite's triggers as PostgreSQL triggers."""
    statements = list(_FUNCTIONS_SQL)
    for kind, name, sql in _sqlite_schema(version):
        if kind == "table":
            sql = pg_table(sql)
            if name in _ROWID:  # SQLite's implicit rowid, which the store's SQL orders by: a column here
                sql = sql.replace("(", "(rowid BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE, ", 1)
            statements.append(sql)
        elif kind == "index":
            statements.append(re.sub(r"\((\w+) COLLATE NOCASE\)", r"(lower(\1))", sql))
        elif kind == "trigger" and name.endswith(("_no_update", "_no_delete")):
            table = name.rsplit("_no_", 1)[0]
            verb = "UPDATE" if name.endswith("_no_update") else "DELETE"
            message = re.search(r"RAISE\(ABORT, '([^']*)'\)", sql)
            assert message is not None
            statements.append(f"CREATE TRIGGER {name} BEFORE {verb} ON {table} FOR EACH ROW "
                              f"EXECUTE FUNCTION mauto_immutable('{message.group(1)}')")
        elif kind == "trigger" and name == "events_message_feedback":
            statements.append("CREATE TRIGGER events_message_feedback AFTER INSERT ON events FOR EACH ROW "
                              "EXECUTE FUNCTION mauto_message_feedback()")
        else:
            raise AssertionError(f"no PostgreSQL spelling for SQLite's {kind} {name}")
    statements.append("CREATE TABLE mauto_schema (version INTEGER NOT NULL)")
    statements.append(f"INSERT INTO mauto_schema (version) VALUES ({int(version)})")
    return statements


# --- the store --------------------------------------------------------------------------------------------------

def _errors() -> Any:
    import psycopg

    return psycopg


class PgStore(Store):
    """A mauto store in a PostgreSQL database: `Store`'s interface and guarantees (see `Store`), over one
    connection. A transaction is READ COMMITTED; what must not run twice at once takes a row lock or an
    advisory lock (`advisory`)."""

    def __init__(self, url: str, now: Clock | None = None, *, create: bool = False, migrate: bool = False,
                 timeout: float = 5.0, shown: str | None = None, phone_region: str | None = None,
                 password: str | None = None) -> None:
        psycopg = _import_psycopg()
        self.url = url
        self.path = Path(shown_url(url))
        self.shown = shown or shown_url(url)
        self.phone_region = phone_region
        self.now = now or wall_clock
        self.timeout = timeout
        self.applied = []
        # TCP keepalives and a user timeout: a network cut that never closes the socket ends the connection in
        # about a minute (a server's writer then reconnects), instead of when the OS gives up, hours later
        options: dict[str, Any] = {"autocommit": True, "connect_timeout": max(1, int(timeout)), "keepalives": 1,
                                   "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
                                   "tcp_user_timeout": 60_000}
        if password is not None:
            options["password"] = password
        try:
            connection = psycopg.connect(url, **options)
        except psycopg.OperationalError as error:
            raise StoreError(f"cannot connect to PostgreSQL: {_first_line(error)}", self.shown) from None
        except psycopg.ProgrammingError as error:
            raise StoreError(f"not a PostgreSQL URL psycopg can use: {_first_line(error)}", self.shown) from None
        connection.execute(f"SET lock_timeout = {int(timeout * 1000)}")
        connection.execute("SET TIME ZONE 'UTC'")
        # This session's name as a worker, held as an advisory lock for as long as the connection lives: a
        # hand-off begun by a worker whose lock can be taken was cut off (its process is gone, however it went).
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        connection.execute("SELECT pg_advisory_lock(hashtext(%s)::bigint)", [WORKER_LOCK + self.worker])
        self.pg = PgDatabase(connection)
        self.db = self.pg  # type: ignore[assignment]  # read as sqlite-utils' Database by the store's modules
        self._in_transaction = False
        try:
            with self.guard():
                found = self._user_version()
                if found is None:
                    if not create:
                        raise NoStore("no mauto store in this database; create it with `mauto db init`",
                                      self.shown)
                    if self._has_tables():
                        raise StoreError("this database has tables of its own and no mauto schema: give mauto a "
                                         "database of its own", self.shown)
                    with self.transaction():
                        for statement in schema_statements(BASELINE):
                            self.pg.connection.execute(statement)  # as written: DDL, no placeholders
                        # the key that signs unsubscribe links, made once per store (SQLite's migration 4)
                        self.db.execute("INSERT INTO runner_state (key, value) VALUES ('unsubscribe_secret', ?)",
                                        [secrets.token_urlsafe(32)])
                    self.applied.append(BASELINE)
                    found = BASELINE
                self.version = found
                if self.version > migrations.latest():
                    raise StoreError(f"this store has schema version {self.version}, written by a newer mauto; "
                                     f"this mauto knows versions up to {migrations.latest()}. Upgrade mauto; "
                                     "the database was not changed", self.shown)
                if self.version < migrations.latest() and not (migrate or create):
                    raise StoreError(f"this store has schema version {self.version}; this mauto needs "
                                     f"{migrations.latest()}: run `mauto db migrate`", self.shown)
                if self.version < migrations.latest():
                    self.migrate()
        except BaseException:
            connection.close()
            raise

    def _has_tables(self) -> bool:
        row = self.db.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                              "current_schema()").fetchone()
        return bool(row[0])

    def _user_version(self) -> int | None:  # type: ignore[override]
        exists = self.db.execute("SELECT to_regclass('mauto_schema') IS NOT NULL").fetchone()[0]
        if not exists:
            return None
        row = self.db.execute("SELECT version FROM mauto_schema").fetchone()
        return int(row[0]) if row is not None else None

    def migrate(self) -> list[int]:
        applied = []
        for version in migrations.pending(self.version or BASELINE):
            step = PG_MIGRATIONS.get(version)
            if step is None:
                raise StoreError(f"migration {version} has no PostgreSQL half", self.shown)
            with self.transaction():
                step(self.db)
                self.db.execute("UPDATE mauto_schema SET version = ?", [version])
            applied.append(version)
        self.applied.extend(applied)
        self.version = self._user_version() or BASELINE
        return applied

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """psycopg's errors as messages about this store."""
        psycopg = _errors()
        try:
            yield
        except psycopg.errors.LockNotAvailable:
            raise StoreLocked(f"the store is locked: another mauto (or another program) holds a lock and did not "
                              f"release it within {self.timeout:g}s; try again when it has finished",
                              self.shown) from None
        except psycopg.OperationalError as error:
            raise StoreError(f"PostgreSQL: {_first_line(error)}", self.shown) from None

    @contextlib.contextmanager
    def transaction(self, durable: bool = True) -> Iterator[Any]:
        """One transaction (READ COMMITTED); committed at the end, rolled back on any exception (`Rollback` is
        swallowed). `durable=False` commits without waiting for the WAL flush (`synchronous_commit = off`), for
        the records whose loss is safe, as in SQLite's store."""
        with self.guard():
            connection = self.pg.connection
            if self._in_transaction:  # nested: a savepoint, undone alone by an exception (`Rollback` swallowed)
                with contextlib.suppress(Rollback), connection.transaction():
                    yield self.db
                return
            self._in_transaction = True
            try:
                with contextlib.suppress(Rollback), connection.transaction():
                    if not durable:
                        connection.execute("SET LOCAL synchronous_commit = off")
                    yield self.db
            finally:
                self._in_transaction = False

    def advisory(self, name: str, *, wait: bool = False, shared: bool = False, timeout: float | None = None) -> bool:
        """Take the session's advisory lock `name`, alone or `shared` (released with `release_advisory` or when
        the connection ends, however the process ends); False when it cannot be had and `wait` is False, or
        not within `timeout` seconds (None: as long as it takes). Waiting, the request is in PostgreSQL's queue:
        the holders in hand finish, and later requests that conflict with it wait behind it."""
        function = ("pg_advisory_lock" if wait else "pg_try_advisory_lock") + ("_shared" if shared else "")
        if wait:  # lock_timeout is for rows: waiting one's turn here takes `timeout`, or as long as it takes
            self.db.execute(f"SET lock_timeout = {max(1, int(timeout * 1000)) if timeout is not None else 0}")
        try:
            row = self.db.execute(f"SELECT {function}(hashtext(?)::bigint)", [name]).fetchone()
        except _errors().errors.LockNotAvailable:
            return False
        finally:
            if wait:
                self.db.execute(f"SET lock_timeout = {int(self.timeout * 1000)}")
        return True if wait else bool(row[0])

    def gone(self, worker: str) -> bool:
        """Whether the worker named so has ended (its session's lock is free), this one never."""
        if worker == self.worker:
            return False
        name = WORKER_LOCK + worker
        if not self.db.execute("SELECT pg_try_advisory_lock(hashtext(?)::bigint)", [name]).fetchone()[0]:
            return False
        self.db.execute("SELECT pg_advisory_unlock(hashtext(?)::bigint)", [name])
        return True

    def release_advisory(self, name: str, *, shared: bool = False) -> None:
        function = "pg_advisory_unlock_shared" if shared else "pg_advisory_unlock"
        self.db.execute(f"SELECT {function}(hashtext(?)::bigint)", [name])

    def info(self) -> StoreInfo:
        with self.guard():
            counts = {}
            for table in TABLES:
                if self.db.execute("SELECT to_regclass(?) IS NOT NULL", [table]).fetchone()[0]:
                    counts[table] = int(self.db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
            size = int(self.db.execute("SELECT pg_database_size(current_database())").fetchone()[0])
        return StoreInfo(self.shown, self.version or 0, migrations.latest(), "postgresql", size, counts)

    @property
    def dialect(self) -> str:
        return "postgresql"

    def local_folder(self, kind: str) -> Path:
        """A folder on this machine for what a process keeps beside the store (rendered releases): under the
        user's cache, one per database."""
        parts = urlsplit(self.url)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{parts.hostname or 'local'}_{parts.port or 5432}{parts.path}")
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mauto"
        return base / f"{name}.{kind}"


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreError("a postgresql:// store needs psycopg: pip install 'mauto[postgresql]'") from None
    return psycopg


PG_MIGRATIONS[9] = _migration_9
PG_MIGRATIONS[10] = _migration_10
PG_MIGRATIONS[11] = _migration_11
