"""Sales tasks: `mauto tasks` lists them, `mauto tasks done` closes them, and a tick hands each new one to its
owner (docs/tasks.md): an email through the project's SMTP channel and a JSON POST into a CRM, at least once,
with the task's key as idempotency key, retried on temporary failures, failed for good with the reason.

Against a real store, `mauto run --once`, a real SMTP server (aiosmtpd) and a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mauto.cli import app
from mauto.config import load_project
from mauto.daemon.tasks import TaskNotFound, done_task, list_tasks, reopen_task
from mauto.deploy import deploy
from mauto.errors import MautoError
from mauto.store import Store
from mauto.store.contacts import import_contacts
from mauto.store.events import ingest_events
from tests.servers import HttpServer, SmtpServer

DEPLOYED = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SECRET = "Bearer crm_live_9f8e7d6c5b4a"
WORKFLOW = """\
id: demo-follow-up
version: 1
name: Demo follow-up
category: transactional
trigger: {event: demo_requested}
steps:
  - id: call
    task:
      title: "Call {{ contact.first_name }} about the demo"
      assignee: "{{ contact.owner }}"
      due: 2d
      notes: "Asked for a demo of {{ event.product }}"
"""
HANDOFF = """\
tasks:
  handoff:
    email:
      from: "Shop CRM <crm@shop.example>"
    webhook:
      url: "{crm}/tasks/{{{{ task.contact }}}}"
      headers: {{X-Source: mauto}}
      headers_env: {{Authorization: MAUTO_TEST_CRM_AUTH}}
      timeout: 5s
    retries: 1
"""
CONTACTS = [
    {"id": "ana", "email": "ana@example.com", "first_name": "Ana", "owner": "sam@shop.example"},
    {"id": "ben", "email": "ben@example.com", "first_name": "Ben", "owner": "kim@shop.example"},
    {"id": "cy", "email": "cy@example.com", "first_name": "Cy", "owner": "sam@shop.example"},
]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


class Sales:
    """A project whose workflow makes a task per demo request, its store, and the SMTP server and CRM."""

    def __init__(self, root: Path, smtp: SmtpServer, crm: HttpServer, handoff: str | None = HANDOFF) -> None:
        self.root, self.smtp, self.crm = root, smtp, crm
        write(root / "mauto.yaml", textwrap.dedent(f"""\
            store: mauto.db
            timezone: UTC
            sender: {{email: "Shop <shop@example.com>"}}
            channels:
              email: {{transport: smtp, host: 127.0.0.1, port: {smtp.port}, timeout: 5s}}
              sms: {{transport: console}}
            contact_fields: {{first_name: string, owner: string}}
            events: {{demo_requested: {{product: string}}}}
            """) + (handoff.format(crm=crm.url("").rstrip("/")) if handoff else ""))
        write(root / "workflows" / "demo-follow-up.yaml", WORKFLOW)
        write(root / "contacts.jsonl", "\n".join(json.dumps(row) for row in CONTACTS) + "\n")
        self.project = load_project(root / "mauto.yaml")
        self.store = Store(root / "mauto.db", lambda: DEPLOYED, create=True, timeout=2.0)
        deploy(self.project, self.store, DEPLOYED)
        import_contacts(self.store, root / "contacts.jsonl", fields=self.project.contact_fields,
                        zone=self.project.timezone)
        self.events = 0

    def demo(self, contact: str, at: datetime = T0, product: str = "Lumio Cloud") -> None:
        self.events += 1
        path = write(self.root / f"events-{self.events}.jsonl", json.dumps(
            {"contact": contact, "event": "demo_requested", "at": at.isoformat(), "product": product}) + "\n")
        result = ingest_events(self.store, path, catalogue=self.project.events, zone=self.project.timezone)
        assert result.ok, result.to_dict()

    def mauto(self, *args: str):
        return CliRunner().invoke(app, ["-p", str(self.root / "mauto.yaml"), *args],
                                  env={"MAUTO_TEST_CRM_AUTH": SECRET, "COLUMNS": "200", "NO_COLOR": "1"})

    def run(self, now: datetime):
        """`mauto run --once --now NOW`: the daemon's tick, as cron runs it."""
        return self.mauto("run", "--once", "--now", now.isoformat(), "--format", "json")

    def task(self, contact: str) -> dict:
        row = self.store.db.execute("SELECT * FROM tasks WHERE contact = ?", [contact]).fetchone()
        assert row is not None, f"no task for {contact}"
        names = [column[0] for column in self.store.db.execute("SELECT * FROM tasks LIMIT 0").description]
        return dict(zip(names, row, strict=True))

    def crm_requests(self, contact: str) -> list:
        return [request for request in self.crm.requests if request.path == f"/tasks/{contact}"]


@pytest.fixture
def sales(tmp_path: Path, cli_environment: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sales]:
    monkeypatch.chdir(tmp_path)  # files are named as from the project's folder: mauto.yaml:3:5
    with SmtpServer() as smtp, HttpServer() as crm:
        project = Sales(tmp_path, smtp, crm)
        yield project
        project.store.close()


# --- the hand-off -------------------------------------------------------------------------------------------


def test_a_new_task_is_mailed_to_its_assignee_and_posted_to_the_crm(sales: Sales):
    sales.crm.respond("/tasks/ana", 201, {"id": "crm-task-1"})
    sales.demo("ana")
    result = sales.run(T0 + timedelta(minutes=1))
    assert result.exit_code == 0, result.output
    task = sales.task("ana")
    assert task["handoff"] == "done" and task["handoff_attempts"] == 1 and task["handoff_next_try_at"] is None
    assert task["handoff_answer"] == "email: done: 250 2.0.0 Ok: queued as Q0001\nwebhook: done: HTTP 201"

    # The assignee's email: from the address mauto.yaml names, the task and its contact in it, no marketing.
    [mail] = sales.smtp.messages
    assert mail.rcpt_tos == ["sam@shop.example"] and mail.mail_from == "crm@shop.example"
    message = mail.message
    assert parseaddr(message["From"]) == ("Shop CRM", "crm@shop.example")
    assert message["To"] == "sam@shop.example"
    assert message["Subject"] == "Task: Call Ana about the demo"
    assert message["X-Mauto-Task"] == task["key"]
    assert message["List-Unsubscribe"] is None
    body = message.get_content()
    assert body.splitlines() == [
        "Call Ana about the demo", "", "Contact: ana <ana@example.com>", "Due: 2026-12-03 09:00", "",
        "Asked for a demo of Lumio Cloud", "", f"Task {task['id']}, from step call of workflow demo-follow-up.",
        f"When it is done: mauto tasks done {task['id']}"]
    # Not a message to a contact: not in the outbox, so never in the stats nor under the contact's consent.
    assert sales.store.db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0

    # The CRM's request: the task's key as Idempotency-Key and in the body, the secret from the environment.
    [request] = sales.crm_requests("ana")
    assert request.method == "POST"
    assert request.headers["Idempotency-Key"] == task["key"]
    assert request.headers["Authorization"] == SECRET and request.headers["X-Source"] == "mauto"
    assert request.json == {
        "idempotency_key": task["key"],
        "task": {"id": task["id"], "key": task["key"], "title": "Call Ana about the demo",
                 "assignee": "sam@shop.example", "notes": "Asked for a demo of Lumio Cloud",
                 "due_at": "2026-12-03T09:00:00+00:00", "created_at": "2026-12-01T09:00:00+00:00",
                 "workflow": "demo-follow-up", "step": "call", "contact": "ana"},
        "contact": {"id": "ana", "email": "ana@example.com", "phone": None, "timezone": None, "locale": None,
                    "score": 0, "tags": [], "lists": [], "email_consent": False, "sms_consent": False,
                    "created_at": request.json["contact"]["created_at"], "first_name": "Ana",
                    "owner": "sam@shop.example"}}
    # The secret went out in its header and nowhere else.
    dump = "\n".join(str(row) for table in ("tasks", "step_log", "enrollments", "failures")
                     for row in sales.store.db.execute(f"SELECT * FROM {table}"))
    assert "crm_live" not in dump and "crm_live" not in result.output

    # A second tick hands nothing over again.
    assert sales.run(T0 + timedelta(hours=2)).exit_code == 0
    assert len(sales.smtp.messages) == 1 and len(sales.crm.requests) == 1


def test_a_crm_answering_500_then_200_is_tried_again_and_the_email_is_not_repeated(sales: Sales):
    sales.crm.respond("/tasks/ana", 500, {"error": "down for maintenance"}, times=1)
    sales.crm.respond("/tasks/ana", 200, {"id": "crm-task-1"})
    sales.demo("ana")
    assert sales.run(T0 + timedelta(minutes=1)).exit_code == 0  # to be tried again: nothing needs a person yet
    task = sales.task("ana")
    assert task["handoff"] == "pending" and task["handoff_attempts"] == 1
    assert task["handoff_answer"] == ("email: done: 250 2.0.0 Ok: queued as Q0001\n"
                                      'webhook: retry: HTTP 500: {"error": "down for maintenance"}')
    retry_at = datetime.fromisoformat(task["handoff_next_try_at"])
    assert T0 + timedelta(minutes=1) <= retry_at <= T0 + timedelta(minutes=2)  # backoff: up to 60 s after

    assert sales.run(T0 + timedelta(minutes=3)).exit_code == 0
    task = sales.task("ana")
    assert task["handoff"] == "done" and task["handoff_attempts"] == 2 and task["handoff_next_try_at"] is None
    assert task["handoff_answer"] == "email: done: 250 2.0.0 Ok: queued as Q0001\nwebhook: done: HTTP 200"
    first, second = sales.crm_requests("ana")
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == task["key"]
    assert first.json == second.json
    assert len(sales.smtp.messages) == 1  # the part done is not repeated


def test_a_crm_that_always_fails_ends_failed_with_its_reason_and_the_other_tasks_go(sales: Sales):
    sales.crm.respond("/tasks/ana", 503, {"error": "overloaded"})
    sales.crm.respond("/tasks/ben", 200, {"id": "crm-task-2"})
    sales.demo("ana")
    sales.demo("ben")
    assert sales.run(T0 + timedelta(minutes=1)).exit_code == 0
    assert sales.task("ana")["handoff"] == "pending" and sales.task("ben")["handoff"] == "done"

    result = sales.run(T0 + timedelta(hours=1))
    assert result.exit_code == 1, result.output  # something needs a person
    report = json.loads(result.stdout)
    assert report["errors"] == 1
    task = sales.task("ana")
    assert task["handoff"] == "failed" and task["handoff_attempts"] == 2 and task["handoff_next_try_at"] is None
    assert task["handoff_answer"] == ("email: done: 250 2.0.0 Ok: queued as Q0001\n"
                                      'webhook: failed: gave up after 2 attempts: HTTP 503: {"error": "overloaded"}')
    assert report["problems"] == [{"kind": "task", "task": task["id"], "contact": "ana",
                                   "workflow": "demo-follow-up",
                                   "reason": f"the hand-off of task {task['id']} failed (see `mauto tasks "
                                             "--handoff failed`)"}]
    assert report["notes"] == ["1 task hand-off failed for good: `mauto tasks --handoff failed` lists them"]
    assert sales.task("ben")["handoff"] == "done"
    assert len(sales.crm_requests("ana")) == 2 and len(sales.crm_requests("ben")) == 1
    # Failed is final: later ticks leave it.
    assert sales.run(T0 + timedelta(days=1)).exit_code == 0
    assert len(sales.crm_requests("ana")) == 2


def test_a_refusal_for_good_fails_that_task_alone_at_once(sales: Sales):
    """An SMTP 550 for one assignee, and an assignee that is no address: those tasks fail at once, with the
    reason; the task between them is handed over."""
    sales.store.db.execute("UPDATE contacts SET fields = json_set(fields, '$.owner', 'team-west') WHERE id = 'cy'")
    sales.smtp.on("rcpt", "550 5.1.1 no such user", recipient="kim@shop.example")
    for contact in ("ana", "ben", "cy"):
        sales.crm.respond(f"/tasks/{contact}", 200, {})
        sales.demo(contact)
    result = sales.run(T0 + timedelta(minutes=1))
    assert result.exit_code == 1, result.output
    assert sales.task("ana")["handoff"] == "done"
    ben, cy = sales.task("ben"), sales.task("cy")
    assert (ben["handoff"], ben["handoff_attempts"]) == ("failed", 1)
    assert ben["handoff_answer"] == "email: failed: RCPT TO: 550 5.1.1 no such user\nwebhook: done: HTTP 200"
    assert (cy["handoff"], cy["handoff_attempts"]) == ("failed", 1)
    assert cy["handoff_answer"] == ("email: failed: not sent: `to` gave 'team-west', which is not one email "
                                    "address\nwebhook: done: HTTP 200")
    assert [mail.rcpt_tos for mail in sales.smtp.delivered()] == [["sam@shop.example"]]


def test_a_crash_before_the_outcome_is_recorded_hands_the_task_over_again_with_the_same_keys(sales: Sales):
    sales.crm.respond("/tasks/ana", 200, {})
    sales.demo("ana")
    assert sales.run(T0 + timedelta(minutes=1)).exit_code == 0
    # What a tick killed between the hand-off and its record leaves: the task still pending, never tried.
    sales.store.db.execute("UPDATE tasks SET handoff = 'pending', handoff_answer = NULL, handoff_attempts = 0")
    assert sales.run(T0 + timedelta(minutes=2)).exit_code == 0
    assert sales.task("ana")["handoff"] == "done"
    first, second = sales.crm_requests("ana")
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == sales.task("ana")["key"]
    assert first.json["idempotency_key"] == second.json["idempotency_key"]
    assert len({mail.message_id for mail in sales.smtp.messages}) == 1 and len(sales.smtp.messages) == 2


def test_an_environment_variable_not_set_fails_the_webhook_part_and_names_it(sales: Sales,
                                                                             monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MAUTO_TEST_CRM_AUTH", raising=False)
    sales.crm.respond("/tasks/ana", 200, {})
    sales.demo("ana")
    result = CliRunner().invoke(app, ["-p", str(sales.root / "mauto.yaml"), "run", "--once", "--now",
                                      (T0 + timedelta(minutes=1)).isoformat()], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    task = sales.task("ana")
    assert task["handoff"] == "failed"
    assert task["handoff_answer"] == ("email: done: 250 2.0.0 Ok: queued as Q0001\n"
                                      "webhook: failed: not sent: environment variable MAUTO_TEST_CRM_AUTH is not set")
    assert sales.crm.requests == []


def test_an_erased_contact_s_task_is_not_handed_over(sales: Sales):
    from mauto.daemon.tick import tick
    from mauto.store.contacts import erase

    sales.demo("ana")
    # The task made by a tick that did not send (`send=False`), the contact erased before the next one.
    tick(sales.project, sales.store, T0 + timedelta(minutes=1), {}, send=False)
    assert sales.task("ana")["handoff"] == "pending"
    erase(sales.store, "ana")
    [row] = sales.store.db.execute("SELECT contact FROM tasks").fetchall()
    assert sales.run(T0 + timedelta(minutes=2)).exit_code == 1
    handoff, answer = sales.store.db.execute("SELECT handoff, handoff_answer FROM tasks").fetchone()
    assert handoff == "failed"
    assert answer == ("email: failed: not handed over: the contact was erased\n"
                      "webhook: failed: not handed over: the contact was erased")
    assert sales.smtp.messages == [] and sales.crm.requests == [] and row[0] != "ana"


def test_without_a_handoff_tasks_are_only_rows(tmp_path: Path, cli_environment: None):
    with SmtpServer() as smtp, HttpServer() as crm:
        sales = Sales(tmp_path, smtp, crm, handoff=None)
        sales.demo("ana")
        assert sales.run(T0 + timedelta(minutes=1)).exit_code == 0
        task = sales.task("ana")
        assert (task["handoff"], task["handoff_attempts"], task["handoff_answer"]) == (None, 0, None)
        assert smtp.messages == [] and crm.requests == []
        sales.store.close()


# --- mauto tasks ----------------------------------------------------------------------------------------------


def _three_tasks(sales: Sales) -> None:
    """ana's task due 12-03 (made 12-01), ben's due 12-04 (made 12-02), cy's due 12-03 10:00 (made 12-01 10:00)."""
    for contact in ("ana", "ben", "cy"):
        sales.crm.respond(f"/tasks/{contact}", 200, {})
    sales.demo("ana", T0)
    sales.demo("cy", T0 + timedelta(hours=1))
    sales.demo("ben", T0 + timedelta(days=1))
    assert sales.run(T0 + timedelta(days=1, minutes=1)).exit_code == 0


def test_tasks_lists_newest_first_and_open_ones_by_due_date(sales: Sales):
    _three_tasks(sales)
    now = T0 + timedelta(days=2, hours=12)  # 12-03 21:00: ana's and cy's are overdue
    everything = list_tasks(sales.store, now)
    assert [task["contact"] for task in everything["tasks"]] == ["ben", "cy", "ana"]
    assert everything["total"] == 3
    ana = everything["tasks"][2]
    assert list(ana) == ["id", "key", "contact", "workflow", "step", "title", "assignee", "notes", "due_at",
                         "overdue", "created_at", "done_at", "done_by", "handoff", "handoff_attempts",
                         "handoff_next_try_at", "handoff_answer"]
    assert ana["overdue"] is True and everything["tasks"][0]["overdue"] is False
    done_task(sales.store, ana["id"], now, "sam")
    listing = list_tasks(sales.store, now, open_only=True)
    assert [task["contact"] for task in listing["tasks"]] == ["cy", "ben"]
    assert [task["contact"] for task in list_tasks(sales.store, now, owner="SAM@shop.example")["tasks"]] \
        == ["cy", "ana"]
    assert [task["contact"] for task in list_tasks(sales.store, now, open_only=True,
                                                   owner="sam@shop.example")["tasks"]] == ["cy"]
    assert list_tasks(sales.store, now, workflow="other")["tasks"] == []
    limited = list_tasks(sales.store, now, limit=1)
    assert len(limited["tasks"]) == 1 and limited["total"] == 3


def test_done_marks_a_task_once_and_reopen_undoes_it(sales: Sales):
    _three_tasks(sales)
    task_id = sales.task("ana")["id"]
    moment = T0 + timedelta(days=2)
    result = done_task(sales.store, task_id, moment, "sam")
    assert result["changed"] is True and result["done_by"] == "sam"
    assert result["done_at"] == "2026-12-03T09:00:00.000000+00:00"
    again = done_task(sales.store, task_id, moment + timedelta(hours=1), "kim")
    assert again["changed"] is False
    assert (again["done_at"], again["done_by"]) == ("2026-12-03T09:00:00.000000+00:00", "sam")
    with pytest.raises(TaskNotFound) as caught:
        done_task(sales.store, 999, moment, "sam")
    assert caught.value.message == "no task 999 (`mauto tasks` lists them)" and caught.value.exit_code == 1
    assert reopen_task(sales.store, task_id, moment)["changed"] is True
    assert (sales.task("ana")["done_at"], sales.task("ana")["done_by"]) == (None, None)
    assert reopen_task(sales.store, task_id, moment)["changed"] is False


def test_the_tasks_command(sales: Sales):
    _three_tasks(sales)
    ana = sales.task("ana")
    now = "2026-12-03T21:00:00+00:00"
    result = sales.mauto("tasks", "--now", now)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # a block a task, newest first: its id, due date and assignee; its title; its contact, origin and hand-off
    assert [line.split()[0] for line in lines[0:9:3]] == [f"#{sales.task(name)['id']}" for name in ("ben", "cy", "ana")]
    assert [line.split()[0] for line in lines[2:9:3]] == ["ben", "cy", "ana"]
    assert lines[6].split()[1:5] == ["due", "2026-12-03", "09:00", "overdue"] and "sam@shop.example" in lines[6]
    assert lines[7].strip() == "Call Ana about the demo"
    assert lines[8].strip().startswith("ana · demo-follow-up / call · made ") and lines[8].rstrip().endswith("done")
    assert lines[-1].strip() == "times in UTC"

    result = sales.mauto("tasks", "done", str(ana["id"]), "--by", "sam")
    assert (result.exit_code, result.stdout) == (0, f"task {ana['id']} done by sam\n")
    assert (sales.task("ana")["done_by"], sales.task("ana")["done_at"] is not None) == ("sam", True)
    result = sales.mauto("tasks", "done", str(ana["id"]), "--by", "kim")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"task {ana['id']} was already done (") and "by sam); nothing changed" \
        in result.stdout
    assert sales.task("ana")["done_by"] == "sam"
    result = sales.mauto("tasks", "done", "999")
    assert result.exit_code == 1
    assert result.stderr.strip() == "mauto.db: no task 999 (`mauto tasks` lists them)"

    result = sales.mauto("tasks", "--open", "--owner", "sam@shop.example", "--format", "json", "--now", now)
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert [task["contact"] for task in listing["tasks"]] == ["cy"] and listing["total"] == 1
    assert listing["tasks"][0]["overdue"] is True and listing["tasks"][0]["handoff"] == "done"
    result = sales.mauto("tasks", "--open", "--format", "json", "--now", now)
    assert [task["contact"] for task in json.loads(result.stdout)["tasks"]] == ["cy", "ben"]

    result = sales.mauto("tasks", "reopen", str(ana["id"]))
    assert (result.exit_code, result.stdout) == (0, f"task {ana['id']} is open again\n")
    result = sales.mauto("tasks", "--handoff", "sent")
    assert result.exit_code == 2 and "--handoff sent: one of pending, done, failed" in result.stderr


def test_a_failed_hand_off_shows_with_its_reason(sales: Sales):
    sales.crm.respond("/tasks/ana", 404, {"error": "no such pipeline"})
    sales.demo("ana")
    assert sales.run(T0 + timedelta(minutes=1)).exit_code == 1
    result = sales.mauto("tasks", "--handoff", "failed")
    assert result.exit_code == 0, result.output
    assert 'failed: email: done: 250 2.0.0 Ok: queued as Q0001; webhook: failed: HTTP 404: {"error": "no such ' \
           'pipeline"}' in " ".join(result.stdout.split())


# --- tasks: in mauto.yaml -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("handoff", "position", "message"), [
    ("tasks:\n  handoff:\n    webhook: {url: \"ftp://crm.example/tasks\"}\n", "11:20",
     "tasks.handoff.webhook.url: `url` must be http or https with its host written out before any {{ }} and no "
     "user:password@, e.g. https://crm.example/tasks (give credentials with headers_env)"),
    ("tasks:\n  handoff:\n    webhook: {url: \"https://{{ contact.crm }}/tasks\"}\n", "11:20",
     "tasks.handoff.webhook.url: `url` must be http or https with its host written out before any {{ }} and no "
     "user:password@, e.g. https://crm.example/tasks (give credentials with headers_env)"),
    ("tasks:\n  handoff:\n    webhook:\n      url: https://crm.example/tasks\n"
     "      headers: {Authorization: Bearer abc}\n", "13:17",
     "tasks.handoff.webhook.headers.Authorization: header `Authorization` carries a credential, which mauto.yaml "
     "never holds; put it in an environment variable and name it with `headers_env: {Authorization: VARIABLE}`"),
    ("tasks:\n  handoff:\n    webhook: {url: \"https://crm.example/tasks?api_key=abc\"}\n", "11:20",
     "tasks.handoff.webhook.url: the query parameter `api_key` carries a credential written into mauto.yaml; give "
     "it in a header with headers_env, e.g. headers_env: {Authorization: CRM_AUTH}"),
    ("tasks:\n  handoff:\n    webhook: {url: https://crm.example/tasks, timeout: 2h}\n", "11:56",
     "tasks.handoff.webhook.timeout: a timeout of `2h` is longer than a request may wait (at most 1h)"),
    ("tasks:\n  handoff:\n    emial: {}\n", "11:5", "tasks.handoff.emial: unknown key `emial`; did you mean `email`?"),
    ("tasks:\n  handoff:\n    email: {subject: \"{{ task.title \"}\n", "11:22",
     "tasks.handoff.email.subject: `subject` is not a template mauto can render: unexpected end of template, "
     "expected 'end of print statement'."),
    ("tasks:\n  handoff:\n    email: {from: not an address}\n", "11:19",
     "tasks.handoff.email.from: the sender 'not an address' is not an email address; write one mailbox: "
     "`Shop <shop@example.com>`"),
    ("tasks:\n  handoff: {retries: 2}\n", "10:12",
     "tasks.handoff: needs `email`, `webhook` or both: how a task reaches its owner"),
    ("tasks:\n  handoff:\n    webhook: {url: https://crm.example/tasks}\n    retries: 50\n", "12:14",
     "tasks.handoff.retries: `retries` must be a whole number from 0 to 20"),
])
def test_a_bad_tasks_section_is_an_error_at_its_place_in_mauto_yaml(tmp_path: Path, cli_environment: None,
                                                                   monkeypatch: pytest.MonkeyPatch, handoff: str,
                                                                   position: str, message: str):
    monkeypatch.chdir(tmp_path)
    with SmtpServer() as smtp, HttpServer() as crm:
        sales = Sales(tmp_path, smtp, crm, handoff=None)
        # mauto.yaml edited after the deploy: the daemon renders from the release (docs/store.md), so such a
        # file never reaches a tick; `plan` (and `deploy`) name the mistake at its place.
        with (tmp_path / "mauto.yaml").open("a", encoding="utf-8") as project_file:
            project_file.write(handoff)
        result = sales.mauto("plan")
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == f"mauto.yaml:{position}: {message}"
        sales.demo("ana")
        assert sales.run(T0 + timedelta(minutes=1)).exit_code == 0  # the tick runs the release, untouched
        assert sales.store.db.execute("SELECT count(*) FROM tasks").fetchone()[0] == 1
        sales.store.close()


def test_a_good_tasks_section_reads_with_its_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "mauto.yaml", """\
        sender: {email: "Shop <shop@example.com>"}
        tasks:
          handoff:
            email: {}
            webhook: {url: "https://crm.example/tasks/{{ task.id }}", headers_env: {Authorization: CRM_AUTH}}
        """)
    handoff = load_project(tmp_path / "mauto.yaml").task_handoff
    assert handoff is not None and handoff.retries == 3
    assert handoff.email is not None and handoff.email.sender == "Shop <shop@example.com>"
    assert handoff.email.to == "{{ task.assignee }}" and handoff.email.subject == "Task: {{ task.title }}"
    assert handoff.webhook is not None and handoff.webhook.timeout == "10s"
    assert handoff.webhook.headers_env == {"Authorization": "CRM_AUTH"}
    write(tmp_path / "mauto.yaml", "tasks:\n  handoff:\n    email: {}\n")
    with pytest.raises(MautoError) as caught:
        load_project(tmp_path / "mauto.yaml").task_handoff  # noqa: B018 - read for its check
    assert str(caught.value) == ("mauto.yaml:3:12: tasks.handoff.email: needs `from`, or `sender.email` in "
                                 "mauto.yaml: the address tasks are mailed from")
    write(tmp_path / "mauto.yaml", "timezone: UTC\n")
    assert load_project(tmp_path / "mauto.yaml").task_handoff is None
