"""The store: all of mauto's SQL. SQLite for now (`Store`); see docs/store.md."""
from __future__ import annotations

from mauto.store.sqlite import Store, StoreError, StoreInfo, StoreLocked, address_hash, store_path

__all__ = ["Store", "StoreError", "StoreInfo", "StoreLocked", "address_hash", "store_path"]
