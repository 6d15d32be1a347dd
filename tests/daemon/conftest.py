"""A copy of the sample project with a real store: what the daemon tests run against."""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mauto.config import Project, load_project
from mauto.deploy import deploy
from mauto.engine.records import jsonable
from mauto.simulate import load_contacts, load_events, load_mapping
from mauto.store import Store, open_store
from mauto.store.contacts import import_contacts
from mauto.store.coupons import load_coupons
from mauto.store.events import ingest_events

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
DEPLOYED = START - timedelta(minutes=1)  # the sample history (events before START) is from before the deploy


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@dataclass
class Setup:
    root: Path
    project: Project
    store: Store
    clock: Clock


def copy_project(target: Path, workflows: list[str] | None = None) -> Path:
    for name in ("mauto.yaml",):
        shutil.copy(ROOT / name, target / name)
    for folder in ("templates", "samples"):
        shutil.copytree(ROOT / folder, target / folder)
    (target / "workflows").mkdir()
    for path in sorted((ROOT / "workflows").glob("*.yaml")):
        if workflows is None or path.stem in workflows:
            shutil.copy(path, target / "workflows" / path.name)
    return target


def open_project(root: Path, start: datetime = START, with_events: bool = True, location: str | None = None) -> Setup:
    """Deploy the project's workflows, import the sample contacts, events (times from `start`) and coupons, into
    `mauto.db` in `root` or the PostgreSQL database at `location`."""
    project = load_project(root / "mauto.yaml")
    clock = Clock(DEPLOYED)
    store = open_store(location or root / "mauto.db", clock, create=True, timeout=2.0)
    deploy(project, store, DEPLOYED)
    import_contacts(store, root / "samples" / "contacts.yaml", fields=project.contact_fields, zone=project.timezone)
    if with_events:
        contacts = load_contacts(root / "samples" / "contacts.yaml", project)
        events = load_events(root / "samples" / "events.yaml", project, start, {c.id for c in contacts})
        lines = []
        for event in events:
            row: dict[str, Any] = {"contact": event.contact, "event": event.name, "at": event.at.isoformat(),
                                   **jsonable(event.properties)}
            if event.id:
                row["id"] = event.id
            lines.append(json.dumps(row))
        path = root / "events.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = ingest_events(store, path, catalogue=project.events, zone=project.timezone)
        assert result.ok, result.to_dict()
    pools = load_mapping(root / "samples" / "coupons.yaml", "coupons")
    for pool, codes in pools.items():
        path = root / f"{pool}.txt"
        path.write_text("\n".join(codes) + "\n", encoding="utf-8")
        load_coupons(store, pool, path)
    return Setup(root, project, store, clock)


@pytest.fixture
def sample(tmp_path: Path):
    setup = open_project(copy_project(tmp_path))
    yield setup
    setup.store.close()


@pytest.fixture
def pg_daemon(tmp_path: Path, pg_cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The daemon harness (tests/daemon/harness.py) on a fresh PostgreSQL database, after a first empty tick at
    T0 - 1h."""
    from tests.daemon.harness import T0, Daemon
    from tests.servers import HttpServer, SmtpServer

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the releases' folders, in tmp_path
    with SmtpServer() as smtp, HttpServer() as http:
        http.respond("/crm", 200, {"id": "crm-1"})
        running = Daemon(tmp_path, smtp, http, str(pg_cluster.url()))
        running.tick(T0 - timedelta(hours=1))
        yield running
        running.store.close()
