"""Enrollment state (plain, JSON-serialisable data) and the effects the engine returns."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

ACTIVE = "active"  # running or waiting on a time (wake_at)
WAITING_EVENT = "waiting"  # in a wait_for: wakes on the event or at the timeout (wake_at)
PENDING = "pending"  # needs a value from the driver: a coupon code or a webhook response
COMPLETED = "completed"
EXITED = "exited"
CONVERTED = "converted"
FAILED = "failed"
ENDED = (COMPLETED, EXITED, CONVERTED, FAILED)


_MOMENTS = ("entered_at", "wake_at", "ended_at", "converted_at", "goal_until")


def fixed(moment: datetime) -> datetime:
    """The moment with its UTC offset as its zone, as it reads back from its ISO text: adding a duration to it
    then counts absolute time whether or not the enrollment went through the store (a zone's own rules
    would count wall-clock time across a change of daylight saving time)."""
    zone = moment.tzinfo
    if zone is None or type(zone) is timezone:
        return moment
    return moment.astimezone(timezone(moment.utcoffset()))  # type: ignore[arg-type]


@dataclass
class Enrollment:
    """One contact in one workflow version. Nothing here lives only in Python objects: `to_dict` is all of
    it, as JSON (the moments in ISO 8601, with their offset), and `from_dict` reads it back.

    The moments are datetimes in memory, ISO text only at the store and JSON boundary (the constructor takes
    either)."""

    id: str
    workflow: str
    version: int
    contact: str
    entered_at: datetime
    state: str = ACTIVE
    position: str | None = None  # the step to run next, as its path ("steps.2.then.0"); None: past the end
    wake_at: datetime | None = None  # when to run `position`; None: now
    vars: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, str] = field(default_factory=dict)  # split id -> variant
    # wait: {"wait": the wait step's path}; wait_for: {"event", "where", "since", "deadline"};
    # postponed send: {"postponed": when it was first due}
    waiting: dict[str, Any] | None = None
    pending: dict[str, Any] | None = None  # {"kind": "coupon"|"webhook", ...}
    trigger_event: dict[str, Any] | None = None  # the event that enrolled the contact (Event.to_dict())
    converted: bool = False
    ended_at: datetime | None = None
    converted_at: datetime | None = None  # when the goal was reached (the goal event's moment)
    # Ended without its goal while the goal's `within` still runs: the goal reached until then still counts.
    goal_until: datetime | None = None
    reason: str | None = None
    occurrences: dict[str, int] = field(default_factory=dict)  # step path -> times run (idempotency keys)
    cause: str | None = None  # why the contact entered: the trigger come due, the event, the step that started it

    def __post_init__(self) -> None:
        for name in _MOMENTS:
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, datetime.fromisoformat(value))
            elif value is not None:
                setattr(self, name, fixed(value))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in _MOMENTS:
            if data[name] is not None:
                data[name] = data[name].isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Enrollment:
        return cls(**data)  # the moments' ISO text is read by __post_init__

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def wake_time(self) -> datetime | None:
        return self.wake_at


@dataclass(slots=True)
class Effect:
    """Something the driver must make real: a message, a contact change, a task, a call, an enrollment.

    kind: send | update | score | lists | task | webhook | coupon | start | log-only kinds never appear here.
    `key` is the idempotency key (enrollment, step, occurrence).
    """

    kind: str
    at: datetime
    enrollment: str
    workflow: str
    contact: str
    step: str
    key: str
    data: dict[str, Any] = field(default_factory=dict)


class Detail:
    """A log entry's detail, formatted when first read: `Detail(function, *args)` reads as `function(*args)`.

    Most entries of a simulation are only counted, never shown, so a detail that costs something to build (an
    ISO time) is built only for the entries a timeline, a report or the store reads. The arguments must be
    values that do not change afterwards (strings, numbers, datetimes, tuples of them): the text is the one
    they give when read.
    """

    __slots__ = ("function", "args")

    def __init__(self, function: Callable[..., str], *args: Any) -> None:
        self.function = function
        self.args = args

    def __str__(self) -> str:
        return self.function(*self.args)


class LogEntry:
    """One line of the step log: what happened, when, and why.

    `detail` is a string; given as a `Detail`, it is formatted on its first read. `extra` (kind-specific data:
    the wait's `until`, the split's variant...) is a dict, empty unless given. `enrollment` names the
    enrollment of the engine's entries.
    """

    __slots__ = ("at", "contact", "workflow", "version", "step", "kind", "_detail", "channel", "template", "_extra",
                 "enrollment")

    def __init__(self, at: datetime, contact: str, workflow: str, version: int, step: str, kind: str,
                 detail: str | Detail = "", channel: str | None = None, template: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        self.at = at
        self.contact = contact
        self.workflow = workflow
        self.version = version
        self.step = step
        self.kind = kind
        self._detail = detail
        self.channel = channel
        self.template = template
        self._extra = extra  # None: {} when first read (most entries have none; no dict each)
        # The enrollment the entry is about (the engine's entries), None for a trigger's: where the store keeps
        # it, `mauto stats` counts a step's enrollments, not its contacts. Not part of the entry's value (==).
        self.enrollment: str | None = None

    @property
    def detail(self) -> str:
        detail = self._detail
        if detail.__class__ is str:
            return detail
        text = self._detail = str(detail)
        return text

    @detail.setter
    def detail(self, value: str) -> None:
        self._detail = value

    @property
    def extra(self) -> dict[str, Any]:
        extra = self._extra
        if extra is None:
            extra = self._extra = {}
        return extra

    @extra.setter
    def extra(self, value: dict[str, Any]) -> None:
        self._extra = value

    def _fields(self) -> tuple:
        return (self.at, self.contact, self.workflow, self.version, self.step, self.kind, self.detail, self.channel,
                self.template, self.extra)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogEntry):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable and compared by value, as the dataclass it was

    def __repr__(self) -> str:
        return ("LogEntry(" + ", ".join(f"{name}={value!r}" for name, value in zip(_ENTRY_FIELDS, self._fields(),
                                                                                    strict=True)) + ")")

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"at": self.at.isoformat(), "contact": self.contact, "workflow": self.workflow,
                                 "version": self.version, "step": self.step, "kind": self.kind}
        if self.channel:
            entry["channel"] = self.channel
        if self.template:
            entry["template"] = self.template
        detail = self.detail
        if detail:
            entry["why"] = detail
        if self._extra:
            entry.update(self._extra)
        return entry


_ENTRY_FIELDS = ("at", "contact", "workflow", "version", "step", "kind", "detail", "channel", "template", "extra")


@dataclass(slots=True)
class Outcome:
    """What one call into the engine produced."""

    enrollment: Enrollment
    effects: list[Effect] = field(default_factory=list)
    log: list[LogEntry] = field(default_factory=list)
