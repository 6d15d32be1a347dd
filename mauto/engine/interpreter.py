"""The interpreter: runs an enrollment's steps until it has to wait, and says what happened and why."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError
from jinja2.exceptions import SecurityError

from mauto.engine.context import Scope, built_names
from mauto.engine.records import ContactState, Event, Record, SentMessage, jsonable
from mauto.engine.state import (
    ACTIVE,
    COMPLETED,
    CONVERTED,
    ENDED,
    EXITED,
    FAILED,
    PENDING,
    WAITING_EVENT,
    Detail,
    Effect,
    Enrollment,
    LogEntry,
    Outcome,
    fixed,
)
from mauto.engine.timing import (
    Cap,
    QuietHours,
    SendRules,
    cap_release,
    contact_zone,
    later_within,
    local_moment,
    next_allowed,
    next_time_of_day,
    parse_blackout,
    shifted,
    zone,
)
from mauto.workflow.durations import parse_duration, parse_time_of_day
from mauto.workflow.expressions import sandbox
from mauto.workflow.model import Step, Workflow
from mauto.workflow.until import parse_until

_STRINGS = sandbox()
MAX_STEPS_PER_RUN = 10_000  # a workflow has no loops; this only guards against a bug


@lru_cache(maxsize=4096)
def _compiled_string(text: str):
    """A template string of a workflow (`set`, `vars`, task and webhook fields), compiled once."""
    return _STRINGS.from_string(text)


class StepError(Exception):
    """A step that cannot run for this contact (an expression error, an empty coupon pool...)."""


def path_key(step: Step) -> str:
    return ".".join(str(part) for part in step.path)


class Program:
    """A workflow's steps with their addresses: where each step goes next, and where each block starts."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.steps: dict[str, Step] = {}
        self.next: dict[str, str | None] = {}
        self.first: dict[tuple[str, str], str | None] = {}
        self.by_id: dict[str, str] = {}
        self.labels = workflow.step_labels()  # every entry and effect names its step: worked out once
        self.start = path_key(workflow.steps[0]) if workflow.steps else None
        self._assign(workflow.steps, None)

    def _assign(self, steps: list[Step], after: str | None) -> None:
        for index, step in enumerate(steps):
            key = path_key(step)
            following = path_key(steps[index + 1]) if index + 1 < len(steps) else after
            self.steps[key] = step
            self.next[key] = following
            if step.id:
                self.by_id[step.id] = key
            for name, block in step.blocks.items():
                self.first[(key, name)] = path_key(block[0]) if block else following
                self._assign(block, following)

    def label(self, key: str) -> str:
        """The step as the timeline names it: its id, or its 1-based path (`3.then.1`)."""
        return self.labels[key]


class Settings:
    """What the engine needs of mauto.yaml: declared fields, the default zone, the project's limits."""

    def __init__(self, contact_fields: dict[str, Any], timezone: str, limits: dict[str, Any] | None = None) -> None:
        self.contact_fields = contact_fields
        self.timezone = timezone
        self.limits = limits or {}

    @classmethod
    def from_project(cls, project) -> Settings:
        project.blackout_dates  # noqa: B018 - a date that is not one is an error at its place in mauto.yaml, now
        return cls(project.contact_fields, project.timezone, project.data.get("limits") or {})


def _quiet(spec: Any) -> QuietHours | None:
    if not spec:
        return None
    return QuietHours(parse_time_of_day(spec["start"]), parse_time_of_day(spec["end"]))


def _caps(spec: Any) -> dict[str, Cap] | None:
    if not spec:
        return None
    return {channel: Cap(cap["max"], parse_duration(cap["per"])) for channel, cap in spec.items()}


def variant_for(workflow_id: str, split_id: str, contact_id: str, weights: dict[str, int]) -> str:
    """The variant a contact gets: a stable hash of (workflow, split, contact) into 0..99, then the weights."""
    digest = hashlib.sha256(f"{workflow_id}\x1f{split_id}\x1f{contact_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % 10_000 / 100
    total = 0
    for name, weight in weights.items():
        total += weight
        if bucket < total:
            return name
    return list(weights)[-1]


class Engine:
    """Runs workflows for contacts. Every method takes the time it runs at; none reads a clock."""

    def __init__(self, settings: Settings,
                 on_send: Callable[[Workflow, Enrollment, ContactState, Effect], str | None] | None = None) -> None:
        """`on_send(workflow, enrollment, contact, effect)`: how a driver makes a send real before the next step
        runs: it renders and records the message, and returns None, or why the message could not be made (the
        enrollment then fails at the send, with no `send` in the log and no frequency-cap slot used). Without
        it (the engine's own tests) a send is only an effect."""
        self.settings = settings
        self.on_send = on_send
        # The splits that picked their winner (mauto.engine.winners): (workflow, split id) -> variant. The driver
        # sets it: the daemon from the store, the simulation as its clock passes each midnight.
        self.winners: dict[tuple[str, str], str] = {}
        self._programs: dict[tuple[str, int], Program] = {}
        self._rules: dict[tuple[str, int], SendRules] = {}

    def program(self, workflow: Workflow) -> Program:
        key = (workflow.id, workflow.version)
        program = self._programs.get(key)
        if program is None:
            program = self._programs[key] = Program(workflow)
        return program

    def rules(self, workflow: Workflow) -> SendRules:
        key = (workflow.id, workflow.version)
        rules = self._rules.get(key)
        if rules is None:
            limits = self.settings.limits
            settings = workflow.settings
            quiet = settings.get("quiet_hours", limits.get("quiet_hours"))
            days = settings.get("send_days", limits.get("send_days"))
            caps = settings.get("frequency_cap", limits.get("frequency_cap"))
            # A workflow's own list replaces the project's (as its quiet hours do); `false` turns them off.
            blackout = settings.get("blackout_dates", limits.get("blackout_dates"))
            rules = self._rules[key] = SendRules(_quiet(quiet), tuple(days) if days else None, _caps(caps),
                                                 parse_blackout(blackout))
        return rules

    def zone_name(self, workflow: Workflow, contact: ContactState) -> str:
        setting = workflow.settings.get("timezone", "contact")
        if setting != "contact":
            return setting
        return self.contact_zone(contact)

    def contact_zone(self, contact: ContactState) -> str:
        """The contact's own zone when it is a real one, else the project's."""
        return contact_zone(contact.fields, self.settings.timezone)

    # --- entry ----------------------------------------------------------------

    def scope(self, workflow: Workflow, contact: ContactState, now: datetime, entered_at: datetime | None,
              vars: dict[str, Any], event: Event | dict | None) -> Scope:
        return self._scope(contact, now, entered_at, vars, event, self.zone_name(workflow, contact))

    def _scope(self, contact: ContactState, now: datetime, entered_at: datetime | None, vars: dict[str, Any],
               event: Event | dict | None, zone_name: str) -> Scope:
        declared = self.settings.contact_fields

        def event_record() -> Record | None:
            if event is None:
                return None
            return (Event.from_dict(event) if isinstance(event, dict) else event).record()

        return Scope(contact, lambda: contact.record(declared), now, entered_at, vars, event_record, zone_name)

    def admits(self, workflow: Workflow, contact: ContactState, at: datetime,
               event: Event | None) -> tuple[bool, str | None]:
        """Whether the trigger's `where` and the audience let the contact in.

        (False, None): the trigger's condition filtered the event out, nothing to explain;
        (False, reason): the contact was turned away by the audience.
        """
        where = workflow.trigger.where if event is not None else None
        audience = workflow.audience
        if where is None and audience is None:
            return True, ""
        # One set of names for both: evaluating reads them, never changes them.
        built = (built_names(where.source) if where is not None else frozenset()) | (
            built_names(audience.source) if audience is not None else frozenset())
        names = self.scope(workflow, contact, at, at, {}, event).names(built=built)
        if where is not None and not where.evaluate(**names):
            return False, None
        if audience is not None and not audience.evaluate(**names):
            return False, f"not in audience: {audience.source}"
        return True, ""

    def enroll(self, workflow: Workflow, contact: ContactState, at: datetime, event: Event | None,
               enrollment_id: str, why: str = "") -> Outcome:
        """Start a contact in a workflow at `at` and run it until it has to wait."""
        _aware(at, "at")
        program = self.program(workflow)
        enrollment = Enrollment(enrollment_id, workflow.id, workflow.version, contact.id, at,
                                position=program.start, trigger_event=event.to_dict() if event else None,
                                cause=why or None)
        outcome = Outcome(enrollment)
        detail = why or (f"{event.name}" if event else workflow.trigger.kind)
        self._log(outcome, at, program, None, "enter", detail)
        self._run(workflow, contact, at, outcome)
        return outcome

    # --- time and events --------------------------------------------------------

    def advance(self, workflow: Workflow, enrollment: Enrollment, contact: ContactState, now: datetime) -> Outcome:
        """Run what is due at `now`: a wait that ended, a postponed send, a wait_for that timed out."""
        _aware(now, "now")
        outcome = Outcome(enrollment)
        state = enrollment.state
        if state in ENDED or state == PENDING:
            return outcome
        wake = enrollment.wake_time
        if wake is not None and wake > now:
            return outcome
        at = wake or now
        enrollment.wake_at = None
        if enrollment.waiting and "wait" in enrollment.waiting:
            enrollment.waiting = None  # the wait is over
        if state == WAITING_EVENT:
            program = self.program(workflow)
            key = _step_key(enrollment)
            waited = enrollment.waiting or {}
            enrollment.state, enrollment.waiting = ACTIVE, None
            self._log(outcome, at, program, key, "timeout", Detail(_then_iso, f"no {waited.get('event')} by ", at))
            enrollment.position = program.first.get((key, "on_timeout"), program.next[key])
        self._run(workflow, contact, at, outcome)
        return outcome

    def deliver(self, workflow: Workflow, enrollment: Enrollment, contact: ContactState, event: Event) -> Outcome:
        """An event for the contact arrived: exit_on, goal, or the end of a wait_for."""
        _aware(event.at, "event.at")
        outcome = Outcome(enrollment)
        entered = enrollment.entered_at
        if event.at < entered:
            return outcome
        if enrollment.ended:
            self._late_goal(workflow, enrollment, contact, event, outcome)
            return outcome
        program = self.program(workflow)
        scope = self.scope(workflow, contact, event.at, entered, enrollment.vars, enrollment.trigger_event)
        record = event.record()
        here = _current_step(enrollment)
        try:
            # The goal first: an event that is both the goal and an exit_on event (the design's own example)
            # must count as a conversion, not as a plain exit.
            goal = workflow.goal
            if goal and not enrollment.converted and goal["event"] == event.name:
                within = goal.get("within")
                in_time = within is None or event.at <= shifted(entered, parse_duration(within))
                if in_time and ("where" not in goal or scope.evaluate(goal["where"], record)):
                    enrollment.converted, enrollment.converted_at = True, event.at
                    self._log(outcome, event.at, program, here, "goal", f"{event.name}")
                    if goal.get("exit", True):
                        self._end(outcome, event.at, program, here, CONVERTED, f"goal {event.name}")
                        return outcome
            for name, condition in workflow.exit_on:
                if name == event.name and (
                        condition is None or condition.evaluate(**scope.names_for(condition.source, record))):
                    self._end(outcome, event.at, program, here, EXITED, f"exit_on {name}")
                    return outcome
            if enrollment.state == WAITING_EVENT and enrollment.waiting:
                waiting = enrollment.waiting
                since = datetime.fromisoformat(waiting["since"])
                deadline = datetime.fromisoformat(waiting["deadline"])
                if waiting["event"] == event.name and since <= event.at <= deadline and (
                        not waiting.get("where") or scope.evaluate(waiting["where"], record)):
                    key = _step_key(enrollment)
                    enrollment.state, enrollment.waiting, enrollment.wake_at = ACTIVE, None, None
                    self._log(outcome, event.at, program, key, "event", f"{event.name} arrived")
                    enrollment.position = program.first.get((key, "on_event"), program.next[key])
                    self._run(workflow, contact, event.at, outcome)
        except (TemplateError, SecurityError, TypeError, ValueError, ArithmeticError, AttributeError) as error:
            self._end(outcome, event.at, program, here, FAILED, f"{type(error).__name__}: {error}")
        return outcome

    def _late_goal(self, workflow: Workflow, enrollment: Enrollment, contact: ContactState, event: Event,
                   outcome: Outcome) -> None:
        """The goal reached after the enrollment ended, within the goal's `within` (a purchase on day 6 of a
        7-day window, after the workflow finished on day 4): a conversion all the same, attributed to this
        enrollment and its variants. The enrollment stays ended as it was."""
        goal = workflow.goal
        until = enrollment.goal_until
        if (goal is None or enrollment.converted or until is None or goal["event"] != event.name
                or event.at > until):
            return
        program = self.program(workflow)
        if "where" in goal:
            scope = self.scope(workflow, contact, event.at, enrollment.entered_at, enrollment.vars,
                               enrollment.trigger_event)
            try:
                matched = scope.evaluate(goal["where"], event.record())
            except (TemplateError, SecurityError, TypeError, ValueError, ArithmeticError, AttributeError) as error:
                self._log(outcome, event.at, program, None, "skip",
                          f"goal {event.name} after the end: {type(error).__name__}: {error}")
                return
            if not matched:
                return
        enrollment.converted, enrollment.converted_at, enrollment.goal_until = True, event.at, None
        self._log(outcome, event.at, program, None, "goal", f"{event.name} after the end ({enrollment.reason})")

    def resume(self, workflow: Workflow, enrollment: Enrollment, contact: ContactState, value: Any,
               at: datetime) -> Outcome:
        """The driver's answer to a pending step: a coupon code (None: the pool is empty) or a webhook response."""
        _aware(at, "at")
        outcome = Outcome(enrollment)
        if enrollment.state != PENDING or not enrollment.pending:
            return outcome
        program = self.program(workflow)
        pending = enrollment.pending
        key = _step_key(enrollment)
        enrollment.pending = None
        enrollment.state = ACTIVE
        if pending["kind"] == "coupon":
            if value is None:
                self._end(outcome, at, program, key, FAILED, f"coupon pool {pending['pool']} is empty")
                return outcome
            enrollment.vars[pending["as"]] = value
            detail, extra = f"{pending['pool']} → vars.{pending['as']}", {"code": value}
            expires = pending.get("expires_at")
            if expires:  # `valid_for`: the code string stays as it was; its expiry beside it, ISO 8601 in UTC
                enrollment.vars[f"{pending['as']}_expires_at"] = expires
                detail, extra["expires_at"] = f"{detail}, valid until {expires}", expires
            self._log(outcome, at, program, key, "coupon", detail, extra=extra)
        else:
            response = jsonable(value)
            if pending.get("as"):
                enrollment.vars[pending["as"]] = response
            request = pending["request"]
            self._log(outcome, at, program, key, "webhook", f"{request['method']} {request['url']}",
                      extra={"response": response})
        enrollment.position = program.next[key]
        self._run(workflow, contact, at, outcome)
        return outcome

    def fail(self, workflow: Workflow, enrollment: Enrollment, at: datetime, reason: str,
             step: str | None = None) -> Outcome:
        """End an enrollment as failed for a reason the driver found (a message that does not render).

        `step` is the path of the step that failed (a send effect's `data["path"]`); default: where it stands.
        """
        outcome = Outcome(enrollment)
        if not enrollment.ended:
            self._end(outcome, at, self.program(workflow), step or enrollment.position, FAILED, reason)
        return outcome

    def exit(self, workflow: Workflow, enrollment: Enrollment, at: datetime, reason: str) -> Outcome:
        """End an enrollment as exited for a reason the driver found (its contact was erased)."""
        outcome = Outcome(enrollment)
        if not enrollment.ended:
            self._end(outcome, at, self.program(workflow), enrollment.position, EXITED, reason)
        return outcome

    # --- running ----------------------------------------------------------------

    def _run(self, workflow: Workflow, contact: ContactState, at: datetime, outcome: Outcome) -> None:
        enrollment = outcome.enrollment
        program = self.program(workflow)
        for _ in range(MAX_STEPS_PER_RUN):
            if enrollment.state != ACTIVE or enrollment.wake_at is not None:  # ended, waiting, pending or asleep
                return
            key = enrollment.position
            if key is None:
                self._end(outcome, at, program, None, COMPLETED, "reached the end")
                return
            step = program.steps[key]
            try:
                moved = self._step(workflow, program, step, key, contact, at, outcome)
            except (StepError, TemplateError, SecurityError, TypeError, ValueError, ArithmeticError,
                    AttributeError, KeyError) as error:
                reason = str(error) if isinstance(error, StepError) else f"{type(error).__name__}: {error}"
                self._end(outcome, at, program, key, FAILED, f"step {program.labels[key]}: {reason}")
                return
            if moved:
                enrollment.position = program.next[key]
                if (self.on_send is not None and step.kind in ("email", "sms")
                        and outcome.effects and outcome.effects[-1].kind == "send" and outcome.effects[-1].at == at
                        and outcome.log and outcome.log[-1].kind == "send"):
                    failure = self.on_send(workflow, enrollment, contact, outcome.effects[-1])
                    if failure is not None:  # never made: no `send` in the log, no cap slot used
                        outcome.effects.pop()
                        outcome.log.pop()
                        contact.messages.pop()
                        self._end(outcome, at, program, key, FAILED, failure)
                        return
        self._end(outcome, at, program, enrollment.position, FAILED, "too many steps in one run")

    def _step(self, workflow: Workflow, program: Program, step: Step, key: str, contact: ContactState,
              at: datetime, outcome: Outcome) -> bool:
        """Run one step at `at`. True: go on to the next step; False: the step moved or stopped the enrollment."""
        enrollment = outcome.enrollment
        # Parsed for every step, as when each step built its scope: an entry time that does not read fails
        # whichever step comes first. The scope itself is built only by the steps that evaluate something.
        entered = enrollment.entered_at
        enrollment.occurrences[key] = enrollment.occurrences.get(key, 0) + 1
        kind = step.kind
        if kind == "wait":
            return self._wait(workflow, program, step, key, contact, at, outcome)
        if kind in ("email", "sms"):
            return self._send(workflow, program, step, key, contact, at, outcome, entered)
        if kind == "wait_for":
            return self._wait_for(program, step, key, at, outcome)
        if kind == "if":
            return self._branch(workflow, program, step, key, contact, at, outcome, entered)
        if kind == "split":
            return self._split(workflow, program, step, key, contact, at, outcome)
        if kind in ("update", "score", "lists"):
            return self._change(workflow, program, step, key, contact, at, outcome, entered)
        return self._act(workflow, program, step, key, contact, at, outcome, entered)

    # --- steps in detail ----------------------------------------------------------

    def _wait(self, workflow: Workflow, program: Program, step: Step, key: str, contact: ContactState,
              at: datetime, outcome: Outcome) -> bool:
        enrollment = outcome.enrollment
        wake = self._wake(workflow, contact, at, step.value)
        if wake <= at:
            self._log(outcome, at, program, key, "wait", "already past: no wait")
            return True
        until = wake.isoformat()
        enrollment.wake_at = fixed(wake)
        enrollment.position = program.next[key]
        enrollment.waiting = {"wait": key}  # where the contact sleeps: an exit or goal meanwhile is logged here
        self._log(outcome, at, program, key, "wait", "until " + until, extra={"until": until})
        return False

    def _wait_for(self, program: Program, step: Step, key: str, at: datetime, outcome: Outcome) -> bool:
        enrollment = outcome.enrollment
        value = step.value
        deadline = later_within(at, parse_duration(value["timeout"]), "the wait_for")
        enrollment.state = WAITING_EVENT
        until = deadline.isoformat()
        enrollment.waiting = {"event": value["event"], "where": value.get("where"), "since": at.isoformat(),
                              "deadline": until}
        enrollment.wake_at = fixed(deadline)
        self._log(outcome, at, program, key, "wait", f"for {value['event']} until {until}",
                  extra={"until": until, "event": value["event"]})
        return False

    def _branch(self, workflow: Workflow, program: Program, step: Step, key: str, contact: ContactState,
                at: datetime, outcome: Outcome, entered: datetime) -> bool:
        enrollment = outcome.enrollment
        condition = step.expression
        if condition is None:  # the model gives every `if` step its expression
            raise StepError("an `if` step without a condition")
        scope = self._scope(contact, at, entered, enrollment.vars, enrollment.trigger_event,
                            self.zone_name(workflow, contact))
        result = bool(condition.evaluate(**scope.names_for(condition.source)))
        branch = "then" if result else "else"
        self._log(outcome, at, program, key, "branch",
                  f"{condition.source} → {str(result).lower()}{_evidence(step, scope)}",
                  extra={"branch": branch})
        enrollment.position = program.first.get((key, branch), program.next[key])
        return False

    def _split(self, workflow: Workflow, program: Program, step: Step, key: str, contact: ContactState,
               at: datetime, outcome: Outcome) -> bool:
        enrollment = outcome.enrollment
        value = step.value
        split_id = value.get("id") or step.id or key
        variants = {name: spec["weight"] for name, spec in value["variants"].items()}
        chosen = enrollment.variants.get(split_id)
        winner = self.winners.get((workflow.id, split_id)) if chosen is None else None
        if winner is not None and winner in variants:  # the split picked its winner: every new entry goes to it
            chosen = enrollment.variants[split_id] = winner
            self._log(outcome, at, program, key, "split", f"variant {chosen} (the winner)",
                      extra={"variant": chosen, "split": split_id, "winner": True})
        else:
            chosen = chosen or variant_for(workflow.id, split_id, contact.id, variants)
            enrollment.variants[split_id] = chosen
            self._log(outcome, at, program, key, "split", f"variant {chosen} ({variants[chosen]}%)",
                      extra={"variant": chosen, "split": split_id})
        enrollment.position = program.first.get((key, chosen), program.next[key])
        return False

    def _change(self, workflow: Workflow, program: Program, step: Step, key: str, contact: ContactState,
                at: datetime, outcome: Outcome, entered: datetime) -> bool:
        """update, score, lists: a change to the contact, which later steps see."""
        kind = step.kind
        value = step.value
        if kind == "update":
            enrollment = outcome.enrollment
            scope = self._scope(contact, at, entered, enrollment.vars, enrollment.trigger_event,
                                self.zone_name(workflow, contact))
            changes = self._update(contact, value, scope)
            self._effect(outcome, "update", at, program, key, changes)
            self._log(outcome, at, program, key, "update", _describe_update(changes))
            return True
        if kind == "score":
            before = contact.fields.get("score") or 0
            contact.fields["score"] = before + value
            self._effect(outcome, "score", at, program, key, {"points": value, "score": contact.fields["score"],
                                                              "previous": {"score": before}})
            self._log(outcome, at, program, key, "score", f"{value:+d} → {contact.fields['score']}")
            return True
        before = list(contact.fields.get("lists") or [])
        lists = list(before)
        for name in value.get("add", []):
            if name not in lists:
                lists.append(name)
        lists = [name for name in lists if name not in value.get("remove", [])]
        contact.fields["lists"] = lists
        self._effect(outcome, "lists", at, program, key, {"add": value.get("add", []),
                                                          "remove": value.get("remove", []),
                                                          "previous": {"lists": before}})
        parts = [f"+{n}" for n in value.get("add", [])] + [f"−{n}" for n in value.get("remove", [])]
        self._log(outcome, at, program, key, "lists", " ".join(parts))
        return True

    def _act(self, workflow: Workflow, program: Program, step: Step, key: str, contact: ContactState,
             at: datetime, outcome: Outcome, entered: datetime) -> bool:
        """task, webhook, assign_coupon, start, exit: work for the driver, or the end of the enrollment."""
        enrollment = outcome.enrollment
        kind = step.kind
        value = step.value
        if kind in ("task", "webhook"):
            scope = self._scope(contact, at, entered, enrollment.vars, enrollment.trigger_event,
                                self.zone_name(workflow, contact))
            if kind == "task":
                task = {field: self._render(value[field], scope) for field in ("title", "assignee", "notes")
                        if field in value}
                if "due" in value:
                    task["due"] = later_within(at, parse_duration(value["due"]), "the task's due date").isoformat()
                self._effect(outcome, "task", at, program, key, task)
                self._log(outcome, at, program, key, "task", task["title"], extra={"task": task})
                return True
            request = {"url": self._render(value["url"], scope), "method": value.get("method", "POST"),
                       "headers": {name: self._render(text, scope) for name, text in value.get("headers", {}).items()},
                       "body": self._render_tree(value.get("body"), scope),
                       "timeout": value.get("timeout", "10s"), "retries": value.get("retries", 3)}
            if value.get("headers_env"):
                # The variables' NAMES: the request is stored (calls, the enrollment's pending step) and logged;
                # the channel reads the values when it sends (mauto/channels/webhook.py).
                request["headers_env"] = dict(value["headers_env"])
            enrollment.state = PENDING
            enrollment.pending = {"kind": "webhook", "as": value.get("as"), "request": request, "at": at.isoformat()}
            self._effect(outcome, "webhook", at, program, key, {"request": request, "as": value.get("as")})
            return False  # logged when the answer comes (resume), with the answer, as a coupon is
        if kind == "assign_coupon":
            pending = {"kind": "coupon", "pool": value["pool"], "as": value["as"], "at": at.isoformat()}
            asked = {"pool": value["pool"], "as": value["as"]}
            if "valid_for" in value:
                # The expiry is the engine's to compute (as a wait's end), from the moment the code is taken: the
                # driver stores it with the code, and templates read it as vars.<as>_expires_at.
                expires = later_within(at, parse_duration(value["valid_for"]), "the coupon's validity")
                pending["expires_at"] = asked["expires_at"] = expires.astimezone(UTC).isoformat()
            enrollment.state = PENDING
            enrollment.pending = pending
            self._effect(outcome, "coupon", at, program, key, asked)
            return False
        if kind == "start":
            self._effect(outcome, "start", at, program, key, {"workflow": value})
            self._log(outcome, at, program, key, "start", value)
            return True
        if kind == "exit":
            self._end(outcome, at, program, key, EXITED, value)
            return False
        raise StepError(f"unknown step kind {kind}")  # the schema makes this unreachable

    def _wake(self, workflow: Workflow, contact: ContactState, at: datetime, value: Any) -> datetime:
        if isinstance(value, str):
            return later_within(at, parse_duration(value), "the wait")
        tz = zone(self.zone_name(workflow, contact))
        until = parse_until(value["until"])
        days = tuple(value["days"]) if value.get("days") else None
        if isinstance(until, time):
            return next_time_of_day(at, until, tz, days)
        if isinstance(until, datetime):
            return until if until.tzinfo else local_moment(until.date(), until.time(), tz)
        return local_moment(until, time(0, 0), tz)

    def _send(self, workflow: Workflow, program: Program, step: Step, key: str, contact: ContactState,
              at: datetime, outcome: Outcome, entered: datetime) -> bool:
        enrollment = outcome.enrollment
        channel = step.kind
        template = step.value
        marketing = workflow.marketing
        postponed = enrollment.waiting.get("postponed") if enrollment.waiting else None
        refusal = self._refusal(channel, contact, marketing)
        if refusal:
            enrollment.waiting = None
            self._log(outcome, at, program, key, "suppressed", refusal, channel=channel, template=template)
            return True
        zone_name = self.zone_name(workflow, contact)
        if marketing:
            moment, reasons = self._allowed(workflow, contact, channel, at, zone_name)
            if moment > at:
                until = moment.isoformat()
                enrollment.waiting = {"postponed": postponed or at.isoformat()}
                enrollment.wake_at = fixed(moment)
                self._log(outcome, at, program, key, "postponed", f"{'; '.join(reasons)} → {until}",
                          channel=channel, template=template, extra={"until": until})
                return False
        enrollment.waiting = None
        raw_vars = step.raw.get("vars")
        if raw_vars:
            scope = self._scope(contact, at, entered, enrollment.vars, enrollment.trigger_event, zone_name)
            step_vars = {name: self._render_tree(item, scope) for name, item in raw_vars.items()}
            message_vars = {**enrollment.vars, **step_vars}
        else:
            message_vars = dict(enrollment.vars)
        contact.messages.append(SentMessage(at, channel, marketing, workflow.id))
        # The idempotency key counts the step's *sends*, not its runs: a send postponed by quiet hours runs its
        # step twice but is still the step's first message (`…:steps.3:1`).
        sends = f"send:{key}"
        occurrence = enrollment.occurrences[sends] = enrollment.occurrences.get(sends, 0) + 1
        send = {"channel": channel, "template": template, "marketing": marketing, "path": key,
                "vars": message_vars, "trigger_event": enrollment.trigger_event,
                "zone": zone_name, "occurrence": occurrence}
        tracking = workflow.settings.get("tracking")
        if tracking is not None:  # the workflow's own opens/clicks tracking, over the project's
            send["tracking"] = tracking
        outcome.effects.append(Effect("send", at, enrollment.id, enrollment.workflow, enrollment.contact,
                                      program.labels[key], f"{enrollment.id}:{key}:{occurrence}", send))
        self._log(outcome, at, program, key, "send", f"postponed from {postponed}" if postponed else "",
                  channel=channel, template=template)
        return True

    def _refusal(self, channel: str, contact: ContactState, marketing: bool) -> str | None:
        fields = contact.fields
        return refusal(channel, fields.get("email" if channel == "email" else "phone"),
                       bool(fields.get(f"{channel}_consent")), channel in contact.suppressed, marketing)

    def _allowed(self, workflow: Workflow, contact: ContactState, channel: str, at: datetime,
                 zone_name: str | None = None) -> tuple[datetime, list[str]]:
        """The first moment at or after `at` when this marketing message may go out, and why it moved."""
        rules = self.rules(workflow)
        tz = zone(zone_name if zone_name is not None else self.zone_name(workflow, contact))
        cap = rules.caps.get(channel) if rules.caps else None
        if cap is None:
            moment, reasons = next_allowed(at, tz, rules)
            return moment, list(dict.fromkeys(reasons))
        reasons = []
        moment = at
        sent = [m.at for m in contact.messages if m.channel == channel and m.marketing]
        for _ in range(64):
            moment, why = next_allowed(moment, tz, rules)
            reasons.extend(why)
            release = cap_release(moment, sent, cap)
            if release is None:
                break
            reasons.append(f"frequency cap {cap.max} {channel} per {_compact(cap.per)}")
            moment = release
        return moment, list(dict.fromkeys(reasons))

    def _update(self, contact: ContactState, value: dict, scope: Scope) -> dict:
        changes: dict[str, Any] = {"set": {}, "unset": [], "add_tags": [], "remove_tags": [], "previous": {}}
        for field, item in value.get("set", {}).items():
            rendered = self._render_tree(item, scope)
            changes["previous"][field] = contact.fields.get(field)
            contact.fields[field] = rendered
            changes["set"][field] = rendered
        for field in value.get("unset", []):
            changes["previous"][field] = contact.fields.pop(field, None)
            changes["unset"].append(field)
        tags = list(contact.fields.get("tags") or [])
        if value.get("add_tags") or value.get("remove_tags"):
            changes["previous"]["tags"] = list(tags)
        for tag in value.get("add_tags", []):
            if tag not in tags:
                tags.append(tag)
                changes["add_tags"].append(tag)
        for tag in value.get("remove_tags", []):
            if tag in tags:
                tags.remove(tag)
                changes["remove_tags"].append(tag)
        if value.get("add_tags") or value.get("remove_tags"):
            contact.fields["tags"] = tags
        return {name: part for name, part in changes.items() if part}

    def _render(self, text: Any, scope: Scope) -> Any:
        if not isinstance(text, str) or "{" not in text:
            return text
        return _compiled_string(text).render(scope.names())

    def _render_tree(self, value: Any, scope: Scope) -> Any:
        if isinstance(value, str):
            return self._render(value, scope)
        if isinstance(value, dict):
            return {key: self._render_tree(item, scope) for key, item in value.items()}
        if isinstance(value, list):
            return [self._render_tree(item, scope) for item in value]
        return value

    # --- bookkeeping --------------------------------------------------------------

    def _end(self, outcome: Outcome, at: datetime, program: Program, key: str | None, state: str,
             reason: str) -> None:
        enrollment = outcome.enrollment
        enrollment.state = state
        enrollment.ended_at = at
        enrollment.reason = reason
        enrollment.wake_at = None
        enrollment.waiting = None
        enrollment.pending = None
        goal = program.workflow.goal
        if goal and not enrollment.converted and goal.get("within"):
            until = shifted(enrollment.entered_at, parse_duration(goal["within"]))
            if until > at:  # the goal may still be reached, and counted (_late_goal)
                enrollment.goal_until = fixed(until)
        self._log(outcome, at, program, key, _END_KINDS[state], reason)

    def _effect(self, outcome: Outcome, kind: str, at: datetime, program: Program, key: str,
                data: dict[str, Any]) -> None:
        enrollment = outcome.enrollment
        occurrence = enrollment.occurrences.get(key, 1)
        outcome.effects.append(Effect(kind, at, enrollment.id, enrollment.workflow, enrollment.contact,
                                      program.labels[key], f"{enrollment.id}:{key}:{occurrence}", data))

    def _log(self, outcome: Outcome, at: datetime, program: Program, key: str | None, kind: str,
             detail: str | Detail = "", channel: str | None = None, template: str | None = None,
             extra: dict | None = None) -> None:
        enrollment = outcome.enrollment
        label = program.labels[key] if key else _UNPLACED_LABELS.get(kind, "")
        entry = LogEntry(at, enrollment.contact, enrollment.workflow, enrollment.version, label, kind, detail, channel,
                         template, extra)
        entry.enrollment = enrollment.id
        outcome.log.append(entry)


_END_KINDS = {COMPLETED: "complete", EXITED: "exit", CONVERTED: "exit", FAILED: "failed"}  # the entry an end logs
# the step entries at no step: the entry, the end, a goal reached after the end (or a skip of one)
_UNPLACED_LABELS = {"enter": "trigger", "complete": "end", "goal": "end", "skip": "end"}


def _then_iso(text: str, moment: datetime) -> str:
    """A detail that ends in a moment (a `Detail`'s format: the ISO string only when the entry is read)."""
    return text + moment.isoformat()


def refusal(channel: str, address: str | None, consent: bool, suppressed: bool, marketing: bool = True) -> str | None:
    """Why a message cannot go (None: it can): the one consent rule, for the engine when a step runs and for
    the sender again at the hand-off. Every message needs an address; a marketing one also needs consent and
    its address off the suppression list, which transactional messages ignore."""
    if marketing and suppressed:
        return f"{channel} address on the suppression list"
    if not address:
        return "no email address" if channel == "email" else "no phone number"
    if marketing and not consent:
        return "no email consent" if channel == "email" else "no SMS consent"
    return None


def _aware(moment: datetime, name: str) -> None:
    """Refuse a naive time: read in the host's zone, it would make the engine's answers depend on the machine."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"`{name}` must be a timezone-aware datetime, not {moment.isoformat()}")


def _current_step(enrollment: Enrollment) -> str | None:
    """The step the contact is at: the wait it sleeps in (its position is already the step after), else its position."""
    waiting = enrollment.waiting or {}
    return waiting.get("wait") or enrollment.position


def _compact(delta: timedelta) -> str:
    from mauto.workflow.durations import format_duration

    return format_duration(delta)


def _step_key(enrollment: Enrollment) -> str:
    """The step a waiting or pending enrollment is at (only a run past the end has none: that one is over)."""
    if enrollment.position is None:
        raise ValueError(f"enrollment {enrollment.id} waits at no step")
    return enrollment.position


def _evidence(step: Step, scope: Scope) -> str:
    """The contact fields an `if` read, with their values: the "why" of a branch."""
    shown: list[tuple[str, Any]] = []
    if step.expression is None:
        return ""
    try:
        uses = step.expression.uses
    except ValueError:
        return ""
    for use in uses:
        if use.kind == "contact" and use.name not in [name for name, _ in shown]:
            shown.append((use.name, getattr(scope.contact_record, use.name, None)))
    if not shown:
        return ""
    return " (" + ", ".join(f"contact.{name} = {value!r}" for name, value in shown[:3]) + ")"


def _describe_update(changes: dict) -> str:
    parts = [f"{field} = {value!r}" for field, value in changes.get("set", {}).items()]
    parts += [f"unset {field}" for field in changes.get("unset", [])]
    parts += [f"+tag {tag}" for tag in changes.get("add_tags", [])]
    parts += [f"−tag {tag}" for tag in changes.get("remove_tags", [])]
    return ", ".join(parts) or "no change"
