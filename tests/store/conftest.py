from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mauto.config import BUILTIN_EVENTS, BUILTIN_FIELDS
from mauto.store import Store, open_store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FIELDS = {**BUILTIN_FIELDS, "first_name": "string", "birthday": "date", "last_order_at": "datetime",
          "tier": {"enum": ["bronze", "gold"]}}
CATALOGUE = {**BUILTIN_EVENTS, "order_placed": {"total": "number"}, "signed_up": {"source": "string"}}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, moment: datetime = NOW) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def cache_in_tmp_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A PostgreSQL store keeps its rendered releases under the user's cache (`PgStore.local_folder`): in
    tmp_path here, so that the tests write nothing outside it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def store_location(store_kind: str, request: pytest.FixtureRequest) -> str:
    """The `store:` of a CLI test's project, on each store (tests/conftest.py's `store_kind`): `data/mauto.db`
    (SQLite, beside mauto.yaml), or a fresh PostgreSQL database's URL (the name messages give it too)."""
    if store_kind == "postgresql":
        return str(request.getfixturevalue("pg_cluster").url())
    return "data/mauto.db"


@pytest.fixture
def store(tmp_path: Path, clock: Clock):
    with Store(tmp_path / "mauto.db", clock, create=True, timeout=0.2) as opened:
        yield opened


@pytest.fixture
def any_store(tmp_path: Path, clock: Clock, store_kind: str, request: pytest.FixtureRequest):
    """`store` on each store (tests/conftest.py's `store_kind`): `mauto.db` in tmp_path, or a fresh PostgreSQL
    database."""
    location: str | Path = tmp_path / "mauto.db"
    if store_kind == "postgresql":
        location = str(request.getfixturevalue("pg_cluster").url())
    with open_store(location, clock, create=True, timeout=0.2) as opened:
        yield opened


def stored_order(store: Store, table: str) -> str:
    """The ORDER BY that reads a table's rows in the order they were written: SQLite's rowid; in PostgreSQL,
    which has none, the events' `seq`, each contact's `contact_created` event, and else the first column."""
    if store.dialect == "sqlite" or table == "coupons":  # PostgreSQL's coupons have a rowid column (postgres.py)
        return "rowid"
    return {"events": "seq",
            "contacts": "(SELECT min(e.seq) FROM events e WHERE e.contact = contacts.id), id"}.get(table, "1")


def reopen(store: Store, **options) -> Store:
    """A second connection to the same store (its file, or its PostgreSQL database), as another mauto opens it."""
    return open_store(getattr(store, "url", store.path), **options)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
