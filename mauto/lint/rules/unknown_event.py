"""When `mauto.yaml` has an `events:` catalogue, every event name a workflow uses must be in it.

A typo in `order_placed` silently breaks a goal or an exit in every other
tool; here it fails the lint. Built-in events (contact_created,
contact_updated, email_*, sms_*, unsubscribed) need no entry.

Bad:

```yaml
exit_on: [order_placd]
```

Good:

```yaml
exit_on: [order_placed]          # with order_placed under events: in mauto.yaml
```
"""
from __future__ import annotations

import difflib

from mauto.workflow.expressions import ExpressionError

ID = "unknown-event"
LEVEL = "error"


def _message(name, catalogue):
    close = difflib.get_close_matches(name, sorted(catalogue), n=1, cutoff=0.6)
    hint = f"did you mean `{close[0]}`?" if close else "add it under `events:` in mauto.yaml"
    return f"unknown event `{name}`; {hint}"


def event_names(workflow):
    """(event name, JSON path) for every event a workflow names outside expressions."""
    trigger = workflow.trigger
    if trigger.kind == "event":
        yield trigger.value, ("trigger", "event")
    if trigger.kind == "inactivity":
        yield trigger.value["event"], ("trigger", "inactivity", "event")
    for index, item in enumerate(workflow.document.data.get("exit_on", [])):
        if isinstance(item, str):
            yield item, ("exit_on", index)
        else:
            yield item["event"], ("exit_on", index, "event")
    if workflow.goal:
        yield workflow.goal["event"], ("goal", "event")
    for step in workflow.iter_steps():
        if step.kind == "wait_for":
            yield step.value["event"], step.path + ("wait_for", "event")


def check(ctx):
    catalogue = ctx.project.events
    if catalogue is None:
        return
    for file, workflow in ctx.workflows:
        for name, path in event_names(workflow):
            if name not in catalogue:
                yield ctx.problem(file, path, _message(name, catalogue))
    for site in ctx.all_expression_sites():
        try:
            uses = site.expression.uses
        except ExpressionError:
            continue
        for use in uses:
            if use.kind == "event-name" and use.name not in catalogue:
                yield ctx.problem(site.file, ctx.expression_pos(site, use.offset), _message(use.name, catalogue))
