"""Durations are a number and a unit: `30m`, `1h`, `3d`, `2w`, `1h30m`, or ISO 8601 `P3D`.

Checked wherever a duration is written: `wait`, `timeout`, `reentry.after`,
`goal.within`, `inactivity.for`, `date.offset`, `task.due`, frequency caps,
and literal `within='…'` and `duration('…')` in expressions. Months and years
are refused because they have no fixed length.

Bad:

```yaml
steps:
  - wait: 3 days
  - if: "has_event('order_placed', within='1 month')"
    then: [{exit: converted}]
```

Good:

```yaml
steps:
  - wait: 3d
  - if: "has_event('order_placed', within='30d')"
    then: [{exit: converted}]
```
"""
from __future__ import annotations

from mauto.workflow.durations import DurationError, parse_duration
from mauto.workflow.expressions import ExpressionError

ID = "duration"
LEVEL = "error"


def check(ctx):
    for file in [ctx.project_file, *ctx.files]:
        for problem in file.schema_problems:
            if problem.rule == ID:
                yield ctx.problem(file, problem.pos, problem.message)
    for site in ctx.all_expression_sites():
        try:
            uses = site.expression.uses
        except ExpressionError:
            continue
        for use in uses:
            if use.kind != "duration":
                continue
            try:
                parse_duration(use.name)
            except DurationError as error:
                yield ctx.problem(site.file, ctx.expression_pos(site, use.offset), str(error))
