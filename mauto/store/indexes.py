"""Audience indexes: the indexes on `contacts` that make an audience query an index search (docs/store.md,
"Audiences in SQL"): a field compared (`contacts_field_<field>`, made by `mauto db index FIELD`) and a date
trigger's candidates (`contacts_date_<field>_<every>`, made by `mauto deploy` for the date triggers it deploys).
Their statements are `audience_sql.index_sql`'s; this module lists, makes and drops them (all their SQL).

What a project wants is decided above: mauto.deploy passes the date triggers' indexes (and drops the
`contacts_date_*` ones no deployed trigger reads), `mauto db index` the fields named (`field_indexes`).

How they are made. SQLite: in the caller's transaction (a deploy's: all or nothing), or in one of their own. On
PostgreSQL, outside a transaction, with CREATE INDEX CONCURRENTLY: a plain CREATE INDEX holds off every write to
`contacts` while it reads the table (seconds at a million contacts), and the daemons' writes would wait for it,
then fail after their lock timeout; a concurrent build lets them go on. It waits (up to INDEX_WAIT) for the
transactions already using the table; one that fails or is interrupted leaves an invalid index, which the
queries ignore (`audience_sql._indexes`) and the next deploy or `mauto db index` makes again. Each index made
carries its statement's digest (SQLite: its statement, kept by SQLite; PostgreSQL: a comment on it), so that one
made for another declared type (a field now a number, a date now a datetime) or by another mauto is made again.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from mauto.errors import UsageError
from mauto.store.audience_sql import DATE_INDEX, EVERY, FIELD_INDEX, index_name, index_sql
from mauto.store.contact_rows import COLUMN_FIELDS
from mauto.store.sqlite import Store, StoreError, StoreLocked

INDEX_WAIT = 60.0  # s: how long a concurrent build (PostgreSQL) waits for the transactions using `contacts`
NAME_LIMIT = 63  # bytes: PostgreSQL's longest name; a longer one is cut short, and the queries would not find it
_FIELD_NAME = re.compile(r"[a-z_][a-z0-9_]*")  # mauto.yaml's contact field names (project.schema.json)
_COMMENT = "mauto audience index "  # PostgreSQL: the comment on an index made here, then its statement's digest

FIELD, DATE = "field", "date"


@dataclass(frozen=True)
class IndexSpec:
    """An audience index wanted: on contact field `field`, declared `declared` (mauto.yaml's type), for its
    comparisons (`every` None) or for a date trigger's key (`every`: year, month or once)."""

    field: str
    declared: Any
    every: str | None = None

    @property
    def name(self) -> str:
        return index_name(self.field, self.every)

    @property
    def kind(self) -> str:
        return FIELD if self.every is None else DATE

    def statement(self, dialect: str, concurrently: bool = False) -> str:
        return index_sql(self.field, dialect, self.declared, every=self.every, concurrently=concurrently)

    def definition(self, dialect: str) -> str:
        """What an index made by `statement` reads as in the store (`AudienceIndex.definition`)."""
        statement = self.statement(dialect)
        if dialect == "postgresql":
            return _COMMENT + hashlib.sha256(statement.encode("utf-8")).hexdigest()[:16]
        return statement.replace(" IF NOT EXISTS", "", 1)  # SQLite keeps the statement, but for IF NOT EXISTS


@dataclass(frozen=True)
class AudienceIndex:
    """An audience index present on `contacts`: `definition` is SQLite's statement of it, or mauto's comment on
    it in PostgreSQL (empty when it has none); `valid` False: a concurrent build that did not finish."""

    name: str
    field: str
    kind: str  # field | date
    every: str | None
    size: int | None  # bytes; None when the store cannot tell cheaply
    valid: bool = True
    definition: str = ""
    state: str = "ok"  # ok | invalid | stale (made for another declared type) | undeclared (the field is not)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "field": self.field, "kind": self.kind, "every": self.every, "size": self.size,
                "state": self.state}


@dataclass(frozen=True)
class IndexChange:
    """What is (`make`, `remake`, `drop`, `keep`: planned) or was (`made`, `remade`, `dropped`, `kept`, `failed`,
    `absent`: nothing to drop) done to one audience index; `why`: the reason for a remake or a drop; `error`:
    why it failed (and `attempted`: what was tried); `seconds`: how long it took."""

    action: str
    name: str
    field: str
    kind: str
    every: str | None = None
    declared: Any = None
    why: str = ""
    seconds: float | None = None
    error: str = ""
    attempted: str = ""

    @property
    def spec(self) -> IndexSpec:
        return IndexSpec(self.field, self.declared, self.every)

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"action": self.action, "name": self.name, "field": self.field, "kind": self.kind,
                                  "every": self.every}
        if self.why:
            result["why"] = self.why
        if self.seconds is not None:
            result["seconds"] = round(self.seconds, 3)
        if self.error:
            result["error"], result["attempted"] = self.error, self.attempted
        result["summary"] = self.sentence()
        return result

    def sentence(self) -> str:
        """One line: `index contacts_date_birthday_year made in 2.1s (...)`."""
        what = f"index {self.name}"
        took = f" in {self.seconds:.1f}s" if self.seconds is not None else ""
        purpose = (f"for comparisons of `{self.field}`" if self.kind == FIELD
                   else f"for date triggers on `{self.field}`, every: {self.every}")
        if self.action in ("make", "remake"):
            again = f", again: {self.why}" if self.action == "remake" else ""
            return f"+ {what} ({purpose}{again})"
        if self.action == "drop":
            return f"- {what} ({self.why})"
        if self.action in ("made", "remade"):
            again = f"; made again: {self.why}" if self.action == "remade" else ""
            return f"{what} made{took} ({purpose}{again})"
        if self.action == "dropped":
            return f"{what} dropped" + (f" ({self.why})" if self.why else "")  # at once, whatever the size
        if self.action in ("keep", "kept"):
            return f"{what} already there ({purpose})"
        if self.action == "absent":
            return f"{what}: none to drop"
        return f"{what} not {'dropped' if self.attempted == 'drop' else 'made'}: {self.error}"


# --- what is there ------------------------------------------------------------------------------------------

def _parse_name(name: str) -> tuple[str, str, str | None] | None:
    """(kind, field, every) of an audience index's name; None for another index."""
    if name.startswith(FIELD_INDEX) and len(name) > len(FIELD_INDEX):
        return FIELD, name[len(FIELD_INDEX):], None
    if name.startswith(DATE_INDEX):
        field, _, every = name[len(DATE_INDEX):].rpartition("_")
        if field and every in EVERY:
            return DATE, field, every
    return None


def present(store: Store) -> dict[str, AudienceIndex]:
    """The audience indexes on `contacts`, by name (their state `ok`: see `list_indexes`)."""
    if store.dialect == "postgresql":
        rows = store.db.execute(
            "SELECT c.relname, i.indisvalid, pg_relation_size(c.oid), coalesce(obj_description(c.oid, 'pg_class'), "
            "'') FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = to_regclass('contacts') ORDER BY c.relname").fetchall()
    else:
        rows = [(name, True, None, sql) for name, sql in store.db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'contacts' AND sql IS NOT NULL "
            "ORDER BY name")]
    found = {}
    for name, valid, size, definition in rows:
        parsed = _parse_name(name)
        if parsed is not None:
            kind, field, every = parsed
            found[name] = AudienceIndex(name, field, kind, every, size, bool(valid), definition)
    return found


def _sqlite_size(store: Store, name: str) -> int | None:
    """The bytes of an index in a SQLite file (its pages, from the dbstat table); None without dbstat."""
    try:
        row = store.db.execute("SELECT sum(pgsize) FROM dbstat WHERE name = ?", [name]).fetchone()
    except sqlite3.OperationalError as error:  # a SQLite built without SQLITE_ENABLE_DBSTAT_VTAB: no size
        if "dbstat" in str(error):
            return None
        raise
    return int(row[0]) if row and row[0] is not None else None


def list_indexes(store: Store, fields: dict[str, Any]) -> list[AudienceIndex]:
    """The audience indexes on `contacts` in name order, with their size and state: `ok`; `invalid` (PostgreSQL:
    a concurrent build that did not finish; the queries ignore it); `stale` (made for another declared type of
    the field than `fields` gives it now, or by another mauto: the queries may not use it); `undeclared` (the
    field is not in `fields`)."""
    with store.guard():
        found = present(store)
        listed = []
        for index in found.values():
            size = index.size if store.dialect == "postgresql" else _sqlite_size(store, index.name)
            if not index.valid:
                state = "invalid"
            elif index.field not in fields:
                state = "undeclared"
            elif index.definition != IndexSpec(index.field, fields[index.field], index.every).definition(
                    store.dialect):
                state = "stale"
            else:
                state = "ok"
            listed.append(replace(index, size=size, state=state))
    return listed


# --- what to do ---------------------------------------------------------------------------------------------

def fits(field: str, every: str | None = None) -> bool:
    """Whether an audience index on `field` can be named (a field name as mauto.yaml declares them, and a name
    PostgreSQL keeps whole)."""
    return _FIELD_NAME.fullmatch(field) is not None and len(index_name(field, every).encode()) <= NAME_LIMIT


def planned_changes(store: Store, wanted: Iterable[IndexSpec], *, drop_dates: bool = False,
                    drop_why: str = "no deployed date trigger reads it") -> list[IndexChange]:
    """What `apply_changes` would do to have the `wanted` indexes, each as its spec's statement makes it: `make`
    (absent), `remake` (invalid, or made otherwise), `keep`; and with `drop_dates`, `drop` each date index
    (`contacts_date_*`) not wanted. Nothing is written."""
    dialect = store.dialect
    with store.guard():
        found = present(store)
    changes: list[IndexChange] = []
    names: set[str] = set()
    for spec in wanted:
        if spec.name in names:
            continue
        names.add(spec.name)
        index = found.get(spec.name)
        action, why = "make", ""
        if index is not None and not index.valid:
            action, why = "remake", "its last build did not finish"
        elif index is not None and index.definition != spec.definition(dialect):
            action, why = "remake", f"it did not index `{spec.field}` as {_as(spec.declared)}"
        elif index is not None:
            action = "keep"
        changes.append(IndexChange(action, spec.name, spec.field, spec.kind, spec.every, spec.declared, why))
    if drop_dates:
        changes.extend(IndexChange("drop", index.name, index.field, index.kind, index.every, why=drop_why)
                       for index in found.values() if index.kind == DATE and index.name not in names)
    return changes


def _as(declared: Any) -> str:
    """A declared type with its article: `a datetime`, `an integer`, `an enum` (its type changed, or another mauto
    wrote its index otherwise)."""
    name = declared if isinstance(declared, str) else "enum" if isinstance(declared, dict) else repr(declared)
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def concurrent(store: Store) -> bool:
    """Whether `apply_changes` builds the indexes concurrently, each in a transaction of its own (PostgreSQL,
    outside a transaction): then it must be called after the caller's transaction, not inside it."""
    if store.dialect != "postgresql":
        return False
    import psycopg

    status = store.pg.connection.info.transaction_status  # type: ignore[attr-defined]
    return bool(status == psycopg.pq.TransactionStatus.IDLE)


def apply_changes(store: Store, changes: Iterable[IndexChange]) -> list[IndexChange]:
    """Do the planned changes (`planned_changes`; `keep` is left as `kept`) and say how each went (`made`,
    `remade`, `dropped`, with the seconds it took). SQLite: in the caller's transaction, or in one of their own,
    all or nothing (an error is raised: StoreLocked when another writer holds the file past the busy timeout).
    PostgreSQL: in the caller's transaction with plain statements, or, outside one (`concurrent`), each index
    built concurrently on its own: one that cannot be (the transactions using `contacts` did not finish within
    INDEX_WAIT, a full disk) is `failed`, with the reason, and the others are still made."""
    changes = list(changes)
    if concurrent(store):
        return [_concurrently(store, change) for change in changes]
    with _transaction(store):
        return [_apply(store, change, False) for change in changes]


@contextlib.contextmanager
def _transaction(store: Store) -> Iterator[None]:
    """The caller's transaction, or one of its own."""
    inside = store.db.conn.in_transaction if store.dialect != "postgresql" else True
    if inside:
        with store.guard():
            yield
        return
    with store.transaction():
        yield


_DONE = {"make": "made", "remake": "remade", "drop": "dropped", "keep": "kept"}


def _apply(store: Store, change: IndexChange, concurrently: bool) -> IndexChange:
    if change.action == "keep":
        return replace(change, action="kept")
    started = time.perf_counter()
    db = store.db
    postgresql = store.dialect == "postgresql"
    drop = "DROP INDEX CONCURRENTLY IF EXISTS" if concurrently else "DROP INDEX IF EXISTS"
    if change.action in ("remake", "drop"):
        db.execute(f'{drop} "{change.name}"')
    if change.action in ("make", "remake"):
        db.execute(change.spec.statement(store.dialect, concurrently))
        if postgresql:  # what `definition` compares: the digest of the statement it was made by
            db.execute(f"COMMENT ON INDEX \"{change.name}\" IS '{change.spec.definition(store.dialect)}'")
    return replace(change, action=_DONE[change.action], seconds=time.perf_counter() - started)


def _concurrently(store: Store, change: IndexChange) -> IndexChange:
    """One change on PostgreSQL outside a transaction, waiting up to INDEX_WAIT for the table's users."""
    import psycopg

    db = store.db
    timeout = int(getattr(store, "timeout", 5.0) * 1000)
    db.execute(f"SET lock_timeout = {int(INDEX_WAIT * 1000)}")
    try:
        return _apply(store, change, True)
    except psycopg.errors.LockNotAvailable:
        error = (f"the transactions using `contacts` did not finish within {INDEX_WAIT:g}s; run it again "
                 "when the store is quieter")
    except (psycopg.errors.QueryCanceled, psycopg.OperationalError) as failure:
        error = f"PostgreSQL: {(str(failure).strip().splitlines() or [type(failure).__name__])[0]}"
    finally:
        db.execute(f"SET lock_timeout = {timeout}")
    # A build that failed leaves an invalid index behind: dropped if that can be done at once, which it cannot
    # while a transaction still holds the table (then the next run makes it again; the queries ignore it).
    if change.action != "drop":
        db.execute(f"SET lock_timeout = {min(timeout, 1000)}")
        try:
            with contextlib.suppress(psycopg.Error, StoreLocked, StoreError):
                db.execute(f'DROP INDEX IF EXISTS "{change.name}"')
        finally:
            db.execute(f"SET lock_timeout = {timeout}")
    return replace(change, action="failed", error=error, attempted=change.action)


# --- `mauto db index` ---------------------------------------------------------------------------------------

def _field_problem(name: str, fields: dict[str, Any], found: dict[str, AudienceIndex], drop: bool) -> str | None:
    """Why `name` cannot have a field index made (or, `drop`, dropped), or None."""
    if not _FIELD_NAME.fullmatch(name):
        return "not a field name (mauto.yaml's are a lower-case letter or _, then lower-case letters, digits or _)"
    if drop and index_name(name) in found:
        return None  # whatever mauto.yaml says of it now
    if name == "id":
        return "the contact's id is the table's key: it has its index"
    if name in COLUMN_FIELDS:
        return (f"a column of the contacts table ({', '.join(COLUMN_FIELDS)}), not one of the fields kept in "
                "`contacts.fields`, which are what `mauto db index` indexes")
    if name not in fields:
        close = difflib.get_close_matches(name, list(fields), n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        return f"not a contact field of mauto.yaml (`contact_fields`, or a built-in one){hint}"
    if drop:
        return None
    if fields[name] == "list":
        return (f"a list: an index serves comparisons of one value (`==`, `<`, `in [...]`), not "
                f"`'x' in contact.{name}`")
    if not fits(name):
        return (f"too long for an index's name (`{index_name(name)}`: PostgreSQL keeps {NAME_LIMIT} bytes of a "
                "name): index a field of at most 48 characters")
    return None


def field_indexes(store: Store, fields: dict[str, Any], names: Iterable[str], *, drop: bool = False
                  ) -> list[IndexChange]:
    """`mauto db index FIELD...`: make the index of each contact field named (for its type in `fields`,
    mauto.yaml's), or with `drop` drop it, and say what was done to each. A name that is not a declared
    field of `contacts.fields` (or, to drop, that has no index either) is a UsageError naming it, and then
    nothing is written."""
    names = list(dict.fromkeys(names))
    with store.guard():
        found = present(store)
    for name in names:
        problem = _field_problem(name, fields, found, drop)
        if problem is not None:
            raise UsageError(f"FIELD `{name}`: {problem}")
    if not drop:
        return apply_changes(store, planned_changes(store, [IndexSpec(name, fields[name]) for name in names]))
    changes = [IndexChange("drop" if index_name(name) in found else "absent", index_name(name), name, FIELD)
               for name in names]
    done = apply_changes(store, [change for change in changes if change.action == "drop"])
    dropped = {change.name: change for change in done}
    return [dropped.get(change.name, change) for change in changes]
