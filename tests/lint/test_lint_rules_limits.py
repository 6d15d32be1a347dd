"""What cannot run is refused where it is written: durations and moments past what the engine represents,
expressions too big or reading internals, webhook URLs, headers and credentials (rules duration,
time-of-day, expression-syntax, webhook-url, webhook-header, secret-in-workflow, schema).

Before these checks, every case here linted clean (or crashed lint with an OverflowError), deployed, and
then failed every tick; the webhook cases called what they named.
"""
from __future__ import annotations

import pytest

from .conftest import PROJECT_YAML, fails, passes, text

WF = "workflows/welcome.yaml"
TOO_LONG = "`99999999999d` is longer than mauto handles (at most 365000d (about 1,000 years))"


def at(source: str, needle: str, nth: int = 1) -> tuple[int, int]:
    """(line, col) of the `nth` `needle` in `source`, 1-based: where a finding on that value must be."""
    offset = -1
    for _ in range(nth):
        offset = source.index(needle, offset + 1)
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def steps_workflow(steps: str, head: str = "", trigger: str = "{event: signed_up}") -> str:
    """A workflow whose `trigger` is on line 4, `head` from line 5, then `steps:` and the steps."""
    return "id: welcome\nversion: 1\nname: Welcome\ntrigger: " + trigger + "\n" + head + "steps:\n" + text(steps)


# --- duration: at most 365000d -------------------------------------------------------------

@fails("duration")
def test_duration_too_long_everywhere_a_workflow_writes_one(check):
    source = steps_workflow("""
        - wait: 99999999999d
        - wait_for: {event: order_placed, timeout: 99999999999d}
        - task: {title: Call them, due: 99999999999d}
        - id: hello
          email: welcome/hello
        """, head="reentry: {after: 99999999999d}\ngoal: {event: order_placed, within: 99999999999d}\n"
                  "settings:\n  frequency_cap:\n    email: {max: 2, per: 99999999999d}\n")
    problems = check({WF: source}, "duration", problem=[at(source, "99999999999d", n) for n in range(1, 7)])
    assert [p.message for p in problems] == [
        f"`reentry.after`: {TOO_LONG}", f"`goal.within`: {TOO_LONG}",
        f"`settings.frequency_cap.email.per`: {TOO_LONG}", f"`wait` in step 1: {TOO_LONG}",
        f"`wait_for.timeout` in step 2: {TOO_LONG}", f"`task.due` in step 3: {TOO_LONG}"]


@fails("duration")
def test_duration_too_long_in_an_expression(check):
    source = steps_workflow("""
        - if: "has_event('order_placed', within='99999999999d') or now - duration('400000d') > contact.created_at"
          then: [{exit: converted}]
        - id: hello
          email: welcome/hello
        """)
    problems = check({WF: source}, "duration", problem=[at(source, "within"), at(source, "duration(")])
    assert [p.message for p in problems] == [
        TOO_LONG, "`400000d` is longer than mauto handles (at most 365000d (about 1,000 years))"]


@fails("duration")
@pytest.mark.parametrize("trigger, field", [
    ("{date: {field: birthday, offset: -99999999999d}}", "trigger.date.offset"),
    ("{inactivity: {event: order_placed, for: 99999999999d}}", "trigger.inactivity.for"),
])
def test_duration_too_long_in_a_trigger(check, trigger, field):
    source = steps_workflow("- id: hello\n  email: welcome/hello\n", trigger=trigger)
    check({WF: source}, "duration", problem=at(source, "-99999999999d" if "offset" in field else "99999999999d"),
          message=f"`{field}`: `{'-' if 'offset' in field else ''}99999999999d` is longer than mauto handles")


@fails("duration")
def test_duration_too_long_in_the_project_file(check):
    project = PROJECT_YAML + "limits:\n  frequency_cap:\n    sms: {max: 1, per: 99999999999d}\n"
    check({"mauto.yaml": project}, "duration", problem=at(project, "99999999999d"),
          message=f"`limits.frequency_cap.sms.per`: {TOO_LONG}")


@fails("duration")
def test_a_timeout_longer_than_an_hour_cannot_be_waited_for(check):
    # a socket cannot wait 1,000 years (OverflowError), and a tick waiting even an hour is stuck
    project = PROJECT_YAML.replace("port: 1025,", "port: 1025, timeout: 99999h,")
    webhook = steps_workflow('- webhook: {url: "https://crm.example/leads", timeout: 2h}\n')
    check({"mauto.yaml": project, WF: webhook}, "duration",
          problem=[("mauto.yaml", *at(project, "99999h")), (WF, *at(webhook, "2h"))],
          message="is longer than a request may wait (at most 1h)")


@passes("duration")
def test_duration_up_to_the_bound_passes(check):
    source = steps_workflow("""
        - wait: 365000d
        - wait_for: {event: order_placed, timeout: 52142w}
        - webhook: {url: "https://crm.example/leads", timeout: 1h}
        - id: hello
          email: welcome/hello
        """, trigger="{date: {field: birthday, offset: -365000d}}")
    check({WF: source}, "duration")


# --- time-of-day: `until` within years 1000 to 8999 ------------------------------------------

@fails("time-of-day")
@pytest.mark.parametrize("until", ["9999-12-31T23:59:59-12:00", "9999-12-31", "0999-12-31T09:00",
                                   "9000-01-01T00:00:00Z"])
def test_until_outside_the_times_mauto_handles(check, until):
    source = steps_workflow(f'- wait: {{until: "{until}"}}\n- id: hello\n  email: welcome/hello\n')
    check({WF: source}, "time-of-day", problem=at(source, f'"{until}'),
          message=f"`{until}` is outside the times mauto handles (years 1000 to 8999)")


@passes("time-of-day")
def test_until_at_the_edges_of_the_times_mauto_handles_passes(check):
    source = steps_workflow('- wait: {until: "8999-12-31T23:59:59+00:00"}\n- id: hello\n  email: welcome/hello\n')
    check({WF: source}, "time-of-day")


# --- expression-syntax: internals, size ----------------------------------------------------------

@fails("expression-syntax")
def test_expression_reading_internals_is_refused_at_the_name(check):
    source = steps_workflow('- if: "contact.score > 5 and contact.__class__"\n  then: [{exit: done}]\n'
                            "- id: hello\n  email: welcome/hello\n")
    check({WF: source}, "expression-syntax", problem=at(source, "__class__"),
          message="`__class__` cannot be read: names starting with `_` are internal")


@fails("expression-syntax")
def test_expression_of_five_thousand_or_clauses_is_too_long(check):
    where = " or ".join(f"contact.score > {number}" for number in range(5000))
    source = steps_workflow(f'- if: "{where}"\n  then: [{{exit: done}}]\n- id: hello\n  email: welcome/hello\n')
    [problem] = check({WF: source}, "expression-syntax", problem=(6, 7))
    assert problem.message.startswith("expression too long (118,886 characters; at most 10,000); name a segment "
                                      "in mauto.yaml, or test a list with `in [...]` in `contact.score > 0 or ")
    assert len(problem.message) < 300


@fails("expression-syntax")
def test_expression_nested_too_deeply(check):
    chain = " or ".join(f"contact.score > {number}" for number in range(150))
    brackets = "(" * 40 + "contact.score" + ")" * 40
    project = PROJECT_YAML.replace("vip: \"contact.score >= 100\"", f"vip: \"{chain}\"\n  deep: \"{brackets}\"")
    line, quote = at(project, '"((')
    # the chain at its start; the brackets at the first one past 32
    check({"mauto.yaml": project}, "expression-syntax", problem=[at(project, '"contact.score > 0'), (line, quote + 33)],
          message="expression too deeply nested (")


# --- webhook-url ---------------------------------------------------------------------------------

@fails("webhook-url")
@pytest.mark.parametrize("url, message", [
    ("file:///etc/passwd", "`file:` URLs cannot be called; a webhook calls an http or https URL"),
    ("ftp://crm.example/leads", "`ftp:` URLs cannot be called"),
    ("gopher://crm.example:70/_x", "`gopher:` URLs cannot be called"),
    ("crm.example/leads", "`crm.example/leads` is not a URL; write it whole, e.g. https://crm.example/hooks/lead"),
    ("https:///leads", "`https:///leads` has no host"),
    ("https://{{ contact.crm_host }}/leads", "write the host out before any `{{ }}`"),
    ("https://crm.example{{ vars.path }}", "write the host out before any `{{ }}` and end it with `/`"),
    ("{{ vars.endpoint }}", "write the scheme and host out before any `{{ }}`"),
])
def test_webhook_url_that_cannot_be_called(check, url, message):
    source = steps_workflow(f'- webhook: {{url: "{url}"}}\n')
    check({WF: source}, "webhook-url", problem=at(source, '"' + url[:4]), message=f"`webhook.url` in step 1: {message}")


@passes("webhook-url")
def test_webhook_url_http_and_https_with_the_host_written_out_pass(check):
    source = steps_workflow("""
        - webhook: {url: "https://crm.example/contacts/{{ contact.id }}"}
        - webhook: {url: "http://127.0.0.1:8080/hooks?id={{ contact.id }}"}
        - webhook: {url: "HTTPS://crm.example"}
        """)
    check({WF: source}, "webhook-url")


# --- webhook-header -----------------------------------------------------------------------------------

@fails("webhook-header")
@pytest.mark.parametrize("value, what", [
    ('"mauto\\r\\nX-Admin: yes"', "a carriage return (U+000D)"),
    ('"mauto\\nX-Admin: yes"', "a line break (U+000A)"),
    ('"a\\0b"', "a NUL byte (U+0000)"),
    ('"a\\x0bb"', "a control character (U+000B)"),
])
def test_webhook_header_value_with_a_control_character(check, value, what):
    source = steps_workflow(f'- webhook: {{url: "https://crm.example/", headers: {{X-Source: {value}}}}}\n')
    check({WF: source}, "webhook-header", problem=at(source, value),
          message=f"`webhook.headers.X-Source` in step 1: {what} in a header value; a header is one line")


@fails("webhook-header")
def test_webhook_header_name_that_is_not_a_token(check):
    source = steps_workflow("""
        - webhook:
            url: "https://crm.example/"
            headers: {"X Source": mauto}
            headers_env: {"X-Api-Key:": CRM_KEY}
        """)
    problems = check({WF: source}, "webhook-header", problem=[at(source, '"X Source"'), at(source, '"X-Api-Key:"')])
    assert [p.message for p in problems] == [
        "`X Source` is not a header name in `webhook.headers` in step 1: use letters, digits and `-`, "
        "e.g. X-Request-Id",
        "`X-Api-Key:` is not a header name in `webhook.headers_env` in step 1: use letters, digits and `-`, "
        "e.g. X-Request-Id"]


@fails("webhook-header")
def test_webhook_header_given_in_headers_and_headers_env(check):
    source = steps_workflow("""
        - webhook:
            url: "https://crm.example/"
            headers: {X-Source: mauto}
            headers_env: {x-source: CRM_SOURCE}
        """)
    check({WF: source}, "webhook-header", problem=at(source, "x-source"),
          message="`x-source` is given both in `headers` (as `X-Source`) and in `headers_env`; keep one")


@passes("webhook-header")
def test_webhook_headers_one_line_each_pass(check):
    source = steps_workflow("""
        - webhook:
            url: "https://crm.example/"
            headers: {X-Source: "mauto {{ contact.id }}", Accept: application/json}
            headers_env: {Authorization: CRM_AUTH}
        """)
    check({WF: source}, "webhook-header")


# --- secret-in-workflow ----------------------------------------------------------------------------------

@fails("secret-in-workflow")
def test_secret_in_workflow_credentials_in_the_url(check):
    source = steps_workflow('- webhook: {url: "https://shop:hunter2@crm.example/leads"}\n')
    [problem] = check({WF: source}, "secret-in-workflow", problem=at(source, '"https'),
                      message="`webhook.url` in step 1: the URL holds a user name or password (`…@`); a workflow "
                              "is committed to git: give credentials with `headers_env`, e.g. "
                              "headers_env: {Authorization: CRM_AUTH}")
    assert "hunter2" not in problem.message


@fails("secret-in-workflow")
@pytest.mark.parametrize("header, value", [
    ("Authorization", "Bearer sk_live_4eC39HqLyjWDarjtT1zdp7dc"), ("authorization", "Basic c2hvcDpodW50ZXIy"),
    ("Proxy-Authorization", "Basic c2hvcDpodW50ZXIy"), ("Cookie", "session=abc"), ("X-API-Key", "abc123"),
    ("X-Auth-Token", "abc123"), ("X-Shop-Token", "abc123"), ("X-Client-Secret", "abc123"),
    ("X-Apikey", "abc123"), ("X-Password", "hunter2"), ("Authorization", "Bearer {{ 'sk_live_4eC39' }}"),
    ("Authorization", "sk_live_{{ contact.id }}"),
])
def test_secret_in_workflow_literal_credential_headers(check, header, value):
    source = steps_workflow(f'- webhook: {{url: "https://crm.example/", headers: {{{header}: "{value}"}}}}\n')
    [problem] = check({WF: source}, "secret-in-workflow", problem=at(source, f'"{value}"'),
                      message=f"header `{header}` in step 1 holds a credential written into the workflow; put it "
                              f"in an environment variable and name it with `headers_env: {{{header}: VARIABLE}}`")
    assert value not in problem.message


@fails("secret-in-workflow")
@pytest.mark.parametrize("url", ["https://crm.example/leads?api_key=abc123",
                                 "https://crm.example/leads?id={{ contact.id }}&access_token=sk_live_1",
                                 "https://crm.example/leads?key=zz#top"])
def test_secret_in_workflow_credential_in_the_query(check, url):
    source = steps_workflow(f'- webhook: {{url: "{url}"}}\n')
    name = url.split("?")[1].split("&")[-1].split("=")[0]
    [problem] = check({WF: source}, "secret-in-workflow", problem=at(source, '"https'),
                      message=f"the URL of step 1 has the query parameter `{name}` written out: a workflow is "
                              "committed to git; give credentials in a header with `headers_env`, e.g. "
                              "headers_env: {Authorization: CRM_AUTH}")
    assert "abc123" not in problem.message and "sk_live" not in problem.message


@passes("secret-in-workflow")
def test_secret_in_workflow_headers_env_and_template_values_pass(check):
    source = steps_workflow("""
        - webhook:
            url: "https://crm.example/token"
            as: login
        - webhook:
            url: "https://crm.example/leads?page=2&monkey=1&token={{ vars.login.token }}"
            headers: {Authorization: "Bearer {{ vars.login.token }}", X-Token-Kind: "", Accept: text/plain}
            headers_env: {X-API-Key: CRM_KEY, Cookie: CRM_COOKIE}
        """)
    check({WF: source}, "secret-in-workflow")


# --- schema: phone_region --------------------------------------------------------------------------------

@fails("schema")
@pytest.mark.parametrize("region", ["fr", "FRA", "33"])
def test_phone_region_is_a_country_code(check, region):
    check({"mauto.yaml": PROJECT_YAML + f"phone_region: \"{region}\"\n"}, "schema", problem=(17, 15),
          message=f"`phone_region`: `{region}` is not a country code; write its two capital letters "
                  "(ISO 3166-1 alpha-2), e.g. FR")


@passes("schema")
def test_phone_region_fr_passes(check):
    check({"mauto.yaml": PROJECT_YAML + "phone_region: FR\n"}, "schema")


@fails("timezone")
def test_an_unknown_zone_in_the_project_is_refused(check):
    check({"mauto.yaml": PROJECT_YAML.replace("Europe/Paris", "Mars/Olympus")}, "timezone", problem=(1, 11),
          message="unknown time zone `Mars/Olympus`")
