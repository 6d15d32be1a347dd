"""Rules about what a workflow means: expressions, fields, segments, splits, targets, flow, events, secrets."""
from __future__ import annotations

import textwrap
from datetime import UTC

import pytest

from .conftest import HELLO_EMAIL, PROJECT_YAML, fails, passes, text

WF = "workflows/welcome.yaml"
HELLO = "templates/welcome/hello.email.html"
HI = "templates/welcome/hi.sms.txt"


def welcome(steps: str = "- wait: 1h\n- id: hello\n  email: welcome/hello\n", head: str = "",
            trigger: str = "event: signed_up") -> str:
    """The welcome workflow: `trigger` on line 5, then `head` (from line 6), then the steps."""
    return ("id: welcome\nversion: 1\nname: Welcome\ntrigger:\n  " + trigger + "\n" + head + "steps:\n"
            + textwrap.indent(text(steps), "  "))


def audience(expression: str) -> str:
    """The welcome workflow with `audience: "<expression>"` on line 6; the expression starts at column 12."""
    return welcome(head=f'audience: "{expression}"\n')


# --- expression-syntax --------------------------------------------------------

@fails("expression-syntax")
def test_expression_syntax_braces_are_not_written(check):
    check({WF: audience("{{ contact.country == 'FR' }}")}, "expression-syntax", problem=(6, 12),
          message="write the expression without `{{ }}` or `{% %}` in `{{ contact.country == 'FR' }}`")


@fails("expression-syntax")
def test_expression_syntax_ends_too_early(check):
    source = welcome("""
        - if: "contact.score >="
          then: [{exit: done}]
        - id: hello
          email: welcome/hello
        """)
    check({WF: source}, "expression-syntax", problem=(7, 9),
          message="invalid expression: it ends too early (a missing operand or closing bracket?) in `contact.score >=`")


@fails("expression-syntax")
def test_expression_syntax_in_a_nested_where_and_a_segment(check):
    source = welcome("""
        - if: "has_event('order_placed', where='event.total >')"
          then: [{exit: done}]
        - id: hello
          email: welcome/hello
        """)
    check({WF: source}, "expression-syntax", problem=(7, 36), message="in `event.total >`")
    check({"mauto.yaml": PROJECT_YAML.replace("contact.score >= 100", "contact.score >= 100)")}, "expression-syntax",
          problem=(12, 8), message="invalid expression: unexpected ')' in `contact.score >= 100)`")


def test_expression_syntax_extra_token_is_reported_where_it_is(check):
    check({WF: audience("contact.score >= 5 5")}, "expression-syntax", problem=(6, 31),
          message="unexpected `5` after the end of the expression")


@passes("expression-syntax")
def test_expression_syntax_valid_expressions_pass(check):
    source = welcome("""
        - wait: 1h
        - if: >
            contact.score >= 50
            and (contact.country in ['FR', 'BE'] or 'vip' in contact.tags)
          then: [{score: 5}]
        - id: hello
          email: welcome/hello
        """)
    check({WF: source}, "expression-syntax")


# --- expression-name ----------------------------------------------------------

@fails("expression-name")
def test_expression_name_unknown_name_and_function(check):
    problems = check({WF: audience("country == 'FR' and has_purchased('shoes')")}, "expression-name",
                     problem=[(6, 12), (6, 32)])
    assert [p.message for p in problems] == [
        "unknown name `country` (names in scope: contact, event, vars, now)",
        "unknown function `has_purchased()` (functions: has_event(), event_count(), days_since(), in_list(), "
        "duration())",
    ]


@fails("expression-name")
@pytest.mark.parametrize("expression, problem, message", [
    ("has_events('order_placed')", (6, 12), "unknown function `has_events()`; did you mean `has_event`?"),
    ("has_event('order_placed', whithin='7d')", (6, 38),
     "`has_event()` has no argument `whithin`; did you mean `within`?; it takes name, within, since, where"),
    ("has_event('order_placed', since='yesterday')", (6, 38),
     "`since='yesterday'`: since takes 'entry' or a datetime"),
    ("days_since(contact.created_at, 3) > 2", (6, 12), "`days_since()` takes 1 argument(s): datetime"),
    ("contact.country | uper == 'FR'", (6, 28), "unknown filter `uper`; did you mean `upper`?"),
    ("contact.score is numbr", (6, 26), "unknown test `numbr`; did you mean `number`?"),
])
def test_expression_name_functions_arguments_filters_tests(check, expression, problem, message):
    check({WF: audience(expression)}, "expression-name", problem=problem, message=message)


@fails("expression-name")
def test_expression_name_no_event_in_a_segment_trigger(check):
    check({WF: welcome(trigger="segment: \"event.source == 'ads'\"")}, "expression-name", problem=(5, 13),
          message="`event` is not in scope here: no event has arrived")


@passes("expression-name")
def test_expression_name_everything_in_scope_passes(check):
    expression = ("contact.country == 'FR' and has_event('order_placed', within='30d', where='event.total > 10') "
                  "and event_count('order_placed', since='entry') < 3 and now > contact.created_at "
                  "and in_list('vip') and days_since(contact.created_at) > duration('1d').days "
                  "and event.source | lower is string")
    check({WF: audience(expression)}, "expression-name")


# --- contact-field ------------------------------------------------------------

@fails("contact-field")
@pytest.mark.parametrize("expression, problem, message", [
    ("contact.contry == 'FR'", (6, 20), "unknown contact field `contry`; did you mean `country`?"),
    ("contact.zzz == 'FR'", (6, 20), "unknown contact field `zzz`; declare it under `contact_fields` in mauto.yaml"),
])
def test_contact_field_unknown_in_expression(check, expression, problem, message):
    check({WF: audience(expression)}, "contact-field", problem=problem, message=message)


@fails("contact-field")
def test_contact_field_unknown_in_template(check):
    check({HI: "Hi {{ contact.frist_name }}\n"}, "contact-field", problem=(1, 15), path=HI,
          message="unknown contact field `frist_name`; did you mean `first_name`?")


@fails("contact-field")
@pytest.mark.parametrize("update, problem, message", [
    ("{set: {lifecyle: customer}}", (7, 20), "unknown contact field `lifecyle`; did you mean `lifecycle`?"),
    ("{set: {lifecycle: churned}}", (7, 31), "contact field `lifecycle` takes one of lead, customer, not `churned`"),
    ("{set: {score: high}}", (7, 27), "contact field `score` is an `integer`, not `high`"),
    ("{unset: [contry]}", (7, 22), "unknown contact field `contry`"),
])
def test_contact_field_in_update_steps(check, update, problem, message):
    check({WF: welcome(f"- update: {update}\n")}, "contact-field", problem=problem, message=message)


@fails("contact-field")
@pytest.mark.parametrize("field, message", [
    ("birthdy", "unknown contact field `birthdy`; did you mean `birthday`?"),
    ("country", "contact field `country` is a `string`, but a date trigger needs a `date` or `datetime` field"),
])
def test_contact_field_date_trigger(check, field, message):
    check({WF: welcome(trigger=f"date: {{field: {field}}}")}, "contact-field", problem=(5, 17), message=message)


@fails("contact-field")
@pytest.mark.parametrize("field, message", [
    ("lifecycle", "contact field `lifecycle` is an enum, but a date trigger needs a `date` or `datetime` field"),
    ("score", "contact field `score` is an `integer`, but a date trigger needs a `date` or `datetime` field"),
])
def test_contact_field_date_trigger_names_the_type_it_has(check, field, message):
    check({WF: welcome(trigger=f"date: {{field: {field}}}")}, "contact-field", problem=(5, 17), message=message)


@fails("contact-field")
def test_contact_field_unknown_in_a_workflow_template_string(check):
    check({WF: welcome('- task: {title: "Call {{ contact.frist_name }}"}\n')}, "contact-field", problem=(7, 36),
          message="unknown contact field `frist_name`; did you mean `first_name`?")


@fails("contact-field")
def test_contact_field_every_kind_of_finding_in_one_project(check):
    # One project with a finding of each kind, in every file it can be in: each is reported, none hides another.
    source = welcome("""
        - if: "contact.contry == 'FR'"
          then: [{exit: done}]
        - task: {title: "Call {{ contact.frist_name }}"}
        - update: {set: {lifecyle: customer, score: high}, unset: [contry]}
        - id: hello
          email: welcome/hello
        """, trigger="date: {field: country}")
    found = check({WF: source, HI: "Hi {{ contact.frist_name }}\n",
                   "mauto.yaml": PROJECT_YAML.replace("contact.score >= 100", "contact.scor >= 100")},
                  "contact-field", problem=[(WF, 5, 17), (WF, 7, 18), (WF, 9, 36), (WF, 10, 20), (WF, 10, 47),
                                            (WF, 10, 62), (HI, 1, 15), ("mauto.yaml", 12, 17)])
    assert sorted(problem.message for problem in found) == sorted([
        "contact field `country` is a `string`, but a date trigger needs a `date` or `datetime` field",
        "unknown contact field `contry`; did you mean `country`?",
        "unknown contact field `frist_name`; did you mean `first_name`?",
        "unknown contact field `lifecyle`; did you mean `lifecycle`?",
        "contact field `score` is an `integer`, not `high`",
        "unknown contact field `contry`; did you mean `country`?",
        "unknown contact field `frist_name`; did you mean `first_name`?",
        "unknown contact field `scor`; did you mean `score`?",
    ])


@fails("contact-field")
def test_contact_field_in_a_project_segment(check):
    check({"mauto.yaml": PROJECT_YAML.replace("contact.score >= 100", "contact.scor >= 100")}, "contact-field",
          problem=(12, 17), message="unknown contact field `scor`; did you mean `score`?")


@passes("contact-field")
def test_contact_field_declared_and_built_in_fields_pass(check):
    source = welcome("""
        - wait: 1h
        - update: {set: {lifecycle: customer, country: "{{ event.source }}", score: 3}, unset: [first_name]}
        - if: "contact.email_consent and contact.sms_consent and contact['country'] == 'FR'"
          then: [{score: 1}]
        """, trigger="event: signed_up")
    check({WF: source, "workflows/birthday.yaml": welcome(trigger="date: {field: birthday, offset: -7d}")
           .replace("id: welcome", "id: birthday")}, "contact-field")


# --- unknown-segment ----------------------------------------------------------

@fails("unknown-segment")
def test_unknown_segment_with_suggestion(check):
    check({WF: welcome(trigger="segment: vp")}, "unknown-segment", problem=(5, 12),
          message="unknown segment `vp`; did you mean `vip`?")


@fails("unknown-segment")
def test_unknown_segment_lists_the_defined_ones(check):
    check({WF: welcome(trigger="segment: best-customers")}, "unknown-segment", problem=(5, 12),
          message="unknown segment `best-customers`; mauto.yaml defines: vip")


@passes("unknown-segment")
def test_unknown_segment_named_or_written_out_passes(check):
    check({WF: welcome(trigger="segment: vip"),
           "workflows/engaged.yaml": welcome(trigger='segment: "contact.score > 30"').replace("id: welcome",
                                                                                              "id: engaged")},
          "unknown-segment")


# --- split-weights ------------------------------------------------------------

@fails("split-weights")
def test_split_weights_not_100(check):
    source = welcome("""
        - wait: 1h
        - split:
            variants:
              a: {weight: 50, steps: [{email: welcome/hello}]}
              b: {weight: 40, steps: [{email: welcome/hello}]}
        """)
    check({WF: source}, "split-weights", problem=(10, 9),
          message="split weights add up to 90 (a 50 + b 40), not 100; adjust them or add a holdout variant")


@fails("split-weights")
def test_split_weights_over_100_in_a_nested_split(check):
    source = welcome("""
        - wait: 1h
        - if: "contact.score > 10"
          then:
            - split:
                variants:
                  a: {weight: 60}
                  b: {weight: 60, steps: [{email: welcome/hello}]}
        """)
    check({WF: source}, "split-weights", problem=(12, 13), message="add up to 120 (a 60 + b 60)")


@passes("split-weights")
def test_split_weights_with_a_holdout_pass(check):
    source = welcome("""
        - wait: 1h
        - split:
            variants:
              a: {weight: 50, steps: [{email: welcome/hello}]}
              b: {weight: 40, steps: [{email: welcome/hello}]}
              holdout: {weight: 10}
        """)
    check({WF: source}, "split-weights")


# --- split-winner -------------------------------------------------------------

@fails("split-winner")
def test_split_winner_without_a_goal(check):
    source = welcome("""
        - wait: 1h
        - split:
            winner: {confidence: 0.95, min_contacts: 500}
            variants:
              a: {weight: 50, steps: [{email: welcome/hello}]}
              b: {weight: 50, steps: [{email: welcome/hello}]}
        """)
    check({WF: source}, "split-winner", problem=(9, 15),
          message="this split picks its winner by the workflow's goal, and workflow `welcome` has no `goal`: add one "
                  "(goal: {event: …, within: …}) or remove `winner`")


@passes("split-winner")
def test_split_winner_with_a_goal_passes(check):
    source = welcome("""
        - wait: 1h
        - split:
            winner: {}
            variants:
              a: {weight: 50, steps: [{email: welcome/hello}]}
              b: {weight: 50, steps: [{email: welcome/hello}]}
        """, head="goal: {event: signed_up, within: 7d}\n")
    check({WF: source}, "split-winner")


# --- wait-for-target ----------------------------------------------------------

@fails("wait-for-target")
def test_wait_for_target_unknown_step(check):
    source = welcome("""
        - wait: 1h
        - id: hello
          email: welcome/hello
        - wait_for: {event: email_clicked, where: "event.step == 'helo'", timeout: 3d}
        """)
    check({WF: source}, "wait-for-target", problem=(10, 60),
          message="no step with id `helo` in this workflow; did you mean `hello`?")


@fails("wait-for-target")
def test_wait_for_target_in_a_list(check):
    source = welcome("""
        - wait: 1h
        - id: hello
          email: welcome/hello
        - wait_for: {event: email_clicked, where: "event.step in ['hello', 'bye']", timeout: 3d}
        """)
    check({WF: source}, "wait-for-target", problem=(10, 70),
          message="no step with id `bye` in this workflow; give the step an `id`")


@passes("wait-for-target")
def test_wait_for_target_existing_step_passes(check):
    source = welcome("""
        - wait: 1h
        - id: hello
          email: welcome/hello
        - wait_for: {event: email_clicked, where: "event.step == 'hello'", timeout: 3d}
          on_timeout: [{exit: not-clicked}]
        """)
    check({WF: source}, "wait-for-target")


# --- start-target -------------------------------------------------------------

@fails("start-target")
@pytest.mark.parametrize("target, message", [
    ("welcom", "no workflow with id `welcom`; did you mean `welcome`?"),
    ("nurture", "no workflow with id `nurture`"),
])
def test_start_target_unknown_workflow(check, target, message):
    check({WF: welcome(f"- wait: 1d\n- start: {target}\n")}, "start-target", problem=(8, 12), message=message)


@passes("start-target")
def test_start_target_existing_workflow_passes(check):
    check({"workflows/nurture.yaml": welcome("- wait: 1d\n- start: welcome\n").replace("id: welcome", "id: nurture")},
          "start-target")


# --- start-cycle --------------------------------------------------------------

def starts(workflow_id: str, target: str) -> str:
    return welcome(f"- wait: 1d\n- start: {target}\n").replace("id: welcome", f"id: {workflow_id}")


@fails("start-cycle")
def test_start_cycle_between_two_workflows_is_reported_on_both(check):
    problems = check({"workflows/a.yaml": starts("a", "b"), "workflows/b.yaml": starts("b", "a")}, "start-cycle",
                     problem=[("workflows/a.yaml", 8, 12), ("workflows/b.yaml", 8, 12)],
                     message="closes a cycle a → b → a; a contact would be enrolled again and again")
    assert [p.message.split(" closes")[0] for p in problems] == ["`start: b`", "`start: a`"]


@fails("start-cycle")
def test_start_cycle_of_one_workflow(check):
    check({"workflows/a.yaml": starts("a", "a")}, "start-cycle", problem=(8, 12),
          message="`start: a` closes a cycle a → a")


@fails("start-cycle")
def test_start_cycle_of_three_workflows(check):
    files = {"workflows/a.yaml": starts("a", "b"), "workflows/b.yaml": starts("b", "c"),
             "workflows/c.yaml": starts("c", "a")}
    check(files, "start-cycle", problem=[(name, 8, 12) for name in files], message="a → b → c → a")


@passes("start-cycle")
def test_start_cycle_chain_without_cycle_passes(check):
    check({"workflows/a.yaml": starts("a", "b"), "workflows/b.yaml": starts("b", "welcome")}, "start-cycle")


# --- unreachable-step ---------------------------------------------------------

@fails("unreachable-step")
def test_unreachable_step_after_exit(check):
    source = welcome("""
        - wait: 1h
        - id: hello
          email: welcome/hello
        - exit: done
        - wait: 1d
        - score: 5
        """)
    check({WF: source}, "unreachable-step", problem=(11, 5),
          message="step 4 can never run: it comes after an `exit`; remove it or move it before")


@fails("unreachable-step")
@pytest.mark.parametrize("block", [
    """
    - if: "has_event('order_placed', since='entry')"
      then: [{exit: converted}]
      else: [{exit: lost}]
    """,
    """
    - wait_for: {event: order_placed, timeout: 1d}
      on_event: [{exit: converted}]
      on_timeout: [{exit: lost}]
    """,
    """
    - split:
        variants:
          a: {weight: 50, steps: [{exit: a}]}
          b: {weight: 50, steps: [{exit: b}]}
    """,
])
def test_unreachable_step_after_a_block_whose_every_branch_exits(check, block):
    source = welcome("- wait: 1h\n" + text(block) + "- id: hello\n  email: welcome/hello\n")
    check({WF: source}, "unreachable-step", problem=(12 if "split" in block else 11, 5),
          message="step `hello` can never run: it comes after step 2, whose every branch ends in `exit`")


@fails("unreachable-step")
def test_unreachable_step_inside_a_branch(check):
    source = welcome("""
        - wait: 1h
        - if: "contact.score > 3"
          then:
            - exit: converted
            - score: 3
        - id: hello
          email: welcome/hello
        """)
    check({WF: source}, "unreachable-step", problem=(11, 9), message="step 2.then.2 can never run")


@passes("unreachable-step")
@pytest.mark.parametrize("block", [
    """
    - if: "has_event('order_placed', since='entry')"
      then: [{exit: converted}]
    """,
    """
    - wait_for: {event: order_placed, timeout: 1d}
      on_event: [{exit: converted}]
    """,
    """
    - split:
        variants:
          a: {weight: 50, steps: [{exit: a}]}
          holdout: {weight: 50}
    """,
])
def test_unreachable_step_after_a_block_with_a_way_through_passes(check, block):
    check({WF: welcome("- wait: 1h\n" + text(block) + "- id: hello\n  email: welcome/hello\n- exit: done\n")},
          "unreachable-step")


# --- secret-in-config ---------------------------------------------------------

@fails("secret-in-config")
@pytest.mark.parametrize("old, new, problem, message", [
    ("username_env: SMTP_USER, password_env: SMTP_PASSWORD", "username_env: SMTP_USER, password: hunter2", (4, 82),
     "`password` holds a secret written into mauto.yaml; put it in an environment variable and name it with "
     "`password_env: VARIABLE`"),
    ("sms: {transport: console}", 'sms: {transport: http, url: "https://api.sms.example/send", token: abc123}',
     (5, 63), "`token` holds a secret"),
    ("sms: {transport: console}", 'sms: {transport: http, url: "https://shop:pw@api.sms.example/send"}', (5, 31),
     "`url` holds a URL with a password in it; keep credentials in environment variables"),
])
def test_secret_in_config(check, old, new, problem, message):
    project = PROJECT_YAML.replace(old, new)
    assert project != PROJECT_YAML
    check({"mauto.yaml": project}, "secret-in-config", problem=problem, message=message)


@fails("secret-in-config")
def test_secret_in_config_top_level(check):
    check({"mauto.yaml": PROJECT_YAML + "unsubscribe_secret: 0123456789abcdef\n"}, "secret-in-config",
          problem=(17, 1), message="`unsubscribe_secret` holds a secret written into mauto.yaml")


@passes("secret-in-config")
def test_secret_in_config_names_of_variables_and_catalogues_pass(check):
    project = (PROJECT_YAML.replace("sms: {transport: console}",
                                    'sms: {transport: http, url: "https://api.sms.example/send", token_env: SMS_TOKEN}')
               .replace("first_name: string", "first_name: string\n  password_hint: string")
               .replace("signed_up: {source: string}", "signed_up: {source: string, token: string}")
               + "unsubscribe_secret_env: MAUTO_UNSUBSCRIBE_SECRET\n")
    check({"mauto.yaml": project}, "secret-in-config")


# --- reentry-without-wait -----------------------------------------------------

SEND_AT_ONCE = "- id: hello\n  email: welcome/hello\n"


@fails("reentry-without-wait")
def test_reentry_always_without_a_wait(check):
    check({WF: welcome(SEND_AT_ONCE, head="reentry: always\n")}, "reentry-without-wait", problem=(6, 10),
          message="`reentry: always` with no wait before step `hello` (email): every `signed_up` event sends it "
                  "again at once; add a `wait` first or use `reentry: {after: 1d}`")


@fails("reentry-without-wait")
def test_reentry_always_with_a_send_in_a_branch_before_the_wait(check):
    source = welcome("""
        - if: "contact.score > 3"
          then:
            - sms: welcome/hi
        - wait: 1h
        - id: hello
          email: welcome/hello
        """, head="reentry: always\n")
    check({WF: source}, "reentry-without-wait", problem=(6, 10), message="before step 1.then.1 (sms)")


@passes("reentry-without-wait")
@pytest.mark.parametrize("head, steps, trigger", [
    ("reentry: always\n", "- wait: 1h\n" + SEND_AT_ONCE, "event: signed_up"),
    ("reentry: {after: 1d}\n", SEND_AT_ONCE, "event: signed_up"),
    ("reentry: always\ncategory: transactional\n", SEND_AT_ONCE, "event: signed_up"),
    ("reentry: always\n", SEND_AT_ONCE, "segment: vip"),
    ("reentry: always\n", "- wait_for: {event: order_placed, timeout: 1d}\n" + SEND_AT_ONCE, "event: signed_up"),
])
def test_reentry_with_a_wait_or_not_always_passes(check, head, steps, trigger):
    check({WF: welcome(steps, head=head, trigger=trigger)}, "reentry-without-wait")


# --- wait-date-past -----------------------------------------------------------

def waits_until(moment: str, head: str = "") -> str:
    return welcome(f'- wait: {{until: "{moment}"}}\n' + SEND_AT_ONCE, head=head)


@fails("wait-date-past")
@pytest.mark.parametrize("moment", [
    "2025-11-28",                 # last year's campaign
    "2026-11-23T12:00:00Z",       # exactly now
    "2026-11-23T13:00",           # 13:00 in Europe/Paris, the project's zone, is 12:00 UTC: now
    "2026-11-23 12:59:59+01:00",
])
def test_wait_date_past(check, moment):
    check({WF: waits_until(moment)}, "wait-date-past", problem=(7, 19),
          message=f"`until: {moment}` is already past; every contact would skip this wait at once")


@fails("wait-date-past")
def test_wait_date_past_in_the_workflows_zone(check):
    # Midnight on the 24th at UTC+14 is 10:00 UTC on the 23rd: already past at 12:00 UTC.
    check({WF: waits_until("2026-11-24", head="settings:\n  timezone: Pacific/Kiritimati\n")}, "wait-date-past",
          problem=(9, 19), message="`until: 2026-11-24` is already past")


@passes("wait-date-past")
@pytest.mark.parametrize("moment, head", [
    ("2026-11-27", ""),
    ("2026-11-23T12:00:01Z", ""),
    ("2026-11-23T13:01", ""),
    ("2026-11-23T13:00", "settings:\n  timezone: America/New_York\n"),   # 18:00 UTC
    ("09:00", ""),                                                        # a time of day is never past
])
def test_wait_date_in_the_future_passes(check, moment, head):
    check({WF: waits_until(moment, head)}, "wait-date-past")


@fails("wait-date-past")
def test_wait_date_past_uses_the_given_now(check):
    from datetime import datetime
    check({WF: waits_until("2026-11-27")}, "wait-date-past", problem=(7, 19),
          now=datetime(2026, 12, 1, tzinfo=UTC))


# --- wait-for-trigger-event ---------------------------------------------------

@fails("wait-for-trigger-event")
def test_wait_for_trigger_event(check):
    source = welcome("""
        - wait: 1h
        - id: hello
          email: welcome/hello
        - wait_for: {event: signed_up, timeout: 1d}
        """)
    problems = check({WF: source}, "wait-for-trigger-event", problem=(10, 23),
                     message="waits for `signed_up`, the event that triggers this workflow")
    assert problems[0].severity == "warning"


@passes("wait-for-trigger-event")
@pytest.mark.parametrize("trigger, event", [
    ("event: signed_up", "order_placed"),
    ("segment: vip", "signed_up"),
])
def test_wait_for_another_event_passes(check, trigger, event):
    source = welcome(f"- wait: 1h\n- wait_for: {{event: {event}, timeout: 1d}}\n" + SEND_AT_ONCE, trigger=trigger)
    check({WF: source}, "wait-for-trigger-event")


# --- unknown-event ------------------------------------------------------------

@fails("unknown-event")
@pytest.mark.parametrize("head, problem, message", [
    ("exit_on: [order_placd]\n", (6, 11), "unknown event `order_placd`; did you mean `order_placed`?"),
    ('exit_on: [{event: order_placd, where: "event.total > 3"}]\n', (6, 19), "unknown event `order_placd`"),
    ("goal: {event: purchase, within: 7d}\n", (6, 15),
     "unknown event `purchase`; add it under `events:` in mauto.yaml"),
    ("audience: \"has_event('order_placd')\"\n", (6, 23), "unknown event `order_placd`"),
])
def test_unknown_event_in_exit_goal_and_expressions(check, head, problem, message):
    check({WF: welcome(head=head)}, "unknown-event", problem=problem, message=message)


@fails("unknown-event")
@pytest.mark.parametrize("trigger, steps, problem, message", [
    ("event: signed_upp", "- wait: 1h\n", (5, 10), "unknown event `signed_upp`; did you mean `signed_up`?"),
    ("inactivity: {event: ordr_placed, for: 90d}", "- wait: 1h\n", (5, 23), "unknown event `ordr_placed`"),
    ("event: signed_up", "- wait_for: {event: email_clickd, timeout: 1d}\n", (7, 23),
     "unknown event `email_clickd`; did you mean `email_clicked`?"),
])
def test_unknown_event_in_triggers_and_wait_for(check, trigger, steps, problem, message):
    check({WF: welcome(steps, trigger=trigger)}, "unknown-event", problem=problem, message=message)


@passes("unknown-event")
def test_unknown_event_catalogued_and_built_in_events_pass(check):
    head = ("audience: \"event_count('order_placed', within='30d') < 2 and not has_event('unsubscribed')\"\n"
            "exit_on: [order_placed, contact_updated, email_bounced, {event: email_clicked, where: \"event.url\"}]\n")
    check({WF: welcome(head=head)}, "unknown-event")


@passes("unknown-event")
def test_unknown_event_not_checked_without_a_catalogue(check):
    project = PROJECT_YAML[:PROJECT_YAML.index("events:")]
    check({"mauto.yaml": project, WF: welcome(head="exit_on: [order_placd]\n")}, "unknown-event")


# --- unknown-event-property ---------------------------------------------------

@fails("unknown-event-property")
def test_unknown_event_property_in_trigger_where(check):
    source = welcome(trigger='event: cart_abandoned\n  where: "event.cart_total >= 20"')
    check({WF: source}, "unknown-event-property", problem=(6, 17),
          message="event `cart_abandoned` has no property `cart_total`; did you mean `cart_value`?")


@fails("unknown-event-property")
@pytest.mark.parametrize("head, steps, problem, message", [
    ("", '- wait_for: {event: order_placed, where: "event.amount > 3", timeout: 1d}\n', (7, 51),
     "event `order_placed` has no property `amount`; it has: total"),
    ("", '- wait_for: {event: email_clicked, where: "event.urll == 1", timeout: 1d}\n', (7, 52),
     "event `email_clicked` has no property `urll`; did you mean `url`?"),
    ("audience: \"event.sourc == 'ads'\"\n", "- wait: 1h\n", (6, 18),
     "event `signed_up` has no property `sourc`; did you mean `source`?"),
    ('goal: {event: order_placed, where: "event.totl > 3"}\n', "- wait: 1h\n", (6, 43),
     "event `order_placed` has no property `totl`; did you mean `total`?"),
    ('exit_on: [{event: order_placed, where: "event.totl > 3"}]\n', "- wait: 1h\n", (6, 47), "no property `totl`"),
])
def test_unknown_event_property_in_conditions(check, head, steps, problem, message):
    check({WF: welcome(steps, head=head)}, "unknown-event-property", problem=problem, message=message)


@fails("unknown-event-property")
def test_unknown_event_property_in_a_template_the_workflow_sends(check):
    email = HELLO_EMAIL.replace("<p>Hello {{ contact.first_name }}</p>", "<p>You came from {{ event.sorce }}</p>")
    check({HELLO: email}, "unknown-event-property", problem=(5, 43), path=HELLO,
          message="event `signed_up` has no property `sorce`; did you mean `source`? (sent by welcome)")


@passes("unknown-event-property")
def test_unknown_event_property_catalogued_and_common_attributes_pass(check):
    source = welcome(
        "- wait_for: {event: email_clicked, where: \"event.url and event.step == 'hello' and event.at\", timeout: 1d}\n"
        + SEND_AT_ONCE,
        head="audience: \"event.source == 'ads' and event.name == 'signed_up' and event.id\"\n")
    email = HELLO_EMAIL.replace("<p>Hello {{ contact.first_name }}</p>", "<p>From {{ event.source }}</p>")
    check({WF: source, HELLO: email}, "unknown-event-property")
