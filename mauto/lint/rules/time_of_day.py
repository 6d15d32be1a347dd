"""Times of day are 24-hour `HH:MM`; `wait: {until: …}` takes a time of day, a date or a date-time.

Bad:

```yaml
settings:
  quiet_hours: {start: "9pm", end: "08:00"}
steps:
  - wait: {until: "25:00"}
```

Good:

```yaml
settings:
  quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - wait: {until: "09:00"}
```
"""
from __future__ import annotations

from mauto.workflow.until import UntilError, parse_until

ID = "time-of-day"
LEVEL = "error"


def check(ctx):
    yield from ctx.schema_findings(ID)
    for file, workflow in ctx.workflows:
        for step in workflow.iter_steps():
            if step.kind == "wait" and isinstance(step.value, dict):
                try:
                    parse_until(step.value["until"])
                except UntilError as error:
                    yield ctx.problem(file, step.path + ("wait", "until"), str(error))
