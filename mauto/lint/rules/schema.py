"""Workflows and `mauto.yaml` must match the schema: known keys, right types, required keys present.

An unknown key is reported on its own line with the closest known key; a bad
value on the value. The schema is `schema/workflow.schema.json` (print it
with `mauto schema workflow`).

Bad:

```yaml
steps:
  - delay: 2d          # unknown key `delay` in step 1; did you mean `wait`?
```

Good:

```yaml
steps:
  - wait: 2d
```
"""
from __future__ import annotations

ID = "schema"
LEVEL = "error"


def check(ctx):
    yield from ctx.schema_findings(ID)
