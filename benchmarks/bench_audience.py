"""Audiences in SQL against the Python evaluator: `contacts list --where` (iter_contacts) over 100,000 and
1,000,000 contacts in a SQLite store, built with executemany.

    .venv/bin/python benchmarks/bench_audience.py [--sizes 100000,1000000] [--python-up-to 100000]

Each expression is timed through iter_contacts (the query, and a contact view per match, as the command does)
and, for the query alone, as `SELECT count(*)`. The Python evaluator (every contact read and evaluated, as before
the SQL) is timed on the sizes up to --python-up-to (30 us a contact: 30 s at a million).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import machine  # noqa: E402
from mauto.config import BUILTIN_FIELDS  # noqa: E402
from mauto.store import Store, audience_sql  # noqa: E402
from mauto.store.audience_sql import compile_where  # noqa: E402
from mauto.store.contacts import iter_contacts  # noqa: E402

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FIELDS = {**BUILTIN_FIELDS, "country": "string", "last_order_at": "datetime"}
ZONE = "Europe/Paris"
COUNTRIES = ["FR", "DE", "ES", "IT", "GB", "US", "BE", "NL", "PT", "PL"]
EXPRESSIONS = [
    "contact.score > 90 and contact.country == 'FR'",
    "contact.country in ['FR', 'BE'] and 'vip' in contact.tags",
    "contact.last_order_at > now - duration('30d')",
    "has_event('order_placed', within='30d')",
    "contact.score > 50 and has_event('order_placed', within='30d', where=\"event.total > 50\")",
]


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def build(path: Path, size: int) -> Store:
    """A store of `size` contacts (score 0-100, a country, tags, a last order) and an order event in the last
    90 days for one contact in three (its total 1-100)."""
    randomness = random.Random(size)
    store = Store(path, lambda: NOW, create=True)
    created = stamp(NOW - timedelta(days=400))
    contacts, events = [], []
    for index in range(size):
        contact_id = f"c{index:07d}"
        ordered = NOW - timedelta(minutes=randomness.randrange(90 * 24 * 60))
        fields = {"country": randomness.choice(COUNTRIES), "score": randomness.randrange(101),
                  "tags": ["vip"] if randomness.random() < 0.1 else [], "last_order_at": stamp(ordered)}
        contacts.append((contact_id, f"{contact_id}@example.com", 1, json.dumps(fields, sort_keys=True), created,
                         created))
        if index % 3 == 0:
            events.append((contact_id, "order_placed", stamp(ordered),
                           json.dumps({"total": randomness.randrange(1, 101)}), stamp(ordered)))
    with store.transaction() as db:
        db.conn.executemany("INSERT INTO contacts (id, email, email_consent, fields, created_at, updated_at) "
                            "VALUES (?, ?, ?, ?, ?, ?)", contacts)
        db.conn.executemany("INSERT INTO events (contact, name, at, properties, received_at) VALUES (?, ?, ?, ?, ?)",
                            events)
    with store.guard():
        store.db.execute("ANALYZE")
    return store


def timed(run) -> tuple[float, int]:
    started = time.perf_counter()
    found = run()
    return time.perf_counter() - started, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--python-up-to", type=int, default=100_000)
    options = parser.parse_args()
    print(json.dumps(machine(sqlite=__import__("sqlite3").sqlite_version)))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in map(int, options.sizes.split(",")):
            started = time.perf_counter()
            store = build(Path(folder) / f"audience-{size}.db", size)
            print(f"built {size:,} contacts in {time.perf_counter() - started:.1f} s", flush=True)
            for source in EXPRESSIONS:
                compiled = compile_where(source, FIELDS, ZONE, NOW)
                assert compiled is not None, source

                def counted(compiled=compiled, store=store) -> int:
                    with store.guard():
                        return int(store.db.execute(f"SELECT count(*) FROM contacts AS c WHERE c.erased_at IS NULL "
                                                    f"AND ({compiled.where})", compiled.parameters).fetchone()[0])

                def listed(source=source, store=store) -> int:
                    return sum(1 for _ in iter_contacts(store, FIELDS, ZONE, source, now=NOW))

                count_time, count = timed(counted)
                sql_time, found = timed(listed)
                assert found == count, (source, found, count)
                python_time = None
                if size <= options.python_up_to:
                    saved = audience_sql.SQL_DIALECTS
                    audience_sql.SQL_DIALECTS = ()  # the Python evaluator, as before
                    try:
                        python_time, python_found = timed(listed)
                    finally:
                        audience_sql.SQL_DIALECTS = saved
                    assert python_found == found, (source, python_found, found)
                rows.append((size, source, found, count_time, sql_time, python_time))
                print(f"  {source}: {found:,} found, count {count_time:.3f} s, list {sql_time:.3f} s"
                      + (f", python {python_time:.2f} s" if python_time is not None else ""), flush=True)
            store.close()
    print()
    print("| contacts | expression | found | SQL count(*) | SQL list | Python list | speed-up |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for size, source, found, count_time, sql_time, python_time in rows:
        python = f"{python_time:.2f} s" if python_time is not None else "-"
        ratio = f"{python_time / sql_time:.0f}x" if python_time is not None else "-"
        print(f"| {size:,} | `{source}` | {found:,} | {count_time:.3f} s | {sql_time:.3f} s | {python} | {ratio} |")


if __name__ == "__main__":
    main()
