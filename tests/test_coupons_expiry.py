"""Coupons that end and get used: `assign_coupon: {valid_for}` stores the code's expiry and gives it to
templates (`vars.<as>_expires_at`); an event configured in mauto.yaml (`coupons: {POOL: {redeemed_by: {event,
property}}}`) marks the code it names redeemed; `mauto coupons` counts each pool's codes and warns when one
runs low.

Before: `valid_for` was an unknown key, the store never wrote `expires_at`/`redeemed_at`/`redeemed_by`, an
`order_placed` with the code changed nothing, and there was no report.
"""
from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mauto.config import BUILTIN_FIELDS, CouponPool, load_project
from mauto.engine.records import ContactState, Event
from mauto.errors import MautoError
from mauto.store import Store, open_store
from mauto.store.contacts import import_contacts
from mauto.store.coupons import coupon_report, load_coupons, redeem_coupons, take_coupon
from mauto.store.events import ingest_events
from mauto.workflow.loader import parse
from mauto.workflow.model import build
from mauto.workflow.schema import validate
from tests.engine.helpers import PARIS, Run, workflow

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=PARIS)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ORDERS = {"redeemed_by": {"event": "order_placed", "property": "coupon"}}
# the store's tests run on SQLite and PostgreSQL; a PostgreSQL store's releases go to tmp_path (cli_environment)
pytestmark = [pytest.mark.both_stores, pytest.mark.usefixtures("cli_environment")]


def stored(store: Store, pool: str | None = None) -> dict[str, dict]:
    sql = "SELECT code, assigned_to, assigned_at, expires_at, redeemed_at, redeemed_by FROM coupons"
    rows = store.db.execute(sql + (" WHERE pool = ?" if pool else "") + " ORDER BY rowid", [pool] if pool else [])
    return {code: {"to": to, "assigned_at": assigned, "expires_at": expires, "redeemed_at": redeemed, "by": by}
            for code, to, assigned, expires, redeemed, by in rows}


# --- the engine: valid_for ----------------------------------------------------------------------------

def test_valid_for_gives_the_code_its_expiry_in_vars_and_in_the_log():
    run = Run(workflow("""
        steps:
          - id: code
            assign_coupon: {pool: WELCOME10, as: promo, valid_for: 7d}
          - id: card
            email: t/hi
        """))
    run.enroll(T0)
    expires = "2026-12-01T08:00:00+00:00"  # 7 × 24 h after 09:00 in Paris, in UTC
    assert run.enrollment.pending == {"kind": "coupon", "pool": "WELCOME10", "as": "promo", "at": T0.isoformat(),
                                      "expires_at": expires}
    assert run.effects[0].data == {"pool": "WELCOME10", "as": "promo", "expires_at": expires}
    run.resume("WELC10-S8E4LM", T0)
    # the code stays the string it always was; the expiry is beside it
    assert run.enrollment.vars == {"promo": "WELC10-S8E4LM", "promo_expires_at": expires}
    [entry] = run.entries("coupon")
    assert entry.detail == f"WELCOME10 → vars.promo, valid until {expires}"
    assert entry.extra == {"code": "WELC10-S8E4LM", "expires_at": expires}
    assert run.effects[-1].data["vars"] == {"promo": "WELC10-S8E4LM", "promo_expires_at": expires}


def test_valid_for_is_a_duration_the_schema_checks():
    source = ("id: w\nversion: 1\nname: W\ntrigger: {event: go}\nsteps:\n"
              "  - assign_coupon: {pool: P, as: c, valid_for: 7 days}\n")
    [problem] = validate(parse(source, "w.yaml"), "workflow")
    assert (problem.line, problem.col, problem.rule) == (6, 48, "duration")
    assert "7 days" in problem.message
    ok = build(parse(source.replace("7 days", "P7D"), "w.yaml"))
    assert ok.steps[0].value["valid_for"] == "P7D"


CARD = ("---\nsubject: Your card\n---\n<p>Code {{ vars.promo }}, valid until {{ vars.promo_expires_at | "
        "date('%d %B %Y %H:%M') }}.</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>\n")


def _project(root: Path, coupons: str = "", card: str = CARD) -> Path:
    files = {
        "mauto.yaml": "timezone: Europe/Paris\nsender: {email: \"Shop <shop@shop.example>\"}\n"
                      "unsubscribe_url: \"https://shop.example/u/{{ token }}\"\n"
                      "contact_fields: {first_name: string}\n"
                      "events:\n  order_placed: {total: number, coupon: string}\n  joined: {}\n" + coupons,
        "templates/card.email.html": card,
        "workflows/card.yaml": textwrap.dedent("""\
            id: card
            version: 1
            name: Card
            trigger: {event: joined}
            steps:
              - assign_coupon: {pool: WELCOME10, as: promo, valid_for: 7d}
              - id: card
                email: card
            """),
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "mauto.yaml"


def test_a_simulation_shows_the_expiry_in_the_contacts_zone(tmp_path: Path):
    from mauto.simulate import Samples, Simulation

    project = load_project(_project(tmp_path), display_root=tmp_path)
    flow = build(parse((tmp_path / "workflows/card.yaml").read_text(), "workflows/card.yaml"))
    stockholm = ContactState("jonas", {"email": "jonas@mail.example", "email_consent": True,
                                       "timezone": "Europe/Stockholm"})
    new_york = ContactState("maya", {"email": "maya@mail.example", "email_consent": True,
                                     "timezone": "America/New_York"})
    joined = T0 + timedelta(hours=1)  # 10:00 in Paris and Stockholm, 04:00 in New York: inside quiet hours? none
    result = Simulation(project, [flow], Samples([stockholm, new_york],
                                                 [Event("jonas", "joined", joined), Event("maya", "joined", joined)],
                                                 {"WELCOME10": ["W-1", "W-2"]}, {}),
                        T0, T0 + timedelta(days=2), [flow]).run()
    bodies = {message.contact: message.html for message in result.messages}
    assert "Code W-1, valid until 01 December 2026 10:00." in bodies["jonas"]
    assert "Code W-2, valid until 01 December 2026 04:00." in bodies["maya"]
    [entry, _] = [entry for entry in result.timeline if entry.kind == "coupon"]
    assert str(entry.detail) == "WELCOME10 → vars.promo, valid until 2026-12-01T09:00:00+00:00"


# --- the store: expiry, redemption ---------------------------------------------------------------------

def _location(tmp_path: Path, store_kind: str, request: pytest.FixtureRequest) -> str | Path:
    """`mauto.db` in tmp_path, or a fresh PostgreSQL database (tests/conftest.py's `store_kind`)."""
    return request.getfixturevalue("pg_cluster").url() if store_kind == "postgresql" else tmp_path / "mauto.db"


@pytest.fixture
def store(tmp_path: Path, store_kind: str, request: pytest.FixtureRequest):
    with open_store(_location(tmp_path, store_kind, request), lambda: NOW, create=True, timeout=0.5) as opened:
        people = tmp_path / "people.jsonl"
        people.write_text("".join(json.dumps({"id": who, "email": f"{who}@example.com"}) + "\n"
                                  for who in ("ana", "bob", "cleo")), encoding="utf-8")
        assert import_contacts(opened, people, fields=BUILTIN_FIELDS, zone="UTC").ok
        codes = tmp_path / "codes.txt"
        codes.write_text("".join(f"W-{number}\n" for number in range(1, 11)), encoding="utf-8")
        load_coupons(opened, "WELCOME10", codes)
        yield opened


def ingest(store: Store, tmp_path: Path, *rows: dict) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    assert ingest_events(store, path, catalogue=None, zone="UTC").ok


def test_a_taken_code_keeps_its_expiry(store: Store):
    assert take_coupon(store, "WELCOME10", "ana", NOW, NOW + timedelta(days=7)) == "W-1"
    assert take_coupon(store, "WELCOME10", "bob", NOW) == "W-2"
    rows = stored(store)
    assert rows["W-1"] == {"to": "ana", "assigned_at": "2026-11-23T12:00:00.000000+00:00",
                           "expires_at": "2026-11-30T12:00:00.000000+00:00", "redeemed_at": None, "by": None}
    assert rows["W-2"]["expires_at"] is None  # no valid_for: good for ever


def test_a_configured_event_naming_an_assigned_code_redeems_it(store: Store, tmp_path: Path):
    pools = {"WELCOME10": CouponPool("order_placed", "coupon")}
    take_coupon(store, "WELCOME10", "ana", NOW)
    take_coupon(store, "WELCOME10", "bob", NOW)
    ingest(store, tmp_path,
           {"contact": "ana", "event": "order_placed", "at": "2026-11-23T11:00:00Z", "coupon": "W-1"},  # before
           {"contact": "cleo", "event": "order_placed", "at": "2026-11-24T10:00:00Z", "coupon": "W-3"},  # not given
           {"contact": "ana", "event": "page_viewed", "at": "2026-11-24T10:00:00Z", "coupon": "W-1"},  # other event
           {"contact": "ana", "event": "order_placed", "at": "2026-11-24T10:00:00Z", "coupon": " W-1 ", "total": 9},
           {"contact": "ana", "event": "order_placed", "at": "2026-11-25T10:00:00Z", "coupon": "W-1"})  # again
    # a row written by hand whose properties are not JSON must not stop the others
    with store.transaction() as db:
        db.execute("INSERT INTO events (contact, name, at, properties, received_at) VALUES "
                   "('bob', 'order_placed', '2026-11-24T11:00:00.000000+00:00', '{oops', '2026-11-24')")
    seq = store.db.execute("SELECT seq FROM events WHERE name = 'order_placed' AND at LIKE '2026-11-24T10%' "
                           "AND contact = 'ana'").fetchone()[0]
    assert redeem_coupons(store, pools) == 1
    rows = stored(store)
    assert rows["W-1"]["redeemed_at"] == "2026-11-24T10:00:00.000000+00:00" and rows["W-1"]["by"] == seq
    assert rows["W-2"]["redeemed_at"] is None and rows["W-3"]["redeemed_at"] is None
    assert redeem_coupons(store, pools) == 0  # each event is read once: nothing changes
    # bob's code is used by a friend, later: the code is redeemed, whoever placed the order
    ingest(store, tmp_path, {"contact": "cleo", "event": "order_placed", "at": "2026-11-26T10:00:00Z",
                             "coupon": "W-2", "id": "o-9"})
    assert redeem_coupons(store, pools) == 1
    assert stored(store)["W-2"]["redeemed_at"] == "2026-11-26T10:00:00.000000+00:00"
    assert redeem_coupons(store, {"WELCOME10": CouponPool()}) == 0  # no redeemed_by: nothing read


def test_a_pool_given_redeemed_by_later_reads_the_events_stored_before(store: Store, tmp_path: Path):
    take_coupon(store, "WELCOME10", "ana", NOW)
    ingest(store, tmp_path, {"contact": "ana", "event": "order_placed", "at": "2026-11-24T10:00:00Z",
                             "code": "W-1"})
    assert redeem_coupons(store, {"WELCOME10": CouponPool("order_placed", "coupon")}) == 0
    assert redeem_coupons(store, {"OTHER": CouponPool("order_placed", "code")}) == 0
    assert redeem_coupons(store, {"WELCOME10": CouponPool("order_placed", "code")}) == 0  # watermark is per pool
    # (a pool's watermark does not know its property changed: name the pool anew, or it reads on from there)
    assert stored(store)["W-1"]["redeemed_at"] is None


def test_the_report_counts_each_code_once_and_warns_when_a_pool_runs_low(store: Store, tmp_path: Path):
    for who, expiry in (("ana", 7), ("bob", 1), ("cleo", 1)):
        take_coupon(store, "WELCOME10", who, NOW - timedelta(days=2), NOW - timedelta(days=2) + timedelta(days=expiry))
    take_coupon(store, "WELCOME10", "ana", NOW - timedelta(days=30))  # outside the 7 days the pace is read over
    ingest(store, tmp_path, {"contact": "bob", "event": "order_placed", "at": "2026-11-21T13:00:00Z",
                             "coupon": "W-2"})  # redeemed in time
    pools = {"WELCOME10": CouponPool("order_placed", "coupon", low_below=7), "EMPTY": CouponPool()}
    report = coupon_report(store, pools, NOW, lambda pool, total: (pools.get(pool) or CouponPool()).low_at(total))
    assert [pool.to_dict() for pool in report] == [
        {"pool": "EMPTY", "total": 0, "assigned": 0, "open": 0, "redeemed": 0, "expired": 0, "left": 0,
         "low": True, "low_below": 0, "days_left": None},
        {"pool": "WELCOME10", "total": 10, "assigned": 4, "open": 2, "redeemed": 1, "expired": 1, "left": 6,
         "low": True, "low_below": 7, "days_left": 14},
    ]
    assert [pool.warning() for pool in report] == [
        "pool EMPTY has no codes: load some with `mauto coupons load EMPTY FILE`",
        "pool WELCOME10 runs low: 6 codes left of 10 (low below 7); at the pace of the last 7 days they last "
        "about 14 days; load more with `mauto coupons load WELCOME10 FILE`",
    ]
    assert stored(store)["W-2"]["redeemed_at"] == "2026-11-21T13:00:00.000000+00:00"  # the report redeemed it
    # the default: low below 10% of the pool
    report = coupon_report(store, {}, NOW, lambda pool, total: CouponPool().low_at(total))
    assert [(pool.pool, pool.low_at, pool.low, pool.warning()) for pool in report] == [
        ("WELCOME10", 1, False, None)]


# --- mauto.yaml: coupons -------------------------------------------------------------------------------

@pytest.mark.parametrize(("settings", "where", "message"), [
    ("coupons:\n  WELCOME10:\n    redeemed_by: {event: order_placed, property: code}\n", "10:50",
     "coupons.WELCOME10.redeemed_by.property: `order_placed` has no property `code` in the `events:` catalogue; "
     "declare it there (`code: string`)"),
    ("coupons:\n  WELCOME10:\n    redeemed_by: {event: order_shipped, property: coupon}\n", "10:26",
     "coupons.WELCOME10.redeemed_by.event: `order_shipped` is not in the `events:` catalogue of mauto.yaml"),
    ("coupons:\n  WELCOME10:\n    redeemed_by: {event: order_placed}\n", "10:18",
     "coupons.WELCOME10.redeemed_by: needs `property`: the event that redeems a code, and the property holding "
     "the code, e.g. {event: order_placed, property: coupon}"),
    ("coupons:\n  WELCOME10:\n    low_below: 120%\n", "10:16",
     "coupons.WELCOME10.low_below: `low_below` must be a number of codes (100) or a share of the pool's codes "
     "(\"10%\", at most 100%)"),
    ("coupons:\n  WELCOME10:\n    redeem_by: {event: order_placed, property: coupon}\n", "10:5",
     "coupons.WELCOME10.redeem_by: unknown key `redeem_by`; did you mean `redeemed_by`?"),
])
def test_coupon_settings_are_checked_at_their_place(tmp_path: Path, settings: str, where: str, message: str):
    project = load_project(_project(tmp_path, settings), display_root=tmp_path)
    with pytest.raises(MautoError) as raised:
        project.coupons  # noqa: B018
    assert str(raised.value) == f"mauto.yaml:{where}: {message}"


def test_coupon_settings_read(tmp_path: Path):
    project = load_project(_project(tmp_path, "coupons:\n  WELCOME10:\n    redeemed_by: {event: order_placed, "
                                              "property: coupon}\n    low_below: 5%\n  CART10:\n    low_below: 50\n"
                                              "  BARE:\n"), display_root=tmp_path)
    assert project.coupons == {"WELCOME10": CouponPool("order_placed", "coupon", low_percent=5.0),
                               "CART10": CouponPool(low_below=50), "BARE": CouponPool()}
    assert project.coupon_pool("NONE") == CouponPool()
    assert [CouponPool().low_at(total) for total in (0, 9, 10, 23, 1000)] == [0, 1, 1, 3, 100]
    assert CouponPool(low_percent=5.0).low_at(1000) == 50 and CouponPool(low_below=50).low_at(1000) == 50


def test_the_project_schema_takes_the_coupons_settings(tmp_path: Path):
    document = parse((_project(tmp_path, "coupons:\n  WELCOME10:\n    redeemed_by: {event: order_placed, "
                                         "property: coupon}\n    low_below: \"10%\"\n  CART10: {low_below: 3}\n"
                      )).read_text(), "mauto.yaml")
    assert validate(document, "project") == []
    bad = parse(document.text.replace("low_below: 3", "low_below: -3"), "mauto.yaml")
    assert [(problem.line, problem.col) for problem in validate(bad, "project")] == [(12, 23)]


# --- the daemon stores the expiry (through the driver's answers port) ------------------------------------

def test_a_tick_stores_the_expiry_with_the_code(tmp_path: Path, store_kind: str, request: pytest.FixtureRequest):
    from mauto.daemon.tick import tick
    from mauto.deploy import deploy

    # (the template shows the code alone: lint's vars-undefined learns `<as>_expires_at` separately)
    plain = CARD.replace(", valid until {{ vars.promo_expires_at | date('%d %B %Y %H:%M') }}", "")
    project = load_project(_project(tmp_path, card=plain), display_root=tmp_path)
    start = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    with open_store(_location(tmp_path, store_kind, request), lambda: start, create=True, timeout=2.0) as store:
        deploy(project, store, start - timedelta(minutes=1))
        people = tmp_path / "people.jsonl"
        people.write_text(json.dumps({"id": "ana", "email": "ana@example.com", "email_consent": True}) + "\n",
                          encoding="utf-8")
        assert import_contacts(store, people, fields=project.contact_fields, zone=project.timezone).ok
        codes = tmp_path / "codes.txt"
        codes.write_text("W-1\nW-2\n", encoding="utf-8")
        load_coupons(store, "WELCOME10", codes)
        ingest(store, tmp_path, {"contact": "ana", "event": "joined", "at": "2026-11-24T09:00:00Z"})
        tick(project, store, start, {}, send=False)
        assert stored(store)["W-1"]["expires_at"] == "2026-12-01T09:00:00.000000+00:00"
