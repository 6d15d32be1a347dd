"""`mauto inspect`: one contact's journey, read from a store the daemon filled.

The project: `welcome` (signed_up: hello, an hour later tips and news), `cart` (cart_abandoned: a day's wait, a
reminder, a wait_for its click, a goal order_placed within 7d) and `loyalty` (order_placed: 30 days' wait). Ana,
in Europe/Paris, signs up and leaves a cart on Saturday 24 October 2026; summer time ends that night; Sunday
morning her reminder goes, Apple's proxy fetches its pixel, she opens it, clicks its link (through a real `mauto
serve`), orders, and unsubscribes in one click. Every message goes through a real SMTP server (aiosmtpd) on
127.0.0.1, which refuses tips (550) and defers news (451, again and again). Ben, in the project's zone, signs up
too: none of his rows may show in Ana's journey.
"""
from __future__ import annotations

import copy
import io
import json
import re
import sqlite3
import textwrap
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from rich.console import Console

from mauto.channels import build_transports
from mauto.config import load_project
from mauto.daemon.tick import tick
from mauto.deploy import deploy
from mauto.errors import ExitCode
from mauto.serve.app import ServeConfig, create_app
from mauto.stats.inspect import inspect, render
from mauto.store import Store, open_store
from mauto.store.contacts import ContactNotFound, erase, import_contacts
from mauto.store.copy import copy_store as copy_into
from mauto.store.events import ingest_events
from mauto.store.runtime import unsubscribe_secret
from tests.daemon.harness import enrollment_of, write
from tests.serve.conftest import free_socket
from tests.servers import SmtpServer
from tests.stats.conftest import store_location

DEPLOYED = datetime(2026, 10, 23, 8, 0, tzinfo=UTC)
T0 = datetime(2026, 10, 24, 8, 0, tzinfo=UTC)  # Saturday 10:00 in Paris (CEST); Sunday 03:00 CEST is 02:00 CET
SUNDAY = datetime(2026, 10, 25, 9, 0, tzinfo=UTC)  # 10:00 in Paris (CET)

WELCOME = """\
id: welcome
version: 1
name: Welcome
trigger: {event: signed_up}
steps:
  - id: hello
    email: welcome/hello
  - wait: 1h
  - id: tips
    email: welcome/tips
  - id: news
    email: welcome/news
"""
CART = """\
id: cart
version: 1
name: Cart
trigger: {event: cart_abandoned}
goal: {event: order_placed, within: 7d}
steps:
  - wait: 1d
  - id: reminder
    email: cart/reminder
  - id: clicked
    wait_for: {event: email_clicked, timeout: 2d}
    on_timeout:
      - id: last
        email: cart/last
  - wait: 3d
"""
LOYALTY = """\
id: loyalty
version: 1
name: Loyalty
trigger: {event: order_placed}
steps:
  - wait: 30d
  - id: thanks
    email: loyalty/thanks
"""


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


class Journey:
    """The project, its store, the SMTP server and a `mauto serve` on 127.0.0.1 whose clock the test sets."""

    def __init__(self, root: Path, smtp: SmtpServer) -> None:
        self.root, self.smtp = root, smtp
        self.sock = free_socket()
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        write(root / "mauto.yaml", f"""\
            store: mauto.db
            timezone: UTC
            sender: {{email: "Shop <shop@example.com>"}}
            channels:
              email: {{transport: smtp, host: 127.0.0.1, port: {smtp.port}, timeout: 5s}}
            contact_fields: {{first_name: string, last_name: string, plan: string}}
            events:
              signed_up: {{}}
              cart_abandoned: {{cart_url: string}}
              order_placed: {{total: number}}
            serve:
              public_url: {self.base}
            """)
        write(root / "workflows" / "welcome.yaml", WELCOME)
        write(root / "workflows" / "cart.yaml", CART)
        write(root / "workflows" / "loyalty.yaml", LOYALTY)
        for name in ("welcome/hello", "welcome/tips", "welcome/news", "cart/reminder", "cart/last", "loyalty/thanks"):
            step = name.split("/")[1]
            write(root / "templates" / f"{name}.email.html",
                  f'---\nsubject: "{step} {{{{ contact.first_name }}}}"\n---\n'
                  f'<html><body><p>{step}</p><a href="https://shop.example/cart/42">your cart</a> '
                  f'<a href="{{{{ unsubscribe_url }}}}">unsubscribe</a></body></html>\n')
        write(root / "contacts.jsonl", "\n".join(json.dumps(row) for row in [
            {"id": "ana", "email": "ana@example.com", "email_consent": True, "first_name": "Ana",
             "last_name": "Lopez", "plan": "pro", "timezone": "Europe/Paris", "lists": ["newsletter"]},
            {"id": "ben", "email": "ben@example.com", "email_consent": True, "first_name": "Ben"},
        ]) + "\n")
        self.project = load_project(root / "mauto.yaml")
        self.clock = Clock(DEPLOYED)
        self.store = Store(root / "mauto.db", self.clock, create=True, timeout=5.0)
        deploy(self.project, self.store, DEPLOYED)
        result = import_contacts(self.store, root / "contacts.jsonl", fields=self.project.contact_fields,
                                 zone=self.project.timezone)
        assert result.ok, result.to_dict()
        self.transports = build_transports(self.project, {})
        self.events = 0
        secret = unsubscribe_secret(self.store.db)
        assert secret
        self.serve_clock = Clock(T0)
        app = create_app(ServeConfig(self.project, root / "mauto.db", secret, now=self.serve_clock))
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        self.client = httpx.Client(timeout=10.0)

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)
        self.store.close()

    def event(self, contact: str, name: str, at: datetime, **properties: Any) -> None:
        self.events += 1
        path = write(self.root / f"events-{self.events}.jsonl",
                     json.dumps({"contact": contact, "event": name, "at": at.isoformat(), **properties}) + "\n")
        result = ingest_events(self.store, path, catalogue=self.project.events, zone=self.project.timezone)
        assert result.ok, result.to_dict()

    def tick(self, now: datetime) -> None:
        self.clock.moment = now
        tick(self.project, self.store, now, self.transports)

    def follow(self, at: datetime, url: str, agent: str) -> httpx.Response:
        """The recipient's mail client fetching a pixel or following a link at `at`."""
        self.serve_clock.moment = at
        return self.client.get(url.replace("&amp;", "&"), headers={"User-Agent": agent}, follow_redirects=False)

    def html(self, to: str, subject: str) -> str:
        received = next(m for m in self.smtp.messages if m.message["To"] == to and m.message["Subject"] == subject)
        return next(part.get_content() for part in received.message.walk()
                    if part.get_content_type() == "text/html")


def _run(journey: Journey) -> None:
    journey.tick(T0 - timedelta(hours=1))  # the daemon's first tick: history before it is skipped
    journey.event("ana", "signed_up", T0)
    journey.event("ben", "signed_up", T0)
    journey.tick(T0 + timedelta(minutes=1))
    journey.event("ana", "cart_abandoned", T0 + timedelta(minutes=30), cart_url="https://shop.example/cart/42")
    journey.smtp.on("data", "550 5.7.1 message refused", recipient="ana@example.com", times=1)
    journey.smtp.on("data", "451 4.3.0 try again later", recipient="ana@example.com", times=1)
    journey.tick(T0 + timedelta(hours=1))  # welcome wakes: tips refused, news deferred; cart enters
    journey.smtp.on("data", "451 4.3.0 try again later", recipient="ana@example.com", times=1)
    journey.tick(SUNDAY)  # news deferred again; cart's day is up (summer time ended in between): the reminder
    journey.smtp.on("data", "451 4.3.0 try again later", recipient="ana@example.com")  # news stays pending
    html = journey.html("ana@example.com", "reminder Ana")
    pixel = re.search(r'src="([^"]*/o/[^"]*)"', html)
    link = re.search(r'href="([^"]*/c/[^"]*)"', html)
    assert pixel and link
    assert journey.follow(SUNDAY + timedelta(minutes=2), pixel.group(1), "Mozilla/5.0").status_code == 200
    assert journey.follow(SUNDAY + timedelta(minutes=20), pixel.group(1),
                          "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15").status_code == 200
    answer = journey.follow(SUNDAY + timedelta(minutes=21), link.group(1),
                            "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15")
    assert answer.status_code == 302 and answer.headers["location"] == "https://shop.example/cart/42"
    journey.tick(SUNDAY + timedelta(minutes=30))  # the click ends the wait_for
    journey.event("ana", "order_placed", SUNDAY + timedelta(hours=3), total=89.9)
    journey.tick(SUNDAY + timedelta(hours=3, minutes=5))  # the goal
    received = next(m for m in journey.smtp.messages if m.message["Subject"] == "reminder Ana")
    journey.serve_clock.moment = SUNDAY + timedelta(hours=4)
    answer = journey.client.post(received.message["List-Unsubscribe"].strip("<>"),
                                 content=b"List-Unsubscribe=One-Click",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200


@pytest.fixture(scope="module")
def sqlite_journey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    with SmtpServer() as smtp:
        running = Journey(tmp_path_factory.mktemp("journey"), smtp)
        try:
            _run(running)
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def journey(sqlite_journey: Journey, store_kind: str, request: pytest.FixtureRequest) -> Iterator[Journey]:
    """The journey's store, and on PostgreSQL the same rows (`mauto db copy`, checked row for row): `mauto serve`,
    which recorded the opens, the click and the unsubscribe, runs on SQLite only."""
    if store_kind == "sqlite":
        yield sqlite_journey
        return
    url = store_location(store_kind, request)
    assert url is not None
    copy_into(sqlite_journey.store, url, shown_target=url)
    copied = copy.copy(sqlite_journey)
    copied.store = open_store(url, sqlite_journey.clock, timeout=5.0)
    try:
        yield copied
    finally:
        copied.store.close()


def dedent(source: str) -> str:
    return textwrap.dedent(source)


def text(report: dict[str, Any]) -> str:
    """The report as `mauto inspect` prints it (a console without colours, as wide as the lines)."""
    console = Console(width=300, soft_wrap=True, no_color=True, highlight=False, markup=False, record=True,
                      file=io.StringIO())
    console.print(render(report))
    return console.export_text()


def copy_store(journey: Journey, target: Path, url: str | None) -> Store:
    """A copy of the journey's store, to change: SQLite's backup (a consistent copy of a store in WAL mode), or
    into the PostgreSQL database at `url` (the `store_url` fixture) when the journey's store is PostgreSQL's."""
    if url is not None:
        copy_into(journey.store, url, shown_target=url)
        return open_store(url, journey.clock, timeout=5.0)
    target.mkdir()
    source = sqlite3.connect(journey.root / "mauto.db")
    copy = sqlite3.connect(target / "mauto.db")
    with source, copy:
        source.backup(copy)
    source.close()
    copy.close()
    return Store(target / "mauto.db", journey.clock)


def brief(item: dict[str, Any]) -> tuple:
    """A timeline item as (local time, kind, workflow, step, what)."""
    what = {"event": "name", "step": "action", "ended": "state", "message": "status", "opened": "prefetched",
            "clicked": "url", "entered": "why", "failure": "reason", "erased": "kind"}[item["kind"]]
    return (item["local"], item["kind"], item.get("workflow"), item.get("step"), item[what])


JOURNEY = [
    ("2026-10-23T10:00:00+02:00", "event", None, None, "contact_created"),
    ("2026-10-24T10:00:00+02:00", "event", None, None, "signed_up"),
    ("2026-10-24T10:00:00+02:00", "entered", "welcome", "trigger", "signed_up"),
    ("2026-10-24T10:00:00+02:00", "message", "welcome", "hello", "sent"),
    ("2026-10-24T10:00:00+02:00", "step", "welcome", "2", "wait"),
    ("2026-10-24T10:30:00+02:00", "event", None, None, "cart_abandoned"),
    ("2026-10-24T10:30:00+02:00", "entered", "cart", "trigger", "cart_abandoned"),
    ("2026-10-24T10:30:00+02:00", "step", "cart", "1", "wait"),
    ("2026-10-24T11:00:00+02:00", "message", "welcome", "tips", "parked"),
    ("2026-10-24T11:00:00+02:00", "message", "welcome", "news", "pending"),
    ("2026-10-24T11:00:00+02:00", "ended", "welcome", "end", "completed"),
    # summer time ended at 03:00 CEST on Sunday: the day's wait ends at 09:30 CET, 24 hours on
    ("2026-10-25T09:30:00+01:00", "message", "cart", "reminder", "sent"),
    ("2026-10-25T09:30:00+01:00", "step", "cart", "clicked", "wait"),
    ("2026-10-25T10:02:00+01:00", "opened", "cart", "reminder", True),
    ("2026-10-25T10:20:00+01:00", "opened", "cart", "reminder", False),
    ("2026-10-25T10:21:00+01:00", "clicked", "cart", "reminder", "https://shop.example/cart/42"),
    ("2026-10-25T10:21:00+01:00", "step", "cart", "clicked", "event"),
    ("2026-10-25T10:21:00+01:00", "step", "cart", "4", "wait"),
    ("2026-10-25T13:00:00+01:00", "event", None, None, "order_placed"),
    ("2026-10-25T13:00:00+01:00", "step", "cart", "4", "goal"),
    ("2026-10-25T13:00:00+01:00", "ended", "cart", "4", "converted"),
    ("2026-10-25T13:00:00+01:00", "entered", "loyalty", "trigger", "order_placed"),
    ("2026-10-25T13:00:00+01:00", "step", "loyalty", "1", "wait"),
    ("2026-10-25T14:00:00+01:00", "event", "cart", "reminder", "unsubscribed"),
]


def test_the_journey_merges_every_workflow_in_time_order_in_the_contacts_zone(journey: Journey) -> None:
    report = inspect(journey.store, "ana", default_zone="UTC")
    assert [brief(item) for item in report["timeline"]] == JOURNEY
    assert (report["zone"], report["zone_from"], report["since"], report["limit"], report["more"]) == \
        ("Europe/Paris", "contact", None, None, False)
    assert report["timeline"][5]["at"] == "2026-10-24T08:30:00+00:00"  # `at` in UTC, `local` in her zone
    # every step-log entry is there once: as a step, an enrollment's entry or end, or a message's send
    logged = journey.store.db.execute("SELECT count(*) FROM step_log WHERE contact = 'ana'").fetchone()[0]
    assert logged == sum(item["kind"] in ("step", "entered", "ended", "message") for item in report["timeline"])
    # the email_sent events are their messages' `sent`; Ben's rows are not Ana's
    names = [item.get("name") for item in report["timeline"]]
    assert "email_sent" not in names
    anas = {enrollment_of(journey.store, workflow, "ana") for workflow in ("welcome", "cart", "loyalty")}
    assert {item["enrollment"] for item in report["timeline"] if "enrollment" in item} == anas


def test_messages_carry_their_status_and_opens_and_clicks_their_message(journey: Journey) -> None:
    report = inspect(journey.store, "ana", default_zone="UTC")
    messages = {message["step"]: message for message in report["messages"]}
    assert list(messages) == ["hello", "tips", "news", "reminder"]
    hello, tips, news, reminder = messages.values()
    assert (hello["status"], hello["subject"], hello["to"], hello["created_at"], hello["sent_at"]) == \
        ("sent", "hello Ana", "ana@example.com", "2026-10-24T08:00:00+00:00", "2026-10-24T08:01:00+00:00")
    assert (tips["status"], tips["answer"], tips["sent_at"]) == ("parked", "550 5.7.1 message refused", None)
    assert (news["status"], news["attempts"]) == ("pending", 4)
    last_tick = SUNDAY + timedelta(hours=3, minutes=5)  # the retry's moment is jittered: up to 8 minutes later
    assert last_tick < datetime.fromisoformat(news["next_try_at"]) <= last_tick + timedelta(minutes=8)
    assert news["answer"].startswith("451 4.3.0 try again later")
    assert (reminder["opened"], reminder["opened_prefetched"], reminder["clicked"]) == (1, 1, 1)
    assert (hello["opened"], hello["opened_prefetched"], hello["clicked"]) == (0, 0, 0)
    opened, clicked = (item for item in report["timeline"] if item["kind"] in ("opened", "clicked")
                       and not item.get("prefetched"))
    assert opened["message"] == clicked["message"] == reminder["id"]
    unsubscribed = report["timeline"][-1]
    assert (unsubscribed["message"], unsubscribed["properties"]["source"]) == (reminder["id"], "one-click")
    enrollments = {e["workflow"]: e for e in report["enrollments"]}
    assert enrollments["cart"] | {"id": None} == {
        "id": None, "workflow": "cart", "version": 1, "state": "converted",
        "entered_at": "2026-10-24T08:30:00+00:00", "why": "cart_abandoned", "ended_at": "2026-10-25T12:00:00+00:00",
        "reason": "goal order_placed", "converted_at": "2026-10-25T12:00:00+00:00", "goal_until": None,
        "wake_at": None, "position": None, "variants": {}}
    assert enrollments["welcome"]["state"] == "completed"
    assert (enrollments["loyalty"]["state"], enrollments["loyalty"]["wake_at"]) == \
        ("active", "2026-11-24T12:00:00+00:00")


def test_the_text_reads_as_simulate_shows_a_timeline(journey: Journey) -> None:
    report = inspect(journey.store, "ana", default_zone="UTC")
    [(suppressed_at,)] = journey.store.db.execute("SELECT at FROM suppressions").fetchall()
    # `mauto serve` stamps the suppression with the wall clock (its events with its own)
    paris = ZoneInfo("Europe/Paris")
    suppressed = datetime.fromisoformat(suppressed_at).astimezone(paris)
    [retry] = [item["next_try_at"] for item in report["timeline"] if item.get("status") == "pending"]
    retry_at = datetime.fromisoformat(retry).astimezone(paris)  # jittered
    welcome, cart, loyalty = (enrollment_of(journey.store, workflow, "ana")
                              for workflow in ("welcome", "cart", "loyalty"))
    cart_ = cart.ljust(len(welcome))  # the column as wide as the widest id
    # the outbox numbers ana's and ben's messages in the order a tick met them (by their opaque ids)
    number = dict(journey.store.db.execute("SELECT step, id FROM messages WHERE contact = 'ana'").fetchall())
    assert text(report) == dedent(f"""\
        ana  Ana Lopez · ana@example.com · Europe/Paris
          consent: email no, sms no · suppressed: email (unsubscribed, {suppressed:%a %d %b %Y %H:%M %Z}) · lists: newsletter
          fields: plan=pro
          created Fri 23 Oct 2026 10:00 CEST · updated Sun 25 Oct 2026 14:00 CET

        enrollments
          welcome  v1  {welcome}  entered Sat 24 Oct 2026 10:00 CEST (signed_up) · completed Sat 24 Oct 2026 11:00 CEST: reached the end
          cart     v1  {cart_}  entered Sat 24 Oct 2026 10:30 CEST (cart_abandoned) · converted Sun 25 Oct 2026 13:00 CET: goal order_placed
          loyalty  v1  {loyalty}  entered Sun 25 Oct 2026 13:00 CET (order_placed) · active, waiting until Tue 24 Nov 2026 13:00 CET

        timeline (Europe/Paris)
          Fri 23 Oct 2026 10:00 CEST                     event contact_created  fields={{"email_consent": true, "sms_consent": false, "created_at": "2026-10-23T08:00:00.000000+00:0…
          Sat 24 Oct 2026 10:00 CEST                     event signed_up
          Sat 24 Oct 2026 10:00 CEST  welcome  trigger   enter                  signed_up · v1 · {welcome}
          Sat 24 Oct 2026 10:00 CEST  welcome  hello     email welcome/hello    sent Sat 24 Oct 2026 10:01 CEST · “hello Ana” · message {number['hello']}
          Sat 24 Oct 2026 10:00 CEST  welcome  2         wait                   until Sat 24 Oct 2026 11:00 CEST
          Sat 24 Oct 2026 10:30 CEST                     event cart_abandoned   cart_url=https://shop.example/cart/42
          Sat 24 Oct 2026 10:30 CEST  cart     trigger   enter                  cart_abandoned · v1 · {cart}
          Sat 24 Oct 2026 10:30 CEST  cart     1         wait                   until Sun 25 Oct 2026 09:30 CET
          Sat 24 Oct 2026 11:00 CEST  welcome  tips      email welcome/tips     parked: 550 5.7.1 message refused · “tips Ana” · message {number['tips']}
          Sat 24 Oct 2026 11:00 CEST  welcome  news      email welcome/news     pending, next try {retry_at:%a %d %b %Y %H:%M %Z} (4 attempts so far) · “news Ana” · message {number['news']}
          Sat 24 Oct 2026 11:00 CEST  welcome  end       completed              reached the end
          Sun 25 Oct 2026 09:30 CET   cart     reminder  email cart/reminder    sent Sun 25 Oct 2026 10:00 CET · “reminder Ana” · message {number['reminder']}
          Sun 25 Oct 2026 09:30 CET   cart     clicked   wait                   for email_clicked until Tue 27 Oct 2026 09:30 CET
          Sun 25 Oct 2026 10:02 CET   cart     reminder  opened                 reminder (cart/reminder) (privacy proxy)
          Sun 25 Oct 2026 10:20 CET   cart     reminder  opened                 reminder (cart/reminder)
          Sun 25 Oct 2026 10:21 CET   cart     reminder  clicked                https://shop.example/cart/42 in reminder (cart/reminder)
          Sun 25 Oct 2026 10:21 CET   cart     clicked   event                  email_clicked arrived
          Sun 25 Oct 2026 10:21 CET   cart     4         wait                   until Wed 28 Oct 2026 10:21 CET
          Sun 25 Oct 2026 13:00 CET                      event order_placed     total=89.9
          Sun 25 Oct 2026 13:00 CET   cart     4         goal                   order_placed
          Sun 25 Oct 2026 13:00 CET   cart     4         converted              goal order_placed
          Sun 25 Oct 2026 13:00 CET   loyalty  trigger   enter                  order_placed · v1 · {loyalty}
          Sun 25 Oct 2026 13:00 CET   loyalty  1         wait                   until Tue 24 Nov 2026 13:00 CET
          Sun 25 Oct 2026 14:00 CET   cart     reminder  event unsubscribed     channel=email source=one-click
        """)  # noqa: E501 - the lines as printed


def test_the_json_is_one_stable_document(journey: Journey) -> None:
    report = inspect(journey.store, "ana", default_zone="UTC")
    assert json.loads(json.dumps(report)) == report
    assert list(report) == ["contact", "erased", "zone", "zone_from", "since", "limit", "more", "timeline",
                            "enrollments", "messages"]
    assert report["contact"] | {"updated_at": None, "suppressed": None} == {
        "id": "ana", "email": "ana@example.com", "email_consent": False, "sms_consent": False,
        "created_at": "2026-10-23T08:00:00.000000+00:00", "first_name": "Ana", "last_name": "Lopez",
        "lists": ["newsletter"], "plan": "pro", "timezone": "Europe/Paris", "updated_at": None, "erased_at": None,
        "suppressed": None}
    keys: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for item in report["timeline"]:
        keys[item["kind"]].add(tuple(item))
    common = ("at", "local", "kind")
    assert keys == {kind: {(*common, *names)} for kind, names in {
        "event": ["name", "id", "properties", "message", "workflow", "step", "template"],
        "entered": ["enrollment", "workflow", "version", "step", "why"],
        "message": ["message", "enrollment", "workflow", "version", "step", "channel", "template", "subject",
                    "status", "sent_at", "next_try_at", "attempts", "answer", "detail"],
        "step": ["enrollment", "workflow", "version", "step", "action", "detail", "channel", "template", "extra"],
        "ended": ["enrollment", "workflow", "version", "step", "state", "reason"],
        "opened": ["message", "workflow", "step", "template", "prefetched"],
        "clicked": ["message", "workflow", "step", "template", "url"],
    }.items()}
    assert {tuple(message) for message in report["messages"]} == {(
        "id", "enrollment", "workflow", "version", "step", "channel", "template", "to", "subject", "status", "attempts",
        "created_at", "sent_at", "next_try_at", "answer", "ref", "opened", "opened_prefetched", "clicked")}
    assert {tuple(enrollment) for enrollment in report["enrollments"]} == {(
        "id", "workflow", "version", "state", "entered_at", "why", "ended_at", "reason", "converted_at", "goal_until",
        "wake_at", "position", "variants")}
    wait = report["timeline"][4]
    assert wait | {"enrollment": None} == {
        "at": "2026-10-24T08:00:00+00:00", "local": "2026-10-24T10:00:00+02:00", "kind": "step", "enrollment": None,
        "workflow": "welcome", "version": 1, "step": "2", "action": "wait",
        "detail": "until 2026-10-24T09:00:00+00:00", "channel": None, "template": None,
        "extra": {"until": "2026-10-24T09:00:00+00:00"}}
    assert wait["enrollment"] == enrollment_of(journey.store, "welcome", "ana")


def test_a_contact_without_a_zone_reads_in_the_projects(journey: Journey) -> None:
    report = inspect(journey.store, "ben", default_zone="America/New_York")
    assert (report["zone"], report["zone_from"]) == ("America/New_York", "project")
    assert [brief(item)[1:] for item in report["timeline"]][:4] == [
        ("event", None, None, "contact_created"), ("event", None, None, "signed_up"),
        ("entered", "welcome", "trigger", "signed_up"), ("message", "welcome", "hello", "sent")]
    assert report["timeline"][1]["local"] == "2026-10-24T04:00:00-04:00"
    assert text(report).splitlines()[0] == "ben  Ben · ben@example.com · America/New_York (the project's zone)"


def test_since_and_limit_keep_the_latest_entries_and_say_so(journey: Journey) -> None:
    since = inspect(journey.store, "ana", default_zone="UTC", since=SUNDAY)
    # the reminder was queued at 09:30, before --since: its email_sent event says it went at 10:00
    assert [brief(item) for item in since["timeline"]] == [
        ("2026-10-25T10:00:00+01:00", "event", "cart", "reminder", "email_sent"),
        *[entry for entry in JOURNEY if entry[0] >= "2026-10-25T10"]]
    assert since["more"] is False
    assert [message["step"] for message in since["messages"]] == ["reminder"]  # named by the opens and clicks
    assert [enrollment["workflow"] for enrollment in since["enrollments"]] == ["cart", "loyalty"]
    latest = inspect(journey.store, "ana", default_zone="UTC", limit=4)
    assert [brief(item) for item in latest["timeline"]] == JOURNEY[-4:]
    assert (latest["limit"], latest["more"]) == (4, True)
    lines = text(latest).splitlines()
    assert lines[-6:-4] == ["timeline (Europe/Paris)",
                            "  … earlier entries left out: the latest 4 are shown (--limit, --since)"]
    whole = inspect(journey.store, "ana", default_zone="UTC", limit=len(JOURNEY))
    assert (len(whole["timeline"]), whole["more"]) == (len(JOURNEY), False)
    nothing = inspect(journey.store, "ana", default_zone="UTC", since=SUNDAY + timedelta(days=30))
    assert nothing["timeline"] == [] and nothing["messages"] == []
    assert text(nothing).endswith("timeline (Europe/Paris) since Tue 24 Nov 2026 10:00 CET\n  nothing\n")


def test_step_log_entries_from_before_they_kept_their_enrollment_find_it(journey: Journey, tmp_path: Path,
                                                                         store_url: str | None) -> None:
    expected = inspect(journey.store, "ana", default_zone="UTC")
    with copy_store(journey, tmp_path / "old", store_url) as store:
        with store.transaction() as db:
            assert db.execute("UPDATE step_log SET enrollment = NULL").rowcount > 0
        assert inspect(store, "ana", default_zone="UTC") == expected


def test_an_unknown_contact_is_an_error_naming_it(journey: Journey) -> None:
    with pytest.raises(ContactNotFound) as caught:
        inspect(journey.store, "zoe\x1b[2J", default_zone="UTC")
    assert str(caught.value) == (
        f"{journey.store.shown}: no contact `zoe\\x1b[2J` (an erased contact keeps only an anonymous "
        "`erased-…` id, not linked to its old one)")
    assert caught.value.exit_code == ExitCode.FINDINGS == 1


def test_an_erased_contact_shows_what_remains_anonymised(journey: Journey, tmp_path: Path,
                                                         store_url: str | None) -> None:
    with copy_store(journey, tmp_path / "erased", store_url) as store:
        journey.clock.moment = SUNDAY + timedelta(hours=5)
        anonymous = erase(store, "ana")["anonymous_id"]
        with pytest.raises(ContactNotFound):
            inspect(store, "ana", default_zone="UTC")
        report = inspect(store, anonymous, default_zone="UTC")
    assert report["erased"] is True
    assert report["contact"] == {"id": anonymous, "email_consent": False, "sms_consent": False,
                                 "created_at": "2026-10-23T08:00:00.000000+00:00",
                                 "updated_at": "2026-10-25T14:00:00.000000+00:00",
                                 "erased_at": "2026-10-25T14:00:00.000000+00:00", "suppressed": []}
    assert (report["zone"], report["zone_from"]) == ("UTC", "project")  # her zone went with her fields
    shown = text(report)
    assert shown.startswith(
        f"{anonymous}  erased Sun 25 Oct 2026 14:00 UTC · UTC (the project's zone)\n"
        "  its personal data went with the erasure (fields, addresses, event properties, reasons, subjects); "
        "what remains is anonymous\n\n")
    for personal in ("Ana", "ana@", "shop.example", "cart_url", "refused", "try again"):
        assert personal not in shown
    timeline = report["timeline"]
    # names and times stay, and what the daemon did: entries, ends, messages with their status, without subjects
    assert [item["name"] for item in timeline if item["kind"] == "event"][:4] == \
        ["contact_created", "signed_up", "email_sent", "cart_abandoned"]
    assert all(item["properties"] == {} for item in timeline if item["kind"] == "event")
    assert [(item["step"], item["status"], item["subject"]) for item in timeline if item["kind"] == "message"] == [
        ("hello", "sent", None), ("tips", "parked", None), ("news", "cancelled", None), ("reminder", "sent", None)]
    assert [(item["workflow"], item["state"], item["reason"]) for item in timeline if item["kind"] == "ended"] == [
        ("welcome", "completed", "completed (the reason went with the erased contact)"),
        ("cart", "converted", "converted (the reason went with the erased contact)"),
        ("loyalty", "exited", "the contact was erased")]  # in flight: ended by the erasure
    assert [item["prefetched"] for item in timeline if item["kind"] == "opened"] == [False, False]
    assert all(item["detail"] == "" for item in timeline if item["kind"] == "step")
    assert timeline[-1] == {"at": "2026-10-25T14:00:00+00:00", "local": "2026-10-25T14:00:00+00:00",
                            "kind": "erased"}
    assert shown.endswith("  Sun 25 Oct 2026 14:00 UTC" + " " * 21 + "erased" + " " * 17 + "personal data removed\n")


@pytest.mark.sqlite_only("SQLite's own query plans (EXPLAIN QUERY PLAN over the statements traced)")
def test_every_query_reads_one_contact_through_an_index(journey: Journey) -> None:
    statements: list[str] = []
    connection = journey.store.db.conn
    connection.set_trace_callback(statements.append)
    try:
        inspect(journey.store, "ana", default_zone="UTC", since=SUNDAY, limit=5)
        inspect(journey.store, "ana", default_zone="UTC")
    finally:
        connection.set_trace_callback(None)
    queries = [sql for sql in statements if sql.startswith("SELECT")]
    assert len(queries) >= 10
    tables = set()
    for sql in queries:
        plan = [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql)]
        assert not [step for step in plan if step.startswith("SCAN")], (sql, plan)
        tables |= {step.split()[1] for step in plan if step.startswith("SEARCH")}
    assert tables == {"contacts", "suppressions", "events", "step_log", "messages", "m", "failures", "enrollments"}


def test_what_ticks_could_not_handle_shows_where_it_happened(journey: Journey, tmp_path: Path,
                                                             store_url: str | None) -> None:
    with copy_store(journey, tmp_path / "failures", store_url) as store:
        with store.transaction() as db:
            at = "2026-10-25T10:00:00.000000+00:00"
            rows = [(at, "2026-10-25T09:45:00.000000+00:00", "event", "12", "ana", None,
                     "event order_placed at 2026-10-25T09:45:00+00:00: `total` is not a number"),
                    (at, None, "enrollment", enrollment_of(store, "cart", "ana"), "ana", "cart", "said by its end"),
                    (at, None, "trigger", None, "ben", "cart", "Ben's, not Ana's")]
            db.conn.executemany("INSERT INTO failures (at, moment, kind, ref, contact, workflow, reason) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        report = inspect(store, "ana", default_zone="UTC")
    failures = [item for item in report["timeline"] if item["kind"] == "failure"]
    assert failures == [{"at": "2026-10-25T09:45:00+00:00", "local": "2026-10-25T10:45:00+01:00", "kind": "failure",
                         "what": "event", "ref": "12", "workflow": None,
                         "reason": "event order_placed at 2026-10-25T09:45:00+00:00: `total` is not a number"}]
    # after the click's wait (10:21), before the order (13:00)
    assert report["timeline"].index(failures[0]) == [entry[0] for entry in JOURNEY].index("2026-10-25T13:00:00+01:00")
    assert ("  Sun 25 Oct 2026 10:45 CET                      event failed           event order_placed at "
            "Sun 25 Oct 2026 10:45 CET: `total` is not a number") in text(report).splitlines()


def test_contact_data_cannot_forge_a_line_or_move_the_cursor(journey: Journey, tmp_path: Path,
                                                             store_url: str | None) -> None:
    with copy_store(journey, tmp_path / "hostile", store_url) as store:
        with store.transaction() as db:
            [(fields,)] = db.execute("SELECT fields FROM contacts WHERE id = 'ana'").fetchall()
            forged = {"first_name": "Ana\n  Sat 24 Oct 2026 10:00 CEST  forged", "plan": "pro\x1b[2J"}
            db.execute("UPDATE contacts SET fields = ? WHERE id = 'ana'",
                       [json.dumps({**json.loads(fields), **forged})])
            [(seq, properties)] = db.execute("SELECT seq, properties FROM events WHERE contact = 'ana' "
                                             "AND name = 'cart_abandoned'").fetchall()
            db.execute("UPDATE events SET properties = ? WHERE seq = ?",
                       [json.dumps({**json.loads(properties), "cart_url": "https://x.example/\r\nforged"}), seq])
        shown = text(inspect(store, "ana", default_zone="UTC"))
    lines = shown.splitlines()
    assert "\x1b" not in shown and "\r" not in shown
    assert [line for line in lines if "forged" in line] == [
        "ana  Ana\\n  Sat 24 Oct 2026 10:00 CEST  forged Lopez · ana@example.com · Europe/Paris",
        "  Sat 24 Oct 2026 10:30 CEST" + " " * 21 + "event cart_abandoned   cart_url=https://x.example/\\r\\nforged"]
    assert "  fields: plan=pro\\x1b[2J" in lines
