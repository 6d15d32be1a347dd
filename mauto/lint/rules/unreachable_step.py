"""No step after an `exit` (or after a block whose every branch ends in `exit`): it can never run.

Bad:

```yaml
- if: "has_event('order_placed', since='entry')"
  then: [{exit: converted}]
  else: [{exit: lost}]
- email: cart/last-call          # never sent
```

Good:

```yaml
- if: "has_event('order_placed', since='entry')"
  then: [{exit: converted}]
- email: cart/last-call
```
"""
from __future__ import annotations

ID = "unreachable-step"
LEVEL = "error"


def ends_in_exit(steps) -> bool:
    """True when running this block always ends the enrollment."""
    for step in steps:
        if step.kind == "exit":
            return True
        if step.kind == "if" and "else" in step.blocks and ends_in_exit(step.blocks["then"]) \
                and ends_in_exit(step.blocks["else"]):
            return True
        if step.kind == "wait_for" and all(ends_in_exit(step.blocks.get(b, [])) for b in ("on_event", "on_timeout")):
            return True
        if step.kind == "split" and step.blocks and all(ends_in_exit(block) for block in step.blocks.values()):
            return True
    return False


def _check_block(ctx, file, steps):
    for index, step in enumerate(steps):
        for block in step.blocks.values():
            yield from _check_block(ctx, file, block)
        if index + 1 < len(steps) and ends_in_exit([step]):
            after = steps[index + 1]
            why = "an `exit`" if step.kind == "exit" else f"step {step.label}, whose every branch ends in `exit`"
            yield ctx.problem(file, after.path, f"step {after.label} can never run: it comes after {why}; "
                                                "remove it or move it before", key=False)
            return


def check(ctx):
    for file, workflow in ctx.workflows:
        yield from _check_block(ctx, file, workflow.steps)
