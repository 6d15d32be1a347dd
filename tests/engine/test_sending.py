"""When a message goes out: quiet hours (across midnight, across daylight-saving changes), send days, frequency
caps, consent, and transactional workflows that ignore all of these."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from mauto.engine.records import ContactState, SentMessage
from mauto.engine.state import ACTIVE, COMPLETED

from .helpers import UTC, Run, at, contact, new_york, paris, same, utc, workflow

QUIET = 'settings: {quiet_hours: {start: "21:00", end: "08:00"}}\n'
SEND_THEN_WAIT = QUIET + """
steps:
  - id: first
    email: t/one
  - wait: 1d
  - id: second
    email: t/two
"""


def send_times(run: Run) -> list[datetime]:
    return [moment for moment, _, _ in run.sends()]


def one_send(moment: datetime, settings: str = QUIET, person=None, limits: dict | None = None) -> Run:
    """A workflow with one email, entered at `moment` (given to the engine in UTC, as a wall clock would)."""
    run = Run(workflow(settings + "steps:\n  - id: mail\n    email: t/one\n  - score: 1\n"), person, limits=limits)
    run.enroll(at(moment))
    run.run_until(moment + timedelta(days=30))
    return run


# --- quiet hours -------------------------------------------------------------------------------

def test_a_send_inside_quiet_hours_goes_at_their_end_and_the_enrollment_waits_with_it():
    run = Run(workflow(SEND_THEN_WAIT))
    run.enroll(at(paris(2026, 6, 10, 22, 30)))
    # postponed: the enrollment sits on the send step until 08:00 the next day
    assert run.state == ACTIVE and run.enrollment.position == "steps.0"
    assert same(run.enrollment.wake_time, paris(2026, 6, 11, 8, 0))
    assert run.enrollment.waiting == {"postponed": "2026-06-10T20:30:00+00:00"}
    postponed = run.entries("postponed")[0]
    assert (postponed.step, postponed.channel, postponed.template) == ("first", "email", "t/one")
    assert postponed.detail == "quiet hours 21:00–08:00 → 2026-06-11T08:00:00+02:00"
    assert postponed.extra == {"until": "2026-06-11T08:00:00+02:00"}
    assert run.effects == []

    run.run_until(utc(2026, 7, 1))
    # the wait counts from the real send at 08:00, not from 22:30
    assert send_times(run) == [paris(2026, 6, 11, 8, 0), paris(2026, 6, 12, 8, 0)]
    assert run.entries("send")[0].detail == "postponed from 2026-06-10T20:30:00+00:00"
    assert run.entries("send")[1].detail == ""
    assert same(run.entries("wait")[0].at, paris(2026, 6, 11, 8, 0))
    assert run.state == COMPLETED and len(run.entries("postponed")) == 1


@pytest.mark.parametrize(("local", "expected"), [
    ((20, 59), (2026, 6, 10, 20, 59)),   # just before: goes at once
    ((21, 0), (2026, 6, 11, 8, 0)),      # the start is inside
    ((23, 59), (2026, 6, 11, 8, 0)),
    ((0, 0), (2026, 6, 10, 8, 0)),       # after midnight: the same morning
    ((2, 0), (2026, 6, 10, 8, 0)),
    ((7, 59), (2026, 6, 10, 8, 0)),
    ((8, 0), (2026, 6, 10, 8, 0)),       # the end is outside
    ((12, 0), (2026, 6, 10, 12, 0)),
])
def test_quiet_hours_across_midnight(local, expected):
    run = one_send(paris(2026, 6, 10, *local))
    assert send_times(run) == [paris(*expected)]


@pytest.mark.parametrize(("local", "expected"), [((11, 59), (11, 59)), ((12, 0), (14, 0)), ((13, 30), (14, 0)),
                                                 ((14, 0), (14, 0))])
def test_quiet_hours_within_one_day(local, expected):
    run = one_send(paris(2026, 6, 10, *local), 'settings: {quiet_hours: {start: "12:00", end: "14:00"}}\n')
    assert send_times(run) == [paris(2026, 6, 10, *expected)]


def test_quiet_hours_into_the_spring_forward_night_in_paris():
    # Saturday 28 March 2026 22:30 CET; clocks go from 02:00 CET to 03:00 CEST that night
    run = Run(workflow(SEND_THEN_WAIT))
    run.enroll(at(paris(2026, 3, 28, 22, 30)))
    run.run_until(utc(2026, 4, 10))
    assert send_times(run) == [utc(2026, 3, 29, 6, 0), utc(2026, 3, 30, 6, 0)]  # 08:00 CEST both days
    assert [moment.astimezone(paris(2026, 1, 1).tzinfo).hour for moment in send_times(run)] == [8, 8]
    assert run.entries("postponed")[0].detail == "quiet hours 21:00–08:00 → 2026-03-29T08:00:00+02:00"


@pytest.mark.parametrize("moment", [utc(2026, 3, 29, 0, 30),   # 01:30 CET, before the change
                                    utc(2026, 3, 29, 1, 30),   # 03:30 CEST, after it
                                    utc(2026, 3, 28, 20, 0)])  # 21:00 CET the evening before
def test_quiet_hours_during_the_spring_forward_night_end_at_eight_summer_time(moment):
    assert send_times(one_send(moment)) == [utc(2026, 3, 29, 6, 0)]


def test_quiet_hours_into_the_fall_back_night_in_paris():
    # Saturday 24 October 2026 22:30 CEST; clocks go from 03:00 CEST back to 02:00 CET that night
    run = Run(workflow(SEND_THEN_WAIT))
    run.enroll(at(paris(2026, 10, 24, 22, 30)))
    run.run_until(utc(2026, 11, 10))
    assert send_times(run) == [utc(2026, 10, 25, 7, 0), utc(2026, 10, 26, 7, 0)]  # 08:00 CET both days
    assert run.entries("postponed")[0].detail == "quiet hours 21:00–08:00 → 2026-10-25T08:00:00+01:00"


@pytest.mark.parametrize("moment", [utc(2026, 10, 25, 0, 30),   # 02:30 CEST, the first 02:30
                                    utc(2026, 10, 25, 1, 30),   # 02:30 CET, the second one
                                    utc(2026, 10, 25, 6, 59)])  # 07:59 CET
def test_quiet_hours_during_the_repeated_hour_end_at_eight_winter_time(moment):
    assert send_times(one_send(moment)) == [utc(2026, 10, 25, 7, 0)]


def test_a_one_day_wait_across_the_fall_back_change_lasts_24_hours_and_respects_quiet_hours():
    # 08:00 CEST on Saturday + 24 h is 07:00 CET on Sunday: inside quiet hours, so 08:00 CET
    run = Run(workflow(SEND_THEN_WAIT))
    run.enroll(at(paris(2026, 10, 24, 8, 0)))
    run.run_until(utc(2026, 11, 10))
    assert send_times(run) == [utc(2026, 10, 24, 6, 0), utc(2026, 10, 25, 7, 0)]
    assert same(run.entries("postponed")[0].at, utc(2026, 10, 25, 6, 0))


@pytest.mark.parametrize(("moment", "expected"), [
    (new_york(2026, 3, 7, 23, 0), utc(2026, 3, 8, 12, 0)),    # EST evening -> 08:00 EDT
    (utc(2026, 3, 8, 7, 30), utc(2026, 3, 8, 12, 0)),         # 03:30 EDT, just after the change
    (new_york(2026, 10, 31, 22, 0), utc(2026, 11, 1, 13, 0)),  # EDT evening -> 08:00 EST
    (utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 13, 0)),       # 01:30 EST, the second 01:30
])
def test_quiet_hours_across_daylight_saving_changes_in_new_york(moment, expected):
    run = one_send(moment, person=contact(timezone="America/New_York"))
    assert send_times(run) == [expected]


def test_quiet_hours_are_in_the_contacts_own_zone():
    moment = utc(2026, 6, 10, 2, 0)  # 04:00 in Paris, 22:00 the evening before in New York
    assert send_times(one_send(moment, person=contact(timezone="America/New_York"))) == [new_york(2026, 6, 10, 8, 0)]
    assert send_times(one_send(moment, person=contact())) == [paris(2026, 6, 10, 8, 0)]  # the project's zone
    assert send_times(one_send(moment, person=contact(timezone="Not/AZone"))) == [paris(2026, 6, 10, 8, 0)]
    fixed_zone = QUIET.replace("}}", "}, timezone: Asia/Tokyo}")  # 11:00 in Tokyo: allowed
    assert send_times(one_send(moment, fixed_zone, contact(timezone="America/New_York"))) == [moment]


def test_project_quiet_hours_apply_unless_the_workflow_overrides_or_turns_them_off():
    limits = {"quiet_hours": {"start": "21:00", "end": "08:00"}}
    late = paris(2026, 6, 10, 22, 30)
    assert send_times(one_send(late, "", limits=limits)) == [paris(2026, 6, 11, 8, 0)]
    assert send_times(one_send(late, "settings: {quiet_hours: false}\n", limits=limits)) == [late]
    own = 'settings: {quiet_hours: {start: "23:00", end: "09:30"}}\n'
    assert send_times(one_send(late, own, limits=limits)) == [late]
    assert send_times(one_send(paris(2026, 6, 10, 23, 30), own, limits=limits)) == [paris(2026, 6, 11, 9, 30)]


# --- send days ---------------------------------------------------------------------------------

WEEKDAYS = 'settings: {quiet_hours: {start: "21:00", end: "08:00"}, send_days: [mon, tue, wed, thu, fri]}\n'


def test_a_send_on_a_day_off_moves_to_the_next_send_day_after_quiet_hours():
    run = one_send(paris(2026, 6, 13, 10, 0), WEEKDAYS)  # Saturday
    assert send_times(run) == [paris(2026, 6, 15, 8, 0)]  # Monday 08:00
    assert run.entries("postponed")[0].detail == (
        "sat is not a send day; quiet hours 21:00–08:00 → 2026-06-15T08:00:00+02:00")


def test_friday_night_moves_past_the_weekend():
    run = one_send(paris(2026, 6, 12, 22, 0), WEEKDAYS)
    assert send_times(run) == [paris(2026, 6, 15, 8, 0)]
    assert run.entries("postponed")[0].detail == (
        "quiet hours 21:00–08:00; sat is not a send day → 2026-06-15T08:00:00+02:00")


def test_send_days_without_quiet_hours_start_at_midnight():
    run = one_send(paris(2026, 6, 13, 10, 0), "settings: {send_days: [mon]}\n")
    assert send_times(run) == [paris(2026, 6, 15, 0, 0)]


def test_send_days_across_the_spring_forward_change():
    run = one_send(paris(2026, 3, 28, 10, 0), WEEKDAYS)  # Saturday, CET
    assert send_times(run) == [utc(2026, 3, 30, 6, 0)]  # Monday 08:00 CEST


def test_send_days_are_in_the_contacts_zone():
    moment = utc(2026, 6, 13, 2, 0)  # Saturday 04:00 in Paris, Friday 22:00 in New York
    assert send_times(one_send(moment, "settings: {send_days: [fri]}\n",
                               contact(timezone="America/New_York"))) == [moment]
    assert send_times(one_send(moment, "settings: {send_days: [fri]}\n")) == [paris(2026, 6, 19, 0, 0)]


def test_project_send_days_apply():
    run = one_send(paris(2026, 6, 14, 10, 0), "", limits={"send_days": ["mon"]})  # Sunday
    assert send_times(run) == [paris(2026, 6, 15, 0, 0)]


# --- frequency caps ----------------------------------------------------------------------------

THREE_EMAILS = """
steps:
  - id: a
    email: t/a
  - id: b
    email: t/b
  - id: c
    email: t/c
  - score: 1
"""
T0 = utc(2026, 6, 10, 10, 0)  # 12:00 in Paris, a Wednesday


def test_a_frequency_cap_postpones_until_a_slot_frees_and_the_enrollment_waits():
    run = Run(workflow(THREE_EMAILS), limits={"frequency_cap": {"email": {"max": 2, "per": "1d"}}})
    run.enroll(T0)
    assert send_times(run) == [T0, T0]
    release = (T0 + timedelta(days=1)).isoformat()
    assert run.entries("postponed")[0].detail == f"frequency cap 2 email per 1d → {release}"
    assert run.effects[-1].kind == "send"  # the score waits with the postponed email
    run.run_until(T0 + timedelta(days=5))
    assert send_times(run) == [T0, T0, T0 + timedelta(days=1)]
    assert same(run.effects[-1].at, T0 + timedelta(days=1)) and run.effects[-1].kind == "score"


def test_a_cap_counts_what_the_contact_got_from_other_workflows_but_not_transactional_messages():
    person = contact()
    person.messages = [SentMessage(T0 - timedelta(days=6), "email", True, "other"),
                       SentMessage(T0 - timedelta(days=2), "email", True, "other"),
                       SentMessage(T0 - timedelta(days=1), "email", True, "other"),
                       SentMessage(T0 - timedelta(hours=1), "email", False, "receipts"),
                       SentMessage(T0 - timedelta(hours=1), "sms", True, "other")]
    run = one_send(T0, "", person, limits={"frequency_cap": {"email": {"max": 3, "per": "7d"}}})
    assert send_times(run) == [T0 - timedelta(days=6) + timedelta(days=7)]  # the oldest leaves the window


def test_a_cap_release_inside_quiet_hours_moves_to_their_end():
    limits = {"frequency_cap": {"email": {"max": 1, "per": "12h"}}, "quiet_hours": {"start": "21:00",
                                                                                  "end": "08:00"}}
    run = Run(workflow("steps:\n  - email: t/a\n  - wait: 5m\n  - id: b\n    email: t/b\n"), limits=limits)
    run.enroll(at(paris(2026, 6, 10, 10, 0)))
    run.run_until(utc(2026, 7, 1))
    # 10:05 is capped until 22:00, which is quiet: 08:00 the next day
    assert send_times(run) == [paris(2026, 6, 10, 10, 0), paris(2026, 6, 11, 8, 0)]
    assert run.entries("postponed")[0].detail == (
        "frequency cap 1 email per 12h; quiet hours 21:00–08:00 → 2026-06-11T08:00:00+02:00")


def test_caps_are_per_channel():
    limits = {"frequency_cap": {"sms": {"max": 1, "per": "1d"}}}
    run = Run(workflow("steps:\n  - sms: t/a\n  - email: t/b\n  - email: t/c\n  - sms: t/d\n"), limits=limits)
    run.enroll(T0)
    run.run_until(T0 + timedelta(days=5))
    assert run.sends() == [(T0, "sms", "t/a"), (T0, "email", "t/b"), (T0, "email", "t/c"),
                           (T0 + timedelta(days=1), "sms", "t/d")]


def test_a_workflow_cap_replaces_the_projects_and_false_turns_it_off():
    limits = {"frequency_cap": {"email": {"max": 1, "per": "7d"}}}
    own = "settings: {frequency_cap: {email: {max: 3, per: 1d}}}\n"
    relaxed = Run(workflow(own + THREE_EMAILS), limits=limits)
    relaxed.enroll(T0)
    assert send_times(relaxed) == [T0, T0, T0]
    off = Run(workflow("settings: {frequency_cap: false}\n" + THREE_EMAILS), limits=limits)
    off.enroll(T0)
    assert send_times(off) == [T0, T0, T0]
    stricter = Run(workflow("settings: {frequency_cap: {email: {max: 1, per: 1d}}}\n" + THREE_EMAILS))
    stricter.enroll(T0)
    stricter.run_until(T0 + timedelta(days=5))
    assert send_times(stricter) == [T0, T0 + timedelta(days=1), T0 + timedelta(days=2)]


# --- consent -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "channel", "why"), [
    ({"email_consent": False}, "email", "no email consent"),
    ({"email": None}, "email", "no email address"),
    ({"sms_consent": False}, "sms", "no SMS consent"),
    ({"phone": ""}, "sms", "no phone number"),
])
def test_a_marketing_send_without_consent_is_suppressed_and_the_enrollment_goes_on(fields, channel, why):
    person = contact(**fields)
    run = Run(workflow(f"steps:\n  - id: msg\n    {channel}: t/a\n  - wait: 1d\n  - score: 1\n"), person)
    run.enroll(T0)
    suppressed = run.entries("suppressed")
    assert [(entry.step, entry.detail, entry.channel, entry.template) for entry in suppressed] == [
        ("msg", why, channel, "t/a")]
    assert run.sends() == [] and person.messages == []
    assert run.state == ACTIVE and same(run.enrollment.wake_time, T0 + timedelta(days=1))
    run.run_until(T0 + timedelta(days=2))
    assert [effect.kind for effect in run.effects] == ["score"] and run.state == COMPLETED


def test_a_contact_without_any_consent_field_gets_no_marketing():
    person = ContactState("c9", {"email": "c9@example.com"})
    run = Run(workflow("steps:\n  - email: t/a\n"), person)
    run.enroll(T0)
    assert run.entries("suppressed")[0].detail == "no email consent"


def test_the_suppression_list_wins_over_consent():
    person = contact()
    person.suppressed = {"email"}
    run = Run(workflow("steps:\n  - email: t/a\n  - sms: t/b\n"), person)
    run.enroll(T0)
    assert run.entries("suppressed")[0].detail == "email address on the suppression list"
    assert run.sends() == [(T0, "sms", "t/b")]


def test_consent_is_checked_before_quiet_hours_and_again_when_a_postponed_send_is_due():
    person = contact()
    run = Run(workflow(SEND_THEN_WAIT), person)
    run.enroll(at(paris(2026, 6, 10, 22, 30)))
    assert run.entries("postponed")
    person.fields["email_consent"] = False  # unsubscribed overnight
    run.advance(paris(2026, 6, 11, 8, 0))
    assert run.entries("suppressed")[0].detail == "no email consent"
    assert same(run.entries("suppressed")[0].at, paris(2026, 6, 11, 8, 0))
    assert run.enrollment.waiting == {"wait": "steps.1"}  # no longer postponed: in the wait after the send
    assert same(run.enrollment.wake_time, paris(2026, 6, 12, 8, 0))  # the wait counts from 08:00

    no_consent = Run(workflow(SEND_THEN_WAIT), contact(email_consent=False))
    no_consent.enroll(at(paris(2026, 6, 10, 22, 30)))
    assert no_consent.entries("postponed") == [] and no_consent.entries("suppressed")
    assert same(no_consent.enrollment.wake_time, paris(2026, 6, 11, 22, 30))


def test_suppressed_messages_do_not_count_toward_caps():
    person = contact(email_consent=False)
    limits = {"frequency_cap": {"email": {"max": 1, "per": "1d"}}}
    run = Run(workflow(THREE_EMAILS), person, limits=limits)
    run.enroll(T0)
    assert len(run.entries("suppressed")) == 3 and run.entries("postponed") == [] and person.messages == []


# --- transactional -----------------------------------------------------------------------------

TRANSACTIONAL = """
category: transactional
settings: {quiet_hours: {start: "21:00", end: "08:00"}, send_days: [mon]}
steps:
  - email: t/receipt
  - email: t/receipt
  - sms: t/receipt
"""


def test_transactional_ignores_consent_quiet_hours_send_days_and_caps():
    limits = {"quiet_hours": {"start": "20:00", "end": "09:00"}, "send_days": ["mon"],
              "frequency_cap": {"email": {"max": 1, "per": "7d"}, "sms": {"max": 1, "per": "7d"}}}
    person = contact(email_consent=False, sms_consent=False)
    person.messages = [SentMessage(T0 - timedelta(hours=1), "email", True, "other")]
    moment = paris(2026, 6, 13, 23, 30)  # Saturday night
    run = Run(workflow(TRANSACTIONAL), person, limits=limits)
    run.enroll(at(moment))
    assert [(when, channel) for when, channel, _ in run.sends()] == [(moment, "email"), (moment, "email"),
                                                                     (moment, "sms")]
    assert all(effect.data["marketing"] is False for effect in run.effects)
    assert run.entries("postponed") == [] and run.entries("suppressed") == []
    assert [message.marketing for message in person.messages] == [True, False, False, False]
    assert run.state == COMPLETED


@pytest.mark.parametrize(("fields", "why"), [({"email": None}, "no email address"), ({"phone": ""}, "no phone number")])
def test_transactional_still_needs_an_address(fields, why):
    person = contact(**fields)
    run = Run(workflow("category: transactional\nsteps:\n  - email: t/receipt\n  - sms: t/receipt\n"), person)
    run.enroll(T0)
    assert [entry.detail for entry in run.entries("suppressed")] == [why]
    assert len(run.sends()) == 1 and len(person.messages) == 1 and run.state == COMPLETED


def test_transactional_ignores_the_suppression_list():
    person = contact()
    person.suppressed = {"email", "sms"}  # unsubscribed from marketing: receipts still go
    run = Run(workflow(TRANSACTIONAL), person)
    run.enroll(T0)
    assert len(run.sends()) == 3 and run.entries("suppressed") == []


def test_transactional_messages_do_not_use_up_a_marketing_cap():
    person = contact()
    limits = {"frequency_cap": {"email": {"max": 1, "per": "1d"}}}
    Run(workflow(TRANSACTIONAL), person, limits=limits).enroll(T0)
    run = one_send(T0, "", person, limits=limits)
    assert send_times(run) == [T0]


def test_times_in_the_log_and_effects_are_aware_and_in_utc_order():
    run = Run(workflow(SEND_THEN_WAIT))
    run.enroll(at(paris(2026, 3, 28, 22, 30)))
    run.run_until(utc(2026, 4, 10))
    instants = [entry.at.astimezone(UTC) for entry in run.log]
    assert instants == sorted(instants)
