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
