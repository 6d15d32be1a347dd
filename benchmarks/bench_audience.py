"""Audiences in SQL, on both stores: `contacts list --where` (iter_contacts), the daemon's segment query (the ids
a segment may hold, `audience_ids`) and a date trigger's candidates, over 100,000 and 1,000,000 contacts in a
SQLite file and in a PostgreSQL database (a throwaway cluster, tests/pg.py), without and then with the audience
indexes, made as a user makes them: `mauto db index country score` (`indexes.field_indexes`) and `mauto deploy`
of a birthday workflow (which makes its trigger's index); and the tick's preparation of a date trigger
(Driver.schedule over the store's ports) reading every contact, as before, or only the candidates.

    .venv/bin/python benchmarks/bench_audience.py [--sizes 100000,1000000] [--stores sqlite,postgresql]
        [--python-up-to 100000] [--prepare-at 100000] [--repeat 3]

While the indexes are made, another connection updates one contact every 50 ms: the longest it waited is
what the build costs the daemons' writes (SQLite: the deploy's transaction holds the file; PostgreSQL: the
builds are concurrent). On PostgreSQL the birthday index is also built once with a plain CREATE INDEX (in a
transaction, as a deploy would without CONCURRENTLY), to compare, then dropped before the deploy.

Each figure is the best of --repeat runs. `count` is `SELECT count(*)` of the query's condition, `ids` the
query the daemon's segment check runs (the contacts it keeps, with the doubt column), `list` the whole command
(the query and a contact view per match, as `contacts list` makes them). The Python evaluator (every contact
read and evaluated, as before the SQL) is timed on the sizes up to --python-up-to. The stores are filled with
executemany (SQLite) or COPY (PostgreSQL), then left as a store is: no ANALYZE on SQLite (mauto never runs it),
VACUUM ANALYZE on PostgreSQL (its autovacuum would).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import machine  # noqa: E402
from mauto.config import BUILTIN_FIELDS, load_project  # noqa: E402
from mauto.deploy import GitInfo, deploy  # noqa: E402
from mauto.store import Store, audience_sql, indexes, open_store  # noqa: E402
from mauto.store.audience_sql import (  # noqa: E402
    audience_ids,
    compile_where,
    date_trigger_candidates,
    indexed_fields,
)
from mauto.store.contacts import iter_contacts  # noqa: E402

NOW = datetime(2026, 11, 23, 8, 0, 30, tzinfo=UTC)  # 09:00:30 in Paris: a birthday trigger at 09:00 fires
FIELDS = {**BUILTIN_FIELDS, "country": "string", "last_order_at": "datetime", "birthday": "date"}
ZONE = "Europe/Paris"
COUNTRIES = ["FR", "DE", "ES", "IT", "GB", "US", "BE", "NL", "PT", "PL"]
EXPRESSIONS = [
    "contact.score > 90 and contact.country == 'FR'",
    "contact.country in ['FR', 'BE'] and 'vip' in contact.tags",
    "contact.last_order_at > now - duration('30d')",
    "has_event('order_placed', within='30d')",
    "contact.score > 50 and has_event('order_placed', within='30d', where=\"event.total > 50\")",
]
# The fields compared with a value few contacts hold (`mauto db index country score`); the birthday trigger's key
# is the deploy's. Not last_order_at: a third of the contacts ordered in the last 30 days, and an index search
# for a third of the table is slower than reading it (measured: docs/performance.md).
FIELD_INDEXES = ["country", "score"]
PROJECT = {
    "mauto.yaml": 'timezone: Europe/Paris\nsender: {email: "Shop <shop@example.com>"}\n'
                  'unsubscribe_url: "https://example.com/u/{{ token }}"\n'
                  "contact_fields: {country: string, last_order_at: datetime, birthday: date}\n",
    "templates/birthday/hello.email.html": '---\nsubject: "Happy birthday"\n---\n<p>Happy birthday</p>'
                                           '<a href="{{ unsubscribe_url }}">u</a>\n',
}
BIRTHDAY = {"field": "birthday", "every": "year", "at": "09:00"}
WORKFLOW = """\
id: birthday
version: 1
name: Birthday
category: marketing
trigger: {date: {field: birthday, every: year, at: "09:00"}}
steps:
  - id: hello
    email: birthday/hello
"""


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def rows(size: int) -> tuple[list[tuple], list[tuple]]:
    """`size` contacts (score 0-100, a country, tags, a last order, a birthday) and an order event in the last
    90 days for one contact in three (its total 1-100): the same rows for both stores."""
    randomness = random.Random(size)
    created = stamp(NOW - timedelta(days=400))
    contacts, events = [], []
    for index in range(size):
        contact_id = f"c{index:07d}"
        ordered = NOW - timedelta(minutes=randomness.randrange(90 * 24 * 60))
        born = date(1950, 1, 1) + timedelta(days=randomness.randrange(55 * 365))
        fields = {"country": randomness.choice(COUNTRIES), "score": randomness.randrange(101),
                  "tags": ["vip"] if randomness.random() < 0.1 else [], "last_order_at": stamp(ordered),
                  "birthday": born.isoformat()}
        contacts.append((contact_id, f"{contact_id}@example.com", 1, json.dumps(fields, sort_keys=True), created,
                         created))
        if index % 3 == 0:
            events.append((contact_id, "order_placed", stamp(ordered),
                           json.dumps({"total": randomness.randrange(1, 101)}), stamp(ordered)))
    return contacts, events


def build(location: str | Path, size: int) -> Store:
    store = open_store(location, lambda: NOW, create=True)
    contacts, events = rows(size)
    if store.dialect == "postgresql":
        connection = store.pg.connection  # type: ignore[attr-defined]
        with connection.transaction():
            for table, columns, values in (
                    ("contacts", "id, email, email_consent, fields, created_at, updated_at", contacts),
                    ("events", "contact, name, at, properties, received_at", events)):
                with connection.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in values:
                        copy.write_row(row)
        connection.execute("VACUUM ANALYZE contacts")
        connection.execute("VACUUM ANALYZE events")
        return store
    with store.transaction() as db:
        db.conn.executemany("INSERT INTO contacts (id, email, email_consent, fields, created_at, updated_at) "
                            "VALUES (?, ?, ?, ?, ?, ?)", contacts)
        db.conn.executemany("INSERT INTO events (contact, name, at, properties, received_at) VALUES (?, ?, ?, ?, ?)",
                            events)
    return store


def best(run: Callable[[], int], repeat: int) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        found = run()
        times.append(time.perf_counter() - started)
    return min(times), found


def counted(store: Store, source: str) -> int:
    compiled = compile_where(source, FIELDS, ZONE, NOW, store.dialect,
                             indexed=indexed_fields(store.db, store.dialect))
    assert compiled is not None, source
    with store.guard():
        return int(store.db.execute(f"SELECT count(*) FROM {compiled.table} WHERE c.erased_at IS NULL AND "
                                    f"({compiled.where})", compiled.parameters).fetchone()[0])


def segment_ids(store: Store, source: str) -> int:
    found = audience_ids(store.db, source, FIELDS, ZONE, NOW, store.dialect)
    assert found is not None, source
    return len(found)


def listed(store: Store, source: str) -> int:
    return sum(1 for _ in iter_contacts(store, FIELDS, ZONE, source, now=NOW))


def in_python(store: Store, source: str) -> int:
    saved = audience_sql.SQL_DIALECTS
    audience_sql.SQL_DIALECTS = ()  # the Python evaluator, as before the SQL
    try:
        return listed(store, source)
    finally:
        audience_sql.SQL_DIALECTS = saved


def candidates(store: Store) -> int:
    return sum(1 for _ in date_trigger_candidates(store.db, BIRTHDAY, "date", NOW - timedelta(minutes=1),
                                                  NOW + timedelta(microseconds=1), store.dialect))


def prepare(store: Store, near: bool) -> int:
    """The tick's preparation of the birthday trigger for the minute since the last tick (Driver.schedule over
    the store's ports, as MautoTick.prepare calls it); `near` False: every contact read, as before."""
    from mauto.daemon.report import TickReport
    from mauto.driver.loop import Driver
    from mauto.driver.sqlite import Batch, SqliteWorkflows, sqlite_ports
    from mauto.engine.interpreter import Engine, Settings
    from mauto.workflow.loader import parse
    from mauto.workflow.model import build as build_workflow

    batch = Batch(store, NOW, TickReport(NOW), lambda kind, data: None)
    ports = sqlite_ports(batch, FIELDS, ZONE, SqliteWorkflows(batch, lambda *args: None), lambda *args: None)
    if not near:
        contacts = ports.contacts
        contacts.every_near = lambda spec, start, end: contacts.every()  # type: ignore[method-assign]
    end = NOW + timedelta(microseconds=1)
    driver = Driver(Engine(Settings(FIELDS, ZONE)), ports.ports(), None, {}, end)  # type: ignore[arg-type]
    with store.guard():
        driver.schedule(build_workflow(parse(WORKFLOW, "birthday.yaml")), NOW - timedelta(minutes=1), NOW, False)
    return len(driver.queue)


@contextlib.contextmanager
def stores(kinds: list[str], folder: Path) -> Iterator[Callable[[str, int], str | Path]]:
    """A function giving, for a store kind and a size, where to build it: a file in `folder`, or a new database
    on a PostgreSQL cluster started for the run (tests/pg.py), stopped at the end."""
    if "postgresql" not in kinds:
        yield lambda kind, size: folder / f"audience-{size}.db"
        return
    from tests.pg import cluster

    with cluster() as running:
        yield lambda kind, size: folder / f"audience-{size}.db" if kind == "sqlite" else running.url(f"audience{size}")


def measure(store: Store, size: int, options: argparse.Namespace, report: dict[str, Any], before: bool) -> None:
    """The figures of one store as it is (`before`: also the tick's preparation as it was, every contact)."""
    repeat = options.repeat
    for source in EXPRESSIONS:
        figures = report.setdefault(source, {})
        figures["count"], found = best(lambda source=source: counted(store, source), repeat)
        figures["ids"], ids = best(lambda source=source: segment_ids(store, source), repeat)
        figures["list"], listed_found = best(lambda source=source: listed(store, source), 1)
        assert found == ids == listed_found, (source, found, ids, listed_found)
        figures["found"] = found
        if before and size <= options.python_up_to:
            figures["python"], python_found = best(lambda source=source: in_python(store, source), 1)
            assert python_found == found, (source, python_found, found)
        print(f"  {source}: {found:,} found, count {figures['count']:.3f} s, ids {figures['ids']:.3f} s, "
              f"list {figures['list']:.3f} s" + (f", python {figures['python']:.2f} s" if "python" in figures else ""),
              flush=True)
    report["date"], report["date_found"] = best(lambda: candidates(store), repeat)
    print(f"  birthday candidates: {report['date_found']:,} in {report['date']:.3f} s", flush=True)
    if size == options.prepare_at:
        for near in (False, True) if before else (True,):
            key = "prepare_near" if near else "prepare_every"
            report[key], queued = best(lambda near=near: prepare(store, near), 1 if not near else repeat)
            assert report.setdefault("queued", queued) == queued, (report["queued"], queued)
            print(f"  tick prepare, birthday trigger, {'candidates' if near else 'every contact'}: "
                  f"{report[key]:.3f} s ({report['queued']} queued)", flush=True)


class Writer:
    """Another connection updating one contact every 50 ms while it runs (a daemon's writes): the longest one
    took `longest` seconds (it waited for the index build, or not)."""

    def __init__(self, location: str | Path) -> None:
        self.location, self.longest, self.writes = location, 0.0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        if isinstance(self.location, Path):
            connection: Any = sqlite3.connect(self.location, timeout=600, isolation_level=None)
        else:
            import psycopg

            connection = psycopg.connect(str(self.location), autocommit=True)
        with contextlib.closing(connection):
            while not self.stop.is_set():
                started = time.perf_counter()
                connection.execute("UPDATE contacts SET updated_at = updated_at WHERE id = 'c0000001'")
                self.longest = max(self.longest, time.perf_counter() - started)
                self.writes += 1
                self.stop.wait(0.05)

    def __enter__(self) -> Writer:
        self.thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def make_indexes(store: Store, root: Path) -> dict[str, Any]:
    """The field indexes as `mauto db index country score` makes them, then the birthday trigger's as `mauto
    deploy` of its workflow makes it (PostgreSQL: first once with a plain CREATE INDEX, to compare), each with a
    writer alongside; their times, and the writer's longest wait."""
    made: dict[str, Any] = {}
    location = getattr(store, "url", store.path)  # the writer's own connection to the same store
    with Writer(location) as writer:
        for change in indexes.field_indexes(store, FIELDS, FIELD_INDEXES):
            made[change.name] = change.seconds
    made["fields_longest_write"] = writer.longest
    birthday = indexes.IndexSpec("birthday", "date", "year")
    if store.dialect == "postgresql":
        with Writer(location) as writer:
            started = time.perf_counter()
            with store.transaction() as db:
                db.execute(birthday.statement(store.dialect))
            made["plain"] = time.perf_counter() - started
        made["plain_longest_write"] = writer.longest
        store.db.execute(f'DROP INDEX "{birthday.name}"')
    for name, text in {**PROJECT, "workflows/birthday.yaml": WORKFLOW}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    with Writer(location) as writer:
        started = time.perf_counter()
        result = deploy(load_project(root / "mauto.yaml"), store, NOW, GitInfo())
        made["deploy"] = time.perf_counter() - started
    made["deploy_longest_write"] = writer.longest
    [change] = result.indexes
    assert change.action == "made", change
    made[change.name] = change.seconds
    if store.dialect == "postgresql":
        store.db.execute("ANALYZE contacts")
    print(f"{store.dialect}: " + ", ".join(f"{name} {value:.2f} s" for name, value in made.items()), flush=True)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--python-up-to", type=int, default=100_000)
    parser.add_argument("--prepare-at", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    kinds = options.stores.split(",")
    with open("/proc/loadavg", encoding="utf-8") as handle:
        load = " ".join(handle.read().split()[:3])
    print(json.dumps(machine(sqlite=__import__("sqlite3").sqlite_version, load=load)))
    results: dict[tuple[str, int, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder, stores(kinds, Path(folder)) as where:
        for kind in kinds:
            for size in map(int, options.sizes.split(",")):
                started = time.perf_counter()
                store = build(where(kind, size), size)
                if kind == "postgresql":
                    server = store.db.execute("SHOW server_version").fetchone()[0]
                    print(f"PostgreSQL {server}")
                print(f"{kind}: built {size:,} contacts in {time.perf_counter() - started:.1f} s", flush=True)
                measure(store, size, options, results.setdefault((kind, size, "none"), {}), True)
                measured = results.setdefault((kind, size, "indexed"), {})
                measured["made"] = make_indexes(store, Path(folder) / f"project-{kind}-{size}")
                measure(store, size, options, measured, False)
                started = time.perf_counter()
                listed = indexes.list_indexes(store, FIELDS)
                measured["listed"] = time.perf_counter() - started
                print(f"  mauto db index (the list, with sizes): {measured['listed']:.3f} s: "
                      + ", ".join(f"{index.name} {index.size or 0:,} bytes" for index in listed), flush=True)
                store.close()
    table(results)


def table(results: dict[tuple[str, int, str], dict[str, Any]]) -> None:
    print()
    print("| store | contacts | expression | found | count | ids | list | with indexes: count | ids | list | "
          "Python list |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (kind, size, made_with), figures in results.items():
        if made_with != "none":
            continue
        indexed = results.get((kind, size, "indexed"), {})
        for source in EXPRESSIONS:
            plain, fast = figures[source], indexed.get(source, {})
            python = f"{plain['python']:.2f} s" if "python" in plain else "-"
            print(f"| {kind} | {size:,} | `{source}` | {plain['found']:,} | {plain['count']:.3f} s | "
                  f"{plain['ids']:.3f} s | {plain['list']:.3f} s | {fast.get('count', float('nan')):.3f} s | "
                  f"{fast.get('ids', float('nan')):.3f} s | {fast.get('list', float('nan')):.3f} s | {python} |")
        print(f"| {kind} | {size:,} | birthday trigger's candidates (a minute) | {figures['date_found']:,} | - | "
              f"{figures['date']:.3f} s | - | - | {indexed.get('date', float('nan')):.3f} s | - | - |")
    print()
    print("| store | contacts | tick prepare, birthday trigger: every contact (before) | candidates | "
          "candidates, indexed | queued |")
    print("|---|---:|---:|---:|---:|---:|")
    for (kind, size, made_with), figures in results.items():
        if made_with == "none" and "prepare_every" in figures:
            indexed = results.get((kind, size, "indexed"), {})
            print(f"| {kind} | {size:,} | {figures['prepare_every']:.2f} s | {figures['prepare_near']:.3f} s | "
                  f"{indexed.get('prepare_near', float('nan')):.3f} s | {figures['queued']} |")
    print()
    print("| store | contacts | db index country | score | deploy (birthday index) | of which the index | "
          "longest write meanwhile: fields | deploy | plain CREATE INDEX | longest write meanwhile | list |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (kind, size, made_with), figures in results.items():
        if made_with == "indexed":
            made = figures["made"]
            plain = f"{made['plain']:.1f} s | {made['plain_longest_write']:.2f} s" if "plain" in made else "- | -"
            print(f"| {kind} | {size:,} | {made['contacts_field_country']:.1f} s | "
                  f"{made['contacts_field_score']:.1f} s | {made['deploy']:.1f} s | "
                  f"{made['contacts_date_birthday_year']:.1f} s | "
                  f"{made['fields_longest_write']:.2f} s | {made['deploy_longest_write']:.2f} s | {plain} | "
                  f"{figures['listed']:.3f} s |")


if __name__ == "__main__":
    main()
