"""Writes mauto/data/*.schema.json and schema/*.schema.json from one Python source.

The schemas are data, but writing 2020-12 JSON by hand for fourteen step kinds
repeats itself; this script is the single place they are defined. Run it after
changing the language: `python tools/gen_schema.py`. A test checks the files
are up to date.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
SLUG = "^[a-z0-9][a-z0-9-]*$"
_DURATION_BODY = r"(?:(?:\d+[wdhms])+|P(?=.*\d)(?:\d+W|(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+S)?)?))"
DURATION = "^" + _DURATION_BODY + "$"
SIGNED_DURATION = "^-?" + _DURATION_BODY + "$"
TIME_OF_DAY = r"^(?:[01]\d|2[0-3]):[0-5]\d$"
# A calendar date YYYY-MM-DD in the years mauto handles (1000 to 8999: mauto.limits), February 29th in leap
# years only: a date that does not exist is refused where it is written, by editors too.
_YEAR = r"[1-8]\d{3}"
_LEAP_YEAR = r"(?:[1-8]\d(?:0[48]|[2468][048]|[13579][26])|(?:[1357][26]|[2468][048])00)"
CALENDAR_DATE = (r"^(?:" + _YEAR + r"-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)"
                 r"|02-(?:0[1-9]|1\d|2[0-8]))|" + _LEAP_YEAR + r"-02-29)$")
ENV_NAME = "^[A-Za-z_][A-Za-z0-9_]*$"
# http or https, then the host (and port) written out up to the first `/`, `?` or `#`: a template may only
# come after it, so that no contact's data can choose where a request goes. No `user:password@`.
# `$` alone would let a final line break through (Python's `$` matches before one): END says nothing follows.
END = r"$(?![\s\S])"
WEBHOOK_URL = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@{}\s\\]+(?:[/?#][^\x00-\x1f\x7f]*)?" + END
HEADER_NAME = r"^[!#\$%&'*+.^_`|~0-9A-Za-z-]+" + END  # an HTTP token (RFC 9110)
HEADER_VALUE = r"^[^\x00-\x1f\x7f]*" + END  # one line: no control character can split it into two headers
# Beyond the patterns, mauto's validator checks these formats (mauto/workflow/schema.py): a duration at most
# about 1,000 years, a timeout at most 1h, a moment within years 1000 to 8999. Editors ignore them.
DURATION_FORMAT, SIGNED_DURATION_FORMAT, TIMEOUT_FORMAT, MOMENT_FORMAT = (
    "mauto-duration", "mauto-signed-duration", "mauto-timeout", "mauto-moment")


def obj(properties: dict, required: list[str] | None = None, description: str | None = None, **extra) -> dict:
    schema: dict = {"type": "object"}
    if description:
        schema["description"] = description
    schema["properties"] = properties
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    schema.update(extra)
    return schema


def ref(name: str, description: str | None = None) -> dict:
    schema: dict = {"$ref": f"#/$defs/{name}"}
    if description:
        schema["description"] = description
    return schema


def string(description: str, **extra) -> dict:
    return {"type": "string", "description": description, **extra}


def union(description: str, branches: list[tuple[str, dict]]) -> dict:
    """A value of several JSON types, dispatched on its type with if/then.

    oneOf would report every branch's failure; dispatching on the type makes the
    error come from the one branch the user meant.
    """
    schema: dict = {"description": description, "type": [t for t, _ in branches]}
    conditions = []
    for json_type, branch in branches:
        conditions.append({"if": {"type": json_type}, "then": branch})
    schema["allOf"] = conditions
    return schema


COMMON_DEFS = {
    "duration": string(
        "A duration: a number and a unit (s, m, h, d, w), e.g. 30m, 1h, 3d, 2w, 1h30m; or ISO 8601 (P3D, PT1H). "
        "At most 365000d (about 1,000 years).",
        title="duration", pattern=DURATION, format=DURATION_FORMAT),
    "signedDuration": string(
        "A duration that may be negative: -7d is seven days before. At most 365000d (about 1,000 years) either way.",
        title="duration", pattern=SIGNED_DURATION, format=SIGNED_DURATION_FORMAT),
    "timeout": string(
        "How long one network request may take: a duration longer than 0s and at most 1h, e.g. 10s.",
        title="duration", pattern=DURATION, format=TIMEOUT_FORMAT),
    "timeOfDay": string("A time of day, 24-hour HH:MM, e.g. 09:00.", title="time-of-day", pattern=TIME_OF_DAY),
    "blackoutDates": {"type": "array", "uniqueItems": True,
                      "description": "Days (holidays) on which no marketing message goes out, in each contact's "
                                     "zone: a send due on one waits for the next allowed moment.",
                      "items": string("A date, YYYY-MM-DD, e.g. 2026-12-25.", title="date", pattern=CALENDAR_DATE)},
    "day": {"description": "A day of the week.", "enum": DAYS},
    "days": {"type": "array", "description": "Days of the week.", "items": {"$ref": "#/$defs/day"},
             "minItems": 1, "uniqueItems": True},
    "expression": string(
        "A Jinja2 expression without {{ }}, e.g. \"contact.score >= 50\". Names: contact, event, vars, now, "
        "has_event(), event_count(), days_since(), in_list(), duration().",
        title="expression", minLength=1),
    "eventName": string("An event name, e.g. order_placed.", title="event-name",
                        pattern="^[A-Za-z_][A-Za-z0-9_.:-]*$"),
    "timezone": string("An IANA time zone name, e.g. Europe/Paris.", title="timezone", minLength=1),
    "quietHours": obj({
        "start": ref("timeOfDay", "Quiet hours begin at this time (in the contact's zone)."),
        "end": ref("timeOfDay", "Quiet hours end at this time; may be earlier than start (across midnight)."),
    }, ["start", "end"], "Sends due inside this window are moved to its end."),
    "channelCap": obj({
        "max": {"type": "integer", "minimum": 1, "description": "At most this many messages..."},
        "per": ref("duration", "...in any window of this length."),
    }, ["max", "per"], "A frequency cap for one channel."),
    "frequencyCap": obj({
        "email": ref("channelCap", "Cap on marketing emails per contact."),
        "sms": ref("channelCap", "Cap on marketing SMS per contact."),
    }, None, "Marketing messages beyond the cap are postponed until the window allows them."),
}

# --- workflow -------------------------------------------------------------

STEP_LIST = {"type": "array", "description": "Steps, run top to bottom.", "items": {"$ref": "#/$defs/step"}}

STEP_COMMON = {
    "id": string("Step id, unique in the file; stats, wait_for and in_flight: migrate refer to it.",
                 title="step-id", pattern=SLUG),
    "name": string("A name for people."),
}

ACTIONS: dict[str, tuple[dict, dict]] = {
    # action key: (schema of the action's value, companion keys allowed beside it)
    "wait": (union("Sleep for a duration (2d) or until a moment ({until: \"09:00\", days: [mon]}).", [
        ("string", ref("duration")),
        ("object", obj({
            "until": string("A time of day (09:00, the next one to come) or an absolute date or date-time "
                            "(2026-12-24, 2026-12-24T09:00:00+01:00).", title="wait-until", minLength=1),
            "days": ref("days", "Only on these days of the week."),
        }, ["until"])),
    ]), {}),
    "wait_for": (obj({
        "event": ref("eventName", "The event to wait for."),
        "where": ref("expression", "Only events for which this is true count; `event` is the awaited event."),
        "timeout": ref("duration", "Give up after this long and run on_timeout."),
    }, ["event", "timeout"], "Wait for an event, at most `timeout`."), {
        "on_event": {**STEP_LIST, "description": "Steps run when the event arrives in time."},
        "on_timeout": {**STEP_LIST, "description": "Steps run when the timeout passes first."},
    }),
    "email": (string("Email template name: cart/reminder-1 is templates/cart/reminder-1.email.html.",
                     title="template-name", pattern="^[A-Za-z0-9_][A-Za-z0-9_./-]*$"), {
        "vars": {"type": "object",
                 "description": "Extra values for the template, as `vars.NAME`; strings are templates."},
    }),
    "sms": (string("SMS template name: cart/last-call is templates/cart/last-call.sms.txt.",
                   title="template-name", pattern="^[A-Za-z0-9_][A-Za-z0-9_./-]*$"), {
        "vars": {"type": "object",
                 "description": "Extra values for the template, as `vars.NAME`; strings are templates."},
    }),
    "if": (ref("expression", "Condition; `then` runs when true, `else` otherwise."), {
        "then": {**STEP_LIST, "description": "Steps run when the condition is true."},
        "else": {**STEP_LIST, "description": "Steps run when the condition is false."},
    }),
    "split": (obj({
        "id": string("Split id: the variant a contact gets is a stable hash of (workflow, split id, contact).",
                     title="step-id", pattern=SLUG),
        "variants": {
            "type": "object", "description": "Variants by name, each with a weight; weights add up to 100.",
            "minProperties": 2,
            "propertyNames": {"pattern": "^[A-Za-z0-9_-]+$"},
            "additionalProperties": obj({
                "weight": {"type": "integer", "minimum": 0, "maximum": 100, "description": "Percent of contacts."},
                "steps": {**STEP_LIST, "description": "Steps for this variant; empty for a holdout."},
            }, ["weight"], "One variant."),
        },
        "winner": obj({
            "metric": {"enum": ["goal"],
                       "description": "What the variants are compared on: the workflow's goal (conversions)."},
            "confidence": {"type": "number", "exclusiveMinimum": 0.5, "exclusiveMaximum": 1,
                           "description": "How sure the always-valid test must be (0.95: p below 0.05, corrected "
                                          "for the number of variants). Default 0.95."},
            "min_contacts": {"type": "integer", "minimum": 1,
                             "description": "No decision before every variant has this many contacts. "
                                            "Default 1000."},
        }, None, "Pick the winner: once the always-valid test declares a variant better at this confidence (every "
                 "variant having min_contacts), new entries all go to it. Needs the workflow's goal."),
    }, ["variants"], "A/B/n test or holdout; a contact always gets the same variant."), {}),
    "update": (obj({
        "set": {"type": "object", "description": "Fields to set; string values are templates.",
                "minProperties": 1},
        "unset": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "Fields to clear."},
        "add_tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "Tags to add."},
        "remove_tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "Tags to remove."},
    }, None, "Change the contact.", minProperties=1), {}),
    "score": ({"type": "integer", "not": {"const": 0},
               "description": "Points added to the lead score (negative to remove)."}, {}),
    "lists": (obj({
        "add": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
                "description": "Lists to add the contact to."},
        "remove": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
                   "description": "Lists to remove the contact from."},
    }, None, "Move the contact between lists.", minProperties=1), {}),
    "task": (obj({
        "title": string("What to do; a template.", minLength=1),
        "assignee": string("Who does it (an email or a team); a template."),
        "due": ref("duration", "Due this long after the task is created."),
        "notes": string("More detail for the assignee; a template."),
    }, ["title"], "Create a task for a person."), {}),
    "webhook": (obj({
        "url": string("URL to call, http or https; a template after the host: "
                      "https://crm.example/contacts/{{ contact.id }}. No user:password@: see headers_env.",
                      title="webhook-url", minLength=1, pattern=WEBHOOK_URL),
        "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"], "description": "HTTP method (default POST)."},
        "headers": {"type": "object", "propertyNames": {"title": "header-name", "pattern": HEADER_NAME},
                    "additionalProperties": string("A header value: one line; a template.", title="header-value",
                                                   pattern=HEADER_VALUE),
                    "description": "Request headers; values are templates. No secrets here (Authorization, "
                                   "tokens, keys): give them with headers_env."},
        "headers_env": {"type": "object", "minProperties": 1,
                        "propertyNames": {"title": "header-name", "pattern": HEADER_NAME},
                        "additionalProperties": string(
                            "Name of the environment variable holding the header's whole value.",
                            title="env-name", pattern=ENV_NAME),
                        "description": "Headers whose values are secrets, each naming the environment variable "
                                       "that holds its whole value (Authorization: SHOP_API_AUTH). Read when the "
                                       "request is sent; never written to the store or the logs."},
        "body": {"description": "JSON body; strings inside are templates."},
        "as": string("Keep the JSON response in vars under this name.", pattern="^[A-Za-z_][A-Za-z0-9_]*$"),
        "timeout": ref("timeout", "Give up on one attempt after this long (default 10s; at most 1h)."),
        "retries": {"type": "integer", "minimum": 0, "maximum": 20,
                    "description": "Retries on temporary failures (default 3)."},
    }, ["url"], "Call another system."), {}),
    "assign_coupon": (obj({
        "pool": string("Coupon pool name (loaded with `mauto coupons load`).", minLength=1),
        "as": string("Keep the code in vars under this name.", pattern="^[A-Za-z_][A-Za-z0-9_]*$"),
        "valid_for": ref("duration", "The code is good for this long after it is handed out: its expiry is "
                                     "stored with it and given to templates as vars.<as>_expires_at."),
    }, ["pool", "as"], "Take an unused code from a pool."), {}),
    "start": (string("Id of the workflow to enroll the contact in.", title="workflow-id", pattern=SLUG), {}),
    "exit": (string("Why the enrollment ends (shown in stats).", minLength=1), {}),
}

ACTION_NAMES = list(ACTIONS)


def _dispatch(kinds: dict[str, tuple[dict, dict]], common: dict, description: str) -> dict:
    """One object holding exactly one of `kinds`' keys, plus that kind's companion keys.

    `dependentSchemas` applies a kind's key list only when its key is present,
    so validating a step costs one check per key it has, not one per kind;
    the `not` clause says at least one key is a kind's key.
    """
    properties: dict = dict(common)
    companions_all: list[str] = []
    dependent: dict = {}
    for kind, (value_schema, companions) in kinds.items():
        properties[kind] = value_schema
        properties.update(companions)
        companions_all += [key for key in companions if key not in companions_all]
        allowed = [*common, kind, *companions]
        rule: dict = {"propertyNames": {"enum": allowed}}
        if kind == "if":
            rule["required"] = ["then"]
        dependent[kind] = rule
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "additionalProperties": False,
        "not": {"propertyNames": {"enum": [*common, *companions_all]}},
        "dependentSchemas": dependent,
    }


def step_schema() -> dict:
    return _dispatch(ACTIONS, STEP_COMMON, "A step: exactly one action key (" + ", ".join(ACTION_NAMES)
                     + ") plus optional id and name.")


TRIGGER_KINDS = {
    "event": (ref("eventName", "Enter when this event arrives for the contact."), {
        "where": ref("expression", "Only events for which this is true; `event` is the incoming event."),
    }),
    "segment": (string("Enter when the contact starts matching: an expression on the contact, or the name of a "
                       "segment in mauto.yaml.", title="segment", minLength=1), {
        "on": {"enum": ["enter", "leave", "both"],
               "description": "Enter the workflow when the contact starts matching (enter, the default), stops "
                              "matching (leave), or either."},
    }),
    "date": (obj({
        "field": string("A contact field of type date or datetime, e.g. birthday.", minLength=1),
        "every": {"enum": ["year", "month", "once"], "description": "How often it comes round (default year)."},
        "at": ref("timeOfDay", "Time of day to enter, in the contact's zone (default 09:00)."),
        "offset": ref("signedDuration", "Enter this long after (or, negative, before) the date."),
    }, ["field"], "Enter when a date field comes round."), {}),
    "schedule": (obj({
        "cron": string("A five-field cron line: minute hour day-of-month month day-of-week, e.g. \"0 9 * * MON\".",
                       title="cron", minLength=1),
        "timezone": ref("timezone", "Zone of the cron line (default the project's)."),
    }, ["cron"], "Enter the whole audience on every run of the cron line."), {}),
    "inactivity": (obj({
        "event": ref("eventName", "The event whose absence counts."),
        "for": ref("duration", "Enter when the last such event is this old."),
        "where": ref("expression", "Only these events count."),
    }, ["event", "for"], "Enter when the contact has been inactive for a while."), {}),
}


def trigger_schema() -> dict:
    return _dispatch(TRIGGER_KINDS, {}, "How contacts enter: exactly one of " + ", ".join(TRIGGER_KINDS) + ".")


TRACKING = union("Open and click tracking: false for none, or {opens, clicks} (each true or false).", [
    ("boolean", {"const": False}),
    ("object", obj({
        "opens": {"type": "boolean", "description": "An open pixel in each email (records email_opened)."},
        "clicks": {"type": "boolean", "description": "Links rewritten through mauto serve (records email_clicked)."},
        "transactional": {"type": "boolean", "description": "Track transactional emails too (default false)."},
    })),
])


def workflow_schema() -> dict:
    defs = dict(COMMON_DEFS)
    defs["tracking"] = TRACKING
    defs["step"] = step_schema()
    defs["trigger"] = trigger_schema()
    defs["exitEvent"] = union("An event that ends the enrollment: a name, or {event, where}.", [
        ("string", ref("eventName")),
        ("object", obj({"event": ref("eventName"), "where": ref("expression")}, ["event"])),
    ])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://mauto.dev/schema/workflow.schema.json",
        "title": "mauto workflow",
        "description": "A mauto workflow: a trigger, conditions and steps. See docs/workflow-language.md.",
        "type": "object",
        "properties": {
            "id": string("Stable identifier: lowercase letters, digits and dashes.", title="workflow-id", pattern=SLUG),
            "version": {"type": "integer", "minimum": 1, "description": "Bump on every change; the same id+version "
                                                                       "never deploys with different content."},
            "name": string("Name shown to people.", minLength=1),
            "description": string("What the workflow is for."),
            "owner": string("Who to ask about it."),
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True,
                     "description": "Labels for people."},
            "category": {"enum": ["marketing", "transactional"],
                         "description": "marketing (default) needs consent and respects quiet hours; "
                                        "transactional does not."},
            "trigger": ref("trigger"),
            "audience": ref("expression", "Entry condition on the contact, checked once at entry."),
            "reentry": union("May a contact enter again after leaving: never (default), always, or {after: 30d}.", [
                ("string", {"enum": ["never", "always"]}),
                ("object", obj({"after": ref("duration", "Only this long after the previous entry.")}, ["after"])),
            ]),
            "exit_on": {"type": "array", "items": ref("exitEvent"), "minItems": 1,
                        "description": "Events that end an enrollment at once, whatever it is waiting on."},
            "goal": obj({
                "event": ref("eventName", "The conversion event."),
                "where": ref("expression", "Only events for which this is true count."),
                "within": ref("duration", "Counts only this long after entry (default: while enrolled)."),
                "exit": {"type": "boolean", "description": "End the enrollment on conversion (default true)."},
            }, ["event"], "An event that counts as a conversion."),
            "settings": obj({
                "timezone": {"description": "`contact` (the contact's own zone, else the project's) or an IANA zone.",
                             "type": "string", "title": "timezone", "minLength": 1},
                "quiet_hours": union("Quiet hours for this workflow, or false for none.", [
                    ("boolean", {"const": False}), ("object", ref("quietHours"))]),
                "send_days": ref("days", "Sends only on these days; others move to the next allowed day."),
                "blackout_dates": union("Blackout dates for this workflow (instead of the project's), or false "
                                        "for none.", [("boolean", {"const": False}),
                                                      ("array", ref("blackoutDates"))]),
                "frequency_cap": union("Frequency cap for this workflow, or false to ignore the project's.", [
                    ("boolean", {"const": False}), ("object", ref("frequencyCap"))]),
                "tracking": ref("tracking", "Open and click tracking for this workflow's emails, or false for "
                                            "none (default: the project's `serve.tracking`)."),
            }, None, "Overrides of the project's limits."),
            "in_flight": {"enum": ["finish", "migrate", "stop"],
                          "description": "What a new version does to contacts inside: finish (default) on their "
                                         "version, migrate to the step with the same id, or stop."},
            "steps": {**STEP_LIST, "minItems": 1},
        },
        "required": ["id", "version", "name", "trigger", "steps"],
        "additionalProperties": False,
        "$defs": defs,
    }


# --- project ----------------------------------------------------------------


def serve_schema(env) -> dict:
    """`serve:` in mauto.yaml: what `mauto serve` answers, and the links messages get from it."""
    return obj({
        "public_url": string("The address recipients and providers reach `mauto serve` at, e.g. "
                             "https://mail.shop.example (behind your TLS proxy): unsubscribe links, the open pixel "
                             "and rewritten links are built from it.", title="url",
                             pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@{}\s\\]+(?:/[^?#{}\s]*)?" + END),
        "bounce_address": string("The bounce mailbox, e.g. bounces@shop.example: each email's envelope sender "
                                 "becomes bounces+<ref>@shop.example (VERP), read back by `mauto bounces ingest`.",
                                 title="email", pattern=r"^[^@\s+]+@[^@\s]+\.[^@\s]+$"),
        "tracking": ref("tracking", "Open and click tracking of marketing emails (default: both on when "
                                    "public_url is set)."),
        "lists": {"type": "object", "description": "The lists people may leave one by one in the preference "
                                                   "centre: list name to the label they read.",
                  "propertyNames": {"pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]*$"},
                  "additionalProperties": string("The label shown for this list.", minLength=1)},
        "soft_bounce_limit": {"type": "integer", "minimum": 1, "maximum": 100,
                              "description": "Soft bounces of one address (within 30 days) before it is "
                                             "suppressed (default 3)."},
        "max_body": {"type": "integer", "minimum": 1024, "maximum": 104857600,
                     "description": "Largest request body accepted, in bytes (default 1048576: 1 MiB)."},
        "providers": obj({
            "ses": obj({"topic_arn": string("The SNS topic(s) whose notifications are accepted (several: "
                                            "separated by commas). Required: any AWS account can subscribe "
                                            "this URL to its own topic, signed as validly.", minLength=1)},
                       ["topic_arn"], "Amazon SES through SNS."),
            "sendgrid": obj({"public_key_env": env("SendGrid event webhook's verification key")},
                            ["public_key_env"], "SendGrid's event webhook."),
            "mailgun": obj({"signing_key_env": env("Mailgun webhook signing key")}, ["signing_key_env"],
                           "Mailgun's webhooks."),
            "postmark": obj({"username_env": env("user name of the webhook's basic auth"),
                             "password_env": env("password of the webhook's basic auth")},
                            ["username_env", "password_env"], "Postmark's webhooks."),
            "twilio": obj({"auth_token_env": env("Twilio auth token (signs inbound SMS webhooks)")},
                          ["auth_token_env"], "Twilio's inbound SMS (STOP replies)."),
        }, None, "Providers whose webhooks POST to /v1/providers/<name>; each secret by the name of its "
                 "environment variable."),
    }, None, "mauto serve: the HTTP side.")

def tasks_schema() -> dict:
    """`tasks:` in mauto.yaml: how a `task` step's task reaches its owner (docs/tasks.md)."""
    headers = {"type": "object", "propertyNames": {"title": "header-name", "pattern": HEADER_NAME},
               "additionalProperties": string("A header value: one line; a template (task, contact).",
                                              title="header-value", pattern=HEADER_VALUE),
               "description": "Request headers; values are templates. No secrets here (Authorization, tokens, "
                              "keys): give them with headers_env."}
    headers_env = {"type": "object", "minProperties": 1,
                   "propertyNames": {"title": "header-name", "pattern": HEADER_NAME},
                   "additionalProperties": string("Name of the environment variable holding the header's whole "
                                                  "value.", title="env-name", pattern=ENV_NAME),
                   "description": "Headers whose values are secrets, each naming the environment variable that "
                                  "holds its whole value (Authorization: CRM_AUTH). Read when the request is sent; "
                                  "never written to the store or the logs."}
    return obj({
        "handoff": obj({
            "email": obj({
                "from": string("From address, e.g. \"Shop CRM <crm@shop.example>\" (default: sender.email).",
                               minLength=1),
                "to": string("The recipient: a template giving one address (default: {{ task.assignee }}).",
                             minLength=1),
                "subject": string("The subject; a template (default: Task: {{ task.title }}).", minLength=1),
                "body": string("The text body; a template with task and contact (default: the task, its contact, "
                               "due date and notes).", minLength=1),
            }, None, "Mail each new task to its owner through channels.email (not marketing: no unsubscribe "
                     "link, not in the outbox)."),
            "webhook": obj({
                "url": string("URL each new task is POSTed to as JSON, http or https; a template after the host: "
                              "https://crm.example/tasks. No user:password@: see headers_env.",
                              title="webhook-url", minLength=1, pattern=WEBHOOK_URL),
                "headers": headers,
                "headers_env": headers_env,
                "timeout": ref("timeout", "Give up on one attempt after this long (default 10s; at most 1h)."),
            }, ["url"], "POST each new task and its contact to a CRM, the task's key as Idempotency-Key."),
            "retries": {"type": "integer", "minimum": 0, "maximum": 20,
                        "description": "Retries on temporary failures (default 3)."},
        }, None, "Hand each new task to its owner when it is made: an email, a webhook, or both."),
    }, None, "Sales tasks made by `task` steps (docs/tasks.md).")


FIELD_TYPES = ["string", "integer", "number", "boolean", "date", "datetime", "list"]


def project_schema() -> dict:
    defs = dict(COMMON_DEFS)
    defs["tracking"] = TRACKING
    defs["fieldType"] = union("A field type: string, integer, number, boolean, date, datetime, list, "
                              "or {enum: [...]}.", [
        ("string", {"enum": FIELD_TYPES}),
        ("object", obj({"enum": {"type": "array", "minItems": 1, "uniqueItems": True,
                                 "description": "The allowed values."}}, ["enum"])),
    ])
    property_types = FIELD_TYPES + ["object"]
    defs["propertyType"] = union("A property type: " + ", ".join(property_types) + ", or {enum: [...]}.", [
        ("string", {"enum": property_types}),
        ("object", obj({"enum": {"type": "array", "minItems": 1, "uniqueItems": True}}, ["enum"])),
    ])
    env = lambda what: string(f"Name of the environment variable holding the {what}.", title="env-name",  # noqa: E731
                              pattern=ENV_NAME)
    pace = {  # sending at the provider's pace (mauto/channels/pace.py, docs/daemon.md)
        "connections": {"type": "integer", "minimum": 1, "maximum": 64,
                        "description": "Parallel connections to the provider (default 1; at most 64)."},
        "rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 100000,
                 "description": "At most this many messages a second over all connections and workers, e.g. 14 "
                                "(may be fractional: 0.5 is one every 2 s); default: no limit."},
    }
    email_channel = obj({
        "transport": {"enum": ["smtp", "console", "file"],
                      "description": "smtp, console (print) or file (write .eml)."},
        "host": string("SMTP host."),
        "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "SMTP port."},
        "starttls": {"type": "boolean", "description": "Upgrade the connection with STARTTLS."},
        "tls": {"type": "boolean", "description": "Connect with implicit TLS (port 465)."},
        "timeout": ref("timeout", "Socket timeout (default 30s; at most 1h)."),
        "username_env": env("SMTP user name"),
        "password_env": env("SMTP password"),
        "path": string("Directory for the file transport."),
        **pace,
    }, ["transport"], "How email is sent.")
    sms_channel = obj({
        "transport": {"enum": ["http", "console", "file"], "description": "http (a provider), console or file."},
        "url": string("Provider endpoint for the http transport."),
        "token_env": env("provider's API token"),
        "timeout": ref("timeout", "Request timeout (default 10s; at most 1h)."),
        "path": string("Directory for the file transport."),
        **pace,
    }, ["transport"], "How SMS are sent.")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://mauto.dev/schema/project.schema.json",
        "title": "mauto project (mauto.yaml)",
        "description": "Project settings shared by every workflow. Secrets are never written here: name the "
                       "environment variables that hold them.",
        "type": "object",
        "properties": {
            "store": string("The store: a SQLite file, relative to mauto.yaml (default mauto.db), or a "
                            "PostgreSQL database by its URL, postgresql://user@host:5432/name, without the "
                            "password (docs/store.md).", minLength=1),
            "store_password_env": string("The environment variable holding the PostgreSQL store's password "
                                         "(else libpq reads PGPASSWORD or ~/.pgpass); never the password itself.",
                                         pattern="^[A-Za-z_][A-Za-z0-9_]*$"),
            "timezone": ref("timezone", "Default zone for contacts without one."),
            "phone_region": string("the country whose national numbers (06 12 34 56 78) contacts' phones are read "
                                   "in; without it, phones must be written in international form "
                                   "(+33 6 12 34 56 78)", title="country-code", pattern="^[A-Z]{2}$"),
            "sender": obj({
                "email": string("From address, e.g. \"Shop <news@shop.example>\".", minLength=1),
                "reply_to": string("Reply-To address."),
                "sms": string("SMS sender id or number.", minLength=1),
            }, None, "Default senders."),
            "unsubscribe_url": string("Unsubscribe link; a template with {{ token }}.", minLength=1),
            "unsubscribe_secret_env": env("secret that signs unsubscribe tokens"),
            "channels": obj({"email": email_channel, "sms": sms_channel}, None, "Delivery channels."),
            "serve": serve_schema(env),
        "tasks": tasks_schema(),
            "limits": obj({
                "quiet_hours": ref("quietHours"),
                "send_days": ref("days", "Days on which marketing messages go out."),
                "blackout_dates": ref("blackoutDates"),
                "frequency_cap": ref("frequencyCap"),
            }, None, "Limits on marketing messages, in each contact's zone."),
            "coupons": {"type": "object",
                        "description": "Coupon pools by name: the event that redeems their codes and when a pool "
                                       "runs low (`mauto coupons`).",
                        "propertyNames": {"minLength": 1, "maxLength": 100},
                        "additionalProperties": {"type": ["object", "null"], "properties": {
                            "redeemed_by": obj({
                                "event": ref("eventName", "The event that redeems a code, e.g. order_placed."),
                                "property": string("The event's property holding the code, e.g. coupon.",
                                                   pattern="^[A-Za-z_][A-Za-z0-9_]*$"),
                            }, ["event", "property"], "An event whose property holds an assigned code marks that "
                                                      "code redeemed."),
                            "low_below": union("The pool runs low when fewer codes are left than this: a number "
                                               "(100) or a share of its codes (\"10%\", the default).", [
                                ("integer", {"minimum": 0}),
                                ("string", {"pattern": r"^(?:100|\d{1,2})(?:\.\d+)?%$"}),
                            ]),
                        }, "additionalProperties": False}},
            "contact_fields": {"type": "object", "description": "Custom contact fields and their types.",
                               "propertyNames": {"pattern": "^[a-z_][a-z0-9_]*$"},
                               "additionalProperties": ref("fieldType")},
            "segments": {"type": "object", "description": "Named segments: an expression on the contact.",
                         "propertyNames": {"pattern": SLUG.replace("-]", "_-]")},
                         "additionalProperties": ref("expression")},
            "events": {"type": "object",
                       "description": "Event catalogue: name to {property: type}. When present, lint checks every "
                                      "event name and property.",
                       "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_.:-]*$"},
                       "additionalProperties": {"type": ["object", "null"],
                                                "additionalProperties": ref("propertyType")}},
        },
        "additionalProperties": False,
        "$defs": defs,
    }


# --- scenario (mauto test) ----------------------------------------------------

TEMPLATE_OR_CHANNEL = "^[A-Za-z0-9_][A-Za-z0-9_./-]*$"
MOMENT = string("A moment: relative to the scenario's start (+1h, +2d3h) or absolute ISO 8601 "
                "(2026-11-25T10:30:00+01:00; without an offset, in the project's zone), within years 1000 to 8999.",
                title="moment", minLength=1, format=MOMENT_FORMAT)

EXPECTATION_MODIFIERS = {
    "at": ref("moment", "When it happens: +1h after the start, or an absolute time. "
                        "Without `at`: any time in the run."),
    "tolerance": ref("duration", "How far from `at` still counts (default 0: exactly then)."),
    "channel": {"enum": ["email", "sms"], "description": "Only messages on this channel."},
    "workflow": string("Only what this workflow does (a workflow id).", title="workflow-id", pattern=SLUG),
    "step": string("Only this step: its id, or its number as the timeline shows it (3.then.1).",
                   title="step", minLength=1),
    "template": string("Only messages from this template.", title="template-name", pattern=TEMPLATE_OR_CHANNEL),
    "reason": string("Only when the reason the timeline gives contains this text, e.g. exit_on order_placed.",
                     minLength=1),
}
TIMED = ("at", "tolerance")


def _modifiers(*names: str) -> dict:
    return {name: EXPECTATION_MODIFIERS[name] for name in names}


def _workflow_id(description: str) -> dict:
    return string(description, title="workflow-id", pattern=SLUG)


EXPECTATION_KINDS: dict[str, tuple[dict, dict]] = {
    # kind key: (schema of its value, the modifiers allowed beside it)
    "gets": (string("The contact is sent this message: a template (cart/reminder-1), or `email` or `sms` for any "
                    "message on that channel.", title="template-name", pattern=TEMPLATE_OR_CHANNEL),
             _modifiers(*TIMED, "channel", "workflow", "step")),
    "gets_no": (string("The contact is never sent this: a template, or `email` or `sms` for the whole channel.",
                       title="template-name", pattern=TEMPLATE_OR_CHANNEL),
                _modifiers("channel", "workflow", "step")),
    "messages": ({"type": "integer", "minimum": 0,
                  "description": "The contact is sent exactly this many messages in the run."},
                 _modifiers("channel", "workflow", "template")),
    "enters": (_workflow_id("The contact enters this workflow."), _modifiers(*TIMED)),
    "does_not_enter": (_workflow_id("The contact never enters this workflow."), {}),
    "exits": (_workflow_id("The contact leaves this workflow early: exit_on, an exit step, or its goal."),
              _modifiers(*TIMED, "reason")),
    "completes": (_workflow_id("The contact reaches the end of this workflow's steps."), _modifiers(*TIMED)),
    "converts": (_workflow_id("The contact reaches this workflow's goal."), _modifiers(*TIMED)),
    "does_not_convert": (_workflow_id("The contact never reaches this workflow's goal."), {}),
    "variant": (obj({
        "split": string("The split's id (split.id, else the step's id).", title="step", minLength=1),
        "is": string("The variant's name.", minLength=1),
        "workflow": _workflow_id("The workflow holding the split "
                                 "(needed only when two workflows use the same split id)."),
    }, ["split", "is"], "The contact is assigned this variant of an A/B split."), {}),
    "reaches": (string("The contact reaches this step: its id, or its number as the timeline shows it.",
                       title="step", minLength=1), _modifiers(*TIMED, "workflow")),
    "does_not_reach": (string("The contact never reaches this step.", title="step", minLength=1),
                       _modifiers("workflow")),
    "fields": ({"type": "object", "minProperties": 1,
                "description": "The contact's fields at the end of the run: field -> value (lists compare "
                               "without regard to order)."}, {}),
    "fails": (_workflow_id("A step of this workflow fails for the contact (a scenario fails on any failure "
                           "it does not expect)."), _modifiers("reason")),
}


def expectation_schema() -> dict:
    schema = _dispatch(EXPECTATION_KINDS, {"contact": {
        "type": ["string", "integer"], "description": "The contact's id, as in the scenario's contacts."}},
        "One expectation: `contact` and exactly one of " + ", ".join(EXPECTATION_KINDS)
        + ", with the modifiers that kind takes.")
    schema["required"] = ["contact"]
    return schema


def scenario_schema() -> dict:
    defs = {"duration": COMMON_DEFS["duration"], "moment": MOMENT}
    defs["expectation"] = expectation_schema()
    file_or = lambda what, branch: union(  # noqa: E731
        f"{what}: a file (YAML, JSON Lines or CSV; a path relative to mauto.yaml), or the rows written here.",
        [("string", string("A data file, relative to the project.", minLength=1)), branch])
    contact_row = {"type": "object", "required": ["id"],
                   "description": "A contact, as a row of samples/contacts.yaml: id and fields.",
                   "properties": {"id": {"type": ["string", "integer"], "description": "The contact's id."}}}
    event_row = {"type": "object", "required": ["contact", "event", "at"],
                 "description": "An event, as a row of samples/events.yaml: contact, event, at, then properties.",
                 "properties": {
                     "contact": {"type": ["string", "integer"], "description": "The contact's id."},
                     "event": ref("eventName", "The event's name."),
                     "at": ref("moment", "When: +1h after the start, -40d (history), or an absolute time."),
                     "id": {"type": ["string", "integer"], "description": "Optional event id."}}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://mauto.dev/schema/scenario.schema.json",
        "title": "mauto scenario (mauto test)",
        "description": "Contacts, events and what must happen to them, run through the engine on a virtual "
                       "clock by `mauto test`. See docs/testing.md.",
        "type": "object",
        "properties": {
            "name": string("What the scenario checks, for people (default: the file name).", minLength=1),
            "description": string("More words about it."),
            "workflows": {"type": "array", "minItems": 1, "uniqueItems": True,
                          "items": _workflow_id("A workflow id."),
                          "description": "The workflows whose triggers run (default: all of the project's). "
                                         "A `start` step may still enroll contacts in others."},
            "start": string("When the virtual clock starts, ISO 8601 with an offset, e.g. "
                            "2026-11-24T09:00:00+01:00. Required, so that every run is the same.",
                            title="start", minLength=1, format=MOMENT_FORMAT),
            "for": ref("duration", "How long the run lasts (default 30d)."),
            "contacts": file_or("The contacts", ("array", {"type": "array", "items": contact_row})),
            "events": file_or("The events", ("array", {"type": "array", "items": event_row})),
            "coupons": file_or("Coupon pools", ("object", {
                "type": "object", "description": "Pool name -> unused codes.",
                "additionalProperties": {"type": "array", "items": {"type": "string"}}})),
            "webhooks": file_or("Webhook answers", ("object", {
                "type": "object", "description": "URL -> the JSON body the simulated endpoint returns."})),
            "expect": {"type": "array", "minItems": 1, "items": ref("expectation"),
                       "description": "What must happen; each item checks one thing about one contact."},
        },
        "required": ["start", "contacts", "expect"],
        "additionalProperties": False,
        "$defs": {**defs, "eventName": COMMON_DEFS["eventName"]},
    }


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(check: bool = False) -> int:
    outputs = {"workflow.schema.json": render(workflow_schema()), "project.schema.json": render(project_schema()),
               "scenario.schema.json": render(scenario_schema())}
    stale = []
    for name, text in outputs.items():
        for folder in (ROOT / "mauto" / "data", ROOT / "schema"):
            path = folder / name
            if check:
                if not path.exists() or path.read_text(encoding="utf-8") != text:
                    stale.append(str(path.relative_to(ROOT)))
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date: " + ", ".join(stale) + " (run python tools/gen_schema.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv))
