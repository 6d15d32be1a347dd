"""The store: all of mauto's SQL. A SQLite file (`Store`) or a PostgreSQL database (`postgres.PgStore`), opened by
`open_store`; see docs/store.md."""
from __future__ import annotations

import sys


def _import_sqlite_utils_without_pandas() -> None:
    """Import sqlite-utils with pandas and numpy hidden, unless something imported them already.

    sqlite-utils imports pandas and numpy when they are installed, only to map their types to columns, which
    mauto never hands it: 0.3 to 0.6 s on every command of a machine that has them (a data team's laptop,
    or this project's test dependencies through statsmodels). Hidden for that one import, and put back: a
    later `import pandas` (the tests' statsmodels) works as usual."""
    if "sqlite_utils.db" in sys.modules:
        return
    hidden = [name for name in ("pandas", "numpy") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        import sqlite_utils.db  # noqa: F401
    finally:
        for name in hidden:
            del sys.modules[name]


_import_sqlite_utils_without_pandas()

from mauto.store.locations import open_store, store_path  # noqa: E402
from mauto.store.sqlite import Store, StoreError, StoreInfo, StoreLocked, address_hash  # noqa: E402

__all__ = ["Store", "StoreError", "StoreInfo", "StoreLocked", "address_hash", "open_store", "store_path"]
