"""`mauto inspect CONTACT`: one contact's whole journey across workflows, in time order, read back from the store.

What the store holds about the contact (its fields, consents, suppressions and lists; its events; its enrollments;
the step log; its messages, and the opens and clicks matched to them by their ref) merged into one timeline, its
times shown in the contact's own zone. The rows are read by `mauto.store.journey`, each query through an index:
never a scan of a table, however large the store grows.

The step log's own entries for an enrollment's entry and end, and for a send, are not shown twice: they become
the enrollment's `entered` and `ended` items and the message's item. Step-log entries written before the log kept
their enrollment (schema 7) are given the enrollment of their workflow that was running at their time.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from rich.text import Text

from mauto.engine.timing import contact_zone, zone
from mauto.errors import printable
from mauto.limits import EARLIEST
from mauto.store import journey as stored
from mauto.store.contact_rows import ADDRESS, record_of
from mauto.store.contacts import ContactNotFound, contact_view
from mauto.store.sqlite import Store

END_KINDS = ("complete", "exit", "failed")  # the step-log entries an enrollment's end writes
ENDED_STATES = ("completed", "exited", "converted", "failed")
OPENED, CLICKED = "email_opened", "email_clicked"


# --- reading ---------------------------------------------------------------------------------------------


def inspect(store: Store, contact_id: str, *, default_zone: str = "UTC", since: datetime | None = None,
            limit: int | None = None) -> dict[str, Any]:
    """The contact's journey as one JSON-ready dict.

    `default_zone` is the project's zone (mauto.yaml's `timezone`), used when the contact has none of its own;
    `since` keeps what happened from then on; `limit` keeps the latest `limit` items of the timeline (`more`
    says whether earlier ones were left out). Raises ContactNotFound (exit 1) for an id the store does not
    hold. An erased contact (under its `erased-…` id) reads as what remains of it: anonymous.

    The dict: `contact` (the stored fields as `contacts show` gives them, `erased_at`, `suppressed`), `zone`,
    `since`, `limit`, `more`, `timeline` (items oldest first: `at` in UTC, `local` in the zone, `kind` one of
    event, opened, clicked, entered, step, message, ended, failure, and the kind's own keys), `enrollments`
    and `messages` (those the timeline names, and the enrollments still in flight).
    """
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1")
    if since is not None and since.tzinfo is None:
        raise ValueError("since must have an offset")
    with store.guard(), stored.read_snapshot(store.db):
        row = _contact_row(store, contact_id)
        record = record_of(row)
        zone_name = contact_zone(record, default_zone)
        tz = zone(zone_name)
        reader = _Reader(store, contact_id, since, limit)
        reader.read(row)
        journey = _Journey(reader)
        items = journey.timeline()
        more = reader.truncated or (limit is not None and len(items) > limit)
        if limit is not None:
            items = items[-limit:]
        messages = journey.messages(items)
    contact = contact_view(row)
    contact["erased_at"] = row["erased_at"]
    contact["suppressed"] = reader.suppressed
    return {
        "contact": contact,
        "erased": row["erased_at"] is not None,
        "zone": zone_name,
        "zone_from": "contact" if zone_name == record.get("timezone") else "project",
        "since": _iso(since) if since is not None else None,
        "limit": limit,
        "more": more,
        "timeline": [item.public(tz) for item in items],
        "enrollments": journey.enrollments(items),
        "messages": messages,
    }


def _contact_row(store: Store, contact_id: str) -> dict[str, Any]:
    found = stored.contact(store.db, contact_id)
    if found is None:
        erased = " (an erased contact keeps only an anonymous `erased-…` id, not linked to its old one)"
        raise ContactNotFound(f"no contact `{printable(contact_id)}`{erased}", store.shown)
    return found


def _moment(text: Any) -> datetime | None:
    """A stored time as an aware datetime (a time without an offset, written by hand, read as UTC)."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _iso_text(text: Any) -> Any:
    """A stored time in the one form the report gives every moment (UTC, ISO 8601); as stored if it does not
    read as a time (written by hand), None as None."""
    moment = _moment(text)
    return _iso(moment) if moment is not None else text


def _loads(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


class _Reader:
    """The contact's rows, newest first and at most `limit + 1` of each kind (a kind that fills it has more)."""

    def __init__(self, store: Store, contact_id: str, since: datetime | None, limit: int | None) -> None:
        self.store, self.db, self.contact = store, store.db, contact_id
        self.rows_a_kind = limit + 1 if limit is not None else None
        self.limit = limit
        self.since = since
        self.truncated = False
        self.suppressed: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.messages: dict[int, dict[str, Any]] = {}  # those created in the window
        self.named: dict[str, dict[str, Any]] = {}  # by ref: every message an event of the window names
        self.enrollments: dict[str, dict[str, Any]] = {}
        self.failures: list[dict[str, Any]] = []
        self.feedback: dict[tuple[str, str, bool], int] = {}
        self.erased_at: str | None = None

    def _kept(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.limit is not None and len(rows) > self.limit:
            self.truncated = True
        return rows

    def read(self, contact: dict[str, Any]) -> None:
        self.erased_at = contact["erased_at"]
        self.suppressed = self._suppressions(contact)
        self.events = self._kept(stored.events(self.db, self.contact, self.since, self.rows_a_kind))
        self.steps = self._kept(stored.steps(self.db, self.contact, self.since, self.rows_a_kind))
        self.messages = {row["id"]: row for row in
                         self._kept(stored.messages(self.db, self.contact, self.since, self.rows_a_kind))}
        self.failures = self._kept(stored.failures(self.db, self.contact, self.since, self.rows_a_kind))
        for enrollment in stored.enrollments(self.db, self.contact):
            variants = _loads(enrollment["variants"])
            enrollment["variants"] = variants if isinstance(variants, dict) else {}
            self.enrollments[enrollment["id"]] = enrollment
        self.named = {row["ref"]: row for row in self.messages.values() if row["ref"]}
        for found in stored.messages_by_ref(self.db, self.contact, sorted(self._refs() - set(self.named))):
            self.named[found["ref"]] = found

    def count_feedback(self, messages: list[dict[str, Any]]) -> None:
        """How often each message was opened (by a person, by a privacy proxy) and clicked."""
        for message in messages:
            if not message["ref"]:
                continue
            for name, prefetched, count in stored.feedback(self.db, message["workflow"], message["step"],
                                                           message["ref"]):
                self.feedback[(message["ref"], name, prefetched)] = count

    def _refs(self) -> set[str]:
        refs = set()
        for event in self.events:
            properties = _loads(event["properties"])
            if isinstance(properties, dict) and isinstance(properties.get("message"), str):
                refs.add(properties["message"])
        return refs

    def _suppressions(self, contact: dict[str, Any]) -> list[dict[str, Any]]:
        """The contact's addresses on the suppression list: the channel, why and since when."""
        found = []
        for channel, column in ADDRESS.items():
            address = contact[column]
            if not address:
                continue
            hit = stored.suppression(self.store, address, channel)
            if hit is not None:
                found.append({"channel": channel, "reason": hit["reason"], "at": _iso_text(hit["at"])})
        return found


# --- the timeline ------------------------------------------------------------------------------------------


@dataclass
class _Item:
    """One line of the timeline; `order` breaks ties of `at` (the store's own order of what happened)."""

    at: datetime | None
    raw_at: str
    kind: str
    order: tuple[int, float, float]
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[datetime, tuple[int, float, float]]:
        return (self.at or EARLIEST, self.order)

    def public(self, tz: tzinfo) -> dict[str, Any]:
        shown: dict[str, Any] = {"at": _iso(self.at) if self.at else self.raw_at,
                                 "local": self.at.astimezone(tz).isoformat() if self.at else None,
                                 "kind": self.kind}
        shown.update(self.data)
        return shown


_EVENT, _RUN = 0, 1  # at one moment: what came in first, then what the workflows did about it
_BEFORE, _AFTER = -1.0, float("inf")


class _Journey:
    """The rows read, made into timeline items and the lists beside them."""

    def __init__(self, reader: _Reader) -> None:
        self.reader = reader
        self.by_workflow: dict[str, list[tuple[datetime, datetime | None, str]]] = defaultdict(list)
        for enrollment in reader.enrollments.values():
            entered = _moment(enrollment["entered_at"])
            if entered is not None:
                self.by_workflow[enrollment["workflow"]].append((entered, _moment(enrollment["ended_at"]),
                                                                 enrollment["id"]))
        for spans in self.by_workflow.values():
            spans.sort(key=lambda span: (span[0], span[2]), reverse=True)

    def owner(self, row: dict[str, Any]) -> str | None:
        """The entry's enrollment: kept since schema 7; before, the one of its workflow running at its time."""
        if row["enrollment"]:
            return row["enrollment"]
        at = _moment(row["at"])
        if at is None or (row["step"] == "trigger" and row["kind"] != "enter"):
            return None  # a trigger's skip or failure belongs to no enrollment
        for entered, ended, enrollment_id in self.by_workflow.get(row["workflow"], ()):
            if entered <= at and (ended is None or at <= ended):
                return enrollment_id
        return None

    def timeline(self) -> list[_Item]:
        items = [*self._events(), *self._steps(), *self._failures()]
        erased_at = self.reader.erased_at
        if erased_at:  # the last thing that happened to the contact
            items.append(_Item(_moment(erased_at), erased_at, "erased", (_RUN, _AFTER, 3.0), {}))
        since = self.reader.since
        if since is not None:
            items = [item for item in items if item.at is None or item.at >= since]
        return sorted(items, key=lambda item: item.key)

    # events, opens and clicks

    def _events(self) -> Iterator[_Item]:
        for row in self.reader.events:
            properties = _loads(row["properties"])
            at = _moment(row["at"])
            order = (_EVENT, float(row["seq"]), 0.0)
            ref = properties.get("message") if isinstance(properties, dict) else None
            message = self.reader.named.get(ref) if isinstance(ref, str) else None
            about = _about(properties, message)
            if row["name"] == OPENED and isinstance(properties, dict):
                yield _Item(at, row["at"], "opened", order, {**about, "prefetched": bool(properties.get("prefetched"))})
            elif row["name"] == CLICKED and isinstance(properties, dict):
                yield _Item(at, row["at"], "clicked", order, {**about, "url": properties.get("url")})
            else:
                data: dict[str, Any] = {"name": row["name"], "id": row["id"], "properties": properties}
                data.update(about if message is not None else dict.fromkeys(about))
                yield _Item(at, row["at"], "event", order, data)

    # enrollments, steps and messages

    def _steps(self) -> Iterator[_Item]:
        reader = self.reader
        rows = sorted(reader.steps, key=lambda row: row["id"])
        owners = {row["id"]: self.owner(row) for row in rows}
        entries: dict[str, dict[str, Any]] = {}
        ends: dict[str, dict[str, Any]] = {}
        for row in rows:
            enrollment = reader.enrollments.get(owners[row["id"]] or "")
            if enrollment is None:
                continue
            if row["kind"] == "enter" and enrollment["id"] not in entries:
                entries[enrollment["id"]] = row
            elif row["kind"] in END_KINDS and enrollment["state"] in ENDED_STATES:
                ends[enrollment["id"]] = row  # the last one: an end is written once
        sends = self._sends()
        entry_rows = {row["id"] for row in entries.values()}
        end_rows = {row["id"] for row in ends.values()}
        for row in rows:
            owner = owners[row["id"]]
            at = _moment(row["at"])
            order = (_RUN, float(row["id"]), 0.0)
            if row["id"] in entry_rows:
                yield self._entered(reader.enrollments[owner or ""], at, row["at"], order, row)
            elif row["id"] in end_rows:
                yield self._ended(reader.enrollments[owner or ""], at, row["at"], order, row)
            elif row["kind"] == "send" and (message := self._take_send(sends, row, owner)) is not None:
                yield self._message(message, order, row)
            else:
                yield _Item(at, row["at"], "step", order, _step_data(row, owner))
        for enrollment in reader.enrollments.values():
            if enrollment["id"] not in entries:
                at = _moment(enrollment["entered_at"])
                yield self._entered(enrollment, at, enrollment["entered_at"], (_RUN, _BEFORE, 0.0), None)
            if enrollment["id"] not in ends and enrollment["state"] in ENDED_STATES and enrollment["ended_at"]:
                at = _moment(enrollment["ended_at"])
                yield self._ended(enrollment, at, enrollment["ended_at"], (_RUN, _AFTER, 1.0), None)
        for left in sends.values():  # a message whose step entry is not in the window (or was never written)
            for message in left:
                yield self._message(message, (_RUN, _AFTER, float(message["id"]) / 1e12), None)

    def _sends(self) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
        sends: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        for message in sorted(self.reader.messages.values(), key=lambda row: row["id"]):
            at = _moment(message["created_at"])
            sends[(message["workflow"], message["step"], _iso(at) if at else message["created_at"])].append(message)
        return sends

    @staticmethod
    def _take_send(sends: dict[tuple[str, str, str], list[dict[str, Any]]], row: dict[str, Any],
                   owner: str | None) -> dict[str, Any] | None:
        at = _moment(row["at"])
        candidates = sends.get((row["workflow"], row["step"], _iso(at) if at else row["at"]))
        if not candidates:
            return None
        chosen = next((message for message in candidates if message["enrollment"] == owner), candidates[0])
        candidates.remove(chosen)
        return chosen

    @staticmethod
    def _entered(enrollment: dict[str, Any], at: datetime | None, raw_at: str, order: tuple[int, float, float],
                 row: dict[str, Any] | None) -> _Item:
        why = enrollment["cause"] or (row["detail"] if row is not None else None)
        return _Item(at, raw_at, "entered", order, {
            "enrollment": enrollment["id"], "workflow": enrollment["workflow"], "version": enrollment["version"],
            "step": row["step"] if row is not None else "trigger", "why": why or ""})

    @staticmethod
    def _ended(enrollment: dict[str, Any], at: datetime | None, raw_at: str, order: tuple[int, float, float],
               row: dict[str, Any] | None) -> _Item:
        return _Item(at, raw_at, "ended", order, {
            "enrollment": enrollment["id"], "workflow": enrollment["workflow"], "version": enrollment["version"],
            "step": row["step"] if row is not None else None, "state": enrollment["state"],
            "reason": enrollment["reason"] or (row["detail"] if row is not None else "") or ""})

    @staticmethod
    def _message(message: dict[str, Any], order: tuple[int, float, float], row: dict[str, Any] | None) -> _Item:
        return _Item(_moment(message["created_at"]), message["created_at"], "message", order, {
            "message": message["id"], "enrollment": message["enrollment"], "workflow": message["workflow"],
            "version": message["version"], "step": message["step"], "channel": message["channel"],
            "template": message["template"], "subject": message["subject"], "status": message["status"],
            "sent_at": _iso_text(message["sent_at"]), "next_try_at": _iso_text(message["next_try_at"]),
            "attempts": message["attempts"], "answer": message["answer"],
            "detail": row["detail"] if row is not None else ""})

    # what ticks could not handle

    def _failures(self) -> Iterator[_Item]:
        for row in self.reader.failures:
            if row["kind"] == "enrollment" and row["ref"] in self.reader.enrollments:
                continue  # the enrollment's end says it, with the same reason
            raw = row["moment"] or row["at"]
            yield _Item(_moment(raw), raw, "failure", (_RUN, _AFTER, 2.0 + row["id"] / 1e12), {
                "what": row["kind"], "ref": row["ref"], "workflow": row["workflow"], "reason": row["reason"]})

    # the lists beside the timeline

    def enrollments(self, items: list[_Item]) -> list[dict[str, Any]]:
        named = {item.data.get("enrollment") for item in items}
        chosen = [enrollment for enrollment in self.reader.enrollments.values()
                  if enrollment["id"] in named or enrollment["state"] not in ENDED_STATES]
        chosen.sort(key=lambda enrollment: (_moment(enrollment["entered_at"]) or EARLIEST, enrollment["id"]))
        return [{"id": e["id"], "workflow": e["workflow"], "version": e["version"], "state": e["state"],
                 "entered_at": _iso_text(e["entered_at"]), "why": e["cause"] or "",
                 "ended_at": _iso_text(e["ended_at"]), "reason": e["reason"],
                 "converted_at": _iso_text(e["converted_at"]), "goal_until": _iso_text(e["goal_until"]),
                 "wake_at": _iso_text(e["wake_at"]),
                 "position": e["position"], "variants": e["variants"]} for e in chosen]

    def messages(self, items: list[_Item]) -> list[dict[str, Any]]:
        named = {item.data["message"] for item in items if isinstance(item.data.get("message"), int)}
        rows = {row["id"]: row for row in [*self.reader.messages.values(), *self.reader.named.values()]
                if row["id"] in named}
        chosen = [rows[message_id] for message_id in sorted(rows)]
        self.reader.count_feedback(chosen)
        feedback = self.reader.feedback
        shown = []
        for row in chosen:
            ref = row["ref"]
            shown.append({
                "id": row["id"], "enrollment": row["enrollment"], "workflow": row["workflow"],
                "version": row["version"], "step": row["step"], "channel": row["channel"],
                "template": row["template"], "to": row["to_address"], "subject": row["subject"],
                "status": row["status"], "attempts": row["attempts"], "created_at": _iso_text(row["created_at"]),
                "sent_at": _iso_text(row["sent_at"]), "next_try_at": _iso_text(row["next_try_at"]),
                "answer": row["answer"], "ref": ref,
                "opened": feedback.get((ref, OPENED, False), 0) if ref else 0,
                "opened_prefetched": feedback.get((ref, OPENED, True), 0) if ref else 0,
                "clicked": sum(feedback.get((ref, CLICKED, flag), 0) for flag in (False, True)) if ref else 0})
        return shown


def _about(properties: Any, message: dict[str, Any] | None) -> dict[str, Any]:
    """The message an event is about: the message's own row when the ref finds it, else what the event says."""
    if message is not None:
        return {"message": message["id"], "workflow": message["workflow"], "step": message["step"],
                "template": message["template"]}
    properties = properties if isinstance(properties, dict) else {}
    return {"message": None, "workflow": properties.get("workflow"), "step": properties.get("step"),
            "template": properties.get("template")}


def _step_data(row: dict[str, Any], owner: str | None) -> dict[str, Any]:
    return {"enrollment": owner, "workflow": row["workflow"], "version": row["version"], "step": row["step"],
            "action": row["kind"], "detail": row["detail"] or "", "channel": row["channel"],
            "template": row["template"], "extra": _loads(row["extra"]) or {}}


# --- text ----------------------------------------------------------------------------------------------------

TIME_FORMAT = "%a %d %b %Y %H:%M %Z"  # `mauto simulate`'s, with the year: a journey spans years
BRIEF = 100  # characters of an event's properties shown on its line
_STEP_STYLE = {"send": "green", "suppressed": "yellow", "postponed": "yellow", "failed": "red bold",
               "exit": "magenta", "goal": "cyan bold", "complete": "dim", "skip": "dim", "wait": "dim"}
_STATUS_STYLE = {"sent": "green", "pending": "yellow", "parked": "red bold", "unknown": "red", "cancelled": "yellow"}
_END_STYLE = {"completed": "dim", "exited": "magenta", "converted": "cyan bold", "failed": "red bold"}
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:\d{2}|Z)")


def render(report: dict[str, Any]) -> Text:
    """The journey as `inspect` returned it, for a terminal (and a ticket): the contact, its enrollments, then
    the timeline, one line an item, times in the contact's zone as `mauto simulate` shows them."""
    tz = zone(report["zone"])
    blocks = [_header(report, tz)]
    if report["enrollments"]:
        blocks.append(_enrollments(report["enrollments"], tz))
    blocks.append(_timeline(report, tz))
    return Text("\n\n").join(blocks)


def _local(value: Any, tz: tzinfo) -> str:
    """A moment as `mauto simulate` shows it, in `tz`; a stored time that does not read as one, as it is."""
    if value is None:
        return "-"
    moment = value if isinstance(value, datetime) else _moment(value)
    if moment is None:
        return printable(str(value))
    return moment.astimezone(tz).strftime(TIME_FORMAT)


def _local_times(text: str, tz: tzinfo) -> str:
    """ISO times inside a reason, shown in the contact's zone like the rest of the line."""
    return _ISO.sub(lambda match: _local(match.group(0).replace("Z", "+00:00"), tz), printable(text))


def _header(report: dict[str, Any], tz: tzinfo) -> Text:
    contact = report["contact"]
    where = report["zone"] if report["zone_from"] == "contact" else f"{report['zone']} (the project's zone)"
    header = Text(printable(contact["id"]), style="bold")
    if report["erased"]:
        header.append(f"  erased {_local(contact['erased_at'], tz)}", style="magenta")
        header.append(f" · {where}")
        header.append("\n  its personal data went with the erasure (fields, addresses, event properties, reasons, "
                      "subjects); what remains is anonymous")
        return header
    name = " ".join(str(contact[part]) for part in ("first_name", "last_name") if contact.get(part)) or \
        str(contact.get("name") or "")
    parts = [printable(part) for part in (name, contact.get("email"), contact.get("phone")) if part]
    header.append("  " + " · ".join([*parts, where]))
    consent = ", ".join(f"{channel} {'yes' if contact.get(f'{channel}_consent') else 'no'}"
                        for channel in ("email", "sms"))
    suppressed = ", ".join(f"{row['channel']} ({printable(str(row['reason']))}, {_local(row['at'], tz)})"
                           for row in contact["suppressed"]) or "none"
    lists = contact.get("lists")
    lists_text = ", ".join(printable(str(name)) for name in lists) if isinstance(lists, list) and lists else "none"
    header.append(f"\n  consent: {consent} · suppressed: {suppressed} · lists: {lists_text}")
    shown = {"id", "email", "phone", "email_consent", "sms_consent", "first_name", "last_name", "name", "lists",
             "timezone", "created_at", "updated_at", "erased_at", "suppressed"}
    others = {name: value for name, value in contact.items() if name not in shown}
    if others:
        header.append(f"\n  fields: {_brief(others, whole=True)}")
    header.append(f"\n  created {_local(contact.get('created_at'), tz)} · "
                  f"updated {_local(contact.get('updated_at'), tz)}")
    return header


def _enrollments(enrollments: list[dict[str, Any]], tz: tzinfo) -> Text:
    lines = [Text("enrollments", style="bold")]
    width_workflow = max(len(printable(e["workflow"])) for e in enrollments)
    width_version = max(len(f"v{e['version']}") for e in enrollments)
    width_id = max(len(printable(e["id"])) for e in enrollments)
    for enrollment in enrollments:
        line = Text(f"  {printable(enrollment['workflow']).ljust(width_workflow)}  "
                    f"{('v' + str(enrollment['version'])).ljust(width_version)}  "
                    f"{printable(enrollment['id']).ljust(width_id)}  ")
        why = f" ({_local_times(enrollment['why'], tz)})" if enrollment["why"] else ""
        line.append(f"entered {_local(enrollment['entered_at'], tz)}{why} · ")
        line.append(*_enrollment_state(enrollment, tz))
        if enrollment["converted_at"] and enrollment["state"] != "converted":
            line.append(f" · converted {_local(enrollment['converted_at'], tz)} (after the end)", style="cyan")
        if enrollment["goal_until"]:
            line.append(f" · its goal counts until {_local(enrollment['goal_until'], tz)}", style="dim")
        variants = enrollment["variants"]
        if variants:
            line.append(" · " + ", ".join(f"split {printable(str(split))}: {printable(str(variant))}"
                                          for split, variant in variants.items()))
        lines.append(line)
    return Text("\n").join(lines)


def _enrollment_state(enrollment: dict[str, Any], tz: tzinfo) -> tuple[str, str]:
    state = enrollment["state"]
    reason = f": {_local_times(enrollment['reason'], tz)}" if enrollment["reason"] else ""
    if state in ENDED_STATES:
        moment = enrollment["converted_at"] if state == "converted" and enrollment["converted_at"] else \
            enrollment["ended_at"]
        return f"{state} {_local(moment, tz)}{reason}", _END_STYLE[state]
    wake = f" until {_local(enrollment['wake_at'], tz)}" if enrollment["wake_at"] else ""
    if state == "waiting":
        return f"waiting for an event{wake}", "yellow"
    if state == "pending":
        return "pending: waiting for a coupon or a webhook's answer", "yellow"
    return (f"active, waiting{wake}" if wake else "active"), "yellow"


def _timeline(report: dict[str, Any], tz: tzinfo) -> Text:
    title = f"timeline ({report['zone']})"
    if report["since"]:
        title += f" since {_local(report['since'], tz)}"
    lines = [Text(title, style="bold")]
    items = report["timeline"]
    if report["more"]:
        lines.append(Text(f"  … earlier entries left out: the latest {len(items)} are shown (--limit, --since)",
                          style="dim"))
    if not items:
        lines.append(Text("  nothing", style="dim"))
        return Text("\n").join(lines)
    rows = [(_local(item["at"], tz), *_columns(item, tz)) for item in items]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for when, workflow, step, what, detail, style in rows:
        line = Text("  " + when.ljust(widths[0]) + "  " + workflow.ljust(widths[1]) + "  " + step.ljust(widths[2]) +
                    "  ")
        line.append(what.ljust(widths[3]) if detail else what, style=style)
        if detail:
            line.append("  " + detail, style="red" if style.startswith("red") else "")
        lines.append(line)
    return Text("\n").join(lines)


def _columns(item: dict[str, Any], tz: tzinfo) -> tuple[str, str, str, str, str]:
    """(workflow, step, what, detail, style) of a timeline item."""
    kind = item["kind"]
    workflow = printable(str(item.get("workflow") or ""))
    step = printable(str(item.get("step") or ""))
    if kind == "event":
        properties = item["properties"]
        if item.get("message") is not None and isinstance(properties, dict):
            properties = {name: value for name, value in properties.items()
                          if name not in ("workflow", "step", "template", "message")}
        return workflow, step, f"event {printable(item['name'])}", _brief(properties), "blue"
    if kind in ("opened", "clicked"):
        template = f" ({printable(str(item['template']))})" if item.get("template") else ""
        if kind == "opened":
            proxy = " (privacy proxy)" if item["prefetched"] else ""
            return workflow, step, "opened", f"{step}{template}{proxy}", "dim" if proxy else "green"
        url = printable(str(item["url"])) if item.get("url") else "a link"
        return workflow, step, "clicked", f"{url} in {step}{template}" if step else url, "green bold"
    if kind == "entered":
        why = _local_times(item["why"], tz)
        return workflow, step, "enter", " · ".join(part for part in (why, f"v{item['version']}",
                                                                   printable(item["enrollment"])) if part), "bold"
    if kind == "ended":
        return workflow, step or "end", item["state"], _local_times(item["reason"], tz), \
            _END_STYLE.get(item["state"], "")
    if kind == "message":
        return workflow, step, f"{item['channel']} {printable(item['template'])}", _message_text(item, tz), \
            _STATUS_STYLE.get(item["status"], "")
    if kind == "failure":
        return workflow, "", f"{item['what']} failed", _local_times(item["reason"], tz), "red bold"
    if kind == "erased":
        return "", "", "erased", "personal data removed", "magenta"
    action = item["action"]
    what = action
    if action in ("send", "suppressed", "postponed") and item.get("channel"):
        verb = {"send": item["channel"], "suppressed": f"no {item['channel']}", "postponed": f"{item['channel']} later"}
        what = f"{verb[action]} {printable(str(item.get('template') or ''))}".rstrip()
    return workflow, step, printable(what), _local_times(item["detail"], tz), _STEP_STYLE.get(action, "")


def _message_text(item: dict[str, Any], tz: tzinfo) -> str:
    status = item["status"]
    answer = _local_times(item["answer"], tz) if item.get("answer") else "no answer recorded"
    if status == "sent":
        sent = _local(item["sent_at"], tz) if item.get("sent_at") else ""
        phrase = f"sent {sent}" if sent and sent != _local(item["at"], tz) else "sent"
    elif status == "pending":
        phrase = "pending"
        if item.get("next_try_at"):
            phrase += f", next try {_local(item['next_try_at'], tz)}"
        if item.get("attempts"):
            phrase += f" ({item['attempts']} attempt{'s' if item['attempts'] != 1 else ''} so far)"
    else:
        phrase = f"{status}: {answer}"
    parts = [phrase]
    if item.get("subject"):
        parts.append(f"“{printable(item['subject'])}”")
    parts.append(f"message {item['message']}")
    if item.get("detail"):
        parts.append(_local_times(item["detail"], tz))
    return " · ".join(parts)


def _brief(values: Any, whole: bool = False) -> str:
    """Properties or fields on one line: `name=value …`, cut at BRIEF characters (unless `whole`: the contact's
    own fields in the header, what the workflows saw, are never cut)."""
    if not isinstance(values, dict):
        text = printable(str(values))
    else:
        parts = []
        for name, value in values.items():
            shown = value if isinstance(value, str) and value and " " not in value else \
                json.dumps(value, ensure_ascii=False)
            parts.append(f"{name}={shown}")
        text = printable(" ".join(parts))
    return text if whole or len(text) <= BRIEF else text[:BRIEF - 1] + "…"
