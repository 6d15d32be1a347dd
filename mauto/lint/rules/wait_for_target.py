"""A `wait_for` that filters on `event.step` must name a step id of the same file.

A typo there means the event never matches, and every contact waits for the
whole timeout.

Bad:

```yaml
- id: reminder-2
  email: cart/reminder-2
- wait_for: {event: email_clicked, where: "event.step == 'reminder2'", timeout: 3d}
```

Good:

```yaml
- id: reminder-2
  email: cart/reminder-2
- wait_for: {event: email_clicked, where: "event.step == 'reminder-2'", timeout: 3d}
```
"""
from __future__ import annotations

import difflib

from mauto.workflow.expressions import ExpressionError

ID = "wait-for-target"
LEVEL = "error"


def check(ctx):
    for file, workflow in ctx.workflows:
        step_ids = sorted(step.id for step in workflow.iter_steps() if step.id)
        for site in ctx.workflow_expressions(file, workflow):
            try:
                uses = site.expression.uses
            except ExpressionError:
                continue
            for use in uses:
                if use.kind == "step" and use.name not in step_ids:
                    close = difflib.get_close_matches(use.name, step_ids, n=1, cutoff=0.6)
                    hint = f"; did you mean `{close[0]}`?" if close else "; give the step an `id`"
                    yield ctx.problem(file, ctx.expression_pos(site, use.offset),
                                      f"no step with id `{use.name}` in this workflow{hint}")
