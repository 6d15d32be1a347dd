"""The plans SQLite picks for a tick's reads of one contact's rows. mauto runs no ANALYZE: without statistics
SQLite may read a whole workflow's enrollments through an index that spares it a sort of a few rows, and a tick
enrolling N contacts then takes N² (it did: docs/performance.md, "Enrolling on SQLite"). Speed is measured in
benchmarks/; this holds the plan that makes it linear."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.daemon.harness import T0, Daemon


@pytest.mark.sqlite_only("EXPLAIN QUERY PLAN is SQLite's")
def test_a_tick_reads_a_contact_s_enrollments_through_the_contact_s_index(daemon: Daemon) -> None:
    statements: list[str] = []
    connection = daemon.store.db.conn
    connection.set_trace_callback(statements.append)
    try:
        for contact in ("ana", "ben"):
            daemon.event(contact, "signed_up", T0)
            daemon.event(contact, "ordered", T0 + timedelta(minutes=1))
        daemon.tick(T0 + timedelta(minutes=2))
    finally:
        connection.set_trace_callback(None)
    reads = {sql for sql in statements
             if sql.lstrip().upper().startswith("SELECT") and "FROM enrollments WHERE contact = " in sql}
    assert reads, "the tick read no contact's enrollments: this test no longer looks at anything"
    for sql in reads:
        plan = [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql)]
        assert any("enrollments USING INDEX enrollments_contact_workflow (contact=?" in line
                   or "enrollments USING INDEX enrollments_goal_open (contact=?" in line for line in plan), (sql, plan)
