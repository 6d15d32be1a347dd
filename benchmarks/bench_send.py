"""Sending over parallel SMTP connections: 2,000 messages from the outbox (`send_outbox`, a real SQLite store) with
1, 4 and 16 connections, against a local aiosmtpd server run in a process of its own, and a bare `smtplib` loop
over one connection in the same run as the reference. Messages a second for each.

    python benchmarks/bench_send.py                 # the server answers at once
    python benchmarks/bench_send.py --latency 0.05  # the server takes 50 ms a message, as a provider does

With a server that answers at once, the server's own CPU (aiosmtpd parses in Python) bounds every figure; the
latency is where parallel connections pay: a provider answers in tens of milliseconds.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import smtplib
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine  # noqa: E402
from mauto.channels import SmtpTransport  # noqa: E402
from mauto.channels.pace import Pace  # noqa: E402
from mauto.config import BUILTIN_FIELDS  # noqa: E402
from mauto.daemon.outbox import send_outbox  # noqa: E402
from mauto.daemon.report import TickReport  # noqa: E402
from mauto.store import Store, runtime  # noqa: E402
from mauto.store.contacts import import_contacts  # noqa: E402
from mauto.store.sqlite import stamp  # noqa: E402

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
BODY = "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n" * 40  # about 2.3 kB, a small newsletter


def serve(latency: float, ready: Any, stop: Any) -> None:
    """The SMTP server, in its own process (its own interpreter: it does not share our GIL)."""
    from tests.servers import SmtpServer

    with SmtpServer() as server:
        if latency:
            server.on("data", delay=latency)
        ready.send(server.port)
        stop.wait()
        ready.send(len(server.delivered()))


def message(number: int) -> tuple[str, str, bytes]:
    to = f"c{number}@example.com"
    body = (f"From: Shop <shop@example.com>\r\nTo: {to}\r\nSubject: news {number}\r\n"
            f"Message-ID: <b{number}@mauto>\r\n\r\n{BODY}\r\n").encode()
    return to, "Shop <shop@example.com>", body


def store_with(folder: Path, count: int) -> Store:
    store = Store(folder / "mauto.db", lambda: NOW, create=True, timeout=5.0)
    contacts = folder / "contacts.jsonl"
    contacts.write_text("".join(json.dumps({"id": f"c{n}", "email": f"c{n}@example.com"}) + "\n"
                                for n in range(1, count + 1)), encoding="utf-8")
    import_contacts(store, contacts, fields=dict(BUILTIN_FIELDS), zone="UTC")
    rows = []
    for number in range(1, count + 1):
        to, sender, body = message(number)
        rows.append({"key": f"k:{number}", "message_id": f"<b{number}@mauto>", "enrollment": f"w:c{number}:1",
                     "workflow": "w", "version": 1, "step": "news", "contact": f"c{number}", "channel": "email",
                     "template": "w/news", "marketing": 0, "to_address": to, "sender": sender, "subject": "news",
                     "body": body, "status": "pending", "next_try_at": None, "created_at": stamp(NOW),
                     "updated_at": stamp(NOW)})
    with store.transaction() as db:
        runtime.insert_messages(db, rows)
    return store


def bare(port: int, count: int) -> float:
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for number in range(1, count + 1):
            to, _, body = message(number)
            smtp.sendmail("shop@example.com", [to], body)
    return time.perf_counter() - started


def outbox(port: int, count: int, connections: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        store = store_with(Path(folder), count)
        transport = SmtpTransport("127.0.0.1", port, timeout=30)
        transport.pace = Pace(None, connections)
        report = TickReport(NOW)
        started = time.perf_counter()
        send_outbox(store, NOW, {"email": transport}, lambda kind, data: None, report)
        elapsed = time.perf_counter() - started
        store.close()
    if report.sent != count:
        raise SystemExit(f"only {report.sent} of {count} messages were sent: {report}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the server takes to answer a message")
    options = parser.parse_args()
    here, there = multiprocessing.Pipe()
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(options.latency, there, stop), daemon=True)
    server.start()
    port = here.recv()
    results: list[tuple[str, float]] = [("bare smtplib loop, 1 connection", bare(port, options.messages))]
    for connections in (1, 4, 16):
        results.append((f"send_outbox, {connections} connection{'s' if connections > 1 else ''}",
                        outbox(port, options.messages, connections)))
    stop.set()
    delivered = here.recv()
    server.join(10)
    import aiosmtpd

    facts = machine(aiosmtpd=aiosmtpd.__version__)
    print(f"{options.messages:,} messages of {len(message(1)[2]):,} bytes, server latency {options.latency:g}s, "
          f"{delivered:,} delivered in all")
    for key, value in facts.items():
        print(f"  {key}: {value}")
    print(f"| {'run':<36} | {'time':>8} | {'messages/s':>10} |")
    print(f"|{'-' * 38}|{'-' * 10}|{'-' * 12}|")
    for name, elapsed in results:
        print(f"| {name:<36} | {elapsed:7.2f}s | {options.messages / elapsed:10,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
