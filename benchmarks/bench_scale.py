#!/usr/bin/env python
"""Many workers on one PostgreSQL store: 100,000 due enrollments drained by 1, 2 and 4 worker processes, each run
against a bare `FOR UPDATE SKIP LOCKED` claim-and-update loop with as many processes, in the same run; and the
outbox's store work with as many workers.

    python benchmarks/bench_scale.py                       # 100,000 enrollments, 1, 2, 4 workers: about 35 minutes
    python benchmarks/bench_scale.py --contacts 5000       # a quick look
    python benchmarks/bench_scale.py --workers 1,2 --outbox-messages 0 --json scale.json
    python benchmarks/bench_scale.py --send --audience     # then bench_send.py and bench_audience.py, as they are

1. The store. bench_daemon.py's project and data in a SQLite file: the sample project (`mauto.yaml`,
   `templates/`, `workflows/abandoned-cart.yaml`; email and SMS to the `file` transport), N generated contacts
   imported, one `cart_abandoned` each at T (a Tuesday, 09:00 in Paris) ingested, a first tick at T - 1 min
   (history). That store is copied into PostgreSQL by `mauto.store.copy.copy_store` (checked row for row), and
   the tick at T + 1 min that enrolls the N contacts runs there, with the most workers asked for (each contact
   then waits at the workflow's first step, `wait: 1h`). (It runs there and not in SQLite, as bench_daemon does,
   because SQLite's enrolling tick was quadratic when this was written; it is linear again: docs/performance.md,
   "Enrolling on SQLite (issue 15)".) The tables that hold rows are
   analysed, and the database is kept as a template.

2. Each round starts from a fresh clone of it (`CREATE DATABASE … TEMPLATE …`) and W worker processes, started
   and connected before the clock starts (each has opened the store with `open_store` and read the current
   release, as a running daemon has), then told to go at once: each runs ONE tick at the same `now` (the end of
   the first wait: all N enrollments due) with `mauto.daemon.tick.tick(project, store, now, {}, send=False)`,
   i.e. `shared_tick`: one worker plans at a time, then all claim contacts `CLAIM` at a time with FOR UPDATE
   SKIP LOCKED and drain what is due for them. Each enrollment goes through the A/B split, renders and queues
   reminder-1 into the outbox (not sent: `send=False`) and stops at `wait: 24h`: three step_log rows, one
   message row (about 3 kB) and the enrollment's row written per enrollment. The time is from the first
   worker's go to the last worker's end; enrollments/s is N over it.

   Then, on the database that run left, the outbox with as many workers: the first `--outbox-messages` of the
   queued messages (the others cancelled first, untimed) sent by `mauto.daemon.outbox.send_outbox` in each
   worker, as a tick's send phase runs it on PostgreSQL (messages claimed with a lease, consent and suppression
   checked, the hand-off mark committed before the hand-off, the answer and an `email_sent` event recorded
   after), to a provider that accepts every message at once: what is timed is mauto's and the database's part
   of sending, the ceiling that SMTP connections (bench_send.py) then divide.

   The bare loop, with the same number of processes, on another fresh clone: each process repeats, in one
   transaction per batch, `SELECT id FROM enrollments WHERE state IN ('active', 'waiting') AND wake_at <= now
   ORDER BY wake_at, id LIMIT 200 FOR UPDATE SKIP LOCKED` then an UPDATE of each claimed row's `data`, `state`
   and `wake_at` to the values mauto's first run wrote (read from that run's database, loaded into each
   process before the clock starts; sent as one `executemany`, which psycopg pipelines), until no row is due.
   It writes only the enrollments: not the step log, the outbox, the contact nor the events mauto writes.

   Beside each run: the CPU time of the cluster's processes (from /proc) and the WAL it wrote.

3. After every run the database is checked: no enrollment left due, every enrollment of the workflow advanced
   exactly once (for mauto: one `split`, one `send` and one `wait` row in step_log for each, one message each,
   the workers' `advanced` adding up to N; for the outbox: each message handed over once, by one worker, recorded
   `sent`, one `email_sent` event each; for the bare loop: the rows updated adding up to N, each row holding
   mauto's values). A run that fails a check is reported as FAIL and the script exits 1. Last, the rows and
   bytes (table with TOAST; indexes) of the tables a tick writes, after the first drain.

The cluster is the tests' throwaway one (`tests.pg.cluster`: initdb in a temporary folder, 127.0.0.1, run as the
`postgres` user under root), restarted with `fsync` on (the tests run it off) unless `--fsync off`. Nothing is
sent anywhere. Sending over SMTP and audience queries have their own scripts: `benchmarks/bench_send.py` (1, 4,
16 SMTP connections against a local server) and `benchmarks/bench_audience.py`; `--send` and `--audience` run
them after this one, unchanged.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine as describe  # noqa: E402

TEMPLATE = "bench_scale_template"
BARE_BATCH = 200  # rows a bare worker claims at a time: mauto's CLAIM
WORKFLOW = "abandoned-cart"
KINDS = ("split", "send", "wait")  # the step_log rows one enrollment's advance writes


# --------------------------------------------------------------------------------------------------------------------
# The workers (each a process of its own)
# --------------------------------------------------------------------------------------------------------------------

def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: its own, where ru_maxrss keeps the parent's peak across
    fork and exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _go() -> None:
    """Say ready, then wait for the word: every worker starts at once, connected and warm."""
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("no go")


def mauto_worker(url: str, now_text: str, folder: str) -> dict[str, Any]:
    """One `mauto run --once` worth of work: one tick at `now`, send=False; with stopwatches around its phases."""
    from mauto.config import load_project
    from mauto.daemon import tick as ticking
    from mauto.release import release_project
    from mauto.store import runtime
    from mauto.store.locations import open_store

    spent: dict[str, float] = {}
    counted: dict[str, int] = {"claims": 0, "claimed": 0, "empty_claims": 0}

    def timed(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - began
        return wrapper

    claim = runtime.claim_contacts

    def claim_contacts(*args: Any, **kwargs: Any) -> list[Any]:
        began = time.perf_counter()
        found = claim(*args, **kwargs)
        spent["claim_query"] = spent.get("claim_query", 0.0) + time.perf_counter() - began
        counted["claims"] += 1
        counted["claimed"] += len(found)
        counted["empty_claims"] += not found
        return found

    runtime.claim_contacts = claim_contacts
    ticking._plan = timed("plan", ticking._plan)
    ticking._claim_all = timed("claim_phase", ticking._claim_all)
    ticking.Tick.drain = timed("drain", ticking.Tick.drain)  # type: ignore[method-assign]
    project = load_project(Path(folder) / "mauto.yaml", Path(folder))
    now = datetime.fromisoformat(now_text)
    store = open_store(url, lambda: now, timeout=30.0)
    release_project(project, store)  # the release's files written out and loaded: a running daemon has them
    _go()
    cpu, began, wall_began = time.process_time(), time.perf_counter(), time.time()
    report = ticking.tick(project, store, now, {}, send=False)
    seconds, ended = time.perf_counter() - began, time.time()
    cpu = time.process_time() - cpu
    store.close()
    return {"began": wall_began, "ended": ended, "seconds": seconds, "cpu": cpu, "report": report.to_dict(),
            "spent": spent, "counted": counted,
            "peak_rss_mb": peak_rss_mb()}


def bare_worker(url: str, now_text: str, values_file: str) -> dict[str, Any]:
    """The bare loop: claim due rows BARE_BATCH at a time with SKIP LOCKED, write mauto's values, commit."""
    import psycopg

    from mauto.store.sqlite import stamp

    with open(values_file, "rb") as handle:
        values: dict[str, tuple[str, str, str | None]] = pickle.load(handle)
    moment = stamp(datetime.fromisoformat(now_text))
    connection = psycopg.connect(url, autocommit=True)
    _go()
    cpu, began, wall_began = time.process_time(), time.perf_counter(), time.time()
    updated = batches = 0
    while True:
        with connection.transaction(), connection.cursor() as cursor:
            cursor.execute("SELECT id FROM enrollments WHERE state IN ('active', 'waiting') AND "
                           "(wake_at IS NULL OR wake_at <= %s) ORDER BY wake_at, id LIMIT %s FOR UPDATE SKIP LOCKED",
                           [moment, BARE_BATCH])
            claimed = [row[0] for row in cursor.fetchall()]
            if not claimed:
                break
            cursor.executemany("UPDATE enrollments SET data = %s, state = %s, wake_at = %s WHERE id = %s",
                               [(*values[ident], ident) for ident in claimed])
        updated += len(claimed)
        batches += 1
    seconds, ended = time.perf_counter() - began, time.time()
    cpu = time.process_time() - cpu
    connection.close()
    return {"began": wall_began, "ended": ended, "seconds": seconds, "cpu": cpu, "updated": updated,
            "batches": batches, "peak_rss_mb": peak_rss_mb()}


def outbox_worker(url: str, now_text: str, _unused: str) -> dict[str, Any]:
    """The outbox's store work on PostgreSQL: `send_outbox` as a tick runs it, to a provider that accepts every
    message at once (`Accepting`), so that what is timed is mauto's and the database's part of sending."""
    from mauto.channels.base import SENT, Delivery, Handoff, Outgoing, Transport
    from mauto.daemon.outbox import send_outbox
    from mauto.daemon.report import TickReport
    from mauto.store.locations import open_store

    class Accepting(Transport):
        name = "accepting"

        def __init__(self) -> None:
            self.ids: list[int] = []

        def send(self, message: Outgoing, handoff: Handoff) -> Delivery:
            handoff()  # the hand-off mark, committed before the point of no return, as SMTP's DATA
            self.ids.append(message.id)
            return Delivery(SENT, "250 2.0.0 accepted", provider_id=f"accepted-{message.id}")

    now = datetime.fromisoformat(now_text)
    store = open_store(url, lambda: now, timeout=30.0)
    transport = Accepting()
    _go()
    cpu, began, wall_began = time.process_time(), time.perf_counter(), time.time()
    report = TickReport(now)
    send_outbox(store, now, {"email": transport, "sms": transport}, lambda kind, data: None, report)
    seconds, ended = time.perf_counter() - began, time.time()
    cpu = time.process_time() - cpu
    store.close()
    return {"began": wall_began, "ended": ended, "seconds": seconds, "cpu": cpu, "report": report.to_dict(),
            "ids": transport.ids, "peak_rss_mb": peak_rss_mb()}


# --------------------------------------------------------------------------------------------------------------------
# The runs
# --------------------------------------------------------------------------------------------------------------------

def admin(cluster: Any) -> Any:
    import psycopg

    return psycopg.connect(cluster.admin_url(), autocommit=True)


def run_workers(kind: str, count: int, arguments: list[str]) -> dict[str, Any]:
    """Start `count` workers of `kind`, wait until each is ready, tell them all to go; their results."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    processes = [subprocess.Popen([sys.executable, __file__, f"--_{kind}", *arguments], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
                 for _ in range(count)]
    for process in processes:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if line != "ready":
            _, err = process.communicate()
            raise SystemExit(f"a {kind} worker did not start: {line} {err}")
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    results = []
    for process in processes:
        out, err = process.communicate()
        if process.returncode:
            sys.stderr.write(err)
            raise SystemExit(f"a {kind} worker failed ({process.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(result["ended"] for result in results) - min(result["began"] for result in results)
    return {"workers": results, "wall": wall}


def server_cpu_during(cluster: Any, function: Any) -> tuple[Any, float | None]:
    """Run `function`; its result, and the CPU seconds this cluster's processes used meanwhile (None when they
    cannot be read): the postmaster's own time and what it got from its children that ended (a backend's time
    moves into its parent's cutime/cstime when it exits), plus its live children's."""
    try:
        postmaster = int((cluster.folder / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return function(), None
    ticks = os.sysconf("SC_CLK_TCK")

    def total() -> float:
        seconds = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(entry.name) == postmaster:  # utime, stime, cutime, cstime
                seconds += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
            elif int(fields[1]) == postmaster:  # a live backend or helper: utime, stime
                seconds += int(fields[11]) + int(fields[12])
        return seconds / ticks

    before = total()
    result = function()
    return result, total() - before


def clone(cluster: Any, name: str) -> str:
    with admin(cluster) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    return cluster.admin_url(name)


def drop(cluster: Any, name: str) -> None:
    with admin(cluster) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')


def row(cursor: Any) -> tuple[Any, ...]:
    """The one row a query answers."""
    found = cursor.fetchone()
    assert found is not None
    return tuple(found)


def one(url: str, sql: str, parameters: list[Any] | None = None) -> Any:
    import psycopg

    with psycopg.connect(url) as connection:
        return row(connection.execute(sql, parameters or []))[0]


def check_mauto(url: str, due: int, log_before: int, messages_before: int, moment: str,
                results: list[dict[str, Any]]) -> list[str]:
    """What the run must have done: every due enrollment advanced exactly once, nothing left due."""
    import psycopg

    problems = []
    advanced = sum(result["report"]["advanced"] for result in results)
    if advanced != due:
        problems.append(f"the workers advanced {advanced} enrollments, {due} were due")
    failed = sum(result["report"]["failed"] + result["report"]["errors"] for result in results)
    if failed:
        problems.append(f"{failed} failures or errors: " + "; ".join(
            str(result["report"].get("problems")) for result in results if result["report"]["errors"]))
    with psycopg.connect(url) as connection:
        left = row(connection.execute("SELECT count(*) FROM enrollments WHERE state IN ('active', 'waiting') AND "
                                  "(wake_at IS NULL OR wake_at <= %s)", [moment]))[0]
        if left:
            problems.append(f"{left} enrollments are still due")
        kinds: dict[str, int] = dict(connection.execute(
            "SELECT kind, count(*) FROM step_log WHERE id > %s GROUP BY kind", [log_before]).fetchall())
        if {kind: kinds.get(kind, 0) for kind in KINDS} != {kind: due for kind in KINDS} or set(kinds) - set(KINDS):
            problems.append(f"step_log rows written: {kinds}, expected {due} of each of {', '.join(KINDS)}")
        twice = row(connection.execute("SELECT count(*) FROM (SELECT enrollment, kind FROM step_log WHERE id > %s "
                                   "GROUP BY enrollment, kind HAVING count(*) > 1) AS twice",
                                   [log_before]))[0]
        if twice:
            problems.append(f"{twice} (enrollment, kind) pairs written more than once in step_log")
        logged = row(connection.execute("SELECT count(DISTINCT enrollment) FROM step_log WHERE id > %s",
                                    [log_before]))[0]
        if logged != due:
            problems.append(f"{logged} distinct enrollments in the new step_log rows, {due} were due")
        made, distinct = row(connection.execute("SELECT count(*), count(DISTINCT enrollment) FROM messages "
                                                "WHERE id > %s", [messages_before]))
        if made != due or distinct != due:
            problems.append(f"{made} messages queued for {distinct} enrollments, {due} were due")
    return problems


def check_bare(url: str, due: int, moment: str, values: dict[str, tuple[str, str, str | None]],
               results: list[dict[str, Any]]) -> list[str]:
    import psycopg

    problems = []
    updated = sum(result["updated"] for result in results)
    if updated != due:
        problems.append(f"the bare workers updated {updated} rows, {due} were due")
    with psycopg.connect(url) as connection:
        left = row(connection.execute("SELECT count(*) FROM enrollments WHERE state IN ('active', 'waiting') AND "
                                  "(wake_at IS NULL OR wake_at <= %s)", [moment]))[0]
        if left:
            problems.append(f"{left} enrollments are still due")
        rows = connection.execute("SELECT id, data, state, wake_at FROM enrollments").fetchall()
    differ = sum(1 for ident, data, state, wake_at in rows if ident in values and values[ident] != (data, state,
                                                                                                      wake_at))
    if differ:
        problems.append(f"{differ} rows do not hold mauto's values")
    return problems


def keep_first(url: str, count: int) -> int:
    """Leave the first `count` messages the drain queued pending, the others cancelled (not timed): the outbox
    run sends that many. How many are pending."""
    import psycopg

    with psycopg.connect(url) as connection:
        connection.execute("UPDATE messages SET status = 'cancelled' WHERE status = 'pending' AND id NOT IN "
                           "(SELECT id FROM messages WHERE status = 'pending' ORDER BY id LIMIT %s)", [count])
        return int(row(connection.execute("SELECT count(*) FROM messages WHERE status = 'pending'"))[0])


def check_outbox(url: str, pending: int, events_before: int, results: list[dict[str, Any]]) -> list[str]:
    """Every pending message handed to the provider exactly once, recorded sent, with its email_sent event."""
    import psycopg

    problems = []
    handed = [ident for result in results for ident in result["ids"]]
    if len(handed) != pending or len(set(handed)) != pending:
        problems.append(f"{len(handed)} hand-offs of {len(set(handed))} messages, {pending} were pending")
    sent = sum(result["report"]["sent"] for result in results)
    if sent != pending:
        problems.append(f"the workers report {sent} sent, {pending} were pending")
    with psycopg.connect(url) as connection:
        statuses: dict[str, int] = dict(connection.execute(
            "SELECT status, count(*) FROM messages WHERE status != 'cancelled' GROUP BY status").fetchall())
        if statuses != {"sent": pending}:
            problems.append(f"messages afterwards: {statuses}")
        marked = row(connection.execute("SELECT count(*) FROM messages WHERE handoff_at IS NOT NULL"))[0]
        if marked:
            problems.append(f"{marked} messages keep a hand-off mark")
        events = row(connection.execute("SELECT count(*), count(DISTINCT properties) FROM events WHERE seq > %s AND "
                                    "name = 'email_sent'", [events_before]))
        if tuple(events) != (pending, pending):
            problems.append(f"{events[0]} email_sent events for {events[1]} messages, {pending} were sent")
    return problems


def table_sizes(url: str) -> dict[str, dict[str, float]]:
    """Rows and bytes (the table with its TOAST, its indexes) of the tables a tick writes."""
    import psycopg

    sizes = {}
    with psycopg.connect(url) as connection:
        for table in ("contacts", "events", "enrollments", "step_log", "messages"):
            rows = row(connection.execute(f'SELECT count(*) FROM "{table}"'))[0]
            heap, indexes = row(connection.execute("SELECT pg_table_size(%s::regclass), pg_indexes_size(%s::regclass)",
                                               [table, table]))
            indexed = row(connection.execute("SELECT count(*) FROM pg_indexes WHERE tablename = %s", [table]))[0]
            sizes[table] = {"rows": rows, "table_bytes": heap, "index_bytes": indexes, "indexes": indexed}
    return sizes


def wal_position(cluster: Any) -> int:
    with admin(cluster) as connection:
        return int(row(connection.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"))[0])


# --------------------------------------------------------------------------------------------------------------------
# Setting up
# --------------------------------------------------------------------------------------------------------------------

def sqlite_setup(folder_text: str, count_text: str) -> dict[str, Any]:
    """In a child process: bench_daemon.py's project, contacts and events in a SQLite store, and its first tick
    (history), as its `setup` does; not its enrolling tick, which runs on PostgreSQL (`build_template`)."""
    from benchmarks.bench_daemon import DEPLOYED, IMPORTED, T, generate, make_project
    from mauto.channels import build_transports
    from mauto.config import load_project
    from mauto.daemon.tick import tick
    from mauto.deploy import deploy
    from mauto.store import Store
    from mauto.store.contacts import import_contacts
    from mauto.store.events import ingest_events

    folder, count = Path(folder_text), int(count_text)
    config = make_project(folder, {"email": {"transport": "file", "path": "outbox"},
                                   "sms": {"transport": "file", "path": "outbox"}})
    contacts, events = generate(folder, count)
    project = load_project(config, folder)
    with Store(folder / "mauto.db", lambda: IMPORTED, create=True, timeout=30.0) as store:
        deploy(project, store, DEPLOYED)
        imported = import_contacts(store, contacts, fields=project.contact_fields, zone=project.timezone)
        ingested = ingest_events(store, events, catalogue=project.events, zone=project.timezone)
        if not (imported.committed and imported.ok and ingested.committed and ingested.ok):
            raise SystemExit(f"setup: {imported.to_dict()} {ingested.to_dict()}")
        tick(project, store, T - timedelta(minutes=1), build_transports(project, {}))
    return {"contacts": count}


def analyse(url: str) -> None:
    """Statistics for the tables that hold rows, as autovacuum would have them by now. The empty ones are left
    never analysed, as in a store `mauto db copy` just filled: the outbox's table analysed while empty would make
    PostgreSQL cache a sequential scan for the per-contact message query (docs/scaling.md)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        tables = [row[0] for row in connection.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() ORDER BY relname")]
        for table in tables:
            if row(connection.execute(f'SELECT EXISTS (SELECT 1 FROM "{table}")'))[0]:
                connection.execute(f'VACUUM ANALYZE "{table}"')


def build_template(cluster: Any, folder: Path, contacts: int, enrolling_workers: int) -> dict[str, Any]:
    """The contacts and their events in SQLite (a child process), copied into the template database, then the
    tick that enrolls them run there by `enrolling_workers` workers; analysed."""
    import psycopg

    from benchmarks.bench_daemon import T
    from mauto.store import Store
    from mauto.store.copy import copy_store

    figures: dict[str, Any] = {}
    began = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--_setup", str(folder), str(contacts)], capture_output=True,
                          text=True, cwd=ROOT)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit("the SQLite setup failed")
    figures["sqlite_s"] = time.perf_counter() - began
    drop(cluster, TEMPLATE)
    with admin(cluster) as connection:
        connection.execute(f'CREATE DATABASE "{TEMPLATE}"')
    url = cluster.admin_url(TEMPLATE)
    began = time.perf_counter()
    with Store(folder / "mauto.db", timeout=30.0) as source:
        copied = copy_store(source, url, shown_target=TEMPLATE)
    figures["copy_s"] = time.perf_counter() - began
    figures["copy_rows"] = copied.total
    analyse(url)
    enrolling = run_workers("mauto", enrolling_workers, [url, (T + timedelta(minutes=1)).isoformat(), str(folder)])
    figures["enrolling"] = {"workers": enrolling_workers, "wall": enrolling["wall"],
                            "enrolled": sum(worker["report"]["enrolled"] for worker in enrolling["workers"]),
                            "events": sum(worker["report"]["events"] for worker in enrolling["workers"]),
                            "queued": sum(worker["report"]["queued"] for worker in enrolling["workers"])}
    analyse(url)
    with psycopg.connect(url, autocommit=True) as connection:
        figures["size_mb"] = row(connection.execute("SELECT pg_database_size(current_database())"))[0] / 2**20
        figures["rows"] = {table: row(connection.execute(f'SELECT count(*) FROM "{table}"'))[0]
                           for table in ("contacts", "events", "enrollments", "step_log", "messages")}
    with admin(cluster) as connection:
        connection.execute("CHECKPOINT")
    return figures


def due_now(url: str) -> tuple[int, str, str]:
    """How many enrollments the measured tick finds due, at what moment (the end of the first wait)."""
    from benchmarks.bench_daemon import T, first_wait
    from mauto.store.sqlite import stamp

    now = T + timedelta(minutes=1) + first_wait()
    moment = stamp(now)
    due = one(url, "SELECT count(*) FROM enrollments WHERE state IN ('active', 'waiting') AND (wake_at IS NULL OR "
                   "wake_at <= %s)", [moment])
    return int(due), now.isoformat(), moment


def restart_with_fsync(cluster: Any) -> None:
    """The tests' cluster runs with fsync off (`-c fsync=off` on its command line, which no configuration file
    overrides): restarted here with the same options but fsync, so that every commit waits for the disk, as in
    production."""
    from tests.pg import binaries

    folder = binaries()
    assert folder is not None
    options = (f"-c listen_addresses=127.0.0.1 -c port={cluster.port} -c unix_socket_directories={cluster.folder} "
               "-c fsync=on -c max_connections=200 -c shared_buffers=64MB")
    command = [str(folder / "pg_ctl"), "-D", str(cluster.folder / "data"), "-o", options, "-l",
               str(cluster.folder / "log"), "-w", "-t", "60", "restart"]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)


def settings(cluster: Any) -> dict[str, str]:
    with admin(cluster) as connection:
        return {name: row(connection.execute(f"SHOW {name}"))[0]
                for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers", "wal_level",
                             "max_wal_size", "checkpoint_timeout")}


# --------------------------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------------------------

def load() -> str:
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def seconds(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f} s"


def describe_mauto(run: dict[str, Any], due: int) -> str:
    lines = []
    for number, worker in enumerate(run["workers"], 1):
        spent, counted, report = worker["spent"], worker["counted"], worker["report"]
        other = worker["seconds"] - spent.get("plan", 0.0) - spent.get("claim_phase", 0.0)
        lines.append(
            f"      worker {number}: advanced {report['advanced']:,} ({100 * report['advanced'] / max(due, 1):.0f}%), "
            f"{worker['seconds']:.1f} s (plan {spent.get('plan', 0.0):.2f} s, claim phase "
            f"{spent.get('claim_phase', 0.0):.1f} s of which claim queries {spent.get('claim_query', 0.0):.2f} s "
            f"in {counted['claims']} claims ({counted['empty_claims']} empty), drain "
            f"{spent.get('drain', 0.0):.1f} s; other {other:.2f} s), CPU {worker['cpu']:.1f} s, "
            f"peak RSS {worker['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


def describe_bare(run: dict[str, Any]) -> str:
    return "\n".join(f"      worker {number}: updated {worker['updated']:,} rows in {worker['batches']} batches, "
                     f"{worker['seconds']:.1f} s, CPU {worker['cpu']:.1f} s"
                     for number, worker in enumerate(run["workers"], 1))


def measure(pg: Any, workers: int, due: int, now_text: str, moment: str, folder: Path, log_before: int,
            messages_before: int, values_file: Path, outbox_messages: int) -> dict[str, Any]:
    """One round: mauto's drain with `workers` processes, then (on the database it left) the outbox with as
    many, then the bare loop with as many on a fresh clone; printed as they go, checked."""
    import psycopg

    plural = "s" if workers > 1 else ""
    url = clone(pg, f"mauto_{workers}")
    wal = wal_position(pg)
    run, server = server_cpu_during(pg, lambda: run_workers("mauto", workers, [url, now_text, str(folder)]))
    wal = wal_position(pg) - wal
    problems = check_mauto(url, due, log_before, messages_before, moment, run["workers"])
    measured: dict[str, Any] = {"workers": workers, "mauto": run, "mauto_server_cpu": server, "mauto_wal": wal,
                                "mauto_rate": due / run["wall"]}
    if not values_file.exists():  # the values the bare loop writes: what mauto's first run wrote
        with psycopg.connect(url) as connection:
            values = {row[0]: (row[1], row[2], row[3]) for row in connection.execute(
                "SELECT id, data, state, wake_at FROM enrollments")}
        with values_file.open("wb") as handle:
            pickle.dump(values, handle)
        measured["table_sizes"] = table_sizes(url)
    print(f"  mauto, {workers} worker{plural}: {run['wall']:.1f} s, {measured['mauto_rate']:,.0f} enrollments/s; "
          f"PostgreSQL's CPU {seconds(server)}, WAL {wal / 2**20:,.0f} MB ({wal / due / 1024:.1f} KiB an enrollment)"
          + (f"  CHECK FAILED: {'; '.join(problems)}" if problems else
             "  (checked: each enrollment advanced exactly once, none left due)"))
    print(describe_mauto(run, due))
    sys.stdout.flush()
    if outbox_messages:
        pending = keep_first(url, outbox_messages)
        events_before = one(url, "SELECT coalesce(max(seq), 0) FROM events")
        wal = wal_position(pg)
        sent, sent_server = server_cpu_during(pg, lambda: run_workers("outbox", workers, [url, now_text, "-"]))
        wal = wal_position(pg) - wal
        outbox_problems = check_outbox(url, pending, events_before, sent["workers"])
        measured.update(outbox=sent, outbox_server_cpu=sent_server, outbox_wal=wal, outbox_messages=pending,
                        outbox_rate=pending / sent["wall"])
        for worker in sent["workers"]:
            worker["handed"] = len(worker.pop("ids"))
        print(f"  outbox, {workers} worker{plural}: {pending:,} messages in {sent['wall']:.1f} s, "
              f"{measured['outbox_rate']:,.0f} messages/s; PostgreSQL's CPU {seconds(sent_server)}, WAL "
              f"{wal / 2**20:,.0f} MB ({wal / max(pending, 1) / 1024:.1f} KiB a message)"
              + (f"  CHECK FAILED: {'; '.join(outbox_problems)}" if outbox_problems else
                 "  (checked: each handed over once, recorded sent, one email_sent event each)"))
        print("\n".join(f"      worker {number}: {worker['handed']:,} messages, {worker['seconds']:.1f} s, CPU "
                        f"{worker['cpu']:.1f} s" for number, worker in enumerate(sent["workers"], 1)))
        problems += [f"outbox: {problem}" for problem in outbox_problems]
    drop(pg, f"mauto_{workers}")
    with values_file.open("rb") as handle:
        values = pickle.load(handle)
    url = clone(pg, f"bare_{workers}")
    wal = wal_position(pg)
    bare, bare_server = server_cpu_during(pg, lambda: run_workers("bare", workers,
                                                                  [url, now_text, str(values_file)]))
    wal = wal_position(pg) - wal
    bare_problems = check_bare(url, due, moment, values, bare["workers"])
    drop(pg, f"bare_{workers}")
    measured.update(bare=bare, bare_server_cpu=bare_server, bare_wal=wal, bare_rate=due / bare["wall"])
    print(f"  bare,  {workers} worker{plural}: {bare['wall']:.1f} s, {measured['bare_rate']:,.0f} enrollments/s; "
          f"PostgreSQL's CPU {seconds(bare_server)}, WAL {wal / 2**20:,.0f} MB"
          + (f"  CHECK FAILED: {'; '.join(bare_problems)}" if bare_problems else
             "  (checked: each row updated once, to mauto's values, none left due)"))
    print(describe_bare(bare))
    print(f"  (load now {load()})")
    sys.stdout.flush()
    measured["problems"] = [f"{workers} workers: {problem}" for problem in problems + bare_problems]
    return measured


def _bench(args: argparse.Namespace) -> int:
    from mauto.store.sqlite import stamp  # noqa: F401 - imported early: a broken checkout fails before the setup
    from tests.pg import binaries, cluster

    if binaries() is None:
        raise SystemExit("PostgreSQL's server binaries (initdb, pg_ctl) are not on this machine")
    import psycopg

    counts = [int(part) for part in args.workers.split(",")]
    print("mauto: many workers on one PostgreSQL store (bench_scale)")
    facts = describe(psycopg=psycopg.__version__, libpq=str(psycopg.pq.version()))
    for key, value in facts.items():
        print(f"  {key:<10} {value}")
    print(f"  load       {load()} (1/5/15-minute averages at the start: other work on the machine)")
    cores = os.cpu_count() or 0
    print(f"  note       {cores} cores are shared by the workers, PostgreSQL's backends and this script: "
          f"{max(counts)} workers on {cores} cores cannot run faster than {cores} at once")
    problems: list[str] = []
    summary: dict[str, Any] = {"machine": facts, "contacts": args.contacts, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=args.dir) as name:
        base = Path(name)
        os.environ["XDG_CACHE_HOME"] = str(base / "cache")  # the releases' folders the workers write out
        with cluster() as pg:
            if args.fsync == "on":
                restart_with_fsync(pg)
            found = settings(pg)
            summary["postgresql"] = found
            print("  postgres   " + ", ".join(f"{key} {value}" for key, value in found.items()))
            print(f"\n1. the store: {args.contacts:,} contacts and a cart_abandoned each (bench_daemon.py's, in "
                  f"SQLite), copied into PostgreSQL; the tick that enrolls them in {WORKFLOW} run there")
            sys.stdout.flush()
            folder = base / "project"
            built = build_template(pg, folder, args.contacts, max(counts))
            summary["setup"] = built
            enrolling = built["enrolling"]
            print(f"  SQLite setup {built['sqlite_s']:.1f} s; copy_store into PostgreSQL {built['copy_s']:.1f} s "
                  f"({built['copy_rows']:,} rows, {built['copy_rows'] / built['copy_s']:,.0f} rows/s)")
            print(f"  the enrolling tick, on PostgreSQL with {enrolling['workers']} workers: {enrolling['events']:,} "
                  f"events, {enrolling['enrolled']:,} enrolled, {enrolling['queued']} queued in "
                  f"{enrolling['wall']:.1f} s ({enrolling['events'] / enrolling['wall']:,.0f} events/s)")
            print(f"  the database {built['size_mb']:,.0f} MB: " + ", ".join(
                f"{table} {count:,}" for table, count in built["rows"].items()))
            if enrolling["enrolled"] != args.contacts or enrolling["queued"]:
                problems.append(f"the enrolling tick enrolled {enrolling['enrolled']} and queued "
                                f"{enrolling['queued']}, expected {args.contacts} and 0")
            template_url = pg.admin_url(TEMPLATE)
            due, now_text, moment = due_now(template_url)
            if due != args.contacts:
                problems.append(f"{due} enrollments due at {now_text}, expected {args.contacts}")
            log_before = one(template_url, "SELECT coalesce(max(id), 0) FROM step_log")
            messages_before = one(template_url, "SELECT coalesce(max(id), 0) FROM messages")
            print(f"  {due:,} enrollments due at {now_text}")
            values_file = base / "values.pickle"
            rows: list[tuple[int, float, float, float | None]] = []
            print(f"\n2. the drain: one tick per worker at {now_text}, send=False; each run from a fresh clone")
            sys.stdout.flush()
            for workers in counts:
                measured = measure(pg, workers, due, now_text, moment, folder, log_before, messages_before,
                                   values_file, args.outbox_messages)
                problems += measured["problems"]
                summary["runs"].append(measured)
                rows.append((workers, measured["mauto_rate"], measured["bare_rate"], measured.get("outbox_rate")))
            if summary["runs"]:
                summary["table_sizes"] = summary["runs"][0].get("table_sizes")
                print("\n3. what the database holds after the drain (1 worker's run, before the outbox run):")
                for table, size in (summary["table_sizes"] or {}).items():
                    rows_in = max(size["rows"], 1)
                    print(f"  {table:<12} {size['rows']:>9,} rows  table {size['table_bytes'] / 2**20:7.1f} MB "
                          f"({size['table_bytes'] / rows_in:6,.0f} B a row)  {size['indexes']} indexes "
                          f"{size['index_bytes'] / 2**20:7.1f} MB ({size['index_bytes'] / rows_in:5,.0f} B a row)")
    one_worker = rows[0][1] if rows and rows[0][0] == 1 else None
    print(f"\n{due:,} due enrollments, {cores} cores (the workers and PostgreSQL share them):\n")
    print("| workers | mauto enrollments/s | bare enrollments/s | mauto / bare | mauto, × 1 worker | "
          "outbox messages/s (accepting provider) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for workers, mauto_rate, bare_rate, outbox_rate in rows:
        scale = f"{mauto_rate / one_worker:.2f}×" if one_worker else "-"
        sending = f"{outbox_rate:,.0f}" if outbox_rate else "-"
        print(f"| {workers} | {mauto_rate:,.0f} | {bare_rate:,.0f} | {mauto_rate / bare_rate:.3f} | {scale} | "
              f"{sending} |")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    for flag, script, extra in ((args.send, "bench_send.py", args.send_args),
                                (args.audience, "bench_audience.py", args.audience_args)):
        if flag:
            print(f"\n--- benchmarks/{script} {extra}".rstrip(), flush=True)
            done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *extra.split()], cwd=ROOT)
            if done.returncode:
                problems.append(f"{script} exited {done.returncode}")
    if problems:
        print("\nFAIL: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     epilog=(__doc__ or "").split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000, help="due enrollments (default 100000)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated (default 1,2,4)")
    parser.add_argument("--fsync", choices=("on", "off"), default="on",
                        help="PostgreSQL's fsync (default on, as in production; the tests run it off)")
    parser.add_argument("--outbox-messages", type=int, default=20_000,
                        help="messages sent in each outbox run, to a provider that accepts at once (default 20000; "
                             "0: no outbox runs)")
    parser.add_argument("--json", help="write every figure to this file too")
    parser.add_argument("--dir", default=None, help="where the temporary folder goes (default: the system's)")
    parser.add_argument("--send", action="store_true", help="then run benchmarks/bench_send.py")
    parser.add_argument("--send-args", default="", help="its arguments, e.g. '--latency 0.05'")
    parser.add_argument("--audience", action="store_true", help="then run benchmarks/bench_audience.py")
    parser.add_argument("--audience-args", default="", help="its arguments, e.g. '--sizes 100000'")
    parser.add_argument("--_mauto", nargs=3, dest="mauto", help=argparse.SUPPRESS)
    parser.add_argument("--_bare", nargs=3, dest="bare", help=argparse.SUPPRESS)
    parser.add_argument("--_outbox", nargs=3, dest="outbox", help=argparse.SUPPRESS)
    parser.add_argument("--_setup", nargs=2, dest="setup", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for given, worker in ((args.mauto, mauto_worker), (args.bare, bare_worker), (args.outbox, outbox_worker),
                          (args.setup, sqlite_setup)):  # a child process of this script: one job, its figures out
        if given:
            print(json.dumps(worker(*given)))
            return 0
    if args.contacts < 1:
        parser.error("--contacts must be at least 1")
    # A SIGTERM unwinds as an exit does, so that the cluster is stopped and the temporary folder removed.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    return _bench(args)


if __name__ == "__main__":
    sys.exit(main())
