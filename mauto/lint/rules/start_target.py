"""`start: ID` names a workflow of the project.

Bad:

```yaml
- start: onbording
```

Good:

```yaml
- start: onboarding
```
"""
from __future__ import annotations

import difflib

ID = "start-target"
LEVEL = "error"


def check(ctx):
    ids = sorted(ctx.workflow_ids)
    for file, workflow in ctx.workflows:
        for step in workflow.iter_steps():
            if step.kind == "start" and step.value not in ctx.workflow_ids:
                close = difflib.get_close_matches(step.value, ids, n=1, cutoff=0.6)
                hint = f"; did you mean `{close[0]}`?" if close else ""
                yield ctx.problem(file, step.path + ("start",), f"no workflow with id `{step.value}`{hint}")
