"""`mauto db copy`: a store copied into another, SQLite and PostgreSQL either way, checked row for row, refusing
a target that is not empty, on real stores: a SQLite store the daemon's harness filled (ticks against a real SMTP
server and HTTP server on 127.0.0.1, events with feedback, coupons, an API key, a second release) and a real
PostgreSQL (tests/pg.py)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mauto.channels import build_transports
from mauto.config import load_project
from mauto.daemon.lock import RunnerBusy, tick_lock
from mauto.daemon.tick import tick
from mauto.deploy import deploy
from mauto.store import Store, StoreError, migrations, open_store
from mauto.store.copy import CopyRefused, copy_store, schema_tables
from mauto.store.coupons import load_coupons, take_coupon
from mauto.store.events import ingest_events
from mauto.store.keys import create_key
from tests.daemon.harness import DEPLOYED, T0, Daemon, mauto, write
from tests.pg import Cluster
from tests.servers import HttpServer, SmtpServer


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Daemon]:
    """A SQLite store with rows in most tables: ticks sent mail and called the CRM webhook, an open came back
    (message_feedback), coupons were loaded and one handed out, an API key made, a template changed and
    deployed again (a second release)."""
    with SmtpServer() as smtp, HttpServer() as http:
        http.respond("/crm", 200, {"id": "crm-1"})
        daemon = Daemon(tmp_path / "source", smtp, http)
        daemon.tick(T0 - timedelta(hours=1))
        daemon.event("ana", "signed_up", T0)
        daemon.event("ben", "signed_up", T0)
        daemon.event("ana", "ordered", T0)
        daemon.tick(T0 + timedelta(minutes=1))
        daemon.tick(T0 + timedelta(minutes=2))
        [(ref,)] = daemon.rows("SELECT ref FROM messages WHERE contact = 'ana' AND step = 'hello'")
        daemon.event("ana", "email_opened", T0 + timedelta(minutes=5), workflow="promo", step="hello", message=ref)
        daemon.tick(T0 + timedelta(minutes=6))
        codes = write(tmp_path / "codes.txt", "".join(f"SPRING-{number:03}\n" for number in range(1, 6)))
        load_coupons(daemon.store, "spring", codes)
        assert take_coupon(daemon.store, "spring", "ben", T0 + timedelta(minutes=7)) == "SPRING-001"
        create_key(daemon.store, "website", T0)
        write(daemon.root / "templates" / "promo" / "again.email.html",
              '---\nsubject: "Again {{ contact.first_name }}"\n---\n<p>again</p>'
              '<a href="{{ unsubscribe_url }}">u</a>\n')
        daemon.project = load_project(daemon.root / "mauto.yaml")
        deploy(daemon.project, daemon.store, DEPLOYED + timedelta(days=1))
        yield daemon
        daemon.store.close()


def dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, every column (the coupons' rowid too), in key order, bytes as bytes."""
    rows = {}
    for table in schema_tables(store.version):
        columns = ", ".join(column if column == "rowid" else f'"{column}"' for column in table.columns)
        order = ", ".join(f'"{column}"' for column in table.key)
        rows[table.name] = [tuple(bytes(value) if isinstance(value, memoryview) else value for value in row)
                            for row in store.db.execute(f'SELECT {columns} FROM "{table.name}" ORDER BY {order}')]
    return rows


def test_the_source_has_rows_in_the_tables_that_matter(source: Daemon) -> None:
    filled = {table for table, rows in dump(source.store).items() if rows}
    assert {"contacts", "events", "coupons", "workflow_versions", "workflows", "enrollments", "messages", "calls",
            "step_log", "runner_state", "api_keys", "message_feedback", "releases", "release_files",
            "release_blobs"} <= filled


def test_sqlite_to_postgresql_and_back_is_the_same_store(source: Daemon, pg_cluster: Cluster,
                                                         tmp_path: Path) -> None:
    url = pg_cluster.url()
    seen: list[tuple[str, int]] = []
    result = copy_store(source.store, url, shown_target="pg", progress=lambda table, rows: seen.append((table, rows)))
    before = dump(source.store)
    assert result.counts == {table: len(rows) for table, rows in before.items()}
    assert list(result.counts)[-1] == "message_feedback"
    assert result.to_dict()["total_rows"] == sum(len(rows) for rows in before.values())
    assert ("messages", len(before["messages"])) in seen
    with open_store(url) as copied:
        assert dump(copied) == before
        back = tmp_path / "back.db"
        again = copy_store(copied, back, shown_target="back.db")
    assert again.counts == result.counts
    with Store(back) as final:
        assert dump(final) == before
        # the events' AUTOINCREMENT high-water mark came along
        assert final.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchall() == \
            source.store.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchall()


def test_a_copied_postgresql_store_ticks_as_the_sqlite_one_would(source: Daemon, pg_cluster: Cluster) -> None:
    url = pg_cluster.url()
    copy_store(source.store, url, shown_target="pg")
    later = T0 + timedelta(days=1, hours=1)  # ana's and ben's `again` are due
    already = len(source.smtp.delivered())
    source.tick(later)
    from_sqlite = source.smtp.delivered()[already:]
    with open_store(url, lambda: later) as copied:
        transports = build_transports(source.project, {"MAUTO_TEST_SMS_TOKEN": "t0k3n"})
        tick(source.project, copied, later, transports, log=lambda kind, data: None)
        from_postgresql = source.smtp.delivered()[already + len(from_sqlite):]
        statuses = dict(copied.db.execute("SELECT key, status FROM messages ORDER BY id").fetchall())
    assert len(from_sqlite) == 2
    assert sorted(message.content for message in from_postgresql) == \
        sorted(message.content for message in from_sqlite)
    assert statuses == source.statuses()


def _populated(tmp_path: Path, name: str) -> Path:
    """A second SQLite store with one contact of its own."""
    path = tmp_path / name
    with Store(path, create=True) as other, other.transaction() as db:
        db.execute("INSERT INTO contacts (id, created_at, updated_at) VALUES ('zoe', 'x', 'x')")
    return path


def test_a_postgresql_target_that_is_not_empty_is_refused_untouched(source: Daemon, pg_cluster: Cluster,
                                                                   tmp_path: Path) -> None:
    url = pg_cluster.url()
    with Store(_populated(tmp_path, "other.db")) as other:
        copy_store(other, url, shown_target="pg")
    with open_store(url) as target:
        before = dump(target)
    with pytest.raises(StoreError) as refused:
        copy_store(source.store, url, shown_target="postgresql://127.0.0.1/t")
    assert str(refused.value) == (
        "postgresql://127.0.0.1/t: not empty: table `contacts` has 1 row; mauto db copy writes only into an empty "
        "store (a new file or database, or one `mauto db init` made); nothing was written")
    with open_store(url) as target:
        assert dump(target) == before


def test_a_sqlite_target_that_is_not_empty_is_refused_untouched(source: Daemon, tmp_path: Path) -> None:
    path = _populated(tmp_path, "other.db")
    with Store(path) as target:
        before = dump(target)
    with pytest.raises(StoreError, match=r"^other.db: not empty: table `contacts` has 1 row; .*nothing was written$"):
        copy_store(source.store, path, shown_target="other.db")
    with Store(path) as target:
        assert dump(target) == before


def test_a_runner_state_row_besides_the_secret_is_not_empty(source: Daemon, tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with Store(path, create=True) as other, other.transaction() as db:
        db.execute("INSERT INTO runner_state (key, value) VALUES ('winners_checked', '2026-12-01')")
    with pytest.raises(StoreError, match="not empty: table `runner_state` has 1 row"):
        copy_store(source.store, path, shown_target="other.db")
    assert path.exists()  # not ours to remove


def test_an_empty_store_made_by_db_init_is_a_target(source: Daemon, tmp_path: Path) -> None:
    path = tmp_path / "init.db"
    Store(path, create=True).close()
    copy_store(source.store, path, shown_target="init.db")
    with Store(path) as copied:
        assert dump(copied) == dump(source.store)


def test_a_target_at_another_schema_version_is_refused(source: Daemon, pg_cluster: Cluster, tmp_path: Path) -> None:
    url = pg_cluster.url()
    open_store(url, create=True).close()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("UPDATE mauto_schema SET version = %s", [migrations.latest() + 1])
    with pytest.raises(StoreError, match=f"^pg: this store has schema version {migrations.latest() + 1}, written "
                                         "by a newer mauto"):
        copy_store(source.store, url, shown_target="pg")
    path = tmp_path / "newer.db"
    Store(path, create=True).close()
    Store(path).db.execute(f"PRAGMA user_version = {migrations.latest() + 1}")
    with pytest.raises(StoreError, match="^newer.db: this store has schema version .*the file was not changed"):
        copy_store(source.store, path, shown_target="newer.db")
    assert path.exists()


def test_an_older_target_is_refused_and_not_migrated(source: Daemon, pg_cluster: Cluster) -> None:
    url = pg_cluster.url()
    open_store(url, create=True).close()
    older = migrations.latest() - 1  # as a store written by the mauto before: its newest migration not applied
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP TABLE due_queue")
        connection.execute("UPDATE mauto_schema SET version = %s", [older])
    with pytest.raises(StoreError, match=f"^pg: this store has schema version {older}; this mauto needs "
                                         f"{migrations.latest()}: run `mauto db migrate`$"):
        copy_store(source.store, url, shown_target="pg")
    with psycopg.connect(url, autocommit=True) as connection:
        assert connection.execute("SELECT version FROM mauto_schema").fetchone() == (older,)
        assert connection.execute("SELECT to_regclass('due_queue')").fetchone() == (None,)


def test_what_a_store_counts_goes_on_after_the_copy(source: Daemon, pg_cluster: Cluster, tmp_path: Path) -> None:
    url = pg_cluster.url()
    copy_store(source.store, url, shown_target="pg")
    [(last_seq,)] = source.rows("SELECT max(seq) FROM events")
    [(last_coupon,)] = source.rows("SELECT max(rowid) FROM coupons")
    with open_store(url) as copied:
        ingest = write(tmp_path / "new.jsonl", json.dumps({"contact": "cy", "event": "ordered",
                                                             "at": T0.isoformat()}) + "\n")
        assert ingest_events(copied, ingest, catalogue=source.project.events, zone="UTC").ok
        assert copied.db.execute("SELECT max(seq) FROM events").fetchone()[0] == last_seq + 1
        load_coupons(copied, "summer", write(tmp_path / "summer.txt", "SUMMER-1\n"))
        assert copied.db.execute("SELECT rowid FROM coupons WHERE code = 'SUMMER-1'").fetchone()[0] == last_coupon + 1
        create_key(copied, "crm", T0)  # an identity column with rows: api_keys.id
        # an event handed out and gone (by hand): its seq is not handed out again, in PostgreSQL or in SQLite
        copied.db.execute("DELETE FROM events WHERE seq = ?", [last_seq + 1])
        back = tmp_path / "back.db"
        copy_store(copied, back, shown_target="back.db")
    with Store(back) as final:
        assert ingest_events(final, ingest, catalogue=source.project.events, zone="UTC").ok
        assert final.db.execute("SELECT max(seq) FROM events").fetchone()[0] == last_seq + 2
        url_again = pg_cluster.url()
        copy_store(final, url_again, shown_target="pg")
    with open_store(url_again) as twice:
        assert ingest_events(twice, write(tmp_path / "more.jsonl", json.dumps(
            {"contact": "cy", "event": "signed_up", "at": T0.isoformat()}) + "\n"),
            catalogue=source.project.events, zone="UTC").ok
        assert twice.db.execute("SELECT max(seq) FROM events").fetchone()[0] == last_seq + 3


def test_a_copy_that_differs_is_rolled_back(source: Daemon, pg_cluster: Cluster) -> None:
    url = pg_cluster.url()
    open_store(url, create=True).close()
    with psycopg.connect(url, autocommit=True) as connection:  # the target's server changes a value on insert
        connection.execute("""CREATE FUNCTION garble() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF new.id = 'ben' THEN new.email := 'ben@example.org'; END IF; RETURN new; END $$""")
        connection.execute("CREATE TRIGGER garble BEFORE INSERT ON contacts FOR EACH ROW EXECUTE FUNCTION garble()")
    with open_store(url) as target:
        before = dump(target)
    with pytest.raises(CopyRefused) as failed:
        copy_store(source.store, url, shown_target="pg")
    assert str(failed.value) == (
        "pg: the copy of table `contacts` does not match the source: the row id='ben' differs in column `email`: "
        "'ben@example.com' in the source, 'ben@example.org' in the copy; the copy was rolled back, nothing was "
        "written")
    with open_store(url) as target:
        assert dump(target) == before
        assert sum(len(rows) for rows in before.values()) == 1  # the target's own unsubscribe_secret


def test_a_value_of_another_type_is_a_difference(source: Daemon, tmp_path: Path) -> None:
    path = tmp_path / "init.db"
    with Store(path, create=True) as target:  # the target's own trigger turns ana's consent 1 into the text 'true'
        target.db.execute("CREATE TRIGGER garble AFTER INSERT ON contacts WHEN new.id = 'ana' BEGIN "
                          "UPDATE contacts SET email_consent = 'true' WHERE id = 'ana'; END")
        before = dump(target)
    with pytest.raises(CopyRefused) as failed:
        copy_store(source.store, path, shown_target="init.db")
    assert str(failed.value) == (
        "init.db: the copy of table `contacts` does not match the source: the row id='ana' differs in column "
        "`email_consent`: 1 in the source, 'true' in the copy; the copy was rolled back, nothing was written")
    with Store(path) as target:
        assert dump(target) == before


def test_the_copy_waits_for_no_tick(source: Daemon, tmp_path: Path) -> None:
    """The caller's lock (the CLI's: the source's tick lock) is taken before anything is read or written."""
    holder = tick_lock(source.store)
    assert holder is not None
    holder.acquire()
    try:
        with pytest.raises(RunnerBusy, match="another tick is running against this store"):
            copy_store(source.store, tmp_path / "copy.db", shown_target="copy.db", lock=tick_lock(source.store))
    finally:
        holder.release()
    assert not (tmp_path / "copy.db").exists()


def test_a_value_postgresql_refuses_stops_the_copy_with_the_table_named(tmp_path: Path, pg_cluster: Cluster) -> None:
    with Store(tmp_path / "nul.db", create=True) as nul:
        with nul.transaction() as db:
            db.execute("INSERT INTO contacts (id, created_at, updated_at) VALUES (?, 'x', 'x')", ["a\x00b"])
        url = pg_cluster.url()
        with pytest.raises(StoreError, match=r"^pg: cannot copy table `contacts` into it: .*; nothing was written$"):
            copy_store(nul, url, shown_target="pg")
    with open_store(url) as target:
        assert target.info().counts["contacts"] == 0


def test_an_interrupted_copy_into_a_new_sqlite_file_leaves_no_file(source: Daemon, tmp_path: Path) -> None:
    path = tmp_path / "new" / "copy.db"

    def interrupt(table: str, rows: int) -> None:
        if table == "messages":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_store(source.store, path, shown_target="copy.db", progress=interrupt)
    assert sorted(path.parent.iterdir()) == []


def test_a_target_that_is_not_a_store_is_refused(source: Daemon, tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", "hello\n")
    with pytest.raises(StoreError, match="^notes.txt: not a mauto store"):
        copy_store(source.store, path, shown_target="notes.txt")
    assert path.read_text() == "hello\n"
    with pytest.raises(StoreError, match="^pg: cannot connect to PostgreSQL"):
        copy_store(source.store, "postgresql://nobody@127.0.0.1:1/none", shown_target="pg")


# --- through the CLI (`mauto db copy`, wired in mauto/cli.py) -----------------------------------------------------



def test_cli_copies_and_prints_the_counts(source: Daemon, pg_cluster: Cluster) -> None:
    url = pg_cluster.url()
    result = mauto(source, "db", "copy", "--to", url)
    assert result.exit_code == 0, result.output
    assert "checked row for row" in result.output
    assert "contacts" in result.output and "message_feedback" in result.output
    with open_store(url) as copied:
        assert dump(copied) == dump(source.store)
    again = mauto(source, "db", "copy", "--to", url)
    assert again.exit_code == 1
    assert "not empty: table `contacts` has 3 rows" in again.output
    assert "Traceback" not in again.output


def test_cli_json(source: Daemon, tmp_path: Path) -> None:
    result = mauto(source, "db", "copy", "--to", str(tmp_path / "copy.db"), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["rows"]["contacts"] == 3
    assert data["checked"] is True


def test_cli_bad_url(source: Daemon) -> None:
    result = mauto(source, "db", "copy", "--to", "postgresql://nobody@127.0.0.1:1/none")
    assert result.exit_code in (1, 2)
    assert "cannot connect to PostgreSQL" in result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
