"""Where the store is: `store:` in mauto.yaml, a SQLite file or a PostgreSQL URL, and opening either."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mauto.store.postgres import PgStore, is_url
from mauto.store.sqlite import Clock, Store, StoreError


def store_path(project: Any) -> Path | str:
    """The project's store: `store:` in mauto.yaml, a SQLite file relative to it (default `mauto.db`), or a
    `postgresql://` URL, returned as it is written."""
    configured = project.data.get("store")
    if isinstance(configured, str) and is_url(configured):
        return configured
    return project.root / (configured if isinstance(configured, str) and configured else "mauto.db")


def open_store(location: str | Path, now: Clock | None = None, *, password_env: str | None = None,
               **options: Any) -> Store:
    """The store at `location`: a SQLite file, or a PostgreSQL database by its `postgresql://` URL
    (`mauto.store.postgres`; its password from `password_env`, PGPASSWORD or ~/.pgpass, never the URL in
    mauto.yaml)."""
    if isinstance(location, str) and is_url(location):
        password = os.environ.get(password_env) if password_env else None
        if password_env and password is None:
            raise StoreError(f"the environment variable {password_env} (store_password_env in mauto.yaml) is not set",
                             options.get("shown") or location)
        return PgStore(location, now, password=password, **options)
    return Store(location, now, **options)
