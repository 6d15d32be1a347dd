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
        }, indent=2, ensure_ascii=False, default=str)


def count(funnel: Funnel, entry: LogEntry, reached: dict[str, set]) -> None:
    """Count one log entry into its workflow's funnel (`reached`: the contacts already counted per step)."""
    kind = entry.kind
    if entry.step:
        seen = reached[f"{entry.workflow}\x1f{entry.step}"]
        if entry.contact not in seen and kind not in ("postponed", "skip", "enter", "complete"):
            seen.add(entry.contact)
            funnel.steps[entry.step] += 1
            funnel.kinds.setdefault(entry.step, entry.channel or kind)
    if kind == "enter":
        funnel.entered += 1
    elif kind == "send":
        funnel.sent[entry.channel] += 1
    elif kind == "suppressed":
        funnel.suppressed += 1
    elif kind == "postponed":
        funnel.postponed += 1
    elif kind == "exit":
        if not entry.detail.startswith("goal "):
            funnel.exited += 1
    elif kind == "goal":
        funnel.converted += 1
    elif kind == "complete":
        funnel.completed += 1
    elif kind == "failed":
        funnel.failed += 1
    elif kind == "split":
        funnel.variants[f"{entry.extra.get('split')}:{entry.extra.get('variant')}"] += 1
