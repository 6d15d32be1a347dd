"""Step ids (and split ids) are unique within a file: stats, `wait_for` and `in_flight: migrate` refer to them.

Bad:

```yaml
steps:
  - id: reminder
    email: cart/reminder-1
  - wait: 1d
  - id: reminder
    email: cart/reminder-2
```

Good:

```yaml
steps:
  - id: reminder-1
    email: cart/reminder-1
  - wait: 1d
  - id: reminder-2
    email: cart/reminder-2
```
"""
from __future__ import annotations

ID = "duplicate-step-id"
LEVEL = "error"


def check(ctx):
    for file, workflow in ctx.workflows:
        seen: dict[str, int] = {}
        for step in workflow.iter_steps():
            ids = []
            if step.id is not None:
                ids.append((step.id, step.path + ("id",)))
            if step.kind == "split" and "id" in step.value and step.value["id"] != step.id:
                ids.append((step.value["id"], step.path + ("split", "id")))
            for step_id, path in ids:
                if step_id in seen:
                    yield ctx.problem(file, path, f"step id `{step_id}` is already used at line {seen[step_id]}; "
                                                  "step ids must be unique in a file")
                else:
                    seen[step_id] = file.document.pos(path).line
