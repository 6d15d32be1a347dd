"""Audience indexes (mauto/store/indexes.py) on both stores, through the commands: `mauto deploy` makes the index
its date triggers read (and drops it once no deployed trigger reads it), and the daemon's date-trigger query then
searches it; `mauto db index FIELD...` makes, lists and drops field indexes, which `contacts list --where` then
uses, with the same contacts found. Each store is a real SQLite file in tmp_path or a database on the session's
PostgreSQL cluster (tests/pg.py); the query plans are the engines' own (EXPLAIN)."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from mauto.cli import app
from mauto.config import load_project
from mauto.deploy import deploy, rollback
from mauto.store import Store, audience_sql, indexes, open_store
from mauto.store.audience_sql import compile_where, date_trigger_contacts
from tests.store.conftest import Clock

pytestmark = pytest.mark.usefixtures("cli_environment")

NOW = datetime(2026, 11, 23, 8, 0, 30, tzinfo=UTC)  # 09:00:30 in Paris: the birthday trigger at 09:00 is due
MAUTO_YAML = """\
timezone: Europe/Paris
store: STORE
sender: {email: "Shop <shop@example.com>"}
unsubscribe_url: "https://example.com/u/{{ token }}"
contact_fields:
  birthday: date
  country: string
  signed_up_on: date
"""
BIRTHDAY = """\
id: birthday
version: VERSION
name: Birthday
category: marketing
trigger: {date: {field: FIELD, every: EVERY, at: "09:00"}}
steps:
  - id: hello
    email: birthday/hello
"""
COUNTRIES = ["FR", "DE", "ES", "BE", "IT"]
SPEC = {"field": "birthday", "every": "year", "at": "09:00"}
FIELDS_OF = {"birthday": "date", "country": "string", "score": "integer"}


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def birthday_workflow(version: int = 1, field: str = "birthday", every: str = "year") -> str:
    return BIRTHDAY.replace("VERSION", str(version)).replace("FIELD", field).replace("EVERY", every)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_location: str) -> Path:
    """A project with a birthday workflow and 400 contacts (a birthday, a country, a score) in its store, on
    SQLite (`data/mauto.db`) or PostgreSQL; nothing deployed yet."""
    (tmp_path / "mauto.yaml").write_text(MAUTO_YAML.replace("STORE", store_location))
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "birthday.yaml").write_text(birthday_workflow())
    (tmp_path / "templates" / "birthday").mkdir(parents=True)
    (tmp_path / "templates" / "birthday" / "hello.email.html").write_text(
        '---\nsubject: "Happy birthday"\n---\n<p>Happy birthday</p><a href="{{ unsubscribe_url }}">u</a>\n')
    monkeypatch.chdir(tmp_path)
    lines = ["id,email,birthday,country,score,signed_up_on"]
    for number in range(400):
        born = datetime(1960, 1, 1) + timedelta(days=number * 37)
        lines.append(f"c{number:03d},c{number}@example.com,{born:%Y-%m-%d},{COUNTRIES[number % 5]},{number % 101},"
                     f"2026-{1 + number % 12:02d}-01")
    (tmp_path / "contacts.csv").write_text("\n".join(lines) + "\n")
    assert run("db", "init").exit_code == 0
    imported = run("contacts", "import", "contacts.csv")
    assert imported.exit_code == 0, imported.output
    return tmp_path


def opened(project: Path) -> Store:
    return open_store(load_project(project / "mauto.yaml").store_location, Clock(NOW), timeout=0.5)


def plan_of(store: Store, sql: str, parameters: Any) -> str:
    """The engine's plan of a query: SQLite's EXPLAIN QUERY PLAN; PostgreSQL's EXPLAIN with sequential scans
    off (a few hundred rows: the planner would rather read them all, as it should)."""
    if store.dialect == "postgresql":
        store.db.execute("SET enable_seqscan = off")
        return " ".join(row[0] for row in store.db.execute("EXPLAIN " + sql, parameters))
    return " ".join(row[3] for row in store.db.execute("EXPLAIN QUERY PLAN " + sql, parameters))


class Recording:
    """The store's connection, keeping the queries run through it."""

    def __init__(self, db: Any) -> None:
        self.db, self.queries = db, []

    def execute(self, sql: str, parameters: Any = ()) -> Any:
        self.queries.append((sql, parameters))
        return self.db.execute(sql, parameters)

    def query(self, sql: str, parameters: Any = ()) -> Any:
        self.queries.append((sql, parameters))
        return self.db.query(sql, parameters)


def daemon_query(store: Store) -> tuple[list[str], str]:
    """The contacts the daemon's birthday trigger reads in the minute before NOW (the function its port calls,
    mauto.driver.sqlite.SqliteContacts.every_near), and the plan of the query it ran for them."""
    recording = Recording(store.db)
    start = NOW - timedelta(minutes=1)
    found = [contact.id for contact in date_trigger_contacts(recording, SPEC, {"birthday": "date"}, "Europe/Paris",
                                                              start, NOW, store.dialect)]
    sql, parameters = next((sql, parameters) for sql, parameters in recording.queries if "FROM contacts" in sql)
    return found, plan_of(store, sql, parameters)


# --- mauto deploy -------------------------------------------------------------------------------------------------

def test_deploy_makes_the_birthday_trigger_index_and_the_daemons_query_searches_it(project: Path) -> None:
    with opened(project) as store:
        before, scan = daemon_query(store)
    assert "contacts_date_birthday_year" not in scan
    assert 3 <= len(before) < 400  # born within three days of 23 November, either side
    shown = json.loads(run("plan", "--format", "json").stdout)
    assert shown["indexes"] == [{"action": "make", "name": "contacts_date_birthday_year", "field": "birthday",
                                 "kind": "date", "every": "year", "summary": "+ index contacts_date_birthday_year "
                                 "(for date triggers on `birthday`, every: year)"}]
    result = run("deploy", "--yes")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[-4:-1] == ["+ index contacts_date_birthday_year (for date triggers on `birthday`, every: year)",
                            "Plan: 1 new, 0 changed, 0 removed, 0 unchanged, 0 refused.",
                            "Deployed: 1 new, 0 changed, 0 removed."]
    assert lines[-1].startswith("index contacts_date_birthday_year made in ")
    assert lines[-1].endswith("s (for date triggers on `birthday`, every: year)")
    with opened(project) as store:
        assert list(indexes.present(store)) == ["contacts_date_birthday_year"]
        after, search = daemon_query(store)
    assert after == before  # the same contacts, found through the index
    assert "contacts_date_birthday_year" in search, search
    again = run("deploy", "--yes")
    assert (again.exit_code, again.stdout.splitlines()[-1]) == (0, "Nothing to deploy.")


def test_a_trigger_no_longer_deployed_loses_its_index_and_a_hand_made_one_stays(project: Path) -> None:
    assert run("deploy", "--yes").exit_code == 0
    assert run("db", "index", "birthday").exit_code == 0  # by hand: a field index on the same field
    (project / "workflows" / "birthday.yaml").write_text(birthday_workflow(2, "signed_up_on", "once"))
    result = run("deploy", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-2:] == [
        "index contacts_date_signed_up_on_once made in " + result.stdout.splitlines()[-2].split(" made in ")[1],
        "index contacts_date_birthday_year dropped (no deployed date trigger reads it)"]
    with opened(project) as store:
        assert sorted(indexes.present(store)) == ["contacts_date_signed_up_on_once", "contacts_field_birthday"]
    (project / "workflows" / "birthday.yaml").unlink()  # the workflow removed: its trigger reads nothing now
    result = run("deploy", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == ("index contacts_date_signed_up_on_once dropped (no deployed date "
                                              "trigger reads it)")
    with opened(project) as store:
        assert list(indexes.present(store)) == ["contacts_field_birthday"]


def test_a_field_declared_anew_gets_its_index_made_again_and_a_rollback_its_versions_index(project: Path) -> None:
    assert run("deploy", "--yes").exit_code == 0
    settings = project / "mauto.yaml"
    settings.write_text(settings.read_text().replace("birthday: date", "birthday: datetime"))
    result = run("deploy", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("index contacts_date_birthday_year made in ")
    assert result.stdout.splitlines()[-1].endswith(
        "s (for date triggers on `birthday`, every: year; made again: it did not index `birthday` as a datetime)")
    with opened(project) as store:
        wanted = indexes.IndexSpec("birthday", "datetime", "year").definition(store.dialect)
        assert indexes.present(store)["contacts_date_birthday_year"].definition == wanted
    (project / "workflows" / "birthday.yaml").write_text(birthday_workflow(2, "birthday", "month"))
    assert run("deploy", "--yes").exit_code == 0
    with opened(project) as store:
        assert list(indexes.present(store)) == ["contacts_date_birthday_month"]
        done = rollback(store, "birthday")
        assert [(index["action"], index["name"]) for index in done["indexes"]] == [
            ("made", "contacts_date_birthday_year"), ("dropped", "contacts_date_birthday_month")]
        assert list(indexes.present(store)) == ["contacts_date_birthday_year"]


@pytest.mark.parametrize("store_kind", ["postgresql"], indirect=True)
def test_on_postgresql_a_build_that_cannot_wait_leaves_the_deploy_and_the_next_deploy_makes_it(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The index is built concurrently after the deploy's transaction; a transaction that holds `contacts` past
    INDEX_WAIT makes the build fail: the deploy stands, the invalid index the build leaves (it cannot be dropped
    while that transaction holds the table) is not read by the daemon's query, and the next deploy makes it."""
    monkeypatch.setattr(indexes, "INDEX_WAIT", 1.0)
    url = load_project(project / "mauto.yaml").store_location
    with psycopg.connect(str(url)) as other:
        other.execute("UPDATE contacts SET fields = fields WHERE id = 'c001'")  # psycopg: a transaction, held
        result = run("deploy", "--yes")
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[-1] == "Deployed: 1 new, 0 changed, 0 removed."
        assert result.stderr == ("index contacts_date_birthday_year not made: the transactions using `contacts` "
                                 "did not finish within 1s; run it again when the store is quieter\n")
        other.rollback()
    with opened(project) as store:
        assert store.db.execute("SELECT current_version FROM workflows").fetchall() == [(1,)]
        assert [index.valid for index in indexes.present(store).values()] == [False]
        assert not audience_sql._date_indexed(store.db, "postgresql", SPEC)  # noqa: SLF001 - what the query asks
        found, scan = daemon_query(store)
        assert "contacts_date_birthday_year" not in scan and len(found) >= 3
    result = run("deploy", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-3] == "Plan: 0 new, 0 changed, 0 removed, 1 unchanged, 0 refused."
    assert result.stdout.splitlines()[-1].startswith("index contacts_date_birthday_year made in ")
    assert result.stdout.splitlines()[-1].endswith("; made again: its last build did not finish)")
    with opened(project) as store:
        assert [index.valid for index in indexes.present(store).values()] == [True]
        assert daemon_query(store)[0] == found


@pytest.mark.parametrize("store_kind", ["postgresql"], indirect=True)
def test_on_postgresql_an_invalid_index_is_ignored_by_the_queries_and_made_again(project: Path) -> None:
    """An interrupted CREATE INDEX CONCURRENTLY leaves an invalid index: the queries do not read the field as
    such an index has it, the listing says it, and the next `mauto db index` makes it again."""
    with opened(project) as store:
        store.db.execute(indexes.IndexSpec("country", "string").statement("postgresql"))
        store.db.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'contacts_field_country'::regclass")
        assert audience_sql.indexed_fields(store.db, "postgresql") == frozenset()
        compiled = compile_where("contact.country == 'BE'", FIELDS_OF, "Europe/Paris", NOW, "postgresql",
                                 indexed=audience_sql.indexed_fields(store.db, "postgresql"))
        assert compiled is not None and " cf" in compiled.table  # read through the record, as without an index
    listed = json.loads(run("db", "index", "--format", "json").stdout)
    assert [(index["name"], index["state"]) for index in listed] == [("contacts_field_country", "invalid")]
    result = run("db", "index", "country")
    assert result.stdout.startswith("index contacts_field_country made in ")
    assert result.stdout.endswith("s (for comparisons of `country`; made again: its last build did not finish)\n")
    listed = json.loads(run("db", "index", "--format", "json").stdout)
    assert [(index["name"], index["state"]) for index in listed] == [("contacts_field_country", "ok")]


# --- mauto db index -----------------------------------------------------------------------------------------------

WHERE = "contact.score > 90 and contact.country == 'FR'"


def test_db_index_makes_lists_and_drops_field_indexes_which_contacts_list_uses(project: Path) -> None:
    without = run("contacts", "list", "--where", WHERE, "--format", "json")
    assert without.exit_code == 0, without.output
    expected = [contact["id"] for contact in json.loads(without.stdout)]
    assert expected == ["c095", "c100", "c195", "c200", "c295", "c300", "c395"]
    assert run("db", "index").stdout.endswith(": no audience indexes (`mauto db index FIELD` makes one)\n")
    result = run("db", "index", "score", "country")
    assert result.exit_code == 0, result.output
    made = result.stdout.splitlines()
    assert [line.split(" made in ")[0] for line in made] == ["index contacts_field_score",
                                                             "index contacts_field_country"]
    assert made[0].endswith("s (for comparisons of `score`)") and made[1].endswith("s (for comparisons of `country`)")
    listed = json.loads(run("db", "index", "--format", "json").stdout)
    assert [{key: index[key] for key in ("name", "field", "kind", "every", "state")} for index in listed] == [
        {"name": "contacts_field_country", "field": "country", "kind": "field", "every": None, "state": "ok"},
        {"name": "contacts_field_score", "field": "score", "kind": "field", "every": None, "state": "ok"}]
    assert all(isinstance(index["size"], int) and index["size"] > 0 for index in listed)
    text = run("db", "index").stdout
    assert "contacts_field_country" in text and "contacts_field_score" in text and "ok" in text
    with_index = run("contacts", "list", "--where", WHERE, "--format", "json")
    assert [contact["id"] for contact in json.loads(with_index.stdout)] == expected
    with opened(project) as store:
        compiled = compile_where(WHERE, FIELDS_OF, "Europe/Paris", NOW, store.dialect,
                                 indexed=indexes_read(store))
        assert compiled is not None
        plan = plan_of(store, f"SELECT c.id FROM {compiled.table} WHERE c.erased_at IS NULL AND ({compiled.where})",
                       compiled.parameters)
    assert "contacts_field_score" in plan or "contacts_field_country" in plan, plan
    again = run("db", "index", "country")
    assert (again.exit_code, again.stdout) == (
        0, "index contacts_field_country already there (for comparisons of `country`)\n")
    dropped = run("db", "index", "--drop", "score")
    assert (dropped.exit_code, dropped.stdout) == (0, "index contacts_field_score dropped\n")
    assert [index["name"] for index in json.loads(run("db", "index", "-f", "json").stdout)] == [
        "contacts_field_country"]
    assert run("db", "index", "--drop", "score").stdout == "index contacts_field_score: none to drop\n"
    assert [contact["id"] for contact in json.loads(
        run("contacts", "list", "--where", WHERE, "--format", "json").stdout)] == expected


def indexes_read(store: Store) -> frozenset[str]:
    return audience_sql.indexed_fields(store.db, store.dialect)


def test_db_index_json_output_and_a_field_undeclared_since_can_still_be_dropped(project: Path) -> None:
    made = json.loads(run("db", "index", "country", "--format", "json").stdout)
    assert [{key: change[key] for key in ("action", "name", "field", "kind", "every")} for change in made] == [
        {"action": "made", "name": "contacts_field_country", "field": "country", "kind": "field", "every": None}]
    assert made[0]["seconds"] >= 0
    settings = project / "mauto.yaml"
    settings.write_text(settings.read_text().replace("  country: string\n", ""))
    listed = json.loads(run("db", "index", "--format", "json").stdout)
    assert [(index["name"], index["state"]) for index in listed] == [("contacts_field_country", "undeclared")]
    dropped = json.loads(run("db", "index", "--drop", "country", "-f", "json").stdout)
    assert [change["action"] for change in dropped] == ["dropped"]


def test_a_field_index_made_for_another_type_is_stale_and_made_again(project: Path) -> None:
    assert run("db", "index", "country").exit_code == 0
    settings = project / "mauto.yaml"
    settings.write_text(settings.read_text().replace("country: string", "country: integer"))
    listed = json.loads(run("db", "index", "--format", "json").stdout)
    with opened(project) as store:
        # SQLite reads a number and a text alike: one index serves both; PostgreSQL indexes the number or the text
        stale = store.dialect == "postgresql"
    assert [index["state"] for index in listed] == ["stale" if stale else "ok"]
    result = run("db", "index", "country")
    if stale:
        assert result.stdout.endswith("s (for comparisons of `country`; made again: it did not index `country` "
                                      "as an integer)\n")
    else:
        assert result.stdout == "index contacts_field_country already there (for comparisons of `country`)\n"


@pytest.mark.parametrize(("arguments", "message"), [
    (["countyr"], "FIELD `countyr`: not a contact field of mauto.yaml (`contact_fields`, or a built-in one); did "
                  "you mean `country`?"),
    (["score", "Country"], "FIELD `Country`: not a field name (mauto.yaml's are a lower-case letter or _, then "
                           "lower-case letters, digits or _)"),
    (["score", "x; DROP TABLE contacts"], "FIELD `x; DROP TABLE contacts`: not a field name (mauto.yaml's are a "
                                          "lower-case letter or _, then lower-case letters, digits or _)"),
    (["tags"], "FIELD `tags`: a list: an index serves comparisons of one value (`==`, `<`, `in [...]`), not "
               "`'x' in contact.tags`"),
    (["email"], "FIELD `email`: a column of the contacts table (email, phone, email_consent, sms_consent, "
                "created_at), not one of the fields kept in `contacts.fields`, which are what `mauto db index` "
                "indexes"),
    (["id"], "FIELD `id`: the contact's id is the table's key: it has its index"),
    (["--drop", "ghost"], "FIELD `ghost`: not a contact field of mauto.yaml (`contact_fields`, or a built-in one)"),
    (["--drop"], "--drop: name the FIELDs whose indexes to drop"),
])
def test_bad_fields_are_refused_naming_them_and_nothing_is_written(project: Path, arguments: list[str],
                                                                   message: str) -> None:
    result = run("db", "index", *arguments)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", message + "\n")
    with opened(project) as store:
        assert indexes.present(store) == {}  # not even `score`, named before the bad one


def test_deploy_in_code_reports_what_it_did_to_the_indexes(project: Path) -> None:
    """mauto.deploy.deploy's result carries the index changes (`DeployResult.indexes`, in its JSON too)."""
    loaded = load_project(project / "mauto.yaml")
    with opened(project) as store:
        result = deploy(loaded, store, NOW)
    assert [(change.action, change.name) for change in result.indexes] == [("made", "contacts_date_birthday_year")]
    assert [change["action"] for change in result.to_dict()["indexes"]] == ["made"]
