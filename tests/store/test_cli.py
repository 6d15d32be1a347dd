"""The store's commands through typer's CliRunner (registered on a local app until pasted into cli.py)."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mauto.cli import app

pytestmark = pytest.mark.usefixtures("cli_environment")

MAUTO_YAML = """timezone: Europe/Paris
store: data/mauto.db
contact_fields:
  first_name: string
  birthday: date
events:
  signed_up: {source: string}
  order_placed: {total: number}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_location: str) -> Path:
    """A project whose store is SQLite's `data/mauto.db` or a PostgreSQL database (`store_location`)."""
    (tmp_path / "mauto.yaml").write_text(MAUTO_YAML.replace("data/mauto.db", store_location))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


@pytest.mark.sqlite_only("the SQLite file's migrations and journal mode; PostgreSQL's db init and info: "
                         "tests/daemon/test_postgres.py")
def test_db_init_info_migrate(project: Path) -> None:
    result = run("db", "info")
    assert (result.exit_code, result.stderr) == (2, "data/mauto.db: no store here; create it with `mauto db init`\n")
    result = run("db", "init")
    assert (result.exit_code, result.stdout) == (0, "data/mauto.db: schema version 11 (applied 11 migrations)\n")
    assert run("db", "init").stdout == "data/mauto.db: already at schema version 11\n"
    assert run("db", "migrate").stdout == "data/mauto.db: schema version 11 (migrations applied: none pending)\n"
    info = json.loads(run("db", "info", "--format", "json").stdout)
    assert (info["path"], info["schema_version"], info["rows"]) == (
        "data/mauto.db", 11, {"contacts": 0, "events": 0, "coupons": 0, "suppressions": 0, "workflow_versions": 0,
                             "workflows": 0, "enrollments": 0, "messages": 0, "calls": 0, "step_log": 0, "tasks": 0,
                             "segment_members": 0, "timers": 0, "runner_state": 1, "failures": 0,
                             "api_keys": 0, "soft_bounces": 0, "notifications_seen": 0,
                                 "split_winners": 0, "message_feedback": 0,
                                 "releases": 0, "release_files": 0, "release_blobs": 0, "held_events": 0,
                                 "workers": 0})
    text = run("db", "info").stdout
    assert text.startswith("data/mauto.db: schema version 11 (this mauto: 11), wal, ") and "contacts" in text


def test_import_bad_line_7_then_skip_invalid(project: Path) -> None:
    run("db", "init")
    rows = ["id,first_name,birthday"] + [f"c{n},N{n},1990-01-0{n}" for n in range(1, 6)] + ["c6,Fay,1990-02-30"]
    (project / "c.csv").write_text("\n".join(rows) + "\n")
    result = run("contacts", "import", "c.csv")
    assert result.exit_code == 1
    assert result.stderr == ("c.csv:7: field `birthday`: `1990-02-30` is not a date (YYYY-MM-DD)\n"
                             "nothing imported: 1 bad row in c.csv (fix them, or import the good rows with "
                             "--skip-invalid --rejects FILE)\n")
    assert json.loads(run("db", "info", "-f", "json").stdout)["rows"]["contacts"] == 0
    result = run("contacts", "import", "c.csv", "--skip-invalid", "--rejects", "bad.csv")
    assert (result.exit_code, result.stdout) == (
        0, "c.csv: 5 created, 0 updated, 0 unchanged; 1 bad row skipped, written to bad.csv\n")
    assert (project / "bad.csv").read_text().splitlines()[1].startswith("c6,Fay,1990-02-30,7,")


def test_import_from_stdin_and_show_list_export(project: Path, store_location: str) -> None:
    run("db", "init")
    result = run("contacts", "import", "-", "--format", "jsonl",
                 input='{"id": "c1", "email": "ann@example.com", "first_name": "Ann", "tags": ["vip"]}\n'
                       '{"id": "c2", "email": "bob@example.com"}\n')
    assert (result.exit_code, result.stdout) == (0, "<stdin>: 2 created, 0 updated, 0 unchanged\n")
    listed = json.loads(run("contacts", "list", "--where", "'vip' in contact.tags", "-f", "json").stdout)
    assert [contact["id"] for contact in listed] == ["c1"]
    assert "1 contact" in run("contacts", "list", "--limit", "1").stdout
    shown = json.loads(run("contacts", "show", "c1", "-f", "json").stdout)
    assert shown["contact"]["first_name"] == "Ann" and shown["event_count"] == 1
    assert run("contacts", "show", "ghost").stderr == f"{store_location}: no contact `ghost`\n"
    exported = run("contacts", "export", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line)["id"] for line in exported] == ["c1", "c2"]
    bad = run("contacts", "list", "--where", "contact.(")
    assert bad.exit_code == 2 and bad.stderr.startswith("--where: ")


def test_events_ingest_unsubscribe_erase_coupons(project: Path) -> None:
    run("db", "init")
    run("contacts", "import", "-", "-f", "jsonl", input='{"id": "c1", "email": "ann@example.com"}\n')
    (project / "e.jsonl").write_text(
        '{"id": "e1", "contact": "c1", "event": "signed_up", "at": "2026-11-20T10:00:00", "source": "ads"}\n'
        '{"id": "e1", "contact": "c1", "event": "signed_up", "at": "2026-11-20T10:00:00", "source": "ads"}\n'
        '{"contact": "nobody", "event": "signed_up", "at": "2026-11-20T10:00:00"}\n')
    result = run("events", "ingest", "e.jsonl")
    assert (result.exit_code, result.stderr.splitlines()[0]) == (1, "e.jsonl:3: unknown contact `nobody`")
    result = run("events", "ingest", "e.jsonl", "--skip-invalid")
    assert result.stdout == "e.jsonl: 1 stored, 1 already stored; 1 bad row skipped\n"
    assert run("contacts", "unsubscribe", "c1").stdout == "c1: unsubscribed from email\n"
    assert run("contacts", "unsubscribe", "c1", "--channel", "sms").stdout == \
        "c1: unsubscribed from sms (no sms address to suppress)\n"
    (project / "codes.txt").write_text("A\nB\n")
    assert run("coupons", "load", "welcome", "codes.txt").stdout == "welcome: 2 codes added, 0 already loaded\n"
    assert run("coupons", "load", "welcome", "codes.txt").stdout == "welcome: 0 codes added, 2 already loaded\n"
    result = run("contacts", "erase", "c1", "--yes")
    assert result.stdout == "c1: erased; 4 events kept without their properties; suppressed: email\n"
    assert run("contacts", "erase", "c1", input="n\n").exit_code == 1  # asks first


@pytest.mark.sqlite_only("locks the SQLite file by hand (BEGIN EXCLUSIVE)")
def test_locked_store_is_a_message_not_a_traceback(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mauto.store import sqlite as store_sqlite

    run("db", "init")
    monkeypatch.setattr(store_sqlite, "DEFAULT_TIMEOUT", 0.1)
    monkeypatch.setattr(store_sqlite.Store.__init__, "__kwdefaults__",
                        {**store_sqlite.Store.__init__.__kwdefaults__, "timeout": 0.1})
    (project / "c.csv").write_text("id\nc1\n")
    holder = sqlite3.connect(project / "data" / "mauto.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = run("contacts", "import", "c.csv")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 1
    assert result.stderr == ("data/mauto.db: the store is locked: another mauto (or another program) is using it "
                             "and did not finish within 0.1s; try again when it has finished\n")
    assert "Traceback" not in result.output


@pytest.mark.sqlite_only("writes SQLite's PRAGMA user_version; PostgreSQL's: tests/daemon/test_postgres.py")
def test_newer_store_is_refused(project: Path) -> None:
    run("db", "init")
    path = project / "data" / "mauto.db"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 42")
    connection.commit()
    connection.close()
    before = path.read_bytes()
    result = run("db", "migrate")
    assert result.exit_code == 2
    assert result.stderr.startswith("data/mauto.db: this store has schema version 42, written by a newer mauto")
    assert path.read_bytes() == before


def ids(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [contact["id"] for contact in json.loads(result.stdout)]


def test_list_where_has_the_workflow_functions(project: Path) -> None:
    run("db", "init")
    (project / "c.csv").write_text("id,email,lists\na0,gone@example.com,vip\nc1,ann@example.com,vip;news\n"
                                   "c2,bob@example.com,\nc3,cat@example.com,vip\nc4,dan@example.com,news\n")
    assert run("contacts", "import", "c.csv").exit_code == 0
    (project / "e.jsonl").write_text("".join(json.dumps(line) + "\n" for line in [
        {"contact": "a0", "event": "order_placed", "at": "2026-11-20T10:00:00Z", "total": 90},
        {"contact": "c1", "event": "order_placed", "at": "2026-11-13T10:00:00Z", "total": 20},  # 10 days before
        {"contact": "c2", "event": "order_placed", "at": "2026-10-14T10:00:00Z", "total": 30},  # 40 days before
        {"contact": "c3", "event": "signed_up", "at": "2026-11-20T10:00:00Z", "source": "ads"},
        {"contact": "c4", "event": "order_placed", "at": "2026-11-01T10:00:00Z", "total": 20},
        {"contact": "c4", "event": "order_placed", "at": "2026-11-22T10:00:00Z", "total": 80},
        {"contact": "c4", "event": "order_placed", "at": "2026-12-01T10:00:00Z", "total": 99},  # after --now
    ]))
    assert run("events", "ingest", "e.jsonl").exit_code == 0
    assert run("contacts", "erase", "a0", "--yes").exit_code == 0  # its events stay, under an erased id

    def listed(where: str, now: str = "2026-11-23T12:00:00Z") -> list[str]:
        return ids(run("contacts", "list", "--where", where, "--now", now, "--format", "json"))

    assert listed("has_event('order_placed', within='30d')") == ["c1", "c4"]
    assert listed("in_list('vip')") == ["c1", "c3"]
    assert listed("event_count('order_placed') >= 2") == ["c4"]  # the order after --now does not count
    assert listed("event_count('order_placed') == 3", now="2026-12-02T00:00:00") == ["c4"]
    assert listed("has_event('order_placed', where=\"event.total > 50\")") == ["c4"]
    assert listed("in_list('vip') and not has_event('order_placed', within='30d')") == ["c3"]
    assert listed("has_event('signed_up') or event_count('order_placed', within='15d') > 0") == \
        ["c1", "c3", "c4"]
    assert listed("has_event('order_placed', within='30d')", now="2026-10-20T12:00:00") == ["c2"]
    assert listed("days_since(contact.created_at) < 0", now="2000-01-01T00:00:00") == ["c1", "c2", "c3", "c4"]
    text = run("contacts", "list", "--where", "in_list('news')", "--now", "2026-11-23T12:00:00Z")
    assert (text.exit_code, text.stdout.splitlines()[-1]) == (0, "2 contacts")


@pytest.mark.parametrize("where, message", [
    ("has_purchased('shoes')", "--where: unknown function `has_purchased()` (functions: has_event(), "
                               "event_count(), days_since(), in_list(), duration())"),
    ("in_lists('vip')", "--where: unknown function `in_lists()`; did you mean `in_list`? (functions: has_event(), "
                        "event_count(), days_since(), in_list(), duration())"),
    ("event.total > 5", "--where: `event` is not in scope here: no event has arrived (use has_event('name', "
                        "where=\"event.total > 50\") to look at a contact's events)"),
    ("score > 5", "--where: unknown name `score` (names in scope: contact, now)"),
    ("has_event('order_placed', within='a month')",
     "--where: `a month` is not a duration; write a number and a unit (s, m, h, d, w), e.g. 30m, 1h, 3d, 2w"),
    ("has_event('order_placed', last='30d')", "--where: `has_event()` has no argument `last`; it takes name, "
                                              "within, since, where"),
    ("has_event('order_placed', where='event.total >')", "--where: in `where=\"event.total >\"`: invalid "
                                                         "expression: it ends too early (a missing operand or "
                                                         "closing bracket?)"),
    ("has_event('order_placed', where='evnt.total > 5')", "--where: in `where=\"evnt.total > 5\"`: unknown name "
                                                          "`evnt`; did you mean `event`? (names in scope: event, "
                                                          "contact, now)"),
    ("has_event('order_placed', since='entry')",
     "--where: `since='entry'`: a contact outside a workflow has no entry; since takes a datetime such as "
     "`now - duration('7d')`, or use within='7d'"),
    ("has_event('order_placed', since='last week')",
     "--where: `since='last week'`: since takes a datetime such as `now - duration('7d')`, or use within='7d'"),
])
def test_list_where_with_a_bad_helper_is_a_usage_error(project: Path, where: str, message: str) -> None:
    run("db", "init")
    run("contacts", "import", "-", "-f", "jsonl", input='{"id": "c1"}\n')
    result = run("contacts", "list", "--where", where)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", message + "\n")
    assert "Traceback" not in result.output
