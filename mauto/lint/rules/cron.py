"""A `schedule` trigger's cron line must be five valid fields: minute hour day-of-month month day-of-week.

Checked with APScheduler's cron parser, the one the daemon fires it with.

Bad:

```yaml
trigger:
  schedule: {cron: "0 9 * * MONDAY"}
```

Good:

```yaml
trigger:
  schedule: {cron: "0 9 * * MON"}
```
"""
from __future__ import annotations

from mauto.workflow.cron import CronError, parse_cron

ID = "cron"
LEVEL = "error"


def check(ctx):
    for file, workflow in ctx.workflows:
        if workflow.trigger.kind == "schedule":
            try:
                parse_cron(workflow.trigger.value["cron"])
            except CronError as error:
                yield ctx.problem(file, ("trigger", "schedule", "cron"), str(error))
