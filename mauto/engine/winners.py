"""A split that picks its winner (`winner: {metric: goal, confidence: 0.95, min_contacts: 1000}`).

Once a day, at the first moment past each midnight UTC, what happened before that midnight is tallied per
variant (the contacts the hash assigned, and those of them who reached the goal, by day) and handed to the
always-valid test (`mauto.abtest`): once it declares a variant, every new entry goes to it. The daemon does it
at its first tick after midnight, from the store; `mauto simulate` at each midnight of its virtual clock, from
its own log: the same data, cut at the same moment, give the same decision on both clocks.

Contacts sent to a winner are not counted in its arm afterwards (they were not assigned at random).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from mauto.abtest import Arm, Day, compare, declares
from mauto.workflow.model import Step, Workflow

DEFAULT_CONFIDENCE = 0.95
DEFAULT_MIN_CONTACTS = 1000


@dataclass(frozen=True)
class Rule:
    confidence: float = DEFAULT_CONFIDENCE
    min_contacts: int = DEFAULT_MIN_CONTACTS


@dataclass(frozen=True)
class WinnerSplit:
    """A split of a workflow that picks its winner: its id (as the enrollment's variants name it), the label its
    log entries carry, its variants in the order written (and which are holdouts), and its rule."""

    workflow: str
    split: str
    label: str
    variants: tuple[str, ...]
    holdouts: frozenset[str]
    rule: Rule


@dataclass(frozen=True)
class Decision:
    variant: str
    p_value: float
    verdict: str


def split_id(step: Step) -> str:
    """The split's id: `split.id`, else the step's id, else its path (as the engine names it)."""
    return step.value.get("id") or step.id or ".".join(str(part) for part in step.path)


def winner_splits(workflow: Workflow) -> Iterator[WinnerSplit]:
    labels = None
    for step in workflow.iter_steps():
        if step.kind != "split" or "winner" not in step.value:
            continue
        if labels is None:
            labels = workflow.step_labels()
        spec = step.value["winner"] or {}
        variants = step.value["variants"]
        holdouts = frozenset(name for name, value in variants.items() if not value.get("steps"))
        rule = Rule(spec.get("confidence", DEFAULT_CONFIDENCE), spec.get("min_contacts", DEFAULT_MIN_CONTACTS))
        yield WinnerSplit(workflow.id, split_id(step), labels[".".join(str(part) for part in step.path)],
                          tuple(variants), holdouts, rule)


Counts = dict[str, dict[str, int]]  # variant -> day (YYYY-MM-DD) -> count


def arms_and_path(variants: tuple[str, ...] | list[str], holdouts: frozenset[str] | set[str],
                  assigned: Counts, converted: Counts) -> tuple[list[Arm], list[Day]]:
    """Arms (in the order written) and the daily path of cumulative counts from counts per variant per day
    (`YYYY-MM-DD`): contacts assigned that day, and conversions that day (of contacts assigned by then)."""
    arms = [Arm(name, sum(assigned.get(name, {}).values()), sum(converted.get(name, {}).values()),
                holdout=name in holdouts) for name in variants]
    days = sorted({day for counts in (*assigned.values(), *converted.values()) for day in counts})
    totals = {name: [0, 0] for name in variants}
    path = []
    for day in days:
        for name in variants:
            totals[name][0] += assigned.get(name, {}).get(day, 0)
            totals[name][1] += converted.get(name, {}).get(day, 0)
        path.append(Day(tuple(totals[name][0] for name in variants), tuple(totals[name][1] for name in variants)))
    return arms, path


def decide(split: WinnerSplit, arms: list[Arm], path: list[Day]) -> Decision | None:
    """The winner the always-valid test declares now, or None (too few contacts, or no winner yet)."""
    if not arms or any(arm.contacts < split.rule.min_contacts for arm in arms):
        return None
    result = compare(arms, path, alpha=1 - split.rule.confidence)
    variant = declares(result, split.rule.confidence)
    if variant is None:
        return None
    adjusted = [comparison.always_valid_p_adjusted for comparison in result.comparisons
                if comparison.variant == variant or comparison.control == variant]
    p_value = max((p for p in adjusted if p is not None), default=1.0)
    return Decision(variant, p_value, result.verdict)


def midnight(moment: datetime) -> datetime:
    """The last midnight UTC at or before `moment`: decisions read what happened before it."""
    return datetime.combine(moment.astimezone(UTC).date(), time(0), UTC)


@dataclass
class Tally:
    """The simulation's counts for one split, kept from its log as it runs: as the store counts them, a contact
    once (its first assignment by the hash) and a conversion once, when it comes after the contact's assignment."""

    split: WinnerSplit
    assigned: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    converted: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    variant_of: dict[str, tuple[str, str]] = field(default_factory=dict)  # contact -> (variant, day first assigned)
    enrollments: set[str] = field(default_factory=set)  # the enrollments that reached the split (by the hash)
    done: set[str] = field(default_factory=set)  # the contacts counted as converted

    def assign(self, contact: str, enrollment: str, variant: str, at: datetime) -> None:
        self.enrollments.add(enrollment)
        if contact not in self.variant_of:
            day = at.astimezone(UTC).date().isoformat()
            self.variant_of[contact] = (variant, day)
            self.assigned[variant][day] += 1

    def convert(self, contact: str, enrollment: str, at: datetime) -> None:
        if enrollment not in self.enrollments or contact in self.done:
            return  # converted before reaching the split (or without reaching it), or counted already
        variant, day = self.variant_of[contact]
        self.done.add(contact)
        self.converted[variant][max(day, at.astimezone(UTC).date().isoformat())] += 1

    def decide(self) -> Decision | None:
        arms, path = arms_and_path(self.split.variants, self.split.holdouts, self.assigned, self.converted)
        return decide(self.split, arms, path)


def after(moment: datetime) -> datetime:
    """The next midnight UTC after `moment`."""
    return midnight(moment) + timedelta(days=1)


def describe(split: WinnerSplit, decision: Decision, at: datetime) -> dict[str, Any]:
    return {"workflow": split.workflow, "split": split.split, "variant": decision.variant,
            "p_value": round(decision.p_value, 6), "decided_at": at.isoformat(), "verdict": decision.verdict}
