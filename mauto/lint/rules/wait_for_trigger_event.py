"""A `wait_for` on the very event that triggers the workflow is almost always a mistake.

The triggering event has already arrived when the contact enters; depending
on timing the wait either matches it at once or never sees another one. To
react to a repeat, use `event_count(...)` in the trigger's `where`, or a
different event.

Bad:

```yaml
trigger: {event: product_viewed}
steps:
  - wait_for: {event: product_viewed, timeout: 1d}
```

Good:

```yaml
trigger:
  event: product_viewed
  where: "event_count('product_viewed', within='7d') >= 3"
steps:
  - email: browse/discount
```
"""
from __future__ import annotations

ID = "wait-for-trigger-event"
LEVEL = "warning"


def check(ctx):
    for file, workflow in ctx.workflows:
        if workflow.trigger.kind != "event":
            continue
        for step in workflow.iter_steps():
            if step.kind == "wait_for" and step.value["event"] == workflow.trigger.value:
                yield ctx.problem(file, step.path + ("wait_for", "event"),
                                  f"waits for `{step.value['event']}`, the event that triggers this workflow; it "
                                  "may match the triggering event itself or never come: count repeats with "
                                  "event_count() in the trigger's `where` instead")
