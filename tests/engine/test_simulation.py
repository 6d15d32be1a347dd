"""Every trigger kind, reentry, and what the driver adds to the engine, through `Simulation` on a tmp project."""
from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from mauto.engine.records import ContactState, Event
from mauto.errors import MautoError
from mauto.simulate import Samples, Simulation, select_workflows

from .helpers import new_york, paris, utc


def person(contact_id: str, **fields) -> ContactState:
    return ContactState(contact_id, {"email": f"{contact_id}@example.com", "email_consent": True, **fields})


def entries(result, workflow_id: str, kind: str = "enter") -> list[tuple[str, datetime]]:
    return [(entry.contact, entry.at) for entry in result.timeline
            if entry.workflow == workflow_id and entry.kind == kind]


def skips(result, workflow_id: str) -> list[tuple[str, datetime, str]]:
    return [(entry.contact, entry.at, entry.detail) for entry in result.timeline
            if entry.workflow == workflow_id and entry.kind == "skip"]


def flow(workflow_id: str, trigger: str, steps: str = "  - score: 1\n", extra: str = "") -> str:
    return f"id: {workflow_id}\nversion: 1\nname: {workflow_id}\ntrigger: {trigger}\n{extra}steps:\n{steps}"


# --- event -------------------------------------------------------------------------------------

def test_an_event_trigger_with_where_enrolls_at_the_event_and_past_events_trigger_nothing(sim):
    cart = flow("cart", '{event: cart_abandoned, where: "event.cart_value >= 20"}',
                "  - wait: 1h\n  - id: r1\n    email: t/hi\n")
    start = utc(2026, 6, 10)
    result = sim.run([cart], [person("c1"), person("c2")], [
        Event("c1", "cart_abandoned", start - timedelta(days=1), {"cart_value": 99}),  # history
        Event("c1", "cart_abandoned", utc(2026, 6, 10, 10), {"cart_value": 10}),       # filtered out
        Event("c1", "cart_abandoned", utc(2026, 6, 10, 11), {"cart_value": 80}),
        Event("c2", "cart_abandoned", utc(2026, 6, 10, 12), {"cart_value": 30}),
    ], start, start + timedelta(days=3))
    assert entries(result, "cart") == [("c1", utc(2026, 6, 10, 11)), ("c2", utc(2026, 6, 10, 12))]
    assert skips(result, "cart") == []  # a `where` that is false is not worth a log line
    assert [(message.contact, message.at) for message in result.messages] == [
        ("c1", utc(2026, 6, 10, 12)), ("c2", utc(2026, 6, 10, 13))]
    enrollment = next(item for item in result.enrollments if item.contact == "c1")
    assert enrollment.trigger_event["properties"] == {"cart_value": 80}
    funnel = result.funnels["cart"]
    assert (funnel.entered, funnel.completed, funnel.sent["email"]) == (2, 2, 2)


def test_the_audience_turns_contacts_away_with_a_reason(sim):
    welcome = flow("welcome", "{event: signed_up}", extra="audience: \"contact.country == 'FR'\"\n")
    start = utc(2026, 6, 10)
    result = sim.run([welcome], [person("fr", country="FR"), person("de", country="DE")],
                     [Event("fr", "signed_up", start + timedelta(hours=1)),
                      Event("de", "signed_up", start + timedelta(hours=2))], start, start + timedelta(days=1))
    assert entries(result, "welcome") == [("fr", start + timedelta(hours=1))]
    assert skips(result, "welcome") == [("de", start + timedelta(hours=2),
                                         "not in audience: contact.country == 'FR'")]


def test_an_entry_condition_that_fails_for_one_contact_is_logged_and_the_others_go_on(sim):
    picky = flow("picky", '{event: signed_up, where: "event.source > 3"}')
    start = utc(2026, 6, 10)
    result = sim.run([picky], [person("c1"), person("c2")],
                     [Event("c1", "signed_up", start + timedelta(hours=1), {"source": None}),
                      Event("c2", "signed_up", start + timedelta(hours=2), {"source": 5})], start,
                     start + timedelta(days=1))
    assert entries(result, "picky") == [("c2", start + timedelta(hours=2))]
    (failed,) = [entry for entry in result.timeline if entry.kind == "failed"]
    assert (failed.contact, failed.step, failed.detail) == (
        "c1", "trigger", "entry condition: TypeError: '>' not supported between instances of 'NoneType' and 'int'")


# --- segment -----------------------------------------------------------------------------------

UPGRADE = flow("upgrade", "{event: paid}", "  - update: {set: {lifecycle: customer}, add_tags: [vip]}\n")
DOWNGRADE = flow("downgrade", "{event: refunded}",
                 "  - update: {set: {lifecycle: lead}, remove_tags: [vip]}\n", extra="reentry: always\n")


def test_a_segment_expression_enrolls_contacts_when_they_start_matching(sim):
    customers = flow("customers", "{segment: \"contact.lifecycle == 'customer'\"}")
    start = utc(2026, 6, 10)
    result = sim.run([UPGRADE, customers], [person("c1", lifecycle="customer"), person("c2", lifecycle="lead"),
                                            person("c3", lifecycle="lead")],
                     [Event("c2", "paid", start + timedelta(hours=5))], start, start + timedelta(days=2))
    # c1 matches from the start; c2 once the update made it a customer; c3 never
    assert entries(result, "customers") == [("c1", start), ("c2", start + timedelta(hours=5))]


def test_a_named_segment_with_leaving_and_matching_again(sim):
    vip_once = flow("vip-once", "{segment: vip}")
    vip_always = flow("vip-always", "{segment: vip}", extra="reentry: always\n")
    start = utc(2026, 6, 10)
    events = [Event("c1", "paid", start + timedelta(hours=1)), Event("c1", "refunded", start + timedelta(hours=2)),
              Event("c1", "paid", start + timedelta(hours=3)),
              Event("c1", "page_viewed", start + timedelta(hours=4))]  # still a vip: no new entry
    upgrade = UPGRADE.replace("name: upgrade", "name: upgrade\nreentry: always")
    result = sim.run([upgrade, DOWNGRADE, vip_once, vip_always], [person("c1", lifecycle="lead")], events,
                     start, start + timedelta(days=1))
    assert entries(result, "vip-always") == [("c1", start + timedelta(hours=1)), ("c1", start + timedelta(hours=3))]
    assert entries(result, "vip-once") == [("c1", start + timedelta(hours=1))]
    assert skips(result, "vip-once") == [("c1", start + timedelta(hours=3), "entered before (reentry: never)")]


def test_a_segment_trigger_can_fire_when_a_contact_leaves_it(sim):
    lapsed = flow("lapsed", "{segment: \"contact.lifecycle == 'customer'\", on: leave}")
    either = flow("either", "{segment: \"contact.lifecycle == 'customer'\", on: both}", extra="reentry: always\n")
    start = utc(2026, 6, 10)
    result = sim.run([DOWNGRADE, lapsed, either], [person("c1", lifecycle="customer"), person("c2", lifecycle="lead")],
                     [Event("c1", "refunded", start + timedelta(hours=2))], start, start + timedelta(days=1))
    # c1 was a customer from the start and stopped being one at the refund; c2 never was
    assert entries(result, "lapsed") == [("c1", start + timedelta(hours=2))]
    assert entries(result, "either") == [("c1", start), ("c1", start + timedelta(hours=2))]
    [entered] = [entry for entry in result.timeline if entry.workflow == "lapsed" and entry.kind == "enter"]
    assert entered.detail == "left segment contact.lifecycle == 'customer'"


def test_a_segment_on_events_is_checked_when_an_event_arrives(sim):
    loyal = flow("loyal", "{segment: \"event_count('order_placed', within='30d') >= 2\"}")
    start = utc(2026, 6, 10)
    result = sim.run([loyal], [person("c1"), person("c2")], [
        Event("c1", "order_placed", start - timedelta(days=5)),  # history counts
        Event("c1", "order_placed", start + timedelta(days=1)),
        Event("c2", "order_placed", start + timedelta(days=1)),
    ], start, start + timedelta(days=5))
    assert entries(result, "loyal") == [("c1", start + timedelta(days=1))]


# --- date --------------------------------------------------------------------------------------

BIRTHDAY = flow("birthday", '{date: {field: birthday, every: year, at: "09:00"}}', extra="reentry: always\n")


def test_a_birthday_comes_round_every_year_at_nine_in_the_contacts_zone(sim):
    contacts = [person("ny", birthday=date(1990, 5, 20), timezone="America/New_York"),
                person("paris", birthday=date(1985, 5, 20)),
                person("leap", birthday=date(2000, 2, 29)),
                person("none")]
    result = sim.run([BIRTHDAY], contacts, [], utc(2026, 1, 1), utc(2029, 1, 1))
    assert sorted(entries(result, "birthday")) == sorted([
        ("ny", new_york(2026, 5, 20, 9)), ("ny", new_york(2027, 5, 20, 9)), ("ny", new_york(2028, 5, 20, 9)),
        ("paris", paris(2026, 5, 20, 9)), ("paris", paris(2027, 5, 20, 9)), ("paris", paris(2028, 5, 20, 9)),
        # 29 February: the 28th in ordinary years, the 29th in leap years
        ("leap", paris(2026, 2, 28, 9)), ("leap", paris(2027, 2, 28, 9)), ("leap", paris(2028, 2, 29, 9)),
    ])
    assert utc(2026, 5, 20, 13) in [moment for who, moment in entries(result, "birthday") if who == "ny"]


def test_a_date_trigger_without_reentry_enters_once(sim):
    once = BIRTHDAY.replace("reentry: always\n", "")
    result = sim.run([once], [person("paris", birthday=date(1985, 5, 20))], [], utc(2026, 1, 1), utc(2028, 1, 1))
    assert entries(result, "birthday") == [("paris", paris(2026, 5, 20, 9))]
    assert skips(result, "birthday") == [("paris", paris(2027, 5, 20, 9), "entered before (reentry: never)")]


def test_a_negative_offset_stays_at_the_local_time_across_a_daylight_saving_change(sim):
    renewal = flow("renewal", '{date: {field: renewal, every: year, at: "09:00", offset: -7d}}')
    on_the_day = flow("renewal-day", '{date: {field: renewal, at: "09:00"}}')
    result = sim.run([renewal, on_the_day], [person("c1", renewal=date(2024, 4, 2))], [],
                     utc(2026, 1, 1), utc(2026, 12, 31))
    assert entries(result, "renewal") == [("c1", paris(2026, 3, 26, 9))]  # 09:00 CET = 08:00Z
    assert entries(result, "renewal") == [("c1", utc(2026, 3, 26, 8))]
    assert entries(result, "renewal-day") == [("c1", utc(2026, 4, 2, 7))]  # 09:00 CEST


def test_a_monthly_and_a_one_off_date(sim):
    monthly = flow("monthly", '{date: {field: renewal, every: month, at: "10:00"}}', extra="reentry: always\n")
    once = flow("once", '{date: {field: renewal, every: once, at: "10:00", offset: 1d}}')
    result = sim.run([monthly, once], [person("c1", renewal=date(2026, 1, 31))], [],
                     utc(2026, 1, 1), utc(2026, 5, 15))
    assert [moment for _, moment in entries(result, "monthly")] == [
        paris(2026, 1, 31, 10), paris(2026, 2, 28, 10), paris(2026, 3, 31, 10), paris(2026, 4, 30, 10)]
    assert entries(result, "once") == [("c1", paris(2026, 2, 1, 10))]


# --- schedule ----------------------------------------------------------------------------------

def test_a_schedule_with_day_names_fires_for_the_audience_in_the_project_zone(sim):
    weekly = flow("weekly", '{schedule: {cron: "0 9 * * MON"}}', extra="reentry: always\n"
                  "audience: \"contact.country == 'FR'\"\n")
    result = sim.run([weekly], [person("fr", country="FR"), person("de", country="DE")], [],
                     utc(2026, 3, 18), utc(2026, 4, 8))
    assert entries(result, "weekly") == [("fr", utc(2026, 3, 23, 8)), ("fr", utc(2026, 3, 30, 7)),
                                         ("fr", utc(2026, 4, 6, 7))]  # 09:00 CET, then 09:00 CEST
    assert [who for who, _, why in skips(result, "weekly")] == ["de", "de", "de"]


def test_a_schedule_with_day_numbers_in_its_own_zone(sim):
    weekdays = flow("weekdays", '{schedule: {cron: "30 8 * * 1-5", timezone: America/New_York}}',
                    extra="reentry: always\n")
    sundays = flow("sundays", '{schedule: {cron: "0 9 * * 0"}}', extra="reentry: always\n")
    sundays_seven = flow("sundays-seven", '{schedule: {cron: "0 9 * * 7"}}', extra="reentry: always\n")
    result = sim.run([weekdays, sundays, sundays_seven], [person("c1")], [], utc(2026, 3, 5), utc(2026, 3, 11))
    assert [moment for _, moment in entries(result, "weekdays")] == [
        utc(2026, 3, 5, 13, 30), utc(2026, 3, 6, 13, 30),  # Thursday, Friday: EST
        utc(2026, 3, 9, 12, 30), utc(2026, 3, 10, 12, 30)]  # Monday, Tuesday: EDT
    assert [moment for _, moment in entries(result, "sundays")] == [paris(2026, 3, 8, 9)]
    assert [moment for _, moment in entries(result, "sundays-seven")] == [paris(2026, 3, 8, 9)]


def test_a_schedule_does_not_enroll_a_contact_still_inside(sim):
    daily = flow("daily", '{schedule: {cron: "0 9 * * *"}}', "  - wait: 36h\n", extra="reentry: always\n")
    result = sim.run([daily], [person("c1")], [], utc(2026, 6, 10), utc(2026, 6, 14))
    assert [moment for _, moment in entries(result, "daily")] == [paris(2026, 6, 10, 9), paris(2026, 6, 12, 9)]
    assert [(moment, why) for _, moment, why in skips(result, "daily")] == [
        (paris(2026, 6, 11, 9), "already in this workflow"), (paris(2026, 6, 13, 9), "already in this workflow")]


# --- inactivity --------------------------------------------------------------------------------

WINBACK = flow("winback", "{inactivity: {event: order_placed, for: 90d}}")


def test_inactivity_enrolls_at_the_last_event_plus_the_period(sim):
    start = utc(2026, 3, 1)
    contacts = [person("c1"), person("c2"), person("c3"), person("c4")]
    events = [Event("c1", "order_placed", utc(2026, 1, 1, 10)),
              Event("c2", "order_placed", utc(2026, 1, 1, 10)),
              Event("c2", "order_placed", utc(2026, 3, 15, 12)),  # newer: the January one no longer counts
              Event("c4", "order_placed", utc(2025, 10, 1))]      # already inactive at the start
    result = sim.run([WINBACK], contacts, events, start, utc(2026, 12, 31))
    assert entries(result, "winback") == [("c4", start), ("c1", utc(2026, 4, 1, 10)), ("c2", utc(2026, 6, 13, 12))]


def test_inactivity_after_entering_is_not_again_unless_reentry_allows(sim):
    start = utc(2026, 3, 1)
    events = [Event("c1", "order_placed", utc(2026, 1, 1, 10)), Event("c1", "order_placed", utc(2026, 5, 1, 10))]
    once = sim.run([WINBACK], [person("c1")], events, start, utc(2026, 12, 31))
    assert entries(once, "winback") == [("c1", utc(2026, 4, 1, 10))]
    assert skips(once, "winback") == [("c1", utc(2026, 7, 30, 10), "entered before (reentry: never)")]
    again = sim.run([WINBACK.replace("steps:", "reentry: always\nsteps:")], [person("c1")], events, start,
                    utc(2026, 12, 31))
    assert entries(again, "winback") == [("c1", utc(2026, 4, 1, 10)), ("c1", utc(2026, 7, 30, 10))]


def test_inactivity_with_where_counts_only_matching_events(sim):
    big = flow("big", '{inactivity: {event: order_placed, for: 90d, where: "event.total > 50"}}')
    events = [Event("c1", "order_placed", utc(2026, 1, 1, 10), {"total": 100}),
              Event("c1", "order_placed", utc(2026, 3, 15), {"total": 10})]
    result = sim.run([big], [person("c1")], events, utc(2026, 3, 1), utc(2026, 12, 31))
    assert entries(result, "big") == [("c1", utc(2026, 4, 1, 10))]
    assert skips(result, "big") == []


def test_inactivity_enters_once_per_quiet_period_even_with_reentry_always(sim):
    big = flow("big", '{inactivity: {event: order_placed, for: 90d, where: "event.total > 50"}}',
               extra="reentry: always\n")
    events = [Event("c1", "order_placed", utc(2026, 1, 1, 10), {"total": 100}),
              Event("c1", "order_placed", utc(2026, 3, 15), {"total": 10}),   # filtered out by `where`
              Event("c1", "order_placed", utc(2026, 3, 16), {"total": 10}),
              Event("c1", "order_placed", utc(2026, 5, 1), {"total": 10}),    # after the entry
              Event("c1", "order_placed", utc(2026, 6, 1, 12), {"total": 60})]  # a new period starts
    result = sim.run([big], [person("c1")], events, utc(2026, 3, 1), utc(2026, 12, 31))
    assert entries(result, "big") == [("c1", utc(2026, 4, 1, 10)), ("c1", utc(2026, 8, 30, 12))]
    assert skips(result, "big") == []


# --- reentry -----------------------------------------------------------------------------------

T0 = utc(2026, 6, 10, 10)
THREE_VISITS = [Event("c1", "go", T0), Event("c1", "go", T0 + timedelta(days=1)),
                Event("c1", "go", T0 + timedelta(days=40))]


def test_reentry_never_is_the_default(sim):
    result = sim.run([flow("w", "{event: go}")], [person("c1")], THREE_VISITS, T0, T0 + timedelta(days=60))
    assert entries(result, "w") == [("c1", T0)]
    assert [(moment, why) for _, moment, why in skips(result, "w")] == [
        (T0 + timedelta(days=1), "entered before (reentry: never)"),
        (T0 + timedelta(days=40), "entered before (reentry: never)")]


def test_reentry_always(sim):
    result = sim.run([flow("w", "{event: go}", extra="reentry: always\n")], [person("c1")], THREE_VISITS, T0,
                     T0 + timedelta(days=60))
    assert [moment for _, moment in entries(result, "w")] == [event.at for event in THREE_VISITS]


def test_reentry_after_a_period_counts_from_the_last_entry(sim):
    result = sim.run([flow("w", "{event: go}", extra="reentry: {after: 30d}\n")], [person("c1")], THREE_VISITS,
                     T0, T0 + timedelta(days=60))
    assert [moment for _, moment in entries(result, "w")] == [T0, T0 + timedelta(days=40)]
    assert skips(result, "w") == [("c1", T0 + timedelta(days=1), f"entered {T0.isoformat()}; reentry after 30d")]
    exactly = sim.run([flow("w", "{event: go}", extra="reentry: {after: 30d}\n")], [person("c1")],
                      [Event("c1", "go", T0), Event("c1", "go", T0 + timedelta(days=30))], T0, T0 + timedelta(days=60))
    assert [moment for _, moment in entries(exactly, "w")] == [T0, T0 + timedelta(days=30)]


def test_a_contact_is_never_in_the_same_workflow_twice_at_once(sim):
    events = [Event("c1", "go", T0), Event("c1", "go", T0 + timedelta(days=1)),
              Event("c1", "go", T0 + timedelta(days=8))]
    result = sim.run([flow("w", "{event: go}", "  - wait: 7d\n", extra="reentry: always\n")], [person("c1")],
                     events, T0, T0 + timedelta(days=20))
    assert [moment for _, moment in entries(result, "w")] == [T0, T0 + timedelta(days=8)]
    assert skips(result, "w") == [("c1", T0 + timedelta(days=1), "already in this workflow")]
    enrollments = [enrollment for enrollment in result.enrollments if enrollment.workflow == "w"]
    assert [enrollment.state for enrollment in enrollments] == ["completed", "completed"]


def test_start_does_not_put_a_contact_in_a_workflow_twice(sim):
    target = flow("target", "{event: never}", "  - wait: 3d\n", extra="reentry: always\n")
    starter = flow("starter", "{event: go}", "  - start: target\n", extra="reentry: always\n")
    events = [Event("c1", "go", T0 + timedelta(days=days)) for days in (0, 1, 4)]
    result = sim.run([starter, target], [person("c1")], events, T0, T0 + timedelta(days=10))
    assert [(entry.at, entry.detail) for entry in result.timeline
            if entry.workflow == "target" and entry.kind == "enter"] == [
        (T0, "started by starter"), (T0 + timedelta(days=4), "started by starter")]
    assert skips(result, "target") == [("c1", T0 + timedelta(days=1), "already in this workflow")]


# --- what the driver adds -----------------------------------------------------------------------

def test_an_update_emits_contact_updated_with_the_changes(sim):
    watch = flow("watch", "{event: contact_updated, where: \"'lifecycle' in event.changed\"}",
                 "  - task: {title: \"{{ event.previous.lifecycle }} to {{ contact.lifecycle }}: "
                 "{{ event.changed | join(',') }}\"}\n")
    result = sim.run([UPGRADE, watch], [person("c1", lifecycle="lead")], [Event("c1", "paid", T0)],
                     T0, T0 + timedelta(days=1))
    assert entries(result, "watch") == [("c1", T0)]
    task = next(entry for entry in result.timeline if entry.kind == "task")
    assert task.detail == "lead to customer: lifecycle,tags"
    updated = [event for event in result.contacts["c1"].events if event.name == "contact_updated"]
    assert [(event.at, event.properties) for event in updated] == [
        (T0, {"changed": ["lifecycle", "tags"], "previous": {"lifecycle": "lead", "tags": []}})]


def test_score_and_lists_changes_are_contact_updated_events_too(sim):
    changes = flow("changes", "{event: go}", "  - score: 5\n  - lists: {add: [vip]}\n")
    result = sim.run([changes], [person("c1")], [Event("c1", "go", T0)], T0, T0 + timedelta(days=1))
    (updated,) = [event for event in result.contacts["c1"].events if event.name == "contact_updated"]
    assert updated.properties == {"changed": ["lists", "score"], "previous": {"score": 0, "lists": []}}
    assert result.contacts["c1"].fields["score"] == 5 and result.contacts["c1"].fields["lists"] == ["vip"]


def test_a_webhook_gets_the_sample_response_into_vars(sim):
    hook = flow("hook", "{event: go}", "  - webhook: {url: \"https://crm.example/{{ contact.id }}\", as: crm}\n"
                "  - if: \"vars.crm.tier == 'gold'\"\n    then: [{score: 10}]\n    else: [{score: -10}]\n",
                extra="reentry: always\n")
    result = sim.run([hook], [person("c1"), person("c2")], [Event("c1", "go", T0), Event("c2", "go", T0)], T0,
                     T0 + timedelta(days=1), webhooks={"https://crm.example/c1": {"tier": "gold"}})
    assert result.contacts["c1"].fields["score"] == 10
    first, second = result.enrollments
    assert first.vars == {"crm": {"tier": "gold"}}
    # no sample response for c2: an empty one, so `vars.crm.tier` is undefined and the enrollment fails, saying why
    assert second.vars == {"crm": {}} and second.state == "failed"
    assert second.reason == "step 2: UndefinedError: 'dict object' has no attribute 'tier'"


def test_coupons_come_from_the_pool_until_it_is_empty(sim):
    coupon = flow("coupon", "{event: go}", "  - assign_coupon: {pool: CART10, as: coupon}\n  - sms: t/hi\n")
    contacts = [ContactState(cid, {"phone": "+336000000" + cid[-1], "sms_consent": True}) for cid in ("c1", "c2")]
    result = sim.run([coupon], contacts, [Event("c1", "go", T0), Event("c2", "go", T0 + timedelta(hours=1))], T0,
                     T0 + timedelta(days=1), coupons={"CART10": ["CART10-A"]})
    assert [(message.contact, message.text) for message in result.messages] == [("c1", "Hi CART10-A\n")]
    states = {enrollment.contact: (enrollment.state, enrollment.reason) for enrollment in result.enrollments}
    assert states == {"c1": ("completed", "reached the end"), "c2": ("failed", "coupon pool CART10 is empty")}
    assert result.funnels["coupon"].failed == 1


def test_an_exit_during_a_wait_does_not_count_the_next_step_as_reached(sim):
    cart = flow("cart", "{event: go}", "  - wait: 2d\n  - id: r1\n    email: t/hi\n",
                extra="exit_on: [order_placed]\n")
    result = sim.run([cart], [person("c1"), person("c2")],
                     [Event("c1", "go", T0), Event("c2", "go", T0),
                      Event("c1", "order_placed", T0 + timedelta(days=1))],
                     T0, T0 + timedelta(days=5))
    funnel = result.funnels["cart"]
    assert (funnel.entered, funnel.exited, funnel.completed) == (2, 1, 1)
    assert dict(funnel.steps) == {"1": 2, "r1": 1}
    assert funnel.kinds == {"1": "wait", "r1": "email"}
    (exit_entry,) = [entry for entry in result.timeline if entry.kind == "exit"]
    assert (exit_entry.step, exit_entry.at, exit_entry.detail) == ("1", T0 + timedelta(days=1), "exit_on order_placed")


def test_a_goal_that_is_also_an_exit_on_event_is_a_conversion_in_the_funnel(sim):
    cart = flow("cart", "{event: go}", "  - wait: 2d\n  - id: r1\n    email: t/hi\n",
                extra="exit_on: [order_placed]\ngoal: {event: order_placed, within: 7d}\n")
    events = [Event("c1", "go", T0), Event("c1", "order_placed", T0 + timedelta(days=1))]
    result = sim.run([cart], [person("c1")], events, T0, T0 + timedelta(days=5))
    funnel = result.funnels["cart"]
    assert (funnel.converted, funnel.exited) == (1, 0)
    assert result.enrollments[0].state == "converted"


def test_project_limits_in_a_simulation_quiet_hours_in_the_contacts_zone_and_a_cap_across_workflows(
        sim_with_limits):
    project = sim_with_limits('limits:\n  quiet_hours: {start: "21:00", end: "08:00"}\n'
                              '  frequency_cap: {email: {max: 1, per: 1d}}\n')
    first = flow("first", "{event: go}", "  - id: a\n    email: t/hi\n")
    second = flow("second", "{event: go}", "  - id: b\n    email: t/hi\n  - score: 1\n")
    start = utc(2026, 6, 10)
    ny = person("ny", timezone="America/New_York")
    result = project.run([first, second], [ny], [Event("ny", "go", utc(2026, 6, 10, 3, 0))],  # 23:00 in New York
                         start, start + timedelta(days=5))
    # both are due at 08:00 New York time; the cap lets one through and the other a day later
    assert [(message.workflow, message.at) for message in result.messages] == [
        ("first", new_york(2026, 6, 10, 8, 0)), ("second", new_york(2026, 6, 11, 8, 0))]
    postponed = [(entry.workflow, entry.at, entry.detail) for entry in result.timeline if entry.kind == "postponed"]
    assert postponed == [
        ("first", utc(2026, 6, 10, 3, 0), "quiet hours 21:00–08:00 → 2026-06-10T08:00:00-04:00"),
        ("second", utc(2026, 6, 10, 3, 0), "quiet hours 21:00–08:00 → 2026-06-10T08:00:00-04:00"),
        ("second", new_york(2026, 6, 10, 8, 0), "frequency cap 1 email per 1d → 2026-06-11T08:00:00-04:00")]
    score = next(entry for entry in result.timeline if entry.kind == "score")
    assert score.at == new_york(2026, 6, 11, 8, 0)  # the step after waits for the real send
    assert (result.funnels["second"].postponed, result.funnels["second"].sent["email"]) == (2, 1)


def test_result_zones_are_each_contacts_own_whatever_the_workflows_say(sim):
    fixed = flow("aaa-fixed", "{event: go}", extra="settings: {timezone: America/Los_Angeles}\n")
    result = sim.run([fixed], [person("ny", timezone="America/New_York"), person("plain"),
                               person("odd", timezone="Nowhere/Land")], [], T0, T0 + timedelta(days=1))
    assert result.zones == {"ny": "America/New_York", "plain": "Europe/Paris", "odd": "Europe/Paris"}


def test_the_lint_before_a_simulation_checks_dates_against_its_start_not_today(sim):
    (sim.root / "workflows" / "sale.yaml").write_text(
        'id: sale\nversion: 1\nname: Sale\ntrigger: {event: go}\nsteps:\n  - wait: {until: "2020-06-01"}\n'
        "  - id: hi\n    email: t/hi\n", encoding="utf-8")
    workflows, every = select_workflows(sim.project, None, utc(2020, 5, 1))
    assert [workflow.id for workflow in workflows] == ["sale"] and len(every) == 1
    with pytest.raises(MautoError, match="wait-date-past"):
        select_workflows(sim.project, None, utc(2020, 6, 2))


def test_a_contact_filter_keeps_only_that_contacts_messages(sim):
    hello = sim.workflow(flow("hello", "{event: go}", "  - id: hi\n    email: t/hi\n"))
    contacts = [person("c1"), person("c2")]
    samples = Samples(contacts, [Event("c1", "go", T0), Event("c2", "go", T0)])
    result = Simulation(sim.project, [hello], samples, T0, T0 + timedelta(days=1), [hello],
                        contact_filter="c2").run()
    assert [message.contact for message in result.messages] == ["c2"]
    assert {entry.contact for entry in result.timeline} == {"c2"}
    assert result.funnels["hello"].sent["email"] == 1


def test_a_simulation_gives_the_same_result_twice(sim):
    split = flow("split", "{event: go}", "  - split:\n      variants:\n        a: {weight: 30, steps: [{score: 1}]}\n"
                 "        b: {weight: 70}\n", extra="reentry: always\n")
    contacts = [person(f"c{number}") for number in range(200)]
    events = [Event(contact.id, "go", T0) for contact in contacts]
    first = sim.run([split], contacts, events, T0, T0 + timedelta(days=1))
    contacts = [person(f"c{number}") for number in range(200)]
    second = sim.run([split], contacts, events, T0, T0 + timedelta(days=1))
    assert [entry.to_dict() for entry in first.timeline] == [entry.to_dict() for entry in second.timeline]
    assert set(first.funnels["split"].variants) == {"steps.0:a", "steps.0:b"}


# --- consent events and memory (the loop shared with the daemon, issue 11) ---------------------------------

def test_an_unsubscribe_or_a_hard_bounce_in_the_samples_stops_the_emails_as_in_the_daemon(sim):
    # The simulation used to ignore them (only the daemon applied them): it said a contact who unsubscribed
    # would get the reminder.
    series = flow("series", "{event: signed_up}", "  - id: first\n    email: t/hi\n  - wait: 1d\n"
                                                  "  - id: second\n    email: t/hi\n",
                  extra="category: marketing\n")
    start = utc(2026, 6, 10)
    result = sim.run([series], [person("quits"), person("bounces"), person("soft"), person("stays")], [
        *(Event(who, "signed_up", start + timedelta(hours=1)) for who in ("quits", "bounces", "soft", "stays")),
        Event("quits", "unsubscribed", start + timedelta(hours=2), {"channel": "email"}),
        Event("bounces", "email_bounced", start + timedelta(hours=2), {"kind": "hard"}),
        Event("soft", "email_bounced", start + timedelta(hours=2), {"kind": "soft"}),
    ], start, start + timedelta(days=3))
    sent = sorted((message.contact, message.step) for message in result.messages)
    assert sent == [("bounces", "first"), ("quits", "first"), ("soft", "first"), ("soft", "second"),
                    ("stays", "first"), ("stays", "second")]
    assert result.contacts["quits"].fields["email_consent"] is False
    assert result.contacts["bounces"].suppressed == {"email"} and result.contacts["soft"].suppressed == set()
    refused = {entry.contact: entry.kind for entry in result.timeline if entry.step == "second"}
    assert refused["quits"] == refused["bounces"] == "suppressed"


def test_without_a_timeline_ended_enrollments_and_old_sends_are_not_kept(sim_with_limits):
    # A year of monthly re-entries must hold what a month holds: of an ended enrollment only its entry time
    # (the reentry rule), of the sends only those within the longest frequency cap (7 days here).
    sim = sim_with_limits("limits:\n  frequency_cap: {email: {max: 10, per: 7d}}\n")
    monthly = sim.workflow(flow("monthly", "{event: visited}", "  - id: hi\n    email: t/hi\n",
                                extra="reentry: {after: 20d}\n"))
    start = utc(2026, 1, 5)
    visits = [Event("c1", "visited", start + timedelta(days=30 * month + days, hours=1))
              for month in range(12) for days in (0, 10)]  # the second visit of each month is turned away
    samples = Samples([person("c1")], visits)
    simulation = Simulation(sim.project, [monthly], samples, start, start + timedelta(days=365), [monthly],
                            keep_timeline=False)
    result = simulation.run()
    assert result.funnels["monthly"].entered == 12 and result.funnels["monthly"].sent["email"] == 12
    assert sum(entry.detail.startswith("entered ") for entry in kept_timeline(sim, monthly, visits, start)) == 12
    held = simulation.ports.enrollments
    assert held.by_id == {} and held.in_flight == {}
    [last] = held.history("monthly", "c1")  # the latest entry, all the reentry rule reads
    assert type(last).__name__ == "Entered" and last.entered_at == visits[-2].at
    assert len(result.contacts["c1"].messages) == 1  # the last month's; the others are past the 7-day window
    kept = Simulation(sim.project, [monthly], Samples([person("c1")], visits), start, start + timedelta(days=365),
                      [monthly]).run()
    assert len(kept.enrollments) == 12 and len(kept.contacts["c1"].messages) == 12


def kept_timeline(sim, workflow, visits, start):
    return Simulation(sim.project, [workflow], Samples([person("c1")], visits), start,
                      start + timedelta(days=365), [workflow]).run().timeline


def test_without_a_timeline_events_nothing_reads_are_not_kept_in_the_history(sim):
    scoring = sim.workflow(flow("scoring", "{event: visited}", "  - score: 1\n"))
    reading = sim.workflow(flow("reading", "{event: visited}", "  - if: \"has_event('contact_updated')\"\n"
                                                               "    then:\n      - score: 1\n"))
    start = utc(2026, 1, 5)
    visits = [Event("c1", "visited", start + timedelta(days=day)) for day in range(3)]

    def history(workflows) -> list[str]:
        simulation = Simulation(sim.project, workflows, Samples([person("c1")], list(visits)), start,
                                start + timedelta(days=5), workflows, keep_timeline=False)
        return [event.name for event in simulation.run().contacts["c1"].events]

    assert history([scoring]) == ["visited"] * 3  # contact_updated is written nowhere: never kept
    assert history([scoring, reading]) == ["visited", "contact_updated", "visited", "visited"]  # asked for: kept


def test_an_expression_gets_only_the_records_it_names(sim, monkeypatch):
    # A trigger event read back from the enrollment and a contact's record cost a dict and a parse each: an
    # `if` on the contact reads no event, an `if` on the event no contact (both once read them for every `if`).
    from mauto.engine import context, records

    made = {"event": 0, "contact": 0}
    real_event, real_contact = records.Event.from_dict, records.ContactState.record
    monkeypatch.setattr(records.Event, "from_dict", classmethod(
        lambda cls, data: made.__setitem__("event", made["event"] + 1) or real_event.__func__(cls, data)))
    monkeypatch.setattr(records.ContactState, "record", lambda self, declared: made.__setitem__(
        "contact", made["contact"] + 1) or real_contact(self, declared))
    branching = flow("branching", "{event: visited}", "  - if: \"contact.score >= 50\"\n    then:\n"
                                                      "      - score: 1\n  - if: \"event.page == 'cart'\"\n"
                                                      "    then:\n      - score: 2\n")
    start = utc(2026, 1, 5)
    result = sim.run([branching], [person("c1", score=60)], [Event("c1", "visited", start, {"page": "cart"})],
                     start, start + timedelta(days=1))
    assert [entry.detail for entry in result.timeline if entry.kind == "branch"] == [
        "contact.score >= 50 → true (contact.score = 60)", "event.page == 'cart' → true"]
    assert made == {"event": 1, "contact": 1}
    assert context.built_names("contact.score >= 50 and has_event('x', where='event.y > 1')") == {"contact"}


def test_the_collector_is_off_during_a_run_and_on_again_after(sim, monkeypatch):
    import gc

    from mauto.driver.loop import Driver

    seen: list[bool] = []
    real = Driver.process
    monkeypatch.setattr(Driver, "process", lambda self, at, item: seen.append(gc.isenabled()) or real(self, at, item))
    start = utc(2026, 1, 5)
    sim.run([flow("w", "{event: visited}")], [person("c1")], [Event("c1", "visited", start)], start,
            start + timedelta(days=1))
    assert seen and not any(seen) and gc.isenabled()


def test_sample_events_are_queued_as_the_clock_reaches_them_in_the_order_they_would_have_been(sim):
    # A year of sample events sat in the queue from the start (45 MB for 300,000): now each is fed when the
    # clock reaches it, keeping its place before the other items of its moment (here the daily schedule's).
    daily = flow("daily", '{schedule: {cron: "0 9 * * *"}}', "  - score: 1\n", extra="reentry: always\n")
    visits = flow("visits", "{event: visited}", "  - score: 10\n", extra="reentry: always\n")
    start = utc(2026, 1, 5)
    nine = paris(2026, 1, 5, 9)  # the schedule's 09:00 is the project's (Europe/Paris)
    events = [Event("c1", "visited", nine + timedelta(days=day)) for day in range(30)]
    workflows = [sim.workflow(visits), sim.workflow(daily)]
    simulation = Simulation(sim.project, workflows, Samples([person("c1")], list(events)), start,
                            start + timedelta(days=30), workflows)
    sizes: list[int] = []
    real = simulation.driver.process

    def counting(at, item):
        sizes.append(len(simulation.driver.queue))
        real(at, item)

    simulation.driver.process = counting  # type: ignore[method-assign]
    result = simulation.run()
    enters = [(entry.at, entry.workflow) for entry in result.timeline if entry.kind == "enter"]
    assert [(at - nine, workflow) for at, workflow in enters[:4]] == [
        (timedelta(0), "visits"), (timedelta(0), "daily"), (timedelta(days=1), "visits"), (timedelta(days=1), "daily")]
    assert len(enters) == 60 and max(sizes) < 40  # the 30 visits were never all in the queue with the 30 nines
