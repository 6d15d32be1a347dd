"""`mauto stats` and `mauto report` on a big store: 1,000,000 step-log rows, 1,000,000 messages, 200,000
enrollments and 300,000 opens and clicks, in the tables and indexes of the current schema.

    python benchmarks/bench_stats.py                # the sizes above
    python benchmarks/bench_stats.py --scale 0.1    # a tenth of them

The store is filled by SQL (a recursive CTE per table), as a daemon running for months would have left it: the
sample `cart` workflow of tests/stats (a wait, a split into two reminders, a wait, a branch with a task, a final
email), and a second workflow holding the rest of the messages. Then, each timed apart (best of 3, the store
warm in the page cache as a server's would be):

- `query.workflow_stats(cart)`: every figure of the workflow, its split and problems (what `mauto stats cart`
  prints);
- `query.overview`: one line per workflow (`mauto stats`);
- `mauto stats cart --format json` end to end, as a new process (start-up and imports included);
- the report (`mauto report`): every workflow's figures with the daily activity, and the HTML.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import machine  # noqa: E402
from mauto.config import load_project  # noqa: E402
from mauto.deploy import deploy  # noqa: E402
from mauto.stats import query  # noqa: E402
from mauto.store import Store  # noqa: E402
from tests.stats.conftest import CART, WINBACK  # noqa: E402

T0 = datetime(2026, 6, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=200)


def project(root: Path) -> Path:
    (root / "workflows").mkdir(parents=True)
    (root / "templates" / "cart").mkdir(parents=True)
    (root / "mauto.yaml").write_text('store: mauto.db\ntimezone: UTC\nsender: {email: "Shop <shop@example.com>"}\n'
                                     'contact_fields: {first_name: string}\n'
                                     'events: {cart_abandoned: {}, order_placed: {}}\n', encoding="utf-8")
    (root / "workflows" / "cart.yaml").write_text(CART, encoding="utf-8")
    (root / "workflows" / "winback.yaml").write_text(WINBACK, encoding="utf-8")
    for name in ("reminder", "reminder-b", "final"):
        (root / "templates" / "cart" / f"{name}.email.html").write_text(
            f'---\nsubject: "{name}"\n---\n<p>{name}</p><a href="{{{{ unsubscribe_url }}}}">stop</a>\n',
            encoding="utf-8")
    return root / "mauto.yaml"


def fill(store: Store, enrollments: int, log_rows: int, messages: int, feedback: int) -> None:
    """The rows, by SQL: times spread over 200 days; `n` numbers every row."""
    db = store.db.conn
    t0 = T0.timestamp()
    span = 200 * 86400

    def at(expression: str) -> str:  # a store moment (fixed width ISO) from a number of seconds after T0
        return f"strftime('%Y-%m-%dT%H:%M:%S.000000+00:00', {t0} + ({expression}), 'unixepoch')"

    series = "WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < ?) "
    db.execute("BEGIN")
    db.execute(series + "INSERT INTO contacts (id, email, email_consent, fields, created_at, updated_at) "
               f"SELECT 'c' || n, 'c' || n || '@example.com', 1, '{{}}', {at('0')}, {at('0')} FROM s",
               [enrollments - 1])
    # Enrollments: most completed, some converted (a tenth), some in flight (waiting on `later`), some failed.
    db.execute(series + "INSERT INTO enrollments (id, workflow, version, contact, state, position, wake_at, data, "
               "entered_at, ended_at, reason, converted_at) "
               "SELECT 'cart:c' || n || ':1', 'cart', 1, 'c' || n, "
               "CASE WHEN n % 50 = 0 THEN 'active' WHEN n % 97 = 0 THEN 'failed' WHEN n % 10 = 0 THEN 'converted' "
               "ELSE 'completed' END, "
               "CASE WHEN n % 50 = 0 THEN 'steps.3' WHEN n % 97 = 0 THEN 'steps.3' ELSE NULL END, "
               f"CASE WHEN n % 50 = 0 THEN {at(f'(n * {span}) / {enrollments} + 86400')} END, "
               "CASE WHEN n % 50 = 0 THEN '{\"waiting\": {\"wait\": \"steps.2\"}}' ELSE '{}' END, "
               f"{at(f'(n * {span}) / {enrollments}')}, "
               f"CASE WHEN n % 50 = 0 THEN NULL ELSE {at(f'(n * {span}) / {enrollments} + 3 * 86400')} END, "
               "CASE WHEN n % 97 = 0 THEN 'step check: ZeroDivisionError: division by zero' END, "
               f"CASE WHEN n % 10 = 0 AND n % 50 != 0 THEN {at(f'(n * {span}) / {enrollments} + 86400')} END "
               "FROM s", [enrollments - 1])
    # The step log: per enrollment, in turn, enter, pause, subject-test (with its variant), the reminder, later,
    # check, call, final, complete; `log_rows` of them.
    steps = ("'trigger'", "'pause'", "'subject-test'", "CASE WHEN e % 2 THEN 'reminder-b' ELSE 'reminder-a' END",
             "'later'", "'check'", "'call'", "'final'", "'end'")
    kinds = ("'enter'", "'wait'", "'split'", "'send'", "'wait'", "'branch'", "'task'", "'send'", "'complete'")
    per = len(steps)
    step_case = "CASE k " + " ".join(f"WHEN {k} THEN {step}" for k, step in enumerate(steps)) + " END"
    kind_case = "CASE k " + " ".join(f"WHEN {k} THEN {kind}" for k, kind in enumerate(kinds)) + " END"
    db.execute(series + "INSERT INTO step_log (at, contact, workflow, version, step, kind, extra, enrollment) "
               f"SELECT {at(f'(e * {span}) / {enrollments} + k * 3600')}, 'c' || e, 'cart', 1, {step_case}, "
               f"{kind_case}, CASE WHEN k = 2 THEN json_object('split', 'subject-test', 'variant', "
               "CASE WHEN e % 2 THEN 'b' ELSE 'a' END) ELSE '{}' END, 'cart:c' || e || ':1' "
               f"FROM (SELECT n / {per} AS e, n % {per} AS k FROM s)", [log_rows - 1])
    # Messages: the cart's reminders and finals, then the win-back's, to `messages` in all.
    db.execute(series + "INSERT INTO messages (key, message_id, enrollment, workflow, version, step, contact, "
               "channel, template, marketing, to_address, body, status, created_at, updated_at, sent_at, ref) "
               "SELECT 'k' || n, '<' || n || '@x>', 'cart:c' || (n % ?) || ':1', "
               f"CASE WHEN n < ? THEN 'cart' ELSE 'winback' END, 1, "
               "CASE WHEN n >= ? THEN 'comeback' WHEN n % 3 = 2 THEN 'final' WHEN n % 2 THEN 'reminder-b' "
               "ELSE 'reminder-a' END, 'c' || (n % ?), 'email', 'cart/reminder', 1, 'c@example.com', x'00', "
               "CASE WHEN n % 101 = 0 THEN 'parked' WHEN n % 251 = 0 THEN 'unknown' ELSE 'sent' END, "
               f"{at(f'(n * {span}) / {messages}')}, {at(f'(n * {span}) / {messages}')}, "
               f"{at(f'(n * {span}) / {messages}')}, 'r' || n FROM s",
               [messages - 1, enrollments, 2 * enrollments, 2 * enrollments, enrollments])
    # Opens (a fifth by privacy proxies) and clicks about the cart's messages.
    db.execute(series + "INSERT INTO events (contact, name, at, properties, received_at) "
               "SELECT 'c' || (n % ?), CASE WHEN n % 4 = 3 THEN 'email_clicked' ELSE 'email_opened' END, "
               f"{at(f'(n * {span}) / {feedback}')}, json_object('workflow', 'cart', 'step', "
               "CASE WHEN m % 3 = 2 THEN 'final' WHEN m % 2 THEN 'reminder-b' ELSE 'reminder-a' END, "
               "'template', 'cart/reminder', 'message', 'r' || m, 'prefetched', json(CASE WHEN n % 5 = 0 "
               f"THEN 'true' ELSE 'false' END)), {at('0')} "
               f"FROM (SELECT n, (n * 7) % ? AS m FROM s)", [feedback - 1, enrollments, 2 * enrollments])
    db.execute("COMMIT")
    db.execute("ANALYZE")


def best(function, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    options = parser.parse_args()
    sizes = {name: int(count * options.scale) for name, count in
             (("enrollments", 200_000), ("log_rows", 1_000_000), ("messages", 1_000_000), ("feedback", 300_000))}
    with tempfile.TemporaryDirectory() as folder:
        path = project(Path(folder))
        loaded = load_project(path)
        store = Store(Path(folder) / "mauto.db", lambda: T0, create=True)
        deploy(loaded, store, T0 - timedelta(days=1))
        start = time.perf_counter()
        fill(store, **sizes)
        filled = time.perf_counter() - start
        counts = {table: store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
                  for table in ("step_log", "messages", "enrollments", "events")}
        one = best(lambda: query.workflow_stats(store, "cart", NOW))
        every = best(lambda: query.overview(store, NOW))
        figures = query.workflow_stats(store, "cart", NOW)
        command = [sys.executable, "-m", "mauto", "-p", str(path), "stats", "cart", "--format", "json", "--now",
                   NOW.isoformat()]
        cli = best(lambda: subprocess.run(command, check=True, capture_output=True))
        report = None
        try:
            from mauto.stats.report import build_report

            out = Path(folder) / "report.html"
            report = best(lambda: build_report(loaded, store, NOW, out), repeat=2)
        except ImportError:
            pass
        store.close()
    print(json.dumps({"machine": machine(sqlite=__import__("sqlite3").sqlite_version), "rows": counts,
                      "fill_s": round(filled, 1), "workflow_stats_s": round(one, 3), "overview_s": round(every, 3),
                      "cli_stats_s": round(cli, 3), "report_s": round(report, 3) if report is not None else None,
                      "reached": [(step["id"], step["reached"]) for step in figures["steps"]]}, indent=2))


if __name__ == "__main__":
    main()
