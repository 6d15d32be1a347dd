#!/usr/bin/env python
"""How fast is the daemon's tick, and how fast does it send mail, each against a bare floor in the same run.

    python benchmarks/bench_daemon.py                     # 100,000 contacts, 2,000 SMTP messages: ~15 minutes
    python benchmarks/bench_daemon.py --quick             # 2,000 contacts, 200 messages: a quick look
    python benchmarks/bench_daemon.py --contacts 20000 --messages 5000 --profile-contacts 5000 --no-profile

1. Tick rate. A copy of the sample project (`mauto.yaml`, `templates/`, `workflows/abandoned-cart.yaml` only)
   in a temporary folder, `channels` replaced by the file transport for email and SMS (`path: outbox`);
   deployed (`mauto.deploy.deploy`) a day before T, a Tuesday at 09:00 in Paris; N generated contacts
   (seeded; all in Europe/Paris with email consent, 30% with a phone and SMS consent) imported from JSON Lines
   with `import_contacts`, and one `cart_abandoned` each at T (20-400 EUR, so every one enrolls) ingested with
   `ingest_events`. Then `mauto.daemon.tick.tick`: once at T - 1 minute (the first tick: what came before it is
   history), once at T + 1 minute (it takes the N events and enrolls N contacts; their first step is a wait,
   so nothing is sent), and then THE measured tick, in a fresh subprocess (so that its ru_maxrss is its own),
   at the moment that first wait ends: all N enrollments are due at once, and each goes through the A/B
   split, renders and queues reminder-1, and stops at the next wait; the tick then sends the N emails with
   the file transport (one file each, written and fsync'ed, its answer committed after; the file transport
   needs no hand-off mark: writing a key again replaces the same file). The contacts are imported (store
   clock) two days before T, before the deploy, so that their `contact_created` events are history.
   Contact-steps are counted from the `step_log` rows that tick wrote (rows after minus rows before), beside
   the tick's own `advanced` count (enrollments woken). The tick's phases (prepare: load what is due; drain:
   advance, render, queue; send: the outbox) are timed by wrapping `Tick.prepare`, `Tick.drain`
   and `mauto.daemon.outbox.send_outbox`.

   The floor, in the same run: a bare `sqlite3` loop over a table with the layout of `enrollments` (its
   `CREATE TABLE` and indexes copied from the store file's `sqlite_master`) and the same rows (copied from a
   snapshot of the store taken just before the measured tick), in WAL mode with SQLite's default
   `synchronous` as the store has: select the due rows (`state IN ('active', 'waiting') AND wake_at <= now`,
   in wake-up order) `mauto.daemon.tick.BATCH` at a time, and update each row's data, state and wake_at to the
   values the measured tick wrote (read before the clock starts), one transaction per batch. Best of 3.
   Beside it, the disk floor of the send phase: the N message bodies the tick queued, written by a bare loop
   to a temporary file each, fsync'ed and renamed into place (what the file transport does), one run.

2. SMTP rate. `tests.servers.SmtpServer` (aiosmtpd on 127.0.0.1) runs in a subprocess of its own, so that
   the server's work does not share this process's interpreter lock with the clients measured. M emails (the
   first M the measured tick queued: real bytes) are sent, alternately, `--rounds` times each:

   - bare: one `smtplib.SMTP` connection, `sendmail(sender, [to], body)` per message, the envelope and the
     CRLF line ends prepared before the clock starts;
   - transport: mauto's `SmtpTransport`, as `build_transports` builds it from a `mauto.yaml` whose
     `channels.email` points at the server, one connection reused for all M (`with transport:`), `handoff`
     a no-op;
   - full path: the M messages put back to `pending` in the tick's store (status, attempts, hand-off and
     answer reset) and sent by `mauto.daemon.outbox.send_outbox`: per message, the consent and suppression check,
     the hand-off recorded and committed before DATA, the answer recorded and committed after.

   Each run also reports this process's CPU time per message: the client's own work, since the wall time
   is mostly the server's (aiosmtpd in Python, which parses every message it records).

3. Where the time goes: the measured tick at `--profile-contacts` (set up the same way, in its own folder),
   run twice from copies of the same store: once with stopwatches around a dozen functions (`SPLIT`), once
   under cProfile (grouped by `PROFILE_GROUPS`, then the top functions).

Nothing is sent anywhere but 127.0.0.1.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import random
import re
import resource
import shutil
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import time
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from benchmarks.machine import machine as describe  # noqa: E402

WORKFLOW = "abandoned-cart"
T = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # a Tuesday, 09:00 in Paris: no quiet hours, no Sunday
DEPLOYED = T - timedelta(days=1)
IMPORTED = T - timedelta(days=2)  # the contacts are there before the deploy: their contact_created is history
FIRST_NAMES = ["Ana", "Ben", "Chloé", "Dmitri", "Emma", "Farid", "Greta", "Hana", "Ines", "Jonas", "Kenji", "Léa"]
LAST_NAMES = ["Martin", "Carter", "Dubois", "Ivanov", "Schulz", "Okafor", "Sato", "Rossi", "García", "Nguyen"]
CITIES = ["Paris", "Lyon", "Lille", "Nantes", "Bordeaux", "Marseille"]
SMS_SHARE = 0.30


# --------------------------------------------------------------------------------------------------------------------
# The project and its store
# --------------------------------------------------------------------------------------------------------------------

def make_project(folder: Path, channels: dict, config: str = "mauto.yaml") -> Path:
    """The sample project's mauto.yaml (with `channels` replaced), templates/ and the abandoned-cart workflow."""
    data = yaml.safe_load((ROOT / "mauto.yaml").read_text(encoding="utf-8"))
    data["channels"] = channels
    folder.mkdir(parents=True, exist_ok=True)
    (folder / config).write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    if not (folder / "templates").exists():
        shutil.copytree(ROOT / "templates", folder / "templates")
    (folder / "workflows").mkdir(exist_ok=True)
    shutil.copy(ROOT / "workflows" / f"{WORKFLOW}.yaml", folder / "workflows" / f"{WORKFLOW}.yaml")
    return folder / config


def first_wait() -> timedelta:
    """The workflow's first `wait` (its first step): when the enrollments of T + 1 minute come due."""
    from mauto.workflow.loader import load
    from mauto.workflow.model import build

    workflow = build(load(ROOT / "workflows" / f"{WORKFLOW}.yaml"))
    step = workflow.steps[0]
    if step.kind != "wait" or step.duration is None:
        raise SystemExit(f"{WORKFLOW}: the first step is no longer a fixed wait; this benchmark needs one")
    return step.duration


def generate(folder: Path, count: int, seed: int = 7) -> tuple[Path, Path]:
    """contacts.jsonl (the fields samples/contacts.yaml has) and events.jsonl (one cart_abandoned each at T)."""
    rng = random.Random(seed)
    contacts, events = folder / "contacts.jsonl", folder / "events.jsonl"
    with contacts.open("w", encoding="utf-8") as people, events.open("w", encoding="utf-8") as carts:
        for index in range(count):
            first = rng.choice(FIRST_NAMES)
            local = unicodedata.normalize("NFKD", first.lower()).encode("ascii", "ignore").decode()
            row = {"id": f"c{index:07d}", "email": f"{local}.{index}@mail.example",
                   "first_name": first if rng.random() < 0.9 else None, "last_name": rng.choice(LAST_NAMES),
                   "timezone": "Europe/Paris", "locale": "fr-FR", "country": "FR", "city": rng.choice(CITIES),
                   "email_consent": True, "sms_consent": False,
                   "lifecycle": rng.choice(["subscriber", "lead", "customer"]),
                   "loyalty_tier": rng.choice(["bronze", "silver", "gold"]), "score": rng.randrange(0, 40),
                   "tags": ["newsletter"], "lists": ["newsletter"]}
            if row["first_name"] is None:
                del row["first_name"]
            if rng.random() < SMS_SHARE:
                row["phone"] = f"+3361{rng.randrange(10**6, 10**7)}"  # numbers phonenumbers knows are valid
                row["sms_consent"] = True
            people.write(json.dumps(row, ensure_ascii=False) + "\n")
            carts.write(json.dumps({"id": f"cart-{index:07d}", "contact": row["id"], "event": "cart_abandoned",
                                    "at": T.isoformat(), "cart_value": round(rng.uniform(20, 400), 2),
                                    "items": rng.randrange(1, 6),
                                    "cart_url": f"https://shop.lumio.example/cart/r/{index:07d}"}) + "\n")
    return contacts, events


def setup(folder: Path, count: int) -> dict:
    """Deploy, import, ingest, and the two ticks before the measured one (see the module's docstring)."""
    from mauto.config import load_project
    from mauto.daemon.tick import tick
    from mauto.deploy import deploy
    from mauto.store import Store
    from mauto.store.contacts import import_contacts
    from mauto.store.events import ingest_events

    config = make_project(folder, {"email": {"transport": "file", "path": "outbox"},
                                   "sms": {"transport": "file", "path": "outbox"}})
    figures: dict = {}
    began = time.perf_counter()
    contacts, events = generate(folder, count)
    figures["generate_s"] = time.perf_counter() - began
    project = load_project(config, folder)
    from mauto.channels import build_transports

    transports = build_transports(project, {})
    with Store(folder / "mauto.db", lambda: IMPORTED, create=True, timeout=30.0) as store:
        deploy(project, store, DEPLOYED)
        began = time.perf_counter()
        result = import_contacts(store, contacts, fields=project.contact_fields, zone=project.timezone)
        assert result.committed and result.ok, result.to_dict()
        figures["import_s"] = time.perf_counter() - began
        began = time.perf_counter()
        result = ingest_events(store, events, catalogue=project.events, zone=project.timezone)
        assert result.committed and result.ok, result.to_dict()
        figures["ingest_s"] = time.perf_counter() - began
        history = tick(project, store, T - timedelta(minutes=1), transports)
        figures["history_tick_s"] = history.duration
        began = time.perf_counter()
        enrolling = tick(project, store, T + timedelta(minutes=1), transports)
        figures["enroll_tick"] = enrolling.to_dict()
        figures["enroll_tick_s"] = time.perf_counter() - began
        if enrolling.enrolled != count or enrolling.queued or enrolling.sent:
            raise SystemExit(f"the enrolling tick did not do what this benchmark expects: {enrolling.line()}")
        figures["step_log_rows"] = store.db.execute("SELECT count(*) FROM step_log").fetchone()[0]
    return figures


# --------------------------------------------------------------------------------------------------------------------
# The measured tick (a fresh process)
# --------------------------------------------------------------------------------------------------------------------

def rss_mb() -> dict[str, float]:
    figures = {}
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":", 1)
                    figures[name] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return figures


SPLIT = [
    # label, module, attribute path: functions timed one by one in the --_split run (perf_counter around each
    # call; nested ones are inside their callers' time)
    ("Driver._made (render + build the message; into the outbox port)", "mauto.driver.loop",
     "Driver._made"),
    ("MessageRenderer.render (Jinja2: subject, preheader, HTML, text part)", "mauto.messages",
     "MessageRenderer.render"),
    ("RenderedMessage.to_bytes (the MIME message written)", "mauto.messages", "RenderedMessage.to_bytes"),
    ("runtime.load_contact (4 queries + typed fields)", "mauto.store.runtime", "load_contact"),
    ("Batch.flush (enrollments, messages, step_log written; before COMMIT)", "mauto.driver.sqlite", "Batch.flush"),
    ("runtime.save_enrollments (to_dict + JSON + upsert)", "mauto.store.runtime", "save_enrollments"),
    ("FileTransport.send (file written, fsync, rename; no hand-off mark)", "mauto.channels.files",
     "FileTransport.send"),
    ("runtime.mark_handoff (UPDATE + COMMIT before the hand-off; SMTP, SMS)", "mauto.store.runtime", "mark_handoff"),
    ("runtime.record_delivery (UPDATE + COMMIT of the answer, not waiting for the disk)", "mauto.store.runtime",
     "record_delivery"),
    ("runtime.address_of (consent check: the contact's addresses)", "mauto.store.runtime", "address_of"),
    ("outbox._refusal (the suppression list lookup)", "mauto.daemon.outbox", "_refusal"),
    ("runtime.due_messages (the outbox read, 200 at a time)", "mauto.store.runtime", "due_messages"),
]


def _install_split(spent: dict[str, list]) -> None:
    """Wrap the SPLIT functions with a stopwatch: spent[label] = [seconds, calls]."""
    import importlib

    for label, module_name, path in SPLIT:
        module = importlib.import_module(module_name)
        owner, _, name = path.rpartition(".")
        holder = getattr(module, owner) if owner else module
        function = getattr(holder, name)
        cell = spent[label] = [0.0, 0]

        def wrapper(*args, __function=function, __cell=cell, **kwargs):
            began = time.perf_counter()
            try:
                return __function(*args, **kwargs)
            finally:
                __cell[0] += time.perf_counter() - began
                __cell[1] += 1

        setattr(holder, name, wrapper)


def measured_tick(folder: Path, profile: str | None = None, split: bool = False) -> dict:
    """THE tick, at the end of the first wait, in this (fresh) process."""
    from mauto.channels import build_transports
    from mauto.config import load_project
    from mauto.daemon import tick as runner
    from mauto.store import Store

    spent: dict[str, list] = {}
    if split:
        _install_split(spent)

    project = load_project(folder / "mauto.yaml", folder)
    transports = build_transports(project, {})
    now = T + timedelta(minutes=1) + first_wait()
    phases: dict[str, float] = {}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - began
        return wrapper

    runner.Tick.prepare = timed("prepare", runner.Tick.prepare)
    runner.Tick.drain = timed("drain", runner.Tick.drain)
    runner.send_outbox = timed("send", runner.send_outbox)
    with Store(folder / "mauto.db", lambda: now, timeout=30.0) as store:
        db = store.db
        log_before = db.execute("SELECT count(*) FROM step_log").fetchone()[0]
        synchronous = db.execute("PRAGMA synchronous").fetchone()[0]
        journal = db.execute("PRAGMA journal_mode").fetchone()[0]
        gc.collect()
        before = rss_mb()
        profiler = cProfile.Profile() if profile else None
        began = time.perf_counter()
        if profiler:
            profiler.enable()
        report = runner.tick(project, store, now, transports)
        if profiler:
            profiler.disable()
        wall = time.perf_counter() - began
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        after = rss_mb()
        if profiler:
            profiler.dump_stats(profile)
        log_after = db.execute("SELECT count(*) FROM step_log").fetchone()[0]
        kinds = dict(db.execute("SELECT kind, count(*) FROM step_log WHERE rowid > (SELECT max(rowid) FROM step_log) "
                                "- ? GROUP BY kind", [log_after - log_before]).fetchall())
        statuses = dict(db.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall())
        body = db.execute("SELECT avg(length(body)) FROM messages").fetchone()[0]
    files = sum(1 for _ in (folder / "outbox").iterdir()) if (folder / "outbox").exists() else 0
    return {"now": now.isoformat(), "report": report.to_dict(), "wall_s": wall, "phases": phases,
            "step_log_rows": log_after - log_before, "step_kinds": kinds, "statuses": statuses, "files": files,
            "avg_body_bytes": body, "rss_before_mb": before.get("VmRSS", 0.0), "vmhwm_mb": after.get("VmHWM", 0.0),
            "ru_maxrss_mb": maxrss, "synchronous": synchronous, "journal_mode": journal, "split": spent}


# --------------------------------------------------------------------------------------------------------------------
# The floor: a bare sqlite3 loop over the enrollments
# --------------------------------------------------------------------------------------------------------------------

def floor(snapshot: Path, after: Path, work: Path, now_text: str, repeat: int = 3) -> dict:
    from mauto.daemon.tick import BATCH
    from mauto.store.sqlite import stamp

    now = stamp(datetime.fromisoformat(now_text))
    source = sqlite3.connect(snapshot)
    schema = [row[0] for row in source.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'enrollments' AND sql IS NOT NULL "
        "ORDER BY type = 'index', name")]
    source.close()
    written = sqlite3.connect(after)
    new = {row[0]: (row[1], row[2], row[3])
           for row in written.execute("SELECT id, data, state, wake_at FROM enrollments")}
    written.close()
    runs = []
    for attempt in range(repeat):
        path = work / f"floor-{attempt}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("PRAGMA journal_mode = WAL")
        for sql in schema:
            connection.execute(sql)
        connection.execute("ATTACH ? AS snapshot", [str(snapshot)])
        connection.execute("BEGIN")
        connection.execute("INSERT INTO enrollments SELECT * FROM snapshot.enrollments")
        connection.execute("COMMIT")
        connection.execute("DETACH snapshot")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = connection.execute("SELECT count(*) FROM enrollments").fetchone()[0]
        gc.collect()
        updated = transactions = 0
        began = time.perf_counter()
        while True:
            due = connection.execute(
                "SELECT id, data FROM enrollments WHERE state IN ('active', 'waiting') AND wake_at <= ? "
                "ORDER BY wake_at, id LIMIT ?", [now, BATCH]).fetchall()
            if not due:
                break
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany("UPDATE enrollments SET data = ?, state = ?, wake_at = ? WHERE id = ?",
                                   [(*new[ident], ident) for ident, _ in due])
            connection.execute("COMMIT")
            updated += len(due)
            transactions += 1
        seconds = time.perf_counter() - began
        synchronous = connection.execute("PRAGMA synchronous").fetchone()[0]
        connection.close()
        runs.append({"rows": rows, "updated": updated, "transactions": transactions, "seconds": seconds,
                     "synchronous": synchronous})
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return {"runs": runs, "batch": BATCH, "schema": schema, "files": file_floor(after, work)}


def file_floor(after: Path, work: Path) -> dict:
    """The disk's part of sending with the file transport: the tick's message bodies written by a bare loop,
    each to a temporary file, fsync'ed and renamed into place (what FileTransport does, without mauto)."""
    folder = work / "floor-files"
    folder.mkdir()
    connection = sqlite3.connect(after)
    count, seconds = 0, 0.0
    for body, in connection.execute("SELECT body FROM messages ORDER BY id"):
        began = time.perf_counter()
        temporary = folder / f".{count}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(descriptor, body)
        os.fsync(descriptor)
        os.close(descriptor)
        os.replace(temporary, folder / f"{count}.eml")
        seconds += time.perf_counter() - began  # the SELECT is left out
        count += 1
    connection.close()
    shutil.rmtree(folder)
    return {"count": count, "seconds": seconds}


# --------------------------------------------------------------------------------------------------------------------
# SMTP
# --------------------------------------------------------------------------------------------------------------------

def smtp_server() -> None:
    """The SMTP server's own process: print the port, then answer `count` lines until standard input closes."""
    from tests.servers import SmtpServer

    with SmtpServer() as server:
        print(server.port, flush=True)
        for line in sys.stdin:
            if line.strip() == "count":
                delivered = len(server.delivered())
                print(json.dumps({"messages": len(server.messages), "delivered": delivered,
                                  "connections": server.connections}), flush=True)
            elif line.strip() == "clear":
                with server._lock:
                    server.messages.clear()
                print("{}", flush=True)


class Server:
    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, "--_smtp-server"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.port = int(self.process.stdout.readline())

    def ask(self, what: str) -> dict:
        self.process.stdin.write(what + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def smtp_bench(folder: Path, count: int, rounds: int, now: datetime) -> dict:
    from mauto.channels import build_transports
    from mauto.channels.base import SENT, Outgoing
    from mauto.channels.smtp import SmtpTransport, _local_hostname, envelope_sender
    from mauto.config import load_project
    from mauto.daemon import tick as runner
    from mauto.store import Store

    server = Server()
    try:
        config = make_project(folder, {"email": {"transport": "smtp", "host": "127.0.0.1", "port": server.port,
                                                 "timeout": "30s"},
                                       "sms": {"transport": "file", "path": "outbox"}}, "mauto-smtp.yaml")
        project = load_project(config, folder)
        with Store(folder / "mauto.db", lambda: now, timeout=30.0) as store:
            cursor = store.db.execute("SELECT * FROM messages WHERE channel = 'email' ORDER BY id LIMIT ?", [count])
            names = [column[0] for column in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor]
        if len(rows) < count:
            raise SystemExit(f"only {len(rows)} emails in the store for --messages {count}")
        outgoing = [Outgoing(row["id"], row["key"], "email", row["to_address"], row["sender"], row["message_id"],
                             bytes(row["body"]), row["contact"], row["workflow"], row["step"]) for row in rows]
        # the bare loop's inputs, prepared before its clock starts
        bare_items = [(envelope_sender(item), item.to, item.body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
                      for item in outgoing]
        eight_bit = sum(any(byte > 127 for byte in item.body) for item in outgoing)
        ids = [row["id"] for row in rows]
        hostname = _local_hostname()

        def bare() -> tuple[float, float]:
            began, cpu = time.perf_counter(), time.process_time()
            smtp = smtplib.SMTP("127.0.0.1", server.port, local_hostname=hostname, timeout=30)
            for sender, recipient, body in bare_items:
                smtp.sendmail(sender, [recipient], body)
            smtp.quit()
            return time.perf_counter() - began, time.process_time() - cpu

        def transport() -> tuple[float, float]:
            chosen = build_transports(project, {})["email"]
            assert isinstance(chosen, SmtpTransport), chosen
            began, cpu = time.perf_counter(), time.process_time()
            with chosen:
                for item in outgoing:
                    delivery = chosen.send(item, lambda: None)
                    if delivery.status != SENT:
                        raise SystemExit(f"SmtpTransport: {delivery}")
            return time.perf_counter() - began, time.process_time() - cpu

        def full() -> tuple[float, float]:
            with Store(folder / "mauto.db", lambda: now, timeout=30.0) as store:
                with store.transaction() as db:
                    db.conn.executemany("UPDATE messages SET status = 'pending', attempts = 0, next_try_at = NULL, "
                                        "handoff_at = NULL, answer = NULL, provider_id = NULL, sent_at = NULL "
                                        "WHERE id = ?", [(ident,) for ident in ids])
                transports = build_transports(project, {})
                report = runner.TickReport(now)
                gc.collect()
                began, cpu = time.perf_counter(), time.process_time()
                runner.send_outbox(store, now, transports, lambda kind, data: None, report)
                seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
                if report.sent != count:
                    raise SystemExit(f"send_outbox sent {report.sent} of {count}: {report.to_dict()}")
            return seconds, cpu

        sides = {"bare": bare, "transport": transport, "full": full}
        times: dict[str, list[float]] = {name: [] for name in sides}
        cpus: dict[str, list[float]] = {name: [] for name in sides}
        transport()  # warm: imports, the first connection, the header parser
        server.ask("clear")
        for _ in range(rounds):
            for name, run in sides.items():
                gc.collect()
                seconds, cpu = run()
                times[name].append(seconds)
                cpus[name].append(cpu)
                counted = server.ask("count")
                if counted["delivered"] != count:
                    raise SystemExit(f"{name}: the server accepted {counted['delivered']} of {count}")
                server.ask("clear")
        connections = server.ask("count")["connections"]
    finally:
        server.stop()
    return {"messages": count, "rounds": rounds, "times": times, "cpu": cpus, "connections": connections,
            "avg_body_bytes": sum(len(item.body) for item in outgoing) / count, "eight_bit": eight_bit}


# --------------------------------------------------------------------------------------------------------------------
# Profile
# --------------------------------------------------------------------------------------------------------------------

PROFILE_GROUPS = [
    # label, where the function is (a path ending, or "~" for built-ins), function names
    ("the whole tick (daemon.tick.tick)", "mauto/daemon/tick.py", ("tick",)),
    ("  prepare: load due enrollments (SQL + JSON + Enrollment.from_dict)", "mauto/daemon/tick.py", ("prepare",)),
    ("  drain: advance, render, queue, commit", "mauto/daemon/tick.py", ("drain",)),
    ("    the engine's steps, delivering included (Driver.process)", "mauto/driver/loop.py", ("process",)),
    ("      rendering a send (Driver._made)", "mauto/driver/loop.py", ("_made",)),
    ("        rendering (MessageRenderer.render)", "mauto/messages.py", ("render",)),
    ("        writing the MIME message (RenderedMessage.to_bytes)", "mauto/messages.py", ("to_bytes",)),
    ("      loading contacts (runtime.load_contact: 4 queries each)", "mauto/store/runtime.py", ("load_contact",)),
    ("    the batch writes (Batch.flush)", "mauto/driver/sqlite.py", ("flush",)),
    ("      save_enrollments (to_dict + JSON + upsert)", "mauto/store/runtime.py", ("save_enrollments",)),
    ("      insert_messages", "mauto/store/runtime.py", ("insert_messages",)),
    ("      insert_log (step_log)", "mauto/store/runtime.py", ("insert_log",)),
    ("  send: the outbox (outbox.send_outbox)", "mauto/daemon/outbox.py", ("send_outbox",)),
    ("    runtime.address_of (consent check)", "mauto/store/runtime.py", ("address_of",)),
    ("    outbox._refusal (suppression list lookup)", "mauto/daemon/outbox.py", ("_refusal",)),
    ("    FileTransport.send (write + fsync + rename)", "mauto/channels/files.py", ("send",)),
    ("    hand-off recorded and committed (mark_handoff)", "mauto/store/runtime.py", ("mark_handoff",)),
    ("    answer recorded and committed (record_delivery)", "mauto/store/runtime.py", ("record_delivery",)),
    ("    due_messages (SELECT *)", "mauto/store/runtime.py", ("due_messages",)),
    ("anywhere: os.fsync", "~", ("<built-in method posix.fsync>",)),
    ("anywhere: COMMIT (sqlite3 Connection.__exit__)", "~", ("<method '__exit__' of 'sqlite3.Connection' objects>",)),
    ("anywhere: sqlite3 execute / executemany", "~", ("<method 'execute' of 'sqlite3.Connection' objects>",
                                                      "<method 'executemany' of 'sqlite3.Connection' objects>",
                                                      "<method 'execute' of 'sqlite3.Cursor' objects>",
                                                      "<method 'executemany' of 'sqlite3.Cursor' objects>")),
    ("anywhere: json.dumps / json.loads", "json/__init__.py", ("dumps", "loads")),
    ("anywhere: datetime.fromisoformat", "~", ("<built-in method fromisoformat>",)),
]


def profile_tables(path: Path, top: int = 20) -> str:
    stats = pstats.Stats(str(path))
    entries = stats.stats.items()  # type: ignore[attr-defined]
    mauto_dir = str(ROOT / "mauto")

    def where(filename: str) -> str:
        shown = filename.replace(mauto_dir + os.sep, "mauto/")
        if "site-packages" + os.sep in shown:
            return shown.split("site-packages" + os.sep, 1)[1]
        return re.sub(r"^.*/lib/python3\.\d+/", "", shown)

    total = max((ct for (filename, _, function), (_, _, _, ct, _) in entries
                 if filename.endswith("mauto/daemon/tick.py") and function == "tick"), default=0.0) or 1.0
    lines = ["where the time goes (cProfile cumulative times, inflated by its overhead; share of the tick)",
             "   cumtime  share     calls"]
    for label, suffix, functions in PROFILE_GROUPS:
        found = [(nc, ct) for (filename, _, name), (_, nc, _, ct, _) in entries
                 if name in functions and (filename == suffix or (suffix != "~" and where(filename).endswith(suffix)))]
        calls = sum(nc for nc, _ in found)
        spent = sum(ct for _, ct in found)
        lines.append(f"  {spent:8.3f} {100 * spent / total:5.1f}% {calls:>9}  {label}")
    head = "   cumtime  tottime     calls  function"

    def table(rows, title):
        out = [title, head]
        for (filename, line, function), (_cc, nc, tt, ct, _) in rows:
            out.append(f"  {ct:8.3f} {tt:8.3f} {nc:>9}  {where(filename)}:{line}({function})")
        return "\n".join(out)

    ours = [item for item in entries if item[0][0].startswith(mauto_dir)]
    by_cum = sorted(ours, key=lambda item: item[1][3], reverse=True)[:top]
    by_own = sorted(entries, key=lambda item: item[1][2], reverse=True)[:top]
    return "\n".join(lines) + "\n\n" + table(by_cum, f"top {top} mauto functions by cumulative time") + "\n\n" + \
        table(by_own, f"top {top} functions anywhere by own time (tottime)")


# --------------------------------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------------------------------

def machine() -> dict:
    import aiosmtpd

    return describe(sqlite=sqlite3.sqlite_version, aiosmtpd=aiosmtpd.__version__)


def load() -> str:
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"child {' '.join(args)} failed ({done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def filesystem(path: Path) -> str:
    try:
        done = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True, check=True)
        fields = done.stdout.splitlines()[1].split()
        return f"{fields[1]} on {fields[0]}"
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def _bench(args) -> int:
    print("mauto daemon benchmark")
    for key, value in machine().items():
        print(f"  {key:<10} {value}")
    print(f"  load       {load()} (1/5/15-minute load averages at the start: other work on the machine)")
    wait = first_wait()
    with tempfile.TemporaryDirectory(prefix="bench-daemon-", dir=args.dir) as name:
        base = Path(name)
        folder = base / "project"
        print(f"  temp dir   {base} ({filesystem(base)})")
        print(f"\n1. tick rate: {args.contacts:,} contacts, one cart_abandoned each at {T.isoformat()} "
              f"(a Tuesday, 09:00 in Paris); workflows/{WORKFLOW}.yaml, its first wait {wait}")
        sys.stdout.flush()
        prepared = child("--_setup", str(folder), str(args.contacts))
        enroll = prepared["enroll_tick"]
        print(f"  setup: generated in {prepared['generate_s']:.1f}s, contacts imported in {prepared['import_s']:.1f}s, "
              f"events ingested in {prepared['ingest_s']:.1f}s, first tick (history) {prepared['history_tick_s']:.1f}s")
        print(f"  enrolling tick at T+1m: {enroll['enrolled']:,} enrolled from {enroll['events']:,} events in "
              f"{prepared['enroll_tick_s']:.1f}s ({enroll['events'] / prepared['enroll_tick_s']:,.0f} events/s), "
              f"{prepared['step_log_rows']:,} step_log rows so far")
        sys.stdout.flush()
        snapshot = base / "before-tick.db"
        shutil.copy(folder / "mauto.db", snapshot)  # the store is closed: its WAL was checkpointed
        result = child("--_tick", str(folder))
        report = result["report"]
        wall, phases = result["wall_s"], result["phases"]
        steps, advanced, sent = result["step_log_rows"], report["advanced"], report["sent"]
        problems = []
        if advanced != args.contacts:
            problems.append(f"advanced {advanced} of {args.contacts}")
        if sent != args.contacts or report["queued"] != args.contacts:
            problems.append(f"queued {report['queued']}, sent {sent}, of {args.contacts}")
        if report["failed"] or report["parked"] or report["retried"] or report["unknown"]:
            problems.append(report)
        print(f"\n  measured tick at {result['now']} (fresh process; store journal_mode={result['journal_mode']}, "
              f"synchronous={result['synchronous']}):")
        print(f"    {report['advanced']:,} enrollments advanced, {report['queued']:,} queued, {report['sent']:,} sent "
              f"(file transport: {result['files']:,} files, {result['avg_body_bytes']:,.0f} bytes a message on "
              f"average), failed {report['failed']}, statuses {result['statuses']}")
        print(f"    step_log rows written by the tick {steps:,} ({steps / max(advanced, 1):.1f} per enrollment: "
              + ", ".join(f"{kind} {number:,}" for kind, number in sorted(result["step_kinds"].items())) + ")")
        drain_part = phases.get("prepare", 0.0) + phases.get("drain", 0.0)
        print(f"    wall time {wall:8.1f}s   {steps / wall:9,.0f} contact-steps/s   {advanced / wall:8,.0f} "
              f"enrollments/s   {sent / wall:8,.0f} messages sent/s (whole tick)")
        print(f"      prepare  {phases.get('prepare', 0.0):7.1f}s   (read the {advanced:,} due enrollments)")
        print(f"      drain    {phases.get('drain', 0.0):7.1f}s   {steps / phases.get('drain', 1):9,.0f} "
              "contact-steps/s "
              f"{advanced / phases.get('drain', 1):8,.0f} enrollments/s (advance, render, queue, commit)")
        print(f"      send     {phases.get('send', 0.0):7.1f}s   {sent / phases.get('send', 1):9,.0f} messages/s "
              "(send_outbox: check, write + fsync, answer commit)")
        print(f"      other    {wall - drain_part - phases.get('send', 0.0):7.1f}s")
        grown = 1024 * (result["vmhwm_mb"] - result["rss_before_mb"]) / max(advanced, 1)
        print(f"    memory: RSS {result['rss_before_mb']:,.0f} MB before the tick (Python, mauto, the project), "
              f"peak {result['vmhwm_mb']:,.0f} MB (VmHWM), ru_maxrss {result['ru_maxrss_mb']:,.0f} MB: "
              f"{grown:,.1f} KiB per due enrollment")
        sys.stdout.flush()

        floored = child("--_floor", str(snapshot), str(folder / "mauto.db"), str(base), result["now"])
        runs = floored["runs"]
        best = min(runs, key=lambda run: run["seconds"])
        if best["updated"] != advanced:
            problems.append(f"the floor updated {best['updated']} rows, the tick advanced {advanced}")
        floor_rate = best["updated"] / best["seconds"]
        print(f"\n  floor: bare sqlite3 over a copy of `enrollments` ({best['rows']:,} rows, same schema and "
              f"indexes, WAL, synchronous={best['synchronous']}): select due rows {floored['batch']} at a time, "
              f"update data/state/wake_at, one transaction per batch ({best['transactions']} transactions)")
        print(f"    best of {len(runs)}: {best['seconds']:.2f}s, {floor_rate:,.0f} rows/s   runs: "
              + ", ".join(f"{run['seconds']:.2f}" for run in runs) + "s")
        ours_tick = advanced / wall
        ours_drain = advanced / (drain_part or 1)
        print(f"    ratio mauto / floor (enrollments per second): whole tick {ours_tick / floor_rate:.3f} "
              f"(1/{floor_rate / ours_tick:.0f}); prepare + drain alone (no sending) {ours_drain / floor_rate:.3f} "
              f"(1/{floor_rate / ours_drain:.0f})")
        print(f"    aim >= 0.25: {'MET' if ours_tick / floor_rate >= 0.25 else 'NOT MET'}   (load now {load()})")
        files = floored["files"]
        if files["count"]:
            file_rate = files["count"] / files["seconds"]
            send_rate = sent / phases.get("send", 1)
            print(f"  disk floor: the {files['count']:,} message bodies written by a bare loop (temporary file, "
                  f"fsync, rename; one run): {files['seconds']:.1f}s, {file_rate:,.0f} files/s; the send phase "
                  f"runs at {send_rate / file_rate:.2f} of it")
        sys.stdout.flush()

        if not args.no_smtp:
            print(f"\n2. SMTP: {args.messages:,} emails (the first the tick queued) to tests.servers.SmtpServer "
                  f"(aiosmtpd, its own process) on 127.0.0.1, {args.rounds} alternating rounds")
            smtp = smtp_bench(folder, args.messages, args.rounds, datetime.fromisoformat(result["now"]))
            times = smtp["times"]
            rates = {name: args.messages / min(values) for name, values in times.items()}
            print(f"    {smtp['avg_body_bytes']:,.0f} bytes a message on average, {smtp['eight_bit']} with 8-bit "
                  "bytes; "
                  f"{smtp['connections']} connections in all")
            labels = {"bare": "bare smtplib loop (one connection)",
                      "transport": "SmtpTransport (build_transports, reused)",
                      "full": "send_outbox (store + SmtpTransport)"}
            for name, values in times.items():
                print(f"    {labels[name]:<42} best {min(values):6.2f}s {rates[name]:8,.0f} msg/s   runs: "
                      + ", ".join(f"{value:.2f}" for value in values) + "s")
            cpu = {name: 1e6 * min(values) / args.messages for name, values in smtp["cpu"].items()}
            print(f"    this process's CPU time per message (the client's own work; the rest of the wall time is "
                  f"the server's and the network's): bare {cpu['bare']:,.0f} µs, SmtpTransport "
                  f"{cpu['transport']:,.0f} µs, send_outbox {cpu['full']:,.0f} µs (least of the rounds)")
            pairs = [bare / ours for bare, ours in zip(times["bare"], times["transport"], strict=True)]
            print(f"    ratio SmtpTransport / bare: {rates['transport'] / rates['bare']:.2f} (best/best; per round: "
                  + ", ".join(f"{pair:.2f}" for pair in pairs) + f"); aim >= 0.80: "
                  f"{'MET' if rates['transport'] / rates['bare'] >= 0.8 else 'NOT MET'}")
            full_pairs = [bare / ours for bare, ours in zip(times["bare"], times["full"], strict=True)]
            print(f"    ratio send_outbox / bare: {rates['full'] / rates['bare']:.2f} (per round: "
                  + ", ".join(f"{pair:.2f}" for pair in full_pairs) + f"); send_outbox / SmtpTransport: "
                  f"{rates['full'] / rates['transport']:.2f}   (load now {load()})")
            sys.stdout.flush()

        if not args.no_profile:
            pfolder, sfolder = base / "profiled", base / "split"
            print(f"\n3. where the time goes: the measured tick at {args.profile_contacts:,} contacts (set up the same "
                  "way), run twice from the same store: once with stopwatches around a few functions, once under "
                  "cProfile")
            sys.stdout.flush()
            child("--_setup", str(pfolder), str(args.profile_contacts))
            shutil.copytree(pfolder, sfolder)
            timed = child("--_tick", str(sfolder), "--_split")
            wall = timed["wall_s"]
            print(f"  with stopwatches: {wall:.1f}s for {timed['report']['advanced']:,} enrollments ("
                  + ", ".join(f"{k} {v:.1f}s" for k, v in timed["phases"].items()) + ")")
            print("     seconds  share     calls   per call  function")
            for label, (seconds, calls) in timed["split"].items():
                per_call = 1e6 * seconds / max(calls, 1)
                print(f"    {seconds:8.2f} {100 * seconds / wall:5.1f}% {calls:>9,} {per_call:8.0f} µs  "
                      f"{label}")
            stats = base / "tick.prof"
            profiled = child("--_tick", str(pfolder), "--_profile", str(stats))
            print(f"\n  under cProfile: {profiled['wall_s']:.1f}s (phases: "
                  + ", ".join(f"{k} {v:.1f}s" for k, v in profiled["phases"].items()) + ")")
            print(profile_tables(stats))
            if args.keep_profile:
                shutil.copy(stats, args.keep_profile)
                print(f"  (stats kept in {args.keep_profile})")
    if problems:
        print("\nFAIL: " + "; ".join(map(str, problems)), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=None, help="contacts, all due at once (default 100000)")
    parser.add_argument("--messages", type=int, default=None, help="emails sent in each SMTP run (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the SMTP runs (default 3)")
    parser.add_argument("--profile-contacts", type=int, default=None,
                        help="contacts in the profiled tick (default 10000)")
    parser.add_argument("--quick", action="store_true",
                        help="a quick look: 2,000 contacts, 200 messages, a 1,000-contact profile")
    parser.add_argument("--no-smtp", action="store_true", help="skip the SMTP runs")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument("--keep-profile", metavar="FILE", help="keep the profiled tick's pstats file")
    parser.add_argument("--dir", default=None, help="where the temporary folder goes (default: the system's)")
    parser.add_argument("--_setup", nargs=2, dest="setup", help=argparse.SUPPRESS)
    parser.add_argument("--_tick", dest="tick", help=argparse.SUPPRESS)
    parser.add_argument("--_profile", dest="profile", help=argparse.SUPPRESS)
    parser.add_argument("--_split", dest="split", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_floor", nargs=4, dest="floor", help=argparse.SUPPRESS)
    parser.add_argument("--_smtp-server", dest="smtp_server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.setup:
        print(json.dumps(setup(Path(args.setup[0]), int(args.setup[1]))))
        return 0
    if args.tick:
        print(json.dumps(measured_tick(Path(args.tick), args.profile, args.split)))
        return 0
    if args.floor:
        snapshot, after, work, now = args.floor
        print(json.dumps(floor(Path(snapshot), Path(after), Path(work), now)))
        return 0
    if args.smtp_server:
        smtp_server()
        return 0
    quick = args.quick
    args.contacts = args.contacts or (2_000 if quick else 100_000)
    args.messages = args.messages or (200 if quick else 2_000)
    args.profile_contacts = args.profile_contacts or (1_000 if quick else 10_000)
    if args.messages > args.contacts:
        parser.error("--messages cannot exceed --contacts (the messages are the ones the tick queued)")
    return _bench(args)


if __name__ == "__main__":
    sys.exit(main())
