"""A project served by a real uvicorn on 127.0.0.1 (in a thread of the test process), driven by httpx; its
store is real (a SQLite file, or a PostgreSQL database on the tests' cluster for the modules marked
`both_stores`), the daemon ticks against it and sends through a real SMTP server (aiosmtpd)."""
from __future__ import annotations

import json
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from mauto.channels import build_transports
from mauto.config import load_project
from mauto.daemon.tick import tick
from mauto.deploy import deploy
from mauto.serve.app import ServeConfig, create_app
from mauto.store import open_store
from mauto.store.contacts import import_contacts
from mauto.store.keys import create_key
from tests.daemon.harness import write
from tests.servers import SmtpServer

HOST = "127.0.0.1"
SECRET = "s" * 43

CART = """\
id: cart
version: 1
name: Cart
trigger: {event: cart_abandoned}
steps:
  - id: reminder
    email: cart/reminder
  - id: clicked
    wait_for: {event: email_clicked, timeout: 2d}
    on_event:
      - id: thanks
        email: cart/thanks
    on_timeout:
      - id: last
        email: cart/last
"""
SENT = """\
id: sent
version: 1
name: Sent
category: transactional
trigger: {event: ordered}
steps:
  - id: receipt
    email: cart/receipt
  - id: confirmed
    wait_for: {event: email_sent, timeout: 1h}
    on_event:
      - id: follow
        email: cart/follow
    on_timeout:
      - id: lost
        email: cart/lost
"""


def free_socket() -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets it knows to be TCP (else each answer with
    # a body waits ~40 ms for the peer's delayed ACK)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    return sock


class Served:
    """The project, its store, the server and a client. `tick(now)` runs the daemon against the same store."""

    def __init__(self, root: Path, smtp: SmtpServer, serve_yaml: str = "", store_url: str | None = None) -> None:
        """`store_url`: a PostgreSQL database for the store (tests/pg.py), instead of `mauto.db` in `root`."""
        self.root, self.smtp = root, smtp
        self.sock = free_socket()
        self.port = self.sock.getsockname()[1]
        self.base = f"http://{HOST}:{self.port}"
        write(root / "mauto.yaml", textwrap.dedent(f"""\
            store: {store_url or "mauto.db"}
            timezone: UTC
            sender: {{email: "Shop <shop@example.com>", sms: SHOP}}
            channels:
              email: {{transport: smtp, host: 127.0.0.1, port: {smtp.port}, timeout: 5s}}
              sms: {{transport: console}}
            contact_fields: {{first_name: string}}
            events:
              cart_abandoned: {{cart_url: string}}
              ordered: {{cart_url: string}}
              page_viewed: {{url: string}}
            serve:
              public_url: {self.base}
              bounce_address: bounces@shop.example
              lists: {{newsletter: "The monthly newsletter", offers: "Special offers"}}
            """) + serve_yaml)  # written under `serve:`, as given
        write(root / "workflows" / "cart.yaml", CART)
        write(root / "workflows" / "sent.yaml", SENT)
        for name in ("reminder", "thanks", "last", "receipt", "follow", "lost"):
            write(root / "templates" / "cart" / f"{name}.email.html",
                  f'---\nsubject: "{name} {{{{ contact.first_name }}}}"\n---\n'
                  f'<html><body><p>{name} {{{{ contact.first_name }}}}</p>'
                  f'<a href="https://shop.example/cart/42?x=1&amp;y=2">your cart</a> '
                  f'<a href="{{{{ unsubscribe_url }}}}">unsubscribe</a></body></html>\n')
        write(root / "contacts.jsonl", "\n".join(json.dumps(row) for row in [
            {"id": "ana", "email": "ana@example.com", "email_consent": True, "first_name": "Ana",
             "phone": "+33612345678", "sms_consent": True, "lists": ["newsletter", "offers"]},
            {"id": "ben", "email": "ben@example.com", "email_consent": True, "first_name": "Ben"},
            {"id": "cy", "email": "cy@example.com", "email_consent": False, "first_name": "Cy"},
        ]) + "\n")
        self.project = load_project(root / "mauto.yaml")
        self.deployed = datetime.now(UTC) - timedelta(days=1)
        self.location: str | Path = store_url or root / "mauto.db"
        self.store = open_store(self.location, create=True, timeout=5.0)
        deploy(self.project, self.store, self.deployed)
        result = import_contacts(self.store, root / "contacts.jsonl", fields=self.project.contact_fields,
                                 zone=self.project.timezone)
        assert result.ok, result.to_dict()
        self.key = create_key(self.store, "website", datetime.now(UTC))
        self.transports = build_transports(self.project, {})
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.client = httpx.Client(base_url=self.base, timeout=10.0)

    def config(self, **options: Any) -> ServeConfig:
        return ServeConfig(self.project, self.location, SECRET, **options)

    def start(self, **options: Any) -> Served:
        self.app = create_app(self.config(**options))
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False,
                                                    timeout_keep_alive=5))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            assert self.thread.is_alive(), "uvicorn stopped at start"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.client.close()
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(10)
        self.store.close()

    def post_events(self, body: Any, **headers: str) -> httpx.Response:
        headers.setdefault("Authorization", f"Bearer {self.key}")
        if isinstance(body, (bytes, str)):
            headers.setdefault("Content-Type", "application/json")
            return self.client.post("/v1/events", content=body, headers=headers)
        return self.client.post("/v1/events", json=body, headers=headers)

    def tick(self, now: datetime | None = None):
        from mauto.daemon.tick import message_renderer

        renderer = message_renderer(self.project, self.store)
        renderer.secret = SECRET
        return tick(self.project, self.store, now or datetime.now(UTC), self.transports, renderer=renderer)

    def rows(self, sql: str, *args: Any) -> list[tuple]:
        return [tuple(row) for row in self.store.db.execute(sql, args)]

    def events(self, name: str | None = None) -> list[tuple[str, str, dict]]:
        rows = self.rows("SELECT contact, name, properties FROM events" + (" WHERE name = ?" if name else "") +
                         " ORDER BY seq", *([name] if name else []))
        return [(contact, event, json.loads(properties)) for contact, event, properties in rows]


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def store_url(store_kind: str, request: pytest.FixtureRequest) -> str | None:
    """A fresh PostgreSQL database's URL for `store_kind` postgresql (tests/conftest.py), else None (SQLite)."""
    return str(request.getfixturevalue("pg_cluster").url()) if store_kind == "postgresql" else None


@pytest.fixture
def served(tmp_path: Path, smtp: SmtpServer, store_kind: str, request: pytest.FixtureRequest,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """The project served, on the store `store_kind` names (SQLite but in the modules marked `both_stores`)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a PostgreSQL store's releases go there
    harness = Served(tmp_path, smtp, store_url=store_url(store_kind, request)).start()
    try:
        yield harness
    finally:
        harness.stop()
