"""What a tick did: counts, notes, and the failures, for the terminal line and the JSON report."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PROBLEMS_SHOWN = 100  # failures listed in a tick's JSON report (all are in `mauto failures`)


@dataclass
class TickReport:
    now: datetime
    enrolled: int = 0
    advanced: int = 0
    events: int = 0
    queued: int = 0  # messages put in the outbox
    sent: int = 0
    retried: int = 0
    parked: int = 0
    unknown: int = 0
    cancelled: int = 0
    failed: int = 0  # enrollments that ended failed
    errors: int = 0  # other items the tick could not handle (an event, a trigger, a workflow): `mauto failures`
    calls: int = 0
    duration: float = 0.0
    notes: list[str] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)  # what failed, as `mauto failures` lists it

    @property
    def needs_attention(self) -> bool:
        """Something failed or waits for a person: `run --once` exits 1."""
        return bool(self.parked or self.unknown or self.failed or self.errors)

    def counters(self) -> tuple[int, ...]:
        return (self.enrolled, self.advanced, self.events, self.queued, self.failed, self.errors, len(self.problems))

    def restore(self, counters: tuple[int, ...]) -> None:
        self.enrolled, self.advanced, self.events, self.queued, self.failed, self.errors, problems = counters
        del self.problems[problems:]

    def problem(self, kind: str, reason: str, **where: Any) -> None:
        """One failure, as `mauto failures` lists it, for the JSON report."""
        self.problems.append({"kind": kind, **{key: value for key, value in where.items() if value is not None},
                              "reason": reason})

    def line(self) -> str:
        parts = [f"tick {self.now.isoformat(timespec='seconds')}: {self.enrolled} enrolled",
                 f"{self.advanced} advanced", f"{self.sent} sent", f"{self.retried} retried",
                 f"{self.parked} parked", f"{self.failed} failed"]
        if self.errors:
            parts.append(f"{self.errors} error{'s' if self.errors != 1 else ''}")
        if self.unknown:
            parts.append(f"{self.unknown} unknown")
        if self.cancelled:
            parts.append(f"{self.cancelled} cancelled")
        return ", ".join(parts) + f" in {self.duration:.2f}s"

    def to_dict(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(), "enrolled": self.enrolled, "advanced": self.advanced,
                "events": self.events, "queued": self.queued, "sent": self.sent, "retried": self.retried,
                "parked": self.parked, "unknown": self.unknown, "cancelled": self.cancelled, "failed": self.failed,
                "errors": self.errors, "calls": self.calls, "duration_s": round(self.duration, 3), "notes": self.notes,
                "problems": self.problems[:PROBLEMS_SHOWN]}
