"""A contacts row as the store keeps it: which built-in fields have columns of their own, the row as one
flat mapping, and its stored values back in their declared types. Shared by the contacts' SQL
(`store/contacts.py`) and the daemon's (`store/runtime.py`), so that neither imports the other for it."""
from __future__ import annotations

import json
from typing import Any

from mauto.datafiles import coerce

# Built-in fields kept in their own columns (searched, or checked before every send); every
# other field lives in the `fields` JSON column.
COLUMN_FIELDS = ("email", "phone", "email_consent", "sms_consent", "created_at")
CONSENT = {"email": "email_consent", "sms": "sms_consent"}
ADDRESS = {"email": "email", "sms": "phone"}


def record_of(row: Any) -> dict[str, Any]:
    """A contacts row as one flat mapping of stored values."""
    record = {"id": row["id"], "email": row["email"], "phone": row["phone"],
              "email_consent": bool(row["email_consent"]), "sms_consent": bool(row["sms_consent"]),
              "created_at": row["created_at"]}
    record.update(json.loads(row["fields"]))
    return record


def typed_fields(record: dict[str, Any], fields: dict[str, Any], zone: str) -> dict[str, Any]:
    """Stored values back to their declared types (dates, datetimes), as expressions and the engine see them."""
    typed = {}
    for name, value in record.items():
        if name == "id" or value is None:
            continue
        declared = fields.get(name)
        try:
            typed[name] = coerce(value, declared, zone) if declared in ("date", "datetime") else value
        except Exception:  # noqa: BLE001 - odd data an older version stored (past the limits, ...): kept as it is
            typed[name] = value
    return typed
