"""The import's pieces that the split of issue 11 separated: one converter per declared type (and the short
path each takes for the usual values), the id's own converter, and the matching of rows to stored contacts by
email. Real SQLite files in tmp_path, and PostgreSQL databases."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

import mauto.store.contacts as contacts_module
from mauto.store import Store
from mauto.store.contacts import field_converter, import_contacts

from .conftest import FIELDS, stored_order, write

# A usual value of each declared type, as a CSV or a JSON file gives it, and what is stored.
USUAL = [
    ("string", "Ann", "Ann"),
    ("integer", "42", 42),
    ("integer", 42, 42),
    ("number", "4.5", 4.5),
    ("number", 4.5, 4.5),
    ("number", 4, 4),
    ("boolean", " Yes ", True),
    ("boolean", False, False),
    ("date", "1990-01-02", "1990-01-02"),
    ("list", " a ; ;b ", ["a", "b"]),
    ({"enum": ["bronze", "gold"]}, "gold", "gold"),
]


@pytest.mark.parametrize("declared, value, stored", USUAL)
def test_the_usual_value_of_each_type_takes_the_short_path(monkeypatch, declared: Any, value: Any,
                                                           stored: Any) -> None:
    # The import's speed rests on these never reaching the general coercion (docs/performance.md, "Store").
    reached: list[Any] = []
    real = contacts_module.coerce

    def spy(*arguments: Any) -> Any:
        reached.append(arguments)
        return real(*arguments)

    monkeypatch.setattr(contacts_module, "coerce", spy)
    converted = field_converter("some_field", declared, "Europe/Paris")(value)
    assert (converted, type(converted)) == (stored, type(stored))
    assert reached == []
    with pytest.raises(ValueError, match="^field `some_field`: "):
        field_converter("some_field", declared, "Europe/Paris")(["a"] if declared != "list" else 5)
    assert reached, "a value off the short path goes the general way, which words the error"


def test_datetime_and_unknown_types_go_the_general_way(monkeypatch) -> None:
    reached: list[Any] = []
    real = contacts_module.coerce
    monkeypatch.setattr(contacts_module, "coerce", lambda *arguments: reached.append(arguments) or real(*arguments))
    assert field_converter("last_order_at", "datetime", "Europe/Paris")("2026-11-01T10:00:00") == \
        "2026-11-01T09:00:00.000000+00:00"
    assert field_converter("notes", "object", "UTC")({"a": [1]}) == {"a": [1]}  # a type mauto does not know
    assert field_converter("notes", ["odd"], "UTC")("x") == "x"  # nor a declaration it cannot look up
    assert len(reached) == 3


def test_an_id_beginning_as_erased_ones_do_is_refused() -> None:
    convert = field_converter("id", "string", "UTC")
    with pytest.raises(ValueError, match="^field `id`: ids beginning with `erased-` are kept for erased contacts$"):
        convert("erased-1")
    with pytest.raises(ValueError, match=r"^field `id`: `c\\x07` contains a control character \(U\+0007\)$"):
        convert("c\x07")
    assert (convert(" c1 "), convert(7), convert(7.5), convert("erasedx")) == ("c1", "7", "7.5", "erasedx")


@pytest.fixture
def store(any_store: Store) -> Store:
    """The import's tests run on SQLite and on PostgreSQL (tests/store/conftest.py)."""
    return any_store


def rows(store: Store, table: str) -> list[dict]:
    cursor = store.db.execute(f"SELECT * FROM {table} ORDER BY {stored_order(store, table)}")
    names = [description[0] for description in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


@pytest.mark.parametrize("batch_size", [1, 2000])
def test_import_by_email_matches_each_row_to_one_contact_or_says_why_not(tmp_path: Path, store: Store,
                                                                         batch_size: int) -> None:
    import_contacts(store, write(tmp_path / "seed.csv", "id,email,first_name\ns1,shared@example.com,A\n"
                                                        "s2,shared@example.com,B\ns3,three@example.com,C\n"),
                    fields=FIELDS, zone="UTC")
    source = write(tmp_path / "b.jsonl", "".join(json.dumps(row) + "\n" for row in [
        {"email": "shared@example.com", "first_name": "X"},
        {"email": "three@example.com", "id": "s1"},
        {"email": "new@example.com", "id": "s3"},
        {"email": "new2@example.com", "first_name": "N"},
        {"email": "new3@example.com", "id": "n9"},
        {"email": "THREE@example.com", "first_name": "C3"},
    ]))
    result = import_contacts(store, source, fields=FIELDS, zone="UTC", key="email", skip_invalid=True,
                             batch_size=batch_size)
    assert [(problem.line, problem.message) for problem in result.problems.kept] == [
        (1, "2 contacts have the email `shared@example.com`; import them by id"),
        (2, "the email `three@example.com` belongs to contact `s3`, not `s1`"),
        (3, "contact `s3` exists with another email; import with --key id to change an email"),
        (6, "duplicate email `three@example.com` in this file (first at line 2)"),
    ]
    assert (result.read, result.created, result.updated, result.unchanged, result.committed) == (6, 2, 0, 0, True)
    stored = {row["email"]: (row["id"], json.loads(row["fields"])) for row in rows(store, "contacts")[3:]}
    assert stored["new3@example.com"] == ("n9", {})
    new_id, fields = stored["new2@example.com"]
    assert new_id.startswith("c-") and len(new_id) == 18 and fields == {"first_name": "N"}
    assert [(event["contact"], event["name"]) for event in rows(store, "events")[3:]] == [
        (new_id, "contact_created"), ("n9", "contact_created")]


def test_import_by_email_updates_the_contact_without_an_id_in_the_row(tmp_path: Path, store: Store) -> None:
    import_contacts(store, write(tmp_path / "seed.csv", "id,email,first_name\ns3,three@example.com,C\n"),
                    fields=FIELDS, zone="UTC")
    result = import_contacts(store, write(tmp_path / "b.csv", "email,first_name,birthday\n"
                                                              "Three@Example.com,C,\nnobody@example.com,,\n"
                                                              "three@example.com,Cat,1990-01-02\n"),
                             fields=FIELDS, zone="UTC", key="email", batch_size=1)
    assert [(problem.line, problem.message) for problem in result.problems.kept] == [
        (4, "duplicate email `three@example.com` in this file (first at line 2)")]
    assert not result.committed
    result = import_contacts(store, write(tmp_path / "c.csv", "email,first_name,birthday\n"
                                                              "Three@Example.com,Cat,1990-01-02\n"
                                                              "other@example.com,,\n"),
                             fields=FIELDS, zone="UTC", key="email")
    assert (result.created, result.updated, result.unchanged, result.committed) == (1, 1, 0, True)
    contact = rows(store, "contacts")[0]
    assert (contact["id"], json.loads(contact["fields"])) == ("s3", {"birthday": "1990-01-02", "first_name": "Cat"})
    assert json.loads(rows(store, "events")[1]["properties"]) == {
        "changed": ["first_name", "birthday"], "previous": {"first_name": "C", "birthday": None}}
    again = import_contacts(store, write(tmp_path / "d.csv", "email,first_name\nthree@example.com,Cat\n"),
                            fields=FIELDS, zone="UTC", key="email")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1)


def test_a_bad_rows_notices_are_not_kept(tmp_path: Path, store: Store) -> None:
    # The row's first field is read with a notice, a later one is wrong: the row is refused, its notice dropped.
    source = write(tmp_path / "c.csv", "id,last_order_at,birthday\n"
                                       "c1,2026-03-29T02:30:00,1990-02-30\n"
                                       "c2,2026-03-29T02:30:00,\n")
    result = import_contacts(store, source, fields=FIELDS, zone="Europe/Paris", skip_invalid=True)
    assert [(problem.line, problem.message) for problem in result.problems.kept] == [
        (2, "field `birthday`: `1990-02-30` is not a date (YYYY-MM-DD)")]
    assert [(notice.line, notice.message) for notice in result.notices] == [
        (3, "field `last_order_at`: 2026-03-29T02:30:00 does not exist in Europe/Paris (clocks went forward); "
            "taken as 2026-03-29T03:30:00+02:00")]
    assert [row["id"] for row in rows(store, "contacts")] == ["c2"]


def test_converters_are_unchanged_for_values_of_the_wrong_kind() -> None:
    # Each type's short path hands anything else to the general way: the errors are its, word for word.
    cases = [
        ("string", ["a"], "field `f`: must be a text, not a list"),
        ("string", {"a": 1}, "field `f`: must be a text, not a mapping"),
        ("integer", True, "field `f`: must be an integer, not `True`"),
        ("integer", "4.0", "field `f`: must be an integer, not `4.0`"),
        ("integer", "9" * 19, f"field `f`: `{'9' * 19}` is outside the integers mauto handles (64 bits: "
                              "-9223372036854775808 to 9223372036854775807)"),
        ("number", False, "field `f`: must be a number, not `False`"),
        ("number", "nan", "field `f`: must be a finite number, not `nan`"),
        ("boolean", 2, "field `f`: must be true or false, not `2`"),
        ("date", date(999, 1, 1), "field `f`: `0999-01-01` is outside the dates mauto handles (years 1000 to 8999)"),
        ("datetime", "soon", "field `f`: `soon` is not a date-time (2026-03-02T10:00:00+01:00)"),
        ("list", 5, "field `f`: must be a list, not `5`"),
        ({"enum": ["bronze", "gold", 1]}, "platinum", "field `f`: must be one of bronze, gold, 1, not `platinum`"),
    ]
    for declared, value, message in cases:
        with pytest.raises(ValueError) as raised:
            field_converter("f", declared, "UTC")(value)
        assert str(raised.value) == message, (declared, value)


def test_an_id_with_spaces_before_the_erased_prefix_is_refused_too() -> None:
    # " erased-x" was trimmed to "erased-x" and stored: an id only erasure may make.
    convert = field_converter("id", "string", "UTC")
    with pytest.raises(ValueError, match="^field `id`: ids beginning with `erased-` are kept for erased contacts$"):
        convert(" erased-x")


def test_an_id_longer_than_an_index_takes_is_refused_on_both_stores() -> None:
    # PostgreSQL's primary key index takes 2,704 bytes a row: a longer id failed the whole import there, as a
    # store failure; SQLite took it. One limit for both, said at the row.
    convert = field_converter("id", "string", "UTC")
    assert convert("x" * 500) == "x" * 500
    with pytest.raises(ValueError, match="^field `id`: `x{20}.*` is 501 characters long; at most 500$"):
        convert("x" * 501)


@pytest.mark.parametrize("batch_size", [1, 2000])
def test_two_new_rows_giving_one_id_by_email_is_a_row_error_whatever_the_batches(tmp_path: Path, store: Store,
                                                                                  batch_size: int) -> None:
    # In one batch both were inserted and SQLite refused the second: "UNIQUE constraint failed", no line.
    source = write(tmp_path / "b.jsonl", "".join(json.dumps(row) + "\n" for row in [
        {"email": "a@example.com", "id": "z"}, {"email": "b@example.com", "id": "z"}]))
    result = import_contacts(store, source, fields=FIELDS, zone="UTC", key="email", skip_invalid=True,
                             batch_size=batch_size)
    assert [(problem.line, problem.message) for problem in result.problems.kept] == [
        (2, "contact `z` exists with another email; import with --key id to change an email")]
    assert (result.created, result.committed) == (1, True)
    assert [(row["id"], row["email"]) for row in rows(store, "contacts")] == [("z", "a@example.com")]
