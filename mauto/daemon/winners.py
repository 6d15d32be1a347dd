"""The daemon's side of a split that picks its winner (mauto.engine.winners): at its first tick after each
midnight UTC, each running split with a `winner:` and no winner yet is tallied from the store up to that midnight
(`mauto.stats.query.split_arms`) and decided; a decision is kept in `split_winners` (and logged), and from then
on the engine sends every new entry to the winner."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from mauto.engine.winners import decide, describe, midnight, winner_splits
from mauto.stats.query import Window, split_arms
from mauto.store import releases, runtime
from mauto.store.sqlite import stamp
from mauto.workflow.model import Workflow

CHECKED = "winners_checked"  # runner_state: the last midnight (a date) the splits were decided at


def winners_due(db: Any, running: Iterable[Workflow], now: datetime) -> datetime | None:
    """The first midnight UTC since the last tick, up to `now`, at which the splits still open (a running split
    with `winner:` and no winner) are to be decided; None when there is none, or on the very first tick (what
    came before it is history)."""
    decided = releases.winner_variants(db)
    if not any((workflow.id, split.split) not in decided for workflow in running for split in winner_splits(workflow)):
        return None
    last = runtime.get_state(db, "clock")
    if last is None:
        return None
    cut = midnight(datetime.fromisoformat(last)) + timedelta(days=1)
    checked = runtime.get_state(db, CHECKED)
    if checked is not None:
        cut = max(cut, datetime.combine(date.fromisoformat(checked), time(0), UTC) + timedelta(days=1))
    return cut if cut <= now else None


def winners_in_force(db: Any, running: Iterable[Workflow]) -> dict[tuple[str, str], str]:
    """The winners in force, as decided (no decision made here: a worker claiming contacts on PostgreSQL, while
    the one planning decides)."""
    kept = {(workflow.id, split.split) for workflow in running for split in winner_splits(workflow)}
    return {key: variant for key, variant in releases.winner_variants(db).items() if key in kept}


def decide_winners(db: Any, running: Iterable[Workflow], now: datetime,
                   log: Callable[[str, dict[str, Any]], None]) -> dict[tuple[str, str], str]:
    """The winners in force, after deciding the splits still open at the last midnight up to `now`, once
    (inside the caller's transaction). A winner is in force while the running version keeps its split's
    `winner:` (a version that drops it splits by weight again)."""
    running = list(running)
    kept = {(workflow.id, split.split) for workflow in running for split in winner_splits(workflow)}
    decided = {key: variant for key, variant in releases.winner_variants(db).items() if key in kept}
    cut = midnight(now)
    day = cut.date().isoformat()
    checked = runtime.get_state(db, CHECKED)
    if checked is not None and checked >= day:
        return decided
    for workflow in running:
        for split in winner_splits(workflow):
            if (workflow.id, split.split) in decided:
                continue
            try:
                arms, path = split_arms(db, workflow.id, split.label, split.variants, split.holdouts,
                                        Window(until=cut), converted_before=cut)
                decision = decide(split, arms, path)
            except (ValueError, ArithmeticError) as error:  # one split's figures never stop the tick
                why = f"split {split.split} could not pick its winner: {type(error).__name__}: {error}"
                runtime.record_failure(db, stamp(now), "workflow", why, ref=f"{workflow.id}:{workflow.version}",
                                       workflow=workflow.id)
                log("error", {"workflow": workflow.id, "split": split.split, "why": why})
                continue
            if decision is None:
                continue
            releases.record_winner(db, workflow.id, split.split, decision.variant, workflow.version, stamp(cut),
                                   decision.p_value, decision.verdict)
            decided[(workflow.id, split.split)] = decision.variant
            log("winner", describe(split, decision, cut))
    runtime.set_state(db, CHECKED, day)
    return decided
