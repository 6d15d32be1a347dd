"""The engine never overflows on what lint accepts: durations up to 365000d, moments within years 1000 to
8999 (mauto.limits), whatever the contact's data. Where a contact's own data is past what can be computed,
the error names its field (the tick then fails that item alone).

Before: each case here ended in an OverflowError (every tick, or `simulate`, stopped on it).
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from mauto.engine.timing import Cap, cap_release, shifted
from mauto.engine.triggers import date_occurrences, schedule_fires
from mauto.limits import EARLIEST, LATEST, LONGEST

from .helpers import PARIS, UTC, Run, workflow

KIRITIMATI = ZoneInfo("Pacific/Kiritimati")  # UTC+14: the zone that pushes a moment furthest
SAMOA = ZoneInfo("Pacific/Pago_Pago")  # UTC-11
LAST = LATEST - timedelta(seconds=1)  # the last moment mauto takes
END = LAST + LONGEST  # the furthest a window reaches: a simulation from the last moment, for the longest


def test_the_longest_waits_from_now_stay_in_the_calendar():
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    run = Run(workflow("""
        goal: {event: bought, within: 365000d}
        steps:
          - task: {title: Call, due: 365000d}
          - wait: 365000d
          - wait_for: {event: bought, timeout: 365000d}
        """))
    run.enroll(now)
    [task] = [effect for effect in run.effects if effect.kind == "task"]
    assert datetime.fromisoformat(task.data["due"]) == now + LONGEST
    assert run.enrollment.wake_time == now + LONGEST
    run.advance(now + LONGEST)
    assert run.enrollment.wake_time == now + 2 * LONGEST  # the wait_for's deadline
    run.deliver("bought", now + LONGEST)  # the goal's last moment, in the wait_for
    assert run.state == "converted"


@pytest.mark.parametrize(("step", "what"), [
    ("wait: 365000d", "the wait"), ("wait_for: {event: bought, timeout: 365000d}", "the wait_for"),
    ("task: {title: Call, due: 365000d}", "the task's due date"),
])
def test_a_wait_past_the_times_mauto_handles_fails_that_enrollment_saying_so(step, what):
    # Before: the wake-up 9999-04 was kept, and the next sum with it (a quiet-hours move, a cap, a retry)
    # overflowed wherever it was made.
    run = Run(workflow(f"steps:\n  - {step}\n"))
    run.enroll(LAST)
    assert run.state == "failed"
    assert run.enrollment.reason == (f"step 1: ValueError: {what} would end after the times mauto handles (years "
                                     f"1000 to 8999): 365000d after {LAST.isoformat()}")


def test_a_long_chain_of_waits_fails_when_it_leaves_the_calendar():
    run = Run(workflow("steps:\n" + "  - wait: 365000d\n" * 9))
    run.enroll(datetime(2026, 12, 1, tzinfo=UTC))
    run.run_until(datetime.max.replace(tzinfo=UTC))
    assert run.state == "failed" and "the wait would end after the times mauto handles" in run.enrollment.reason


def test_quiet_hours_and_caps_at_the_edges_of_the_calendar():
    cap = Cap(1, LONGEST)
    # before: `at - per` fell before year 1 (OverflowError)
    assert cap_release(EARLIEST, [EARLIEST], cap) == EARLIEST + LONGEST
    assert cap_release(EARLIEST, [], cap) is None
    with pytest.raises(ValueError, match=r"^the frequency cap's window would end after the times mauto handles"):
        cap_release(LAST, [LAST], cap)
    run = Run(workflow("""
        settings:
          timezone: Pacific/Kiritimati
          quiet_hours: {start: "00:00", end: "23:59"}
          frequency_cap: {email: {max: 1, per: 365000d}}
        steps:
          - email: a/b
          - email: a/b
        """))
    run.enroll(EARLIEST)
    run.run_until(datetime.max.replace(tzinfo=UTC))
    assert [moment.year for moment, _, _ in run.sends()] == [1000, 1999]


def test_shifted_keeps_a_window_edge_in_the_calendar():
    assert shifted(EARLIEST, -LONGEST) == datetime.min.replace(tzinfo=UTC)
    assert shifted(datetime(9999, 12, 30, tzinfo=UTC), LONGEST) == datetime.max.replace(tzinfo=UTC)
    assert shifted(EARLIEST, LONGEST) == EARLIEST + LONGEST


@pytest.mark.parametrize("every", ["once", "year", "month"])
@pytest.mark.parametrize("birthday", [date(8999, 12, 31), date(1000, 1, 1), date(1, 1, 1), date(9999, 12, 31)])
@pytest.mark.parametrize("offset", ["365000d", "-365000d", "0d"])
def test_a_date_trigger_never_overflows_on_the_date_or_the_offset(every, birthday, offset):
    spec = {"field": "birthday", "every": every, "offset": offset, "at": "23:59"}
    for tz in (KIRITIMATI, SAMOA, PARIS):
        for start, end in ((datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
                           (EARLIEST, EARLIEST + timedelta(days=40)), (LAST, END)):
            for moment in date_occurrences(birthday, spec, tz, start, end):
                assert start <= moment < end


def test_a_date_trigger_finds_the_far_occurrences():
    spec = {"field": "birthday", "every": "once", "offset": "-365000d"}
    target = datetime(8999, 6, 1, 9, 0, tzinfo=UTC) - LONGEST
    [moment] = date_occurrences(date(8999, 6, 1), spec, UTC, target - timedelta(days=1), target + timedelta(days=1))
    assert moment == target
    spec = {"field": "birthday", "every": "year", "offset": "365000d"}
    found = list(date_occurrences(date(1990, 6, 1), spec, UTC, LAST, END))
    assert found and all(LAST <= moment < END for moment in found)


def test_a_contacts_datetime_past_the_calendar_is_an_error_naming_its_field():
    spec = {"field": "signed_up_at", "every": "year"}
    edge = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    with pytest.raises(ValueError) as caught:
        list(date_occurrences(edge, spec, KIRITIMATI, datetime(2026, 1, 1, tzinfo=UTC),
                              datetime(2026, 2, 1, tzinfo=UTC)))
    assert str(caught.value) == ("the contact's `signed_up_at` (9999-12-31T23:00:00+00:00) is outside the times "
                                 "mauto handles (years 1000 to 8999)")


def test_a_schedule_stops_at_the_end_of_the_calendar():
    # A guard (APScheduler already answers None there): after 9996 the next 29 February would be in year 10000
    fires = list(schedule_fires("0 0 29 2 *", ZoneInfo("UTC"), datetime(9990, 1, 1, tzinfo=UTC),
                                datetime(9999, 12, 31, tzinfo=UTC)))
    assert [moment.year for moment in fires] == [9992, 9996]
    assert list(schedule_fires("0 9 * * *", KIRITIMATI, LAST, LAST + timedelta(days=2)))


def test_wait_until_a_time_of_day_at_the_last_moment():
    run = Run(workflow("""
        settings: {timezone: Pacific/Kiritimati}
        steps:
          - wait: {until: "09:00"}
        """))
    run.enroll(LAST)
    assert run.enrollment.wake_time.astimezone(KIRITIMATI).time() == time(9, 0)
