"""Fuzzing the ways data comes into the store: `contacts import`, `events ingest` and `coupons load`, through the
real CLI (typer's CliRunner) on a real SQLite file, fed (a) random bytes and (b) random rows written as JSON
Lines, CSV or YAML from odd values (control characters, lone surrogates as escapes, huge integers, nested
lists, NaN, times at the edges of the calendar).

Whatever the input: never an internal error (exit 3), and never a partial write: the store's rows change
only by what the command reports having done, nothing at all when it fails, and with --skip-invalid every
row known to be good is stored. One project and store per test; each example gets ids of its own."""
from __future__ import annotations

import csv
import io
import itertools
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mauto.cli import app

pytestmark = pytest.mark.usefixtures("cli_environment")

MAUTO_YAML = """timezone: Europe/Paris
store: mauto.db
contact_fields:
  first_name: string
  birthday: date
  lifetime_value: number
  last_order_at: datetime
  plan: {enum: [free, pro]}
events:
  order_placed: {total: number, placed_at: datetime, items: integer}
"""
FUZZ = settings(max_examples=80, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])
EXAMPLE = itertools.count(1)  # ids, file names and pools of one example are its own


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "mauto.yaml").write_text(MAUTO_YAML)
    monkeypatch.chdir(tmp_path)
    assert run("db", "init").exit_code == 0
    assert run("contacts", "import", "-", "-f", "jsonl", input='{"id": "c1"}\n{"id": "c2"}\n').exit_code == 0
    return tmp_path


def run(*args: str, input: str | bytes | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def counts() -> dict[str, int]:
    with sqlite3.connect("mauto.db") as db:
        return {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("contacts", "events", "coupons")}


def stored(table: str, column: str, keys: list[str]) -> set[str]:
    with sqlite3.connect("mauto.db") as db:
        marks = ",".join("?" * len(keys))
        return {key for (key,) in db.execute(f"SELECT {column} FROM {table} WHERE {column} IN ({marks})", keys)}


def never_internal(result) -> None:
    output = result.stdout + result.stderr
    assert result.exit_code in (0, 1, 2), (result.exit_code, output, result.exception)
    assert "internal error" not in output and "Traceback" not in output, output


def summary(result, pattern: str) -> dict[str, int]:
    found = re.search(pattern, result.stdout)
    assert found is not None, (result.stdout, result.stderr)
    return {name: int(value.replace(",", "")) for name, value in found.groupdict().items()}


CONTACTS_DONE = r": (?P<created>[\d,]+) created, (?P<updated>[\d,]+) updated, (?P<unchanged>[\d,]+) unchanged"
EVENTS_DONE = r": (?P<stored>[\d,]+) stored, (?P<already>[\d,]+) already stored"
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")  # never in a stored code
COUPONS_DONE = r": (?P<added>[\d,]+) codes added, (?P<already>[\d,]+) already loaded"


def check_contacts(result, before: dict[str, int], good_ids: list[str], skip_invalid: bool) -> None:
    """The store changed by what the import says it did, or not at all; with --skip-invalid the good rows are
    all there unless the file as a whole was refused."""
    never_internal(result)
    after = counts()
    if result.exit_code != 0:
        assert after == before, result.stderr
        return
    done = summary(result, CONTACTS_DONE)
    assert after["contacts"] - before["contacts"] == done["created"]
    assert after["events"] - before["events"] == done["created"] + done["updated"]
    assert after["coupons"] == before["coupons"]
    if skip_invalid and good_ids:
        assert stored("contacts", "id", good_ids) == set(good_ids), result.stderr


# --- values -------------------------------------------------------------------------------------------------

EDGE_TIMES = ["0001-01-01", "0001-01-01T00:00:00+14:00", "9999-12-31", "9999-12-31T23:59:59-12:00",
              "9999-12-31T23:59:59.999999", "1000-01-01T00:00:00Z", "8999-12-31T23:59:59+00:00", "2026-02-29",
              "2024-02-29", "2026-03-29T02:30:00", "2026-10-25T02:30:00", "+2h", "-40d", "99999999999d",
              "2026-11-20T10:00:00+25:00", "", " ", "now", "2026-13-01", "T", "1e10"]
odd_text = st.text(st.characters(codec=None, categories=["L", "N", "P", "S", "Z", "Cc", "Cf", "Cs", "Co"]),
                   max_size=12)
numbers = st.one_of(st.integers(min_value=-(2 ** 70), max_value=2 ** 70), st.integers().map(lambda n: n * 10 ** 40),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, -1, 2 ** 63, -(2 ** 63) - 1]))
scalars = st.one_of(odd_text, numbers, st.booleans(), st.none(), st.sampled_from(EDGE_TIMES),
                    st.sampled_from(["ann@example.com", "josé@exämple.com", "a@b", "+33612345678", "0612345678",
                                     "free", "pro", "Europe/Paris", "Mars/Olympus", "vip;new"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(odd_text, inner, max_size=3)), max_leaves=8)
CONTACT_KEYS = ["id", "email", "phone", "first_name", "birthday", "score", "tags", "lifetime_value",
                "last_order_at", "plan", "email_consent", "timezone", "created_at"]
keys = st.one_of(st.sampled_from(CONTACT_KEYS), odd_text)
hostile_contacts = st.lists(st.dictionaries(keys, values, max_size=5), max_size=6)
good_contact = st.fixed_dictionaries({"first_name": st.sampled_from(["Ann", "Bob", "Zoë", "O'Neil"]),
                                      "birthday": st.sampled_from(["1990-01-02", "2000-02-29"]),
                                      "score": st.integers(min_value=-1000, max_value=1000)})


def mixed_rows(draw: Any, hostile: st.SearchStrategy, good: st.SearchStrategy, example: int,
               key: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Hostile rows with known good ones among them (ids of their own): the rows, the good rows' keys."""
    rows = list(draw(hostile))
    good_rows = draw(st.lists(good, max_size=4))
    good_keys = []
    for index, row in enumerate(good_rows):
        row[key] = f"g{example}-{index}"
        good_keys.append(row[key])
        rows.insert(draw(st.integers(min_value=0, max_value=len(rows))), row)
    return rows, good_keys


def as_jsonl(rows: list[Any]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode("ascii")  # lone surrogates as \u escapes


def as_csv(rows: list[dict[str, Any]]) -> bytes:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(column) is None else
                         json.dumps(row[column]) if isinstance(row[column], (list, dict)) else str(row[column])
                         for column in columns])
    return out.getvalue().encode("utf-8", "surrogatepass")  # a lone surrogate: bytes that are not UTF-8


def as_yaml(rows: list[Any]) -> bytes:
    return yaml.safe_dump(rows, allow_unicode=False, sort_keys=False).encode("ascii")


WRITERS = {"jsonl": as_jsonl, "csv": as_csv, "yaml": as_yaml}

# Random bytes, and random bytes made of the pieces parsers care about.
PIECES = [b'"', b",", b"\n", b"\r", b"\r\n", b"{", b"}", b"[", b"]", b":", b" ", b"-", b"\\u", b"d800", b"\\",
          b"\xe9", b"\xff\xfe", b"\xef\xbb\xbf", b"\x00", b"\t", b"'", b"&a", b"*a", b"!!int", b"id", b"c1", b"code",
          b"NaN", b"1e400", b"9" * 30, b'"id"', b'"contact": "c1"', b'"event": "order_placed"',
          b'"at": "2026-01-01T00:00:00Z"', b"- ", b"id,first_name\n", b"\xc3", b"\xed\xa0\x80", b"\xe2\x80\xa8"]
random_bytes = st.one_of(st.binary(max_size=300),
                         st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join))


# --- contacts import ----------------------------------------------------------------------------------------


@FUZZ
@given(content=random_bytes, fmt=st.sampled_from(["csv", "jsonl", "yaml"]), skip_invalid=st.booleans())
def test_contacts_import_of_random_bytes(project: Path, content: bytes, fmt: str, skip_invalid: bool) -> None:
    source = project / f"r{next(EXAMPLE)}.{fmt}"
    source.write_bytes(content)
    before = counts()
    result = run("contacts", "import", source.name, *(["--skip-invalid"] if skip_invalid else []))
    check_contacts(result, before, [], skip_invalid)


@FUZZ
@given(data=st.data(), fmt=st.sampled_from(["csv", "jsonl", "yaml"]), skip_invalid=st.booleans(),
       rejects=st.booleans(), stdin=st.booleans())
def test_contacts_import_of_random_rows(project: Path, data: st.DataObject, fmt: str, skip_invalid: bool,
                                        rejects: bool, stdin: bool) -> None:
    example = next(EXAMPLE)
    rows, good_ids = mixed_rows(data.draw, hostile_contacts, good_contact, example, "id")
    content = WRITERS[fmt](rows)
    options = [*(["--skip-invalid"] if skip_invalid else []),
               *(["--rejects", f"bad{example}.{fmt}"] if rejects else [])]
    before = counts()
    if stdin:
        result = run("contacts", "import", "-", "--format", fmt, *options, input=content)
    else:
        (project / f"r{example}.{fmt}").write_bytes(content)
        result = run("contacts", "import", f"r{example}.{fmt}", *options)
    check_contacts(result, before, good_ids, skip_invalid)
    if rejects and result.exit_code != 0 and "bad row" not in result.stderr:
        assert not (project / f"bad{example}.{fmt}").exists()  # refused as a whole: no rejects file either


# --- events ingest ------------------------------------------------------------------------------------------

hostile_events = st.lists(st.dictionaries(
    st.one_of(st.sampled_from(["contact", "event", "at", "id", "properties", "total", "placed_at", "items"]),
              odd_text),
    st.one_of(values, st.sampled_from(["c1", "c2", "order_placed", "nobody", "2026-01-01T00:00:00Z", *EDGE_TIMES])),
    max_size=6), max_size=6)
good_event = st.fixed_dictionaries({"contact": st.sampled_from(["c1", "c2"]), "event": st.just("order_placed"),
                                    "at": st.sampled_from(["2026-11-20T10:00:00+01:00", "2026-01-01T00:00:00Z"]),
                                    "total": st.integers(min_value=0, max_value=10_000)})


def check_events(result, before: dict[str, int], good_ids: list[str], skip_invalid: bool) -> None:
    never_internal(result)
    after = counts()
    if result.exit_code != 0:
        assert after == before, result.stderr
        return
    done = summary(result, EVENTS_DONE)
    assert after == {**before, "events": before["events"] + done["stored"]}
    if skip_invalid and good_ids:
        assert stored("events", "id", good_ids) == set(good_ids), result.stderr


@FUZZ
@given(content=random_bytes, skip_invalid=st.booleans())
def test_events_ingest_of_random_bytes(project: Path, content: bytes, skip_invalid: bool) -> None:
    source = project / f"e{next(EXAMPLE)}.jsonl"
    source.write_bytes(content)
    before = counts()
    result = run("events", "ingest", source.name, *(["--skip-invalid"] if skip_invalid else []))
    check_events(result, before, [], skip_invalid)


@FUZZ
@given(data=st.data(), skip_invalid=st.booleans(), rejects=st.booleans())
def test_events_ingest_of_random_rows(project: Path, data: st.DataObject, skip_invalid: bool,
                                      rejects: bool) -> None:
    example = next(EXAMPLE)
    rows, good_ids = mixed_rows(data.draw, hostile_events, good_event, example, "id")
    (project / f"e{example}.jsonl").write_bytes(as_jsonl(rows))
    before = counts()
    result = run("events", "ingest", f"e{example}.jsonl", *(["--skip-invalid"] if skip_invalid else []),
                 *(["--rejects", f"bad{example}.jsonl"] if rejects else []))
    check_events(result, before, good_ids, skip_invalid)


# --- coupons load -------------------------------------------------------------------------------------------


def check_coupons(result, before: dict[str, int], pool: str, good_codes: list[str]) -> None:
    never_internal(result)
    after = counts()
    if result.exit_code != 0:
        assert after == before, result.stderr
        return
    done = summary(result, COUPONS_DONE)
    assert after == {**before, "coupons": before["coupons"] + done["added"]}
    with sqlite3.connect("mauto.db") as db:
        codes = {code for (code,) in db.execute("SELECT code FROM coupons WHERE pool = ?", [pool])}
    assert set(good_codes) <= codes
    assert all(code == code.strip() and 0 < len(code) <= 200 and not CONTROL.search(code) for code in codes), codes


@FUZZ
@given(content=random_bytes, suffix=st.sampled_from(["txt", "csv"]))
def test_coupons_load_of_random_bytes(project: Path, content: bytes, suffix: str) -> None:
    example = next(EXAMPLE)
    (project / f"k{example}.{suffix}").write_bytes(content)
    before = counts()
    result = run("coupons", "load", f"pool{example}", f"k{example}.{suffix}")
    check_coupons(result, before, f"pool{example}", [])


@FUZZ
@given(codes=st.lists(st.one_of(odd_text, st.text(min_size=190, max_size=210), st.sampled_from(["code", "A1", ""])),
                      max_size=8),
       good=st.lists(st.sampled_from(["GOOD-1", "GOOD-2", "GOOD-3"]), max_size=3),
       as_csv_file=st.booleans())
def test_coupons_load_of_random_codes(project: Path, codes: list[str], good: list[str], as_csv_file: bool) -> None:
    example = next(EXAMPLE)
    every = [*good, *codes]
    if as_csv_file:
        content = as_csv([{"code": code, "note": "x"} for code in every])
    else:
        content = "".join(f"{code}\n" for code in every).encode("utf-8", "surrogatepass")
    name = f"k{example}.{'csv' if as_csv_file else 'txt'}"
    (project / name).write_bytes(content)
    before = counts()
    result = run("coupons", "load", f"pool{example}", name)
    check_coupons(result, before, f"pool{example}", good)
