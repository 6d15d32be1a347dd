"""The SQLite store on real files: schema versions, locks, contacts, events, consent, erasure, coupons; what reads
and writes rows runs on a PostgreSQL store too (`any_store`)."""
from __future__ import annotations

import json
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pytest

from mauto.store import Store, StoreError, StoreLocked, address_hash, migrations
from mauto.store.contacts import (
    ContactNotFound,
    contact_state,
    erase,
    export_contacts,
    import_contacts,
    iter_contacts,
    show_contact,
    unsubscribe,
)
from mauto.store.coupons import load_coupons, take_coupon
from mauto.store.events import ingest_events
from mauto.store.sqlite import TABLES

from .conftest import CATALOGUE, FIELDS, NOW, reopen, stored_order, write

CSV_BAD_LINE_7 = """id,email,first_name,birthday
c1,ann@example.com,Ann,1990-01-02
c2,bob@example.com,Bob,1985-05-06
c3,cat@example.com,Cat,
c4,dan@example.com,Dan,1970-12-31
c5,eve@example.com,Eve,2001-02-03
c6,fay@example.com,Fay,1999-13-01
c7,gus@example.com,Gus,1980-07-08
"""


@pytest.fixture
def store(any_store: Store) -> Store:
    """The store's tests that read and write rows run on SQLite and on PostgreSQL (tests/store/conftest.py)."""
    return any_store


def rows(store: Store, table: str) -> list[dict]:
    cursor = store.db.execute(f"SELECT * FROM {table} ORDER BY {stored_order(store, table)}")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def contacts_import(store: Store, path: Path, **options):
    return import_contacts(store, path, fields=FIELDS, zone="Europe/Paris", **options)


def events_ingest(store: Store, path: Path, **options):
    return ingest_events(store, path, catalogue=CATALOGUE, zone="Europe/Paris", **options)


# --- the file ---------------------------------------------------------------------------------

def test_migrations_from_an_empty_file(tmp_path: Path, clock) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with Store(path, clock, create=True) as store:
        assert store.applied == sorted(migrations.MIGRATIONS)
        assert store.version == migrations.latest()
        info = store.info()
        assert info.counts == {"contacts": 0, "events": 0, "coupons": 0, "suppressions": 0, "workflow_versions": 0,
                               "workflows": 0, "enrollments": 0, "messages": 0, "calls": 0, "step_log": 0, "tasks": 0,
                               "segment_members": 0, "timers": 0, "runner_state": 1, "failures": 0, "api_keys": 0,
                               "soft_bounces": 0, "notifications_seen": 0, "split_winners": 0, "message_feedback": 0,
                               "releases": 0, "release_files": 0, "release_blobs": 0, "held_events": 0,
                               "workers": 0}
        assert info.journal_mode == "wal"
        # the key that signs unsubscribe links: the store's own, random, never the simulations' constant
        [(secret,)] = store.db.execute("SELECT value FROM runner_state WHERE key = 'unsubscribe_secret'")
        assert len(secret) >= 40
        assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with Store(path, clock) as store:  # reopening applies nothing
        assert store.applied == []


def test_missing_store_is_not_created_without_init(tmp_path: Path, clock) -> None:
    with pytest.raises(StoreError, match="no store here; create it with `mauto db init`"):
        Store(tmp_path / "absent.db", clock)
    assert not (tmp_path / "absent.db").exists()


def test_older_store_needs_migrate(tmp_path: Path, clock, monkeypatch) -> None:
    path = tmp_path / "old.db"
    with Store(path, clock, create=True):
        pass
    monkeypatch.setitem(migrations.MIGRATIONS, migrations.latest() + 1,
                        lambda db: db.execute("CREATE TABLE later (x)"))
    with pytest.raises(StoreError, match="run `mauto db migrate`"):
        Store(path, clock)
    with Store(path, clock, migrate=True) as store:
        assert store.applied == [migrations.latest()]
        assert store.db["later"].exists()


def test_failed_migration_leaves_the_version_and_tables(tmp_path: Path, clock, monkeypatch) -> None:
    path = tmp_path / "old.db"
    with Store(path, clock, create=True):
        pass
    version = migrations.latest()

    def broken(db):
        db.execute("CREATE TABLE half (x)")
        raise RuntimeError("boom")

    monkeypatch.setitem(migrations.MIGRATIONS, version + 1, broken)
    with pytest.raises(RuntimeError):
        Store(path, clock, migrate=True)
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == version
    assert check.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half'").fetchone()[0] == 0
    check.close()


def test_newer_schema_is_refused_and_the_file_unchanged(tmp_path: Path, clock) -> None:
    path = tmp_path / "newer.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE contacts (id TEXT PRIMARY KEY)")
    connection.execute("PRAGMA user_version = 99")
    connection.commit()
    connection.close()
    before = path.read_bytes()
    for options in ({}, {"migrate": True}, {"create": True}):
        with pytest.raises(StoreError) as raised:
            Store(path, clock, **options)
        assert str(raised.value) == (f"{path}: this store has schema version 99, written by a newer mauto; "
                                     f"this mauto knows versions up to {migrations.latest()}. Upgrade mauto; "
                                     "the file was not changed")
    assert path.read_bytes() == before
    assert not Path(str(path) + "-wal").exists()


def test_not_a_database(tmp_path: Path, clock) -> None:
    path = write(tmp_path / "notes.db", "these are not the tables you are looking for\n" * 20)
    with pytest.raises(StoreError, match="not a mauto store"):
        Store(path, clock)


@pytest.mark.sqlite_only("locks the SQLite file by hand (BEGIN EXCLUSIVE)")
def test_locked_database_gives_a_clear_message(tmp_path: Path, store: Store) -> None:
    source = write(tmp_path / "c.csv", "id,email\nc1,a@example.com\n")
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreLocked) as raised:
            contacts_import(store, source)
        assert str(raised.value) == (f"{store.path}: the store is locked: another mauto (or another program) is "
                                     "using it and did not finish within 0.2s; try again when it has finished")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert contacts_import(store, source).created == 1  # usable again once the other one is done


# --- contacts -----------------------------------------------------------------------------------

def test_csv_bad_date_on_line_7_writes_nothing(tmp_path: Path, store: Store) -> None:
    result = contacts_import(store, write(tmp_path / "contacts.csv", CSV_BAD_LINE_7))
    assert [str(problem) for problem in result.problems.kept] == [
        f"{tmp_path / 'contacts.csv'}:7: field `birthday`: `1999-13-01` is not a date (YYYY-MM-DD)"]
    assert not result.committed
    assert rows(store, "contacts") == [] and rows(store, "events") == []


def test_skip_invalid_imports_good_rows_and_writes_rejects(tmp_path: Path, store: Store) -> None:
    rejects = tmp_path / "rejects.csv"
    result = contacts_import(store, write(tmp_path / "contacts.csv", CSV_BAD_LINE_7), skip_invalid=True,
                             rejects=rejects)
    assert result.committed and result.created == 6
    assert [row["id"] for row in rows(store, "contacts")] == ["c1", "c2", "c3", "c4", "c5", "c7"]
    assert rejects.read_bytes() == (b"id,email,first_name,birthday,_line,_error\r\n"
                                    b"c6,fay@example.com,Fay,1999-13-01,7,field `birthday`: `1999-13-01` is not a "
                                    b"date (YYYY-MM-DD)\r\n")


def test_every_bad_row_is_reported(tmp_path: Path, store: Store) -> None:
    source = write(tmp_path / "c.jsonl", "\n".join([
        '{"id": "c1", "email": "a@example.com"}',
        '{"id": "c2", "shoe_size": 42}',
        'not json',
        '{"email": "x@example.com"}',
        '{"id": "c3", "tier": "platinum"}',
        '{"id": "c4", "email": "nobody"}',
        '{"id": "c5", "score": "lots"}',
    ]) + "\n")
    result = contacts_import(store, source, max_problems=5)
    assert [(p.line, p.message) for p in result.problems.kept] == [
        (2, "unknown contact field `shoe_size`; declare it under `contact_fields` in mauto.yaml"),
        (3, "invalid JSON: Expecting value"),
        (4, "row has no `id`; import by email with --key email"),
        (5, "field `tier`: must be one of bronze, gold, not `platinum`"),
        (6, "field `email`: `nobody` is not an email address"),
    ]
    assert result.problems.count == 6
    assert rows(store, "contacts") == []


def test_duplicate_id_in_one_file(tmp_path: Path, store: Store) -> None:
    source = write(tmp_path / "c.csv", "id,first_name\nc1,Ann\nc2,Bob\nc1,Annie\n")
    result = contacts_import(store, source, batch_size=2)  # the duplicate arrives in a later batch
    assert [(p.line, p.message) for p in result.problems.kept] == [
        (4, "duplicate id `c1` in this file (first at line 2)")]
    assert rows(store, "contacts") == []
    same_batch = contacts_import(store, source)
    assert [(p.line, p.message) for p in same_batch.problems.kept] == [
        (4, "duplicate id `c1` in this file (first at line 2)")]


def test_created_and_updated_events_carry_the_changes(tmp_path: Path, store: Store, clock) -> None:
    contacts_import(store, write(tmp_path / "a.yaml", "- {id: c1, email: Ann@Example.com, first_name: Ann, "
                                                      "tags: [vip], birthday: '1990-01-02'}\n"))
    clock.moment = NOW + timedelta(hours=1)
    result = contacts_import(store, write(tmp_path / "b.jsonl",
                                          '{"id": "c1", "first_name": "Annie", "tags": ["vip"], "score": 3}\n'))
    assert (result.created, result.updated, result.unchanged) == (0, 1, 0)
    again = contacts_import(store, tmp_path / "b.jsonl")
    assert (again.updated, again.unchanged) == (0, 1)
    events = [(e["name"], e["at"], json.loads(e["properties"])) for e in rows(store, "events")]
    assert events == [
        ("contact_created", "2026-11-23T12:00:00.000000+00:00",
         {"fields": {"email_consent": False, "sms_consent": False, "created_at": "2026-11-23T12:00:00.000000+00:00",
                     "email": "ann@example.com", "first_name": "Ann", "tags": ["vip"], "birthday": "1990-01-02"}}),
        ("contact_updated", "2026-11-23T13:00:00.000000+00:00",
         {"changed": ["first_name", "score"], "previous": {"first_name": "Ann", "score": None}}),
    ]
    contact = rows(store, "contacts")[0]
    assert json.loads(contact["fields"]) == {"birthday": "1990-01-02", "first_name": "Annie", "score": 3,
                                             "tags": ["vip"]}
    assert (contact["created_at"], contact["updated_at"]) == ("2026-11-23T12:00:00.000000+00:00",
                                                              "2026-11-23T13:00:00.000000+00:00")


def test_import_by_email(tmp_path: Path, store: Store) -> None:
    contacts_import(store, write(tmp_path / "a.csv", "id,email\nc1,ann@example.com\n"))
    result = contacts_import(store, write(tmp_path / "b.csv", "email,first_name\nANN@example.com,Ann\n"
                                                              "new@example.com,Neo\n"), key="email")
    assert (result.created, result.updated) == (1, 1)
    ids = {row["email"]: row["id"] for row in rows(store, "contacts")}
    assert ids["ann@example.com"] == "c1" and ids["new@example.com"].startswith("c-")


def test_a_null_created_at_is_a_row_error_not_a_sqlite_one(tmp_path: Path, store: Store) -> None:
    contacts_import(store, write(tmp_path / "a.csv", "id,email\nc1,ann@example.com\n"))
    result = contacts_import(store, write(tmp_path / "b.jsonl", '{"id": "c2", "email": "bob@example.com"}\n'
                                                                '{"id": "c1", "created_at": null}\n'
                                                                '{"id": "c3", "created_at": null}\n'))
    assert not result.committed
    cleared = ("`created_at` cannot be cleared: leave it out to keep the stored one (a new contact gets the time "
               "of the import)")
    assert [(problem.line, problem.message) for problem in result.problems.kept] == [(2, cleared), (3, cleared)]
    assert [row["id"] for row in rows(store, "contacts")] == ["c1"]  # nothing of b.jsonl written
    empty_cell = contacts_import(store, write(tmp_path / "c.csv", "id,email,created_at\nc4,dan@example.com,\n"))
    assert empty_cell.created == 1  # an empty CSV cell is no value: the import time


def test_contact_state_has_typed_fields_and_events(tmp_path: Path, store: Store) -> None:
    contacts_import(store, write(tmp_path / "a.csv", "id,birthday,last_order_at,email_consent\n"
                                                     "c1,1990-01-02,2026-11-01T10:00:00,yes\n"))
    events_ingest(store, write(tmp_path / "e.jsonl",
                               '{"contact": "c1", "event": "order_placed", "at": "2026-11-20T10:00:00Z", '
                               '"total": "9.5"}\n'))
    state = contact_state(store, "c1", FIELDS, "Europe/Paris")
    assert state.fields["birthday"].isoformat() == "1990-01-02"
    assert state.fields["last_order_at"].isoformat() == "2026-11-01T09:00:00+00:00"  # 10:00 in Paris
    assert state.fields["email_consent"] is True
    assert [(e.name, e.at.isoformat()) for e in state.events] == [  # in time order
        ("order_placed", "2026-11-20T10:00:00+00:00"), ("contact_created", "2026-11-23T12:00:00+00:00")]
    assert state.events[0].properties == {"total": 9.5}


def test_list_where_and_export(tmp_path: Path, store: Store) -> None:
    contacts_import(store, write(tmp_path / "a.csv", "id,email,tags,score\nc1,a@example.com,vip;new,5\n"
                                                     "c2,b@example.com,,1\nc3,c@example.com,vip,0\n"))
    found = [c["id"] for c in iter_contacts(store, FIELDS, "UTC", where="'vip' in contact.tags and contact.score < 5")]
    assert found == ["c3"]
    assert [c["id"] for c in iter_contacts(store, FIELDS, "UTC", limit=2)] == ["c1", "c2"]
    out = tmp_path / "out.csv"
    with out.open("w", newline="") as handle:
        assert export_contacts(store, handle, "csv", {"id": "string", "email": "string", "tags": "list",
                                                      "score": "integer"}) == 3
    assert out.read_text().splitlines() == ["id,email,tags,score,updated_at",
                                            "c1,a@example.com,vip;new,5,2026-11-23T12:00:00.000000+00:00",
                                            "c2,b@example.com,,1,2026-11-23T12:00:00.000000+00:00",
                                            "c3,c@example.com,vip,0,2026-11-23T12:00:00.000000+00:00"]


@pytest.mark.sqlite_only("reads the statements SQLite's connection traces (set_trace_callback)")
def test_list_where_reads_events_only_for_the_event_functions(tmp_path: Path, store: Store) -> None:
    contacts_import(store, write(tmp_path / "a.csv", "id,tags,lists\nc1,vip,news\nc2,,\nc3,vip,\n"))
    events_ingest(store, write(tmp_path / "e.jsonl",
                               '{"contact": "c2", "event": "order_placed", "at": "2026-11-20T10:00:00Z", "total": 9}\n'
                               '{"contact": "c3", "event": "order_placed", "at": "2026-09-20T10:00:00Z", '
                               '"total": 9}\n'))
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)

    def listed(where: str) -> list[str]:
        statements.clear()
        return [c["id"] for c in iter_contacts(store, FIELDS, "UTC", where=where, now=NOW)]

    assert listed("'vip' in contact.tags or in_list('news') or days_since(contact.created_at) > 400") == ["c1", "c3"]
    assert not [sql for sql in statements if "events" in sql]  # a filter on fields reads no events
    assert listed("has_event('order_placed', within='30d')") == ["c2"]
    # compiled to SQL (mauto.store.audience_sql): one query, no events read into Python
    assert [sql for sql in statements if "FROM events" in sql and not sql.startswith("SELECT c.*")] == []
    assert any("c.id IN (SELECT e.contact FROM events AS e" in sql for sql in statements)
    assert listed("event_count(contact.first_name or 'order_placed') == 1") == ["c2", "c3"]  # a name not known
    assert [sql for sql in statements if "FROM events" in sql] == [  # beforehand: every event is read
        "SELECT contact, id, name, at, properties FROM events ORDER BY contact, at, seq"]
    store.db.conn.set_trace_callback(None)


# --- the import's fast paths agree with the general ones -------------------------------------------

CONVERTER_CASES = {
    "string": ["Ann", "", " x ", 42, 4.5, True, None, ["a"]],
    "integer": ["42", " 42 ", "-7", "+3", "٣", "1_000", "4.0", "", "x", 42, True, 4.5, None, "²"],
    "number": ["4.5", " 4.5 ", "1e3", "nan", "x", "", 4, 4.5, True, None],
    "boolean": ["true", " Yes ", "NO", "0", "1", "maybe", "", True, False, 1, 0, 2, None],
    "date": ["1990-01-02", " 1990-01-02 ", "19900102", "1990-13-01", "1990-02-30", "", "x", 19900102, None,
             date(1990, 1, 2)],
    "datetime": ["2026-11-01T10:00:00", "2026-11-01T10:00:00Z", "2026-11-01", "soon", None],
    "list": ["a;b", " a ; ;b ", "", ";", ["x", 1], 5, None],
    "enum": ["gold", "bronze", "platinum", "", 1, True, None, ["gold"]],
}


@pytest.mark.parametrize("declared", sorted(CONVERTER_CASES))
def test_field_converters_agree_with_the_general_conversion(declared: str) -> None:
    from mauto.store.contacts import _slow_converter, field_converter

    typed = {"enum": ["bronze", "gold", 1]}.get(declared, declared)
    for name in (["email", "phone"] if declared == "string" else []) + ["some_field"]:
        fast, general = field_converter(name, typed, "Europe/Paris"), _slow_converter(name, typed, "Europe/Paris")
        for value in CONVERTER_CASES[declared] + (["Ann@Example.COM ", "nobody", "@"] if name == "email" else []):
            outcomes = []
            for convert in (fast, general):
                try:
                    outcomes.append(("value", convert(value)))
                except ValueError as error:
                    outcomes.append(("error", str(error)))
            assert repr(outcomes[0]) == repr(outcomes[1]), (name, declared, value)  # repr: nan is not nan
            assert type(outcomes[0][1]) is type(outcomes[1][1]), (name, declared, value)


def test_id_converter_and_unknown_fields(tmp_path: Path, store: Store) -> None:
    from mauto.store.contacts import ContactChecker

    check = ContactChecker(FIELDS, "UTC", "id")
    assert check({"id": " c1 ", "score": "3"}) == {"id": "c1", "score": 3}
    assert check({"id": 7}) == {"id": "7"}
    for bad in ("  ", "", None, True, ["c1"]):
        with pytest.raises(ValueError, match="^`id` must be a non-empty text or number$"):
            check({"id": bad})
    with pytest.raises(ValueError, match="^unknown contact field `shoe_size`; declare it under `contact_fields` in "
                                         "mauto.yaml$"):
        check({"id": "c1", "shoe_size": "42"})
    assert "shoe_size" not in check.converters
    with pytest.raises(ValueError, match="^row has no `id`; import by email with --key email$"):
        check({"email": "a@example.com"})


@pytest.mark.parametrize("text", [
    "id,email,first_name\nc1,a@example.com,Ann\nc2,,Bob\n",
    "\ufeffid,first_name\nc1,Ann\n",  # Excel's byte order mark
    "id,first_name,tags\nc1,Ann\nc2,Bob,vip;new,,\n",  # short rows, and empty cells past the header
    'id,first_name\nc1,"Ann\nMarie"\nc2,"Bob ""B"""\n',  # a quoted cell over two lines
    "id,first_name\nc1,Ann\n\n\nc2,Bob\n",  # blank lines
    "id\n",
    "",
])
def test_csv_rows_are_read_as_datafiles_reads_them(tmp_path: Path, text: str) -> None:
    from mauto.datafiles import read_rows
    from mauto.store.rows import rows as import_rows

    source = tmp_path / "c.csv"
    source.write_bytes(text.encode("utf-8"))
    assert list(import_rows(source, "csv")) == list(read_rows(source, "csv"))


def test_csv_bad_row_after_blank_lines_and_a_long_cell_keeps_its_line(tmp_path: Path, store: Store) -> None:
    source = write(tmp_path / "c.csv", 'id,first_name,birthday\nc1,"Ann\nMarie",1990-01-02\n\n\nc2,Bob,1990-02-30\n'
                                       "c3,Cat,\n")
    result = contacts_import(store, source)
    assert [(p.line, p.message) for p in result.problems.kept] == [
        (6, "field `birthday`: `1990-02-30` is not a date (YYYY-MM-DD)")]
    assert not result.committed and rows(store, "contacts") == []
    rejects = tmp_path / "bad.csv"
    result = contacts_import(store, source, skip_invalid=True, rejects=rejects)
    assert (result.committed, result.created) == (True, 2)
    assert rejects.read_text().splitlines()[1] == "c2,Bob,1990-02-30,6,field `birthday`: `1990-02-30` is not a date " \
                                                  "(YYYY-MM-DD)"


def test_created_event_has_every_field_given(tmp_path: Path, store: Store) -> None:
    from mauto.store.contacts import _contact_row, _created_properties

    contacts_import(store, write(tmp_path / "a.jsonl", "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in [
        {"id": "c1", "email": " Zoé@Example.com", "phone": "+33 6 12 34 56 78", "email_consent": "yes",
         "first_name": 'A "q"\n',
         "tags": ["vip"], "tier": "gold", "last_order_at": "2026-11-01T10:00:00"},
        {"id": "c2", "email_consent": None, "score": None, "first_name": "Bo"},
        {"id": "c3"},
    ])))
    events = {e["contact"]: json.loads(e["properties"]) for e in rows(store, "events")}
    assert events == {
        "c1": {"fields": {"email_consent": True, "sms_consent": False, "created_at": "2026-11-23T12:00:00.000000+00:00",
                          "email": "zoé@example.com", "phone": "+33612345678", "first_name": 'A "q"\n', "tags": ["vip"],
                          "tier": "gold", "last_order_at": "2026-11-01T09:00:00.000000+00:00"}},
        "c2": {"fields": {"sms_consent": False, "created_at": "2026-11-23T12:00:00.000000+00:00", "first_name": "Bo"}},
        "c3": {"fields": {"email_consent": False, "sms_consent": False,
                          "created_at": "2026-11-23T12:00:00.000000+00:00"}},
    }
    for record in ({"id": "x", "email_consent": None, "sms_consent": None, "created_at": None},
                   {"id": "x", "email_consent": None, "sms_consent": None, "created_at": None, "score": 1},
                   {"id": "x", "email_consent": 1, "sms_consent": False, "created_at": "t", "phone": 33}):
        _, fields_json = _contact_row(record, "t")
        assert json.loads(_created_properties(record, fields_json)) == {
            "fields": {name: value for name, value in record.items() if name != "id" and value is not None}}


# --- events ---------------------------------------------------------------------------------------

@pytest.fixture
def two_contacts(tmp_path: Path, store: Store) -> Store:
    contacts_import(store, write(tmp_path / "c.csv", "id,email,phone\nc1,a@example.com,+33 6 12 34 56 78\n"
                                                     "c2,b@example.com,\n"))
    return store


def test_event_for_unknown_contact(tmp_path: Path, two_contacts: Store) -> None:
    source = write(tmp_path / "e.jsonl",
                   '{"contact": "c1", "event": "signed_up", "at": "2026-11-20T10:00:00Z"}\n'
                   '{"contact": "ghost", "event": "signed_up", "at": "2026-11-20T10:00:00Z"}\n'
                   '{"contact": "c2", "event": "signed_up", "at": "yesterday"}\n'
                   '{"contact": "c2", "event": "unheard_of", "at": "2026-11-20T10:00:00Z"}\n')
    before = len(rows(two_contacts, "events"))
    result = events_ingest(two_contacts, source)
    assert [(p.line, p.message) for p in result.problems.kept] == [
        (2, "unknown contact `ghost`"),
        (3, "`at`: `yesterday` is not an ISO 8601 time (2026-03-02T10:00:00+01:00) or a time relative to the "
            "start (+2h, -40d)"),
        (4, "unknown event `unheard_of`; add it to `events` in mauto.yaml"),
    ]
    assert not result.committed and len(rows(two_contacts, "events")) == before
    partial = events_ingest(two_contacts, source, skip_invalid=True, rejects=tmp_path / "bad.jsonl")
    assert partial.stored == 1
    assert [json.loads(line)["_line"] for line in (tmp_path / "bad.jsonl").read_text().splitlines()] == [2, 3, 4]


def test_the_same_event_id_twice_is_stored_once(tmp_path: Path, two_contacts: Store) -> None:
    line = '{"id": "evt-1", "contact": "c1", "event": "order_placed", "at": "2026-11-20T10:00:00+01:00", "total": 20}\n'
    source = write(tmp_path / "e.jsonl", line + line)
    first = events_ingest(two_contacts, source)
    assert (first.stored, first.duplicates) == (1, 1)
    second = events_ingest(two_contacts, source)
    assert (second.stored, second.duplicates) == (0, 2)
    stored = [e for e in rows(two_contacts, "events") if e["id"] == "evt-1"]
    assert len(stored) == 1
    assert (stored[0]["at"], json.loads(stored[0]["properties"])) == ("2026-11-20T09:00:00.000000+00:00",
                                                                      {"total": 20})


# --- consent, erasure ---------------------------------------------------------------------------------

def test_unsubscribe(two_contacts: Store) -> None:
    store = two_contacts
    store.db.execute("UPDATE contacts SET email_consent = 1")
    done = unsubscribe(store, "c1", "email")
    assert done["had_consent"] and done["newly_suppressed"]
    assert rows(store, "contacts")[0]["email_consent"] == 0
    assert store.is_suppressed(" A@Example.com ", "email") and not store.is_suppressed("a@example.com", "sms")
    assert rows(store, "events")[-1]["name"] == "unsubscribed"
    unsubscribe(store, "c1", "sms")
    assert store.is_suppressed("+33612345678", "sms")
    with pytest.raises(ContactNotFound):
        unsubscribe(store, "ghost")


def test_erase_keeps_the_hash_and_counts_not_the_person(tmp_path: Path, two_contacts: Store) -> None:
    store = two_contacts
    events_ingest(store, write(tmp_path / "e.jsonl",
                               '{"contact": "c1", "event": "signed_up", "at": "2026-11-20T10:00:00Z", '
                               '"source": "ads-spring-promo"}\n'))
    load_coupons(store, "welcome", write(tmp_path / "codes.txt", "A1\n"))
    assert take_coupon(store, "welcome", "c1", NOW) == "A1"
    done = erase(store, "c1")
    assert done["suppressed"] == ["email", "sms"] and done["events_kept"] == 2
    anonymous = done["anonymous_id"]
    contact = next(row for row in rows(store, "contacts") if row["id"] == anonymous)
    assert (contact["email"], contact["phone"], contact["fields"], contact["erased_at"]) == (
        None, None, "{}", "2026-11-23T12:00:00.000000+00:00")
    if store.dialect == "sqlite":
        dump = "\n".join(store.db.conn.iterdump())
    else:  # every row of every table (PostgreSQL's files keep dead rows until VACUUM: not read here)
        dump = "\n".join(repr(row) for table in TABLES for row in store.db.execute(f'SELECT * FROM "{table}"'))
    assert "'c1'" not in dump and '"c1"' not in dump
    # nor in the bytes (a value long enough not to turn up by chance in a page of other data)
    for leftover in (b"a@example.com", b"+33 6 12 34 56 78", b"33612345678", b"ads-spring-promo"):
        assert leftover.decode() not in dump
        if store.dialect == "sqlite":
            assert leftover not in store.path.read_bytes()
            assert leftover not in Path(str(store.path) + "-wal").read_bytes()
    assert [(e["name"], e["properties"]) for e in rows(store, "events") if e["contact"] == anonymous] == [
        ("contact_created", "{}"), ("signed_up", "{}")]
    assert {(row["address_hash"], row["channel"], row["reason"]) for row in rows(store, "suppressions")} == {
        (address_hash("a@example.com", "email"), "email", "erased"),
        (address_hash("+33612345678", "sms"), "sms", "erased")}
    assert rows(store, "coupons")[0]["assigned_to"] == anonymous  # the code stays handed out
    with pytest.raises(ContactNotFound):
        show_contact(store, "c1")
    # Re-imported later, the address is still refused by the suppression list.
    contacts_import(store, write(tmp_path / "again.csv", "id,email\nc9,a@example.com\n"))
    assert store.is_suppressed("a@example.com", "email")


# --- coupons ----------------------------------------------------------------------------------------------

def test_coupons_are_handed_out_once(tmp_path: Path, two_contacts: Store) -> None:
    store = two_contacts
    assert load_coupons(store, "xmas", write(tmp_path / "codes.csv", "code,value\nX1,10\nX2,10\n")).added == 2
    assert take_coupon(store, "xmas", "c1", NOW) == "X1"
    reloaded = load_coupons(store, "xmas", write(tmp_path / "more.txt", "X1\nX2\nX3\n"))
    assert (reloaded.added, reloaded.read) == (1, 3)
    assert take_coupon(store, "xmas", "c2", NOW) == "X2"
    assert take_coupon(store, "xmas", "c2", NOW) == "X3"
    assert take_coupon(store, "xmas", "c1", NOW) is None
    assert take_coupon(store, "empty", "c1", NOW) is None
    assigned = {row["code"]: row["assigned_to"] for row in rows(store, "coupons")}
    assert assigned == {"X1": "c1", "X2": "c2", "X3": "c2"}


def test_coupons_from_two_connections_never_collide(tmp_path: Path, two_contacts: Store, clock) -> None:
    store = two_contacts
    load_coupons(store, "p", write(tmp_path / "codes.txt", "\n".join(f"K{i}" for i in range(20)) + "\n"))
    with reopen(store, now=clock, timeout=5) as other:
        taken = [take_coupon(store if i % 2 else other, "p", "c1", NOW) for i in range(21)]
    assert taken[-1] is None and len(set(taken[:-1])) == 20


# --- what recipients and providers say (mauto.store.feedback), on both stores ---------------------------------

def test_feedback_finds_a_lower_cased_ref_and_counts_soft_bounces_as_sqlite_does(daemon) -> None:
    from datetime import datetime

    from mauto.feedback import COMPLAINT, SOFT_BOUNCE, Feedback
    from mauto.store.feedback import record
    from tests.daemon.harness import T0

    daemon.event("ana", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1))
    [(ref,)] = daemon.rows("SELECT ref FROM messages WHERE contact = 'ana'")
    assert ref != ref.lower()
    store = daemon.store
    with store.transaction():  # a VERP address lower-cased on its way back still names its message
        found = record(store, Feedback(COMPLAINT, "postmark", ref=ref.lower(), id="c1"), T0 + timedelta(hours=1))
    assert (found.matched, found.suppressed, found.event) == (True, True, "email_complained")
    day = datetime.fromisoformat("2026-12-02T08:00:00+00:00")
    suppressed = []
    for offset, notification in ((0, "s1"), (2, "s2"), (1, "s3")):  # the third arrives late, dated before the second
        with store.transaction():
            done = record(store, Feedback(SOFT_BOUNCE, "mailgun", address="ben@example.com", id=notification,
                                          at=day + timedelta(days=offset)), T0 + timedelta(days=3))
        suppressed.append(done.suppressed)
    assert suppressed == [False, False, True]
    assert daemon.rows("SELECT count, first_at, last_at FROM soft_bounces") == [
        (3, "2026-12-02T08:00:00.000000+00:00", "2026-12-04T08:00:00.000000+00:00")]  # the latest stays last
    assert store.is_suppressed("ben@example.com", "email") and store.is_suppressed("ana@example.com", "email")
