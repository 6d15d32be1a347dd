"""`mauto stats` over a store the daemon filled (tests/stats/conftest.py tells the story): the exact figures per
workflow, per step and per split variant, the late goal counted in the daemon and in `simulate`, the window and
version options, the problems, the text and JSON a person and a script read, and the errors."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from mauto.cli import app
from mauto.errors import MautoError
from mauto.simulate.run import simulate
from mauto.stats import query
from tests.stats.conftest import READ_AT, T0, Filled

SEND_KEYS = ["sent", "suppressed", "failed", "pending", "unknown", "opened", "opened_prefetched", "clicked",
             "unsubscribed", "bounced", "complained", "open_rate", "click_rate", "unsubscribe_rate", "bounce_rate"]


def stats(filled: Filled, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["-p", str(filled.root / "mauto.yaml"), "stats", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout + (result.stderr or "")


def _step(figures: dict, step_id: str) -> dict:
    [found] = [step for step in figures["steps"] if step["id"] == step_id]
    return found


def test_the_workflow_figures(filled: Filled) -> None:
    figures = query.workflow_stats(filled.store, "cart", READ_AT)
    assert {key: figures[key] for key in ("entered", "active", "completed", "exited", "failed", "converted",
                                          "conversion_rate", "first_action_at", "last_action_at")} == {
        "entered": 10, "active": 0, "completed": 8, "exited": 0, "failed": 1,
        "converted": 2,  # c06 in the workflow, c07 after it (day 6 of 7); c02 on day 9 is too late
        "conversion_rate": 0.2,
        "first_action_at": "2026-12-01T09:00:00+00:00",
        "last_action_at": "2026-12-07T09:00:00+00:00"}  # c07's late goal is the last thing logged
    assert (figures["goal"], figures["current_version"], figures["state"]) == (
        {"event": "order_placed", "within": "7d"}, 1, "active")


def test_each_step_in_the_workflows_order(filled: Filled) -> None:
    steps = query.workflow_stats(filled.store, "cart", READ_AT)["steps"]
    assert [(s["id"], s["kind"], s["depth"], s["block"], s["reached"], s["waiting"], s["left"]) for s in steps] == [
        ("pause", "wait", 0, None, 10, 0, 0),
        ("subject-test", "split", 0, None, 10, 0, 0),
        ("reminder-a", "email", 1, "a", 7, 0, 0),
        ("reminder-b", "email", 1, "b", 3, 0, 0),
        ("later", "wait", 0, None, 10, 0, 1),  # c06 converted there (the goal's exit)
        ("check", "if", 0, None, 9, 0, 1),  # c08's score cannot divide: failed there
        ("call", "task", 1, "then", 5, 0, 0),
        ("final", "email", 0, None, 8, 0, 0)]
    reminder_a = _step({"steps": steps}, "reminder-a")
    assert {key: reminder_a[key] for key in SEND_KEYS} == {
        "sent": 6, "suppressed": 1,  # c09 never consented
        "failed": 0, "pending": 0, "unknown": 0,
        "opened": 2,  # c01 (twice: one message), c03 (after its proxy's prefetch)
        "opened_prefetched": 1,  # c02: only the proxy
        "clicked": 1, "unsubscribed": 1, "bounced": 1, "complained": 0,
        "open_rate": 0.3333, "click_rate": 0.1667, "unsubscribe_rate": 0.1667, "bounce_rate": 0.1667}
    reminder_b = _step({"steps": steps}, "reminder-b")
    assert (reminder_b["sent"], reminder_b["failed"], reminder_b["opened"], reminder_b["open_rate"]) == (2, 1, 0, 0.0)
    final = _step({"steps": steps}, "final")
    # c04 bounced and c05 unsubscribed from the reminder: refused now, with c09; c10's mailbox refuses (parked)
    assert (final["sent"], final["suppressed"], final["failed"]) == (4, 3, 1)
    assert "sent" not in _step({"steps": steps}, "later")  # send figures only on sends


def test_the_split_variants_and_their_comparison(filled: Filled) -> None:
    [split] = query.workflow_stats(filled.store, "cart", READ_AT)["splits"]
    assert (split["id"], split["step"], split["winner"]) == ("subject-test", "subject-test", None)
    assert split["variants"] == [
        {"name": "a", "weight": 50, "holdout": False, "contacts": 7, "conversions": 1, "rate": 0.1429},
        {"name": "b", "weight": 50, "holdout": False, "contacts": 3, "conversions": 1, "rate": 0.3333}]  # c07, late
    [comparison] = split["comparisons"]
    assert (comparison["variant"], comparison["control"], comparison["significant"]) == ("b", "a", False)
    assert comparison["uplift"] == pytest.approx(1 / 3 / (1 / 7) - 1)
    assert split["verdict"].startswith("no difference yet")


def test_the_late_goal_is_in_the_log_and_on_the_enrollment(filled: Filled) -> None:
    c07, c02 = filled.enrollment("cart", "c07"), filled.enrollment("cart", "c02")
    assert filled.rows("SELECT state, converted_at, goal_until FROM enrollments WHERE id = ?", c07) == [
        ("completed", "2026-12-07T09:00:00.000000+00:00", None)]
    assert filled.rows("SELECT step, kind, detail, enrollment FROM step_log "
                       "WHERE contact = 'c07' AND kind = 'goal'") == [
        ("end", "goal", "order_placed after the end (reached the end)", c07)]
    # c02's order on day 9 came after its window closed on day 7: no goal, and the window is still recorded
    assert filled.rows("SELECT converted_at, goal_until FROM enrollments WHERE id = ?", c02) == [
        (None, "2026-12-08T09:00:00.000000+00:00")]


def test_simulate_counts_the_late_goal_as_the_daemon_does(filled: Filled) -> None:
    root = filled.root
    (root / "samples").mkdir(exist_ok=True)
    events = [{"contact": f"c{n:02d}", "event": "cart_abandoned", "at": T0.isoformat()} for n in range(1, 11)]
    events += [{"contact": contact, "event": "order_placed", "at": (T0 + timedelta(days=day)).isoformat()}
               for contact, day in (("c06", 1), ("c07", 6), ("c02", 9))]
    (root / "samples" / "events.jsonl").write_text("\n".join(json.dumps(event) for event in events) + "\n")
    result = simulate(filled.project, None, T0 - timedelta(hours=1), timedelta(days=12),  # type: ignore[arg-type]
                      contacts=root / "contacts.jsonl", events=root / "samples" / "events.jsonl")
    funnel = result.funnels["cart"]
    assert (funnel.entered, funnel.converted, funnel.exited, funnel.failed) == (10, 2, 0, 1)
    late = [entry for entry in result.timeline if entry.kind == "goal" and entry.step == "end"]
    assert [(entry.contact, entry.at - T0) for entry in late] == [("c07", timedelta(days=6))]
    assert funnel.variants == {"subject-test:a": 7, "subject-test:b": 3}


def test_without_a_workflow_one_line_each(filled: Filled) -> None:
    figures = query.overview(filled.store, READ_AT)
    assert figures["workflows"] == [
        {"workflow": "cart", "version": 1, "state": "active", "entered": 10, "active": 0, "converted": 2,
         "conversion_rate": 0.2, "sent": 12, "opened": 2, "clicked": 1, "last_action_at": "2026-12-07T09:00:00+00:00"},
        {"workflow": "winback", "version": 1, "state": "active", "entered": 3, "active": 3, "converted": 0,
         "conversion_rate": None, "sent": 0, "opened": 0, "clicked": 0, "last_action_at": "2026-12-10T09:00:00+00:00"}]


def test_waiting_counts_where_contacts_are_now(filled: Filled) -> None:
    steps = query.workflow_stats(filled.store, "winback", READ_AT)["steps"]
    assert [(s["id"], s["reached"], s["waiting"]) for s in steps] == [("rest", 3, 3), ("comeback", 0, 0)]


def test_the_window_keeps_what_happened_in_it(filled: Filled) -> None:
    window = query.Window(since=T0 + timedelta(days=2))  # after the reminders and c06's goal, before `later` ended
    figures = query.workflow_stats(filled.store, "cart", READ_AT, window)
    # The cohort (entered in the window) is empty; the steps run and the mail sent in it are not.
    assert (figures["entered"], figures["converted"]) == (0, 0)
    assert [(s["id"], s["reached"]) for s in figures["steps"] if s["reached"]] == [("check", 9),
                                                                                 ("call", 5), ("final", 8)]
    assert _step(figures, "final")["sent"] == 4 and _step(figures, "reminder-a")["sent"] == 0
    before = query.workflow_stats(filled.store, "cart", READ_AT, query.Window(until=T0 + timedelta(days=2)))
    assert before["entered"] == 10 and _step(before, "final")["reached"] == 0
    assert _step(before, "reminder-a")["opened"] == 2


def test_problems_with_ids_to_act_on(filled: Filled) -> None:
    problems = query.problems(filled.store.db, None, READ_AT)
    assert problems["stuck"] == [{"enrollment": filled.enrollment("winback", "c06"), "workflow": "winback",
                                  "contact": "c06", "step": "rest", "wake_at": "2026-12-12T09:00:00+00:00",
                                  "late_by": "1d"}]
    assert [(item["enrollment"], item["step"], item["reason"]) for item in problems["failed"]] == [
        (filled.enrollment("cart", "c08"), "check", "step check: ZeroDivisionError: division by zero")]
    assert [(item["contact"], item["step"], item["status"], item["answer"]) for item in problems["messages"]] == [
        ("c10", "reminder-b", "parked", "RCPT TO: 550 5.1.1 no such mailbox"),
        ("c10", "final", "parked", "RCPT TO: 550 5.1.1 no such mailbox")]
    assert (problems["stuck_total"], problems["failed_total"], problems["messages_total"]) == (1, 1, 2)
    # within the grace, a wake-up a little late is not a problem (a tick every few minutes)
    assert query.problems(filled.store.db, None, READ_AT - timedelta(days=1) + timedelta(minutes=30))["stuck"] == []


def test_the_text_reads_in_a_terminal(filled: Filled) -> None:
    code, text = stats(filled, "cart")
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == "cart v1 (active)"
    assert lines[1] == "10 entered · 0 active · 8 completed · 0 exited · 1 failed · 2 converted (20%)"
    assert lines[2] == "goal: order_placed within 7d"
    row = next(line for line in lines if "a: reminder-a" in line)
    assert row.split()[:4] + row.split()[5:] == ["a:", "reminder-a", "email", "7", "0", "0"] and "█" in row
    delivery, heard = [line.split() for line in lines if line.startswith("reminder-a ")]
    assert delivery == ["reminder-a", "6", "1", "0", "0", "0"]  # sent, suppressed, failed, pending, unknown
    assert heard == ["reminder-a", "2", "(33.3%)", "1", "1", "(16.7%)", "1", "(16.7%)", "1", "(16.7%)"]
    assert "no difference yet" in text
    assert "Problems: 1 failed, 2 parked or unknown messages: see `mauto stats --problems cart`" in text
    code, text = stats(filled)
    assert code == 0 and text.splitlines()[1].split() == [
        "workflow", "entered", "active", "converted", "sent", "opened", "clicked", "last"]
    assert text.splitlines()[2].split() == ["cart", "v1", "10", "0", "2", "(20%)", "12", "2", "1", "12-07", "09:00"]
    narrow = CliRunner().invoke(app, ["-p", str(filled.root / "mauto.yaml"), "stats", "cart"], env={"COLUMNS": "80"})
    tables = [line for line in narrow.stdout.splitlines() if "  " in line.strip()]  # the tables' rows
    assert max(len(line) for line in tables) <= 80
    for whole in ("a: reminder-a", "then: call", "reminder-b", "+133% (-79% … +2523%)", "(33.3%)", "(16.7%)"):
        assert whole in narrow.stdout, whole  # nothing cut at 80 columns (a cell may wrap)


def test_json_for_scripts(filled: Filled) -> None:
    code, text = stats(filled, "cart", "--format", "json")
    figures = json.loads(text)
    assert code == 0 and list(figures) == [
        "workflow", "version", "current_version", "state", "since", "until", "now", "entered", "active", "completed",
        "exited", "failed", "converted", "conversion_rate", "first_action_at", "last_action_at", "goal", "steps",
        "splits", "problems"]
    assert list(_step(figures, "final")) == ["id", "kind", "depth", "block", "reached", "waiting", "left",
                                             *SEND_KEYS]
    code, text = stats(filled, "cart", "--format", "json", "--daily")
    daily = json.loads(text)["daily"]
    assert daily[0] == {"date": "2026-12-01", "entered": 10, "sent": 8, "opened": 2, "clicked": 1, "converted": 0}
    assert [(day["date"], day["converted"]) for day in daily if day["converted"]] == [("2026-12-02", 1),
                                                                                      ("2026-12-07", 1)]


def test_problems_command(filled: Filled) -> None:
    code, text = stats(filled, "--problems", "--now", READ_AT.isoformat())
    assert code == 0
    assert "Stuck enrollments: 1" in text and filled.enrollment("winback", "c06") in text and "1d" in text
    assert filled.enrollment("cart", "c08") in text and "ZeroDivisionError" in text and "no such mailbox" in text


@pytest.mark.parametrize(("args", "message"), [
    (["nope"], "no workflow `nope` is deployed (deployed: cart, winback)"),
    (["cart", "--version", "4"], "--version 4: workflow `cart` has no such version (deployed: v1)"),
    (["--version", "1"], "--version needs a WORKFLOW"),
    (["cart", "--since", "soon"], "--since soon: not a duration such as 7d or 12h, nor an ISO 8601 time"),
    (["cart", "--since", "2026-12-05", "--until", "2026-12-01"], "--since 2026-12-05 is not before --until"),
])
def test_bad_input_is_a_clear_error(filled: Filled, args: list[str], message: str) -> None:
    code, text = stats(filled, *args)
    assert code in (1, 2) and message in text and "Traceback" not in text


def test_an_unknown_workflow_is_a_mauto_error(filled: Filled) -> None:
    with pytest.raises(MautoError, match="no workflow `gone` is deployed"):
        query.workflow_stats(filled.store, "gone", READ_AT)


def test_mauto_report_writes_one_self_contained_page(filled: Filled, tmp_path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["-p", str(filled.root / "mauto.yaml"), "report", "--out", str(out), "--now",
                                      READ_AT.isoformat()])
    assert result.exit_code == 0 and f"wrote {out}" in result.stderr
    page = out.read_text(encoding="utf-8")
    assert page.count("<svg") >= 6 and "<script src" not in page and "https://" not in page.replace(
        "https://shop.example", "")
    for text in ("cart", "winback", "reminder-a", "subject-test", "no difference yet", filled.enrollment("cart", "c08"),
                 filled.enrollment("winback", "c06"), "no such mailbox"):
        assert text in page, text
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.html"]  # no temporary file left
    again = CliRunner().invoke(app, ["-p", str(filled.root / "mauto.yaml"), "report", "--out",
                                     str(tmp_path / "missing" / "r.html")])
    assert again.exit_code == 2 and "no such folder" in again.stderr


def test_erasing_a_contact_keeps_the_figures(tmp_path, store_url) -> None:
    from tests.servers import SmtpServer
    from tests.stats.conftest import fill

    with SmtpServer() as smtp:
        own = fill(tmp_path, smtp, store_url)
        before = query.workflow_stats(own.store, "cart", READ_AT)
        erased = CliRunner().invoke(app, ["-p", str(tmp_path / "mauto.yaml"), "contacts", "erase", "c07", "--yes"])
        assert erased.exit_code == 0, erased.stdout + (erased.stderr or "")
        after = query.workflow_stats(own.store, "cart", READ_AT)
        own.store.close()
    assert after["splits"][0]["variants"] == before["splits"][0]["variants"]  # c07's variant b and conversion
    assert (after["converted"], after["steps"]) == (before["converted"], before["steps"])


def test_status_counts_the_open_tasks(filled: Filled) -> None:
    result = CliRunner().invoke(app, ["-p", str(filled.root / "mauto.yaml"), "status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "tasks: 5 open (`mauto tasks --open`)" in result.stdout.splitlines()
    listed = CliRunner().invoke(app, ["-p", str(filled.root / "mauto.yaml"), "tasks", "--open", "--format", "json"])
    assert sorted(task["contact"] for task in json.loads(listed.stdout)["tasks"]) == ["c01", "c02", "c03", "c04",
                                                                                      "c05"]


def test_problems_are_cut_at_the_limit_with_their_total(filled: Filled) -> None:
    code, text = stats(filled, "--problems", "--limit", "1", "--now", READ_AT.isoformat())
    assert code == 0 and "Parked or unknown messages: 2" in text
    assert "Shown: 1 of 2 messages (--limit N for more)" in text
    assert text.count("no such mailbox") == 1
    code, text = stats(filled, "gone", "--problems")
    assert code in (1, 2) and "no workflow `gone` is deployed" in text


def test_report_to_standard_output_and_an_odd_name_escaped(filled: Filled) -> None:
    result = CliRunner().invoke(app, ["-p", str(filled.root / "mauto.yaml"), "report", "--out", "-", "cart",
                                      "--now", READ_AT.isoformat()])
    assert result.exit_code == 0 and result.stdout.startswith("<!DOCTYPE html>") and "wrote" not in result.stderr
    assert not (filled.root / "-").exists()
    code, text = stats(filled, "bad\x1b[2Jname")
    assert code in (1, 2) and "no workflow `bad\\x1b[2Jname` is deployed" in text and "\x1b" not in text
