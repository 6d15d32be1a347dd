"""The daemon's timeline equals `mauto simulate`'s: the proof that a simulation can be trusted.

The sample project is deployed into a real store, the sample contacts, events and coupons are imported, and the
daemon is ticked with `now` through the same 30 days the simulation covers. Every step of every contact (not
only the sends) must come out the same, at the same moment, for every sample workflow; and the outbox must hold
exactly the messages the simulation rendered, with the same idempotency keys' steps and times. Webhook steps
call a real HTTP server on 127.0.0.1 that answers what samples/webhooks.yaml says.
"""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mauto.channels.webhook import call_webhook
from mauto.daemon import tick as runner
from mauto.daemon.tick import tick
from mauto.simulate import load_mapping, simulate
from mauto.store import open_store
from mauto.store.sqlite import stamp
from tests.daemon.conftest import ROOT, START, copy_project, open_project
from tests.servers import HttpServer

HORIZON = timedelta(days=30)
WORKFLOWS = sorted(path.stem for path in (ROOT / "workflows").glob("*.yaml"))


def run_daemon(root: Path, cadence: timedelta | None, server: HttpServer, location: str | None = None,
               workers: int = 1) -> list[tuple]:
    """The daemon's steps and messages over the samples' month; with `workers` > 1 (PostgreSQL), that many
    workers tick each moment at once, each on a connection of its own (`mauto.daemon.tick.shared_tick`)."""
    setup = open_project(root, location=location)
    hooks = load_mapping(root / "samples" / "webhooks.yaml", "webhooks")
    for url, answer in hooks.items():
        server.respond(urlsplit(url).path, 200, answer)

    def call(request: dict, key: str):  # the sample endpoint, served for real on 127.0.0.1
        local = dict(request, url=server.url(urlsplit(request["url"]).path))
        return call_webhook(local, key)

    end = START + HORIZON - timedelta(microseconds=1)
    moments = [START, end] if cadence is None else []  # the first tick marks where history ends
    moment = START
    while cadence is not None and moment < end:
        moments.append(moment)
        moment += cadence
    if cadence is not None:
        moments.append(end)
    others = [open_store(location, setup.store.now) for _ in range(workers - 1)] if location else []
    for now in moments:
        if not others:
            tick(setup.project, setup.store, now, {}, call=call, send=False)
            continue
        with ThreadPoolExecutor(workers) as pool:
            for done in [pool.submit(tick, setup.project, store, now, {}, None, call, False)
                         for store in (setup.store, *others)]:
                done.result()
    for other in others:
        other.close()
    db = setup.store.db
    steps = [tuple(row) for row in db.execute("SELECT at, contact, workflow, step, kind, detail FROM step_log")]
    messages = [tuple(row) for row in db.execute(
        "SELECT created_at, contact, workflow, step, channel, template FROM messages")]
    setup.store.close()
    return steps, messages


@pytest.fixture(scope="module")
def runs(tmp_path_factory, pg_cluster):
    project = copy_project(tmp_path_factory.mktemp("simulated"))
    setup = open_project(project)
    result = simulate(setup.project, None, START, HORIZON)
    setup.store.close()
    simulated_steps = sorted((stamp(e.at), e.contact, e.workflow, e.step, e.kind, e.detail) for e in result.timeline)
    simulated_messages = sorted((stamp(m.at), m.contact, m.workflow, m.step, m.channel, m.template)
                                for m in result.messages)
    with HttpServer() as server:
        daemon = {name: run_daemon(copy_project(tmp_path_factory.mktemp(name)), cadence, server)
                  for name, cadence in (("hourly", timedelta(hours=1)), ("daily", timedelta(days=1)),
                                        ("once", None))}
        # The month in one tick again, in batches of 7 items, everything loaded forgotten after each batch
        # (as a tick with more than runner.KEEP contacts does): what is read back from the store must be
        # what was in memory.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(runner, "BATCH", 7)
            patch.setattr(runner, "KEEP", 0)
            daemon["once, forgetting"] = run_daemon(copy_project(tmp_path_factory.mktemp("forgetting")), None,
                                                   server)
            # And on PostgreSQL (tests/pg.py): the same ports' code over another engine, its SQL translated.
            daemon["once, forgetting, postgresql"] = run_daemon(
                copy_project(tmp_path_factory.mktemp("forgetting-pg")), None, server, pg_cluster.url())
        daemon["daily, postgresql"] = run_daemon(copy_project(tmp_path_factory.mktemp("daily-pg")),
                                                 timedelta(days=1), server, pg_cluster.url())
        # Three workers ticking each moment at once, taking 2 contacts at a time: contacts claimed apart, one
        # planning at a time.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(runner, "CLAIM", 2)
            daemon["6-hourly, postgresql, 3 workers"] = run_daemon(
                copy_project(tmp_path_factory.mktemp("workers-pg")), timedelta(hours=6), server, pg_cluster.url(), 3)
    return simulated_steps, simulated_messages, daemon


@pytest.mark.parametrize("cadence", ["hourly", "daily", "once", "once, forgetting", "daily, postgresql",
                                     "once, forgetting, postgresql", "6-hourly, postgresql, 3 workers"])
@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_daemon_timeline_equals_the_simulation(runs, workflow: str, cadence: str) -> None:
    simulated_steps, simulated_messages, daemon = runs
    steps, messages = daemon[cadence]
    mine = [row for row in sorted(steps) if row[2] == workflow]
    expected = [row for row in simulated_steps if row[2] == workflow]
    assert expected, f"the samples never run {workflow}: the parity test would prove nothing for it"
    assert mine == expected
    assert sorted(row for row in messages if row[2] == workflow) == \
        [row for row in simulated_messages if row[2] == workflow]


def test_the_samples_exercise_sends_waits_and_webhooks(runs) -> None:
    """Guard against a vacuous parity: the shared timeline has sends on both channels, waits, a webhook."""
    simulated_steps, simulated_messages, _ = runs
    kinds = Counter(row[4] for row in simulated_steps)
    channels = Counter(row[4] for row in simulated_messages)
    assert kinds["send"] >= 20 and kinds["wait"] >= 20 and kinds["webhook"] >= 1 and kinds["coupon"] >= 1
    assert channels["email"] >= 10 and channels["sms"] >= 1
