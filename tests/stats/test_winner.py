"""A split that picks its winner: the daemon decides at midnight UTC from what happened before it, keeps and logs
the decision, sends every later entry to the winner, and `mauto simulate` reproduces it contact by contact.

The world: 400 sign-ups a day for three days; variant a converts 5% of its contacts, b 25% (who converts is
known from the split's own hash, `variant_for`, as the world would be). By the first midnight b is far ahead:
decided then, days 2 and 3 all go to b."""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mauto.cli import app
from mauto.config import load_project
from mauto.daemon.tick import tick
from mauto.deploy import deploy
from mauto.engine.interpreter import variant_for
from mauto.simulate.run import simulate
from mauto.stats import query
from mauto.store import Store, open_store
from mauto.store.contacts import import_contacts
from mauto.store.events import ingest_events
from tests.daemon.harness import write
from tests.stats.conftest import store_location

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
WORKFLOW = """\
id: promo
version: 1
name: Promo
category: transactional
trigger: {event: signed_up}
goal: {event: purchased, within: 3d}
steps:
  - id: offer
    split:
      winner: {confidence: 0.95, min_contacts: 100}
      variants:
        a: {weight: 50, steps: [{score: 1}]}
        b: {weight: 50, steps: [{score: 2}]}
  - wait: 1d
"""


def _world() -> tuple[list[dict], list[dict]]:
    contacts, events = [], []
    for number in range(1200):
        contact = f"p{number:04d}"
        contacts.append({"id": contact, "email": f"{contact}@example.com"})
        signed = T0 + timedelta(days=number // 400, seconds=(number % 400) * 60)  # 08:00 to 14:40 each day
        events.append({"contact": contact, "event": "signed_up", "at": signed.isoformat()})
        variant = variant_for("promo", "offer", contact, {"a": 50, "b": 50})
        if number % (4 if variant == "b" else 20) == 0:  # b's contacts convert 25%, a's 5%, had they had it
            events.append({"contact": contact, "event": "purchased", "at": (signed + timedelta(hours=2)).isoformat()})
    events.sort(key=lambda event: event["at"])
    return contacts, events


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory, store_kind: str,
        request: pytest.FixtureRequest) -> Iterator[tuple[Path, Store]]:
    root = tmp_path_factory.mktemp("winner")
    location = store_location(store_kind, request)
    write(root / "mauto.yaml", f"""\
        store: {location or "mauto.db"}
        timezone: UTC
        sender: {{email: "Shop <shop@example.com>"}}
        events: {{signed_up: {{}}, purchased: {{}}}}
        """)
    write(root / "workflows" / "promo.yaml", WORKFLOW)
    contacts, events = _world()
    write(root / "contacts.jsonl", "\n".join(json.dumps(row) for row in contacts) + "\n")
    write(root / "events.jsonl", "\n".join(json.dumps(row) for row in events) + "\n")
    project = load_project(root / "mauto.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root / "cache"))  # a PostgreSQL store's releases: see `store_url`
        store = open_store(location or root / "mauto.db", lambda: T0 - timedelta(days=1), create=True)
        deploy(project, store, T0 - timedelta(days=1))
        import_contacts(store, root / "contacts.jsonl", fields=project.contact_fields, zone="UTC")
        assert ingest_events(store, root / "events.jsonl", catalogue=project.events, zone="UTC").ok
        actions: list[tuple[str, dict]] = []
        for day in range(4):
            tick(project, store, T0 + timedelta(days=day, hours=4), {},
                 log=lambda kind, data: actions.append((kind, data)))
        (root / "actions.json").write_text(json.dumps([data for kind, data in actions if kind == "winner"]))
        yield root, store
        store.close()


def test_the_daemon_decides_at_midnight_and_sends_later_entries_to_the_winner(ran: tuple[Path, Store]) -> None:
    root, store = ran
    [(variant, decided_at, p_value, detail)] = [tuple(row) for row in store.db.execute(
        "SELECT variant, decided_at, p_value, detail FROM split_winners WHERE workflow = 'promo' AND split = 'offer'")]
    assert (variant, decided_at) == ("b", "2026-12-02T00:00:00.000000+00:00")
    assert p_value < 0.05 and detail.startswith("b converts better: ")
    [logged] = json.loads((root / "actions.json").read_text())
    assert (logged["split"], logged["variant"], logged["decided_at"]) == ("offer", "b", "2026-12-02T00:00:00+00:00")
    by_day = Counter((row[0][:10], row[1], bool(row[2])) for row in store.db.execute(
        "SELECT at, json_extract(extra, '$.variant'), json_extract(extra, '$.winner') FROM step_log "
        "WHERE kind = 'split'"))
    assert by_day[("2026-12-01", "a", False)] + by_day[("2026-12-01", "b", False)] == 400  # the hash, day 1
    assert by_day[("2026-12-02", "b", True)] == by_day[("2026-12-03", "b", True)] == 400  # the winner, days 2-3
    assert sum(count for (day, _, _), count in by_day.items() if day > "2026-12-01") == 800


def test_stats_and_status_show_the_winner(ran: tuple[Path, Store]) -> None:
    root, store = ran
    [split] = query.workflow_stats(store, "promo", T0 + timedelta(days=4))["splits"]
    assert split["winner"]["variant"] == "b" and split["winner"]["decided_at"] == "2026-12-02T00:00:00+00:00"
    assert sum(variant["contacts"] for variant in split["variants"]) == 400  # only those the hash assigned
    runner = CliRunner()
    text = runner.invoke(app, ["-p", str(root / "mauto.yaml"), "stats", "promo"], env={"COLUMNS": "200"}).stdout
    assert "winner: b since 2026-12-02 00:00 UTC" in text
    status = runner.invoke(app, ["-p", str(root / "mauto.yaml"), "status"], env={"COLUMNS": "200"})
    assert status.exit_code == 0 and "promo: split offer picked b on 2026-12-02 00:00 UTC" in status.stdout
    as_json = json.loads(runner.invoke(app, ["-p", str(root / "mauto.yaml"), "status", "--format", "json"]).stdout)[
        "workflows"]
    assert as_json[0]["winners"] == [{"split": "offer", "variant": "b", "decided_at": "2026-12-02T00:00:00+00:00",
                                      "p_value": pytest.approx(as_json[0]["winners"][0]["p_value"]),
                                      "in_force": True}]


def test_simulate_reproduces_the_decision_contact_by_contact(ran: tuple[Path, Store]) -> None:
    root, store = ran
    project = load_project(root / "mauto.yaml")
    result = simulate(project, None, T0 - timedelta(hours=1), timedelta(days=4), contacts=root / "contacts.jsonl",
                      events=root / "events.jsonl")
    [decision] = result.winners
    assert (decision["split"], decision["variant"], decision["decided_at"]) == ("offer", "b",
                                                                               "2026-12-02T00:00:00+00:00")
    daemon = dict(store.db.execute("SELECT contact, json_extract(data, '$.variants.offer') FROM enrollments"))
    simulated = {enrollment.contact: enrollment.variants.get("offer") for enrollment in result.enrollments}
    assert simulated == daemon and len(daemon) == 1200
    [p_value] = [row[0] for row in store.db.execute("SELECT p_value FROM split_winners")]
    assert decision["p_value"] == pytest.approx(p_value, abs=1e-6)


def test_plan_says_what_a_new_version_does_with_the_winner(ran: tuple[Path, Store]) -> None:
    root, _ = ran
    runner = CliRunner()
    plan = runner.invoke(app, ["-p", str(root / "mauto.yaml"), "plan"], env={"COLUMNS": "200"})
    assert plan.exit_code == 0, plan.stdout
    assert ("  promo: split offer picked b on 2026-12-02 00:00 UTC: v1 keeps it, new entries all go to b"
            in plan.stdout.splitlines())
    source = (root / "workflows" / "promo.yaml").read_text()
    try:
        (root / "workflows" / "promo.yaml").write_text(
            source.replace("version: 1", "version: 2").replace("b: {weight: 50", "c: {weight: 50"))
        plan = runner.invoke(app, ["-p", str(root / "mauto.yaml"), "plan", "--format", "json"])
        [change] = json.loads(plan.stdout)["changes"]
        assert change["winners"] == ["split offer picked b on 2026-12-02 00:00 UTC: v2 has no variant b: new "
                                     "entries are split by weight again"]
    finally:
        (root / "workflows" / "promo.yaml").write_text(source)
