"""Every step kind, run by the engine directly: its effects, the enrollment state it leaves, and its log."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from mauto.engine.interpreter import variant_for
from mauto.engine.records import Event
from mauto.engine.state import ACTIVE, COMPLETED, EXITED, FAILED, PENDING, WAITING_EVENT

from .helpers import Run, contact, new_york, paris, same, utc, workflow

T0 = utc(2026, 6, 10, 10, 0)  # a Wednesday, no daylight-saving change near


# --- wait ----------------------------------------------------------------------------------

def test_wait_sleeps_for_its_duration_then_runs_the_next_step():
    run = Run(workflow("""
        steps:
          - wait: 2d
          - score: 1
    """))
    run.enroll(T0)
    assert run.state == ACTIVE
    assert same(run.enrollment.wake_time, T0 + timedelta(days=2))
    assert run.enrollment.position == "steps.1"
    assert [(e.step, e.kind, e.detail) for e in run.log] == [
        ("trigger", "enter", "go"), ("1", "wait", f"until {(T0 + timedelta(days=2)).isoformat()}")]

    run.advance(T0 + timedelta(days=1))  # not due yet: nothing happens
    assert run.effects == [] and len(run.log) == 2

    run.advance(T0 + timedelta(days=2))
    assert [effect.kind for effect in run.effects] == ["score"]
    assert same(run.effects[0].at, T0 + timedelta(days=2))
    assert run.state == COMPLETED
    assert run.log[-1].kind == "complete" and run.log[-1].step == "end"


def test_wait_accepts_compound_and_iso_durations():
    for text, length in [("1h30m", timedelta(hours=1, minutes=30)), ("P3D", timedelta(days=3)),
                         ("2w", timedelta(weeks=2)), ("PT45M", timedelta(minutes=45))]:
        run = Run(workflow(f"steps:\n  - wait: {text}\n"))
        run.enroll(T0)
        assert same(run.enrollment.wake_time, T0 + length), text


def test_a_late_advance_runs_the_step_at_its_wake_time_not_at_the_late_now():
    run = Run(workflow("""
        steps:
          - wait: 1h
          - task: {title: Call, due: 1d}
    """))
    run.enroll(T0)
    run.advance(T0 + timedelta(hours=5))
    assert same(run.effects[0].at, T0 + timedelta(hours=1))
    assert run.effects[0].data["due"] == (T0 + timedelta(hours=1, days=1)).isoformat()


def test_wait_until_a_time_of_day_in_the_contacts_zone():
    run = Run(workflow("steps:\n  - wait: {until: \"09:00\"}\n  - score: 1\n"),
              contact(timezone="America/New_York"))
    run.enroll(utc(2026, 6, 10, 14, 0))  # 10:00 in New York: 09:00 has passed today
    assert same(run.enrollment.wake_time, new_york(2026, 6, 11, 9, 0))
    assert run.log[-1].extra["until"] == "2026-06-11T09:00:00-04:00"


def test_wait_until_later_today_and_exactly_now():
    flow = workflow("steps:\n  - wait: {until: \"09:00\"}\n  - score: 1\n")
    early = Run(flow)
    early.enroll(paris(2026, 6, 10, 7, 15))
    assert same(early.enrollment.wake_time, paris(2026, 6, 10, 9, 0))
    on_time = Run(flow)
    on_time.enroll(paris(2026, 6, 10, 9, 0))
    assert on_time.state == COMPLETED  # 09:00 is now: no wait
    assert ("1", "wait") in on_time.kinds()
    assert on_time.entries("wait")[0].detail == "already past: no wait"


def test_wait_until_uses_the_project_zone_for_a_contact_without_one_or_with_a_bad_one():
    flow = workflow("steps:\n  - wait: {until: \"09:00\"}\n")
    for person in (contact(), contact(timezone="Mars/Olympus"), contact(timezone="")):
        run = Run(flow, person)
        run.enroll(utc(2026, 6, 10, 8, 0))  # 10:00 in Paris
        assert same(run.enrollment.wake_time, paris(2026, 6, 11, 9, 0))


def test_timezone_contact_written_out_is_the_default():
    flow = workflow('settings: {timezone: contact}\nsteps:\n  - wait: {until: "09:00"}\n')
    run = Run(flow, contact(timezone="America/New_York"))
    run.enroll(utc(2026, 6, 10, 14, 0))
    assert same(run.enrollment.wake_time, new_york(2026, 6, 11, 9, 0))
    default = Run(flow)
    default.enroll(utc(2026, 6, 10, 14, 0))
    assert same(default.enrollment.wake_time, paris(2026, 6, 11, 9, 0))


@pytest.mark.parametrize(("until", "entered", "expected"), [
    ("09:00", utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 7, 0)),     # 01:00 CET -> 09:00 CEST the same day
    ("02:30", utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 1, 30)),    # 02:30 does not exist: 03:30 CEST, as cron
    ("09:00", utc(2026, 10, 24, 22, 0), utc(2026, 10, 25, 8, 0)),  # 00:00 CEST -> 09:00 CET
    ("02:30", utc(2026, 10, 24, 22, 0), utc(2026, 10, 25, 0, 30)),  # the first 02:30 (CEST)
    ("02:30", utc(2026, 10, 25, 0, 45), utc(2026, 10, 25, 1, 30)),  # after it: the second 02:30 (CET)
    ("02:30", utc(2026, 10, 25, 1, 45), utc(2026, 10, 26, 1, 30)),  # after both: the next day
])
def test_wait_until_on_daylight_saving_days_in_paris(until, entered, expected):
    run = Run(workflow(f'steps:\n  - wait: {{until: "{until}"}}\n'))
    run.enroll(entered)
    assert same(run.enrollment.wake_time, expected)
    assert run.enrollment.wake_time > entered


def test_wait_until_uses_the_workflow_zone_when_it_names_one():
    flow = workflow("""
        settings: {timezone: Asia/Tokyo}
        steps:
          - wait: {until: "09:00"}
    """)
    run = Run(flow, contact(timezone="America/New_York"))
    run.enroll(utc(2026, 6, 10, 1, 0))  # 10:00 in Tokyo
    assert same(run.enrollment.wake_time, utc(2026, 6, 11, 0, 0))  # 09:00 Tokyo (+09:00)


def test_wait_until_a_time_on_given_days_across_a_daylight_saving_change():
    flow = workflow("steps:\n  - wait: {until: \"09:00\", days: [mon]}\n")
    run = Run(flow, contact(timezone="America/New_York"))
    run.enroll(new_york(2026, 3, 4, 10, 0))  # Wednesday, EST (-05:00)
    # the next Monday is after New York moves to EDT on Sunday 8 March
    assert same(run.enrollment.wake_time, utc(2026, 3, 9, 13, 0))
    assert run.enrollment.wake_time.utcoffset() == timedelta(hours=-4)

    monday = Run(flow, contact(timezone="America/New_York"))
    monday.enroll(new_york(2026, 3, 9, 8, 0))  # a Monday before 09:00: the same day
    assert same(monday.enrollment.wake_time, new_york(2026, 3, 9, 9, 0))
    after = Run(flow, contact(timezone="America/New_York"))
    after.enroll(new_york(2026, 3, 9, 9, 1))  # just after: a week later
    assert same(after.enrollment.wake_time, new_york(2026, 3, 16, 9, 0))


def test_wait_until_several_days():
    flow = workflow("steps:\n  - wait: {until: \"18:30\", days: [tue, thu]}\n")
    run = Run(flow)
    run.enroll(paris(2026, 6, 10, 12, 0))  # Wednesday
    assert same(run.enrollment.wake_time, paris(2026, 6, 11, 18, 30))


def test_wait_until_an_absolute_date_is_midnight_in_the_zone():
    flow = workflow("steps:\n  - wait: {until: \"2026-12-24\"}\n  - score: 1\n")
    run = Run(flow, contact(timezone="America/New_York"))
    run.enroll(T0)
    assert same(run.enrollment.wake_time, new_york(2026, 12, 24, 0, 0))
    paris_run = Run(flow)
    paris_run.enroll(T0)
    assert same(paris_run.enrollment.wake_time, paris(2026, 12, 24, 0, 0))


def test_wait_until_an_absolute_date_time_with_or_without_offset():
    with_offset = Run(workflow("steps:\n  - wait: {until: \"2026-12-24T09:00:00+01:00\"}\n"),
                      contact(timezone="America/New_York"))
    with_offset.enroll(T0)
    assert same(with_offset.enrollment.wake_time, utc(2026, 12, 24, 8, 0))
    zulu = Run(workflow("steps:\n  - wait: {until: \"2026-12-24T09:00:00Z\"}\n"))
    zulu.enroll(T0)
    assert same(zulu.enrollment.wake_time, utc(2026, 12, 24, 9, 0))
    local = Run(workflow("steps:\n  - wait: {until: \"2026-12-24T09:00\"}\n"), contact(timezone="America/New_York"))
    local.enroll(T0)
    assert same(local.enrollment.wake_time, new_york(2026, 12, 24, 9, 0))


def test_wait_until_a_date_already_past_does_not_wait():
    run = Run(workflow("steps:\n  - wait: {until: \"2026-01-01\"}\n  - score: 1\n"))
    run.enroll(T0)
    assert run.state == COMPLETED
    assert run.entries("wait")[0].detail == "already past: no wait"
    assert [effect.kind for effect in run.effects] == ["score"]


# --- wait_for ------------------------------------------------------------------------------

WAIT_FOR = """
steps:
  - id: hello
    email: t/hi
  - id: click
    wait_for: {event: email_clicked, where: "event.step == 'hello'", timeout: 3d}
    on_event:
      - score: 10
    on_timeout:
      - score: -1
  - id: after
    task: {title: Follow up}
"""


def test_wait_for_the_event_runs_on_event_then_the_step_after():
    run = Run(workflow(WAIT_FOR))
    run.enroll(T0)
    assert run.state == WAITING_EVENT
    assert run.enrollment.waiting == {"event": "email_clicked", "where": "event.step == 'hello'",
                                      "since": T0.isoformat(), "deadline": (T0 + timedelta(days=3)).isoformat()}
    assert same(run.enrollment.wake_time, T0 + timedelta(days=3))
    wait_entry = run.entries("wait")[0]
    assert (wait_entry.step, wait_entry.extra) == ("click", {"until": (T0 + timedelta(days=3)).isoformat(),
                                                             "event": "email_clicked"})

    run.deliver("email_clicked", T0 + timedelta(hours=5), step="other")  # `where` is false: still waiting
    assert run.state == WAITING_EVENT and [effect.kind for effect in run.effects] == ["send"]
    run.deliver("email_opened", T0 + timedelta(hours=6), step="hello")  # another event
    assert run.state == WAITING_EVENT

    clicked = T0 + timedelta(days=1)
    run.deliver("email_clicked", clicked, step="hello")
    assert [(effect.kind, effect.step) for effect in run.effects] == [
        ("send", "hello"), ("score", "2.on_event.1"), ("task", "after")]
    assert all(same(effect.at, clicked) for effect in run.effects[1:])
    assert run.effects[1].data["points"] == 10
    event_entry = run.entries("event")[0]
    assert (event_entry.step, event_entry.detail) == ("click", "email_clicked arrived")
    assert run.state == COMPLETED and run.enrollment.wake_at is None

    run.advance(T0 + timedelta(days=3))  # the old deadline passes: nothing
    assert run.entries("timeout") == []


def test_wait_for_times_out_at_the_deadline_and_runs_on_timeout():
    run = Run(workflow(WAIT_FOR))
    run.enroll(T0)
    run.advance(T0 + timedelta(days=2, hours=23))
    assert run.state == WAITING_EVENT
    run.advance(T0 + timedelta(days=4))  # a late tick: the timeout still happens at the deadline
    deadline = T0 + timedelta(days=3)
    timeout = run.entries("timeout")[0]
    assert timeout.step == "click" and same(timeout.at, deadline)
    assert timeout.detail == f"no email_clicked by {deadline.isoformat()}"
    assert [(effect.kind, effect.step, effect.data.get("points")) for effect in run.effects] == [
        ("send", "hello", None), ("score", "2.on_timeout.1", -1), ("task", "after", None)]
    assert all(same(effect.at, deadline) for effect in run.effects[1:])
    assert run.state == COMPLETED

    run.deliver("email_clicked", T0 + timedelta(days=3, hours=1), step="hello")  # too late: ignored
    assert len(run.effects) == 3


def test_wait_for_the_event_at_the_deadline_itself_counts():
    run = Run(workflow(WAIT_FOR))
    run.enroll(T0)
    run.deliver("email_clicked", T0 + timedelta(days=3), step="hello")
    assert run.entries("event") and not run.entries("timeout")


def test_an_event_after_the_deadline_that_arrives_before_the_timeout_is_processed_does_not_count():
    run = Run(workflow(WAIT_FOR))
    run.enroll(T0)
    run.deliver("email_clicked", T0 + timedelta(days=3, seconds=1), step="hello")
    assert run.state == WAITING_EVENT
    run.advance(T0 + timedelta(days=3, seconds=2))
    assert run.entries("timeout") and not run.entries("event")


def test_wait_for_without_blocks_goes_on_with_the_next_step_either_way():
    flow = workflow("""
        steps:
          - wait_for: {event: paid, timeout: 1d}
          - score: 5
    """)
    by_event = Run(flow)
    by_event.enroll(T0)
    by_event.deliver("paid", T0 + timedelta(hours=1))
    by_timeout = Run(flow)
    by_timeout.enroll(T0)
    by_timeout.advance(T0 + timedelta(days=1))
    for run in (by_event, by_timeout):
        assert [effect.kind for effect in run.effects] == ["score"] and run.state == COMPLETED


# --- email and sms -----------------------------------------------------------------------------

def test_email_and_sms_steps_send_with_their_rendered_vars():
    flow = workflow("""
        steps:
          - id: hello
            email: t/hi
            vars: {greeting: "Hi {{ contact.first_name }}", count: 3, nested: {who: "{{ event.plan }}"}}
          - id: text
            sms: t/hi
    """)
    person = contact(first_name="Ana")
    run = Run(flow, person)
    run.enroll(T0, Event("c1", "go", T0, {"plan": "pro"}))
    email, sms = run.effects
    assert (email.kind, email.step, email.key, email.enrollment, email.workflow, email.contact) == (
        "send", "hello", "e1:steps.0:1", "e1", "wf", "c1")
    assert email.data["channel"] == "email" and email.data["template"] == "t/hi"
    assert email.data["vars"] == {"greeting": "Hi Ana", "count": 3, "nested": {"who": "pro"}}
    assert email.data["marketing"] is True and email.data["zone"] == "Europe/Paris"
    assert email.data["trigger_event"]["properties"] == {"plan": "pro"}
    assert (sms.data["channel"], sms.key) == ("sms", "e1:steps.1:1")
    assert [(m.channel, m.marketing, m.workflow) for m in person.messages] == [("email", True, "wf"),
                                                                               ("sms", True, "wf")]
    sends = run.entries("send")
    assert [(entry.step, entry.channel, entry.template) for entry in sends] == [("hello", "email", "t/hi"),
                                                                               ("text", "sms", "t/hi")]
    assert sends[0].to_dict() == {"at": T0.isoformat(), "contact": "c1", "workflow": "wf", "version": 1,
                                  "step": "hello", "kind": "send", "channel": "email", "template": "t/hi"}


def test_a_send_sees_the_vars_of_earlier_steps():
    run = Run(workflow("""
        steps:
          - assign_coupon: {pool: P, as: coupon}
          - email: t/hi
    """))
    run.enroll(T0)
    run.resume("SAVE10", T0)
    assert run.effects[-1].data["vars"] == {"coupon": "SAVE10"}


# --- if / else ---------------------------------------------------------------------------------

IF_ELSE = """
steps:
  - if: "contact.country == 'FR' and contact.score > 3"
    then:
      - score: 1
      - score: 2
    else:
      - score: 100
  - score: 1000
"""


def test_if_runs_then_and_continues_after_the_block():
    run = Run(workflow(IF_ELSE), contact(country="FR", score=5))
    run.enroll(T0)
    assert [effect.data["points"] for effect in run.effects] == [1, 2, 1000]
    branch = run.entries("branch")[0]
    assert branch.step == "1" and branch.extra == {"branch": "then"}
    assert branch.detail == ("contact.country == 'FR' and contact.score > 3 → true "
                             "(contact.country = 'FR', contact.score = 5)")
    assert [entry.step for entry in run.entries("score")] == ["1.then.1", "1.then.2", "2"]


def test_if_runs_else_when_false():
    run = Run(workflow(IF_ELSE), contact(country="BE", score=5))
    run.enroll(T0)
    assert [effect.data["points"] for effect in run.effects] == [100, 1000]
    assert run.entries("branch")[0].extra == {"branch": "else"}
    assert "→ false" in run.entries("branch")[0].detail


def test_if_without_else_when_false_goes_to_the_next_step():
    run = Run(workflow("""
        steps:
          - if: "in_list('vip')"
            then: [{score: 1}]
          - score: 2
    """))
    run.enroll(T0)
    assert [effect.data["points"] for effect in run.effects] == [2]


def test_a_block_ending_in_exit_stops_the_enrollment():
    run = Run(workflow("""
        steps:
          - if: "contact.country == 'FR'"
            then:
              - score: 1
              - exit: french contacts stop here
          - score: 2
    """), contact(country="FR"))
    run.enroll(T0)
    assert [effect.data["points"] for effect in run.effects] == [1]
    assert run.state == EXITED and run.enrollment.reason == "french contacts stop here"
    assert run.log[-1].kind == "exit" and run.log[-1].step == "1.then.2"


def test_if_sees_has_event_since_entry_and_within():
    flow = workflow("""
        steps:
          - wait: 1d
          - if: "has_event('order_placed', since='entry')"
            then: [{score: 1}]
            else: [{score: -1}]
          - if: "event_count('page_viewed', within='2d', where=\\"event.url == '/a'\\") == 2"
            then: [{score: 10}]
    """)
    person = contact()
    person.events = [Event("c1", "order_placed", T0 - timedelta(days=3)),
                     Event("c1", "page_viewed", T0 - timedelta(days=3), {"url": "/a"}),  # outside 2d
                     Event("c1", "page_viewed", T0, {"url": "/a"}),
                     Event("c1", "page_viewed", T0, {"url": "/b"})]
    run = Run(flow, person)
    run.enroll(T0)
    run.deliver("page_viewed", T0 + timedelta(hours=1), url="/a")
    run.advance(T0 + timedelta(days=1))
    assert [effect.data["points"] for effect in run.effects] == [-1, 10]  # the order was before entry


# --- split -------------------------------------------------------------------------------------

def test_split_logs_and_keeps_the_variant_and_a_holdout_goes_on():
    flow = workflow("""
        steps:
          - id: subject-test
            split:
              variants:
                a: {weight: 50, steps: [{score: 1}]}
                holdout: {weight: 50}
          - score: 2
    """)
    for contact_id in ("c1", "c2", "c3", "c4", "c5", "c6"):
        run = Run(flow, contact(contact_id))
        run.enroll(T0)
        chosen = variant_for("wf", "subject-test", contact_id, {"a": 50, "holdout": 50})
        assert run.enrollment.variants == {"subject-test": chosen}
        entry = run.entries("split")[0]
        assert entry.extra == {"variant": chosen, "split": "subject-test"}
        assert entry.detail == f"variant {chosen} (50%)"
        points = [effect.data["points"] for effect in run.effects]
        assert points == ([1, 2] if chosen == "a" else [2])


# --- update, score, lists ---------------------------------------------------------------------

def test_update_sets_unsets_and_tags_with_rendered_values():
    person = contact(first_name="ana", country="FR", tags=["old", "keep"], lifecycle="lead")
    run = Run(workflow("""
        steps:
          - update:
              set: {lifecycle: customer, first_name: "{{ contact.first_name | title }}"}
              unset: [country]
              add_tags: [buyer, keep]
              remove_tags: [old, missing]
    """), person)
    run.enroll(T0)
    (effect,) = run.effects
    assert effect.kind == "update"
    assert effect.data == {"set": {"lifecycle": "customer", "first_name": "Ana"}, "unset": ["country"],
                           "add_tags": ["buyer"], "remove_tags": ["old"],
                           "previous": {"lifecycle": "lead", "first_name": "ana", "country": "FR",
                                        "tags": ["old", "keep"]}}
    assert person.fields["lifecycle"] == "customer" and person.fields["first_name"] == "Ana"
    assert "country" not in person.fields and person.fields["tags"] == ["keep", "buyer"]
    assert run.entries("update")[0].detail == ("lifecycle = 'customer', first_name = 'Ana', unset country, "
                                               "+tag buyer, −tag old")


def test_later_steps_see_an_update():
    run = Run(workflow("""
        steps:
          - update: {set: {lifecycle: customer}}
          - if: "contact.lifecycle == 'customer'"
            then: [{score: 1}]
    """), contact(lifecycle="lead"))
    run.enroll(T0)
    assert [effect.kind for effect in run.effects] == ["update", "score"]


def test_score_adds_and_subtracts():
    person = contact(score=7)
    run = Run(workflow("steps:\n  - score: 10\n  - score: -5\n"), person)
    run.enroll(T0)
    assert [effect.data for effect in run.effects] == [
        {"points": 10, "score": 17, "previous": {"score": 7}}, {"points": -5, "score": 12, "previous": {"score": 17}}]
    assert [entry.detail for entry in run.entries("score")] == ["+10 → 17", "-5 → 12"]
    assert person.fields["score"] == 12
    fresh = contact("c2")
    Run(workflow("steps:\n  - score: 3\n"), fresh).enroll(T0)
    assert fresh.fields["score"] == 3  # no score yet counts as 0


def test_lists_add_and_remove():
    person = contact(lists=["prospects", "news"])
    run = Run(workflow("steps:\n  - lists: {add: [vip, news], remove: [prospects]}\n"
                       "  - if: \"in_list('vip') and not in_list('prospects')\"\n    then: [{score: 1}]\n"), person)
    run.enroll(T0)
    assert person.fields["lists"] == ["news", "vip"]
    assert run.effects[0].data == {"add": ["vip", "news"], "remove": ["prospects"],
                                   "previous": {"lists": ["prospects", "news"]}}
    assert run.entries("lists")[0].detail == "+vip +news −prospects"
    assert [effect.kind for effect in run.effects] == ["lists", "score"]


# --- task, webhook, coupon, start, exit -------------------------------------------------------

def test_task_with_rendered_fields_and_a_due_time():
    run = Run(workflow("""
        steps:
          - task: {title: "Call {{ contact.first_name }}", assignee: sales@shop.example, due: 2d,
                   notes: "Plan {{ event.plan }}"}
    """), contact(first_name="Ana"))
    run.enroll(T0, Event("c1", "go", T0, {"plan": "pro"}))
    (effect,) = run.effects
    assert effect.kind == "task"
    assert effect.data == {"title": "Call Ana", "assignee": "sales@shop.example", "notes": "Plan pro",
                           "due": (T0 + timedelta(days=2)).isoformat()}
    assert run.entries("task")[0].detail == "Call Ana"
    no_due = Run(workflow("steps:\n  - task: {title: Call}\n"))
    no_due.enroll(T0)
    assert no_due.effects[0].data == {"title": "Call"}


def test_webhook_waits_for_the_response_and_keeps_it_in_vars():
    flow = workflow("""
        steps:
          - id: crm
            webhook:
              url: "https://crm.example/contacts/{{ contact.id }}"
              headers: {X-Plan: "{{ event.plan }}"}
              body: {email: "{{ contact.email }}", tags: ["{{ event.plan }}", fixed], n: 1}
              as: crm
          - if: "vars.crm.owner == 'bob'"
            then: [{task: {title: "For {{ vars.crm.owner }}"}}]
    """)
    run = Run(flow)
    run.enroll(T0, Event("c1", "go", T0, {"plan": "pro"}))
    assert run.state == PENDING
    request = {"url": "https://crm.example/contacts/c1", "method": "POST", "headers": {"X-Plan": "pro"},
               "body": {"email": "c1@example.com", "tags": ["pro", "fixed"], "n": 1}, "timeout": "10s",
               "retries": 3}
    assert run.enrollment.pending == {"kind": "webhook", "as": "crm", "request": request, "at": T0.isoformat()}
    assert [(effect.kind, effect.data) for effect in run.effects] == [("webhook", {"request": request, "as": "crm"})]
    assert run.entries("webhook") == []  # logged with its answer

    run.advance(T0 + timedelta(days=1))  # a pending step does not move with time
    assert run.state == PENDING and len(run.effects) == 1

    later = T0 + timedelta(seconds=2)
    run.resume({"owner": "bob", "since": utc(2020, 1, 1)}, later)
    assert run.enrollment.vars == {"crm": {"owner": "bob", "since": "2020-01-01T00:00:00+00:00"}}
    (entry,) = run.entries("webhook")
    assert (entry.step, entry.at, entry.detail) == ("crm", later, "POST https://crm.example/contacts/c1")
    assert entry.to_dict()["response"] == {"owner": "bob", "since": "2020-01-01T00:00:00+00:00"}
    assert run.effects[-1].kind == "task" and run.effects[-1].data == {"title": "For bob"}
    assert same(run.effects[-1].at, later)
    assert run.state == COMPLETED


def test_webhook_without_as_keeps_nothing():
    run = Run(workflow("steps:\n  - webhook: {url: 'https://x.example', method: GET}\n"))
    run.enroll(T0)
    assert run.effects[0].data["request"]["method"] == "GET"
    run.resume({"ignored": True}, T0)
    assert run.enrollment.vars == {} and run.state == COMPLETED
    assert run.entries("webhook")[0].extra == {"response": {"ignored": True}}  # recorded, not kept


def test_resume_of_an_enrollment_that_is_not_pending_does_nothing():
    run = Run(workflow("steps:\n  - wait: 1d\n"))
    run.enroll(T0)
    outcome = run.resume("X", T0)
    assert outcome.effects == [] and outcome.log == [] and run.state == ACTIVE


def test_assign_coupon_takes_a_code_into_vars():
    run = Run(workflow("""
        steps:
          - id: code
            assign_coupon: {pool: CART10, as: coupon}
          - sms: t/hi
    """))
    run.enroll(T0)
    assert run.state == PENDING
    assert run.enrollment.pending == {"kind": "coupon", "pool": "CART10", "as": "coupon", "at": T0.isoformat()}
    assert [(effect.kind, effect.data) for effect in run.effects] == [("coupon", {"pool": "CART10", "as": "coupon"})]
    run.resume("CART10-AAA", T0)
    assert run.enrollment.vars == {"coupon": "CART10-AAA"}
    entry = run.entries("coupon")[0]
    assert (entry.step, entry.detail, entry.extra) == ("code", "CART10 → vars.coupon", {"code": "CART10-AAA"})
    assert run.effects[-1].data["vars"] == {"coupon": "CART10-AAA"}
    assert run.state == COMPLETED


def test_assign_coupon_from_an_empty_pool_fails_the_enrollment():
    run = Run(workflow("steps:\n  - id: code\n    assign_coupon: {pool: CART10, as: coupon}\n  - score: 1\n"))
    run.enroll(T0)
    run.resume(None, T0)
    assert run.state == FAILED and run.enrollment.reason == "coupon pool CART10 is empty"
    assert run.log[-1].kind == "failed" and run.log[-1].step == "code"
    assert [effect.kind for effect in run.effects] == ["coupon"]


def test_start_asks_the_driver_to_enroll_in_another_workflow_and_goes_on():
    run = Run(workflow("steps:\n  - start: onboarding\n  - score: 1\n"))
    run.enroll(T0)
    assert [(effect.kind, effect.data) for effect in run.effects] == [("start", {"workflow": "onboarding"}),
                                                                      ("score", {"points": 1, "score": 1,
                                                                                 "previous": {"score": 0}})]
    assert run.entries("start")[0].detail == "onboarding"


def test_exit_ends_the_enrollment_with_its_reason():
    run = Run(workflow("steps:\n  - score: 1\n  - id: out\n    exit: not a fit\n  - score: 2\n"))
    run.enroll(T0)
    assert run.state == EXITED
    assert (run.enrollment.reason, run.enrollment.ended_at) == ("not a fit", T0)
    assert [effect.data["points"] for effect in run.effects] == [1]
    assert (run.log[-1].step, run.log[-1].kind, run.log[-1].detail) == ("out", "exit", "not a fit")


def test_reaching_the_end_completes():
    run = Run(workflow("steps:\n  - score: 1\n"))
    run.enroll(T0)
    assert run.state == COMPLETED and run.enrollment.reason == "reached the end"
    assert run.enrollment.ended_at == T0
    assert [(e.step, e.kind) for e in run.log] == [("trigger", "enter"), ("1", "score"), ("end", "complete")]


def test_every_log_entry_says_when_and_is_in_order():
    run = Run(workflow(WAIT_FOR))
    run.enroll(T0)
    run.advance(T0 + timedelta(days=3))
    times = [entry.at for entry in run.log]
    assert times == sorted(times)
    assert all(entry.at.tzinfo is not None for entry in run.log)
    assert all(entry.contact == "c1" and entry.workflow == "wf" and entry.version == 1 for entry in run.log)


def test_times_are_timezone_aware_everywhere():
    run = Run(workflow(WAIT_FOR), contact(timezone="America/New_York"))
    run.enroll(T0)
    enrollment = run.enrollment
    assert enrollment.wake_at is not None
    for moment in (enrollment.entered_at, enrollment.wake_at, datetime.fromisoformat(enrollment.waiting["since"]),
                   datetime.fromisoformat(enrollment.waiting["deadline"])):
        assert moment.tzinfo is not None
    assert all(effect.at.tzinfo is not None for effect in run.effects)
