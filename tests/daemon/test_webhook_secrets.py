"""A webhook's secret (`headers_env`) goes out in its header and nowhere else: not into the store (the calls
table keeps the request, the enrollment its pending step), not into the action log. Against a real store
and a real http.server on 127.0.0.1."""
from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mauto.channels import build_transports
from mauto.config import load_project
from mauto.daemon.tick import tick
from mauto.deploy import deploy
from mauto.store import Store
from mauto.store.contacts import import_contacts
from mauto.store.events import ingest_events
from tests.servers import HttpServer

DEPLOYED = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SECRET = "Bearer sk_live_4eC39HqLyjWDarjtT1zdp7dc"
WORKFLOW = """\
id: crm-sync
version: 1
name: CRM sync
category: transactional
trigger: {event: ordered}
steps:
  - id: push
    webhook:
      url: "URL/{{ contact.id }}"
      headers: {X-Source: mauto}
      headers_env: {Authorization: MAUTO_TEST_CRM_AUTH}
      body: {contact: "{{ contact.id }}"}
      as: crm
  - id: tagged
    update: {add_tags: [synced]}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


class Project:
    def __init__(self, root: Path, http: HttpServer) -> None:
        self.root, self.http = root, http
        write(root / "mauto.yaml", """\
            store: mauto.db
            timezone: UTC
            channels: {email: {transport: console}, sms: {transport: console}}
            events: {ordered: {}}
            """)
        write(root / "workflows" / "crm-sync.yaml", WORKFLOW.replace("URL", http.url("/crm")))
        write(root / "contacts.jsonl", '{"id": "ana", "email": "ana@example.com"}\n'
                                       '{"id": "ben", "email": "ben@example.com"}\n')
        self.project = load_project(root / "mauto.yaml")
        self.store = Store(root / "mauto.db", lambda: DEPLOYED, create=True, timeout=2.0)
        deploy(self.project, self.store, DEPLOYED)
        import_contacts(self.store, root / "contacts.jsonl", fields=self.project.contact_fields,
                        zone=self.project.timezone)
        self.transports = build_transports(self.project, {})
        self.actions: list[tuple[str, dict]] = []

    def event(self, contact: str) -> None:
        path = write(self.root / f"events-{contact}.jsonl",
                     json.dumps({"contact": contact, "event": "ordered", "at": T0.isoformat()}) + "\n")
        assert ingest_events(self.store, path, catalogue=self.project.events, zone=self.project.timezone).ok

    def tick(self, now: datetime):
        return tick(self.project, self.store, now, self.transports,
                    log=lambda kind, data: self.actions.append((kind, data)))

    def dump(self) -> str:
        """Everything the store holds, as text: a secret written anywhere in it shows up here."""
        return "\n".join(line for line in self.store.db.iterdump())


@pytest.fixture
def crm(tmp_path: Path):
    with HttpServer() as http:
        http.respond("/crm/ana", 200, {"id": "crm-ana"})
        http.respond("/crm/ben", 200, {"id": "crm-ben"})
        project = Project(tmp_path, http)
        yield project
        project.store.close()


def test_the_secret_goes_out_in_its_header_and_is_stored_nowhere(crm: Project, monkeypatch) -> None:
    monkeypatch.setenv("MAUTO_TEST_CRM_AUTH", SECRET)
    crm.event("ana")
    report = crm.tick(T0 + timedelta(minutes=1))

    assert report.calls == 1
    [received] = crm.http.requests
    assert received.path == "/crm/ana"
    assert received.headers["Authorization"] == SECRET and received.headers["X-Source"] == "mauto"
    [(request, status)] = [tuple(row) for row in crm.store.db.execute("SELECT request, status FROM calls")]
    assert status == "done"
    assert json.loads(request)["headers_env"] == {"Authorization": "MAUTO_TEST_CRM_AUTH"}  # the NAME only
    [(state, data)] = [tuple(row) for row in crm.store.db.execute("SELECT state, data FROM enrollments")]
    assert state == "completed" and json.loads(data)["vars"]["crm"] == {"id": "crm-ana"}
    assert "sk_live" not in crm.dump()
    assert "sk_live" not in json.dumps(crm.actions, default=str)


def test_a_variable_that_is_not_set_fails_its_enrollment_and_the_tick_goes_on(crm: Project, monkeypatch) -> None:
    monkeypatch.delenv("MAUTO_TEST_CRM_AUTH", raising=False)
    crm.event("ana")
    crm.tick(T0 + timedelta(minutes=1))

    assert crm.http.requests == []
    rows = {row[0]: tuple(row[1:]) for row in crm.store.db.execute("SELECT contact, state, reason FROM enrollments")}
    assert rows["ana"][0] == "failed"
    assert "environment variable MAUTO_TEST_CRM_AUTH is not set" in rows["ana"][1]
    [(status, answer)] = [tuple(row) for row in crm.store.db.execute("SELECT status, answer FROM calls")]
    assert (status, answer) == ("failed", "not sent: environment variable MAUTO_TEST_CRM_AUTH is not set")

    # once it is set, the next contact's call goes out: the tick and the daemon went on
    monkeypatch.setenv("MAUTO_TEST_CRM_AUTH", SECRET)
    crm.event("ben")
    crm.tick(T0 + timedelta(minutes=2))
    assert [request.path for request in crm.http.requests] == ["/crm/ben"]
    assert crm.store.db.execute("SELECT state FROM enrollments WHERE contact = 'ben'").fetchone()[0] == "completed"
