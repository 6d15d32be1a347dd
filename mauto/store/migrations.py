"""Numbered forward migrations; the schema version lives in `PRAGMA user_version`.

In sqlite-utils' migrations style (`sqlite_utils/migrations.py`): each migration is a
function registered with a decorator and applied once, inside a transaction together
with the record that it ran. The record here is `PRAGMA user_version`, which SQLite
keeps in the file's header and rolls back with the transaction, so a migration that
fails leaves the file exactly as it was. Never edit a released migration: add the next
number.
"""
from __future__ import annotations

from typing import Callable

from sqlite_utils import Database

Migration = Callable[[Database], None]
MIGRATIONS: dict[int, Migration] = {}


def migration(version: int) -> Callable[[Migration], Migration]:
    """Register `function` as the migration that takes the schema to `version`."""

    def register(function: Migration) -> Migration:
        if version in MIGRATIONS:
            raise ValueError(f"migration {version} is registered twice")
        MIGRATIONS[version] = function
        return function

    return register


def latest() -> int:
    """The schema version this mauto writes."""
    return max(MIGRATIONS, default=0)


def pending(current: int) -> list[int]:
    return sorted(version for version in MIGRATIONS if version > current)


@migration(1)
def contacts_events_coupons_suppressions(db: Database) -> None:
    # Contacts: the columns the store itself searches or the sender checks (email, phone,
    # consents, times); every other field, built-in or declared in mauto.yaml, in `fields`
    # as JSON, so that declaring a field in mauto.yaml needs no migration.
    db.execute("""
        CREATE TABLE contacts (
            id TEXT PRIMARY KEY,
            email TEXT,
            phone TEXT,
            email_consent INTEGER NOT NULL DEFAULT 0,
            sms_consent INTEGER NOT NULL DEFAULT 0,
            fields TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            erased_at TEXT
        )""")
    db.execute("CREATE INDEX contacts_email ON contacts (email)")
    # Events: `seq` never reused (AUTOINCREMENT), so the daemon can keep a cursor on it;
    # `id` is the sender's own id, unique when given, which makes ingestion idempotent.
    # Contact ids change only on erasure: ON UPDATE CASCADE carries the events along.
    db.execute("""
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT UNIQUE,
            contact TEXT NOT NULL REFERENCES contacts (id) ON UPDATE CASCADE,
            name TEXT NOT NULL,
            at TEXT NOT NULL,
            properties TEXT NOT NULL DEFAULT '{}',
            received_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX events_contact_at ON events (contact, at)")
    db.execute("CREATE INDEX events_name_at ON events (name, at)")
    db.execute("""
        CREATE TABLE coupons (
            pool TEXT NOT NULL,
            code TEXT NOT NULL,
            assigned_to TEXT REFERENCES contacts (id) ON UPDATE CASCADE,
            assigned_at TEXT,
            loaded_at TEXT NOT NULL,
            PRIMARY KEY (pool, code)
        )""")
    db.execute("CREATE INDEX coupons_free ON coupons (pool, assigned_to)")
    # Suppressions hold no address, only the SHA-256 of its normalised form: an erased
    # contact's address can still be refused without being kept.
    db.execute("""
        CREATE TABLE suppressions (
            address_hash TEXT NOT NULL,
            channel TEXT NOT NULL,
            reason TEXT NOT NULL,
            at TEXT NOT NULL,
            PRIMARY KEY (address_hash, channel)
        )""")


@migration(2)
def workflow_versions_workflows_enrollments(db: Database) -> None:
    # Every deployed version, whole: the file as written (`source`), its parsed content
    # (`data`, JSON) and the hash of that content. Written once, never changed: the
    # triggers refuse any UPDATE or DELETE, so a version number always means one content.
    db.execute("""
        CREATE TABLE workflow_versions (
            id TEXT NOT NULL,
            version INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            source TEXT NOT NULL,
            data TEXT NOT NULL,
            deployed_at TEXT NOT NULL,
            git_commit TEXT,
            git_author TEXT,
            PRIMARY KEY (id, version)
        )""")
    for action in ("UPDATE", "DELETE"):
        db.execute(f"""
            CREATE TRIGGER workflow_versions_no_{action.lower()} BEFORE {action} ON workflow_versions
            BEGIN SELECT RAISE(ABORT, 'a deployed workflow version is immutable'); END""")
    # What runs: one row per workflow id, pointing at its current version.
    db.execute("""
        CREATE TABLE workflows (
            id TEXT PRIMARY KEY,
            current_version INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('active', 'paused', 'removed')),
            updated_at TEXT NOT NULL,
            FOREIGN KEY (id, current_version) REFERENCES workflow_versions (id, version)
        )""")
    # Contacts inside a workflow, pinned to the version they entered (the daemon writes
    # them; `data` is Enrollment.to_dict(), the columns are what the store searches).
    db.execute("""
        CREATE TABLE enrollments (
            id TEXT PRIMARY KEY,
            workflow TEXT NOT NULL,
            version INTEGER NOT NULL,
            contact TEXT NOT NULL REFERENCES contacts (id) ON UPDATE CASCADE,
            state TEXT NOT NULL,
            position TEXT,
            wake_at TEXT,
            data TEXT NOT NULL DEFAULT '{}',
            entered_at TEXT NOT NULL,
            ended_at TEXT,
            reason TEXT
        )""")
    db.execute("CREATE INDEX enrollments_workflow_version_state ON enrollments (workflow, version, state)")
    db.execute("CREATE INDEX enrollments_wake_at ON enrollments (wake_at)")
