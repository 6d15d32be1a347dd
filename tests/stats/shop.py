"""A small project for the tests of tests/stats: the workflows and contacts given, its store deployed a day
before T0, events ingested, ticks run, and the CLI at a terminal's width."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from mauto.cli import app
from mauto.config import load_project
from mauto.daemon.tick import tick
from mauto.deploy import deploy
from mauto.store import open_store
from mauto.store.contacts import import_contacts
from mauto.store.events import ingest_events
from tests.daemon.harness import write

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Shop:
    """The project: `contacts` are rows (or ids, each given an address), `extra` lines for mauto.yaml (a
    channel); no channel, the steps send nothing. `store`: a PostgreSQL URL (the `store_url` fixture), None for
    `mauto.db` in `root`."""

    columns = 200  # the terminal `cli` runs in

    def __init__(self, root: Path, workflows: dict[str, str], contacts: list[dict] | list[str] | tuple[str, ...],
                 *, extra: str = "", events: tuple[str, ...] = ("signed_up", "ordered"),
                 deployed: datetime = T0 - timedelta(days=1), store: str | None = None) -> None:
        self.root = root
        catalogue = ", ".join(f"{name}: {{}}" for name in events)
        write(root / "mauto.yaml", f'store: {store or "mauto.db"}\ntimezone: UTC\n'
                                   f'sender: {{email: "Shop <shop@example.com>"}}\n'
                                   f"contact_fields: {{first_name: string, score: number}}\n"
                                   f"events: {{{catalogue}}}\n{extra}")
        for name, text in workflows.items():
            write(root / "workflows" / f"{name}.yaml", text)
        rows = [row if isinstance(row, dict) else {"id": row, "email": f"u{number}@example.com"}
                for number, row in enumerate(contacts)]
        write(root / "contacts.jsonl", "\n".join(json.dumps(row) for row in rows) + "\n")
        self.project = load_project(root / "mauto.yaml")
        self.store = open_store(store or root / "mauto.db", lambda: deployed, create=True)
        deploy(self.project, self.store, deployed)
        import_contacts(self.store, root / "contacts.jsonl", fields=self.project.contact_fields, zone="UTC")
        self.files = 0

    def events(self, rows: list[dict]) -> None:
        self.files += 1
        path = write(self.root / f"events-{self.files}.jsonl", "\n".join(json.dumps(row) for row in rows) + "\n")
        result = ingest_events(self.store, path, catalogue=self.project.events, zone="UTC")
        assert result.ok, result.to_dict()

    def event(self, contact: str, name: str, at: datetime) -> None:
        self.events([{"contact": contact, "event": name, "at": at.isoformat()}])

    def tick(self, at: datetime, transports: dict | None = None):
        return tick(self.project, self.store, at, transports or {}, log=lambda kind, data: None)

    def rows(self, sql: str, *args: object) -> list[tuple]:
        return [tuple(row) for row in self.store.db.execute(sql, args)]

    def cli(self, *args: str, columns: int | None = None):
        return CliRunner().invoke(app, ["-p", str(self.root / "mauto.yaml"), *args],
                                  env={"COLUMNS": str(columns or self.columns),
                                       "XDG_CACHE_HOME": str(self.root / "cache")})
