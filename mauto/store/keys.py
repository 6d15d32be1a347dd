"""API keys: what a client presents to `mauto serve` to post events. The store keeps a key's name, its first
characters (to tell keys apart in a list) and its SHA-256, never the key itself: it is shown once, when made."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime
from typing import Any

from mauto.errors import MautoError
from mauto.store.sqlite import Store, stamp

PREFIX = "mk_"  # every key begins so: a key pasted where it should not be is easy to find and revoke
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
SHOWN = 10  # characters of a key kept to tell keys apart (the prefix and 7 of its random characters)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    """A key's name as given, or a MautoError saying what a name may be."""
    if not _NAME.fullmatch(name):
        raise MautoError(f"key name `{name}`: 1 to 64 characters, lower-case letters, digits and `_.-`, "
                         "beginning with a letter or a digit (e.g. `website`, `crm-sync`)")
    return name


def create_key(store: Store, name: str, now: datetime) -> str:
    """A new key named `name`; the key itself is returned, once, and only its hash kept."""
    check_name(name)
    key = PREFIX + secrets.token_urlsafe(32)
    with store.transaction() as db:
        if db.execute("SELECT 1 FROM api_keys WHERE name = ? AND revoked_at IS NULL", [name]).fetchone():
            raise MautoError(f"a key named `{name}` exists: revoke it first (`mauto keys revoke {name}`), or "
                             "choose another name", store.shown)
        db.execute("INSERT INTO api_keys (name, prefix, hash, created_at) VALUES (?, ?, ?, ?)",
                   [name, key[:SHOWN], _hash(key), stamp(now)])
    return key


def list_keys(store: Store) -> list[dict[str, Any]]:
    """Every key, revoked ones included, oldest first: name, prefix, created, last used, revoked."""
    with store.guard():
        rows = store.db.execute("SELECT name, prefix, created_at, last_used_at, revoked_at FROM api_keys "
                                "ORDER BY id").fetchall()
    return [{"name": name, "prefix": prefix, "created_at": created, "last_used_at": used, "revoked_at": revoked}
            for name, prefix, created, used, revoked in rows]


def revoke_key(store: Store, name: str, now: datetime) -> None:
    """Revoke the key in use under `name`: from then on it is refused."""
    check_name(name)
    with store.transaction() as db:
        if not db.execute("UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                          [stamp(now), name]).rowcount:
            raise MautoError(f"no key named `{name}` in use (`mauto keys list` shows them)", store.shown)


def key_name(db: Any, key: str) -> str | None:
    """The name of the key in use that `key` is, or None (unknown, revoked, or not a key at all)."""
    if not key.startswith(PREFIX) or len(key) > 200:
        return None
    digest = _hash(key)
    row = db.execute("SELECT name, hash FROM api_keys WHERE hash = ? AND revoked_at IS NULL", [digest]).fetchone()
    if row is None or not hmac.compare_digest(row[1], digest):
        return None
    return str(row[0])
