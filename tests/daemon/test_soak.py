"""The poison-input soak (issue 10): a store holding 1,000 good contacts and 50 hostile ones (odd addresses,
numbers, names, dates, property values, drawn with hypothesis), all in the sample workflows, ticked daily
through a month against a real SMTP server and a real SMS endpoint on 127.0.0.1.

- every good contact gets exactly what `mauto simulate` says it gets (the same steps at the same moments,
  the same emails received by the server);
- every hostile contact is refused at the import with its line and reason, or is sent to, parked, cancelled
  or failed with a reason; nothing is left half-done;
- no tick ends in an exception (what `run --once` would report as an internal error).

Half of the hostile contacts come through `contacts import --skip-invalid` (most are refused there); the
other half are written straight into the store, as an older mauto or a hand-made script might have left
them, with their events: what the tick itself must survive.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mauto.channels import build_transports
from mauto.channels.webhook import call_webhook
from mauto.config import load_project
from mauto.daemon.tick import tick
from mauto.deploy import deploy
from mauto.engine.records import jsonable
from mauto.simulate import Samples, Simulation, load_contacts, load_events, load_mapping
from mauto.store import Store
from mauto.store.contacts import import_contacts
from mauto.store.coupons import load_coupons
from mauto.store.events import ingest_events
from mauto.store.sqlite import stamp
from mauto.workflow.loader import load
from mauto.workflow.model import build
from tests.daemon.conftest import DEPLOYED, START, copy_project
from tests.servers import HttpServer, SmtpServer

COPIES = 77  # 13 sample contacts x 77 = 1,001 good contacts
HOSTILE = 50
HORIZON = timedelta(days=30)

# What real customer lists hold, and what a hostile user types. Each hostile contact takes the i-th of each
# list (so every value is met whatever hypothesis draws) and hypothesis adds noise around it.
EMAILS = ["josé@example.com", "a\u2028b@example.com", "user@bücher.example", "Ann@Example.COM",
          "two@example.com, three@example.com", "crlf@example.com\r\nBcc: evil@example.com", "a" * 300 + "@x.com",
          "nul\x00@example.com", "no-at-sign", "", "ünï@ünï.example", "<a@example.com>"]
PHONES = ["+33 6 12 34 56 78", "0612345678", "0033612345678", "+1", "phone", "+999999999999999999999",
          "06\u202812", "\x0b+33612345678", "", "+44 20 7946 0958"]
NAMES = ["Z" * 2000, "Ann\x0bVT\x0cFF\x00NUL", "\u202eevil\u202c", "Bcc: x\r\nTo: y", "{{ 7 * 7 }}",
         "<script>alert(1)</script>", "\x1b[31mred", "😀" * 50, "\udcff"[:0] + "x" * 998]
DATES = ["9999-12-31", "0001-01-01", "2026-02-30", 1e20, "1000-01-01", "8999-12-31", "not a date", [1, 2]]
ZONES = ["Mars/Olympus", "../../etc/passwd", "", "Europe/Paris", "UTC\x00"]
NUMBERS = [10**30, math.nan, math.inf, -10**19, "12", 1e308]


def hostile_contact(index: int) -> st.SearchStrategy[dict[str, Any]]:
    noise = st.text(min_size=0, max_size=30)
    return st.fixed_dictionaries({
        "id": st.sampled_from([f"h{index:02}", f"h{index:02} ☃", f"h{index:02}-" + "x" * 280]),
        "email": st.just(EMAILS[index % len(EMAILS)]) | noise.map(lambda text: f"{text}@example.com"),
        "phone": st.just(PHONES[index % len(PHONES)]) | noise,
        "first_name": st.just(NAMES[index % len(NAMES)]) | noise,
        "birthday": st.just(DATES[index % len(DATES)]),
        "timezone": st.just(ZONES[index % len(ZONES)]),
        "score": st.just(NUMBERS[index % len(NUMBERS)]) | st.integers(),
        "lifecycle": st.sampled_from(["customer", "lead", "alien", None]),
        "email_consent": st.booleans(),
        "sms_consent": st.booleans(),
        "cart_value": st.sampled_from([math.nan, 1e308, -1, "lots", 10**25, 19.99]),
    })


HOSTILES = st.tuples(*[hostile_contact(index) for index in range(HOSTILE)])


def _sample_data(root: Path, project):
    contacts = load_contacts(root / "samples" / "contacts.yaml", project)
    events = load_events(root / "samples" / "events.yaml", project, START, {contact.id for contact in contacts})
    return contacts, events


def _good(root: Path, project) -> tuple[list, list, list[dict], list[dict]]:
    """1,001 good contacts and their events: the sample's, copied under new ids (g001-c01 ...)."""
    contacts, events = _sample_data(root, project)
    good_contacts, good_events, contact_rows, event_rows = [], [], [], []
    for copy in range(COPIES):
        for contact in contacts:
            new_id = f"g{copy:03}-{contact.id}"
            fields = dict(contact.fields)
            if fields.get("email"):
                fields["email"] = f"{new_id}@mail.example"
            good_contacts.append(type(contact)(new_id, fields))
            contact_rows.append({"id": new_id, **jsonable(fields)})
        for event in events:
            new_id = f"g{copy:03}-{event.contact}"
            good_events.append(type(event)(new_id, event.name, event.at, dict(event.properties),
                                           f"g{copy:03}-{event.id}" if event.id else None))
            row = {"contact": new_id, "event": event.name, "at": event.at.isoformat(), **jsonable(event.properties)}
            if event.id:
                row["id"] = f"g{copy:03}-{event.id}"
            event_rows.append(row)
    return good_contacts, good_events, contact_rows, event_rows


def _pools(root: Path) -> dict[str, list[str]]:
    sample = load_mapping(root / "samples" / "coupons.yaml", "coupons")
    return {pool: [f"{pool}-{number:06}" for number in range(4000)] for pool in sample}


def _configure(root: Path, smtp: SmtpServer, http: HttpServer) -> None:
    text = (root / "mauto.yaml").read_text(encoding="utf-8")
    head, _, rest = text.partition("channels:")
    _, _, tail = rest.partition("limits:")
    (root / "mauto.yaml").write_text(
        head + "channels:\n"
        f"  email: {{transport: smtp, host: 127.0.0.1, port: {smtp.port}, timeout: 5s}}\n"
        f"  sms: {{transport: http, url: \"{http.url('/sms')}\", token_env: SOAK_SMS_TOKEN}}\n\n"
        "limits:" + tail, encoding="utf-8")


def _hostile_store_rows(store: Store, hostiles: tuple[dict, ...], events: list) -> None:
    """The odd-numbered hostile contacts written straight into the store, with the events of sample contact
    c02 (an abandoned cart, an order): values no import lets in today."""
    db = store.db
    pattern = [event for event in events if event.contact in ("c02", "c03")]
    with store.transaction():
        for index, contact in enumerate(hostiles):
            if index % 2 == 0:
                continue
            extra = {key: contact[key] for key in ("first_name", "birthday", "timezone", "score", "lifecycle")}
            db.execute("INSERT OR IGNORE INTO contacts (id, email, phone, email_consent, sms_consent, fields, "
                       "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       [contact["id"], contact["email"], contact["phone"], int(contact["email_consent"]),
                        int(contact["sms_consent"]), json.dumps(extra, ensure_ascii=False), stamp(DEPLOYED),
                        stamp(DEPLOYED)])
            for event in pattern:
                properties = dict(jsonable(event.properties))
                if "cart_value" in properties:
                    properties["cart_value"] = contact["cart_value"]
                db.execute("INSERT INTO events (contact, name, at, properties, received_at) VALUES (?, ?, ?, ?, ?)",
                           [contact["id"], event.name, stamp(event.at), json.dumps(properties), stamp(DEPLOYED)])


@settings(max_examples=1, deadline=None, database=None, phases=[Phase.generate], derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(hostiles=HOSTILES)
def test_a_month_of_ticks_with_hostile_contacts_among_good_ones(tmp_path_factory, hostiles) -> None:
    root = copy_project(tmp_path_factory.mktemp("soak"))
    with SmtpServer() as smtp, HttpServer() as http:
        http.respond("/sms", 200, {"id": "sms-1"})
        hooks = load_mapping(root / "samples" / "webhooks.yaml", "webhooks")
        for url, answer in hooks.items():
            http.respond(urlsplit(url).path, 200, answer)
        _configure(root, smtp, http)
        project = load_project(root / "mauto.yaml")
        good_contacts, good_events, contact_rows, event_rows = _good(root, project)
        pools = _pools(root)

        # What the simulation says the good contacts get.
        every = [build(load(path, str(path))) for path in sorted((root / "workflows").glob("*.yaml"))]
        simulated = Simulation(project, every, Samples(good_contacts, good_events, pools, hooks), START,
                               START + HORIZON, every).run()
        expected_steps = sorted((stamp(e.at), e.contact, e.workflow, e.step, e.kind) for e in simulated.timeline)
        expected_mail = Counter(m.to for m in simulated.messages if m.channel == "email")

        # The store: deployed, the good contacts and the hostile ones in, their events, the coupon pools.
        store = Store(root / "mauto.db", lambda: DEPLOYED, create=True, timeout=5.0)
        deploy(project, store, DEPLOYED)
        contacts_file = root / "contacts.jsonl"
        hostile_rows = [row for index, row in enumerate(hostiles) if index % 2 == 0]
        with contacts_file.open("w", encoding="utf-8") as out:
            for row in contact_rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            for row in hostile_rows:
                fields = {key: value for key, value in row.items() if key != "cart_value"}
                out.write(json.dumps(fields, ensure_ascii=False) + "\n")  # NaN written as NaN: refused
        rejects = root / "rejects.jsonl"
        imported = import_contacts(store, contacts_file, fields=project.contact_fields, zone=project.timezone,
                                   skip_invalid=True, rejects=rejects)
        assert imported.committed
        refused = {json.loads(line).get("id") for line in rejects.read_text(encoding="utf-8").split("\n") if line}
        assert all(json.loads(line)["_error"] for line in rejects.read_text(encoding="utf-8").split("\n") if line)
        assert not any(str(contact_id).startswith("g") for contact_id in refused), refused  # no good one refused
        events_file = root / "events.jsonl"
        events_file.write_text("".join(json.dumps(row) + "\n" for row in event_rows), encoding="utf-8")
        ingested = ingest_events(store, events_file, catalogue=project.events, zone=project.timezone)
        assert ingested.ok, ingested.to_dict()
        _hostile_store_rows(store, hostiles, _sample_data(root, project)[1])
        for pool, codes in pools.items():
            (root / f"{pool}.txt").write_text("\n".join(codes) + "\n", encoding="utf-8")
            load_coupons(store, pool, root / f"{pool}.txt")

        def call(request: dict, key: str):
            return call_webhook(dict(request, url=http.url(urlsplit(request["url"]).path)), key)

        transports = build_transports(project, {"SOAK_SMS_TOKEN": "t0k3n"})
        end = START + HORIZON - timedelta(microseconds=1)
        moment, reports = START, []
        while moment < end:  # daily, as a cron line would: an exception here is the test's failure
            reports.append(tick(project, store, moment, transports, call=call))
            moment += timedelta(days=1)
        reports.append(tick(project, store, end, transports, call=call))

        db = store.db
        hostile_ids = {row[0] for row in db.execute("SELECT id FROM contacts WHERE id NOT LIKE 'g%'")}
        assert len(hostile_ids) >= HOSTILE // 2  # the raw half at least: the soak proves something

        # Every good contact: exactly what the simulation says, at the same moments.
        steps = sorted(tuple(row) for row in db.execute(
            "SELECT at, contact, workflow, step, kind FROM step_log WHERE contact LIKE 'g%'"))
        assert steps == expected_steps
        received = Counter(to for message in smtp.messages for to in message.rcpt_tos
                           if to.endswith("@mail.example"))
        assert received == expected_mail

        # Every hostile contact: sent, parked, cancelled or failed, each with a reason; nothing half-done.
        for status, answer, contact in db.execute("SELECT status, answer, contact FROM messages"):
            assert status in ("sent", "parked", "cancelled"), (contact, status, answer)
            assert status == "sent" or answer, (contact, status)
        for contact, reason in db.execute("SELECT contact, reason FROM enrollments WHERE state = 'failed'"):
            assert reason, contact
        assert all(reason for (reason,) in db.execute("SELECT reason FROM failures"))
        decided = {row[0] for row in db.execute("SELECT contact FROM step_log UNION SELECT contact FROM failures")}
        assert hostile_ids <= decided, hostile_ids - decided
        assert sum(report.failed + report.errors + report.parked + report.cancelled for report in reports) > 0
        # A contact's date that is no date is said once, not again on every tick of the month.
        repeated = [row for row in db.execute("SELECT contact, workflow, reason, count(*) FROM failures GROUP BY "
                                               "contact, workflow, reason HAVING count(*) > 1")]
        assert repeated == []
        assert any("holds 1e+20, not a date" in reason for (reason,) in db.execute("SELECT reason FROM failures"))
        store.close()
