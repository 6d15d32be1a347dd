"""A workflow's figures, summed by SQL over the store's indexes (never a Python loop over its rows): the
enrollments by state, each step's arrivals, waits and departures, each send's messages and what their
recipients did, each split's variants with their A/B comparison, the problems to act on, and the activity per
day.

The window (`since`, `until`) selects what happened in it: the enrollments that entered in it (their states,
conversions and split variants: a cohort), the steps run in it, the messages made in it and the opens and
clicks heard in it. `version` keeps one deployed version (the events about messages through their message).

The shape of the result is docs/stats.md's (JSON keys scripts read): keep the two together.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mauto.abtest import Arm, Day, compare
from mauto.engine.winners import arms_and_path, winner_splits
from mauto.engine.winners import split_id as winners_split_id
from mauto.errors import MautoError, printable
from mauto.store import releases
from mauto.store import stats as sql
from mauto.store.sqlite import Store, stamp
from mauto.workflow.loader import parse
from mauto.workflow.model import Step, Workflow, build

SENDS = ("email", "sms")
PROBLEMS_SHOWN = 50  # per kind of problem: the oldest, with the total
Window = sql.Window
EVERYTHING = Window()  # no bound
rate, _iso = sql.rate, sql.iso


# --- the workflow's steps, in its order ------------------------------------------------------------------------


def load_versions(db: Any, workflow_id: str) -> dict[int, Workflow]:
    """Every deployed version of the workflow that this mauto can read (one that cannot is left out: its
    steps are then listed as they appear in the log)."""
    versions = {}
    for version, source in sql.version_sources(db, workflow_id):
        try:
            versions[version] = build(parse(source, f"{workflow_id} v{version} (deployed)"))
        except Exception:  # noqa: BLE001, S112 - an old version this mauto cannot read: its steps come from the log
            continue
    return versions


@dataclass(frozen=True)
class StepPlace:
    label: str
    kind: str
    depth: int
    block: str | None
    step: Step


def step_places(workflow: Workflow) -> list[StepPlace]:
    """The steps depth first, each with the label the log names it by, its depth and the block it sits in."""
    labels = workflow.step_labels()
    places: list[StepPlace] = []

    def walk(steps: list[Step], depth: int, block: str | None) -> None:
        for step in steps:
            places.append(StepPlace(labels[".".join(str(part) for part in step.path)], step.kind, depth,
                                    block, step))
            for name, inner in step.blocks.items():
                walk(inner, depth + 1, name)

    walk(workflow.steps, 0, None)
    return places


# --- the figures -----------------------------------------------------------------------------------------------


def workflow_stats(store: Store, workflow_id: str, now: datetime, window: Window = EVERYTHING,
                   daily: bool = False, grace: timedelta = timedelta(hours=1)) -> dict[str, Any]:
    """The figures of one workflow (docs/stats.md); `daily` adds the activity per UTC day (the report's)."""
    db = store.db
    row = sql.workflow_row(db, workflow_id)
    if row is None:
        known = sql.workflow_ids(db)
        listed = ", ".join(known) if known else "none: run `mauto deploy`"
        raise MautoError(f"no workflow `{printable(workflow_id)}` is deployed (deployed: {listed})")
    current, state = row
    versions = load_versions(db, workflow_id)
    if window.version is not None and window.version not in versions:
        deployed = ", ".join(f"v{number}" for number in versions) or "none"
        raise MautoError(f"--version {window.version}: workflow `{workflow_id}` has no such version "
                         f"(deployed: {deployed})")
    shown = versions.get(window.version if window.version is not None else current)
    result: dict[str, Any] = {"workflow": workflow_id, "version": window.version, "current_version": current,
                              "state": state, "since": _iso(stamp(window.since)) if window.since else None,
                              "until": _iso(stamp(window.until)) if window.until else None,
                              "now": now.astimezone(UTC).isoformat()}
    result.update(sql.enrollments(db, workflow_id, window))
    result.update(sql.actions(db, workflow_id, window))
    result["goal"] = ({key: shown.goal[key] for key in ("event", "within") if key in shown.goal}
                      if shown is not None and shown.goal else None)
    if result["goal"] is None:
        result["conversion_rate"] = None  # no goal: conversions are not counted, not zero
    result["steps"] = _steps(db, workflow_id, window, shown, versions)
    result["splits"] = _splits(db, workflow_id, window, shown, versions.get(current))
    result["problems"] = problems(db, workflow_id, now, versions, grace)
    if daily:
        result["daily"] = sql.daily(db, workflow_id, window)
    return result


def _steps(db: Any, workflow_id: str, window: Window, shown: Workflow | None,
           versions: dict[int, Workflow]) -> list[dict[str, Any]]:
    reached, left, suppressed = sql.arrivals(db, workflow_id, window)
    waiting = _waiting(db, workflow_id, window, versions)
    messages = sql.messages(db, workflow_id, window)
    feedback = sql.feedback(db, workflow_id, window)
    places = step_places(shown) if shown is not None else []
    known = {place.label for place in places}
    # Steps of other versions (or of a version that does not load) that the figures name, after the shown ones.
    extra_kinds: dict[str, str] = {}
    for number, workflow in sorted(versions.items(), reverse=True):
        if shown is not None and number == shown.version:
            continue
        for place in step_places(workflow):
            if place.label not in known:
                extra_kinds.setdefault(place.label, place.kind)
    rows = []
    for place in places:
        rows.append(_step_row(place.label, place.kind, place.depth, place.block, reached, left, suppressed, waiting,
                              messages, feedback))
    named = set(reached) | set(waiting) | set(messages)
    for label in sorted(named - known - {"trigger", "end", ""}):
        row = _step_row(label, extra_kinds.get(label, messages.get(label, {}).get("channel", "step")), 0, None,
                        reached, left, suppressed, waiting, messages, feedback)
        row["removed"] = True  # not in the version shown: an earlier version's step
        rows.append(row)
    return rows


def _step_row(label: str, kind: str, depth: int, block: str | None, reached: dict[str, int], left: dict[str, int],
              suppressed: dict[str, int], waiting: dict[str, int], messages: dict[str, dict[str, Any]],
              feedback: dict[str, dict[str, int]]) -> dict[str, Any]:
    row: dict[str, Any] = {"id": label, "kind": kind, "depth": depth, "block": block,
                           "reached": reached.get(label, 0), "waiting": waiting.get(label, 0),
                           "left": left.get(label, 0)}
    if kind in SENDS:
        counts = messages.get(label, {})
        heard = feedback.get(label, {})
        sent = counts.get("sent", 0)
        row.update({"sent": sent, "suppressed": suppressed.get(label, 0) + counts.get("cancelled", 0),
                    "failed": counts.get("parked", 0), "pending": counts.get("pending", 0),
                    "unknown": counts.get("unknown", 0)})
        for name in ("opened", "opened_prefetched", "clicked", "unsubscribed", "bounced", "complained"):
            row[name] = heard.get(name, 0)
        for name in ("open", "click", "unsubscribe", "bounce"):
            row[f"{name}_rate"] = rate(row[{"open": "opened", "click": "clicked", "unsubscribe": "unsubscribed",
                                             "bounce": "bounced"}[name]], sent)
    return row


def _waiting(db: Any, workflow_id: str, window: Window, versions: dict[int, Workflow]) -> dict[str, int]:
    """Enrollments in flight, by the label of the step they stand at."""
    found: dict[str, int] = defaultdict(int)
    for version, key, count in sql.in_flight_positions(db, workflow_id, window):
        workflow = versions.get(version)
        labels = workflow.step_labels() if workflow is not None else {}
        found[labels.get(key or "", key or "end")] += count
    return dict(found)


# --- splits ----------------------------------------------------------------------------------------------------


def _splits(db: Any, workflow_id: str, window: Window, shown: Workflow | None,
            running: Workflow | None) -> list[dict[str, Any]]:
    """Each split of the version shown, compared; a winner it picked is in force while the running version
    keeps the split's `winner:` and the variant."""
    if shown is None:
        return []
    in_force = {split.split: split.variants for split in winner_splits(running)} if running is not None else {}
    winners = {winner["split"]: {**{key: winner[key] for key in ("variant", "decided_at", "p_value")},
                                 "in_force": winner["variant"] in in_force.get(winner["split"], ())}
               for winner in releases.winners(db).get(workflow_id, [])}
    splits = []
    for place in step_places(shown):
        if place.kind != "split":
            continue
        value = place.step.value
        split_id = winners_split_id(place.step)
        names = list(value["variants"])
        arms, path = split_arms(db, workflow_id, place.label, names,
                                {name for name in names if not value["variants"][name].get("steps")}, window)
        result = compare(arms, path)
        entry: dict[str, Any] = {"id": split_id, "step": place.label, "winner": winners.get(split_id),
                                 "variants": [{"name": arm.name, "weight": value["variants"][arm.name]["weight"],
                                               "holdout": arm.holdout, "contacts": arm.contacts,
                                               "conversions": arm.conversions,
                                               "rate": rate(arm.conversions, arm.contacts)} for arm in arms]}
        entry.update(result.to_dict())
        if "winner" in value:
            entry["winner_rule"] = dict(value["winner"])
        splits.append(entry)
    return splits


def split_arms(db: Any, workflow_id: str, label: str, variants: tuple[str, ...] | list[str],
               holdouts: frozenset[str] | set[str], window: Window = EVERYTHING,
               converted_before: datetime | None = None) -> tuple[list[Arm], list[Day]]:
    """The split's variants as arms (the contacts the hash assigned them, and those who converted after), in the
    order written, and the path of their cumulative counts at the end of each UTC day (the always-valid test's).
    Contacts sent to a winner once it was picked are not counted: they were not assigned at random. The window
    keeps the assignments; `converted_before` cuts the conversions (a decision reads what came before it)."""
    assigned, converted = sql.split_counts(db, workflow_id, label, variants, window, converted_before)
    return arms_and_path(variants, holdouts, assigned, converted)


# --- problems --------------------------------------------------------------------------------------------------


def _late_by(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes or not (days or hours)
             else ""]
    return " ".join(part for part in parts if part)


def problems(db: Any, workflow_id: str | None, now: datetime, versions: dict[int, Workflow] | None = None,
             grace: timedelta = timedelta(hours=1), limit: int = PROBLEMS_SHOWN) -> dict[str, Any]:
    """What to act on: enrollments waiting past their wake-up by more than `grace` (a daemon that does not
    run, or a version that does not load), failed enrollments with their reason, parked and unknown messages;
    the oldest `limit` of each (failed ones: the latest) with their ids, and how many there are."""
    label_cache: dict[tuple[str, int], dict[str, str]] = {}

    def label(workflow: str, version: int, key: str | None) -> str:
        if (workflow, version) not in label_cache:
            known = versions if workflow == workflow_id and versions is not None else load_versions(db, workflow)
            label_cache.update({(workflow, number): item.step_labels() for number, item in known.items()})
            label_cache.setdefault((workflow, version), {})
        return label_cache[(workflow, version)].get(key or "", key or "end")

    stuck_total, rows = sql.stuck(db, workflow_id, now - grace, limit)
    stuck = []
    for enrollment, workflow, version, contact, key, wake_at in rows:
        wake = datetime.fromisoformat(wake_at)
        stuck.append({"enrollment": enrollment, "workflow": workflow, "contact": contact,
                      "step": label(workflow, version, key), "wake_at": _iso(wake_at), "late_by": _late_by(now - wake)})
    failed_total, rows = sql.failed_enrollments(db, workflow_id, limit)
    failed = [{"enrollment": enrollment, "workflow": workflow, "contact": contact,
               "step": label(workflow, version, key), "at": _iso(ended_at), "reason": reason or ""}
              for enrollment, workflow, version, contact, key, ended_at, reason in rows]
    messages_total, rows = sql.problem_messages(db, workflow_id, limit)
    messages = [{"id": message_id, "workflow": workflow, "contact": contact, "step": step, "status": status,
                 "answer": answer or "", "at": _iso(updated_at)}
                for message_id, workflow, contact, step, status, answer, updated_at in rows]
    return {"stuck": stuck, "stuck_total": stuck_total, "failed": failed, "failed_total": failed_total,
            "messages": messages, "messages_total": messages_total}


# --- per day ---------------------------------------------------------------------------------------------------


# --- every workflow --------------------------------------------------------------------------------------------


def overview(store: Store, now: datetime, window: Window = EVERYTHING) -> dict[str, Any]:
    """One line per deployed workflow: its enrollments, conversions, sends, opens and clicks, last action."""
    return sql.overview(store.db, now, window)


def dumps(figures: dict[str, Any]) -> str:
    return json.dumps(figures, indent=2, ensure_ascii=False)
