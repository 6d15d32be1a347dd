"""A store filled by running the daemon over a project with known contacts and events, for `mauto stats`,
`mauto report` and `mauto inspect`: real SMTP on 127.0.0.1, ticks on given moments, and what recipients did
(opens, a proxy's prefetch, a click, a bounce, an unsubscribe, conversions in time, late and too late) recorded
as `mauto serve` records it.

The story (T0 = Tue 1 Dec 2026 09:00 UTC), ten contacts c01…c10 abandon their cart at T0:
- `pause` (1h), then the split `subject-test`: a → `reminder-a`, b → `reminder-b` (the hash decides: see
  VARIANTS); c09 gave no consent (suppressed); c10's mailbox refuses mail (550: parked).
- c01 opens and clicks; c02's open is a privacy proxy's prefetch only; c03 is prefetched then opens; c04's
  mail bounces (hard: suppressed); c05 unsubscribes from it.
- c06 orders on day 1 (in the wait `later`: a conversion that exits there).
- `later` (2d), then `check` (`contact.score > 10`): c08's score is text, so its enrollment fails there;
  `then` makes a task for the sales team; `final` emails everyone left (c04 and c05 now refused).
- c07 orders on day 6, after its enrollment completed on day 3: within the goal's 7d, a late conversion.
  c02 orders on day 9: too late, not counted.
- `winback` (trigger `order_placed`, a wait of 10d) is still waiting for c06 and c07 when the figures are read
  on day 12 with no tick since day 10: both stuck, c07's by less than the grace? No: both by more than a day.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mauto.channels import build_transports
from mauto.config import load_project
from mauto.daemon.tick import tick
from mauto.deploy import deploy
from mauto.store import Store, open_store
from mauto.store.contacts import import_contacts
from mauto.store.events import ingest_events
from tests.daemon.harness import enrollment_of, write
from tests.servers import SmtpServer

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DEPLOYED = T0 - timedelta(days=10)
READ_AT = T0 + timedelta(days=12)  # the figures are read then; the last tick was on day 10

CART = """\
id: cart
version: 1
name: Abandoned cart
category: marketing
trigger: {event: cart_abandoned}
reentry: never
goal: {event: order_placed, within: 7d}
steps:
  - id: pause
    wait: 1h
  - id: subject-test
    split:
      variants:
        a: {weight: 50, steps: [{id: reminder-a, email: cart/reminder}]}
        b: {weight: 50, steps: [{id: reminder-b, email: cart/reminder-b}]}
  - id: later
    wait: 2d
  - id: check
    if: "100 / contact.score > 3"
    then:
      - id: call
        task: {title: "Call {{ contact.first_name }}", assignee: sales@shop.example}
  - id: final
    email: cart/final
"""
WINBACK = """\
id: winback
version: 1
name: Win back
category: marketing
trigger: {event: order_placed}
steps:
  - id: rest
    wait: 10d
  - id: comeback
    email: cart/final
"""


@dataclass
class Filled:
    root: Path
    store: Store
    smtp: SmtpServer
    project: object

    def rows(self, sql: str, *args: object) -> list[tuple]:
        return [tuple(row) for row in self.store.db.execute(sql, args)]

    def enrollment(self, workflow: str, contact: str) -> str:
        """The store's (opaque) id of the contact's enrollment in the workflow."""
        return enrollment_of(self.store, workflow, contact)

    def ref(self, contact: str, step: str) -> str:
        [(ref,)] = self.rows("SELECT ref FROM messages WHERE contact = ? AND step = ?", contact, step)
        return ref


def _events(filled: Filled, rows: list[dict]) -> None:
    path = write(filled.root / f"events-{len(list(filled.root.glob('events-*')))}.jsonl",
                 "\n".join(json.dumps(row) for row in rows) + "\n")
    result = ingest_events(filled.store, path, catalogue=filled.project.events,  # type: ignore[attr-defined]
                           zone="UTC")
    assert result.ok, result.to_dict()


def _about(filled: Filled, contact: str, step: str, name: str, at: datetime, **extra: object) -> dict:
    template = "cart/reminder-b" if step == "reminder-b" else "cart/final" if step == "final" else "cart/reminder"
    return {"contact": contact, "event": name, "at": at.isoformat(), "workflow": "cart", "step": step,
            "template": template, "message": filled.ref(contact, step), **extra}


def store_location(store_kind: str, request: pytest.FixtureRequest) -> str | None:
    """The `store:` of a test's project: None for `mauto.db` in its folder (SQLite), else a fresh PostgreSQL
    database of the session's cluster (tests/pg.py)."""
    return str(request.getfixturevalue("pg_cluster").url()) if store_kind == "postgresql" else None


@pytest.fixture
def store_url(store_kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
              tmp_path: Path) -> str | None:
    """`store_location` for one test (run on both stores: tests/conftest.py's `store_kind`). A PostgreSQL store
    keeps its rendered releases under the user's cache (`PgStore.local_folder`): in tmp_path here."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return store_location(store_kind, request)


def fill(root: Path, smtp: SmtpServer, location: str | None = None) -> Filled:
    """The story, in `mauto.db` in `root` or in the PostgreSQL database at `location`."""
    write(root / "mauto.yaml", f"""\
        store: {location or "mauto.db"}
        timezone: UTC
        sender: {{email: "Shop <shop@example.com>"}}
        serve: {{public_url: "https://shop.example"}}
        channels:
          email: {{transport: smtp, host: 127.0.0.1, port: {smtp.port}, timeout: 5s}}
        contact_fields: {{first_name: string}}
        events: {{cart_abandoned: {{}}, order_placed: {{}}}}
        """)
    write(root / "workflows" / "cart.yaml", CART)
    write(root / "workflows" / "winback.yaml", WINBACK)
    for name in ("reminder", "reminder-b", "final"):
        write(root / "templates" / "cart" / f"{name}.email.html",
              f'---\nsubject: "{name} {{{{ contact.first_name }}}}"\n---\n'
              f'<p>{name}</p><a href="https://shop.example/cart">cart</a> '
              f'<a href="{{{{ unsubscribe_url }}}}">stop</a>\n')
    contacts = []
    for number in range(1, 11):
        contact = f"c{number:02d}"
        # c08's score 0 cannot divide 100: its enrollment fails at `check`
        contacts.append({"id": contact, "email": f"{contact}@example.com", "email_consent": number != 9,
                         "first_name": contact.upper(), "score": 0 if number == 8 else 5 * number})
    write(root / "contacts.jsonl", "\n".join(json.dumps(row) for row in contacts) + "\n")
    project = load_project(root / "mauto.yaml")
    store = open_store(location or root / "mauto.db", lambda: DEPLOYED, create=True, timeout=2.0)
    deploy(project, store, DEPLOYED)
    import_contacts(store, root / "contacts.jsonl", fields=project.contact_fields, zone=project.timezone)
    transports = build_transports(project, {})
    filled = Filled(root, store, smtp, project)
    smtp.on("rcpt", "550 5.1.1 no such mailbox", recipient="c10@example.com")

    def run(at: datetime) -> None:
        report = tick(project, store, at, transports, log=lambda kind, data: None)
        assert not report.failures if hasattr(report, "failures") else True

    _events(filled, [{"contact": f"c{n:02d}", "event": "cart_abandoned", "at": T0.isoformat()} for n in range(1, 11)])
    run(T0)
    run(T0 + timedelta(hours=2))  # the split and the reminders
    reminder = {contact: step for contact, step in filled.rows("SELECT contact, step FROM messages")}
    hour = T0 + timedelta(hours=3)
    _events(filled, [
        _about(filled, "c01", reminder["c01"], "email_opened", hour, prefetched=False),
        _about(filled, "c01", reminder["c01"], "email_opened", hour + timedelta(minutes=5), prefetched=False),
        _about(filled, "c01", reminder["c01"], "email_clicked", hour + timedelta(minutes=6),
               url="https://shop.example/cart"),
        _about(filled, "c02", reminder["c02"], "email_opened", hour, prefetched=True),
        _about(filled, "c03", reminder["c03"], "email_opened", hour, prefetched=True),
        _about(filled, "c03", reminder["c03"], "email_opened", hour + timedelta(hours=1), prefetched=False),
        _about(filled, "c04", reminder["c04"], "email_bounced", hour, kind="hard"),
        _about(filled, "c05", reminder["c05"], "unsubscribed", hour, channel="email", source="one-click"),
        {"contact": "c06", "event": "order_placed", "at": (T0 + timedelta(days=1)).isoformat()},
    ])
    run(T0 + timedelta(days=1, hours=1))
    run(T0 + timedelta(days=4))  # `later` is over: check, final, the end
    _events(filled, [{"contact": "c07", "event": "order_placed", "at": (T0 + timedelta(days=6)).isoformat()}])
    run(T0 + timedelta(days=6, hours=1))
    _events(filled, [{"contact": "c02", "event": "order_placed", "at": (T0 + timedelta(days=9)).isoformat()}])
    run(T0 + timedelta(days=10))
    return filled


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, store_kind: str,
           request: pytest.FixtureRequest) -> Iterator[Filled]:
    """The story above, run once for the module's tests (they only read it), on each store."""
    root = tmp_path_factory.mktemp("stats")
    with SmtpServer() as smtp, pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root / "cache"))  # a PostgreSQL store's releases: see `store_url`
        made = fill(root, smtp, store_location(store_kind, request))
        yield made
        made.store.close()
