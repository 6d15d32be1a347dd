"""The queue of due items both clocks drain: ordered by moment, then priority, then the order they came in."""
from __future__ import annotations

import heapq
import itertools
from datetime import datetime
from typing import Any

# Priorities at the same moment: events first (what happened), then wake-ups, then triggers coming due.
EVENT, WAKE, DUE = 0, 1, 2

# An item is a tuple whose first element says what it is:
#   ("event", Event)                          an event to handle
#   ("held", Event, workflow_id, enrollment_ids)  an event held while its workflow was paused, now applied
#   ("wake", enrollment_id, wake_at)          an enrollment's wake-up (wake_at: to skip a stale one)
#   ("due", workflow_id, contact_id, why)     a date or schedule trigger come due for a contact
#   ("inactive", workflow_id, contact_id, last_at)   an inactivity timer come due
#   ("segments", workflow_id)                 a segment trigger's first check (becomes one "segment" a contact)
#   ("segment", workflow_id, contact_id)      one contact's segment check
#   ("segments-done", workflow_id)            the first check is done
Item = tuple[Any, ...]


class DueQueue:
    """A priority queue of items; can be copied and put back (a rolled-back batch), and can tell which items
    were pushed while it was watched (one item's consequences, undone with it)."""

    def __init__(self) -> None:
        self.entries: list[tuple[float, int, int, datetime, Item]] = []
        self.sequence = itertools.count()
        self.watched: set[int] | None = None

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def push(self, at: datetime, priority: int, item: Item) -> int:
        """Queue an item; its sequence number (what orders items of the same moment and priority)."""
        number = next(self.sequence)
        # keyed on the POSIX timestamp: comparing aware datetimes of different zones converts both each time
        heapq.heappush(self.entries, (at.timestamp(), priority, number, at, item))
        if self.watched is not None:
            self.watched.add(number)
        return number

    def push_numbered(self, at: datetime, priority: int, item: Item, number: int) -> None:
        """Queue an item with the sequence number given: a negative one puts it before every item pushed
        with `push` at the same moment and priority (as if it had been queued first)."""
        heapq.heappush(self.entries, (at.timestamp(), priority, number, at, item))

    def first_key(self) -> float:
        """The timestamp of the next item (the queue is not empty)."""
        return self.entries[0][0]

    def first(self) -> tuple[datetime, Item]:
        """The next item and its moment, left in the queue."""
        entry = self.entries[0]
        return entry[3], entry[4]

    def pop(self) -> tuple[datetime, Item]:
        entry = heapq.heappop(self.entries)
        return entry[3], entry[4]

    def copy(self) -> list[tuple[float, int, int, datetime, Item]]:
        return list(self.entries)

    def put_back(self, entries: list[tuple[float, int, int, datetime, Item]]) -> None:
        self.entries = entries

    def watch(self) -> None:
        """From now on, note the numbers of the items pushed (`unwatch` returns them)."""
        self.watched = set()

    def unwatch(self) -> set[int]:
        watched, self.watched = self.watched or set(), None
        return watched

    def drop(self, numbers: set[int]) -> None:
        """Remove the items of these numbers (pushed by an item that failed and was undone)."""
        if numbers:
            self.entries = [entry for entry in self.entries if entry[2] not in numbers]
            heapq.heapify(self.entries)
