"""The daemon tests' harness: a small project (the `promo` and `hooked` workflows, three contacts) with a real
store, a real SMTP server and a real HTTP server on 127.0.0.1. The fixtures that hand it out (`daemon`,
`fresh_daemon`) are in tests/conftest.py, since tests outside tests/daemon use them too."""
from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from mauto.channels import build_transports
from mauto.cli import app
from mauto.config import load_project
from mauto.daemon.tick import tick
from mauto.deploy import deploy
from mauto.driver.sqlite import enrollment_id
from mauto.store import Store, open_store
from mauto.store.contacts import import_contacts
from mauto.store.events import ingest_events
from tests.servers import HttpServer, SmtpServer

DEPLOYED = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

WORKFLOW = """\
id: promo
version: 1
name: Promo
category: marketing
trigger: {event: signed_up}
reentry: never
steps:
  - id: hello
    email: promo/hello
  - wait: 1d
  - id: again
    email: promo/again
"""
HOOKED = """\
id: hooked
version: 1
name: Hooked
category: transactional
trigger: {event: ordered}
steps:
  - id: crm
    webhook: {url: "URL", body: {contact: "{{ contact.id }}"}, as: crm, retries: 2}
  - id: thanks
    email: promo/thanks
"""


def enrollment_of(store: Store, workflow: str, contact: str, number: int = 1) -> str:
    """The id the store gives a contact's `number`th enrollment in a workflow: opaque, an HMAC under the store's own
    key (`mauto.driver.sqlite.enrollment_id`); the idempotency keys of its messages and calls begin with it."""
    [(key,)] = store.db.execute("SELECT value FROM runner_state WHERE key = 'unsubscribe_secret'").fetchall()
    return enrollment_id(key, workflow, contact, number)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


class Daemon:
    """A project with the `promo` workflow, three contacts, a store, and the SMTP and HTTP servers."""

    def __init__(self, root: Path, smtp: SmtpServer, http: HttpServer, store_url: str | None = None) -> None:
        """`store_url`: a PostgreSQL database for the store (tests/pg.py), instead of `mauto.db` in `root`."""
        self.root, self.smtp, self.http = root, smtp, http
        write(root / "mauto.yaml", f"""\
            store: {store_url or "mauto.db"}
            timezone: UTC
            sender: {{email: "Shop <shop@example.com>", sms: SHOP}}
            unsubscribe_url: "https://example.com/u/{{{{ token }}}}"
            channels:
              email: {{transport: smtp, host: 127.0.0.1, port: {smtp.port}, timeout: 5s}}
              sms: {{transport: http, url: "{http.url('/sms')}", token_env: MAUTO_TEST_SMS_TOKEN}}
            contact_fields: {{first_name: string}}
            events: {{signed_up: {{}}, ordered: {{}}}}
            """)
        write(root / "workflows" / "promo.yaml", WORKFLOW)
        write(root / "workflows" / "hooked.yaml", HOOKED.replace("URL", http.url("/crm")))
        for name in ("hello", "again", "thanks"):
            write(root / "templates" / "promo" / f"{name}.email.html",
                  f'---\nsubject: "{name} {{{{ contact.first_name }}}}"\n---\n'
                  f'<p>{name} {{{{ contact.first_name }}}}</p><a href="{{{{ unsubscribe_url }}}}">unsubscribe</a>\n')
        write(root / "contacts.jsonl", "\n".join(json.dumps(row) for row in [
            {"id": "ana", "email": "ana@example.com", "email_consent": True, "first_name": "Ana"},
            {"id": "ben", "email": "ben@example.com", "email_consent": True,
             "first_name": "Ben\nBcc: evil@example.com"},
            {"id": "cy", "email": "cy@example.com", "email_consent": False, "first_name": "Cy"},
        ]) + "\n")
        self.project = load_project(root / "mauto.yaml")
        self.location: str | Path = store_url or root / "mauto.db"
        self.store = open_store(self.location, lambda: DEPLOYED, create=True, timeout=2.0)
        deploy(self.project, self.store, DEPLOYED)
        import_contacts(self.store, root / "contacts.jsonl", fields=self.project.contact_fields,
                        zone=self.project.timezone)
        self.transports = build_transports(self.project, {"MAUTO_TEST_SMS_TOKEN": "t0k3n"})
        self.events = 0

    def event(self, contact: str, name: str, at: datetime, **properties) -> None:
        self.events += 1
        path = write(self.root / f"events-{self.events}.jsonl",
                     json.dumps({"contact": contact, "event": name, "at": at.isoformat(), **properties}) + "\n")
        result = ingest_events(self.store, path, catalogue=self.project.events, zone=self.project.timezone)
        assert result.ok, result.to_dict()

    def tick(self, now: datetime, **options):
        actions: list[tuple[str, dict]] = []
        options.setdefault("log", lambda kind, data: actions.append((kind, data)))
        report = tick(self.project, self.store, now, self.transports, **options)
        report.actions = actions
        return report

    def enrollment(self, workflow: str, contact: str, number: int = 1) -> str:
        """The store's id of the contact's `number`th enrollment in the workflow (`enrollment_of`)."""
        return enrollment_of(self.store, workflow, contact, number)

    def rows(self, sql: str, *args) -> list[tuple]:
        return [tuple(row) for row in self.store.db.execute(sql, args)]

    def statuses(self) -> dict[str, str]:
        return dict(self.rows("SELECT key, status FROM messages ORDER BY id"))


def mauto(daemon: Daemon, *args: str):
    """`mauto -p <the daemon's project> ARGS...` through typer's runner, with the SMS token set."""
    runner = CliRunner()
    return runner.invoke(app, ["-p", str(daemon.root / "mauto.yaml"), *args],
                         env={"MAUTO_TEST_SMS_TOKEN": "t0k3n", "COLUMNS": "200"})
