"""Audience export for ad platforms (`mauto audience export SEGMENT_OR_EXPR --format csv|jsonl|meta|google`)
and `contacts export --where`: the contacts a segment or an expression selects, only those who may be marketed
to, identifiers normalised and SHA-256-hashed as Meta and Google specify; files written whole or not at all.

Before: there was no audience export (mauto.audience did not exist) and `contacts export` took no --where.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mauto import audience
from mauto.config import load_project
from mauto.errors import MautoError, UsageError
from mauto.store import open_store
from mauto.store.contacts import erase, import_contacts, unsubscribe

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PROJECT = """\
timezone: Europe/Paris
phone_region: FR
contact_fields:
  first_name: string
  country: string
segments:
  vip: "'vip' in contact.tags"
  french: "contact.country == 'FR'"
"""
PEOPLE = [
    # Ana: both channels; her Gmail address written with capitals, dots and a +tag
    {"id": "ana", "email": "Ana.Lopez+shop@GMail.com", "phone": "06 12 34 56 78", "email_consent": True,
     "sms_consent": True, "tags": ["vip"], "country": "FR", "first_name": "Ana"},
    # Bob: email only (no SMS consent: his phone is not exported)
    {"id": "bob", "email": "Bob.Stone+news@Example.com", "phone": "+44 7911 123456", "email_consent": True,
     "tags": ["vip"], "country": "GB"},
    # Cleo: no consent at all
    {"id": "cleo", "email": "cleo@example.com", "tags": ["vip"], "country": "FR"},
    # Dan: consents, but his address bounced (on the suppression list); his phone may go
    {"id": "dan", "email": "dan@example.com", "phone": "+33 6 98 76 54 32", "email_consent": True,
     "sms_consent": True, "tags": ["vip"], "country": "FR"},
    # Eve: unsubscribed; Fay: erased; Gus: not a VIP
    {"id": "eve", "email": "eve@example.com", "email_consent": True, "tags": ["vip"], "country": "FR"},
    {"id": "fay", "email": "fay@example.com", "email_consent": True, "tags": ["vip"], "country": "FR"},
    {"id": "gus", "email": "gus@example.com", "email_consent": True, "tags": [], "country": "FR"},
]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# the exports run on SQLite and PostgreSQL stores (tests/conftest.py's `store_kind`)
pytestmark = pytest.mark.both_stores


@pytest.fixture
def setup(tmp_path: Path, store_kind: str, request: pytest.FixtureRequest):
    (tmp_path / "mauto.yaml").write_text(PROJECT, encoding="utf-8")
    project = load_project(tmp_path / "mauto.yaml", display_root=tmp_path)
    people = tmp_path / "people.jsonl"
    people.write_text("".join(json.dumps(row) + "\n" for row in PEOPLE), encoding="utf-8")
    location = request.getfixturevalue("pg_cluster").url() if store_kind == "postgresql" else tmp_path / "mauto.db"
    with open_store(location, lambda: NOW, create=True, phone_region="FR") as store:
        result = import_contacts(store, people, fields=project.contact_fields, zone=project.timezone,
                                 phone_region="FR")
        assert result.ok, result.problem_dicts()
        with store.transaction():
            store.suppress("dan@example.com", "email", "bounced")
        unsubscribe(store, "eve", "email")
        erase(store, "fay")
        yield project, store


def export(setup, target: str, fmt: str) -> tuple[str, object]:
    project, store = setup
    out = io.StringIO()
    result = audience.export_audience(store, project, target, fmt, out, NOW)
    return out.getvalue(), result


def test_meta_gets_hashed_emails_and_phones_of_those_who_may_be_marketed_to(setup):
    text, result = export(setup, "vip", "meta")
    assert text.splitlines() == [
        "email,phone",
        f"{sha('ana.lopez+shop@gmail.com')},{sha('33612345678')}",  # Meta: E.164 digits, no +
        f"{sha('bob.stone+news@example.com')},",
        f",{sha('33698765432')}",
    ]
    assert result.to_dict() == {"target": "segment vip", "format": "meta", "matched": 5, "exported": 3,
                                "left_out": {"no_consent": 2, "invalid": 0}}
    assert result.summary() == "3 of 5 contacts matching segment vip (2 without consent or suppressed left out)"


def test_google_gets_its_own_email_normal_form_and_e164_phones(setup):
    text, _ = export(setup, "vip", "google")
    assert text.splitlines() == [
        "Email,Phone",
        f"{sha('analopez@gmail.com')},{sha('+33612345678')}",  # gmail: no dots, no +tag; E.164 with its +
        f"{sha('bob.stone+news@example.com')},",  # other domains keep them
        f",{sha('+33698765432')}",
    ]
    assert audience.google_email(" Jo.Ann+Shop@GoogleMail.com ") == "joann@googlemail.com"
    assert audience.google_email("jo.ann+shop@gmail.co.uk") == "jo.ann+shop@gmail.co.uk"


def test_plain_csv_and_jsonl_hold_the_normalised_identifiers(setup):
    text, _ = export(setup, "contact.country == 'FR' and contact.email_consent", "csv")
    assert list(csv.reader(io.StringIO(text))) == [
        ["id", "email", "phone"],
        ["ana", "ana.lopez+shop@gmail.com", "+33612345678"],
        ["dan", "", "+33698765432"],
        ["gus", "gus@example.com", ""],
    ]
    text, result = export(setup, "french", "jsonl")
    assert [json.loads(line) for line in text.splitlines()] == [
        {"id": "ana", "email": "ana.lopez+shop@gmail.com", "phone": "+33612345678"},
        {"id": "dan", "phone": "+33698765432"},
        {"id": "gus", "email": "gus@example.com"},
    ]
    assert (result.matched, result.exported, result.no_consent) == (5, 3, 2)  # cleo, eve (fay is erased)


def test_an_address_that_cannot_be_normalised_is_left_out(setup, tmp_path: Path):
    project, store = setup
    with store.transaction() as db:  # a phone an older mauto stored as written, without its country
        db.execute("INSERT INTO contacts (id, phone, sms_consent, fields, created_at, updated_at) VALUES "
                   "('hal', '612', 1, '{\"tags\": [\"vip\"]}', '2026-01-01', '2026-01-01')")
    text, result = export(setup, "vip", "meta")
    assert len(text.splitlines()) == 4 and result.invalid == 1


@pytest.mark.parametrize(("target", "message"), [
    ("vips", "SEGMENT_OR_EXPR: no segment `vips` in mauto.yaml (segments: french, vip); or write an expression, "
             "e.g. \"'vip' in contact.tags\""),
    ("contact.nope(", "SEGMENT_OR_EXPR: "),
    ("has_event('x', within='3 days')", "SEGMENT_OR_EXPR: "),
])
def test_an_unknown_segment_or_a_bad_expression_is_a_usage_error(setup, target: str, message: str):
    with pytest.raises(MautoError) as raised:
        export(setup, target, "meta")
    assert str(raised.value).startswith(message)
    assert raised.value.exit_code == 2


def test_an_unknown_format_is_a_usage_error(setup):
    with pytest.raises(UsageError, match=r"^--format must be one of csv, jsonl, meta, google, not `tiktok`$"):
        export(setup, "vip", "tiktok")


# --- files: whole or not at all ---------------------------------------------------------------------------

def test_the_file_is_written_whole_and_for_its_owner_only(setup, tmp_path: Path):
    project, store = setup
    target = tmp_path / "vip.csv"
    result = audience.write_whole(target, lambda out: audience.export_audience(store, project, "vip", "google",
                                                                               out, NOW), store)
    assert result.exported == 3 and target.read_text(encoding="utf-8").startswith("Email,Phone\n")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".part")] == []


def test_a_failing_export_leaves_the_file_as_it_was(setup, tmp_path: Path, store_kind: str):
    project, store = setup
    target = tmp_path / "vip.csv"
    target.write_text("last week's audience\n", encoding="utf-8")
    with pytest.raises(MautoError, match="--where: ZeroDivisionError"):  # fails at the first contact
        audience.write_whole(target, lambda out: audience.export_audience(store, project, "1 / 0 > 1", "meta",
                                                                          out, NOW), store)
    assert target.read_text(encoding="utf-8") == "last week's audience\n"
    files = ["mauto.db", "mauto.db-shm", "mauto.db-wal"] if store_kind == "sqlite" else []  # the SQLite store's
    assert sorted(path.name for path in tmp_path.iterdir()) == [*files, "mauto.yaml", "people.jsonl", "vip.csv"]


@pytest.mark.sqlite_only("the SQLite file is the store that must not be written over")
def test_the_store_and_folders_are_refused(setup, tmp_path: Path):
    project, store = setup
    with pytest.raises(UsageError, match="that is the store; writing the audience there would destroy it"):
        audience.write_whole(tmp_path / "mauto.db", lambda out: None, store, what="the audience")
    with pytest.raises(UsageError, match="that is a folder"):
        audience.write_whole(tmp_path, lambda out: None, store)
    with pytest.raises(UsageError, match=r"^--out .*/nowhere/a\.csv: cannot write there \(No such file or "
                                         r"directory\)$"):
        audience.write_whole(tmp_path / "nowhere" / "a.csv", lambda out: None, store)


# --- contacts export --where -----------------------------------------------------------------------------

def test_contacts_export_where_writes_the_matching_contacts_only(setup):
    project, store = setup
    out = io.StringIO()
    count = audience.export_contacts_matching(store, out, "jsonl", project.contact_fields, project.timezone,
                                              "'vip' in contact.tags and not contact.email_consent")
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert count == 2 and [row["id"] for row in rows] == ["cleo", "eve"]  # no consent rule: a data export
    assert rows[0]["email"] == "cleo@example.com" and rows[1]["email_consent"] is False
    out = io.StringIO()
    assert audience.export_contacts_matching(store, out, "csv", project.contact_fields, project.timezone) == 6
    header, *lines = out.getvalue().splitlines()
    assert header.startswith("id,email,phone,") and [line.split(",")[0] for line in lines] == [
        "ana", "bob", "cleo", "dan", "eve", "gus"]  # fay is erased
    with pytest.raises(MautoError, match="^--where: unknown name `contac`; did you mean `contact`?"):
        audience.export_contacts_matching(store, io.StringIO(), "csv", project.contact_fields, project.timezone,
                                          "contac.score > 1")
