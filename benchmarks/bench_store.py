"""Store benchmark: import N contacts and ingest N events, beside a bare executemany of the same rows.

The contacts floor writes what an import of N new contacts writes: N contacts rows and N `contact_created`
event rows (the event carrying the contact's fields), into the same tables and indexes.

    python benchmarks/bench_store.py                  # 100,000 and 1,000,000 rows
    python benchmarks/bench_store.py --rows 200000    # one size

Each (size, side) runs in its own subprocess, so ru_maxrss (the process's peak resident
memory) belongs to that run alone. The timed run has tracemalloc off; a second run of the
same import with tracemalloc on gives Python's peak allocations.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FIELDS_DECLARED = {"first_name": "string", "country": "string", "birthday": "date",
                   "lifecycle": {"enum": ["lead", "trial", "customer"]}}
CATALOGUE = {"order_placed": {"total": "number", "currency": "string"}, "page_viewed": {"url": "string"}}


def generate(folder: Path, rows: int) -> tuple[Path, Path]:
    """contacts.csv and events.jsonl with `rows` rows each (seeded)."""
    rng = random.Random(7)
    contacts, events = folder / "contacts.csv", folder / "events.jsonl"
    with contacts.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "email", "first_name", "country", "birthday", "lifecycle", "score", "tags",
                         "email_consent"])
        for n in range(rows):
            writer.writerow([f"c{n}", f"person{n}@example.com", rng.choice(["Ann", "Bob", "Zoé", "Li"]),
                             rng.choice(["FR", "DE", "US"]),
                             f"19{rng.randint(50, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
                             rng.choice(["lead", "trial", "customer"]), rng.randint(0, 100),
                             rng.choice(["", "vip", "vip;newsletter"]), rng.choice(["true", "false"])])
    start = NOW - timedelta(days=365)
    with events.open("w") as handle:
        for n in range(rows):
            at = (start + timedelta(seconds=rng.randint(0, 365 * 86400))).isoformat()
            if n % 2:
                line = {"id": f"e{n}", "contact": f"c{rng.randrange(rows)}", "event": "order_placed", "at": at,
                        "total": round(rng.uniform(5, 500), 2), "currency": "EUR"}
            else:
                line = {"id": f"e{n}", "contact": f"c{rng.randrange(rows)}", "event": "page_viewed", "at": at,
                        "url": f"https://shop.example/p/{rng.randint(1, 999)}"}
            handle.write(json.dumps(line) + "\n")
    return contacts, events


def fresh_store(path: Path):
    from mauto.store import Store

    return Store(path, lambda: NOW, create=True)


def bare_contacts(db_path: Path, source: Path, batch: int = 2000) -> int:
    """The floor: the rows an import of new contacts writes, written bare. csv.reader; per contact, its
    contacts row (the non-column fields as JSON) and its `contact_created` event (all its fields as JSON),
    as `mauto contacts import` writes them; one executemany per table every `batch` rows (the import's
    batch size, so memory stays flat on both sides), one transaction, foreign keys on (the events
    reference the contacts), into a file made by the store's own migrations."""
    fresh_store(db_path).close()
    connection = sqlite3.connect(db_path)
    connection.execute("PRAGMA foreign_keys = ON")
    stamp = NOW.isoformat(timespec="microseconds")

    def batches():
        contacts, events = [], []
        with source.open(newline="") as handle:
            reader = csv.reader(handle)
            next(reader)
            for ident, email, first, country, birthday, lifecycle, score, tags, consent in reader:
                fields = {"first_name": first, "country": country, "birthday": birthday, "lifecycle": lifecycle,
                          "score": int(score)}
                if tags:  # an empty cell is a field not given
                    fields["tags"] = tags.split(";")
                contacts.append((ident, email, None, int(consent == "true"), 0,
                                 json.dumps(fields, ensure_ascii=False), stamp, stamp))
                created = {"email_consent": consent == "true", "sms_consent": False, "created_at": stamp,
                           "email": email, **fields}
                events.append((ident, "contact_created", stamp, json.dumps({"fields": created}, ensure_ascii=False),
                               stamp))
                if len(contacts) >= batch:
                    yield contacts, events
                    contacts, events = [], []
        if contacts:
            yield contacts, events

    with connection:
        for contacts, events in batches():
            connection.executemany("INSERT INTO contacts (id, email, phone, email_consent, sms_consent, fields, "
                                   "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", contacts)
            connection.executemany("INSERT INTO events (contact, name, at, properties, received_at) "
                                   "VALUES (?, ?, ?, ?, ?)", events)
    count = connection.execute("SELECT count(*) FROM contacts").fetchone()[0]
    connection.close()
    return count


def bare_events(db_path: Path, source: Path) -> int:
    """The floor for events: json.loads each line, properties as JSON, one executemany (the contacts and
    their contact_created events are there already, written by the bare contacts run, as on mauto's side)."""
    connection = sqlite3.connect(db_path)
    connection.execute("PRAGMA foreign_keys = ON")
    stamp = NOW.isoformat(timespec="microseconds")

    def rows():
        with source.open() as handle:
            for text in handle:
                row = json.loads(text)
                properties = {k: v for k, v in row.items() if k not in ("id", "contact", "event", "at")}
                yield row["id"], row["contact"], row["event"], row["at"], json.dumps(properties), stamp

    before = connection.execute("SELECT count(*) FROM events").fetchone()[0]  # the contact_created events
    with connection:
        connection.executemany("INSERT INTO events (id, contact, name, at, properties, received_at) "
                               "VALUES (?, ?, ?, ?, ?, ?)", rows())
    count = connection.execute("SELECT count(*) FROM events").fetchone()[0] - before
    connection.close()
    return count


def mauto_contacts(db_path: Path, source: Path) -> int:
    from mauto.config import BUILTIN_FIELDS
    from mauto.store.contacts import import_contacts

    with fresh_store(db_path) as store:
        result = import_contacts(store, source, fields={**BUILTIN_FIELDS, **FIELDS_DECLARED}, zone="Europe/Paris")
    assert result.committed and result.ok, result.to_dict()
    return result.created


def mauto_events(db_path: Path, source: Path) -> int:
    from mauto.config import BUILTIN_EVENTS
    from mauto.store import Store
    from mauto.store.events import ingest_events

    with Store(db_path, lambda: NOW) as store:
        result = ingest_events(store, source, catalogue={**BUILTIN_EVENTS, **CATALOGUE}, zone="Europe/Paris")
    assert result.committed and result.ok, result.to_dict()
    return result.stored


def one(side: str, folder: Path, traced: bool) -> dict:
    """One measured run, in this (fresh) process."""
    contacts, events = folder / "contacts.csv", folder / "events.jsonl"
    db_path = folder / f"{side}{'-traced' if traced else ''}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    load_contacts, load_events = (bare_contacts, bare_events) if side == "bare" else (mauto_contacts, mauto_events)
    import mauto.config  # noqa: E401,F401  (imports are not timed)
    if traced:
        tracemalloc.start()
    figures = {}
    for what, load, source in (("contacts", load_contacts, contacts), ("events", load_events, events)):
        if traced:
            tracemalloc.reset_peak()
        began = time.perf_counter()
        count = load(db_path, source)
        figures[what] = {"rows": count, "seconds": time.perf_counter() - began}
        if traced:
            figures[what]["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
    figures["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="rows per file (repeatable)")
    parser.add_argument("--one", nargs=3, metavar=("SIDE", "FOLDER", "TRACED"), help=argparse.SUPPRESS)
    parser.add_argument("--no-trace", action="store_true", help="skip the tracemalloc runs")
    options = parser.parse_args()
    if options.one:
        side, folder, traced = options.one
        print(json.dumps(one(side, Path(folder), traced == "1")))
        return
    import sqlite_utils

    versions = f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}"
    print(f"{versions}, sqlite-utils {sqlite_utils.__version__}" if hasattr(sqlite_utils, "__version__") else versions)
    for rows in options.rows or [100_000, 1_000_000]:
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            began = time.perf_counter()
            generate(folder, rows)
            sizes = {p.name: p.stat().st_size / 1e6 for p in folder.iterdir()}
            print(f"\n{rows:,} rows: generated in {time.perf_counter() - began:.1f}s "
                  + ", ".join(f"{k} {v:.0f} MB" for k, v in sizes.items()))
            results = {}
            for side in ("bare", "mauto"):
                for traced in ((False,) if options.no_trace else (False, True)):
                    done = subprocess.run([sys.executable, __file__, "--one", side, name, "1" if traced else "0"],
                                          check=True, capture_output=True, text=True)
                    results[side, traced] = json.loads(done.stdout)
            for what in ("contacts", "events"):
                bare, ours = results["bare", False][what], results["mauto", False][what]
                bare_rate, our_rate = bare["rows"] / bare["seconds"], ours["rows"] / ours["seconds"]
                print(f"  {what:8}  bare executemany {bare['seconds']:7.1f}s {bare_rate:9,.0f} rows/s"
                      f" | mauto {ours['seconds']:7.1f}s {our_rate:9,.0f} rows/s | ratio {our_rate / bare_rate:.2f}")
                if not options.no_trace:
                    peaks = [results[kind, True][what]["tracemalloc_peak_mb"] for kind in ("bare", "mauto")]
                    print(f"            tracemalloc peak: bare {peaks[0]:.1f} MB | mauto {peaks[1]:.1f} MB")
            print(f"  ru_maxrss (whole untraced run): bare {results['bare', False]['ru_maxrss_mb']:.0f} MB"
                  f" | mauto {results['mauto', False]['ru_maxrss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
