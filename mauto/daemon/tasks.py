"""Sales tasks: what `mauto tasks` lists, marks done and reopens, and their hand-off to their owners by a tick.

A `task` step makes a row in the store's `tasks` table (docs/tasks.md). With `tasks.handoff` in mauto.yaml the
row is made `pending` hand-off, and each tick, once the batch that made it is committed, hands it over
(`hand_over_tasks`, outside any transaction: a slow SMTP server or CRM never holds the store):

- `email`: a plain-text email through the project's email channel (`channels.email`), to the address the `to`
  template gives (the assignee by default). It is mail for a person of the team, not marketing: no
  unsubscribe link, no consent check, not in the outbox (`messages`) nor in `mauto stats`; its record is the
  task's row. Its Message-ID is made from the task's key, the same at every try.
- `webhook`: a JSON POST of the task and its contact to a CRM, with the task's key as `Idempotency-Key` and as
  `idempotency_key` in the body; secrets only through `headers_env`.

At least once: the outcome is recorded after the hand-off, so a crash in between hands the task over again at
the next tick, with the same key (which the CRM drops, and the same Message-ID). A temporary failure (SMTP
4xx, a lost connection, HTTP 408/429/5xx, a timeout) is tried again with the outbox's backoff (and no earlier
than a `Retry-After` asks), up to `retries` times; a refusal for good (SMTP 5xx, HTTP 4xx, an address that
is not one, a template that does not render, an environment variable not set) fails the hand-off at once.
`handoff_answer` keeps one line per part, `email: done: 250 …` / `webhook: retry: HTTP 503 …`: a part done is
not repeated when the other is retried. One task's failure is that task's alone: the tick goes on.
"""
from __future__ import annotations

import contextlib
import getpass
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rich.console import Group
from rich.text import Text

from mauto.channels import base as channels
from mauto.config import Project, TaskHandoff
from mauto.daemon.report import TickReport
from mauto.driver.sqlite import Log
from mauto.engine.records import Record, jsonable
from mauto.errors import ExitCode, MautoError, UsageError, printable
from mauto.messages import RenderedMessage
from mauto.store import runtime
from mauto.store import tasks as stored
from mauto.store.runtime import failure_reason as reason
from mauto.store.sqlite import Store, stamp, store_failure
from mauto.templates import TemplateSet

HANDOFF_BATCH = 200  # tasks read from the store at a time
PARTS = ("email", "webhook")
DONE, RETRY, FAILED = "done", "retry", "failed"
MAX_BY = 200  # characters of `--by`


class TaskNotFound(MautoError):
    """`mauto tasks done 42` with no task 42."""

    exit_code = ExitCode.FINDINGS


# --- `mauto tasks` ---------------------------------------------------------------------------------------------


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:  # a row written by hand: shown as it is, never overdue
        return None
    return moment if moment.tzinfo is not None else None


def _row(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A task as `mauto tasks --format json` gives it: the same keys, in the same order, for every task."""
    due = _moment(row["due_at"])
    return {"id": row["id"], "key": row["key"], "contact": row["contact"], "workflow": row["workflow"],
            "step": row["step"], "title": row["title"], "assignee": row["assignee"], "notes": row["notes"],
            "due_at": row["due_at"], "overdue": bool(due is not None and row["done_at"] is None and due < now),
            "created_at": row["created_at"], "done_at": row["done_at"], "done_by": row["done_by"],
            "handoff": row["handoff"], "handoff_attempts": row["handoff_attempts"],
            "handoff_next_try_at": row["handoff_next_try_at"], "handoff_answer": row["handoff_answer"]}


def list_tasks(store: Store, now: datetime, *, open_only: bool = False, owner: str | None = None,
               workflow: str | None = None, handoff: str | None = None, limit: int = 100) -> dict[str, Any]:
    """`mauto tasks`: `{"tasks": [...], "total": N}`, N the tasks matching before `limit`. Open ones (`open_only`)
    by due date, soonest first (no due date last); all of them newest first. `owner` is the assignee (case
    ignored), `handoff` the hand-off's state (pending, done, failed)."""
    if handoff is not None and handoff not in stored.HANDOFF_STATES:
        raise UsageError(f"--handoff {handoff}: one of {', '.join(stored.HANDOFF_STATES)}")
    if limit < 1:
        raise UsageError(f"--limit {limit}: at least 1")
    with store.guard():
        rows = stored.tasks(store.db, open_only=open_only, owner=owner, workflow=workflow, handoff=handoff,
                            limit=limit)
        total = stored.count(store.db, open_only=open_only, owner=owner, workflow=workflow, handoff=handoff)
    return {"tasks": [_row(row, now) for row in rows], "total": total}


def _known(store: Store, task_id: int) -> dict[str, Any]:
    found = stored.task(store.db, task_id)
    if found is None:
        raise TaskNotFound(f"no task {task_id} (`mauto tasks` lists them)", store.shown)
    return found


def done_task(store: Store, task_id: int, now: datetime, by: str | None = None) -> dict[str, Any]:
    """`mauto tasks done ID`: the task marked done now, by `by` (default: the login name of whoever runs it).
    The task, with `changed` False when it was done already (then nothing changed: its time and person stay).
    TaskNotFound (exit 1) for an unknown id; UsageError for a `by` that is not one short line."""
    if by is None:
        with contextlib.suppress(Exception):  # no login name (a container without a passwd entry): nobody
            by = getpass.getuser()
    elif not by.strip() or len(by) > MAX_BY or printable(by) != by:
        raise UsageError(f"--by {printable(by)[:MAX_BY]!r}: a name of 1 to {MAX_BY} characters on one line")
    with store.transaction() as db:
        changed = stored.mark_done(db, task_id, stamp(now), by.strip() if by else None)
        row = _known(store, task_id)
    return {**_row(row, now), "changed": changed}


def reopen_task(store: Store, task_id: int, now: datetime) -> dict[str, Any]:
    """`mauto tasks reopen ID`: a done task open again; `changed` False when it was open already."""
    with store.transaction() as db:
        changed = stored.reopen(db, task_id)
        row = _known(store, task_id)
    return {**_row(row, now), "changed": changed}


def task_summary(store: Store, now: datetime) -> dict[str, int]:
    """For `mauto status`: `{"open", "overdue", "handoff_pending", "handoff_failed"}`."""
    with store.guard():
        return stored.summary(store.db, stamp(now))


def _shown_time(text: str | None, zone: str) -> str:
    """A stored time as people read it, in the project's zone, to the minute; as stored when it does not read."""
    moment = _moment(text)
    if moment is None:
        return printable(text) if text else "-"
    from zoneinfo import ZoneInfo

    with contextlib.suppress(Exception):
        moment = moment.astimezone(ZoneInfo(zone))
    return moment.strftime("%Y-%m-%d %H:%M")


def _handoff_cell(task: dict[str, Any], zone: str) -> Text:
    """The hand-off's state; for one not done, why (each part's answer), and when it is tried again."""
    state = task["handoff"]
    if state is None:
        return Text("-")
    style = {"done": "green", "failed": "red", "pending": "yellow"}.get(state, "")
    cell = Text(printable(state), style=style)
    if state != "done" and task["handoff_answer"]:
        cell.append(": " + printable("; ".join(task["handoff_answer"].splitlines())))
    if state == "pending" and task["handoff_next_try_at"]:
        cell.append(f" (next try {_shown_time(task['handoff_next_try_at'], zone)})")
    return cell


def tasks_table(listing: dict[str, Any], zone: str) -> Group:
    """`mauto tasks` in text: a block a task, the id, due date and assignee first and whole (a table cut them in
    a narrow terminal or a pipe), the title, then where it came from and its hand-off. The text is contact data:
    never read as rich markup."""
    blocks: list[Text] = []
    for task in listing["tasks"]:
        head = Text(f"#{task['id']}", style="bold")
        head.append("  due " + (_shown_time(task["due_at"], zone) if task["due_at"] else "-"))
        if task["overdue"]:
            head.append(" overdue", style="bold red")
        head.append(f"  {printable(task['assignee'] or 'no assignee')}")
        if task["done_at"] is not None:
            head.append("  done " + _shown_time(task["done_at"], zone) + (
                f" by {printable(task['done_by'])}" if task["done_by"] else ""), style="green")
        block = Text("\n").join([
            head, Text("    " + printable(task["title"])),
            Text(f"    {printable(task['contact'])} · {printable(task['workflow'])} / {printable(task['step'])} · "
                 f"made {_shown_time(task['created_at'], zone)} · hand-off ", style="dim") + _handoff_cell(task, zone)])
        blocks.append(block)
    blocks.append(Text(f"times in {zone}", style="dim"))
    return Group(*blocks)


def done_line(result: dict[str, Any], zone: str) -> str:
    """What `mauto tasks done ID` says."""
    by = f" by {printable(result['done_by'])}" if result["done_by"] else ""
    if result["changed"]:
        return f"task {result['id']} done{by}"
    return f"task {result['id']} was already done ({_shown_time(result['done_at'], zone)}{by}); nothing changed"


def reopen_line(result: dict[str, Any]) -> str:
    """What `mauto tasks reopen ID` says."""
    if result["changed"]:
        return f"task {result['id']} is open again"
    return f"task {result['id']} is open already; nothing changed"


# --- the hand-off ----------------------------------------------------------------------------------------------


@dataclass
class _Part:
    """One part of one attempt: what became of the email, or of the webhook call."""

    state: str  # DONE, RETRY or FAILED
    detail: str
    retry_after: float | None = None


def _finished(answer: str | None) -> dict[str, _Part]:
    """The parts an earlier attempt finished (done, or failed for good): they are not tried again."""
    finished = {}
    for line in (answer or "").splitlines():
        part, _, rest = line.partition(": ")
        state, _, detail = rest.partition(": ")
        if part in PARTS and state in (DONE, FAILED):
            finished[part] = _Part(state, detail)
    return finished


class _Gone(Exception):
    """The task cannot be handed over at all (its contact was erased)."""


class _Handoff:
    """One tick's hand-off of tasks: the email transport opened once, the templates compiled once."""

    def __init__(self, project: Project, handoff: TaskHandoff, store: Store, now: datetime,
                 transports: Mapping[str, channels.Transport], log: Log, report: TickReport,
                 environ: Mapping[str, str] | None) -> None:
        self.project, self.handoff, self.store, self.now = project, handoff, store, now
        self.transports, self.log, self.report, self.environ = transports, log, report, environ
        self.templates = TemplateSet(project.templates_dir, project.display_root)
        self.transport: channels.Transport | None = None
        self.unusable: str | None = None  # why the email channel cannot be used this tick
        self.failed = 0

    def close(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(Exception):  # closing a connection that failed already: nothing to tell
                self.transport.__exit__(None, None, None)

    def parts(self) -> list[str]:
        return [part for part in PARTS if getattr(self.handoff, part) is not None]

    def hand_over(self, row: dict[str, Any]) -> None:
        """Hand one task over, each part not yet finished, and record what became of it; whatever the task's
        data does, never raise for it (the store's own failures aside)."""
        finished = _finished(row["handoff_answer"])
        outcome: dict[str, _Part] = {}
        try:
            names, payload = self._context(row)
            for part in self.parts():
                outcome[part] = finished.get(part) or self._part(part, row, names, payload)
        except Exception as error:  # noqa: BLE001 - this task's surprise fails its hand-off, not the tick
            if store_failure(error):
                raise
            why = str(error) if isinstance(error, _Gone) else f"could not be handed over: {reason(error)}"
            outcome = {part: finished.get(part) or _Part(FAILED, why) for part in self.parts()}
        try:
            self._record(row, outcome)
        except Exception as error:  # noqa: BLE001 - a row that does not read back: left pending, said, and the tick goes on
            if store_failure(error):
                raise
            self.report.errors += 1
            self.report.notes.append(f"task {row['id']}: its hand-off could not be recorded: {reason(error)}")

    def _part(self, part: str, row: dict[str, Any], names: dict[str, Any], payload: dict[str, Any]) -> _Part:
        try:
            return self._email(row, names) if part == "email" else self._webhook(row, names, payload)
        except Exception as error:  # noqa: BLE001 - a template that does not render, a surprise: this part fails
            if store_failure(error):
                raise
            return _Part(FAILED, reason(error))

    def _record(self, row: dict[str, Any], outcome: dict[str, _Part]) -> None:
        attempts = row["handoff_attempts"] + 1
        retrying = [part for part in outcome.values() if part.state == RETRY]
        next_try_at = None
        if retrying and attempts <= self.handoff.retries:
            state = "pending"
            delay = max([channels.backoff(attempts)] + [part.retry_after or 0.0 for part in retrying])
            next_try_at = stamp(self.now + timedelta(seconds=delay))
        elif retrying or any(part.state == FAILED for part in outcome.values()):
            state = "failed"
            for part in retrying:
                part.state, part.detail = FAILED, f"gave up after {attempts} attempts: {part.detail}"
        else:
            state = "done"
        answer = "\n".join(f"{name}: {part.state}: {channels.one_line(part.detail, 1000)}"
                           for name, part in outcome.items())
        with self.store.transaction(durable=False) as db:  # lost in a power cut: handed over again (at least once)
            stored.record_handoff(db, row["id"], state, answer, next_try_at)
        where = {"task": row["id"], "key": row["key"], "contact": row["contact"]}
        # Neither the answer nor the task's title: both may hold the contact's data (a CRM echoing the body).
        if state == "done":
            self.log("task", {**where, "handed_over": ",".join(outcome)})
        elif state == "pending":
            self.log("retry", {**where, "attempt": attempts, "next_try_at": next_try_at,
                               "via": ",".join(name for name, part in outcome.items() if part.state == RETRY)})
        else:
            self.failed += 1
            self.report.errors += 1
            self.report.problem("task", f"the hand-off of task {row['id']} failed (see `mauto tasks --handoff "
                                        "failed`)", task=row["id"], contact=row["contact"], workflow=row["workflow"])
            self.log("error", {**where, "why": "its hand-off failed for good (see `mauto tasks --handoff failed`)"})

    # --- what a task is, to its templates and its CRM ------------------------------------------------------

    def _context(self, row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The names templates see (`task`, `contact`, `now`), and the JSON body a CRM gets."""
        project = self.project
        with self.store.guard():
            contact = runtime.load_contact(self.store.db, row["contact"], project.contact_fields, project.timezone,
                                           self.store.phone_region)
        if contact is None:
            raise _Gone("not handed over: the contact was erased")
        due_at, created_at = _moment(row["due_at"]), _moment(row["created_at"])
        if row["due_at"] and due_at is None:
            raise ValueError(f"the task's due_at {row['due_at']!r} is not a time")
        task = {"id": row["id"], "key": row["key"], "title": row["title"], "assignee": row["assignee"] or "",
                "notes": row["notes"] or "", "due_at": due_at, "created_at": created_at, "workflow": row["workflow"],
                "step": row["step"], "contact": row["contact"]}
        record = contact.record(project.contact_fields)
        # `_zone`: the zone the `date` filter shows times in; the team's, the project's (not the contact's)
        names = {"task": Record(task), "contact": record, "now": self.now, "_zone": project.timezone}
        payload = {"idempotency_key": row["key"],
                   "task": {**jsonable(task), "assignee": row["assignee"], "notes": row["notes"]},
                   "contact": jsonable({name: record[name] for name in project.contact_fields if name in record})}
        return names, payload

    def _render(self, source: str, context: dict[str, Any], where: str) -> str:
        return self.templates.render_string(source, context, f"mauto.yaml tasks.handoff.{where}")

    # --- email ---------------------------------------------------------------------------------------------------

    def _email_transport(self) -> channels.Transport | None:
        if self.transport is None and self.unusable is None:
            transport = self.transports.get("email")
            if transport is None:
                self.unusable = "no transport for email: configure channels.email in mauto.yaml"
                return None
            try:
                self.transport = transport.__enter__()
            except Exception as error:  # noqa: BLE001 - a channel that cannot open: its tasks wait, and retry
                if store_failure(error):
                    raise
                self.unusable = reason(error)
        return self.transport

    def _email(self, row: dict[str, Any], context: dict[str, Any]) -> _Part:
        from mauto.channels.smtp import check_address

        settings = self.handoff.email
        assert settings is not None  # only asked for when configured
        to = self._render(settings.to, context, "email.to").strip()
        if not to:
            return _Part(FAILED, "not sent: `to` gave no address (the task has no assignee?)")
        try:
            check_address(to, "recipient")
        except ValueError:
            return _Part(FAILED, f"not sent: `to` gave {printable(to)[:200]!r}, which is not one email address")
        subject = self._render(settings.subject, context, "email.subject").strip()
        body = self._render(settings.body, context, "email.body")
        message = RenderedMessage(channel="email", contact=row["contact"], to=to, at=self.now,
                                  workflow=row["workflow"], step=row["step"], template="task", key=row["key"],
                                  marketing=False, text=body, subject=subject, sender=settings.sender,
                                  headers={"X-Mauto-Task": row["key"]})
        transport = self._email_transport()
        if transport is None:
            return _Part(RETRY, f"the email channel cannot be used: {self.unusable}")
        outgoing = channels.Outgoing(row["id"], row["key"], "email", to, settings.sender, message.message_id,
                                     message.to_bytes(), row["contact"], row["workflow"], row["step"])
        # At least once: no hand-off mark to make (an `unknown` answer is tried again, with the same Message-ID).
        delivery = transport.send(outgoing, lambda: None)
        if delivery.status == channels.SENT:
            return _Part(DONE, delivery.detail)
        if delivery.status == channels.PARKED:
            return _Part(FAILED, delivery.detail)
        return _Part(RETRY, delivery.detail, delivery.retry_after)

    # --- webhook -------------------------------------------------------------------------------------------------

    def _webhook(self, row: dict[str, Any], context: dict[str, Any], payload: dict[str, Any]) -> _Part:
        from mauto.channels.webhook import FAILED as CALL_FAILED
        from mauto.channels.webhook import OK, call_webhook

        settings = self.handoff.webhook
        assert settings is not None  # only asked for when configured
        request = {"url": self._render(settings.url, context, "webhook.url"), "method": "POST",
                   "headers": {name: self._render(value, context, f"webhook.headers.{name}")
                               for name, value in settings.headers.items()},
                   "headers_env": dict(settings.headers_env), "body": payload,
                   "timeout": settings.timeout}
        result = call_webhook(request, row["key"], environ=self.environ)
        if result.status == OK:
            return _Part(DONE, result.detail)
        if result.status == CALL_FAILED:
            return _Part(FAILED, result.detail)
        return _Part(RETRY, result.detail, result.retry_after)


def hand_over_tasks(project: Project, store: Store, now: datetime, transports: Mapping[str, channels.Transport],
                    log: Log, report: TickReport, stopping: Callable[[], bool] = lambda: False,
                    environ: Mapping[str, str] | None = None) -> int:
    """Hand over every task whose hand-off is due (see the module's docstring), outside any transaction; how
    many were tried. Nothing to do when mauto.yaml has no `tasks.handoff`. `environ` holds the variables
    `headers_env` names (default: the process's environment)."""
    handoff = project.task_handoff
    if handoff is None:
        return 0
    phase = _Handoff(project, handoff, store, now, transports, log, report,
                     os.environ if environ is None else environ)
    tried, after = 0, 0
    try:
        while not stopping():
            with store.guard():
                rows = stored.due_handoffs(store.db, stamp(now), after, HANDOFF_BATCH)
            if not rows:
                break
            for row in rows:
                if stopping():
                    break
                after = row["id"]
                phase.hand_over(row)
                tried += 1
    finally:
        phase.close()
    if phase.failed:
        report.notes.append(f"{phase.failed} task hand-off{'s' if phase.failed != 1 else ''} failed for good: "
                            "`mauto tasks --handoff failed` lists them")
    return tried
