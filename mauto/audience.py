"""Audience export for ad platforms: the contacts a segment (or an expression) selects, as files.

`export_audience` writes the contacts who may be marketed to, with their identifiers normalised and, for the
platform formats, SHA-256-hashed as the platforms specify (docs/audience.md):

- `meta` (Meta Custom Audiences, customer list): columns `email`, `phone`; the email trimmed and lower-cased,
  the phone in E.164 as digits without the `+`; each hashed (SHA-256, lower-case hex).
- `google` (Google Ads Customer Match): columns `Email`, `Phone`; the email trimmed and lower-cased and, for
  gmail.com and googlemail.com, without the dots of its local part and without a `+tag`; the phone in E.164
  with its `+`; each hashed.
- `csv` and `jsonl`: `id`, `email`, `phone`, normalised, in plain text (to review, or for another tool).

Consent: an identifier is exported only when its channel may carry marketing (its consent on, the address
off the suppression list): the email with `email_consent`, the phone with `sms_consent`. A contact with
neither is left out, and so is an address that cannot be normalised (a phone number without its country).
Erased contacts are never exported. `export_contacts_matching` is `contacts export --where`: every field,
no consent rule (a data export, not an audience).

Nothing here opens a network connection: files only. `write_whole` writes a file whole or not at all.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

from mauto.addresses import normalise_email, normalise_phone
from mauto.errors import UsageError
from mauto.store.contacts import iter_contacts, where_filter, write_contact
from mauto.store.rows import refuse_overwrite, store_files
from mauto.store.sqlite import Store

FORMATS = ("csv", "jsonl", "meta", "google")
_HEADERS = {"csv": ("id", "email", "phone"), "meta": ("email", "phone"), "google": ("Email", "Phone")}
_GMAIL = frozenset({"gmail.com", "googlemail.com"})
# A bare name is a segment of mauto.yaml (as a `segment` trigger reads it); Jinja's literals are expressions.
_SEGMENT_NAME = re.compile(r"[a-z][a-z0-9_-]*")
_NOT_SEGMENTS = frozenset({"true", "false", "none", "contact", "now"})

T = TypeVar("T")


@dataclass
class AudienceResult:
    """What an export did: `matched` contacts the segment selects, `exported` rows written; left out:
    `no_consent` (no channel they may be marketed on), `invalid` (no address that can be normalised)."""

    target: str
    format: str
    matched: int = 0
    exported: int = 0
    no_consent: int = 0
    invalid: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "format": self.format, "matched": self.matched, "exported": self.exported,
                "left_out": {"no_consent": self.no_consent, "invalid": self.invalid}}

    def summary(self) -> str:
        """One line for the terminal: how many, and why the others were left out."""
        left = [f"{count:,} {why}" for count, why in ((self.no_consent, "without consent or suppressed"),
                                                      (self.invalid, "without an address that can be used"))
                if count]
        return (f"{self.exported:,} of {self.matched:,} contact{'s' if self.matched != 1 else ''} matching "
                f"{self.target}" + (f" ({'; '.join(left)} left out)" if left else ""))


def audience_expression(project: Any, target: str) -> tuple[str, str]:
    """(the expression, how to name it) for SEGMENT_OR_EXPR: a segment of mauto.yaml by name, else an
    expression on `contact` and `now`, checked as `contacts list --where` checks it (UsageError, exit 2)."""
    segments = project.segments
    if target in segments:
        expression = segments[target]
        return expression.source, f"segment {target}"
    if _SEGMENT_NAME.fullmatch(target) and target not in _NOT_SEGMENTS:
        known = ", ".join(sorted(segments)) or "none"
        raise UsageError(f"SEGMENT_OR_EXPR: no segment `{target}` in mauto.yaml (segments: {known}); or write an "
                         "expression, e.g. \"'vip' in contact.tags\"")
    where_filter(target, "SEGMENT_OR_EXPR")
    return target, f"`{target}`"


def audience_rows(store: Store, project: Any, source: str, fmt: str, now: datetime | None,
                  result: AudienceResult) -> Iterator[dict[str, str | None]]:
    """The rows of the export of the contacts the expression `source` selects, one per contact exported,
    counting in `result` what is matched and left out."""
    region = project.phone_region
    for contact in iter_contacts(store, project.contact_fields, project.timezone, source, now=now):
        result.matched += 1
        allowed = {channel: contact.get(field) for channel, field in (("email", "email"), ("sms", "phone"))
                   if contact.get(field) and contact.get(f"{channel}_consent")
                   and not store.is_suppressed(str(contact[field]), channel)}
        if not allowed:
            result.no_consent += 1
            continue
        email = _email(allowed.get("email"), fmt)
        phone = _phone(allowed.get("sms"), region, fmt)
        if email is None and phone is None:
            result.invalid += 1
            continue
        result.exported += 1
        if fmt in ("csv", "jsonl"):
            row = {"id": str(contact["id"]), "email": email, "phone": phone}
            yield {name: value for name, value in row.items() if value is not None or fmt == "csv"}
        else:
            email_column, phone_column = _HEADERS[fmt]
            yield {email_column: _hashed(email), phone_column: _hashed(phone)}


def export_audience(store: Store, project: Any, target: str, fmt: str, out: TextIO,
                    now: datetime | None = None) -> AudienceResult:
    """Write the audience SEGMENT_OR_EXPR selects to `out` in `fmt` (see the module's docstring); the whole
    export is made before the first line is written, so a failing expression writes nothing."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not `{fmt}`")
    source, label = audience_expression(project, target)
    result = AudienceResult(label, fmt)
    rows = list(audience_rows(store, project, source, fmt, now, result))
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        return result
    writer = csv.DictWriter(out, _HEADERS[fmt], lineterminator="\n")
    writer.writeheader()
    writer.writerows({name: value or "" for name, value in row.items()} for row in rows)
    return result


def google_email(address: str) -> str:
    """An email as Google's Customer Match compares it: lower-cased; at gmail.com and googlemail.com without the
    dots of the local part and without anything from a `+` on (`Jo.Ann+shop@gmail.com` → `joann@gmail.com`)."""
    local, _, domain = address.strip().lower().rpartition("@")
    if domain in _GMAIL:
        local = local.split("+", 1)[0].replace(".", "")
    return f"{local}@{domain}"


def _email(address: Any, fmt: str) -> str | None:
    if not address:
        return None
    try:
        normal = normalise_email(str(address))
    except ValueError:
        return None
    return google_email(normal) if fmt == "google" else normal


def _phone(number: Any, region: str | None, fmt: str) -> str | None:
    """E.164 (`+33612345678`), Meta's form of it (`33612345678`); None for a number without its country."""
    if not number:
        return None
    try:
        normal = normalise_phone(str(number), region)
    except ValueError:
        return None
    return normal.lstrip("+") if fmt == "meta" else normal


def _hashed(value: str | None) -> str:
    """SHA-256 of the normalised identifier, lower-case hex; an empty cell when there is none."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest() if value else ""


# --- contacts export --where ---------------------------------------------------------------------------

def export_contacts_matching(store: Store, out: TextIO, fmt: str, fields: dict[str, Any], zone: str,
                             where: str | None = None, now: datetime | None = None) -> int:
    """`contacts export --where EXPR`: the contacts `where` selects (all when None; erased ones never), as
    `contacts export` writes them (CSV with the declared fields as columns, lists joined with `;`, or JSON
    Lines); returns how many. The expression is checked before anything is written."""
    if fmt not in ("csv", "jsonl"):
        raise UsageError(f"export format must be csv or jsonl, not `{fmt}`")
    if where is not None:
        where_filter(where)
    columns = list(dict.fromkeys(["id", *fields, "updated_at"]))
    writer = csv.DictWriter(out, columns, extrasaction="ignore") if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    count = 0
    for view in iter_contacts(store, fields, zone, where, now=now):
        write_contact(writer, out, view)
        count += 1
    return count


# --- files: whole or not at all ----------------------------------------------------------------------------

def write_whole(target: Path, write: Callable[[TextIO], T], store: Store | None = None, option: str = "--out",
                what: str = "the export") -> T:
    """Run `write` on a new file beside `target`, then put it in `target`'s place in one step (a rename): a
    reader never sees half a file, and an error (a bad expression, a full disk, Ctrl-C) leaves `target` as it
    was. The file is readable by its owner only (it holds personal data). Never the store's own files."""
    if store is not None:
        refuse_overwrite(target, option, store_files(store.path), what)
    if target.is_dir():
        raise UsageError(f"{option} {target}: that is a folder; name a file")
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                                 dir=target.parent if str(target.parent) else ".")
    except OSError as error:
        raise UsageError(f"{option} {target}: cannot write there ({error.strerror})") from None
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            result = write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise UsageError(f"{option} {target}: cannot write there ({error.strerror})") from None
        raise
    return result
