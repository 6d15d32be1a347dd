"""A `wait: {until: DATE}` must not be in the past: every contact would skip it at once.

Usually a campaign copied from last year. Dates without an offset are read
in the workflow's zone; the check uses the current time (or `--now`).

Bad (in 2026):

```yaml
- wait: {until: "2025-11-28"}
- email: black-friday/launch
```

Good:

```yaml
- wait: {until: "2026-11-27"}
- email: black-friday/launch
```
"""
from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from mauto.workflow.until import UntilError, parse_until

ID = "wait-date-past"
LEVEL = "error"


def check(ctx):
    for file, workflow in ctx.workflows:
        zone_name = workflow.settings.get("timezone")
        if not zone_name or zone_name == "contact":
            zone_name = ctx.project.timezone
        try:
            zone = ZoneInfo(zone_name)
        except (KeyError, ValueError, OSError):
            zone = ZoneInfo("UTC")
        for step in workflow.iter_steps():
            if step.kind != "wait" or not isinstance(step.value, dict):
                continue
            try:
                moment = parse_until(step.value["until"])
            except UntilError:
                continue
            if isinstance(moment, time):
                continue
            if not isinstance(moment, datetime):
                moment = datetime.combine(moment, time(0, 0))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
            if moment <= ctx.now:
                yield ctx.problem(file, step.path + ("wait", "until"),
                                  f"`until: {step.value['until']}` is already past; every contact would skip this "
                                  "wait at once: update the date or remove the wait")
