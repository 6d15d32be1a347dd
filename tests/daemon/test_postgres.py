"""The PostgreSQL store (mauto/store/postgres.py) on a real cluster (tests/pg.py): what is its own. The daemon's
and the driver's tests run on it as well (`store_kind` in tests/conftest.py), parity included.

Here: the translation of the store's SQL, the commands on a `postgresql://` store, its errors, and the tick's
advisory lock."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from mauto.cli import app
from mauto.store import migrations, open_store
from mauto.store.postgres import BASELINE, PgStore, translate
from mauto.store.sqlite import StoreError
from tests.daemon.harness import T0, Daemon, mauto, write
from tests.pg import Cluster

# --- one SQL for both ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sqlite", "postgresql"), [
    ("SELECT * FROM t WHERE a = ? AND b LIKE 'x%?'", "SELECT * FROM t WHERE a = %s AND b LIKE 'x%%?'"),
    ("INSERT OR IGNORE INTO t (a) VALUES (?)", "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING"),
    ("INSERT OR IGNORE INTO t (a) VALUES (:a) RETURNING id",
     "INSERT INTO t (a) VALUES (%(a)s) ON CONFLICT DO NOTHING RETURNING id"),
    ("SELECT json_extract(data, '$.a.b') FROM t", "SELECT ((data)::jsonb #>> '{a,b}') FROM t"),
    ("SELECT json_extract(p, ?) FROM t", "SELECT ((p)::jsonb #>> string_to_array(substr(%s, 3), '.')) FROM t"),
    ("SELECT 1 FROM t WHERE c IS ? AND d IS NOT ?",
     "SELECT 1 FROM t WHERE c IS NOT DISTINCT FROM %s AND d IS DISTINCT FROM %s"),
    ("SELECT count(*) FROM [workflows]", 'SELECT count(*) FROM "workflows"'),
    ("SELECT key FROM temp.import_seen", "SELECT key FROM pg_temp.import_seen"),
    ("SELECT json_group_array(x) FROM t GROUP BY y", "SELECT (json_agg(x)::text) FROM t GROUP BY y"),
    ("SELECT 1 WHERE '2026-12-01T09:00:00' > ?", "SELECT 1 WHERE '2026-12-01T09:00:00' > %s"),
    ("SELECT id FROM messages WHERE ref = ? COLLATE NOCASE AND ref IS NOT NULL",
     "SELECT id FROM messages WHERE lower(ref) = lower(%s) AND ref IS NOT NULL"),
    ("SELECT id FROM tasks WHERE mauto_casefold(assignee) = mauto_casefold(?)",
     'SELECT id FROM tasks WHERE lower((assignee) COLLATE "und-x-icu") = lower((%s) COLLATE "und-x-icu")'),
])
def test_the_store_s_sql_is_translated_once_for_postgresql(sqlite: str, postgresql: str) -> None:
    assert translate(sqlite) == postgresql


# --- the store -----------------------------------------------------------------------------------------------


def test_a_new_store_has_sqlite_s_tables_and_columns_and_a_key_of_its_own(pg_cluster: Cluster, tmp_path: Path) -> None:
    from mauto.store.sqlite import Store

    url = pg_cluster.url()
    with PgStore(url, create=True) as store, Store(tmp_path / "mauto.db", create=True) as lite:
        assert store.version == migrations.latest() == lite.version
        assert store.applied == [BASELINE, *range(BASELINE + 1, migrations.latest() + 1)]  # each later one's half
        columns = {table: [row[1] for row in lite.db.execute(f"PRAGMA table_info({table})")]
                   for table in lite.info().counts}
        for table, names in columns.items():
            found = [row[0] for row in store.db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND column_name <> 'rowid' "
                "ORDER BY ordinal_position", [table])]
            assert found == names, table
        [(secret,)] = store.db.execute("SELECT value FROM runner_state WHERE key = 'unsubscribe_secret'").fetchall()
        assert len(secret) >= 40
        # text orders as SQLite and Python order it (the "C" collation), whatever the database's locale
        store.db.execute("CREATE TEMP TABLE words (w TEXT COLLATE \"C\")")
        words = ["b", "B", "a", "é", "Z", "_"]
        store.db.conn.executemany("INSERT INTO temp.words (w) VALUES (?)", [(word,) for word in words])
        assert [row[0] for row in store.db.execute("SELECT w FROM temp.words ORDER BY w")] == sorted(words)
        contacts_collation = store.db.execute(
            "SELECT collation_name FROM information_schema.columns WHERE table_name = 'contacts' "
            "AND column_name = 'id'").fetchone()[0]
        assert contacts_collation == "C"


def test_a_deployed_version_and_a_release_stay_immutable(daemon: Daemon, store_kind: str) -> None:
    store = daemon.store
    for sql in ("UPDATE workflow_versions SET source = 'x'", "DELETE FROM releases"):
        with pytest.raises(Exception, match="immutable"), store.transaction() as db:
            db.execute(sql)


def test_opens_and_clicks_are_kept_by_the_trigger_as_on_sqlite(daemon: Daemon, store_kind: str) -> None:
    daemon.event("ana", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1))
    [(ref, workflow, step)] = daemon.rows("SELECT ref, workflow, step FROM messages")
    message = daemon.rows("SELECT id FROM messages")[0][0]
    for name, prefetched in (("email_opened", True), ("email_opened", False), ("email_clicked", False)):
        daemon.event("ana", name, T0 + timedelta(minutes=5), workflow=workflow, step=step, message=message,
                     prefetched=prefetched)
    daemon.event("ana", "email_opened", T0 + timedelta(minutes=6), workflow=workflow)  # no message: not kept
    rows = daemon.rows("SELECT kind, human FROM message_feedback ORDER BY kind")
    assert rows == [("email_clicked", 1), ("email_opened", 1)]


# --- the commands on a postgresql:// store --------------------------------------------------------------------


def _project(root: Path, store: str, extra: str = "") -> Path:
    write(root / "mauto.yaml", f"store: {store}\ntimezone: UTC\n{extra}")
    return root / "mauto.yaml"


def _run(project: Path, *args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["-p", str(project), *args], env=env or {})


def test_db_init_and_info_on_postgresql(pg_cluster: Cluster, tmp_path: Path) -> None:
    url = pg_cluster.url()
    project = _project(tmp_path, url)
    result = _run(project, "db", "init")
    assert result.exit_code == 0, result.output
    result = _run(project, "db", "info", "--format", "json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["schema_version"] == migrations.latest() and info["journal_mode"] == "postgresql"
    assert info["path"] == url and info["rows"]["contacts"] == 0


def test_a_password_in_the_url_is_refused_at_its_line(pg_cluster: Cluster, tmp_path: Path) -> None:
    url = pg_cluster.url().replace("postgres@", "postgres:hunter2@")
    project = _project(tmp_path, url)
    result = _run(project, "db", "info")
    assert result.exit_code == 2
    assert "mauto.yaml:1:8: `store`: the URL carries a password" in result.output
    assert "hunter2" not in result.output


def test_the_password_comes_from_the_variable_store_password_env_names(pg_cluster: Cluster, tmp_path: Path) -> None:
    project = _project(tmp_path, pg_cluster.url(), "store_password_env: MAUTO_TEST_PG_PASSWORD\n")
    result = _run(project, "db", "init")
    assert result.exit_code == 2
    assert "the environment variable MAUTO_TEST_PG_PASSWORD (store_password_env in mauto.yaml) is not set" in \
        result.output
    result = _run(project, "db", "init", env={"MAUTO_TEST_PG_PASSWORD": "anything"})  # trust auth: any password
    assert result.exit_code == 0, result.output


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    project = _project(tmp_path, "postgresql://mauto@127.0.0.1:1/mauto")
    result = _run(project, "db", "info")
    assert result.exit_code == 2
    assert result.output.startswith("postgresql://mauto@127.0.0.1:1/mauto: cannot connect to PostgreSQL:")
    assert "Traceback" not in result.output


def test_a_database_with_tables_of_its_own_is_not_taken(pg_cluster: Cluster) -> None:
    url = pg_cluster.url()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StoreError, match="has tables of its own and no mauto schema"):
        PgStore(url, create=True)
    with pytest.raises(StoreError, match="no mauto store in this database; create it with `mauto db init`"):
        PgStore(url)


def test_a_store_from_a_newer_mauto_is_refused_untouched(pg_cluster: Cluster) -> None:
    url = pg_cluster.url()
    PgStore(url, create=True).close()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("UPDATE mauto_schema SET version = 99")
    with pytest.raises(StoreError, match="schema version 99, written by a newer mauto"):
        open_store(url)


# --- one tick at a time: the advisory lock ---------------------------------------------------------------------


def _hold_tick_lock(url: str) -> psycopg.Connection:
    connection = psycopg.connect(url, autocommit=True)
    connection.execute("SELECT pg_advisory_lock(hashtext('mauto:tick')::bigint)")
    return connection


@pytest.mark.parametrize("store_kind", ["postgresql"])
def test_a_second_tick_exits_at_once_naming_the_advisory_lock(fresh_daemon: Daemon, store_kind: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from mauto.daemon import lock

    original = lock.AdvisoryTickLock.acquire  # erase waits 60 s for a tick to end: 0.3 s here
    monkeypatch.setattr(lock.AdvisoryTickLock, "acquire", lambda self, wait=0.0, doing="": original(self, 0.3, doing))
    holder = _hold_tick_lock(str(fresh_daemon.location))
    try:
        result = mauto(fresh_daemon, "run", "--once", "--now", "2026-12-01T09:01:00Z")
        assert result.exit_code == 1, result.output
        assert "another tick is running against this store (it holds the advisory lock `mauto:tick`)" in \
            result.output
        result = mauto(fresh_daemon, "contacts", "erase", "ana", "--yes")
        assert result.exit_code == 1
        assert "nothing was erased" in result.output
    finally:
        holder.close()  # as when the holder's process dies: PostgreSQL ends the session and frees the lock
    result = mauto(fresh_daemon, "run", "--once", "--now", "2026-12-01T09:01:00Z")
    assert result.exit_code == 0, result.output


def test_every_migration_after_the_baseline_has_its_postgresql_half() -> None:
    from mauto.store.postgres import PG_MIGRATIONS

    assert set(PG_MIGRATIONS) == {version for version in migrations.MIGRATIONS if version > BASELINE}
