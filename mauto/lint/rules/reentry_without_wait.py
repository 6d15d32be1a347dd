"""`reentry: always` on an event trigger needs a wait before the first send.

Otherwise every repeat of the event sends the message again at once: a
contact who abandons three carts in an hour gets three emails. Users of other
tools report this as a live incident. Transactional workflows (an order
confirmation per order) are exempt.

Bad:

```yaml
trigger: {event: cart_abandoned}
reentry: always
steps:
  - email: cart/reminder-1
```

Good:

```yaml
trigger: {event: cart_abandoned}
reentry: {after: 1d}
steps:
  - wait: 1h
  - email: cart/reminder-1
```
"""
from __future__ import annotations

ID = "reentry-without-wait"
LEVEL = "error"


def first_send(steps):
    """The first email/sms step reached before any wait, or None."""
    for step in steps:
        if step.kind in ("wait", "wait_for"):
            return None
        if step.kind in ("email", "sms"):
            return step
        for block in step.blocks.values():
            found = first_send(block)
            if found is not None:
                return found
        if step.kind == "exit":
            return None
    return None


def check(ctx):
    for file, workflow in ctx.workflows:
        if workflow.reentry != "always" or workflow.trigger.kind != "event" or not workflow.marketing:
            continue
        send = first_send(workflow.steps)
        if send is not None:
            yield ctx.problem(file, ("reentry",),
                              f"`reentry: always` with no wait before step {send.label} ({send.kind}): every "
                              f"`{workflow.trigger.value}` event sends it again at once; add a `wait` first or use "
                              "`reentry: {after: 1d}`")
