"""`mauto bounces ingest`: the bounce mailbox read (`mauto.bounces`), each bounce matched to its message by
its VERP address and recorded (`mauto.store.feedback`): hard bounces and complaints suppress the address,
soft ones count. Reading the same mailbox twice records nothing twice (a notification's Message-ID)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mauto.config import Project
from mauto.errors import MautoError
from mauto.store import feedback as recorded
from mauto.store.sqlite import Store

BATCH = 500  # bounces recorded per transaction
SHOWN = 20  # messages that were not bounces, listed at most


@dataclass
class BounceResult:
    source: str
    read: int = 0  # messages read
    kinds: Counter[str] = field(default_factory=Counter)  # feedback recorded, by kind
    suppressed: int = 0
    unmatched: int = 0  # bounces naming no message mauto sent (their address is still suppressed)
    duplicates: int = 0  # recorded by an earlier run
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (where, why) of messages that are no bounce
    skipped_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "read": self.read, "recorded": dict(sorted(self.kinds.items())),
                "suppressed": self.suppressed, "unmatched": self.unmatched, "duplicates": self.duplicates,
                "skipped": self.skipped_count,
                "skipped_shown": [{"where": where, "why": why} for where, why in self.skipped]}

    def line(self) -> str:
        kinds = ", ".join(f"{count} {kind.replace('_', ' ')}{'s' if count != 1 else ''}"
                          for kind, count in sorted(self.kinds.items())) or "no bounce"
        return (f"{self.source}: {self.read} message{'s' if self.read != 1 else ''} read; {kinds} recorded; "
                f"{self.suppressed} address{'es' if self.suppressed != 1 else ''} suppressed; {self.unmatched} "
                f"unmatched; {self.duplicates} seen before; {self.skipped_count} not bounces")


def ingest_bounces(project: Project, store: Store, source: Path, now: datetime) -> BounceResult:
    """Record every bounce and complaint of the mailbox at `source` (a Maildir or an mbox file)."""
    from mauto.bounces import read_bounces

    bounce_address = project.serve.bounce_address
    if not bounce_address:
        position = project.document.pos(("serve",))
        raise MautoError("serve.bounce_address is not set: without it messages carry no VERP envelope sender and "
                         "bounces cannot be matched to them (e.g. `bounce_address: bounces@shop.example`)",
                         project.document.path, position.line, position.col)
    result = BounceResult(project.display(source))
    limit = project.serve.soft_bounce_limit
    seen_messages: set[str] = set()
    pending: list[Any] = []

    def flush() -> None:
        with store.transaction():
            for feedback in pending:
                done = recorded.record(store, feedback, now, limit)
                if done.duplicate:
                    result.duplicates += 1
                    continue
                result.kinds[feedback.kind] += 1
                result.suppressed += done.suppressed
                result.unmatched += not done.matched
        pending.clear()

    for found in read_bounces(source, bounce_address):
        if found.where not in seen_messages:  # a message naming several recipients gives one Found each
            seen_messages.add(found.where)
            result.read += 1
        if found.feedback is None:
            result.skipped_count += 1
            if len(result.skipped) < SHOWN:
                result.skipped.append((found.where, found.problem or "not a bounce"))
            continue
        pending.append(found.feedback)
        if len(pending) >= BATCH:
            flush()
    if pending:
        flush()
    return result
