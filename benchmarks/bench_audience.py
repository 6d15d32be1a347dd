"""Audiences in SQL, on both stores: `contacts list --where` (iter_contacts), the daemon's segment query (the ids
a segment may hold, `audience_ids`) and a date trigger's candidates, over 100,000 and 1,000,000 contacts in a
SQLite file and in a PostgreSQL database (a throwaway cluster, tests/pg.py), without and then with the indexes
docs/store.md proposes (`audience_sql.index_sql`, created here); and the tick's preparation of a date trigger
(Driver.schedule over the store's ports) reading every contact, as before, or only the candidates.

    .venv/bin/python benchmarks/bench_audience.py [--sizes 100000,1000000] [--stores sqlite,postgresql]
        [--python-up-to 100000] [--prepare-at 100000] [--repeat 3]

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
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import machine  # noqa: E402
from mauto.config import BUILTIN_FIELDS  # noqa: E402
from mauto.store import Store, audience_sql, open_store  # noqa: E402
from mauto.store.audience_sql import (  # noqa: E402
    audience_ids,
    compile_where,
    date_trigger_candidates,
    index_sql,
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
# (field, declared, a date trigger's `every`): the fields compared with a value few contacts hold, and the
# birthday trigger's key. Not last_order_at: a third of the contacts ordered in the last 30 days, and an index
# search for a third of the table is slower than reading it (measured: docs/performance.md).
INDEXES = [("country", "string", None), ("score", "integer", None), ("birthday", "date", "year")]
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
                started = time.perf_counter()
                with store.transaction() as db:
                    for name, declared, every in INDEXES:
                        db.execute(index_sql(name, store.dialect, declared, every=every))
                if kind == "postgresql":
                    store.db.execute("ANALYZE contacts")
                took = time.perf_counter() - started
                print(f"{kind}: {len(INDEXES)} indexes made in {took:.1f} s", flush=True)
                measured = results.setdefault((kind, size, "indexed"), {"made": took})
                measure(store, size, options, measured, False)
                store.close()
    table(results)


def table(results: dict[tuple[str, int, str], dict[str, Any]]) -> None:
    print()
    print("| store | contacts | expression | found | count | ids | list | with indexes: count | ids | Python list |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for (kind, size, indexes), figures in results.items():
        if indexes != "none":
            continue
        indexed = results.get((kind, size, "indexed"), {})
        for source in EXPRESSIONS:
            plain, fast = figures[source], indexed.get(source, {})
            python = f"{plain['python']:.2f} s" if "python" in plain else "-"
            print(f"| {kind} | {size:,} | `{source}` | {plain['found']:,} | {plain['count']:.3f} s | "
                  f"{plain['ids']:.3f} s | {plain['list']:.3f} s | {fast.get('count', float('nan')):.3f} s | "
                  f"{fast.get('ids', float('nan')):.3f} s | {python} |")
        print(f"| {kind} | {size:,} | birthday trigger's candidates (a minute) | {figures['date_found']:,} | - | "
              f"{figures['date']:.3f} s | - | - | {indexed.get('date', float('nan')):.3f} s | - |")
    print()
    print("| store | contacts | tick prepare, birthday trigger: every contact (before) | candidates | "
          "candidates, indexed | queued |")
    print("|---|---:|---:|---:|---:|---:|")
    for (kind, size, indexes), figures in results.items():
        if indexes == "none" and "prepare_every" in figures:
            indexed = results.get((kind, size, "indexed"), {})
            print(f"| {kind} | {size:,} | {figures['prepare_every']:.2f} s | {figures['prepare_near']:.3f} s | "
                  f"{indexed.get('prepare_near', float('nan')):.3f} s | {figures['queued']} |")
    print()
    print("| store | contacts | indexes made in |")
    print("|---|---:|---:|")
    for (kind, size, indexes), figures in results.items():
        if indexes == "indexed":
            print(f"| {kind} | {size:,} | {figures['made']:.1f} s |")


if __name__ == "__main__":
    main()
