"""What a simulation produces: the timeline, the funnels per workflow, the rendered messages."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mauto.engine.records import ContactState
from mauto.engine.state import Enrollment, LogEntry
from mauto.engine.timing import zone
from mauto.messages import RenderedMessage


@dataclass
class Funnel:
    entered: int = 0
    steps: Counter = field(default_factory=Counter)  # step -> contacts that reached it
    sent: Counter = field(default_factory=Counter)  # channel -> messages
    suppressed: int = 0
    postponed: int = 0
    exited: int = 0
    converted: int = 0
    completed: int = 0
    failed: int = 0
    variants: Counter = field(default_factory=Counter)
    kinds: dict[str, str] = field(default_factory=dict)  # step -> what it is (wait, split, email ...)

    def to_dict(self) -> dict[str, Any]:
        return {"entered": self.entered, "steps": dict(self.steps), "sent": dict(self.sent),
                "suppressed": self.suppressed, "postponed": self.postponed, "exited": self.exited,
                "converted": self.converted, "completed": self.completed, "failed": self.failed,
                "variants": dict(self.variants)}


@dataclass
class SimulationResult:
    start: datetime
    end: datetime
    timeline: list[LogEntry]
    funnels: dict[str, Funnel]
    messages: list[RenderedMessage]
    contacts: dict[str, ContactState]
    zones: dict[str, str]
    enrollments: list[Enrollment]
    # The splits that picked their winner during the run (mauto.engine.winners.describe: workflow, split,
    # variant, p_value, decided_at, verdict), in the order decided.
    winners: list[dict[str, Any]] = field(default_factory=list)

    def entry_dict(self, entry: LogEntry) -> dict[str, Any]:
        data = entry.to_dict()
        data["at"] = entry.at.astimezone(zone(self.zones.get(entry.contact, "UTC"))).isoformat()
        return data

    def to_json(self) -> str:
        return json.dumps({
            "start": self.start.isoformat(), "end": self.end.isoformat(),
            "timeline": [self.entry_dict(entry) for entry in self.timeline],
            "summary": {"workflows": {workflow: funnel.to_dict() for workflow, funnel in self.funnels.items()},
                        "messages": len(self.messages)},
            **({"winners": self.winners} if self.winners else {}),
        }, indent=2, ensure_ascii=False, default=str)


# Entries that do not mean "reached": a skip, the entry, the end, and a goal (logged where the enrollment
# stands, already reached; or at `end`, after it ended). A send put off has been reached: the contact waits there.
_NOT_REACHING = frozenset({"skip", "enter", "complete", "goal"})
_TALLIES = {"enter": "entered", "suppressed": "suppressed", "postponed": "postponed", "goal": "converted",
            "complete": "completed", "failed": "failed"}


def count(funnel: Funnel, entry: LogEntry, reached: dict[str, set]) -> None:
    """Count one log entry into its workflow's funnel (`reached`: the contacts already counted per step of
    this workflow)."""
    kind = entry.kind
    step = entry.step
    if step and kind not in _NOT_REACHING:
        seen = reached.get(step)
        if seen is None:
            seen = reached[step] = set()
            funnel.kinds.setdefault(step, entry.channel or kind)
        if entry.contact not in seen:
            seen.add(entry.contact)
            funnel.steps[step] += 1
    tally = _TALLIES.get(kind)
    if tally is not None:
        setattr(funnel, tally, getattr(funnel, tally) + 1)
    elif kind == "send":
        funnel.sent[entry.channel] += 1
    elif kind == "exit":
        if not entry.detail.startswith("goal "):
            funnel.exited += 1
    elif kind == "split":
        funnel.variants[f"{entry.extra.get('split')}:{entry.extra.get('variant')}"] += 1
