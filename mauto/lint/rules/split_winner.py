"""A split that picks its winner (`winner:`) compares its variants on the workflow's goal: the workflow needs
a `goal`.

Bad:

```yaml
# no goal in this workflow
steps:
  - split:
      winner: {confidence: 0.95, min_contacts: 1000}
      variants:
        a: {weight: 50, steps: [{email: promo/a}]}
        b: {weight: 50, steps: [{email: promo/b}]}
```

Good:

```yaml
goal: {event: order_placed, within: 7d}
steps:
  - split:
      winner: {confidence: 0.95, min_contacts: 1000}
      variants:
        a: {weight: 50, steps: [{email: promo/a}]}
        b: {weight: 50, steps: [{email: promo/b}]}
```

Once the always-valid test declares a variant better (docs/ab-tests.md), every new entry goes to it; the
decision is kept in the store and shown by `mauto stats`, `mauto status` and `mauto plan`.
"""
from __future__ import annotations

ID = "split-winner"
LEVEL = "error"


def check(ctx):
    for file, workflow in ctx.workflows:
        if workflow.goal:
            continue
        for step in workflow.iter_steps():
            if step.kind == "split" and "winner" in step.value:
                yield ctx.problem(file, step.path + ("split", "winner"),
                                  f"this split picks its winner by the workflow's goal, and workflow "
                                  f"`{workflow.id}` has no `goal`: add one (goal: {{event: …, within: …}}) or "
                                  "remove `winner`")
