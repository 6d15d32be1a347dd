"""A segment trigger that names a segment (`segment: best-customers`) needs that segment in `mauto.yaml`.

Bad:

```yaml
trigger:
  segment: best-customer       # mauto.yaml defines best-customers
```

Good:

```yaml
trigger:
  segment: best-customers
```
"""
from __future__ import annotations

import difflib

from mauto.lint.context import is_segment_name

ID = "unknown-segment"
LEVEL = "error"


def check(ctx):
    segments = sorted(ctx.project.segments)
    for file, workflow in ctx.workflows:
        trigger = workflow.trigger
        if trigger.kind == "segment" and trigger.value not in ctx.project.segments and is_segment_name(trigger.value):
            close = difflib.get_close_matches(trigger.value, segments, n=1, cutoff=0.6)
            if close:
                hint = f"; did you mean `{close[0]}`?"
            elif segments:
                hint = f"; mauto.yaml defines: {', '.join(segments)}"
            else:
                hint = "; define it under `segments:` in mauto.yaml"
            yield ctx.problem(file, ("trigger", "segment"), f"unknown segment `{trigger.value}`{hint}")
