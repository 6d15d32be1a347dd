"""When `mauto.yaml` has an `events:` catalogue, `event.PROPERTY` must be a property it lists for that event.

Every event also has `name`, `at`, `id` and `contact`. Checked in `where`
conditions, in `if`/`audience` of event-triggered workflows, and in the
templates those workflows send.

Bad:

```yaml
trigger:
  event: cart_abandoned
  where: "event.cart_total >= 20"      # the catalogue says cart_value
```

Good:

```yaml
trigger:
  event: cart_abandoned
  where: "event.cart_value >= 20"
```
"""
from __future__ import annotations

import difflib

from mauto.config import EVENT_ATTRIBUTES
from mauto.lint.problem import Problem
from mauto.workflow.expressions import ExpressionError

ID = "unknown-event-property"
LEVEL = "error"


def _message(event, prop, properties):
    known = sorted(properties) + list(EVENT_ATTRIBUTES)
    close = difflib.get_close_matches(prop, known, n=1, cutoff=0.6)
    hint = f"did you mean `{close[0]}`?" if close else (
        f"it has: {', '.join(sorted(properties))}" if properties else "it has no properties in the catalogue")
    return f"event `{event}` has no property `{prop}`; {hint}"


def check(ctx):
    catalogue = ctx.project.events
    if catalogue is None:
        return
    for site in ctx.all_expression_sites():
        if site.event is None or site.event not in catalogue:
            continue
        try:
            uses = site.expression.uses
        except ExpressionError:
            continue
        properties = catalogue[site.event]
        for use in uses:
            if use.kind == "event" and use.name not in properties and use.name not in EVENT_ATTRIBUTES:
                yield ctx.problem(site.file, ctx.expression_pos(site, use.offset),
                                  _message(site.event, use.name, properties))
    for _file, workflow, _step, name in ctx.sends():
        trigger = workflow.trigger
        if trigger.kind != "event" or trigger.value not in catalogue or not ctx.templates.exists(name):
            continue
        properties = catalogue[trigger.value]
        for info in ctx.templates.lineage(name):
            for prop, pos in info.event_properties.items():
                if prop not in properties and prop not in EVENT_ATTRIBUTES:
                    yield Problem(info.display_path, pos.line, pos.col,
                                  message=_message(trigger.value, prop, properties) + f" (sent by {workflow.id})")
