"""exit_on and goal events end an enrollment the moment they arrive, whatever it is waiting on."""
from __future__ import annotations

from datetime import timedelta

import pytest

from mauto.engine.state import ACTIVE, COMPLETED, CONVERTED, EXITED, PENDING, WAITING_EVENT

from .helpers import Run, at, paris, same, utc, workflow

T0 = utc(2026, 6, 10, 10, 0)

BODY = """
steps:
  - id: pause
    wait: 2d
  - id: reminder
    email: t/reminder
  - id: click
    wait_for: {event: email_clicked, timeout: 3d}
    on_timeout:
      - id: last
        sms: t/last
  - id: call
    webhook: {url: "https://crm.example/hook"}
  - score: 1
"""


def flow(head: str):
    """The body above, with quiet hours (that nothing but `at_a_postponed_send` runs into)."""
    return workflow(head + 'settings: {quiet_hours: {start: "21:00", end: "08:00"}}\n' + BODY)


def at_the_wait(run: Run) -> None:
    run.enroll(T0)
    assert run.state == ACTIVE and run.enrollment.wake_at is not None


def at_the_wait_for(run: Run) -> None:
    run.enroll(T0)
    run.advance(T0 + timedelta(days=2))
    assert run.state == WAITING_EVENT


def at_the_webhook(run: Run) -> None:
    at_the_wait_for(run)
    run.advance(T0 + timedelta(days=5))
    assert run.state == PENDING


def at_a_postponed_send(run: Run) -> None:
    late = paris(2026, 6, 10, 22, 0)  # the reminder is due inside quiet hours
    run.enroll(at(late - timedelta(days=2)))
    run.advance(at(late))
    assert run.entries("postponed") and run.enrollment.position == "steps.1"


PLACES = {"wait": (at_the_wait, "pause"), "wait_for": (at_the_wait_for, "click"),
          "pending webhook": (at_the_webhook, "call"), "postponed send": (at_a_postponed_send, "reminder")}


@pytest.mark.parametrize("place", PLACES)
def test_exit_on_ends_the_enrollment_at_once_wherever_it_waits(place):
    prepare, step = PLACES[place]
    run = Run(flow("exit_on: [order_placed]\n"))
    prepare(run)
    effects_before = len(run.effects)
    moment = run.log[-1].at + timedelta(hours=1)
    run.deliver("order_placed", moment)
    assert run.state == EXITED
    assert run.enrollment.reason == "exit_on order_placed"
    assert run.enrollment.ended_at == moment
    assert run.enrollment.wake_at is None and run.enrollment.waiting is None and run.enrollment.pending is None
    assert (run.log[-1].kind, run.log[-1].detail, run.log[-1].step) == ("exit", "exit_on order_placed", step)
    assert same(run.log[-1].at, moment)
    # nothing more happens: not at the old wake-up, not on a resume
    run.advance(T0 + timedelta(days=30))
    run.resume({"ok": True}, T0 + timedelta(days=30))
    run.deliver("email_clicked", moment + timedelta(minutes=1))
    assert len(run.effects) == effects_before and run.log[-1].kind == "exit"


@pytest.mark.parametrize("place", PLACES)
def test_a_goal_converts_and_ends_the_enrollment_wherever_it_waits(place):
    prepare, step = PLACES[place]
    run = Run(flow("goal: {event: order_placed}\n"))
    prepare(run)
    moment = run.log[-1].at + timedelta(minutes=5)
    run.deliver("order_placed", moment, total=50)
    assert run.state == CONVERTED and run.enrollment.converted is True
    assert run.enrollment.reason == "goal order_placed" and run.enrollment.ended_at == moment
    assert [(entry.kind, entry.detail, entry.step) for entry in run.log[-2:]] == [
        ("goal", "order_placed", step), ("exit", "goal order_placed", step)]
    assert run.enrollment.wake_at is None


def test_exit_on_with_a_condition():
    run = Run(flow("exit_on: [{event: order_placed, where: 'event.total >= 20'}, unsubscribed]\n"))
    run.enroll(T0)
    run.deliver("order_placed", T0 + timedelta(hours=1), total=5)
    assert run.state == ACTIVE
    run.deliver("order_placed", T0 + timedelta(hours=2), total=25)
    assert run.state == EXITED and run.enrollment.reason == "exit_on order_placed"
    other = Run(flow("exit_on: [{event: order_placed, where: 'event.total >= 20'}, unsubscribed]\n"))
    other.enroll(T0)
    other.deliver("unsubscribed", T0 + timedelta(hours=2), channel="email")
    assert other.enrollment.reason == "exit_on unsubscribed"


def test_a_goal_within_its_window_converts_and_after_it_does_not():
    head = "goal: {event: order_placed, within: 1d}\n"
    inside = Run(flow(head))
    inside.enroll(T0)
    inside.deliver("order_placed", T0 + timedelta(days=1))  # the last moment of the window
    assert inside.state == CONVERTED

    outside = Run(flow(head))
    outside.enroll(T0)
    outside.deliver("order_placed", T0 + timedelta(days=1, seconds=1))
    assert outside.state == ACTIVE and not outside.enrollment.converted
    assert outside.entries("goal") == []
    outside.run_until(T0 + timedelta(days=3))
    assert outside.sends()  # it goes on


def test_a_goal_with_a_condition():
    run = Run(flow("goal: {event: order_placed, where: \"event.total > 100 and contact.country == 'FR'\"}\n"))
    run.contact.fields["country"] = "FR"
    run.enroll(T0)
    run.deliver("order_placed", T0 + timedelta(hours=1), total=50)
    assert run.state == ACTIVE
    run.deliver("order_placed", T0 + timedelta(hours=2), total=150)
    assert run.state == CONVERTED


def test_a_goal_with_exit_false_counts_once_and_the_enrollment_goes_on():
    run = Run(flow("goal: {event: order_placed, exit: false}\n"))
    run.enroll(T0)
    run.deliver("order_placed", T0 + timedelta(hours=1))
    assert run.enrollment.converted is True and run.state == ACTIVE
    assert [(entry.kind, entry.step) for entry in run.log[-1:]] == [("goal", "pause")]
    run.deliver("order_placed", T0 + timedelta(hours=2))
    assert len(run.entries("goal")) == 1
    run.run_until(T0 + timedelta(days=10))
    run.resume({}, T0 + timedelta(days=5))
    assert run.state == COMPLETED and run.enrollment.converted is True
    assert [channel for _, channel, _ in run.sends()] == ["email", "sms"]


def test_a_goal_that_is_also_an_exit_on_event_counts_as_a_conversion():
    # the design's own example lists order_placed both as exit_on and as the goal
    run = Run(flow("exit_on: [order_placed]\ngoal: {event: order_placed, within: 7d}\n"))
    run.enroll(T0)
    run.deliver("order_placed", T0 + timedelta(days=1))
    assert run.state == CONVERTED and run.enrollment.converted is True
    assert [entry.kind for entry in run.log[-2:]] == ["goal", "exit"]

    late = Run(flow("exit_on: [order_placed]\ngoal: {event: order_placed, within: 7d}\n"))
    late.enroll(T0)
    late.advance(T0 + timedelta(days=2))
    late.deliver("order_placed", T0 + timedelta(days=8))  # after the goal's window: still an exit
    assert late.state == EXITED and not late.enrollment.converted
    assert late.enrollment.reason == "exit_on order_placed"


def test_a_goal_without_exit_but_listed_in_exit_on_converts_then_exits():
    run = Run(flow("exit_on: [order_placed]\ngoal: {event: order_placed, exit: false}\n"))
    run.enroll(T0)
    run.deliver("order_placed", T0 + timedelta(days=1))
    assert run.enrollment.converted is True and run.state == EXITED
    assert [entry.kind for entry in run.log[-2:]] == ["goal", "exit"]


def test_a_goal_event_during_a_wait_for_of_the_same_event_converts_and_the_wait_for_sees_it_with_exit_false():
    run = Run(workflow("""
        goal: {event: order_placed, exit: false}
        steps:
          - wait_for: {event: order_placed, timeout: 3d}
            on_event: [{score: 5}]
            on_timeout: [{score: -5}]
    """))
    run.enroll(T0)
    run.deliver("order_placed", T0 + timedelta(hours=1))
    assert [entry.kind for entry in run.log[-4:]] == ["goal", "event", "score", "complete"]
    assert run.effects[-1].data["points"] == 5 and run.enrollment.converted


def test_events_from_before_the_entry_are_ignored():
    run = Run(flow("exit_on: [order_placed]\ngoal: {event: order_placed}\n"))
    run.enroll(T0)
    run.deliver("order_placed", T0 - timedelta(seconds=1))
    assert run.state == ACTIVE and run.log[-1].kind == "wait"


def test_an_ended_enrollment_ignores_events():
    run = Run(workflow("exit_on: [order_placed]\nsteps:\n  - score: 1\n"))
    run.enroll(T0)
    outcome = run.deliver("order_placed", T0 + timedelta(hours=1))
    assert outcome.log == [] and run.state == COMPLETED
