"""Values coming into the store are checked and put in one form: addresses, phone numbers, text, numbers, zones,
times; a local time that does not exist is taken and said. Real SQLite files in tmp_path, and PostgreSQL
databases."""
from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from mauto.datafiles import coerce
from mauto.limits import LimitError
from mauto.store import Store
from mauto.store.contacts import ContactChecker, contact_state, erase, import_contacts, typed_fields, unsubscribe
from mauto.store.events import check_event, ingest_events

from .conftest import CATALOGUE, write

FIELDS = {"id": "string", "email": "string", "phone": "string", "timezone": "string", "score": "integer",
          "tags": "list", "email_consent": "boolean", "sms_consent": "boolean", "created_at": "datetime",
          "first_name": "string", "total": "number", "birthday": "date", "last_order_at": "datetime"}


@pytest.fixture
def store(any_store: Store) -> Store:
    """The values' tests run on SQLite and on PostgreSQL (tests/store/conftest.py)."""
    return any_store


def contacts_import(store: Store, path: Path, **options):
    return import_contacts(store, path, fields=FIELDS, zone="Europe/Paris", **options)


def contacts(store: Store) -> dict[str, dict]:
    cursor = store.db.execute("SELECT id, email, phone, fields FROM contacts WHERE erased_at IS NULL ORDER BY id")
    return {row[0]: {"email": row[1], "phone": row[2], **json.loads(row[3])} for row in cursor}


def problems(result) -> list[tuple[int, str]]:
    return [(problem.line, problem.message) for problem in result.problems.kept]


def jsonl(path: Path, *rows: dict) -> Path:
    return write(path, "".join(json.dumps(row) + "\n" for row in rows))  # ASCII JSON: lone surrogates survive


# --- addresses in one form ----------------------------------------------------------------------------------


def test_emails_and_phones_are_stored_normalised(tmp_path: Path, store: Store) -> None:
    result = contacts_import(store, write(tmp_path / "c.csv", "id,email,phone\n"
                                                              "c1,Ann@Example.COM,+33 6 12 34 56 78\n"
                                                              "c2,bob@XN--EXMPLE-CUA.COM,0033612345679\n"
                                                              "c3, Cat@Exämple.com ,06 12 34 56 80\n"),
                             phone_region="FR")
    assert (problems(result), result.created) == ([], 3)
    assert {cid: (row["email"], row["phone"]) for cid, row in contacts(store).items()} == {
        "c1": ("ann@example.com", "+33612345678"), "c2": ("bob@exämple.com", "+33612345679"),
        "c3": ("cat@exämple.com", "+33612345680")}


def test_a_bad_address_is_a_row_error_with_its_line_and_field(tmp_path: Path, store: Store) -> None:
    source = write(tmp_path / "c.csv", "id,email,phone\n"
                                       "c1,ann@example.com,+33612345678\n"
                                       '"c2","a@x.com, b@y.com",\n'
                                       "c3,Jo <jo@x.com>,\n"
                                       "c4,,06 12 34 56 78\n"
                                       "c5,,+33 6\n"
                                       '"c6","a@x.com\r\nBcc: c@z.com",\n')
    result = contacts_import(store, source)
    assert problems(result) == [
        (3, ("field `email`: `a@x.com, b@y.com` is not an email address: it holds more than one; give one address per "
            "contact")),
        (4, ("field `email`: `Jo <jo@x.com>` is not an email address: a display name and angle brackets around the "
            "email address are not permitted here")),
        (5, ("field `phone`: `06 12 34 56 78` is a national number: write it in international form (+33612345678), "
            "or set `phone_region` in mauto.yaml (e.g. `phone_region: FR`) to read national numbers")),
        (6, "field `phone`: `+33 6` is not a valid phone number: too short"),
        (8, ("field `email`: `a@x.com\\r\\nBcc: c@z.com` is not an email address: it contains a control character "
            "(U+000D)")),
    ]
    assert not result.committed and contacts(store) == {}


def test_a_phone_number_given_as_a_number_is_refused(tmp_path: Path, store: Store) -> None:
    result = contacts_import(store, write(tmp_path / "c.jsonl", '{"id": "c1", "phone": 33612345678}\n'
                                                                '{"id": "c2", "phone": "+33612345678"}\n'))
    assert problems(result) == [
        (1, ("field `phone`: `33612345678` is a number, not text: write the phone number as text (in quotes in JSON or "
            "YAML), in international form such as +33612345678"))]
    # YAML: the text as written, then read as a phone number
    result = contacts_import(store, write(tmp_path / "c.yaml", "- {id: c1, phone: +33 6 12 34 56 78}\n"
                                                               "- {id: c2, phone: 0612345678}\n"
                                                               "- {id: c3, phone: +33612345678}\n"))
    assert problems(result) == [
        (2, ("field `phone`: `0612345678` is a national number: write it in international form (+33612345678), or "
            "set `phone_region` in mauto.yaml (e.g. `phone_region: FR`) to read national numbers"))]
    result = contacts_import(store, write(tmp_path / "c.yaml", "- {id: c1, phone: +33 6 12 34 56 78}\n"
                                                               "- {id: c2, phone: 0612345679}\n"), phone_region="FR")
    assert {cid: row["phone"] for cid, row in contacts(store).items()} == {"c1": "+33612345678", "c2": "+33612345679"}


def test_key_email_matches_the_normal_form(tmp_path: Path, store: Store) -> None:
    contacts_import(store, write(tmp_path / "a.csv", "id,email,first_name\nc1,ann@exämple.com,Ann\n"
                                                     "c2,bob@example.com,Bob\n"))
    # an older version stored an IDN domain as written (punycode): it is the same address
    store.db.execute("UPDATE contacts SET email = 'bob@xn--exmple-cua.com' WHERE id = 'c2'")
    store.db.conn.commit()
    result = contacts_import(store, write(tmp_path / "b.csv", "email,first_name\nAnn@XN--EXMPLE-CUA.COM,Annie\n"
                                                              "BOB@Exämple.com,Bobby\n"), key="email")
    assert (problems(result), result.created, result.updated) == ([], 0, 2)
    assert {cid: row["first_name"] for cid, row in contacts(store).items()} == {"c1": "Annie", "c2": "Bobby"}


# --- the suppression list compares the normal form -----------------------------------------------------------


def test_an_erased_number_stays_suppressed_however_it_is_written_again(tmp_path: Path, store: Store) -> None:
    contacts_import(store, write(tmp_path / "a.csv", "id,phone,sms_consent\nc1,+33 6 12 34 56 78,true\n"))
    erase(store, "c1")
    result = contacts_import(store, write(tmp_path / "b.csv", "id,phone,sms_consent\nc2,0612345678,true\n"
                                                              "c3,0033612345678,true\nc4,+33612345679,true\n"),
                             phone_region="FR")
    assert result.created == 3
    assert [contact_state(store, cid, FIELDS, "Europe/Paris").suppressed for cid in ("c2", "c3", "c4")] == [
        {"sms"}, {"sms"}, set()]


def test_an_unsubscribed_number_stored_unnormalised_by_an_older_version_stays_suppressed(
        tmp_path: Path, store: Store) -> None:
    contacts_import(store, write(tmp_path / "a.csv", "id,email,phone\nc1,Ann@Example.com,+33612345678\n"))
    store.db.execute("UPDATE contacts SET phone = '+33 6 12 34 56 78', email = ' ANN@example.COM ' WHERE id = 'c1'")
    store.db.conn.commit()
    unsubscribe(store, "c1", "sms")
    unsubscribe(store, "c1", "email")
    contacts_import(store, write(tmp_path / "b.csv", "id,email,phone\nc2,ann@EXAMPLE.com,0033 6 12 34 56 78\n"))
    assert contact_state(store, "c2", FIELDS, "Europe/Paris").suppressed == {"email", "sms"}


# --- text ---------------------------------------------------------------------------------------------------


def test_nul_and_lone_surrogates_are_refused_in_every_field(tmp_path: Path, store: Store) -> None:
    source = jsonl(tmp_path / "c.jsonl",
                   {"id": "c1", "first_name": "An\u0000n"},
                   {"id": "c2", "tags": ["vip", "x\u0000"]},
                   {"id": "c3", "first_name": "Ann", "score": 3},
                   {"id": "c4", "first_name": "A\u000bn\u000cn\u0085\u2028"},  # other controls: kept in a name
                   {"id": "c5\u0000"},
                   {"id": "c\t7"})  # a tab is not refused in an id
    result = contacts_import(store, source)
    assert problems(result) == [
        (1, "field `first_name`: contains a NUL character (U+0000)"),
        (2, "field `tags`: contains a NUL character (U+0000)"),
        (5, "field `id`: `c5\\x00` contains a NUL character (U+0000)"),
    ]
    result = contacts_import(store, source, skip_invalid=True)
    assert sorted(contacts(store)) == ["c\t7", "c3", "c4"]
    assert contacts(store)["c4"]["first_name"] == "A\u000bn\u000cn\u0085\u2028"


@pytest.mark.parametrize(("row", "message"), [
    ({"id": "c\n1"}, "field `id`: `c\\n1` contains a control character (U+000A)"),
    ({"id": "c\u20281"}, "field `id`: `c\\u20281` contains a line separator (U+2028)"),
    ({"id": "c\u00851"}, "field `id`: `c\\x851` contains a control character (U+0085)"),
    ({"id": "c1", "email": "a\u000c@x.com"}, ("field `email`: `a\\x0c@x.com` is not an email address: it contains a "
                                             "control character (U+000C)")),
    ({"id": "c1", "phone": "+33612345678\u2029"}, ("field `phone`: `+33612345678\\u2029` is not a phone number: it "
                                                  "contains a line separator (U+2029)")),
])
def test_control_characters_are_refused_in_ids_and_addresses(tmp_path: Path, store: Store, row: dict,
                                                             message: str) -> None:
    assert problems(contacts_import(store, jsonl(tmp_path / "c.jsonl", row))) == [(1, message)]


def test_lone_surrogates_are_refused_whatever_the_reader_let_through() -> None:
    # The file readers refuse them already; the fields' converters do too, for every other way in.
    check = ContactChecker(FIELDS, "Europe/Paris", "id")
    for row, message in [({"id": "c1", "first_name": "An\ud800n"},
                          "field `first_name`: contains a lone surrogate (U+D800), which is not text"),
                         ({"id": "c1", "tags": ["\udfff"]},
                          "field `tags`: contains a lone surrogate (U+DFFF), which is not text"),
                         ({"id": "c1", "last_order_at": "2026-01-01\ud800"},
                          "field `last_order_at`: contains a lone surrogate (U+D800), which is not text"),
                         ({"id": "c6\ud83d"}, ("field `id`: `c6\\ud83d` contains a lone surrogate (U+D83D), which is "
                                               "not text"))]:
        with pytest.raises(ValueError) as caught:
            check(row)
        assert str(caught.value) == message


# --- numbers ------------------------------------------------------------------------------------------------


def test_numbers_must_be_finite_and_integers_fit_in_64_bits(tmp_path: Path, store: Store) -> None:
    source = write(tmp_path / "c.csv", "id,total,score\n"
                                       "c1,nan,\nc2,inf,\nc3,-Infinity,\nc4,1e400,\n"
                                       "c5,,9223372036854775808\nc6,,-9223372036854775809\n"
                                       f"c7,,{'9' * 5000}\n"
                                       "c8,4.5,9223372036854775807\nc9,1e300,-9223372036854775808\n")
    result = contacts_import(store, source)
    bits = "(64 bits: -9223372036854775808 to 9223372036854775807)"
    assert problems(result) == [
        (2, "field `total`: must be a finite number, not `nan`"),
        (3, "field `total`: must be a finite number, not `inf`"),
        (4, "field `total`: must be a finite number, not `-Infinity`"),
        (5, "field `total`: must be a finite number, not `1e400`"),
        (6, f"field `score`: `9223372036854775808` is outside the integers mauto handles {bits}"),
        (7, f"field `score`: `-9223372036854775809` is outside the integers mauto handles {bits}"),
        (8, f"field `score`: `{'9' * 80}…` is outside the integers mauto handles {bits}"),
    ]
    contacts_import(store, source, skip_invalid=True)
    assert {cid: (row.get("total"), row.get("score")) for cid, row in contacts(store).items()} == {
        "c8": (4.5, 9223372036854775807), "c9": (1e300, -9223372036854775808)}


def test_json_integers_past_64_bits_are_refused(tmp_path: Path, store: Store) -> None:
    result = contacts_import(store, write(tmp_path / "c.jsonl", '{"id": "c1", "score": 18446744073709551616}\n'
                                                                '{"id": "c2", "total": 18446744073709551616}\n'))
    assert [line for line, _ in problems(result)] == [1, 2]


# --- time zones ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "message"), [
    ("Mars/Olympus", "unknown time zone `Mars/Olympus`; use an IANA name such as Europe/Paris"),
    ("Europe/Pari", "unknown time zone `Europe/Pari`; did you mean `Europe/Paris`?"),
    ("../../etc/passwd", "unknown time zone `../../etc/passwd`; use an IANA name such as Europe/Paris"),
    ("/etc/Paris", "unknown time zone `/etc/Paris`; did you mean `Europe/Paris`?"),
    ("Europe", "unknown time zone `Europe`; did you mean `Europe/Rome`?"),
    ("zone.tab", "unknown time zone `zone.tab`; use an IANA name such as Europe/Paris"),
    ("x" * 5000, f"unknown time zone `{'x' * 80}…`; use an IANA name such as Europe/Paris"),
])
def test_an_unknown_time_zone_is_a_row_error(tmp_path: Path, store: Store, zone: str, message: str) -> None:
    result = contacts_import(store, jsonl(tmp_path / "c.jsonl", {"id": "c1", "timezone": zone}))
    assert problems(result) == [(1, f"field `timezone`: {message}")]


def test_a_known_time_zone_is_kept(tmp_path: Path, store: Store) -> None:
    contacts_import(store, write(tmp_path / "c.csv", "id,timezone\nc1, America/New_York \nc2,UTC\n"))
    assert {cid: row["timezone"] for cid, row in contacts(store).items()} == {"c1": "America/New_York", "c2": "UTC"}


# --- times --------------------------------------------------------------------------------------------------


def test_times_and_dates_outside_the_limits_are_row_errors(tmp_path: Path, store: Store) -> None:
    source = write(tmp_path / "c.csv", "id,last_order_at,birthday\n"
                                       "c1,0001-01-01T00:00:00+05:00,\n"
                                       "c2,9999-12-31T23:59:59-12:00,\n"
                                       "c3,0001-01-01T00:00:00,\n"
                                       "c4,8999-12-31T23:30:00-01:00,\n"
                                       "c5,,9999-12-31\n"
                                       "c6,,0999-12-31\n"
                                       "c7,1000-01-01T00:00:00Z,1000-01-01\n"
                                       "c8,8999-12-31T22:59:59-01:00,8999-12-31\n")
    result = contacts_import(store, source)
    limits = "is outside the times mauto handles (years 1000 to 8999)"
    assert problems(result) == [
        (2, f"field `last_order_at`: time `0001-01-01T00:00:00+05:00` {limits}"),
        (3, f"field `last_order_at`: time `9999-12-31T23:59:59-12:00` {limits}"),
        (4, f"field `last_order_at`: time `0001-01-01T00:00:00` {limits}"),
        (5, f"field `last_order_at`: time `8999-12-31T23:30:00-01:00` {limits}"),
        (6, "field `birthday`: `9999-12-31` is outside the dates mauto handles (years 1000 to 8999)"),
        (7, "field `birthday`: `0999-12-31` is outside the dates mauto handles (years 1000 to 8999)"),
    ]
    contacts_import(store, source, skip_invalid=True)
    assert {cid: (row["last_order_at"], row["birthday"]) for cid, row in contacts(store).items()} == {
        "c7": ("1000-01-01T00:00:00.000000+00:00", "1000-01-01"),
        "c8": ("8999-12-31T23:59:59.000000+00:00", "8999-12-31")}


def test_a_local_time_that_does_not_exist_is_taken_and_said(tmp_path: Path, store: Store) -> None:
    source = write(tmp_path / "c.csv", "id,last_order_at\n"
                                       "c1,2026-03-29T01:30:00\n"
                                       "c2,2026-03-29T02:30:00\n"  # spring forward in Paris: 02:00 -> 03:00
                                       "c3,2026-10-25T02:30:00\n"  # fall back: 03:00 -> 02:00, 02:30 twice
                                       "c4,2026-03-29T02:30:00+01:00\n")  # with an offset: nothing to say
    result = contacts_import(store, source)
    assert (problems(result), result.committed) == ([], True)
    assert [str(notice) for notice in result.notices] == [
        (f"{source}:3: field `last_order_at`: 2026-03-29T02:30:00 does not exist in Europe/Paris (clocks went "
        "forward); taken as 2026-03-29T03:30:00+02:00"),
        (f"{source}:4: field `last_order_at`: 2026-10-25T02:30:00 happens twice in Europe/Paris (clocks went back); "
        "taken as the first, 2026-10-25T02:30:00+02:00"),
    ]
    assert result.to_dict()["notices"] == [{"path": str(source), "line": 3, "message": result.notices[0].message},
                                           {"path": str(source), "line": 4, "message": result.notices[1].message}]
    assert {cid: row["last_order_at"] for cid, row in contacts(store).items()} == {
        "c1": "2026-03-29T00:30:00.000000+00:00", "c2": "2026-03-29T01:30:00.000000+00:00",
        "c3": "2026-10-25T00:30:00.000000+00:00", "c4": "2026-03-29T01:30:00.000000+00:00"}


def test_stored_values_past_the_limits_are_read_back_as_they_are() -> None:
    record = {"id": "c1", "last_order_at": "9999-12-31T23:59:59-12:00", "birthday": "0001-01-01",
              "created_at": "2026-01-01T00:00:00+00:00"}
    typed = typed_fields(record, FIELDS, "Europe/Paris")
    assert typed["last_order_at"] == "9999-12-31T23:59:59-12:00" and typed["birthday"] == "0001-01-01"
    assert isinstance(typed["created_at"], datetime)
    assert typed_fields({"id": "c1", "last_order_at": "0001-01-01T00:00:00"}, FIELDS, "No/Such_Zone") == {
        "last_order_at": "0001-01-01T00:00:00"}


# --- events -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("row", "message"), [
    ({"contact": "c\r\n1", "event": "signed_up", "at": "2026-11-20T10:00:00Z"},
     "`contact`: `c\\r\\n1` contains a control character (U+000D)"),
    ({"contact": "c1", "event": "signed_up", "at": "2026-11-20T10:00:00Z", "id": "e\u00001"},
     "`id`: `e\\x001` contains a NUL character (U+0000)"),
    ({"contact": "c1", "event": "signed_up\n", "at": "2026-11-20T10:00:00Z"},
     "`event`: `signed_up\\n` contains a control character (U+000A)"),
    ({"contact": "c1", "event": "signed_up", "at": "9999-12-31T23:59:59-12:00"},
     "`at`: time `9999-12-31T23:59:59-12:00` is outside the times mauto handles (years 1000 to 8999)"),
    ({"contact": "c1", "event": "signed_up", "at": "0001-01-01T00:00:00+05:00"},
     "`at`: time `0001-01-01T00:00:00+05:00` is outside the times mauto handles (years 1000 to 8999)"),
    ({"contact": "c1", "event": "order_placed", "at": "2026-11-20T10:00:00Z", "total": "nan"},
     "property `total`: must be a finite number, not `nan`"),
    ({"contact": "c1", "event": "order_placed", "at": "2026-11-20T10:00:00Z", "total": "Infinity"},
     "property `total`: must be a finite number, not `Infinity`"),
    ({"contact": "c1", "event": "signed_up", "at": "2026-11-20T10:00:00Z", "source": "ads\u0000"},
     "property `source`: contains a NUL character (U+0000)"),
    ({"contact": "c1", "event": "signed_up", "at": "2026-11-20T10:00:00Z", "note": {"a": ["\udfff"]}},
     "property `note`: contains a lone surrogate (U+DFFF), which is not text"),
])
def test_check_event_refuses_odd_values(row: dict, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_event(row, CATALOGUE, "Europe/Paris")
    assert str(caught.value) == message


def test_an_event_at_a_local_time_that_does_not_exist_is_said(tmp_path: Path, store: Store) -> None:
    contacts_import(store, write(tmp_path / "c.csv", "id\nc1\n"))
    source = jsonl(tmp_path / "e.jsonl", {"contact": "c1", "event": "signed_up", "at": "2026-11-20T10:00:00"},
                   {"contact": "c1", "event": "signed_up", "at": "2026-03-29T02:30:00"})
    result = ingest_events(store, source, catalogue=CATALOGUE, zone="Europe/Paris")
    assert (result.stored, [str(notice) for notice in result.notices]) == (2, [
        (f"{source}:2: `at`: 2026-03-29T02:30:00 does not exist in Europe/Paris (clocks went forward); taken as "
        "2026-03-29T03:30:00+02:00")])
    assert result.to_dict()["notices"][0]["line"] == 2


# --- datafiles.coerce, one declared type at a time ------------------------------------------------------------
# Every way of each type, with the exact value or message: coerce is one function per type since issue 11.

ENUM = {"enum": ["bronze", "gold", 1]}
NOT_64 = "is outside the integers mauto handles (64 bits: -9223372036854775808 to 9223372036854775807)"


@pytest.mark.parametrize("value, declared, expected", [
    (None, "integer", None),
    ("gold", ENUM, "gold"),
    (1, ENUM, 1),
    ("platinum", ENUM, ValueError("must be one of bronze, gold, 1, not `platinum`")),
    ("x", {}, ValueError("must be one of , not `x`")),
    (4.5, "string", "4.5"),
    (("t",), "string", "('t',)"),
    ([1], "string", ValueError("must be a text, not a list")),
    ({"a": 1}, "string", ValueError("must be a text, not a mapping")),
    (" 42 ", "integer", 42),
    ("+" + "0" * 25 + "1", "integer", 1),
    ("٣", "integer", 3),
    ("9" * 20, "integer", ValueError(f"`{'9' * 20}` {NOT_64}")),
    ("-9223372036854775809", "integer", ValueError(f"`-9223372036854775809` {NOT_64}")),
    (True, "integer", ValueError("must be an integer, not `True`")),
    (4.0, "integer", ValueError("must be an integer, not `4.0`")),
    ("1_000", "integer", ValueError("must be an integer, not `1_000`")),
    (7, "number", 7),
    ("7", "number", 7.0),
    (" 1e3 ", "number", 1000.0),
    (2**63, "number", ValueError(f"`9223372036854775808` {NOT_64}")),
    (False, "number", ValueError("must be a number, not `False`")),
    ("x", "number", ValueError("must be a number, not `x`")),
    ([1], "number", ValueError("must be a number, not `[1]`")),
    ("1e400", "number", ValueError("must be a finite number, not `1e400`")),
    (" Yes ", "boolean", True),
    ("0", "boolean", False),
    (1, "boolean", True),
    (2, "boolean", ValueError("must be true or false, not `2`")),
    ("maybe", "boolean", ValueError("must be true or false, not `maybe`")),
    (" 1990-01-02 ", "date", date(1990, 1, 2)),
    (date(1990, 1, 2), "date", date(1990, 1, 2)),
    (19900102, "date", date(1990, 1, 2)),  # read as its text, which fromisoformat takes
    ("1990-02-30", "date", ValueError("`1990-02-30` is not a date (YYYY-MM-DD)")),
    ("9999-01-01", "date", LimitError("`9999-01-01` is outside the dates mauto handles (years 1000 to 8999)")),
    ("soon", "datetime", ValueError("`soon` is not a date-time (2026-03-02T10:00:00+01:00)")),
    ("9999-01-01T00:00:00Z", "datetime",
     LimitError("time `9999-01-01T00:00:00+00:00` is outside the times mauto handles (years 1000 to 8999)")),
    (" a ; ;b ", "list", ["a", "b"]),
    (["x", 1], "list", ["x", 1]),
    (5, "list", ValueError("must be a list, not `5`")),
    ({"a": [1]}, "object", {"a": [1]}),  # a type mauto does not know: the value as it is
    ("x", ["odd"], "x"),  # nor one it cannot look up
    ("a\x00", "integer", ValueError("contains a NUL character (U+0000)")),  # the texts first, whatever the type
    (["\x00"], ENUM, ValueError("contains a NUL character (U+0000)")),
])
def test_coerce_each_declared_type(value: Any, declared: Any, expected: Any) -> None:
    if isinstance(expected, ValueError):
        with pytest.raises(ValueError) as raised:
            coerce(value, declared, "Europe/Paris")
        assert (type(raised.value), str(raised.value)) == (type(expected), str(expected))
    else:
        typed = coerce(value, declared, "Europe/Paris")
        assert (typed, type(typed)) == (expected, type(expected))


def test_coerce_says_which_local_time_it_took() -> None:
    notices: list[str] = []
    typed = coerce("2026-03-29T02:30:00", "datetime", "Europe/Paris", notices)
    assert typed.isoformat() == "2026-03-29T03:30:00+02:00"
    assert notices == ["2026-03-29T02:30:00 does not exist in Europe/Paris (clocks went forward); taken as "
                       "2026-03-29T03:30:00+02:00"]
