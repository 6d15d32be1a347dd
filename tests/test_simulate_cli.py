"""`mauto simulate` from the command line: whole outputs, the JSON shape, data files, rendering, bad input.

Every test writes a small project into tmp_path (the current folder too, so
paths are shown relative to it) and passes `--project`. The text output of a
small scenario is compared whole, as a golden transcript kept in this file:
when a change of wording is intended, update EXPECTED_TEXT by hand and review
the diff.

Tests marked `xfail(strict=True)` pin bugs found in `mauto/` while writing
these tests; each reason names the function and the fix. They start passing
(and so fail as XPASS) once the bug is fixed: then drop the mark.
"""
from __future__ import annotations

import email
import json
import re
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mauto.cli import app
from mauto.links import Signer
from mauto.messages import SIMULATION_SECRET

ROOT = Path(__file__).resolve().parents[1]  # the repository: also the bundled sample project
START = "2026-11-24T09:00:00+01:00"  # a Tuesday, in the project's zone (Europe/Paris)

pytestmark = pytest.mark.usefixtures("cli_environment")

PROJECT = {
    "mauto.yaml": """
        timezone: Europe/Paris
        sender:
          email: "Shop <hello@shop.example>"
          reply_to: "care@shop.example"
          sms: SHOP
        unsubscribe_url: "https://shop.example/u/{{ token }}"
        channels:
          email: {transport: smtp, host: 127.0.0.1, port: 1025}
          sms: {transport: console}
        limits:
          quiet_hours: {start: "21:00", end: "08:00"}
        contact_fields:
          first_name: string
          plan: string
          birthday: date
        events:
          signed_up: {source: string}
          order_placed: {total: number}
          lead_captured: {form: string}
    """,
    "workflows/welcome.yaml": """
        id: welcome
        version: 1
        name: Welcome
        trigger: {event: signed_up}
        steps:
          - wait: 1h
          - id: hello
            email: welcome/hello
          - if: "has_event('order_placed')"
            then:
              - score: 10
              - exit: already a customer
            else:
              - id: nudge
                sms: welcome/nudge
          - wait: 2d
          - id: tips
            email: welcome/tips
          - update: {set: {plan: trial}}
    """,
    "templates/layouts/base.html": """
        <html><body>
        {% block body %}{% endblock %}
        <p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
        </body></html>
    """,
    "templates/welcome/hello.email.html": """
        ---
        subject: Welcome, {{ contact.first_name }}
        ---
        {% extends "layouts/base.html" %}
        {% block body %}<p>Hello {{ contact.first_name }}</p>{% endblock %}
    """,
    "templates/welcome/tips.email.html": """
        ---
        subject: Three tips
        ---
        {% extends "layouts/base.html" %}
        {% block body %}<p>Tip one: light the porch.</p>{% endblock %}
    """,
    "templates/welcome/nudge.sms.txt": "Hi {{ contact.first_name }}, 10% off with WELCOME. STOP to opt out\n",
}

# Ann (Paris) ordered before the start: welcomed, then leaves. Bob (New York) signs up at 21:00 his time:
# the first email waits out the quiet hours, then he gets an SMS. Cleo (Tokyo) gave no consent: all suppressed.
CONTACTS_YAML = """
    - {id: c1, email: ann@example.com, first_name: Ann, timezone: Europe/Paris, email_consent: true}
    - id: c2
      email: bob@example.com
      phone: "+12125550100"
      first_name: Bob
      timezone: America/New_York
      email_consent: true
      sms_consent: true
    - {id: c3, email: cleo@example.com, first_name: Cleo, timezone: Asia/Tokyo, email_consent: false}
"""

EVENTS_YAML = """
    - {contact: c1, event: order_placed, at: "-3d", total: 20}
    - {contact: c1, event: signed_up, at: "+1h", source: footer}
    - {contact: c2, event: signed_up, at: "+18h", source: footer}
    - {contact: c3, event: signed_up, at: "+2h", source: popup}
"""

# Lines are compared without their trailing blanks (the timeline pads its `what` column even when a line has no
# reason after it).
EXPECTED_TEXT = """\
c1  Ann · ann@example.com · Europe/Paris
  Tue 24 Nov 10:00 CET  welcome  trigger   enter                signed_up
  Tue 24 Nov 10:00 CET  welcome  1         wait                 until Tue 24 Nov 11:00 CET
  Tue 24 Nov 11:00 CET  welcome  hello     email welcome/hello
  Tue 24 Nov 11:00 CET  welcome  3         branch               has_event('order_placed') → true
  Tue 24 Nov 11:00 CET  welcome  3.then.1  score                +10 → 10
  Tue 24 Nov 11:00 CET  welcome  3.then.2  exit                 already a customer

c2  Bob · bob@example.com · America/New_York
  Tue 24 Nov 21:00 EST  welcome  trigger  enter                      signed_up
  Tue 24 Nov 21:00 EST  welcome  1        wait                       until Tue 24 Nov 22:00 EST
  Tue 24 Nov 22:00 EST  welcome  hello    email later welcome/hello  quiet hours 21:00–08:00 → Wed 25 Nov 08:00 EST
  Wed 25 Nov 08:00 EST  welcome  hello    email welcome/hello        postponed from Tue 24 Nov 22:00 EST
  Wed 25 Nov 08:00 EST  welcome  3        branch                     has_event('order_placed') → false
  Wed 25 Nov 08:00 EST  welcome  nudge    sms welcome/nudge
  Wed 25 Nov 08:00 EST  welcome  4        wait                       until Fri 27 Nov 08:00 EST
  Fri 27 Nov 08:00 EST  welcome  tips     email welcome/tips
  Fri 27 Nov 08:00 EST  welcome  6        update                     plan = 'trial'
  Fri 27 Nov 08:00 EST  welcome  end      complete                   reached the end

c3  Cleo · cleo@example.com · Asia/Tokyo
  Tue 24 Nov 19:00 JST  welcome  trigger  enter                   signed_up
  Tue 24 Nov 19:00 JST  welcome  1        wait                    until Tue 24 Nov 20:00 JST
  Tue 24 Nov 20:00 JST  welcome  hello    no email welcome/hello  no email consent
  Tue 24 Nov 20:00 JST  welcome  3        branch                  has_event('order_placed') → false
  Tue 24 Nov 20:00 JST  welcome  nudge    no sms welcome/nudge    no phone number
  Tue 24 Nov 20:00 JST  welcome  4        wait                    until Thu 26 Nov 20:00 JST
  Thu 26 Nov 20:00 JST  welcome  tips     no email welcome/tips   no email consent
  Thu 26 Nov 20:00 JST  welcome  6        update                  plan = 'trial'
  Thu 26 Nov 20:00 JST  welcome  end      complete                reached the end

welcome: 3 entered · 3 email, 1 sms · 0 converted · 1 exited · 3 suppressed · 0 failed
step      what    reached
1         wait          3
hello     email         3
3         branch        3
3.then.1  score         1
3.then.2  exit          1
nudge     sms           2
4         wait          2
tips      email         2
6         update        2

"""


@pytest.fixture
def project(tmp_path: Path, write_files, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project above with contacts.yaml and events.yaml, in tmp_path, which is also the current folder."""
    write_files(tmp_path, {**PROJECT, "contacts.yaml": CONTACTS_YAML, "events.yaml": EVENTS_YAML})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(project: Path, *options: str, start: str | None = START, data: bool = True) -> Result:
    """`mauto --project PROJECT simulate [--start START] [--contacts contacts.yaml --events events.yaml] OPTIONS`."""
    arguments = ["--project", str(project), "simulate"]
    if start is not None:
        arguments += ["--start", start]
    if data:
        arguments += ["--contacts", "contacts.yaml", "--events", "events.yaml"]
    return CliRunner().invoke(app, [*arguments, *options])


def run_json(project: Path, *options: str, **kwargs) -> dict:
    result = run(project, "--format", "json", *options, **kwargs)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return json.loads(result.stdout)


def stripped(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.split("\n"))


def entries(report: dict, **match) -> list[dict]:
    return [entry for entry in report["timeline"] if all(entry.get(key) == value for key, value in match.items())]


def read_eml(path: Path) -> EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=policy.default)


def parts(message: EmailMessage) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in message.iter_parts()}


# --- text output --------------------------------------------------------------------------------

def test_text_output_is_a_timeline_per_contact_then_a_funnel_per_workflow(project: Path):
    result = run(project, "--for", "7d")
    assert (result.exit_code, result.stderr) == (0, "")
    assert stripped(result.stdout) == EXPECTED_TEXT


def test_help_names_every_option():
    result = CliRunner().invoke(app, ["simulate", "--help"])
    assert result.exit_code == 0
    for option in ("--contacts", "--events", "--coupons", "--webhooks", "--start", "--for", "--contact", "--format",
                   "--render"):
        assert option in result.output


# --- JSON output --------------------------------------------------------------------------------

def test_json_output_shape(project: Path):
    report = run_json(project, "--for", "7d")
    assert set(report) == {"start", "end", "timeline", "summary"}
    assert (report["start"], report["end"]) == (START, "2026-12-01T09:00:00+01:00")
    offsets = {"c1": "+01:00", "c2": "-05:00", "c3": "+09:00"}  # the contacts' own zones in November
    for entry in report["timeline"]:
        assert {"at", "contact", "workflow", "version", "step", "kind"} <= set(entry), entry
        assert entry["at"].endswith(offsets[entry["contact"]]), entry
        datetime.fromisoformat(entry["at"])  # ISO 8601
        assert entry["workflow"] == "welcome" and entry["version"] == 1
        if entry["kind"] in ("send", "suppressed", "postponed"):
            assert entry["channel"] in ("email", "sms") and entry["template"].startswith("welcome/"), entry
        else:
            assert "channel" not in entry and "template" not in entry, entry
    assert [entry["kind"] for entry in entries(report, contact="c1")] == [
        "enter", "wait", "send", "branch", "score", "exit"]
    assert [entry["step"] for entry in entries(report, contact="c1")] == [
        "trigger", "1", "hello", "3", "3.then.1", "3.then.2"]  # the id, else the 1-based path
    [send] = entries(report, contact="c2", kind="send", step="hello")
    assert {key: value for key, value in send.items() if key != "why"} == {
        "at": "2026-11-25T08:00:00-05:00", "contact": "c2", "workflow": "welcome", "version": 1, "step": "hello",
        "kind": "send", "channel": "email", "template": "welcome/hello"}
    assert send["why"].startswith("postponed from ")  # the time in it keeps the offset it was computed with
    postponed = entries(report, contact="c2", kind="postponed")
    assert len(postponed) == 1 and postponed[0]["until"] and "quiet hours" in postponed[0]["why"]
    assert [entry["kind"] for entry in entries(report, contact="c3")] == [
        "enter", "wait", "suppressed", "branch", "suppressed", "wait", "suppressed", "update", "complete"]
    assert entries(report, contact="c3", step="hello")[0]["why"] == "no email consent"
    assert entries(report, contact="c1", kind="branch")[0]["branch"] == "then"
    assert entries(report, contact="c1", kind="enter")[0]["why"] == "signed_up"
    # in time order
    moments = [datetime.fromisoformat(entry["at"]) for entry in report["timeline"]]
    assert moments == sorted(moments)


def test_json_summary(project: Path):
    report = run_json(project, "--for", "7d")
    assert report["summary"] == {
        "workflows": {"welcome": {
            "entered": 3,
            "steps": {"1": 3, "hello": 3, "3": 3, "3.then.1": 1, "3.then.2": 1, "nudge": 2, "4": 2, "tips": 2,
                      "6": 2},
            "sent": {"email": 3, "sms": 1},
            "suppressed": 3, "postponed": 1, "exited": 1, "converted": 0, "completed": 2, "failed": 0,
            "variants": {},
        }},
        "messages": 4,
    }


def test_json_goal_split_and_task_entries(project: Path, write_files):
    write_files(project, {
        "workflows/welcome.yaml": """
            id: welcome
            version: 1
            name: Welcome
            trigger: {event: signed_up}
            goal: {event: order_placed, within: 7d}
            steps:
              - split:
                  id: subject-test
                  variants:
                    a: {weight: 100}
                    b: {weight: 0}
              - task: {title: "Call {{ contact.first_name }}", due: 1d}
              - wait: 2d
        """,
        "events.yaml": """
            - {contact: c1, event: signed_up, at: "+1h", source: footer}
            - {contact: c1, event: order_placed, at: "+1d", total: 45}
        """,
    })
    report = run_json(project, "--contact", "c1")
    kinds = [entry["kind"] for entry in report["timeline"]]
    assert kinds == ["enter", "split", "task", "wait", "goal", "exit"]
    split = entries(report, kind="split")[0]
    assert (split["split"], split["variant"], split["why"]) == ("subject-test", "a", "variant a (100%)")
    task = entries(report, kind="task")[0]
    assert task["task"] == {"title": "Call Ann", "due": "2026-11-25T10:00:00+01:00"}
    assert entries(report, kind="goal")[0]["at"] == "2026-11-25T09:00:00+01:00"
    assert entries(report, kind="exit")[0]["why"] == "goal order_placed"
    funnel = report["summary"]["workflows"]["welcome"]
    assert (funnel["converted"], funnel["exited"], funnel["variants"]) == (1, 0, {"subject-test:a": 1})


def test_json_skip_event_timeout_and_start_entries(project: Path, write_files):
    write_files(project, {
        "workflows/welcome.yaml": """
            id: welcome
            version: 1
            name: Welcome
            trigger: {event: signed_up}
            audience: "contact.email_consent"
            steps:
              - lists: {add: [newsletter]}
              - wait_for: {event: order_placed, timeout: 1d}
                on_event:
                  - start: after-order
                on_timeout:
                  - score: -1
        """,
        "workflows/after-order.yaml": """
            id: after-order
            version: 1
            name: After an order
            trigger: {segment: "contact.score >= 1000"}
            steps:
              - lists: {add: [buyers]}
        """,
        "events.yaml": """
            - {contact: c1, event: signed_up, at: "+1h"}
            - {contact: c1, event: order_placed, at: "+5h", total: 45}
            - {contact: c2, event: signed_up, at: "+2h"}
            - {contact: c3, event: signed_up, at: "+3h"}
        """,
    })
    report = run_json(project, "--for", "7d")
    assert [(entry["workflow"], entry["step"], entry["kind"], entry.get("why"))
            for entry in entries(report, contact="c1")] == [
        ("welcome", "trigger", "enter", "signed_up"),
        ("welcome", "1", "lists", "+newsletter"),
        ("welcome", "2", "wait", "for order_placed until 2026-11-25T10:00:00+01:00"),
        ("welcome", "2", "event", "order_placed arrived"),
        ("welcome", "2.on_event.1", "start", "after-order"),
        ("welcome", "end", "complete", "reached the end"),
        ("after-order", "trigger", "enter", "started by welcome"),
        ("after-order", "1", "lists", "+buyers"),
        ("after-order", "end", "complete", "reached the end"),
    ]
    assert entries(report, contact="c1", kind="wait")[0]["event"] == "order_placed"
    assert [(entry["step"], entry["kind"], entry.get("why")) for entry in entries(report, contact="c2")][2:] == [
        ("2", "wait", "for order_placed until 2026-11-25T11:00:00+01:00"),
        ("2", "timeout", "no order_placed by 2026-11-25T11:00:00+01:00"),
        ("2.on_timeout.1", "score", "-1 → -1"),
        ("end", "complete", "reached the end"),
    ]
    assert [(entry["step"], entry["kind"], entry["why"]) for entry in entries(report, contact="c3")] == [
        ("trigger", "skip", "not in audience: contact.email_consent")]


def test_json_is_the_only_output_even_with_render(project: Path, tmp_path: Path):
    result = run(project, "--format", "json", "--render", str(tmp_path / "out"))
    assert result.exit_code == 0
    json.loads(result.stdout)  # nothing but the JSON document
    assert len(list((tmp_path / "out").rglob("*.*"))) == 4


# --- data files ---------------------------------------------------------------------------------

CONTACTS_JSONL = """
    {"id": "c1", "email": "ann@example.com", "first_name": "Ann", "timezone": "Europe/Paris", "email_consent": true, "tags": ["vip", "news"]}
    {"id": "c2", "email": "bob@example.com", "phone": "+12125550100", "first_name": "Bob", "timezone": "America/New_York", "email_consent": true, "sms_consent": true}

    {"id": "c3", "email": "cleo@example.com", "first_name": "Cleo", "timezone": "Asia/Tokyo", "email_consent": false}
"""  # noqa: E501 - one JSON object a line

CONTACTS_CSV = """
    id,email,phone,first_name,timezone,email_consent,sms_consent,tags
    c1,ann@example.com,,Ann,Europe/Paris,true,,vip;news
    c2,bob@example.com,+12125550100,Bob,America/New_York,true,true,
    c3,cleo@example.com,,Cleo,Asia/Tokyo,false,,
"""

EVENTS_JSONL = """
    {"contact": "c1", "event": "order_placed", "at": "-3d", "total": 20}
    {"contact": "c1", "event": "signed_up", "at": "+1h", "source": "footer"}
    {"contact": "c2", "event": "signed_up", "at": "+18h", "source": "footer"}
    {"contact": "c3", "event": "signed_up", "at": "+2h", "source": "popup"}
"""

EVENTS_CSV = """
    contact,event,at,total,source
    c1,order_placed,-3d,20,
    c1,signed_up,+1h,,footer
    c2,signed_up,+18h,,footer
    c3,signed_up,+2h,,popup
"""

# Reads the list field (`;`-separated in CSV) and the booleans of the contacts.
TAGGED = """
    id: tagged
    version: 1
    name: Tagged
    trigger: {event: signed_up}
    audience: "'vip' in contact.tags and 'news' in contact.tags and contact.email_consent"
    steps:
      - score: 1
"""


@pytest.mark.parametrize("contacts", ["contacts.yaml", "contacts.jsonl", "contacts.csv"])
@pytest.mark.parametrize("events", ["events.yaml", "events.jsonl", "events.csv"])
def test_yaml_json_lines_and_csv_give_the_same_result(project: Path, write_files, contacts: str, events: str):
    write_files(project, {
        "contacts.yaml": CONTACTS_YAML.replace("first_name: Ann,", "first_name: Ann, tags: [vip, news],"),
        "contacts.jsonl": CONTACTS_JSONL, "contacts.csv": CONTACTS_CSV,
        "events.jsonl": EVENTS_JSONL, "events.csv": EVENTS_CSV,
        "workflows/tagged.yaml": TAGGED,
    })
    report = run_json(project, "--for", "7d", "--contacts", contacts, "--events", events, data=False)
    reference = run_json(project, "--for", "7d")
    assert report == reference
    assert [entry["contact"] for entry in entries(report, workflow="tagged", kind="enter")] == ["c1"]
    assert len(entries(report, workflow="welcome", kind="enter")) == 3


def test_text_output_is_the_same_from_csv(project: Path, write_files):
    write_files(project, {"contacts.csv": CONTACTS_CSV, "events.csv": EVENTS_CSV})
    result = run(project, "--for", "7d", "--contacts", "contacts.csv", "--events", "events.csv", data=False)
    assert result.exit_code == 0, result.output
    assert stripped(result.stdout) == EXPECTED_TEXT


def test_csv_event_properties_are_typed_by_the_event_catalogue(project: Path, write_files):
    big_order = """
        id: big-order
        version: 1
        name: Big order
        trigger: {event: order_placed, where: "event.total >= 20"}
        steps:
          - score: 5
    """
    write_files(project, {"workflows/big-order.yaml": big_order, "events.csv": """
        contact,event,at,total
        c1,order_placed,+1h,25
    """, "events.jsonl": '{"contact": "c1", "event": "order_placed", "at": "+1h", "total": 25}\n'})
    from_csv = run_json(project, "big-order", "--contacts", "contacts.yaml", "--events", "events.csv", data=False)
    from_jsonl = run_json(project, "big-order", "--contacts", "contacts.yaml", "--events", "events.jsonl",
                          data=False)
    assert [entry["kind"] for entry in from_jsonl["timeline"]] == ["enter", "score", "complete"]
    assert from_csv == from_jsonl


def test_a_csv_saved_with_a_byte_order_mark(project: Path):
    (project / "contacts.csv").write_bytes(b"\xef\xbb\xbf" + CONTACTS_CSV.replace("\n    ", "\n").lstrip().encode())
    result = run(project, "--contacts", "contacts.csv", "--events", "events.yaml", data=False)
    assert result.exit_code == 0, result.output


def test_relative_and_absolute_times_are_the_same_moment(project: Path, write_files):
    relative = run_json(project, "--for", "7d")
    write_files(project, {"events.yaml": """
        - {contact: c1, event: order_placed, at: "2026-11-21T09:00:00+01:00", total: 20}
        - {contact: c1, event: signed_up, at: "2026-11-24T10:00:00+01:00", source: footer}
        - {contact: c2, event: signed_up, at: "2026-11-25T02:00:00Z", source: footer}
        - {contact: c3, event: signed_up, at: "2026-11-24T11:00:00", source: popup}
    """})  # the last one has no offset: it is read in the project's zone (Europe/Paris)
    absolute = run_json(project, "--for", "7d")
    # the same moments, whatever offset they were written with
    assert [(entry["contact"], entry["at"], entry["step"], entry["kind"]) for entry in absolute["timeline"]] == \
        [(entry["contact"], entry["at"], entry["step"], entry["kind"]) for entry in relative["timeline"]]
    assert absolute["summary"] == relative["summary"]
    text = run(project, "--for", "7d")  # shows every time in the contact's zone
    assert stripped(text.stdout) == EXPECTED_TEXT


def test_relative_times_follow_the_start_and_absolute_ones_do_not(project: Path, write_files):
    write_files(project, {"events.yaml": """
        - {contact: c1, event: signed_up, at: "+1h", source: footer}
        - {contact: c2, event: signed_up, at: "2026-11-26T10:00:00+01:00", source: footer}
    """})
    later = "2026-11-25T09:00:00+01:00"
    report = run_json(project, "--for", "7d", start=later)
    enters = {entry["contact"]: entry["at"] for entry in entries(report, kind="enter")}
    assert enters == {"c1": "2026-11-25T10:00:00+01:00", "c2": "2026-11-26T04:00:00-05:00"}
    assert report["start"] == later


def test_past_events_are_history_only(project: Path, write_files):
    write_files(project, {"events.yaml": """
        - {contact: c1, event: order_placed, at: "-3d", total: 20}
        - {contact: c2, event: signed_up, at: "-2d", source: footer}
        - {contact: c2, event: order_placed, at: "-1d", total: 10}
        - {contact: c3, event: signed_up, at: "+1h", source: popup}
    """})
    report = run_json(project, "--for", "7d")
    # Bob signed up before the start: that triggers nothing; and no one's past order triggers anything either
    assert {entry["contact"] for entry in entries(report, kind="enter")} == {"c3"}
    history = """
        id: history
        version: 1
        name: History
        trigger: {event: signed_up}
        steps:
          - if: "has_event('order_placed', within='7d') and event_count('signed_up') == 2"
            then: [{score: 1}]
    """
    write_files(project, {"workflows/history.yaml": history, "events.yaml": """
        - {contact: c1, event: order_placed, at: "-3d", total: 20}
        - {contact: c1, event: signed_up, at: "-2d", source: footer}
        - {contact: c1, event: signed_up, at: "+1h", source: footer}
    """})
    report = run_json(project, "history")
    branch = entries(report, kind="branch")[0]
    assert (branch["contact"], branch["branch"]) == ("c1", "then")  # has_event and event_count see the history


def test_an_event_at_the_start_counts_and_one_at_the_end_does_not(project: Path, write_files):
    write_files(project, {"events.yaml": """
        - {contact: c1, event: signed_up, at: "+0h", source: footer}
        - {contact: c2, event: signed_up, at: "+1d", source: footer}
    """})
    report = run_json(project, "--for", "1d")
    assert {entry["contact"] for entry in entries(report, kind="enter")} == {"c1"}


def test_default_samples_folder(project: Path, write_files):
    write_files(project, {"samples/contacts.yaml": CONTACTS_YAML, "samples/events.yaml": EVENTS_YAML})
    result = run(project, "--for", "7d", data=False)
    assert result.exit_code == 0, result.output
    assert stripped(result.stdout) == EXPECTED_TEXT


# --- options ------------------------------------------------------------------------------------

def test_contact_shows_one_contact_and_counts_only_them(project: Path):
    result = run(project, "--for", "7d", "--contact", "c2")
    assert result.exit_code == 0, result.output
    blocks = stripped(result.stdout).split("\n\n")
    assert blocks[0] == EXPECTED_TEXT.split("\n\n")[1]
    assert blocks[1].startswith("welcome: 1 entered · 2 email, 1 sms · 0 converted · 0 exited · 0 suppressed")
    report = run_json(project, "--for", "7d", "--contact", "c2")
    assert {entry["contact"] for entry in report["timeline"]} == {"c2"}
    assert report["summary"]["workflows"]["welcome"]["entered"] == 1


def test_contact_counts_only_their_messages(project: Path):
    report = run_json(project, "--for", "7d", "--contact", "c1")
    assert report["summary"]["messages"] == 1


def test_contact_that_does_not_exist(project: Path):
    result = run(project, "--contact", "c9")
    assert (result.exit_code, result.stdout, result.stderr) == (
        2, "", "--contact c9: no such contact in the contacts file\n")


def test_for_ends_the_run(project: Path):
    report = run_json(project, "--for", "1d")
    assert report["end"] == "2026-11-25T09:00:00+01:00"
    end = datetime.fromisoformat(report["end"])
    assert all(datetime.fromisoformat(entry["at"]) < end for entry in report["timeline"])
    # Bob's postponed email (08:00 in New York, 14:00 in Paris) falls after the end
    assert entries(report, contact="c2", kind="send") == []
    assert [entry["kind"] for entry in entries(report, contact="c2")] == ["enter", "wait", "postponed"]
    assert run_json(project)["end"] == "2026-12-24T09:00:00+01:00"  # 30 days by default


def test_a_bad_for_is_a_usage_error(project: Path):
    result = run(project, "--for", "3 days")
    assert result.exit_code == 2
    assert result.stderr.startswith("--for: ")


def test_start_defaults_to_now(project: Path):
    report = run_json(project, start=None)
    start = datetime.fromisoformat(report["start"])
    assert abs(start - datetime.now(UTC)) < timedelta(minutes=2)
    assert (start.second, start.microsecond) == (0, 0)


def test_start_moves_relative_events(project: Path):
    first = entries(run_json(project, start="2026-12-01T09:00:00+01:00"), kind="enter")[0]
    assert first["at"] == "2026-12-01T10:00:00+01:00"


def test_a_bad_start_names_the_start_option(project: Path):
    result = run(project, start="garbage")
    assert result.exit_code == 2
    assert result.stderr.startswith("--start garbage: ")


# --- choosing workflows -------------------------------------------------------------------------

SHOP = {
    "workflows/shop/first-order.yaml": """
        id: first-order
        version: 1
        name: First order
        trigger: {event: order_placed}
        steps:
          - score: 5
    """,
    "workflows/shop/big-spender.yaml": """
        id: big-spender
        version: 1
        name: Big spender
        trigger: {event: order_placed}
        steps:
          - score: 50
    """,
}


@pytest.mark.parametrize(("targets", "chosen"), [
    ([], {"welcome", "first-order", "big-spender"}),
    (["workflows/welcome.yaml"], {"welcome"}),
    (["workflows/shop"], {"first-order", "big-spender"}),
    (["big-spender"], {"big-spender"}),
    (["big-spender", "workflows/welcome.yaml"], {"welcome", "big-spender"}),
])
def test_workflows_by_file_folder_and_id(project: Path, write_files, targets: list[str], chosen: set[str]):
    write_files(project, {**SHOP, "events.yaml": EVENTS_YAML + '    - {contact: c2, event: order_placed, at: "+1d"}\n'})
    report = run_json(project, *targets)
    assert set(report["summary"]["workflows"]) == chosen
    assert {entry["workflow"] for entry in entries(report, kind="enter")} == chosen


def test_a_target_that_is_no_workflow(project: Path, write_files):
    write_files(project, {"notes.yaml": "hello: world\n"})
    result = run(project, "nope")
    assert (result.exit_code, result.stderr) == (2, "nope: no such workflow file, folder or workflow id\n")
    result = run(project, "notes.yaml")
    assert (result.exit_code, result.stderr) == (
        2, "notes.yaml: not a workflow of this project (workflows live in workflows/)\n")


# --- --render ----------------------------------------------------------------------------------

def test_render_writes_an_eml_per_email_and_a_txt_per_sms(project: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = run(project, "--for", "7d", "--render", str(out))
    assert result.exit_code == 0, result.output
    assert stripped(result.stdout) == EXPECTED_TEXT + f"wrote 4 messages to {out}\n"
    files = sorted(path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file())
    assert [re.sub(r"^(c\d)/\d{3}-\d{8}T\d{4}-", r"\1/", name) for name in files] == [
        "c1/welcome-hello.eml", "c2/welcome-hello.eml", "c2/welcome-nudge.txt", "c2/welcome-tips.eml"]

    hello = read_eml(next(out.glob("c2/*-welcome-hello.eml")))
    assert hello.get_content_type() == "multipart/alternative"
    body = parts(hello)
    assert set(body) == {"text/plain", "text/html"}
    assert "<p>Hello Bob</p>" in body["text/html"]
    assert "Hello Bob" in body["text/plain"] and "<p>" not in body["text/plain"]
    assert hello["Subject"] == "Welcome, Bob"
    assert hello["From"] == "Shop <hello@shop.example>"
    assert hello["To"] == "bob@example.com"
    assert hello["Reply-To"] == "care@shop.example"
    assert re.fullmatch(r"<[0-9a-f]{32}@mauto>", hello["Message-ID"])
    assert email.utils.parsedate_to_datetime(hello["Date"]) == datetime.fromisoformat("2026-11-25T08:00:00-05:00")
    link = hello["List-Unsubscribe"].strip("<>")
    assert link.startswith("https://shop.example/u/")
    assert Signer(SIMULATION_SECRET).check_unsubscribe(link.removeprefix("https://shop.example/u/")) is not None
    assert hello["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f'href="{link}"' in body["text/html"]

    ids = {read_eml(path)["Message-ID"] for path in out.rglob("*.eml")}
    assert len(ids) == 3  # one per message

    sms = next(out.glob("c2/*-welcome-nudge.txt")).read_text(encoding="utf-8")
    assert sms == ("To: +12125550100\nAt: 2026-11-25T08:00:00-05:00\n\n"
                   "Hi Bob, 10% off with WELCOME. STOP to opt out\n")


def test_render_uses_the_text_part_when_there_is_one(project: Path, write_files, tmp_path: Path):
    write_files(project, {"templates/welcome/hello.email.txt": "Hello {{ contact.first_name }}, in plain text.\n"})
    run(project, "--contact", "c1", "--render", str(tmp_path / "out"))
    body = parts(read_eml(next((tmp_path / "out").glob("c1/*.eml"))))
    assert body["text/plain"] == "Hello Ann, in plain text.\n"


def test_render_with_contact_writes_only_their_messages(project: Path, tmp_path: Path):
    result = run(project, "--contact", "c1", "--render", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(f"wrote 1 message to {tmp_path / 'out'}\n")
    assert [path.parent.name for path in (tmp_path / "out").rglob("*.*")] == ["c1"]


def test_transactional_mail_has_no_list_unsubscribe(project: Path, write_files, tmp_path: Path):
    write_files(project, {
        "workflows/welcome.yaml": """
            id: welcome
            version: 1
            name: Welcome
            category: transactional
            trigger: {event: signed_up}
            steps:
              - id: receipt
                email: welcome/receipt
        """,
        "templates/welcome/receipt.email.html": """
            ---
            subject: Your account, {{ contact.first_name }}
            ---
            <p>Your account is ready.</p>
        """,
    })
    result = run(project, "--render", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    messages = [read_eml(path) for path in sorted((tmp_path / "out").rglob("*.eml"))]
    # no consent needed: Cleo gets it too
    assert sorted(message["To"] for message in messages) == ["ann@example.com", "bob@example.com",
                                                             "cleo@example.com"]
    for message in messages:
        assert message["Subject"].startswith("Your account, ")
        assert "List-Unsubscribe" not in message and "List-Unsubscribe-Post" not in message
        assert set(parts(message)) == {"text/plain", "text/html"}


@pytest.mark.parametrize("name", ["Ann\nBcc: everyone@example.com", "Ann\r\nBcc: everyone@example.com"])
def test_a_line_break_in_contact_data_adds_no_header(project: Path, write_files, tmp_path: Path, name: str):
    write_files(project, {"contacts.jsonl": json.dumps({
        "id": "c1", "email": "ann@example.com", "first_name": name, "email_consent": True}) + "\n",
        "events.yaml": '- {contact: c1, event: signed_up, at: "+1h"}\n'})
    result = run(project, "--contacts", "contacts.jsonl", "--events", "events.yaml", "--contact", "c1",
                 "--render", str(tmp_path / "out"), data=False)
    assert result.exit_code == 0, result.output
    path = next((tmp_path / "out").rglob("*.eml"))
    headers = path.read_bytes().split(b"\n\n", 1)[0]
    assert not re.search(rb"^Bcc:", headers, re.MULTILINE | re.IGNORECASE)
    message = read_eml(path)
    assert message["Subject"] == "Welcome, Ann Bcc: everyone@example.com"
    assert "Bcc" not in message
    assert sorted(message.keys()) == sorted([
        "From", "To", "Subject", "Date", "Message-ID", "Reply-To", "List-Unsubscribe", "List-Unsubscribe-Post",
        "MIME-Version", "Content-Type"])


def test_render_writes_only_inside_its_folder(project: Path, write_files, tmp_path: Path):
    write_files(project, {
        "contacts.yaml": '- {id: "../escaped", email: ann@example.com, first_name: Ann, email_consent: true}\n',
        "events.yaml": '- {contact: "../escaped", event: signed_up, at: "+1h", source: footer}\n',
    })
    out = tmp_path / "render" / "out"
    result = run(project, "--render", str(out))
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "render" / "escaped").exists()
    written = list((tmp_path / "render").rglob("*.eml"))
    assert written and all(out in path.parents for path in written)


def test_render_of_a_hostile_contact_writes_a_bounded_file_and_a_readable_message(project: Path, write_files,
                                                                                    tmp_path: Path):
    # A 300-character id used to give "File name too long" (an internal error); a 2,000-character name and
    # an internationalised address must still make a message the email parser reads without a defect.
    contact = "c" * 300
    write_files(project, {
        "contacts.yaml": f'- {{id: "{contact}", email: "josé@bücher.example", first_name: "{"Z" * 2000}", '
                         'email_consent: true}\n',
        "events.yaml": f'- {{contact: "{contact}", event: signed_up, at: "+1h", source: footer}}\n',
    })
    out = tmp_path / "out"
    result = run(project, "--render", str(out))
    assert result.exit_code == 0, result.output
    written = sorted(out.rglob("*.eml"))
    assert len(written) == 2  # hello and tips
    for path in written:
        assert all(len(part) <= 255 for part in path.relative_to(out).parts)
        message = read_eml(path)
        assert message.defects == [] and message["To"] == "josé@xn--bcher-kva.example"
        assert max(len(line) for line in path.read_bytes().split(b"\n")) <= 998


# --- webhooks and coupons from the samples ------------------------------------------------------

WEBHOOK_PROJECT = {
    "workflows/lead.yaml": """
        id: lead
        version: 1
        name: Lead
        trigger: {event: lead_captured}
        steps:
          - id: crm-sync
            webhook:
              url: https://crm.example/api/leads
              body: {email: "{{ contact.email }}", form: "{{ event.form }}"}
              as: crm
          - task:
              title: "Call {{ contact.first_name }}"
              assignee: "{{ vars.crm.owner | default('sales@shop.example', true) }}"
          - id: intro
            email: lead/intro
    """,
    "templates/lead/intro.email.html": """
        ---
        subject: Meet {{ vars.crm.owner | default('us', true) }}
        ---
        {% extends "layouts/base.html" %}
        {% block body %}<p>Your lead {{ vars.crm.id | default('none', true) }}, owner {{ vars.crm.owner | default('nobody', true) }}.</p>{% endblock %}
    """,  # noqa: E501
    "webhooks.yaml": """
        "https://crm.example/api/leads":
          id: lead_48213
          owner: julie@shop.example
    """,
    "events.yaml": '- {contact: c1, event: lead_captured, at: "+1h", form: whitepaper}\n',
}


def test_webhook_answer_comes_from_the_samples_and_is_in_vars(project: Path, write_files, tmp_path: Path):
    write_files(project, WEBHOOK_PROJECT)
    out = tmp_path / "out"
    result = run(project, "lead", "--webhooks", "webhooks.yaml", "--format", "json", "--render", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [entry["kind"] for entry in report["timeline"]] == ["enter", "webhook", "task", "send", "complete"]
    assert entries(report, kind="webhook")[0]["why"] == "POST https://crm.example/api/leads"
    assert entries(report, kind="task")[0]["task"]["assignee"] == "julie@shop.example"
    message = read_eml(next(out.rglob("*.eml")))
    assert message["Subject"] == "Meet julie@shop.example"
    assert "Your lead lead_48213, owner julie@shop.example." in parts(message)["text/html"]


def test_webhook_answers_default_to_samples_webhooks_yaml(project: Path, write_files, tmp_path: Path):
    write_files(project, {**WEBHOOK_PROJECT, "samples/webhooks.yaml": WEBHOOK_PROJECT["webhooks.yaml"]})
    report = run_json(project, "lead")
    assert entries(report, kind="task")[0]["task"]["assignee"] == "julie@shop.example"


def test_a_webhook_without_a_sample_answer_gets_an_empty_one(project: Path, write_files, tmp_path: Path):
    write_files(project, WEBHOOK_PROJECT)
    result = run(project, "lead", "--render", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    message = read_eml(next((tmp_path / "out").rglob("*.eml")))
    assert "Your lead none, owner nobody." in parts(message)["text/html"]


def test_the_webhook_answer_is_recorded_in_the_timeline(project: Path, write_files):
    write_files(project, WEBHOOK_PROJECT)
    report = run_json(project, "lead", "--webhooks", "webhooks.yaml")
    recorded = json.dumps(entries(report, step="crm-sync"))
    assert "lead_48213" in recorded and "julie@shop.example" in recorded


COUPON_PROJECT = {
    "workflows/welcome.yaml": """
        id: welcome
        version: 1
        name: Welcome
        trigger: {event: signed_up}
        steps:
          - assign_coupon: {pool: WELCOME10, as: code}
          - id: hello
            email: welcome/code
    """,
    "templates/welcome/code.email.html": """
        ---
        subject: "Your code: {{ vars.code }}"
        ---
        {% extends "layouts/base.html" %}
        {% block body %}<p>Use {{ vars.code }}</p>{% endblock %}
    """,
    "samples/coupons.yaml": """
        WELCOME10:
          - WELC-0001
          - WELC-0002
    """,
}


def test_coupons_come_from_the_samples_file_in_order(project: Path, write_files, tmp_path: Path):
    write_files(project, COUPON_PROJECT)
    out = tmp_path / "out"
    result = run(project, "--format", "json", "--render", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    coupons = entries(report, kind="coupon")
    # events: Ann at +1h, Cleo at +2h, Bob at +18h
    assert [(entry["contact"], entry["code"], entry["why"]) for entry in coupons] == [
        ("c1", "WELC-0001", "WELCOME10 → vars.code"), ("c3", "WELC-0002", "WELCOME10 → vars.code")]
    failed = entries(report, kind="failed")
    assert [(entry["contact"], entry["step"], entry["why"]) for entry in failed] == [
        ("c2", "1", "coupon pool WELCOME10 is empty")]
    ann = read_eml(next(out.glob("c1/*.eml")))
    assert ann["Subject"] == "Your code: WELC-0001"
    assert "Use WELC-0001" in parts(ann)["text/html"]


def test_coupons_option_takes_another_file(project: Path, write_files):
    write_files(project, {**COUPON_PROJECT, "other-coupons.yaml": "WELCOME10: [OTHER-1, OTHER-2, OTHER-3]\n"})
    report = run_json(project, "--coupons", "other-coupons.yaml")
    assert [entry["code"] for entry in entries(report, kind="coupon")] == ["OTHER-1", "OTHER-2", "OTHER-3"]


def test_no_coupons_file_means_empty_pools(project: Path, write_files):
    files = dict(COUPON_PROJECT)
    del files["samples/coupons.yaml"]
    write_files(project, files)
    report = run_json(project, "--contact", "c1")
    assert [(entry["kind"], entry.get("why")) for entry in report["timeline"]] == [
        ("enter", "signed_up"), ("failed", "coupon pool WELCOME10 is empty")]


def test_a_coupon_pool_that_is_not_a_list_is_an_error(project: Path, write_files):
    write_files(project, {**COUPON_PROJECT, "samples/coupons.yaml": "WELCOME10: ABC\n"})
    result = run(project)
    assert result.exit_code != 0
    assert "samples/coupons.yaml:1" in result.stderr


# --- bad input ----------------------------------------------------------------------------------

def test_a_bad_date_in_a_csv_names_the_file_line_and_field(project: Path, write_files):
    write_files(project, {"contacts.csv": """
        id,email,first_name,birthday
        c1,ann@example.com,Ann,1990-01-02
        c2,bob@example.com,Bob,1990-13-01
        c3,cleo@example.com,Cleo,
    """})
    result = run(project, "--contacts", "contacts.csv", "--events", "events.yaml", data=False)
    assert (result.exit_code, result.stdout, result.stderr) == (
        1, "", "contacts.csv:3: field `birthday`: `1990-13-01` is not a date (YYYY-MM-DD)\n")


def test_a_bad_boolean_in_json_lines(project: Path, write_files):
    write_files(project, {"contacts.jsonl": CONTACTS_JSONL.replace('"email_consent": false', '"email_consent": "no!"')})
    result = run(project, "--contacts", "contacts.jsonl", "--events", "events.yaml", data=False)
    assert (result.exit_code, result.stderr) == (
        1, "contacts.jsonl:4: field `email_consent`: must be true or false, not `no!`\n")


def test_a_bad_time_in_events(project: Path, write_files):
    write_files(project, {"events.yaml": """
        - {contact: c1, event: signed_up, at: "+1h"}
        - {contact: c2, event: signed_up, at: tomorrow}
    """})
    result = run(project)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.startswith("events.yaml:2: `at`: `tomorrow` is not an ISO 8601 time")


def test_an_event_for_an_unknown_contact(project: Path, write_files):
    write_files(project, {"events.yaml": """
        - {contact: c1, event: signed_up, at: "+1h"}
        - {contact: c9, event: signed_up, at: "+2h"}
    """})
    result = run(project)
    assert (result.exit_code, result.stdout, result.stderr) == (
        1, "", "events.yaml:2: event for unknown contact `c9`\n")


def test_an_event_without_a_time(project: Path, write_files):
    write_files(project, {"events.csv": "contact,event\nc1,signed_up\n"})
    result = run(project, "--contacts", "contacts.yaml", "--events", "events.csv", data=False)
    assert (result.exit_code, result.stderr) == (1, "events.csv:2: event has no `at`\n")


def test_an_unknown_contact_field(project: Path, write_files):
    write_files(project, {"contacts.yaml": """
        - {id: c1, email: ann@example.com}
        - {id: c2, email: bob@example.com, nickname: Bobby}
    """})
    result = run(project)
    assert (result.exit_code, result.stdout, result.stderr) == (
        1, "", "contacts.yaml:2: unknown contact field `nickname`; declare it under `contact_fields` in mauto.yaml\n")


def test_a_duplicate_contact_id(project: Path, write_files):
    write_files(project, {"contacts.csv": "id,email\nc1,a@example.com\nc1,b@example.com\n"})
    result = run(project, "--contacts", "contacts.csv", "--events", "events.yaml", data=False)
    assert (result.exit_code, result.stderr) == (1, "contacts.csv:3: duplicate contact id `c1`\n")


def test_an_unknown_data_file_type(project: Path, write_files):
    write_files(project, {"contacts.xlsx": "not really"})
    result = run(project, "--contacts", "contacts.xlsx", "--events", "events.yaml", data=False)
    assert result.exit_code == 1
    assert result.stderr == "contacts.xlsx: unknown data file type `.xlsx`; use .yaml, .jsonl or .csv\n"


def test_without_contacts_and_samples(project: Path):
    result = run(project, data=False)
    assert (result.exit_code, result.stdout, result.stderr) == (
        2, "", "no contacts file: pass --contacts FILE (YAML, JSON Lines or CSV) or create samples/contacts.yaml\n")


def test_a_contacts_file_that_does_not_exist(project: Path):
    result = run(project, "--contacts", "missing.csv", data=False)
    assert (result.exit_code, result.stderr) == (2, "missing.csv: no such file\n")


def test_a_project_with_lint_errors_is_refused_with_the_findings(project: Path, write_files):
    write_files(project, {
        "workflows/welcome.yaml": PROJECT["workflows/welcome.yaml"].replace("wait: 1h", "wait: 1 hour"),
        "workflows/other.yaml": "id: other\nid: again\n",
    })
    result = run(project)
    assert result.exit_code not in (0, 3)
    assert result.stdout == ""
    assert result.stderr == (
        "the project has 2 lint errors; fix them first (mauto lint):\n"
        "  workflows/other.yaml:2:1: yaml-syntax duplicate key `id` (first defined at line 1); YAML would silently "
        "keep only the last one\n"
        "  workflows/welcome.yaml:6:11: duration `wait` in step 1: `1 hour` is not a duration; write `1h`\n")


def test_warnings_do_not_stop_a_simulation(project: Path, write_files):
    write_files(project, {"templates/welcome/nudge.sms.txt": "Hello! " * 40 + "{{ contact.first_name }}\n"})
    result = run(project, "--for", "7d")
    assert result.exit_code == 0, result.output


def test_lint_dates_are_checked_against_the_start(project: Path, write_files):
    write_files(project, {"workflows/welcome.yaml": """
        id: welcome
        version: 1
        name: Welcome
        trigger: {event: signed_up}
        steps:
          - wait: {until: "2020-06-01"}
          - score: 1
    """})
    result = run(project, start="2020-05-01T09:00:00+02:00")
    assert result.exit_code == 0, result.output


TEMPLATE_ERROR = {
    "templates/welcome/hello.email.html": """
        ---
        subject: Welcome
        ---
        {% extends "layouts/base.html" %}
        {% block body %}
        <p>Hello {{ contact.first_name.upper() }}</p>
        {% endblock %}
    """,
    "contacts.yaml": """
        - {id: c1, email: ann@example.com, first_name: Ann, email_consent: true}
        - {id: c2, email: bob@example.com, email_consent: true}
        - {id: c3, email: cleo@example.com, first_name: Cleo, email_consent: true}
    """,
    "events.yaml": """
        - {contact: c1, event: signed_up, at: "+1h"}
        - {contact: c2, event: signed_up, at: "+2h"}
        - {contact: c3, event: signed_up, at: "+3h"}
    """,
}


def test_a_template_error_fails_that_contact_at_the_templates_line(project: Path, write_files, tmp_path: Path):
    write_files(project, TEMPLATE_ERROR)
    out = tmp_path / "out"
    result = run(project, "--format", "json", "--render", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    failed = entries(report, kind="failed")
    assert [(entry["contact"], entry["step"]) for entry in failed] == [("c2", "hello")]
    assert failed[0]["why"] == ("template welcome/hello: templates/welcome/hello.email.html:6: cannot render: "
                                "'None' has no attribute 'upper'")
    # the others go on
    assert {"c1", "c3"} <= {entry["contact"] for entry in entries(report, kind="send", step="hello")}
    assert sorted(path.parent.name for path in out.rglob("*-welcome-hello.eml")) == ["c1", "c3"]
    assert report["summary"]["workflows"]["welcome"]["failed"] == 1
    text = run(project, "--contact", "c2")
    assert text.exit_code == 0
    assert re.search(r"welcome  hello +failed +template welcome/hello: templates/welcome/hello\.email\.html:6: ",
                     text.stdout)


def test_a_template_error_ends_the_enrollment_at_that_step(project: Path, write_files, tmp_path: Path):
    write_files(project, TEMPLATE_ERROR)
    write_files(project, {"workflows/welcome.yaml": """
        id: welcome
        version: 1
        name: Welcome
        category: transactional
        trigger: {event: signed_up}
        steps:
          - id: hello
            email: welcome/hello
          - score: 5
          - id: nudge
            sms: welcome/nudge
    """, "contacts.yaml": '- {id: c2, email: bob@example.com, phone: "+12125550100"}\n',
        "events.yaml": '- {contact: c2, event: signed_up, at: "+1h"}\n'})
    out = tmp_path / "out"
    report = run_json(project, "--render", str(out))
    assert [entry["kind"] for entry in report["timeline"]] == ["enter", "failed"]
    assert report["summary"]["workflows"]["welcome"]["sent"] == {}
    assert not out.exists() or not list(out.rglob("*.*"))


def test_a_type_error_in_a_template_is_a_failed_step_not_a_crash(project: Path, write_files):
    write_files(project, {**TEMPLATE_ERROR, "templates/welcome/hello.email.html": """
        ---
        subject: Welcome
        ---
        {% extends "layouts/base.html" %}
        {% block body %}
        <p>Hello {{ contact.first_name + 1 }}</p>
        {% endblock %}
    """})
    result = run(project, "--format", "json")
    assert result.exit_code == 0, result.output
    failed = entries(json.loads(result.stdout), kind="failed")
    assert len(failed) == 3
    assert all("templates/welcome/hello.email.html:6: " in entry["why"] for entry in failed)


# --- engine behaviour seen through simulate -----------------------------------------------------

def test_a_message_shows_the_contact_as_it_was_when_sent(project: Path, write_files, tmp_path: Path):
    write_files(project, {
        "workflows/welcome.yaml": """
            id: welcome
            version: 1
            name: Welcome
            trigger: {event: signed_up}
            steps:
              - id: hello
                email: welcome/hello
              - score: 5
              - update: {set: {plan: pro}}
        """,
        "templates/welcome/hello.email.html": """
            ---
            subject: Welcome
            ---
            {% extends "layouts/base.html" %}
            {% block body %}<p>score {{ contact.score }}, plan {{ contact.plan | default('none', true) }}</p>{% endblock %}
        """,  # noqa: E501
    })
    out = tmp_path / "out"
    run(project, "--contact", "c1", "--render", str(out))
    assert "<p>score 0, plan none</p>" in parts(read_eml(next(out.rglob("*.eml"))))["text/html"]


def test_times_are_in_the_contacts_zone_whatever_the_first_workflow(project: Path, write_files):
    write_files(project, {"workflows/aaa-first.yaml": """
        id: aaa-first
        version: 1
        name: Sorted first
        trigger: {event: order_placed}
        settings:
          timezone: America/Los_Angeles
        steps:
          - score: 1
    """})
    report = run_json(project, "welcome", "--for", "7d")
    assert entries(report, contact="c1", kind="enter")[0]["at"] == "2026-11-24T10:00:00+01:00"
    text = run(project, "--for", "7d", "--contact", "c1")
    assert "Tue 24 Nov 10:00 CET  welcome" in text.stdout


def test_a_goal_event_that_is_also_an_exit_on_counts_as_a_conversion(project: Path, write_files):
    """The design page's own example: exit_on [order_placed] and goal order_placed; the order is a conversion."""
    write_files(project, {
        "workflows/welcome.yaml": """
            id: welcome
            version: 1
            name: Welcome
            trigger: {event: signed_up}
            exit_on: [order_placed]
            goal: {event: order_placed, within: 7d}
            steps:
              - wait: 2d
              - id: hello
                email: welcome/hello
        """,
        "events.yaml": """
            - {contact: c1, event: signed_up, at: "+1h"}
            - {contact: c1, event: order_placed, at: "+1d", total: 45}
        """,
    })
    report = run_json(project)
    assert [entry["kind"] for entry in report["timeline"]] == ["enter", "wait", "goal", "exit"]
    assert report["summary"]["workflows"]["welcome"]["converted"] == 1


def test_an_exit_during_a_wait_is_at_the_wait_and_does_not_reach_the_next_step(project: Path, write_files):
    """A `wait` has already moved the position to the next step; the exit is logged at the wait, and the funnel
    does not count Ann at `hello`, which she never reached."""
    write_files(project, {
        "workflows/welcome.yaml": """
            id: welcome
            version: 1
            name: Welcome
            trigger: {event: signed_up}
            exit_on: [order_placed]
            steps:
              - wait: 2d
              - id: hello
                email: welcome/hello
        """,
        "events.yaml": """
            - {contact: c1, event: signed_up, at: "+1h"}
            - {contact: c1, event: order_placed, at: "+1d", total: 45}
        """,
    })
    report = run_json(project)
    assert entries(report, kind="exit")[0]["step"] == "1"
    assert report["summary"]["workflows"]["welcome"]["steps"] == {"1": 1}


def test_a_transactional_send_to_a_contact_without_an_address_is_not_sent(project: Path, write_files):
    write_files(project, {
        "workflows/welcome.yaml": """
            id: welcome
            version: 1
            name: Welcome
            category: transactional
            trigger: {event: signed_up}
            steps:
              - id: hello
                email: welcome/hello
              - id: nudge
                sms: welcome/nudge
        """,
        "contacts.yaml": "- {id: c1, first_name: Ann}\n",
        "events.yaml": '- {contact: c1, event: signed_up, at: "+1h"}\n',
    })
    report = run_json(project)
    assert [(entry["kind"], entry.get("why")) for entry in report["timeline"]] == [
        ("enter", "signed_up"), ("suppressed", "no email address"), ("suppressed", "no phone number"),
        ("complete", "reached the end")]


# --- the bundled sample project -----------------------------------------------------------------

SAMPLE_START = "2026-11-24T09:00:00+01:00"


def sample_categories(root: Path) -> dict[str, str]:
    """Workflow id -> category, for the bundled sample workflows."""
    categories = {}
    for path in (root / "workflows").rglob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        workflow_id = re.search(r"^id: (\S+)$", text, re.MULTILINE).group(1)
        category = re.search(r"^category: (\S+)", text, re.MULTILINE)
        categories[workflow_id] = category.group(1) if category else "marketing"
    return categories


@pytest.fixture
def sample_project(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)
    return ROOT


def test_the_sample_project_simulates(sample_project: Path):
    result = CliRunner().invoke(app, ["--project", str(sample_project), "simulate", "--start", SAMPLE_START])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_every_sample_workflow_has_someone_enter(sample_project: Path):
    result = CliRunner().invoke(app, ["--project", str(sample_project), "simulate", "--start", SAMPLE_START,
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    workflow_ids = set(sample_categories(sample_project))
    entered = {entry["workflow"] for entry in report["timeline"] if entry["kind"] == "enter"}
    assert sorted(workflow_ids - entered) == []
    assert entries(report, kind="failed") == []


def test_every_sample_message_renders(sample_project: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["--project", str(sample_project), "simulate", "--start", SAMPLE_START,
                                      "--format", "json", "--render", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(list(out.rglob("*.eml"))) + len(list(out.rglob("*.txt"))) == report["summary"]["messages"]
    categories = sample_categories(sample_project)
    assert "transactional" in categories.values() and "marketing" in categories.values()
    for path in out.rglob("*.eml"):
        message = read_eml(path)
        assert message.get_content_type() == "multipart/alternative", path
        assert set(parts(message)) == {"text/plain", "text/html"}, path
        assert message["Subject"] and message["To"] and message["From"] and message["Message-ID"], path
        # NNN-YYYYMMDDTHHMM-<workflow>-<step>.eml: the longest workflow id that fits
        workflow = max((name for name in categories if path.name[18:].startswith(name + "-")), key=len)
        if categories[workflow] == "marketing":
            assert message["List-Unsubscribe"].strip().startswith("<https://"), path  # folded: a leading blank
            assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click", path
        else:
            assert "List-Unsubscribe" not in message and "List-Unsubscribe-Post" not in message, path
    for path in out.rglob("*.txt"):
        assert path.read_text(encoding="utf-8").startswith("To: +"), path
