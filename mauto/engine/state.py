"""Enrollment state (plain, JSON-serialisable data) and the effects the engine returns."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

ACTIVE = "active"  # running or waiting on a time (wake_at)
WAITING_EVENT = "waiting"  # in a wait_for: wakes on the event or at the timeout (wake_at)
PENDING = "pending"  # needs a value from the driver: a coupon code or a webhook response
COMPLETED = "completed"
EXITED = "exited"
CONVERTED = "converted"
FAILED = "failed"
ENDED = (COMPLETED, EXITED, CONVERTED, FAILED)


@dataclass
class Enrollment:
    """One contact in one workflow version. Nothing here lives only in Python objects."""

    id: str
    workflow: str
    version: int
    contact: str
    entered_at: str  # ISO 8601 with offset
    state: str = ACTIVE
    position: str | None = None  # the step to run next, as its path ("steps.2.then.0"); None: past the end
    wake_at: str | None = None  # when to run `position`; None: now
    vars: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, str] = field(default_factory=dict)  # split id -> variant
    # wait: {"wait": the wait step's path}; wait_for: {"event", "where", "since", "deadline"};
    # postponed send: {"postponed": when it was first due}
    waiting: dict[str, Any] | None = None
    pending: dict[str, Any] | None = None  # {"kind": "coupon"|"webhook", ...}
    trigger_event: dict[str, Any] | None = None  # the event that enrolled the contact (Event.to_dict())
    converted: bool = False
    ended_at: str | None = None
    reason: str | None = None
    occurrences: dict[str, int] = field(default_factory=dict)  # step path -> times run (idempotency keys)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Enrollment:
        return cls(**data)

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def wake_time(self) -> datetime | None:
        return datetime.fromisoformat(self.wake_at) if self.wake_at else None


@dataclass
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


@dataclass
class LogEntry:
    """One line of the step log: what happened, when, and why."""

    at: datetime
    contact: str
    workflow: str
    version: int
    step: str
    kind: str
    detail: str = ""
    channel: str | None = None
    template: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"at": self.at.isoformat(), "contact": self.contact, "workflow": self.workflow,
                                 "version": self.version, "step": self.step, "kind": self.kind}
        if self.channel:
            entry["channel"] = self.channel
        if self.template:
            entry["template"] = self.template
        if self.detail:
            entry["why"] = self.detail
        entry.update(self.extra)
        return entry


@dataclass
class Outcome:
    """What one call into the engine produced."""

    enrollment: Enrollment
    effects: list[Effect] = field(default_factory=list)
    log: list[LogEntry] = field(default_factory=list)
