"""`mauto keys`: API keys for `mauto serve`, shown once, kept as a hash, revoked by name. Real store files."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mauto.cli import app
from mauto.store import open_store
from mauto.store.keys import key_name

pytestmark = pytest.mark.usefixtures("cli_environment")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_location: str) -> Path:
    """A project whose store is SQLite's `data/mauto.db` or a PostgreSQL database (`store_location`)."""
    (tmp_path / "mauto.yaml").write_text(f"timezone: UTC\nstore: {store_location}\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_a_key_is_shown_once_and_only_its_hash_is_kept(project: Path, store_location: str) -> None:
    made = run("keys", "create", "website")
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert key.startswith("mk_") and len(key) == 46 and made.stdout == key + "\n"
    assert made.stderr == ("key `website` made; it is shown this once: keep it where secrets are kept "
                           "(`mauto keys revoke website` if it leaks)\n")
    with open_store(store_location) as store:
        raw = ((project / "data" / "mauto.db").read_bytes() if store.dialect == "sqlite"
               else repr(store.db.execute("SELECT * FROM api_keys").fetchall()).encode())
        assert key.encode() not in raw and key[10:].encode() not in raw
        [(digest,)] = store.db.execute("SELECT hash FROM api_keys").fetchall()
        assert digest == hashlib.sha256(key.encode()).hexdigest()
        assert key_name(store.db, key) == "website"
        assert key_name(store.db, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
        assert key_name(store.db, "Bearer " + key) is None and key_name(store.db, "") is None


def test_list_revoke_and_a_new_key_under_the_same_name(project: Path, store_location: str) -> None:
    first = run("keys", "create", "website").stdout.strip()
    assert run("keys", "create", "crm-sync").exit_code == 0
    listed = json.loads(run("keys", "list", "--format", "json").stdout)
    assert [(row["name"], row["prefix"], row["revoked_at"]) for row in listed] == [
        ("website", first[:10], None), ("crm-sync", listed[1]["prefix"], None)]
    text = run("keys", "list").stdout
    assert "website" in text and f"{first[:10]}…" in text and "in use" in text and first not in text
    revoked = run("keys", "revoke", "website")
    assert (revoked.exit_code, revoked.stdout) == (0, "key `website` revoked\n")
    with open_store(store_location) as store:
        assert key_name(store.db, first) is None
    second = run("keys", "create", "website").stdout.strip()
    assert second != first
    states = [(row["name"], row["revoked_at"] is None) for row in json.loads(run("keys", "list", "-f", "json").stdout)]
    assert states == [("website", False), ("crm-sync", True), ("website", True)]


def test_bad_names_and_twice_the_same_name_are_errors_that_write_nothing(project: Path, store_location: str) -> None:
    assert run("keys", "create", "website").exit_code == 0
    twice = run("keys", "create", "website")
    assert (twice.exit_code, twice.stderr) == (2, f"{store_location}: a key named `website` exists: revoke it "
                                                  "first (`mauto keys revoke website`), or choose another name\n")
    for bad in ("Website", "_x", "a b", "x" * 65, "é"):
        result = run("keys", "create", bad)
        assert result.exit_code == 2 and result.stderr.startswith(f"key name `{bad}`: 1 to 64 characters"), bad
    missing = run("keys", "revoke", "nobody")
    assert (missing.exit_code, missing.stderr) == (2, f"{store_location}: no key named `nobody` in use "
                                                      "(`mauto keys list` shows them)\n")
    assert len(json.loads(run("keys", "list", "-f", "json").stdout)) == 1


@pytest.mark.sqlite_only("removes the SQLite file")
def test_no_keys_yet(project: Path) -> None:
    assert run("keys", "create", "x").exit_code == 0
    assert run("keys", "revoke", "x").exit_code == 0
    (project / "data" / "mauto.db").unlink()
    for suffix in ("-wal", "-shm"):
        (project / "data" / f"mauto.db{suffix}").unlink(missing_ok=True)
    result = run("keys", "list")
    assert result.exit_code == 2 and "no store here" in result.stderr
