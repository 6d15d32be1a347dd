"""timing.py on its own, and the rule that the engine's decisions depend on instants, not on how `now` is zoned."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest

from mauto.engine.records import Event
from mauto.engine.timing import (
    Cap,
    QuietHours,
    SendRules,
    cap_release,
    later,
    local_moment,
    next_allowed,
    next_time_of_day,
)

from .helpers import NEW_YORK, PARIS, UTC, Run, contact, new_york, paris, same, utc, workflow


def test_local_moment_on_ordinary_and_daylight_saving_days():
    assert local_moment(datetime(2026, 6, 10).date(), time(9, 0), PARIS) == utc(2026, 6, 10, 7, 0)
    assert local_moment(datetime(2026, 3, 29).date(), time(9, 0), PARIS).utcoffset() == timedelta(hours=2)
    # 02:30 does not exist on the spring-forward night: shifted by the gap, as cron does
    skipped = local_moment(datetime(2026, 3, 29).date(), time(2, 30), PARIS)
    assert skipped.astimezone(UTC) == utc(2026, 3, 29, 1, 30) and (skipped.hour, skipped.minute) == (3, 30)
    # 02:30 happens twice on the fall-back night: the first one
    assert local_moment(datetime(2026, 10, 25).date(), time(2, 30), PARIS).astimezone(UTC) == utc(2026, 10, 25, 0, 30)


def test_next_time_of_day_is_compared_by_instant_in_the_repeated_hour():
    # New York, 1 November 2026: 01:00-02:00 happens in EDT, then again in EST
    second_pass = datetime(2026, 11, 1, 1, 10, tzinfo=NEW_YORK, fold=1)  # 06:10Z
    assert second_pass.astimezone(UTC) == utc(2026, 11, 1, 6, 10)
    # the 01:30 EDT of the first pass is already over; the 01:30 EST of the second is still to come
    assert next_time_of_day(second_pass, time(1, 30), NEW_YORK).astimezone(UTC) == utc(2026, 11, 1, 6, 30)
    late = datetime(2026, 11, 1, 1, 40, tzinfo=NEW_YORK, fold=1)
    assert next_time_of_day(late, time(1, 30), NEW_YORK).astimezone(UTC) == utc(2026, 11, 2, 6, 30)
    first_pass = datetime(2026, 11, 1, 1, 10, tzinfo=NEW_YORK)
    assert next_time_of_day(first_pass, time(1, 30), NEW_YORK).astimezone(UTC) == utc(2026, 11, 1, 5, 30)
    # never before `after`, whatever its zone
    for after in (second_pass, second_pass.astimezone(UTC), late, first_pass):
        for hour in range(24):
            assert next_time_of_day(after, time(hour, 30), NEW_YORK) >= after


def test_next_time_of_day_in_the_skipped_hour():
    before = new_york(2026, 3, 8, 1, 0)
    assert next_time_of_day(before, time(2, 30), NEW_YORK).astimezone(UTC) == utc(2026, 3, 8, 7, 30)  # 03:30 EDT


def test_quiet_hours_contains():
    night = QuietHours(time(21, 0), time(8, 0))
    assert [night.contains(time(h, m)) for h, m in [(20, 59), (21, 0), (0, 0), (7, 59), (8, 0)]] == [
        False, True, True, True, False]
    day = QuietHours(time(12, 0), time(14, 0))
    assert [day.contains(time(h, 0)) for h in (11, 12, 13, 14)] == [False, True, True, False]
    assert not QuietHours(time(9, 0), time(9, 0)).contains(time(9, 0))


def test_quiet_hours_ending_in_the_repeated_hour_end_at_its_second_pass_when_that_is_next():
    rules = SendRules(QuietHours(time(21, 0), time(1, 30)))
    second_pass = datetime(2026, 11, 1, 1, 10, tzinfo=NEW_YORK, fold=1)
    moment, why = next_allowed(second_pass, NEW_YORK, rules)
    assert moment.astimezone(UTC) == utc(2026, 11, 1, 6, 30) and why == ["quiet hours 21:00–01:30"]


def test_next_allowed_combines_send_days_and_quiet_hours():
    rules = SendRules(QuietHours(time(21, 0), time(8, 0)), ("mon", "fri"))
    moment, why = next_allowed(paris(2026, 6, 12, 22, 0), PARIS, rules)  # Friday night
    assert same(moment, paris(2026, 6, 15, 8, 0))
    assert why == ["quiet hours 21:00–08:00", "sat is not a send day", "quiet hours 21:00–08:00"]
    assert next_allowed(paris(2026, 6, 15, 12, 0), PARIS, rules) == (paris(2026, 6, 15, 12, 0), [])


def test_cap_release():
    cap = Cap(2, timedelta(days=1))
    now = utc(2026, 6, 10, 12, 0)
    assert cap_release(now, [], cap) is None
    assert cap_release(now, [now - timedelta(hours=3)], cap) is None
    assert cap_release(now, [now - timedelta(hours=3), now - timedelta(hours=1)], cap) == now + timedelta(hours=21)
    assert cap_release(now, [now - timedelta(days=1), now - timedelta(hours=1)], cap) is None  # left the window
    assert cap_release(now, [now - timedelta(hours=5), now - timedelta(hours=3), now - timedelta(hours=1)],
                       cap) == now + timedelta(hours=21)


def test_cap_windows_are_elapsed_time_across_daylight_saving_changes():
    cap = Cap(1, timedelta(days=1))
    sent = paris(2026, 3, 28, 12, 0)  # CET
    release = cap_release(paris(2026, 3, 29, 11, 30), [sent], cap)
    assert release.astimezone(UTC) == utc(2026, 3, 29, 11, 0)  # 24 h later: 13:00 CEST


def test_later_adds_elapsed_time_and_keeps_the_zone():
    moment = paris(2026, 3, 28, 9, 0)
    result = later(moment, timedelta(days=1))
    assert result.astimezone(UTC) == utc(2026, 3, 29, 8, 0) and result.tzinfo is PARIS
    assert (result.hour, result.minute) == (10, 0)  # 10:00 CEST
    assert later(utc(2026, 1, 1), timedelta(hours=1)) == utc(2026, 1, 1, 1)
    fixed = datetime(2026, 3, 28, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    assert later(fixed, timedelta(days=1)).utcoffset() == timedelta(hours=1)


WAITS = """
goal: {event: order_placed, within: 1d}
steps:
  - wait: 1d
  - task: {title: Call, due: 1d}
  - if: "has_event('page_viewed', within='1d')"
    then: [{score: 1}]
  - wait_for: {event: email_clicked, timeout: 1d}
  - score: 2
"""


@pytest.mark.parametrize("zoned", [
    lambda moment: moment,                                             # a ZoneInfo, as date triggers give it
    lambda moment: moment.astimezone(UTC),                             # UTC, as a daemon's clock gives it
    lambda moment: datetime.fromisoformat(moment.isoformat()),         # a fixed offset, as read back from the store
    lambda moment: moment.astimezone(NEW_YORK),                        # another zone
])
def test_the_same_instant_in_any_zone_gives_the_same_run_across_a_daylight_saving_change(zoned):
    start = paris(2026, 3, 28, 9, 0)  # Saturday 09:00 CET; Sunday is in CEST
    person = contact()
    person.events = [Event("c1", "page_viewed", utc(2026, 3, 28, 7, 30))]  # 24.5 h before the if: outside
    run = Run(workflow(WAITS), person)
    run.enroll(zoned(start))
    run.run_until(utc(2026, 4, 10))
    wait_until, = [entry.extra["until"] for entry in run.log if entry.kind == "wait" and "event" not in entry.extra]
    assert same(datetime.fromisoformat(wait_until), utc(2026, 3, 29, 8, 0))  # 24 h, not the next 09:00
    task = next(effect for effect in run.effects if effect.kind == "task")
    assert same(datetime.fromisoformat(task.data["due"]), utc(2026, 3, 30, 8, 0))
    assert [effect.kind for effect in run.effects] == ["task", "score"]  # the page view is more than 1d old
    timeout = run.entries("timeout")[0]
    assert same(timeout.at, utc(2026, 3, 30, 8, 0))
    early_goal = Run(workflow(WAITS))
    early_goal.enroll(zoned(start))
    early_goal.deliver("order_placed", utc(2026, 3, 29, 8, 0, 1))  # 24 h and 1 s after entry: too late
    assert not early_goal.enrollment.converted
    # has_event(within=...) looks back elapsed time too: 23.5 h before 09:00 CEST on Sunday is 08:30 CET
    viewer = contact()
    viewer.events = [Event("c1", "page_viewed", utc(2026, 3, 28, 7, 30))]
    check = Run(workflow("steps:\n  - if: \"has_event('page_viewed', within='1d')\"\n    then: [{score: 1}]\n"),
                viewer)
    check.enroll(zoned(paris(2026, 3, 29, 9, 0)))
    assert [effect.kind for effect in check.effects] == ["score"]
