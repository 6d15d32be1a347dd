"""`mauto serve` benchmark: events and click redirects per second, and latency, under concurrent clients,
beside a bare Starlette endpoint writing the same rows into a copy of the same SQLite file, in the same run.

    python benchmarks/bench_serve.py                          # 1, 8, 64 clients, 5 s each: about 2 minutes
    python benchmarks/bench_serve.py --seconds 2 --clients 8  # a quick look
    python benchmarks/bench_serve.py --json serve.json        # the figures as JSON too
    python benchmarks/bench_serve.py --profile serve.prof     # then mauto's server under cProfile, 64 clients

The script builds a project (N contacts, an API key, one sent email with a ref per contact), copies its store
file, and starts two real uvicorn servers on 127.0.0.1, each in its own process (the clients' load never
shares a server's GIL):

- **mauto**: `python -m mauto -p PROJECT serve --port P`, as deployed (its request log goes to a file);
- **bare**: this file's `--bare-server`, a Starlette app served by uvicorn with the same options, on the copy
  of the store (WAL, `synchronous = FULL`, foreign keys on, as the store opens it). `POST /v1/events` parses
  the same JSON body, checks nothing (no key, no validation, no contact lookup) and inserts the same `events`
  rows with one commit per request (one connection behind a lock, written from the threadpool): the naive
  design. `GET /c/<token>` decodes the URL in the token without checking its signature, reads the message
  by its ref, inserts the same `email_clicked` row, commits and redirects.

Closed-loop clients (each sends its next request when the last is answered), each on its own keep-alive
connection, all on one asyncio loop in this process: by default requests written as bytes on asyncio streams
(about 0.1 ms of CPU a request), with `--client httpx` one `httpx.AsyncClient` each (about 1 ms: on 2 cores
such clients take a core from the server and the figures are theirs). Every measurement: the
clients start, run `--warmup` seconds unmeasured, then `--seconds` measured (requests answered in that
window: rate, p50, p99, max); bare and mauto alternate which goes first. The CPU used in the window by this
process (the clients) and by each server process is read from the kernel; from mauto's `/metrics` the
grouped commits in the window (requests per commit, time per commit).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine as describe  # noqa: E402

HOST = "127.0.0.1"
AT = "2026-12-01T10:00:00.000000+00:00"  # every event's `at`, in the store's own form (the same row both sides)
EVENT_KEYS = ("id", "contact", "event", "at")
INSERT_EVENT = "INSERT OR IGNORE INTO events (id, contact, name, at, properties, received_at) VALUES (?, ?, ?, ?, ?, ?)"
AIM_RATIO, AIM_P99_MS = 0.5, 50.0

PROJECT = """\
store: mauto.db
timezone: UTC
sender: {{email: "Shop <shop@example.com>"}}
channels:
  email: {{transport: console}}
events:
  page_viewed: {{url: string}}
serve:
  public_url: http://{host}:{port}
"""


# --------------------------------------------------------------------------------------------------------------------
# The bare server (run in its own process by `--bare-server DB PORT`)
# --------------------------------------------------------------------------------------------------------------------

def bare_app(db_path: str) -> Any:
    """The floor: the same rows, nothing checked, one commit per request."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, RedirectResponse, Response
    from starlette.routing import Route

    connection = sqlite3.connect(db_path, timeout=5.0, check_same_thread=False)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA foreign_keys = ON")
    lock = threading.Lock()

    def insert(rows: list[tuple[Any, ...]]) -> int:
        with lock:
            before = connection.total_changes
            connection.executemany(INSERT_EVENT, rows)
            connection.commit()
            return connection.total_changes - before

    def clicked(ref: str, url: str, received: str) -> None:
        with lock:
            row = connection.execute("SELECT contact, workflow, step, template FROM messages WHERE ref = ?",
                                     [ref]).fetchone()
            if row is not None:
                contact, workflow, step, template = row
                properties = {"workflow": workflow, "step": step, "template": template, "message": ref, "url": url}
                connection.execute(INSERT_EVENT, [None, contact, "email_clicked", received,
                                                  json.dumps(properties, ensure_ascii=False), received])
                connection.commit()

    async def events(request: Request) -> Response:
        value = json.loads(await request.body())
        items = value if isinstance(value, list) else [value]
        received = datetime.now(UTC).isoformat(timespec="microseconds")
        rows = [(item.get("id"), item["contact"], item["event"], item["at"],
                 json.dumps({k: v for k, v in item.items() if k not in EVENT_KEYS}, ensure_ascii=False), received)
                for item in items]
        accepted = await run_in_threadpool(insert, rows)
        return JSONResponse({"accepted": accepted, "duplicates": len(rows) - accepted}, 202)

    async def click(request: Request) -> Response:
        ref, encoded, _ = request.path_params["token"].split(".")
        url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
        await run_in_threadpool(clicked, ref, url, datetime.now(UTC).isoformat(timespec="microseconds"))
        return RedirectResponse(url, 302)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/v1/events", events, methods=["POST"]), Route("/c/{token}", click),
                             Route("/healthz", healthz)])


def run_bare_server(db_path: str, port: int) -> None:
    import uvicorn

    # The options `mauto serve` gives uvicorn that bear on speed: no access log, the same keep-alive.
    uvicorn.run(bare_app(db_path), host=HOST, port=port, access_log=False, log_level="warning",
                timeout_keep_alive=5, server_header=False, date_header=True)


# --------------------------------------------------------------------------------------------------------------------
# The project
# --------------------------------------------------------------------------------------------------------------------

@dataclass
class Setup:
    folder: Path
    mauto_db: Path
    bare_db: Path
    key: str
    tokens: list[str]
    contacts: int
    mauto_port: int
    bare_port: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def build(folder: Path, contacts: int) -> Setup:
    """The project and its store: contacts, an API key, one sent email with a ref per contact (the click
    tokens signed with the store's key, as the daemon signs them); then the bare side's copy of the file."""
    from mauto.config import load_project
    from mauto.links import Signer
    from mauto.store import Store, runtime
    from mauto.store.contacts import import_contacts
    from mauto.store.keys import create_key

    mauto_port, bare_port = free_port(), free_port()
    (folder / "mauto.yaml").write_text(PROJECT.format(host=HOST, port=mauto_port), encoding="utf-8")
    with (folder / "contacts.jsonl").open("w", encoding="utf-8") as handle:
        for n in range(contacts):
            handle.write(json.dumps({"id": f"c{n}", "email": f"person{n}@example.com", "email_consent": True}) + "\n")
    project = load_project(folder / "mauto.yaml")
    now = datetime.now(UTC)
    with Store(folder / "mauto.db", create=True) as store:
        result = import_contacts(store, folder / "contacts.jsonl", fields=project.contact_fields,
                                 zone=project.timezone)
        assert result.ok and result.created == contacts, result.to_dict()
        key = create_key(store, "bench", now)
        secret = runtime.unsubscribe_secret(store.db)
        assert secret, "the store has no signing key"
        signer = Signer(secret)
        sent = (now - timedelta(hours=1)).isoformat(timespec="microseconds")
        rows, tokens = [], []
        for n in range(contacts):
            message_key = f"bench:c{n}:promo"
            ref = signer.ref(message_key)
            rows.append({"key": message_key, "message_id": f"<{n}@bench.example>", "enrollment": f"e{n}",
                         "workflow": "promo", "version": 1, "step": "mail", "contact": f"c{n}", "channel": "email",
                         "template": "promo/mail", "marketing": 1, "to_address": f"person{n}@example.com",
                         "sender": "shop@example.com", "subject": "Our offer", "body": b"...", "status": "sent",
                         "next_try_at": None, "created_at": sent, "updated_at": sent, "ref": ref, "envelope": None})
            tokens.append(signer.click(ref, f"https://shop.example/offer/{n % 97}?utm_source=mail"))
        with store.transaction():
            runtime.insert_messages(store.db, rows)
    shutil.copyfile(folder / "mauto.db", folder / "bare.db")  # closed: the WAL is checkpointed into the file
    return Setup(folder, folder / "mauto.db", folder / "bare.db", key, tokens, contacts, mauto_port, bare_port)


def commit_floor(folder: Path, commits: int = 300) -> float:
    """Seconds per commit of one small row, WAL and synchronous = FULL, on this folder's disk: what one commit
    per request costs at least."""
    path = folder / "floor.db"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("CREATE TABLE t (value TEXT)")
    connection.commit()
    began = time.perf_counter()
    for n in range(commits):
        connection.execute("INSERT INTO t VALUES (?)", [str(n)])
        connection.commit()
    elapsed = time.perf_counter() - began
    connection.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return elapsed / commits


def filesystem(folder: Path) -> str:
    """The device and type of the filesystem holding `folder` (a tmpfs would make every fsync free)."""
    best = ("", "unknown", "unknown")
    try:
        with open("/proc/mounts", encoding="utf-8") as handle:
            for line in handle:
                device, point, kind = line.split()[:3]
                if str(folder.resolve()).startswith(point) and len(point) >= len(best[0]):
                    best = (point, device, kind)
    except OSError:
        pass
    return f"{best[2]} ({best[1]})"


# --------------------------------------------------------------------------------------------------------------------
# The servers' processes
# --------------------------------------------------------------------------------------------------------------------

@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    base: str
    log: Path


def start(name: str, command: list[str], port: int, log: Path) -> Process:
    """Start a server process and wait until it answers GET /healthz."""
    import httpx

    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with log.open("wb") as handle:
        popen = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
    process = Process(name, popen, f"http://{HOST}:{port}", log)
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=process.base, timeout=2.0, trust_env=False) as client:
        while True:
            if popen.poll() is not None:
                raise SystemExit(f"{name} server exited at start ({popen.returncode}):\n{tail(log)}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/healthz").status_code == 200:
                    return process
            if time.monotonic() > deadline:
                stop(process)
                raise SystemExit(f"{name} server did not answer within 60 s:\n{tail(log)}")
            time.sleep(0.1)


def stop(process: Process, how: int = signal.SIGTERM) -> None:
    """SIGTERM (uvicorn finishes its requests, mauto's writer its jobs), then wait; SIGKILL past 30 s."""
    if process.popen.poll() is None:
        process.popen.send_signal(how)
        try:
            process.popen.wait(30)
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process has used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------------------------------------
# Prometheus text
# --------------------------------------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = frozenset(_LABEL.findall(match.group(2) or ""))
            found[match.group(1), labels] = float(match.group(3))
    return found


def metric(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def histogram_quantile(before: dict[Any, float], after: dict[Any, float], name: str, quantile: float,
                       **labels: str) -> float | None:
    """The upper bound of the bucket holding `quantile` of the observations made between two scrapes."""
    bounds = sorted({dict(key[1])["le"] for key in after if key[0] == name + "_bucket"
                     and {k: v for k, v in key[1] if k != "le"} == labels}, key=lambda le: float(le))
    total = metric(after, name + "_count", **labels) - metric(before, name + "_count", **labels)
    if total <= 0:
        return None
    for le in bounds:
        count = metric(after, name + "_bucket", le=le, **labels) - metric(before, name + "_bucket", le=le, **labels)
        if count >= quantile * total:
            return float(le)
    return None


# --------------------------------------------------------------------------------------------------------------------
# The load
# --------------------------------------------------------------------------------------------------------------------

@dataclass
class Workload:
    kind: str  # "events" or "clicks"
    per_request: int  # events per request (clicks: 1)
    clients: int

    @property
    def name(self) -> str:
        if self.kind == "clicks":
            return "GET /c/<token>"
        return "POST /v1/events, 1 event" if self.per_request == 1 else f"POST /v1/events, {self.per_request} events"


@dataclass
class Run:
    side: str
    workload: Workload
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    answered: int = 0  # right answers, warm-up included (the rows the store must hold)
    errors: dict[str, int] = field(default_factory=dict)
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    groups: dict[str, float] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        requests = len(ordered)
        rate = requests / self.seconds if self.seconds else 0.0
        return {
            "side": self.side, "workload": self.workload.name, "kind": self.workload.kind,
            "per_request": self.workload.per_request, "clients": self.workload.clients,
            "seconds": round(self.seconds, 3), "requests": requests, "requests_per_s": round(rate, 1),
            "items_per_s": round(rate * self.workload.per_request, 1),
            "p50_ms": round(percentile(ordered, 0.50) * 1000, 2), "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2) if ordered else 0.0,
            "errors": dict(self.errors), "client_cpu_cores": round(self.client_cpu, 2),
            "server_cpu_cores": round(self.server_cpu, 2), **self.groups,
        }


def percentile(ordered: list[float], quantile: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(quantile * len(ordered)) - 1))]


def event_body(prefix: str, client: int, n: int, per_request: int, contacts: int) -> bytes:
    events = []
    for part in range(per_request):
        k = (client * 7919 + n * per_request + part) % contacts
        events.append(f'{{"id":"{prefix}-{client}-{n}-{part}","contact":"c{k}","event":"page_viewed",'
                      f'"at":"{AT}","url":"https://shop.example/p/{k % 997}"}}')
    return (events[0] if per_request == 1 else "[" + ",".join(events) + "]").encode("ascii")


class RawClient:
    """One keep-alive HTTP/1.1 connection over asyncio streams: requests written from bytes, answers read by
    their Content-Length. A tenth of httpx's CPU per request, so that the clients leave the CPU to the server."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        if body or method == "POST":
            head += f"Content-Length: {len(body)}\r\n"
        self.writer.write(head.encode("latin-1") + b"\r\n" + body)
        answer = await self.reader.readuntil(b"\r\n\r\n")
        lines = answer.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {name.strip().lower(): value.strip() for name, _, value in
                  (line.partition(":") for line in lines[1:] if line)}
        if "content-length" not in fields:
            raise RuntimeError(f"an answer without Content-Length: {lines[0]}")
        content = await self.reader.readexactly(int(fields["content-length"]))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, content

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
            self.reader = self.writer = None


class HttpxClient:
    """The same, through httpx.AsyncClient (one connection)."""

    def __init__(self, base: str, context: ssl.SSLContext) -> None:
        import httpx

        self.client = httpx.AsyncClient(base_url=base, timeout=30.0, verify=context, trust_env=False,
                                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        response = await self.client.request(method, path, content=body or None, headers=headers)
        return response.status_code, response.content

    async def close(self) -> None:
        await self.client.aclose()


async def scrape(process: Process) -> dict[Any, float]:
    """mauto's /metrics, on a connection of its own (an idle one may be closed by the server at any moment)."""
    client = RawClient(HOST, int(process.base.rsplit(":", 1)[1]))
    try:
        status, content = await client.request("GET", "/metrics")
    finally:
        await client.close()
    if status != 200:
        raise RuntimeError(f"GET /metrics: {status}")
    return parse_metrics(content.decode("utf-8"))


async def drive(process: Process, setup: Setup, workload: Workload, prefix: str, warmup: float,
                seconds: float, kind: str, context: ssl.SSLContext) -> Run:
    """One measurement: `workload.clients` closed-loop clients (`kind`: raw or httpx) against one server."""
    run = Run(process.name, workload)
    headers = {"Authorization": f"Bearer {setup.key}", "Content-Type": "application/json"}
    expected = 302 if workload.kind == "clicks" else 202
    window: list[float] = [math.inf, math.inf]  # the measured window's start and end (perf_counter)
    stopping = False
    port = int(process.base.rsplit(":", 1)[1])
    clients: list[RawClient | HttpxClient] = [
        RawClient(HOST, port) if kind == "raw" else HttpxClient(process.base, context)
        for _ in range(workload.clients)]

    def failed(reason: str) -> None:
        run.errors[reason] = run.errors.get(reason, 0) + 1

    async def client_loop(index: int, client: RawClient | HttpxClient) -> None:
        n = 0
        while not stopping:
            if workload.kind == "clicks":
                method, path, body, sent = "GET", f"/c/{setup.tokens[(index * 7919 + n) % len(setup.tokens)]}", b"", {}
            else:
                method, path, sent = "POST", "/v1/events", headers
                body = event_body(prefix, index, n, workload.per_request, setup.contacts)
            n += 1
            began = time.perf_counter()
            try:
                status, content = await client.request(method, path, body, sent)
            except (OSError, RuntimeError, ValueError, asyncio.IncompleteReadError) as error:
                failed(f"{type(error).__name__}: {error}"[:160])
                await client.close()
                continue
            except Exception as error:  # noqa: BLE001 - httpx's errors: counted, the client goes on
                failed(f"{type(error).__name__}: {error}"[:160])
                continue
            ended = time.perf_counter()
            if status != expected:
                failed(f"{status} {content[:120].decode('utf-8', 'replace')}")
                continue
            run.answered += 1
            if window[0] <= ended < window[1]:
                run.latencies.append(ended - began)

    measured = process.name == "mauto"
    tasks = [asyncio.create_task(client_loop(index, client)) for index, client in enumerate(clients)]
    await asyncio.sleep(warmup)
    window[0] = time.perf_counter()
    cpu_before, server_before = own_cpu(), process_cpu(process.popen.pid)
    metrics_before = await scrape(process) if measured else {}
    await asyncio.sleep(max(0.0, window[0] + seconds - time.perf_counter()))
    window[1] = time.perf_counter()
    cpu_after, server_after = own_cpu(), process_cpu(process.popen.pid)
    metrics_after = await scrape(process) if measured else {}
    stopping = True
    await asyncio.gather(*tasks)
    for client in clients:
        await client.close()
    run.seconds = window[1] - window[0]
    run.client_cpu = (cpu_after - cpu_before) / run.seconds
    run.server_cpu = (server_after - server_before) / run.seconds
    if measured:
        def grown(name: str) -> float:
            return metric(metrics_after, name) - metric(metrics_before, name)

        jobs, groups = grown("mauto_store_group_jobs_sum"), grown("mauto_store_group_jobs_count")
        commit = grown("mauto_store_commit_seconds_sum")
        route = "/c" if workload.kind == "clicks" else "/v1/events"  # app._route's labels
        server_p99 = histogram_quantile(metrics_before, metrics_after, "mauto_http_request_seconds", 0.99,
                                        route=route)
        run.groups = {"commits_per_s": round(groups / run.seconds, 1),
                      "jobs_per_commit": round(jobs / groups, 2) if groups else 0.0,
                      "commit_ms": round(commit / groups * 1000, 3) if groups else 0.0,
                      "writer_busy": round(commit / run.seconds, 2),
                      "server_p99_bucket_ms": None if server_p99 is None else server_p99 * 1000}
    return run


def count_rows(db: Path, sql: str, *args: Any) -> int:
    connection = sqlite3.connect(db, timeout=30.0)
    try:
        return connection.execute(sql, args).fetchone()[0]
    finally:
        connection.close()


# --------------------------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------------------------

def table(results: list[dict[str, Any]], ratios: list[dict[str, Any]]) -> str:
    lines = [f"  {'workload':28} {'clients':>7} {'side':>5} {'items/s':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
             f" {'max ms':>8} {'ratio':>6} {'cli CPU':>7} {'srv CPU':>7} {'jobs/commit':>11} {'commit ms':>9}"]
    ratio_of = {(r["workload"], r["clients"]): r["ratio"] for r in ratios}
    for row in results:
        ratio = ratio_of.get((row["workload"], row["clients"])) if row["side"] == "mauto" else None
        grouped = (f"{row['jobs_per_commit']:11.1f} {row['commit_ms']:9.2f}" if "jobs_per_commit" in row
                   else f"{'':11} {'':9}")
        errors = f"  errors: {row['errors']}" if row["errors"] else ""
        lines.append(f"  {row['workload']:28} {row['clients']:7} {row['side']:>5} {row['items_per_s']:9,.0f} "
                     f"{row['requests_per_s']:8,.0f} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} {row['max_ms']:8.1f} "
                     f"{'' if ratio is None else f'{ratio:.2f}':>6} {row['client_cpu_cores']:7.2f} "
                     f"{row['server_cpu_cores']:7.2f} {grouped}{errors}")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    try:
        load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        load = "unknown"
    found = {"sqlite": sqlite3.sqlite_version}
    for package in ("uvicorn", "starlette", "httpx", "h11", "prometheus-client"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    for package in ("uvloop", "httptools"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed (uvicorn runs asyncio and h11)"
    return {**found, "load average at start": load}


# --------------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------------

def levels(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}`: a comma-separated list of numbers of clients") from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"`{text}`: each number of clients must be at least 1")
    return values


def plan(clients: list[int], click_clients: list[int], batch: int) -> list[Workload]:
    work = [Workload("events", 1, n) for n in clients]
    if batch > 1:
        work += [Workload("events", batch, n) for n in clients]
    return work + [Workload("clicks", 1, n) for n in click_clients]


def profile_mauto(setup: Setup, path: Path, clients: int, seconds: float, warmup: float, kind: str,
                  context: ssl.SSLContext) -> str:
    """mauto's server under cProfile (its event loop's thread; the writer's thread is not profiled) for one
    measurement of `clients` clients posting one event each; its top functions."""
    import pstats

    port = free_port()
    command = [sys.executable, "-m", "cProfile", "-o", str(path), "-m", "mauto", "-p", str(setup.folder), "serve",
               "--port", str(port)]
    process = start("mauto", command, port, setup.folder / "mauto-profiled.log")
    try:
        run = asyncio.run(drive(process, setup, Workload("events", 1, clients), "profiled", warmup, seconds, kind,
                                context))
    finally:
        # uvicorn raises the signal it stopped on again once stopped: SIGTERM would end the process before
        # cProfile writes its file; SIGINT becomes a KeyboardInterrupt, and cProfile writes on the way out.
        stop(process, signal.SIGINT)
    buffer = _Lines()
    stats = pstats.Stats(str(path), stream=buffer)
    buffer.write("top 25 by own time:\n")
    stats.sort_stats("tottime").print_stats(25)
    buffer.write("mauto's own functions, top 20 by cumulative time:\n")
    stats.sort_stats("cumulative").print_stats(r"mauto/", 20)
    return (f"mauto under cProfile ({path}), {clients} clients, 1 event per request: "
            f"{run.figures()['items_per_s']:,.0f} events/s with the profiler on; the event loop's thread, start-up "
            f"included (the writer's thread is not profiled)\n{buffer.text()}")


class _Lines:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def text(self) -> str:
        return "".join(self.parts)


def measure(setup: Setup, work: list[Workload], options: argparse.Namespace, say: Any) -> dict[str, Any]:
    """Both servers up for the whole run; each workload measured on both, alternating which goes first."""
    bare_command = [sys.executable, str(Path(__file__).resolve()), "--bare-server", str(setup.bare_db),
                    str(setup.bare_port)]
    mauto_command = [sys.executable, "-m", "mauto", "-p", str(setup.folder), "serve", "--port", str(setup.mauto_port)]
    context = ssl.create_default_context()  # one for all clients: each would otherwise load the CA bundle
    servers = {"bare": start("bare", bare_command, setup.bare_port, setup.folder / "bare.log"),
               "mauto": start("mauto", mauto_command, setup.mauto_port, setup.folder / "mauto.log")}
    runs: list[Run] = []
    try:
        for number, workload in enumerate(work):
            sides = ("bare", "mauto") if number % 2 == 0 else ("mauto", "bare")
            for side in sides:
                run = asyncio.run(drive(servers[side], setup, workload, f"{side}{number}", options.warmup,
                                        options.seconds, options.client, context))
                runs.append(run)
                row = run.figures()
                errors = f", errors {row['errors']}" if row["errors"] else ""
                grouped = ""
                if "jobs_per_commit" in row:
                    grouped = (f"; /metrics: {row['jobs_per_commit']:.1f} requests/commit, {row['commit_ms']:.2f} ms "
                               f"a commit, writer busy {row['writer_busy']:.0%}, server-side p99 <= "
                               f"{row['server_p99_bucket_ms']} ms")
                say(f"  {side:5} {workload.name:28} {workload.clients:3} clients: {row['items_per_s']:9,.0f}/s, "
                    f"p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, client CPU {row['client_cpu_cores']:.2f},"
                    f" server CPU {row['server_cpu_cores']:.2f}{grouped}{errors}")
                time.sleep(0.5)
    finally:
        for process in servers.values():
            stop(process)
    # Every right answer is a row in its store, and no more: what was acknowledged was committed.
    check = {}
    for side, db in (("bare", setup.bare_db), ("mauto", setup.mauto_db)):
        sent = sum(run.answered * run.workload.per_request for run in runs
                   if run.side == side and run.workload.kind == "events")
        clicks = sum(run.answered for run in runs if run.side == side and run.workload.kind == "clicks")
        stored = count_rows(db, "SELECT count(*) FROM events WHERE name = 'page_viewed'")
        clicked = count_rows(db, "SELECT count(*) FROM events WHERE name = 'email_clicked'")
        check[side] = {"events_acknowledged": sent, "events_stored": stored, "clicks_answered": clicks,
                       "clicks_stored": clicked, "ok": sent == stored and clicks == clicked}
    results = [run.figures() for run in runs]
    ratios = []
    for workload in work:
        pair = {row["side"]: row for row in results
                if row["workload"] == workload.name and row["clients"] == workload.clients}
        bare_rate = pair["bare"]["items_per_s"]
        ratios.append({"workload": workload.name, "clients": workload.clients,
                       "ratio": round(pair["mauto"]["items_per_s"] / bare_rate, 3) if bare_rate else None,
                       "mauto_p99_ms": pair["mauto"]["p99_ms"], "bare_p99_ms": pair["bare"]["p99_ms"]})
    return {"results": results, "ratios": ratios, "check": check}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each (default 1)")
    parser.add_argument("--clients", type=levels, default=[1, 8, 64],
                        help="concurrent clients posting events, comma-separated (default 1,8,64)")
    parser.add_argument("--click-clients", type=levels, default=[8, 64],
                        help="concurrent clients following click links (default 8,64)")
    parser.add_argument("--batch", type=int, default=50, help="events per request of the batch runs (default 50; "
                                                              "1: no batch runs)")
    parser.add_argument("--contacts", type=int, default=5000, help="contacts (and sent emails) in the store "
                                                                  "(default 5,000)")
    parser.add_argument("--dir", type=Path, help="where to build the project (default: a temporary folder; it "
                                                 "must be on a real disk: fsync is what is measured)")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="raw: HTTP/1.1 written on asyncio streams, light (default); httpx: httpx.AsyncClient, "
                             "about 1 ms of CPU a request, so that on 2 cores the clients compete with the server")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the figures as JSON to PATH")
    parser.add_argument("--profile", type=Path, metavar="PATH",
                        help="then run mauto's server under cProfile (the most clients of --clients, 1 event per "
                             "request) and save its profile to PATH")
    parser.add_argument("--bare-server", nargs=2, metavar=("DB", "PORT"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.bare_server:
        run_bare_server(options.bare_server[0], int(options.bare_server[1]))
        return 0
    if options.seconds <= 0 or options.warmup < 0 or options.batch < 1 or options.contacts < 1:
        parser.error("--seconds must be positive, --warmup not negative, --batch and --contacts at least 1")

    began = time.perf_counter()
    about = describe(**versions())
    print("machine:")
    for key, value in about.items():
        print(f"  {key:22} {value}")
    with tempfile.TemporaryDirectory(prefix="bench-serve-", dir=options.dir) as name:
        folder = Path(name)
        setup = build(folder, options.contacts)
        floor, disk = commit_floor(folder), filesystem(folder)
        print(f"  {'disk':22} {disk}; one-row commit, WAL + synchronous=FULL: {floor * 1000:.2f} ms "
              f"({1 / floor:,.0f} commits/s)")
        work = plan(options.clients, options.click_clients, options.batch)
        print(f"\n{options.contacts:,} contacts; {len(work)} workloads x 2 sides, {options.warmup:g} s warm-up + "
              f"{options.seconds:g} s measured each; {options.client} clients")
        figures = measure(setup, work, options, print)
        profile = None
        if options.profile:
            profile = profile_mauto(setup, options.profile.resolve(), max(options.clients), options.seconds,
                                    options.warmup, options.client, ssl.create_default_context())
    wall = time.perf_counter() - began
    print("\n" + table(figures["results"], figures["ratios"]))
    print("\n  items/s: events (or redirects) answered per second; ratio: mauto / bare items/s, same workload and "
          "clients;\n  CPU: cores used in the window (cli: this process, all clients; srv: the server process); "
          "jobs/commit,\n  commit ms: mauto's grouped commits in the window (from /metrics)")
    print("\nratios mauto / bare:")
    for ratio in figures["ratios"]:
        print(f"  {ratio['workload']:28} {ratio['clients']:3} clients: {ratio['ratio']:.2f}")
    aims = []
    for ratio in figures["ratios"]:
        if ratio["workload"].endswith(", 1 event") and ratio["clients"] == 64:
            met = ratio["ratio"] >= AIM_RATIO and ratio["mauto_p99_ms"] < AIM_P99_MS
            aims.append({"workload": ratio["workload"], "ratio": ratio["ratio"], "mauto_p99_ms": ratio["mauto_p99_ms"],
                         "met": met})
            print(f"\naim (64 clients, 1 event per request): ratio >= {AIM_RATIO} and p99 < {AIM_P99_MS:g} ms: "
                  f"ratio {ratio['ratio']:.2f}, p99 {ratio['mauto_p99_ms']:.1f} ms: {'met' if met else 'MISSED'}")
    print("\nrows in the stores against the answers (every 202 and 302 committed, none twice):")
    for side, check in figures["check"].items():
        print(f"  {side:5} events acknowledged {check['events_acknowledged']:,}, stored {check['events_stored']:,}; "
              f"clicks answered {check['clicks_answered']:,}, stored {check['clicks_stored']:,}: "
              f"{'ok' if check['ok'] else 'MISMATCH'}")
    if profile:
        print("\n" + profile)
    print(f"\nwhole benchmark: {wall:.0f} s")
    if options.json:
        document = {"machine": about, "commit_floor_ms": round(floor * 1000, 3), "filesystem": disk,
                    "options": {"client": options.client, "seconds": options.seconds, "warmup": options.warmup,
                                "clients": options.clients,
                                "click_clients": options.click_clients, "batch": options.batch,
                                "contacts": options.contacts},
                    **figures, "aim": aims, "seconds": round(wall, 1)}
        options.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {options.json}")
    return 0 if all(check["ok"] for check in figures["check"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
