"""Two `mauto serve` processes on one PostgreSQL store record feedback about one contact at the same moment: each
in its own transaction, the second waiting on the first's rows. What one of them writes must not be written twice
(an `unsubscribed` event), nor lost (a soft bounce counted). On a real PostgreSQL cluster (tests/pg.py)."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mauto.config import BUILTIN_FIELDS
from mauto.feedback import Feedback
from mauto.store import open_store
from mauto.store.contacts import import_contacts
from mauto.store.feedback import record, unsubscribe

AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def url(pg_cluster: Any, tmp_path: Path) -> str:
    found = str(pg_cluster.url())
    with open_store(found, create=True) as store:
        path = tmp_path / "contacts.jsonl"
        path.write_text('{"id": "ana", "email": "ana@example.com", "email_consent": true}\n', encoding="utf-8")
        assert import_contacts(store, path, fields=BUILTIN_FIELDS, zone="UTC").ok
    return found


def _race(url: str, first_job: Any, second_job: Any) -> tuple[Any, Any]:
    """`first_job` in one store's transaction, left open while `second_job` starts in another's (a second server),
    which waits on its rows; then the first commits, and the second goes on: both results."""
    results: dict[str, Any] = {}
    with open_store(url, timeout=10.0) as first, open_store(url, timeout=10.0) as second:
        started = threading.Event()

        def run_second() -> None:
            started.set()
            with second.transaction():
                results["second"] = second_job(second)

        with first.transaction():
            results["first"] = first_job(first)
            thread = threading.Thread(target=run_second)
            thread.start()
            started.wait(5)
            thread.join(0.5)  # the second is blocked on the first's rows until this commits
            assert thread.is_alive(), "the second transaction did not wait: this test no longer races"
        thread.join(10)
    return results["first"], results["second"]


def test_two_servers_unsubscribing_one_contact_write_one_unsubscribed_event(url: str) -> None:
    def job(store: Any) -> bool:
        return unsubscribe(store, "ana", "email", AT, {"source": "one-click"})

    assert _race(url, job, job) == (True, False)
    with open_store(url) as store:
        assert store.db.execute("SELECT count(*) FROM events WHERE contact = 'ana' AND name = 'unsubscribed'"
                                ).fetchone()[0] == 1
        assert store.db.execute("SELECT email_consent FROM contacts WHERE id = 'ana'").fetchone()[0] == 0


def test_two_servers_counting_soft_bounces_of_one_address_count_both(url: str) -> None:
    def bounce(minutes: int) -> Any:
        def job(store: Any) -> Any:
            return record(store, Feedback("soft_bounce", "sendgrid", address="ana@example.com",
                                          at=AT + timedelta(minutes=minutes), reason="452 mailbox full"),
                          AT + timedelta(hours=1), soft_limit=2)
        return job

    first, second = _race(url, bounce(1), bounce(2))
    assert (first.suppressed, second.suppressed) == (False, True)  # the second bounce is the limit's
    with open_store(url) as store:
        assert store.db.execute("SELECT count FROM soft_bounces").fetchall() == [(2,)]
        assert store.db.execute("SELECT count(*) FROM suppressions WHERE channel = 'email'").fetchone()[0] == 1
