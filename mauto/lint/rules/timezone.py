"""Time zones must be IANA names (`Europe/Paris`, `America/New_York`, `UTC`).

Checked in `mauto.yaml`'s `timezone`, a workflow's `settings.timezone`
(which may also be `contact`) and a schedule's `timezone`.

Bad:

```yaml
settings:
  timezone: Paris
```

Good:

```yaml
settings:
  timezone: Europe/Paris
```
"""
from __future__ import annotations

import difflib
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

ID = "timezone"
LEVEL = "error"


@lru_cache(maxsize=512)
def known(zone: str) -> bool:
    try:
        ZoneInfo(zone)
        return True
    except (KeyError, ValueError, OSError):
        return False


def _message(zone: str) -> str:
    close = difflib.get_close_matches(zone, sorted(available_timezones()), n=1, cutoff=0.5)
    if not close:
        close = [name for name in sorted(available_timezones()) if name.endswith("/" + zone)][:1]
    hint = f"; did you mean `{close[0]}`?" if close else "; use an IANA name such as Europe/Paris"
    return f"unknown time zone `{zone}`{hint}"


def check(ctx):
    zone = ctx.project.data.get("timezone") if ctx.project_file.document else None
    if isinstance(zone, str) and zone and not known(zone):
        yield ctx.problem(ctx.project_file, ("timezone",), _message(zone))
    for file, workflow in ctx.workflows:
        zone = workflow.settings.get("timezone")
        if zone is not None and zone != "contact" and not known(zone):
            yield ctx.problem(file, ("settings", "timezone"), _message(zone))
        if workflow.trigger.kind == "schedule":
            zone = workflow.trigger.value.get("timezone")
            if zone is not None and not known(zone):
                yield ctx.problem(file, ("trigger", "schedule", "timezone"), _message(zone))
