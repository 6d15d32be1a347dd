"""Enrollment state is plain data; an engine given it back continues identically; errors fail the enrollment,
never the engine; the engine never reads a clock."""
from __future__ import annotations

import ast
import copy
import json
import re
from datetime import datetime
from pathlib import Path

import pytest

import mauto.engine
from mauto.engine.records import Event
from mauto.engine.state import ACTIVE, COMPLETED, FAILED, PENDING, WAITING_EVENT, Enrollment

from .helpers import Run, at, contact, engine, paris, utc, workflow

T0 = at(paris(2026, 3, 27, 22, 30))  # Friday night in Paris, two days before the spring-forward change

FULL = """
exit_on: [unsubscribed]
goal: {event: order_placed, exit: false}
settings: {quiet_hours: {start: "21:00", end: "08:00"}, send_days: [mon, tue, wed, thu, fri, sat]}
steps:
  - id: hello
    email: t/hello
    vars: {when: "{{ now }}"}
  - wait: 1d
  - id: test
    split:
      variants:
        a: {weight: 50, steps: [{score: 5}]}
        b: {weight: 50, steps: [{update: {set: {plan: "{{ event.plan }}"}, add_tags: [b]}}]}
  - assign_coupon: {pool: CART10, as: coupon}
  - id: crm
    webhook: {url: "https://crm.example/{{ contact.id }}", body: {code: "{{ vars.coupon }}"}, as: crm}
  - wait_for: {event: email_clicked, where: "event.step == 'hello'", timeout: 2d}
    on_event:
      - lists: {add: [engaged]}
    on_timeout:
      - id: nudge
        sms: t/nudge
  - if: "vars.crm.tier == 'gold' and has_event('order_placed', since='entry')"
    then:
      - task: {title: "Call {{ contact.id }} ({{ vars.coupon }})", due: 1d}
  - wait: {until: "09:00", days: [mon]}
  - id: last
    email: t/last
"""

# What happens to the contact, in order: (operation, arguments)
SCRIPT = [
    ("enroll", T0),
    ("advance", utc(2026, 3, 28, 7, 0)),    # 08:00 CET Saturday: the postponed email goes
    ("deliver", "page_viewed", utc(2026, 3, 28, 12, 0), {}),
    ("advance", utc(2026, 3, 29, 7, 0)),    # the wait ends; split, then the coupon is pending
    ("resume", "CART10-XYZ", utc(2026, 3, 29, 7, 0)),
    ("resume", {"tier": "gold", "since": "2020"}, utc(2026, 3, 29, 7, 0, 2)),
    ("deliver", "order_placed", utc(2026, 3, 29, 9, 0), {"total": 80}),  # the goal, without exit
    ("deliver", "email_clicked", utc(2026, 3, 29, 10, 0), {"step": "other"}),
    ("advance", utc(2026, 3, 31, 7, 0, 2)),  # the wait_for times out: the sms, the task, then until Monday
    ("advance", utc(2026, 4, 6, 7, 0)),      # Monday 09:00 CEST
]


def drive(script, round_trip: bool):
    """Run the script; with `round_trip`, between any two calls the state goes through JSON into a new engine."""
    person = contact("c1", plan=None)
    flow = workflow(FULL)
    run = Run(flow, person, engine())
    snapshots = []
    for operation, *args in script:
        if operation == "enroll":
            run.enroll(args[0], Event("c1", "go", args[0], {"plan": "pro"}))
        elif operation == "advance":
            run.advance(args[0])
        elif operation == "deliver":
            run.deliver(args[0], args[1], **args[2])
        else:
            run.resume(args[0], args[1])
        text = json.dumps(run.enrollment.to_dict())  # plain JSON: no default= needed
        snapshots.append(text)
        if round_trip:
            restored = Enrollment.from_dict(json.loads(text))
            assert restored == run.enrollment
            run.enrollment = restored
            run.engine = engine()
            run.contact = copy.deepcopy(run.contact)
    return run, snapshots


def test_the_script_covers_every_kind_of_waiting():
    run, snapshots = drive(SCRIPT, round_trip=False)
    states = [json.loads(text)["state"] for text in snapshots]
    assert ACTIVE in states and PENDING in states and WAITING_EVENT in states and states[-1] == COMPLETED
    assert any(json.loads(text)["waiting"] and "postponed" in json.loads(text)["waiting"] for text in snapshots)
    assert [effect.kind for effect in run.effects] == [
        "send", run.effects[1].kind, "coupon", "webhook", "send", "task", "send"]
    assert run.enrollment.converted and run.enrollment.vars == {
        "coupon": "CART10-XYZ", "crm": {"tier": "gold", "since": "2020"}}


def test_an_engine_given_the_state_back_from_json_continues_identically():
    plain, plain_snapshots = drive(SCRIPT, round_trip=False)
    restored, restored_snapshots = drive(SCRIPT, round_trip=True)
    assert restored_snapshots == plain_snapshots
    assert [entry.to_dict() for entry in restored.log] == [entry.to_dict() for entry in plain.log]
    assert [(e.kind, e.at, e.key, e.step, e.data) for e in restored.effects] == [
        (e.kind, e.at, e.key, e.step, e.data) for e in plain.effects]
    assert restored.contact.fields == plain.contact.fields


def test_every_snapshot_holds_only_json_types():
    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(key, str) and plain(item) for key, item in value.items())
        if isinstance(value, list):
            return all(plain(item) for item in value)
        return value is None or isinstance(value, (str, int, float, bool))

    _, snapshots = drive(SCRIPT, round_trip=False)
    for text in snapshots:
        data = json.loads(text)
        assert plain(Enrollment.from_dict(data).to_dict())
        assert Enrollment.from_dict(data).to_dict() == data


def test_the_trigger_event_is_kept_as_plain_data_with_aware_times():
    run = Run(workflow("steps:\n  - wait: 1d\n"))
    run.enroll(T0, Event("c1", "go", T0, {"cart_value": 12.5, "placed": utc(2026, 3, 27, 20, 0), "items": [1, 2]}))
    assert run.enrollment.trigger_event == {"contact": "c1", "name": "go", "at": T0.isoformat(), "id": None,
                                            "properties": {"cart_value": 12.5, "placed": "2026-03-27T20:00:00+00:00",
                                                           "items": [1, 2]}}
    json.dumps(run.enrollment.to_dict())


# --- expression and template errors -------------------------------------------------------------

@pytest.mark.parametrize(("step", "reason"), [
    ("if: \"contact.birthday > 3\"\n    then: [{score: 1}]",
     "step 1: TypeError: '>' not supported between instances of 'NoneType' and 'int'"),
    ("if: \"contact.score / 0 > 1\"\n    then: [{score: 1}]", "step 1: ZeroDivisionError: division by zero"),
    ("if: \"has_event('x', within='3 days')\"\n    then: [{score: 1}]", "step 1: DurationError: "),
    ("update: {set: {plan: \"{{ vars.missing.deeper }}\"}}", "step 1: UndefinedError: "),
    ("email: t/a\n    vars: {x: \"{{ 1 / 0 }}\"}", "step 1: ZeroDivisionError: division by zero"),
    ("task: {title: \"{{ contact.nope }}\"}", "step 1: UndefinedError: "),
])
def test_an_expression_or_template_error_fails_the_enrollment_with_the_reason(step, reason):
    run = Run(workflow(f"steps:\n  - {step}\n  - score: 9\n"))
    run.enroll(utc(2026, 6, 10, 10, 0))  # does not raise
    assert run.state == FAILED
    assert run.enrollment.reason.startswith(reason), run.enrollment.reason
    assert run.enrollment.ended_at == utc(2026, 6, 10, 10, 0)
    assert (run.log[-1].kind, run.log[-1].step) == ("failed", "1")
    assert run.log[-1].detail == run.enrollment.reason
    assert all(effect.data.get("points") != 9 for effect in run.effects)
    run.advance(utc(2026, 7, 1))
    assert run.log[-1].kind == "failed"


@pytest.mark.parametrize("head", [
    "exit_on: [{event: order_placed, where: 'event.total > 10'}]\n",
    "goal: {event: order_placed, where: 'event.total > 10'}\n",
])
def test_an_error_in_an_exit_or_goal_condition_fails_the_enrollment(head):
    run = Run(workflow(head + "steps:\n  - wait: 1d\n  - score: 1\n"))
    run.enroll(utc(2026, 6, 10, 10, 0))
    run.deliver("order_placed", utc(2026, 6, 10, 12, 0))  # no `total`: the condition cannot be evaluated
    assert run.state == FAILED and "UndefinedError" in run.enrollment.reason
    assert run.log[-1].kind == "failed" and run.log[-1].step == "1"
    assert run.enrollment.wake_at is None


def test_an_error_in_a_wait_for_condition_fails_the_enrollment():
    run = Run(workflow("steps:\n  - id: w\n    wait_for: {event: paid, where: 'event.total > None', timeout: 1d}\n"))
    run.enroll(utc(2026, 6, 10, 10, 0))
    run.deliver("paid", utc(2026, 6, 10, 12, 0), total=5)
    assert run.state == FAILED and run.enrollment.reason.startswith("TypeError: ")
    assert run.log[-1].step == "w"


def test_the_engine_refuses_naive_times():
    naive = datetime(2026, 6, 10, 10, 0)
    run = Run(workflow("steps:\n  - wait: 1d\n  - webhook: {url: 'https://x.example'}\n"))
    with pytest.raises(ValueError, match="`at` must be a timezone-aware datetime"):
        run.enroll(naive)
    run.enroll(utc(2026, 6, 10, 10, 0))
    with pytest.raises(ValueError, match="`now` must be a timezone-aware datetime"):
        run.advance(naive)
    with pytest.raises(ValueError, match="`event.at` must be a timezone-aware datetime"):
        run.deliver("order_placed", naive)
    run.advance(utc(2026, 6, 11, 10, 0))
    with pytest.raises(ValueError, match="`at` must be a timezone-aware datetime"):
        run.resume({}, naive)


# --- no clock -----------------------------------------------------------------------------------

CLOCK = re.compile(r"\b(?:datetime|date)\s*\.\s*(?:now|today|utcnow)\s*\(|\btime\s*\.\s*(?:time|monotonic|"
                   r"perf_counter|time_ns)\s*\(|\bimport\s+time\b|\bfrom\s+time\s+import\b")


def test_the_engine_never_reads_the_clock():
    folder = Path(mauto.engine.__file__).parent
    sources = sorted(folder.glob("*.py"))
    assert {path.name for path in sources} >= {"interpreter.py", "state.py", "timing.py", "records.py",
                                               "context.py", "triggers.py"}
    for path in sources:
        text = path.read_text(encoding="utf-8")
        assert not CLOCK.search(text), f"{path.name} reads the clock: {CLOCK.search(text).group(0)}"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in ("now", "today", "utcnow", "monotonic", "perf_counter"), (
                    f"{path.name}:{node.lineno} calls .{node.func.attr}()")


def test_the_clock_check_would_catch_a_clock():
    assert CLOCK.search("moment = datetime.now(timezone.utc)")
    assert CLOCK.search("import time\n")
    assert CLOCK.search("started = time.time()")
    assert not CLOCK.search("def advance(self, now):\n    return now")
