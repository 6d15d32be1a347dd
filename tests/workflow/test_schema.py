"""Schema validation said in plain words, at the line and column of the key or value at fault."""
from __future__ import annotations

import textwrap

import pytest

from mauto.problem import Problem
from mauto.workflow.loader import parse
from mauto.workflow.schema import container, describe, subject, validate

HEAD = "id: w\nversion: 1\nname: W\ntrigger: {event: signed_up}\n"  # lines 1-4


def problems(text: str, name: str = "workflow") -> list[tuple[str, int, int, str]]:
    found = validate(parse(textwrap.dedent(text).lstrip("\n"), "w.yaml"), name)
    assert all(isinstance(problem, Problem) and problem.path == "w.yaml" for problem in found)
    return [(problem.rule, problem.pos.line, problem.pos.col, problem.message) for problem in found]


def test_a_valid_workflow_has_no_problems():
    assert problems(HEAD + "steps:\n  - wait: 1d\n  - id: hi\n    email: welcome/hi\n    vars: {a: b}\n") == []


def test_unknown_top_level_key_at_the_key_with_a_suggestion():
    assert problems(HEAD + "stpes: []\nsteps:\n  - wait: 1d\n") == [
        ("schema", 5, 1, "unknown key `stpes`; did you mean `steps`?")]


def test_unknown_key_in_a_nested_step_names_the_step_and_suggests():
    assert problems(HEAD + "steps:\n  - if: 'true'\n    then:\n      - wiat: 1d\n") == [
        ("schema", 8, 9, "unknown key `wiat` in step 1.then.1; did you mean `wait`?")]


def test_unknown_key_without_a_close_match_has_no_suggestion():
    assert problems(HEAD + "steps:\n  - wait: 1d\n    zzzz: 1\n") == [
        ("schema", 7, 5, "unknown key `zzzz` in step 1")]


def test_a_steps_id_names_it_in_messages():
    assert problems(HEAD + "steps:\n  - id: hello\n    email: a/b\n    then: []\n") == [
        ("schema", 8, 5, "`then` does not go with `email` in step 1 (`hello`); an email step takes: id, name, "
                         "email, vars")]


@pytest.mark.parametrize(("word", "action"), [("delay", "wait"), ("sleep", "wait"), ("mail", "email"),
                                            ("text", "sms"), ("condition", "if")])
def test_unknown_step_key_suggests_the_action_it_means(word, action):
    assert problems(HEAD + f"steps:\n  - {word}: 2d\n") == [
        ("schema", 6, 5, f"unknown key `{word}` in step 1; did you mean `{action}`?")]


def test_missing_required_key():
    assert problems("id: w\nversion: 1\ntrigger: {event: a}\nsteps:\n  - wait: 1d\n") == [
        ("schema", 1, 1, "the workflow is missing `name`")]


def test_missing_required_key_in_a_nested_mapping_is_at_its_key():
    assert problems(HEAD + "goal: {within: 7d}\nsteps:\n  - wait: 1d\n") == [
        ("schema", 5, 1, "`goal` is missing `event`")]


def test_if_without_then():
    assert problems(HEAD + "steps:\n  - if: 'contact.score > 1'\n") == [
        ("schema", 6, 5, "step 1 is missing `then`")]


@pytest.mark.parametrize(("text", "expected"), [
    ("id: w\nversion: one\nname: W\ntrigger: {event: a}\nsteps:\n  - wait: 1d\n",
     ("schema", 2, 10, "`version` must be an integer, not the string `one`")),
    ("id: w\nversion: 1\nname: W\ntrigger: {event: a}\nsteps: wait\n",
     ("schema", 5, 8, "`steps` must be a list, not the string `wait`")),
    ("- a\n- b\n", ("schema", 1, 1, "the file must be a mapping, not a list")),
    (HEAD + "tags: yes\nsteps:\n  - wait: 1d\n", ("schema", 5, 7, "`tags` must be a list, not the string `yes`")),
])
def test_wrong_type_at_the_value(text, expected):
    assert problems(text) == [expected]


def test_wrong_type_of_a_step():
    found = problems(HEAD + "steps:\n  - 5\n")
    assert ("schema", 6, 5, "step 1 must be a mapping, not the number 5") in found


@pytest.mark.parametrize(("text", "expected"), [
    (HEAD + "steps:\n  - wait 1d\n", ("schema", 6, 5, "step 1 must be a mapping, not the string `wait 1d`")),
    (HEAD + "steps:\n  -\n", ("schema", 6, 4, "step 1 must be a mapping, not empty")),
    ("id: w\nversion: 1\nname: W\ntrigger: signed_up\nsteps:\n  - wait: 1d\n",
     ("schema", 4, 10, "`trigger` must be a mapping, not the string `signed_up`")),
])
def test_a_step_or_trigger_that_is_not_a_mapping_is_one_plain_finding(text, expected):
    assert problems(text) == [expected]


@pytest.mark.parametrize(("text", "expected"), [
    (HEAD + "category: marketting\nsteps:\n  - wait: 1d\n",
     ("schema", 5, 11, "`category` must be one of marketing, transactional, not the string `marketting`; "
                       "did you mean `marketing`?")),
    (HEAD + "reentry: nevr\nsteps:\n  - wait: 1d\n",
     ("schema", 5, 10, "`reentry` must be one of never, always, not the string `nevr`; did you mean `never`?")),
    (HEAD + "steps:\n  - wait: {until: '09:00', days: [monday]}\n",
     ("schema", 6, 35, "`wait.days.0` in step 1 must be one of mon, tue, wed, thu, fri, sat, sun, not the string "
                       "`monday`; did you mean `mon`?")),
    (HEAD + "in_flight: abort\nsteps:\n  - wait: 1d\n",
     ("schema", 5, 12, "`in_flight` must be one of finish, migrate, stop, not the string `abort`")),
])
def test_enum_with_a_suggestion_at_the_value(text, expected):
    assert problems(text) == [expected]


def test_two_actions_in_one_step_at_the_second_action():
    assert problems(HEAD + "steps:\n  - email: a/b\n    sms: a/b\n") == [
        ("schema", 7, 5, "step 1 has two actions, `email` and `sms`; a step does one thing: make them separate steps")]


def test_two_trigger_kinds():
    text = "id: w\nversion: 1\nname: W\ntrigger: {event: a, segment: vip}\nsteps:\n  - wait: 1d\n"
    assert problems(text) == [("schema", 4, 21, "`trigger` has two trigger kinds, `event` and `segment`; keep one")]


def test_no_action_and_no_trigger_kind():
    assert problems(HEAD + "steps:\n  - {}\n") == [
        ("schema", 6, 5, "no action in step 1; a step needs one of: wait, wait_for, email, sms, if, split, update, "
                         "score, lists, task, webhook, assign_coupon, start, exit")]
    assert problems("id: w\nversion: 1\nname: W\ntrigger: {}\nsteps:\n  - wait: 1d\n") == [
        ("schema", 4, 1, "no trigger kind in `trigger`; add one of: event, segment, date, schedule, inactivity")]


@pytest.mark.parametrize(("step", "companion", "action", "allowed", "col"), [
    ("  - email: a/b\n    then:\n      - exit: done\n", "then", "email", "id, name, email, vars", 5),
    ("  - wait: 1d\n    vars: {a: b}\n", "vars", "wait", "id, name, wait", 5),
    ("  - sms: a/b\n    on_timeout: []\n", "on_timeout", "sms", "id, name, sms, vars", 5),
    ("  - if: 'true'\n    then: []\n    on_event: []\n", "on_event", "if", "id, name, if, then, else", 5),
])
def test_companion_key_on_the_wrong_action(step, companion, action, allowed, col):
    article = "an" if action[0] in "aeio" else "a"
    assert problems(HEAD + "steps:\n" + step) == [
        ("schema", 7 if companion != "on_event" else 8, col,
         f"`{companion}` does not go with `{action}` in step 1; {article} {action} step takes: {allowed}")]


def test_where_on_a_segment_trigger():
    text = "id: w\nversion: 1\nname: W\ntrigger: {segment: vip, where: 'x'}\nsteps:\n  - wait: 1d\n"
    assert problems(text) == [
        ("schema", 4, 25, "`where` does not go with `segment` in `trigger`; a segment trigger takes: segment, on")]


@pytest.mark.parametrize(("text", "expected"), [
    (HEAD + "steps:\n  - wait: 3 days\n",
     ("duration", 6, 11, "`wait` in step 1: `3 days` is not a duration; write `3d`")),
    (HEAD + "steps:\n  - wait_for: {event: x, timeout: 3 days}\n",
     ("duration", 6, 35, "`wait_for.timeout` in step 1: `3 days` is not a duration; write `3d`")),
    (HEAD + "goal: {event: x, within: P1M}\nsteps:\n  - wait: 1d\n",
     ("duration", 5, 26, "`goal.within`: `P1M`: months and years have no fixed length; write days or weeks, "
                         "e.g. 30d")),
    (HEAD + "settings:\n  quiet_hours: {start: '9pm', end: '08:00'}\nsteps:\n  - wait: 1d\n",
     ("time-of-day", 6, 24, "`settings.quiet_hours.start`: `9pm` is not a time of day; write 24-hour HH:MM, "
                            "e.g. 09:00")),
])
def test_durations_and_times_are_reported_by_their_own_rules(text, expected):
    assert problems(text) == [expected]


def test_a_negative_offset_is_a_duration_only_where_signed():
    base = "id: w\nversion: 1\nname: W\n"
    assert problems(base + "trigger: {date: {field: birthday, offset: -7d}}\nsteps:\n  - wait: 1d\n") == []
    found = problems(HEAD + "steps:\n  - wait: -7d\n")
    assert [(rule, line, col) for rule, line, col, _ in found] == [("duration", 6, 11)]


@pytest.mark.parametrize(("text", "expected"), [
    ("id: Abandoned Cart\nversion: 1\nname: W\ntrigger: {event: a}\nsteps:\n  - wait: 1d\n",
     ("schema", 1, 5, "`id`: `Abandoned Cart` must be lowercase letters, digits and dashes, e.g. `abandoned-cart`")),
    (HEAD + "steps:\n  - id: Reminder 1\n    wait: 1d\n",
     ("schema", 6, 9, "`id` in step 1 (`Reminder 1`): `Reminder 1` must be lowercase letters, digits and dashes, "
                      "e.g. `reminder-1`")),
    ("id: w\nversion: 0\nname: W\ntrigger: {event: a}\nsteps:\n  - wait: 1d\n",
     ("schema", 2, 10, "`version` must be at least 1, not 0")),
    (HEAD + "steps:\n  - score: 0\n",
     ("schema", 6, 12, "`score: 0` in step 1 does nothing; remove the step or give it points")),
    (HEAD + "steps: []\n", ("schema", 5, 8, "`steps` needs at least 1 item")),
    (HEAD + "settings:\n  send_days: [mon, mon]\nsteps:\n  - wait: 1d\n",
     ("schema", 6, 14, "`settings.send_days` lists `mon` more than once")),
])
def test_other_value_problems(text, expected):
    assert problems(text) == [expected]


def test_several_mistakes_are_each_reported_once_in_file_order():
    found = problems(HEAD + "category: marketting\nsteps:\n  - wiat: 1h\n  - wait: 3 days\n")
    assert found == [
        ("schema", 5, 11, "`category` must be one of marketing, transactional, not the string `marketting`; "
                          "did you mean `marketing`?"),
        ("schema", 7, 5, "unknown key `wiat` in step 1; did you mean `wait`?"),
        ("duration", 8, 11, "`wait` in step 2: `3 days` is not a duration; write `3d`"),
    ]


# --- mauto.yaml ----------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("timezone: Europe/Paris\nstor: x.db\n", ("schema", 2, 1, "unknown key `stor`; did you mean `store`?")),
    ("timezone: 5\n", ("schema", 1, 11, "`timezone` must be a string, not the number 5")),
    ("contact_fields:\n  country: strng\n",
     ("schema", 2, 12, "`contact_fields.country` must be one of string, integer, number, boolean, date, datetime, "
                       "list, not the string `strng`; did you mean `string`?")),
    ("limits:\n  frequency_cap: {email: {max: 3, per: 7 days}}\n",
     ("duration", 2, 40, "`limits.frequency_cap.email.per`: `7 days` is not a duration; write `7d`")),
])
def test_project_file_problems(text, expected):
    assert problems(text, "project") == [expected]


# --- wording helpers ----------------------------------------------------------------

def test_describe_names_nested_steps_by_number():
    assert describe(("steps", 2, "then", 0, "wait_for", "timeout"), {}) == ("step 3.then.1", "wait_for.timeout")
    assert describe(("settings", "quiet_hours"), {}) == ("", "settings.quiet_hours")
    data = {"steps": [{"id": "first", "wait": "1d"}]}
    assert describe(("steps", 0, "wait"), data) == ("step 1 (`first`)", "wait")
    assert subject(("steps", 0, "wait"), data) == "`wait` in step 1 (`first`)"
    assert subject(("version",), {}) == "`version`"
    assert container((), {}) == "the workflow"
    assert container((), {}, "project") == "mauto.yaml"
    assert container(("steps", 0), data) == "step 1 (`first`)"


# --- what cannot run: bounds, webhooks (each passed the schema before) -------------------------------------

TOO_LONG = "`99999999999d` is longer than mauto handles (at most 365000d (about 1,000 years))"


@pytest.mark.parametrize(("text", "expected"), [
    (HEAD + "steps:\n  - wait: 99999999999d\n", ("duration", 6, 11, f"`wait` in step 1: {TOO_LONG}")),
    (HEAD + "reentry: {after: 99999999999d}\nsteps:\n  - wait: 1d\n",
     ("duration", 5, 18, f"`reentry.after`: {TOO_LONG}")),
    ("id: w\nversion: 1\nname: W\ntrigger: {date: {field: birthday, offset: -99999999999d}}\nsteps:\n  - wait: 1d\n",
     ("duration", 4, 43, "`trigger.date.offset`: `-99999999999d` is longer than mauto handles (at most 365000d "
                         "(about 1,000 years))")),
    (HEAD + "steps:\n  - webhook: {url: 'https://x.example/', timeout: 0s}\n",
     ("duration", 6, 51, "`webhook.timeout` in step 1: a timeout of `0s` gives up before anything is sent; "
                         "write at least 1s")),
    (HEAD + "steps:\n  - webhook: {url: 'gopher://x.example/'}\n",
     ("webhook-url", 6, 20, "`webhook.url` in step 1: `gopher:` URLs cannot be called; a webhook calls an http "
                            "or https URL")),
    (HEAD + "steps:\n  - webhook: {url: 'https://a:b@x.example/'}\n",
     ("secret-in-workflow", 6, 20, "`webhook.url` in step 1: the URL holds a user name or password (`…@`); a "
                                   "workflow is committed to git: give credentials with `headers_env`, e.g. "
                                   "headers_env: {Authorization: CRM_AUTH}")),
    (HEAD + "steps:\n  - webhook: {url: \"https://x.example/\\n\"}\n",
     ("webhook-url", 6, 20, "`webhook.url` in step 1: a line break (U+000A) in the URL; percent-encode it")),
    (HEAD + "steps:\n  - webhook: {url: 'https://x.example/', headers: {X-A: \"1\\r\\n\"}}\n",
     ("webhook-header", 6, 57, "`webhook.headers.X-A` in step 1: a carriage return (U+000D) in a header value; "
                               "a header is one line of text, and a line break in it would start another header")),
    (HEAD + "steps:\n  - webhook: {url: 'https://x.example/', headers_env: {Authorization: $AUTH}}\n",
     ("schema", 6, 71, "`webhook.headers_env.Authorization` in step 1: `$AUTH` is not an environment variable "
                       "name; use letters, digits and `_`, e.g. SHOP_API_AUTH")),
])
def test_what_cannot_run_is_refused_by_its_rule(text, expected):
    assert problems(text) == [expected]


@pytest.mark.parametrize(("text", "expected"), [
    ("limits:\n  frequency_cap: {sms: {max: 1, per: 99999999999d}}\n",
     ("duration", 2, 38, f"`limits.frequency_cap.sms.per`: {TOO_LONG}")),
    ("channels:\n  sms: {transport: http, url: 'https://sms.example/', timeout: 2h}\n",
     ("duration", 2, 64, "`channels.sms.timeout`: a timeout of `2h` is longer than a request may wait (at most "
                         "1h)")),
    ("phone_region: fr\n", ("schema", 1, 15, "`phone_region`: `fr` is not a country code; write its two capital "
                                             "letters (ISO 3166-1 alpha-2), e.g. FR")),
    ("channels:\n  sms: {transport: http, token_env: 'SMS TOKEN'}\n",
     ("schema", 2, 37, "`channels.sms.token_env`: `SMS TOKEN` is not an environment variable name; use letters, "
                       "digits and `_`, e.g. SHOP_API_AUTH")),
])
def test_project_values_that_cannot_run(text, expected):
    assert problems(text, "project") == [expected]


def test_phone_region_is_in_the_project_schema():
    assert problems("phone_region: FR\n", "project") == []


@pytest.mark.parametrize("data", [
    {"id": "w", "version": 1, "name": "W", "trigger": {"event": "a"}, "steps": [{"wait": "99999999999d"}]},
    {"id": "w", "version": 1, "name": "W", "trigger": {"event": "a"},
     "steps": [{"webhook": {"url": "https://x.example/", "timeout": "2h"}}]},
    {"id": "w", "version": 1, "name": "W", "trigger": {"event": "a"},
     "steps": [{"webhook": {"url": "https://x.example/\n"}}]},
    {"id": "w", "version": 1, "name": "W", "trigger": {"event": "a"},
     "steps": [{"webhook": {"url": "https://x.example/", "headers": {"X-A\n": "1"}}}]},
])
def test_the_fast_check_refuses_what_cannot_run_too(data):
    from mauto.workflow.schema import fast_valid, validator

    assert not validator("workflow").is_valid(data)
    assert not fast_valid(data, "workflow")  # else lint of a large project would let it through


def test_a_scenario_past_the_bounds_is_refused_at_its_line(tmp_path):
    # Before: `mauto test` ended in an OverflowError (start + for).
    from mauto.scenarios import schema_problems

    document = parse("start: 9999-12-31T23:59:59-12:00\nfor: 99999999999d\ncontacts: [{id: a}]\n"
                     "events: [{contact: a, event: x, at: +400000d}]\nexpect: [{contact: a, enters: w}]\n",
                     "scenarios/s.yaml")
    assert [(p.line, p.col, p.message) for p in schema_problems(document)] == [
        (1, 8, "`start`: `9999-12-31T23:59:59-12:00` is outside the times mauto handles (years 1000 to 8999)"),
        (2, 6, f"`for`: {TOO_LONG}"),
        (4, 37, "`at` in event 1: `400000d` is longer than mauto handles (at most 365000d (about 1,000 years))"),
    ]
