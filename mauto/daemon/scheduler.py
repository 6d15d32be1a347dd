"""`mauto daemon`: ticks on a schedule (APScheduler), one at a time, until asked to stop."""
from __future__ import annotations

import contextlib
import os
import socket
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
from mauto.store import runtime, workers
from mauto.store.runtime import failure_reason as _reason
from mauto.store.sqlite import Store
from mauto.workflow.loader import parse
from mauto.workflow.model import build


class Heartbeat:
    """This daemon's row in `workers` (mauto.store.workers), written with the wall clock: when it starts, around
    each tick, when it stops. A heartbeat that cannot be written is logged; it never stops a tick."""

    def __init__(self, interval: timedelta, log: Log) -> None:
        self.started = datetime.now(UTC)
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.id = f"{self.host}:{self.pid}:{self.started:%Y%m%dT%H%M%S}"
        self.interval, self.log = interval, log

    def beat(self, store: Store, state: str, ticked: bool = False) -> None:
        try:
            with store.transaction() as db:
                workers.beat(db, self.id, self.host, self.pid, self.started, datetime.now(UTC), self.interval, state,
                             ticked)
        except MautoError as error:
            self.log("error", {"why": f"heartbeat not written: {error}"})


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
    heart = Heartbeat(interval, log)

    def run() -> None:
        if stop.is_set():
            return
        try:
            with open_store() as store:
                heart.beat(store, "ticking")
                try:
                    report = tick(project, store, clock(), transports(), log, stopping=stop.is_set)
                except RunnerBusy:
                    heart.beat(store, "waiting")
                    raise
                heart.beat(store, "idle", ticked=True)
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
    with open_store() as store:
        heart.beat(store, "idle")
    scheduler.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        scheduler.shutdown(wait=True)  # the tick in hand sees `stop` and ends after its batch
        with contextlib.suppress(MautoError), open_store() as store:
            heart.beat(store, "stopped")
    if failures:
        raise failures[0]
