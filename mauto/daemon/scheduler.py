"""`mauto daemon`: ticks on a schedule (APScheduler), one at a time, until asked to stop."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from mauto.channels import base as channels
from mauto.config import Project
from mauto.daemon.lock import RunnerBusy
from mauto.daemon.report import TickReport
from mauto.daemon.tick import tick
from mauto.driver.sqlite import Log
from mauto.errors import MautoError
from mauto.store import runtime
from mauto.store.runtime import failure_reason as _reason
from mauto.store.sqlite import Store
from mauto.workflow.loader import parse
from mauto.workflow.model import build


def serve(project: Project, open_store: Callable[[], Store], interval: timedelta,
          transports: Callable[[], dict[str, channels.Transport]], log: Log,
          on_report: Callable[[TickReport], None], stop: Any,
          clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    """Run ticks every `interval` and at each `schedule` trigger's cron line until `stop` (a threading.Event)
    is set: APScheduler, one tick at a time (one worker thread), missed runs coalesced into one.

    The tick in hand when `stop` is set finishes its batch and returns; then this returns."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    from mauto.workflow.cron import parse_cron

    failures: list[BaseException] = []

    def run() -> None:
        if stop.is_set():
            return
        try:
            with open_store() as store:
                report = tick(project, store, clock(), transports(), log, stopping=stop.is_set)
            on_report(report)
        except RunnerBusy as error:
            log("busy", {"why": error.message})
        except MautoError as error:  # the store is locked, a channel is misconfigured: say so, go on
            log("error", {"why": str(error)})
        except BaseException as error:  # noqa: BLE001 - a bug: stop the daemon, the caller reports it
            failures.append(error)
            stop.set()

    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(1)}, timezone=UTC,
                                    job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
    scheduler.add_job(run, IntervalTrigger(seconds=max(interval.total_seconds(), 1)), id="tick",
                      next_run_time=datetime.now(UTC))
    with open_store() as store:
        crons = [(row[0], runtime.workflow_source(store.db, row[0], row[1])) for row in
                 runtime.running_workflows(store.db)]
    for workflow_id, source in crons:
        try:
            workflow = build(parse(source or "", workflow_id))
        except Exception as error:  # noqa: BLE001 - each tick reports it (a `workflow` failure); the rest run
            log("error", {"workflow": workflow_id, "why": f"cannot be loaded: {_reason(error)}"})
            continue
        if workflow.trigger.kind == "schedule":
            spec = workflow.trigger.value
            scheduler.add_job(run, parse_cron(spec["cron"], spec.get("timezone") or project.timezone),
                              id=f"schedule:{workflow_id}")
    scheduler.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        scheduler.shutdown(wait=True)  # the tick in hand sees `stop` and ends after its batch
    if failures:
        raise failures[0]
