"""The expectation kinds of a scenario, one class each, registered in `KINDS` in the order they are documented.

A kind has a `name` (its key in the file, `gets`), the modifiers it `takes`
beside `contact` (as the schema lists them), a docstring that is its
documentation, `read` (what it names is checked against the project before the
run; each mistake a problem at its line and column), `check` (the expectation
against the contact's timeline after the run: passed, or what happened instead
with the timeline as a diff) and `words` (the expectation in words). The
docstring starts "Passes when ...", then gives a passing and a failing example,
each a fragment of a bundled scenario file (named in its first line) that
tests/test_scenario_kinds.py runs; docs/testing.md's table of kinds is
generated from them (tools/gen_scenario_docs.py).

Adding a kind: a class here, its entry in `KINDS`, and its key in the scenario
schema (tools/gen_schema.py); the meta-test says what is missing.
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any, ClassVar, Protocol

from mauto.config import Project
from mauto.datafiles import coerce
from mauto.engine.records import BUILTIN_DEFAULTS, ContactState
from mauto.engine.state import LogEntry
from mauto.report import _local_times
from mauto.scenarios.catalog import Catalog
from mauto.scenarios.diff import Expected, diff_lines, stamp
from mauto.scenarios.model import CHANNELS, Expectation, ExpectationResult
from mauto.workflow.durations import format_duration
from mauto.workflow.loader import JsonPath
from mauto.workflow.schema import suggest


class Reader(Protocol):
    """What a kind reads its expectation with (the scenario loader): the project, what the expectation may
    name, and where a problem goes (at a JSON path of the scenario file)."""

    project: Project
    catalog: Catalog

    def problem(self, path: JsonPath, message: str, key: bool = False) -> None: ...

    def known_workflow(self, workflow_id: str, path: JsonPath) -> bool: ...

    def known_template(self, template: str, channel: str | None, path: JsonPath) -> bool: ...

    def known_step(self, step: str, workflow: str | None, path: JsonPath) -> None: ...


_NOT_RUN = ("goal",)  # entries at a step that did not run there (the engine logs a goal at the waiting position)


class Timeline:
    """One contact's timeline after the run, seen from one expectation: what a kind's `check` looks at."""

    def __init__(self, expectation: Expectation, entries: list[LogEntry], contact: ContactState, tz: tzinfo,
                 catalog: Catalog, start: datetime) -> None:
        self.expectation = expectation
        self.entries = entries
        self.contact = contact
        self.tz = tz
        self.catalog = catalog
        self.start = start
        self.options = expectation.options

    def of(self, workflow: str, *kinds: str) -> list[LogEntry]:
        """The lines of `workflow` of these kinds (enter, exit, complete, goal, failed...)."""
        return [entry for entry in self.entries if entry.workflow == workflow and entry.kind in kinds]

    def timed(self, entry: LogEntry) -> bool:
        """Whether `entry` happened when the expectation says (any time without `at`; within `tolerance`)."""
        at = self.expectation.at
        return at is None or abs(entry.at - at) <= self.expectation.tolerance

    def result(self, passed: bool, message: str = "", marked: Iterable[LogEntry] = (),
               expected: Expected | None = None, workflows: Iterable[str] | None = None,
               extra: list[str] | None = None) -> ExpectationResult:
        """The result; a failure comes with the diff of the workflows concerned, `marked` as what happened."""
        if passed:
            return ExpectationResult(self.expectation, True)
        marked = list(marked)
        scope = list(workflows) if workflows is not None else []
        scope += [entry.workflow for entry in marked if entry.workflow not in scope]
        if expected is not None and expected.workflow and expected.workflow not in scope:
            scope.append(expected.workflow)
        context = [entry for entry in self.entries if not scope or entry.workflow in scope]
        diff = diff_lines(context, marked, expected, self.tz, self.expectation.contact, scope)
        return ExpectationResult(self.expectation, False, message, diff + (extra or []))

    def stamp(self, moment: datetime) -> str:
        return stamp(moment, self.tz)

    def times(self, entries: list[LogEntry]) -> str:
        shown = [self.stamp(entry.at) for entry in entries[:3]]
        more = f" and {len(entries) - 3} more" if len(entries) > 3 else ""
        return ", ".join(shown) + more

    def whereabouts(self, workflow: str) -> str:
        """What became of the contact in `workflow`: never entered, left, finished, or still inside."""
        contact = self.expectation.contact
        entries = [entry for entry in self.entries if entry.workflow == workflow]
        if not any(entry.kind == "enter" for entry in entries):
            refused = [entry for entry in entries if entry.kind in ("skip", "failed") and entry.step == "trigger"]
            why = _local_times(refused[0].detail, self.tz) if refused else self.untriggered(workflow)
            return f"{contact} never entered {workflow}" + (f": {why}" if why else "")
        last = entries[-1]
        if last.kind == "exit":
            return f"{contact} left {workflow} at {self.stamp(last.at)}: {last.detail}"
        if last.kind == "complete":
            return f"{contact} finished {workflow} at {self.stamp(last.at)}"
        if last.kind == "failed":
            return f"{workflow} failed at {self.stamp(last.at)}: {_local_times(last.detail, self.tz)}"
        return f"{contact} was still in {workflow} when the run ended"

    def untriggered(self, workflow: str) -> str:
        """Why an event trigger did not fire, when the timeline cannot say: the engine logs nothing for an
        event its trigger's `where` filters out, nor for an event that never came."""
        trigger = self.catalog.workflows[workflow].trigger
        if trigger.kind != "event":
            return ""
        # History (events before the start) triggers nothing.
        events = [event for event in self.contact.events if event.name == trigger.value and event.at >= self.start]
        if not events:
            return f"no {trigger.value} event for {self.expectation.contact} in the run"
        if trigger.where is None:
            return ""
        if len(events) == 1:
            return (f"its {trigger.value} event at {self.stamp(events[0].at)} did not match the trigger's "
                    f"`where: {trigger.where.source}`")
        return (f"{len(events)} {trigger.value} events from {self.stamp(events[0].at)}, none matching the "
                f"trigger's `where: {trigger.where.source}`")

    def whereabouts_all(self, workflows: list[str]) -> str:
        return "; ".join(self.whereabouts(workflow) for workflow in workflows)


# --- the kinds ------------------------------------------------------------------------------------------

_SCENARIO_LINE = re.compile(r"# (scenarios/\S+\.ya?ml)\b.*\n")


@dataclass(frozen=True)
class Example:
    """A documented example of a kind: a fragment of the bundled scenario file `scenario` (its `expect:`,
    and any top-level key it replaces), as written under a "Passes:" or "Fails:" heading."""

    scenario: str
    fragment: str

    @property
    def items(self) -> list[tuple[str, str]]:
        """The fragment's expectations, each with the comment under it (a failure's message, on one line or
        more) or ""."""
        found: list[tuple[str, str]] = []
        for line in self.fragment.splitlines():
            item = re.fullmatch(r"\s*- (\{.*\})\s*", line)
            comment = re.fullmatch(r"\s+# (.*)", line)
            if item:
                found.append((item.group(1), ""))
            elif comment and found:
                found[-1] = (found[-1][0], f"{found[-1][1]} {comment.group(1)}".strip())
        return found


class Kind:
    """An expectation kind (see the module's docstring); the subclasses are the kinds."""

    name: ClassVar[str] = ""
    takes: ClassVar[tuple[str, ...]] = ()  # the modifiers beside `contact`, in the schema's order

    def read(self, reader: Reader, expectation: Expectation, where: JsonPath) -> None:
        """Check what the expectation names against the project, before the run (`where`: its JSON path)."""

    def check(self, timeline: Timeline) -> ExpectationResult:
        raise NotImplementedError

    def words(self, expectation: Expectation) -> str:
        """The expectation in words, before its modifiers: "c01 gets cart/reminder-1"."""
        raise NotImplementedError

    @classmethod
    def example(cls, heading: str) -> Example | None:
        """The docstring's example under `heading` ("Passes" or "Fails"), if it has one."""
        doc = inspect.cleandoc(cls.__doc__ or "")
        match = re.search(rf"^{heading}:\n\n```yaml\n(.*?)^```", doc, re.MULTILINE | re.DOTALL)
        scenario = _SCENARIO_LINE.match(match.group(1)) if match else None
        return Example(scenario.group(1), match.group(1)) if match and scenario else None


# --- messages: gets, gets_no, messages

class _MessageKind(Kind):
    """The kinds about messages sent: which lines of the timeline they look at."""

    def sent(self, expectation: Expectation) -> tuple[str | None, str | None]:
        """(template, channel) the expectation is about; None: any."""
        value = expectation.value
        template = None if value in CHANNELS else value
        return template, expectation.options.get("channel") or (value if value in CHANNELS else None)

    def read(self, reader: Reader, expectation: Expectation, where: JsonPath) -> None:
        value, channel = expectation.value, expectation.options.get("channel")
        if value not in CHANNELS:
            reader.known_template(value, channel, where + (self.name,))
        elif channel is not None and channel != value:
            reader.problem(where + ("channel",), f"`channel: {channel}` contradicts `{self.name}: {value}`")

    def matcher(self, timeline: Timeline, exact: bool = True) -> Callable[[LogEntry], bool]:
        """Which timeline lines are the messages this expectation is about (any kind: send, postponed...);
        not `exact`: the same template on any channel, from any workflow and step (the near misses)."""
        template, channel = self.sent(timeline.expectation)
        if not exact and template is not None:
            channel = None
        options = timeline.options
        workflow, step = (options.get("workflow"), options.get("step")) if exact else (None, None)

        def matches(entry: LogEntry) -> bool:
            return (entry.channel is not None and (channel is None or entry.channel == channel)
                    and (template is None or entry.template == template)
                    and (workflow is None or entry.workflow == workflow) and (step is None or entry.step == step))

        return matches

    def sends(self, timeline: Timeline) -> list[LogEntry]:
        matches = self.matcher(timeline)
        return [entry for entry in timeline.entries if entry.kind == "send" and matches(entry)]

    def scope(self, timeline: Timeline) -> list[str]:
        workflow = timeline.options.get("workflow")
        return [workflow] if workflow else []


class Gets(_MessageKind):
    """Passes when the contact is sent a message from that template (on either channel, unless `channel:
    email` or `channel: sms` says which). `gets: sms` or `gets: email` means any message on that channel. A
    message postponed by quiet hours, send days or a frequency cap counts when it is actually sent.

    Passes:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ana, gets: cart/reminder-1, at: "+1h"}
      - {contact: ben, gets: cart/last-call, channel: sms, at: "+4d7h"}
    ```

    Fails:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ben, gets: cart/last-call, channel: email}
        # sent as sms cart/last-call by abandoned-cart step last-call-sms instead, at Sat 28 Nov 10:00 EST
    ```
    """

    name = "gets"
    takes = ("at", "tolerance", "channel", "workflow", "step")

    def check(self, timeline: Timeline) -> ExpectationResult:
        matches, anywhere = self.matcher(timeline), self.matcher(timeline, exact=False)
        related = [entry for entry in timeline.entries if anywhere(entry)]
        sent = [entry for entry in related if entry.kind == "send" and matches(entry)]
        if any(timeline.timed(entry) for entry in sent):
            return timeline.result(True)
        workflows = self.sending_workflows(timeline)
        expected = Expected(timeline.expectation.at, workflows[0] if len(workflows) == 1 else "",
                            timeline.options.get("step", ""), self.what(timeline))
        if sent:
            message = f"sent at {timeline.times(sent)} instead"
        else:
            message = self.why_not(timeline, related, matches, workflows)
        return timeline.result(False, message, related, expected, workflows)

    def why_not(self, timeline: Timeline, related: list[LogEntry], matches: Callable[[LogEntry], bool],
                workflows: list[str]) -> str:
        """Why nothing matching was sent: sent otherwise, suppressed, postponed past the end, or never."""
        elsewhere = [entry for entry in related if entry.kind == "send" and not matches(entry)]
        if elsewhere:
            first = elsewhere[0]
            return (f"sent as {first.channel} {first.template} by {first.workflow} step {first.step} instead, "
                    f"at {timeline.stamp(first.at)}")
        suppressed = next((entry for entry in related if entry.kind == "suppressed"), None)
        if suppressed is not None:
            return f"not sent: {suppressed.detail}"
        if any(entry.kind == "postponed" for entry in related):
            return "postponed, and still not sent when the run ended"
        if workflows:
            return f"never sent; {timeline.whereabouts_all(workflows)}"
        return "never sent; no workflow sends it"

    def sending_workflows(self, timeline: Timeline) -> list[str]:
        """The workflows that could send what the expectation is about."""
        if timeline.options.get("workflow"):
            return [timeline.options["workflow"]]
        return timeline.catalog.workflows_sending(*self.sent(timeline.expectation))

    def what(self, timeline: Timeline) -> str:
        """The expected line's "what" column: "email cart/reminder-1", or the channel alone."""
        value = timeline.expectation.value
        if value in CHANNELS:
            return value
        channel = timeline.options.get("channel")
        channels = [channel] if channel else timeline.catalog.channels_of(value)
        return f"{'/'.join(channels)} {value}"

    def words(self, expectation: Expectation) -> str:
        return f"{expectation.contact} gets {_message_words(expectation, 'an')}"


class GetsNo(_MessageKind):
    """Passes when no message from that template (or on that channel) is sent in the whole run.

    Passes:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ben, gets_no: cart/last-call, channel: email}
      - {contact: cara, gets_no: sms}
    ```

    Fails:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ana, gets_no: cart/reminder-1}
        # sent at Tue 24 Nov 10:00 CET
    ```
    """

    name = "gets_no"
    takes = ("channel", "workflow", "step")

    def check(self, timeline: Timeline) -> ExpectationResult:
        sent = self.sends(timeline)
        if not sent:
            return timeline.result(True)
        return timeline.result(False, f"sent at {timeline.times(sent)}", sent, workflows=self.scope(timeline))

    def words(self, expectation: Expectation) -> str:
        return f"{expectation.contact} gets {_message_words(expectation, 'no')}"


def _message_words(expectation: Expectation, article: str) -> str:
    """What a `gets` or `gets_no` is about: "an sms", "no email", "sms cart/last-call", "cart/reminder-1"."""
    value, channel = expectation.value, expectation.options.get("channel")
    if value in CHANNELS:
        return f"{article} {value}"
    thing = f"{channel} {value}" if channel else value
    return thing if article == "an" else f"no {thing}"


class Messages(_MessageKind):
    """Passes when exactly that many messages are sent to the contact; the modifiers narrow what is counted.

    Passes:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ben, messages: 3}
      - {contact: ben, messages: 1, channel: sms}
    ```

    Fails:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ana, messages: 2}
        # got 1
    ```
    """

    name = "messages"
    takes = ("channel", "workflow", "template")

    def sent(self, expectation: Expectation) -> tuple[str | None, str | None]:
        return expectation.options.get("template"), expectation.options.get("channel")

    def read(self, reader: Reader, expectation: Expectation, where: JsonPath) -> None:
        options = expectation.options
        if "template" in options:
            reader.known_template(options["template"], options.get("channel"), where + ("template",))

    def check(self, timeline: Timeline) -> ExpectationResult:
        sent = self.sends(timeline)
        if len(sent) == timeline.expectation.value:
            return timeline.result(True)
        return timeline.result(False, f"got {len(sent)}", sent, workflows=self.scope(timeline))

    def words(self, expectation: Expectation) -> str:
        count, options = expectation.value, expectation.options
        noun = "message" if count == 1 else "messages"
        channel = f"{options['channel']} " if options.get("channel") else ""
        text = f"{expectation.contact} gets {count} {channel}{noun}"
        return text + (f" from template {options['template']}" if options.get("template") else "")


# --- a workflow: enters, does_not_enter, exits, completes, converts, does_not_convert, fails

class _WorkflowKind(Kind):
    """The kinds whose value is a workflow id."""

    verb: ClassVar[str] = ""  # "enters": "c01 enters cart"

    def read(self, reader: Reader, expectation: Expectation, where: JsonPath) -> None:
        reader.known_workflow(expectation.value, where + (self.name,))

    def words(self, expectation: Expectation) -> str:
        reason = expectation.options.get("reason")
        return f"{expectation.contact} {self.verb} {expectation.value}" + (f" ({reason})" if reason else "")


class Enters(_WorkflowKind):
    """Passes when the contact enters the workflow.

    Passes:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ana, enters: abandoned-cart, at: "+0h"}
    ```

    Fails:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: dan, enters: abandoned-cart}
        # dan never entered abandoned-cart: its cart_abandoned event at Tue 24 Nov 09:00 CET did not match
        # the trigger's `where: event.cart_value >= 20`
    ```
    """

    name = "enters"
    takes = ("at", "tolerance")
    verb = "enters"

    def check(self, timeline: Timeline) -> ExpectationResult:
        workflow = timeline.expectation.value
        entered = timeline.of(workflow, "enter")
        if any(timeline.timed(entry) for entry in entered):
            return timeline.result(True)
        expected = Expected(timeline.expectation.at, workflow, "trigger", "enter")
        if entered:
            return timeline.result(False, f"entered at {timeline.times(entered)} instead", entered, expected,
                                   [workflow])
        refused = [entry for entry in timeline.entries if entry.workflow == workflow and entry.step == "trigger"]
        return timeline.result(False, timeline.whereabouts(workflow), refused, expected, [workflow])


class DoesNotEnter(_WorkflowKind):
    """Passes when the contact never enters the workflow (the trigger's `where`, the `audience` or `reentry`
    kept them out, or the trigger never fired).

    Passes:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: dan, does_not_enter: abandoned-cart}
    ```

    Fails:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ana, does_not_enter: abandoned-cart}
        # entered at Tue 24 Nov 09:00 CET: cart_abandoned
    ```
    """

    name = "does_not_enter"
    verb = "does not enter"

    def check(self, timeline: Timeline) -> ExpectationResult:
        workflow = timeline.expectation.value
        entered = timeline.of(workflow, "enter")
        if not entered:
            return timeline.result(True)
        return timeline.result(False, f"entered at {timeline.times(entered)}: {entered[0].detail}", entered,
                               workflows=[workflow])


class Exits(_WorkflowKind):
    """Passes when the contact leaves the workflow before its end: an `exit_on` event, an `exit` step, or the
    goal. `reason` matches part of the reason the timeline gives (`exit_on order_placed`, `goal
    order_placed`, the text of an `exit` step).

    Passes:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ana, exits: abandoned-cart, at: "+20h", reason: goal order_placed}
    ```

    Fails:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ben, exits: abandoned-cart}
        # ben finished abandoned-cart at Sat 28 Nov 10:00 EST
    ```
    """

    name = "exits"
    takes = ("at", "tolerance", "reason")
    verb = "exits"

    def check(self, timeline: Timeline) -> ExpectationResult:
        workflow = timeline.expectation.value
        reason = timeline.options.get("reason")
        exits = timeline.of(workflow, "exit")
        fitting = [entry for entry in exits if reason is None or reason in entry.detail]
        if any(timeline.timed(entry) for entry in fitting):
            return timeline.result(True)
        expected = Expected(timeline.expectation.at, workflow, "", "exit", reason or "")
        if fitting:
            return timeline.result(False, f"exited at {timeline.times(fitting)} instead", fitting, expected,
                                   [workflow])
        if exits:
            return timeline.result(False, f"exited for another reason: {exits[0].detail}", exits, expected,
                                   [workflow])
        ends = timeline.of(workflow, "complete", "failed")
        return timeline.result(False, timeline.whereabouts(workflow), ends, expected, [workflow])


class Completes(_WorkflowKind):
    """Passes when the contact reaches the end of the workflow's steps.

    Passes:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ben, completes: abandoned-cart}
    ```

    Fails:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ana, completes: abandoned-cart}
        # ana left abandoned-cart at Wed 25 Nov 05:00 CET: goal order_placed
    ```
    """

    name = "completes"
    takes = ("at", "tolerance")
    verb = "completes"

    def check(self, timeline: Timeline) -> ExpectationResult:
        workflow = timeline.expectation.value
        done = timeline.of(workflow, "complete")
        if any(timeline.timed(entry) for entry in done):
            return timeline.result(True)
        expected = Expected(timeline.expectation.at, workflow, "end", "complete")
        if done:
            return timeline.result(False, f"completed at {timeline.times(done)} instead", done, expected,
                                   [workflow])
        ends = timeline.of(workflow, "exit", "failed")
        return timeline.result(False, timeline.whereabouts(workflow), ends, expected, [workflow])


class _GoalKind(_WorkflowKind):
    """The kinds about a workflow's goal: a workflow without one is refused."""

    def read(self, reader: Reader, expectation: Expectation, where: JsonPath) -> None:
        workflow = expectation.value
        if reader.known_workflow(workflow, where + (self.name,)) and not reader.catalog.workflows[workflow].goal:
            reader.problem(where + (self.name,), f"workflow `{workflow}` has no `goal`: nothing to convert")


class Converts(_GoalKind):
    """Passes when the workflow's `goal` event arrives for the contact in time.

    Passes:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ana, converts: abandoned-cart, at: "+20h"}
    ```

    Fails:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ben, converts: abandoned-cart}
        # never converted; ben finished abandoned-cart at Sat 28 Nov 10:00 EST
    ```
    """

    name = "converts"
    takes = ("at", "tolerance")
    verb = "converts in"

    def check(self, timeline: Timeline) -> ExpectationResult:
        workflow = timeline.expectation.value
        goals = timeline.of(workflow, "goal")
        if any(timeline.timed(entry) for entry in goals):
            return timeline.result(True)
        goal = timeline.catalog.workflows[workflow].goal  # never None: `read` refuses a workflow without one
        expected = Expected(timeline.expectation.at, workflow, "", "goal", goal["event"] if goal else "")
        if goals:
            return timeline.result(False, f"converted at {timeline.times(goals)} instead", goals, expected,
                                   [workflow])
        ends = timeline.of(workflow, "exit", "complete", "failed")
        return timeline.result(False, f"never converted; {timeline.whereabouts(workflow)}", ends, expected,
                               [workflow])


class DoesNotConvert(_GoalKind):
    """Passes when the workflow's goal is never reached for the contact.

    Passes:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ben, does_not_convert: abandoned-cart}
    ```

    Fails:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ana, does_not_convert: abandoned-cart}
        # converted at Wed 25 Nov 05:00 CET
    ```
    """

    name = "does_not_convert"
    verb = "does not convert in"

    def check(self, timeline: Timeline) -> ExpectationResult:
        workflow = timeline.expectation.value
        goals = timeline.of(workflow, "goal")
        if not goals:
            return timeline.result(True)
        return timeline.result(False, f"converted at {timeline.times(goals)}", goals, workflows=[workflow])


class Fails(_WorkflowKind):
    """Passes when a step of the workflow fails for the contact; `reason` matches part of the failure's
    reason. Any other failure fails the scenario: say `fails` when a failure is what you are testing.

    Passes:

    ```yaml
    # scenarios/abandoned-cart.yaml
    coupons: {CART10: [CART10-TEST01, CART10-TEST02]}
    expect:
      - {contact: ben, fails: abandoned-cart, reason: pool CART10 is empty}
    ```

    Fails:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ben, fails: abandoned-cart}
        # nothing failed; ben finished abandoned-cart at Sat 28 Nov 10:00 EST
    ```
    """

    name = "fails"
    takes = ("reason",)
    verb = "fails in"

    def check(self, timeline: Timeline) -> ExpectationResult:
        workflow = timeline.expectation.value
        reason = timeline.options.get("reason")
        failed = timeline.of(workflow, "failed")
        if any(reason is None or reason in entry.detail for entry in failed):
            return timeline.result(True)
        expected = Expected(None, workflow, "", "failed", reason or "")
        if failed:
            return timeline.result(False, f"failed for another reason: {failed[0].detail}", failed, expected,
                                   [workflow])
        return timeline.result(False, f"nothing failed; {timeline.whereabouts(workflow)}", [], expected, [workflow])


# --- steps: variant, reaches, does_not_reach

class Variant(Kind):
    """Passes when the contact reaches that split and gets that variant. `split` is the split's `id` (else
    its step's `id`); add `workflow` when two workflows use the same split id.

    Passes:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: zoe, variant: {split: reminder-1-subject, is: question}}
    ```

    Fails:

    ```yaml
    # scenarios/abandoned-cart.yaml
    expect:
      - {contact: ana, variant: {split: reminder-1-subject, is: question}}
        # got variant urgency
    ```
    """

    name = "variant"

    def read(self, reader: Reader, expectation: Expectation, where: JsonPath) -> None:
        spec = expectation.value
        split, variant = spec["split"], spec["is"]
        workflow = spec.get("workflow")
        splits = reader.catalog.splits
        if workflow is not None and not reader.known_workflow(workflow, where + ("variant", "workflow")):
            return
        owners = [name for name, ids in splits.items() if split in ids and (workflow is None or name == workflow)]
        if not owners:
            every = sorted({split_id for name, ids in splits.items() for split_id in ids
                            if workflow is None or name == workflow})
            inside = f" in workflow `{workflow}`" if workflow else ""
            reader.problem(where + ("variant", "split"), f"no split `{split}`{inside}{suggest(split, every)}")
            return
        if len(owners) > 1:
            reader.problem(where + ("variant", "split"), f"split `{split}` is in {', '.join(owners)}; "
                                                         "add `workflow` to say which")
            return
        spec["workflow"] = owners[0]
        variants = splits[owners[0]][split]
        if variant not in variants:
            reader.problem(where + ("variant", "is"), f"split `{split}` has no variant `{variant}`; its variants: "
                                                      f"{', '.join(variants)}")

    def check(self, timeline: Timeline) -> ExpectationResult:
        spec = timeline.expectation.value
        workflow, split, variant = spec["workflow"], spec["split"], spec["is"]
        splits = [entry for entry in timeline.of(workflow, "split") if entry.extra.get("split") == split]
        if any(entry.extra.get("variant") == variant for entry in splits):
            return timeline.result(True)
        expected = Expected(None, workflow, splits[0].step if splits else "", "split", f"variant {variant}")
        if splits:
            return timeline.result(False, f"got variant {splits[0].extra.get('variant')}", splits, expected,
                                   [workflow])
        return timeline.result(False, f"never reached the split; {timeline.whereabouts(workflow)}", [], expected,
                               [workflow])

    def words(self, expectation: Expectation) -> str:
        spec = expectation.value
        return f"{expectation.contact} is in variant {spec['is']} of {spec['split']} ({spec['workflow']})"


class _StepKind(Kind):
    """The kinds whose value is a step: its id, or its number as the timeline shows it (`6.on_timeout.1`)."""

    def read(self, reader: Reader, expectation: Expectation, where: JsonPath) -> None:
        reader.known_step(expectation.value, expectation.options.get("workflow"), where + (self.name,))

    def reached(self, timeline: Timeline) -> list[LogEntry]:
        """The lines where the step ran for the contact."""
        step, workflow = timeline.expectation.value, timeline.options.get("workflow")
        return [entry for entry in timeline.entries
                if entry.step == step and (workflow is None or entry.workflow == workflow)
                and entry.kind not in _NOT_RUN
                and not (entry.kind == "exit" and entry.detail.startswith(("exit_on ", "goal ")))]

    def workflows(self, timeline: Timeline) -> list[str]:
        """The workflows that have the step."""
        workflow = timeline.options.get("workflow")
        if workflow:
            return [workflow]
        step = timeline.expectation.value
        return [name for name, labels in timeline.catalog.steps.items() if step in labels]


class Reaches(_StepKind):
    """Passes when the step runs for the contact: a step id, or a step's number as the timeline shows it
    (`6.on_timeout.1`). Good for steps that send nothing: a task, a webhook, an update.

    Passes:

    ```yaml
    # scenarios/lead-nurturing.yaml
    expect:
      - {contact: emma, reaches: sales-task}
    ```

    Fails:

    ```yaml
    # scenarios/lead-nurturing.yaml
    expect:
      - {contact: felipe, reaches: sales-task}
        # never reached; felipe finished lead-nurturing at Fri 04 Dec 09:30 CET
    ```
    """

    name = "reaches"
    takes = ("at", "tolerance", "workflow")

    def check(self, timeline: Timeline) -> ExpectationResult:
        step = timeline.expectation.value
        reached = self.reached(timeline)
        if any(timeline.timed(entry) for entry in reached):
            return timeline.result(True)
        workflows = self.workflows(timeline)
        expected = Expected(timeline.expectation.at, workflows[0] if len(workflows) == 1 else "", step, "reached")
        if reached:
            return timeline.result(False, f"reached at {timeline.times(reached)} instead", reached, expected,
                                   workflows)
        return timeline.result(False, f"never reached; {timeline.whereabouts_all(workflows)}", [], expected,
                               workflows)

    def words(self, expectation: Expectation) -> str:
        return f"{expectation.contact} reaches {expectation.value}"


class DoesNotReach(_StepKind):
    """Passes when the step never runs for the contact.

    Passes:

    ```yaml
    # scenarios/lead-nurturing.yaml
    expect:
      - {contact: felipe, does_not_reach: sales-task}
    ```

    Fails:

    ```yaml
    # scenarios/lead-nurturing.yaml
    expect:
      - {contact: emma, does_not_reach: sales-task}
        # reached at Wed 02 Dec 08:30 CET
    ```
    """

    name = "does_not_reach"
    takes = ("workflow",)

    def check(self, timeline: Timeline) -> ExpectationResult:
        reached = self.reached(timeline)
        if not reached:
            return timeline.result(True)
        return timeline.result(False, f"reached at {timeline.times(reached)}", reached,
                               workflows=self.workflows(timeline))

    def words(self, expectation: Expectation) -> str:
        return f"{expectation.contact} does not reach {expectation.value}"


# --- the contact: fields

class Fields(Kind):
    """Passes when the contact's fields have these values at the end of the run. Lists (`tags`, `lists`)
    compare without regard to order; unset built-ins count as their defaults (`score` 0, `tags` and `lists`
    empty, consents false).

    Passes:

    ```yaml
    # scenarios/lead-nurturing.yaml
    expect:
      - {contact: emma, fields: {score: 50, lifecycle: sql, tags: [hot-lead]}}
    ```

    Fails:

    ```yaml
    # scenarios/lead-nurturing.yaml
    expect:
      - {contact: felipe, fields: {score: 50, lifecycle: sql}}
        # score is 35; lifecycle is 'lead'
    ```
    """

    name = "fields"

    def read(self, reader: Reader, expectation: Expectation, where: JsonPath) -> None:
        fields = reader.project.contact_fields
        expected = {}
        for name, value in expectation.value.items():
            if name not in fields:
                hint = suggest(name, list(fields)) or "; declare it under `contact_fields` in mauto.yaml"
                reader.problem(where + ("fields", name), f"unknown contact field `{name}`{hint}", key=True)
                continue
            try:
                expected[name] = coerce(value, fields[name], reader.project.timezone)
            except ValueError as error:
                reader.problem(where + ("fields", name), f"field `{name}`: {error}")
        expectation.value = expected

    def check(self, timeline: Timeline) -> ExpectationResult:
        actual_fields = timeline.contact.fields
        wrong = {name: actual_fields.get(name, BUILTIN_DEFAULTS.get(name))
                 for name, expected in timeline.expectation.value.items()
                 if not _same(expected, actual_fields.get(name, BUILTIN_DEFAULTS.get(name)))}
        if not wrong:
            return timeline.result(True)
        expected = timeline.expectation.value
        lines = [line for name, actual in wrong.items()
                 for line in (f"  - {name} = {_show(expected[name])}", f"  + {name} = {_show(actual)}")]
        changes = [entry for entry in timeline.entries if entry.kind in ("update", "score", "lists")]
        message = "; ".join(f"{name} is {_show(actual)}" for name, actual in wrong.items())
        context = diff_lines(changes, [], None, timeline.tz, timeline.expectation.contact, []) if changes else []
        return ExpectationResult(timeline.expectation, False, message,
                                 [line for line in context if not line.startswith("    (")] + lines)

    def words(self, expectation: Expectation) -> str:
        values = ", ".join(f"{name} = {_show(value)}" for name, value in expectation.value.items())
        return f"{expectation.contact} ends with {values}"


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, list) and isinstance(actual, (list, tuple, set)):
        return sorted(map(str, expected)) == sorted(map(str, actual))
    return expected == actual


def _show(value: Any) -> str:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return repr(value)


# --- the registry ------------------------------------------------------------------------------------------

KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Gets(), GetsNo(), Messages(), Enters(), DoesNotEnter(), Exits(), Completes(), Converts(), DoesNotConvert(),
    Variant(), Reaches(), DoesNotReach(), Fields(), Fails(),
)}


def describe(expectation: Expectation, tz: tzinfo) -> str:
    """An expectation in words: "c01 gets cart/reminder-1 at +1h (Tue 24 Nov 10:00 CET)"."""
    options = expectation.options
    text = KINDS[expectation.kind].words(expectation)
    if options.get("workflow"):
        text += f" in {options['workflow']}"
    if options.get("step"):
        text += f" at step {options['step']}"
    if expectation.at is not None:
        written = str(options["at"])
        local = stamp(expectation.at, tz)
        text += f" at {written} ({local})" if written.strip().startswith(("+", "-")) else f" at {local}"
        if expectation.tolerance:
            text += f" ±{format_duration(expectation.tolerance)}"
    return text
