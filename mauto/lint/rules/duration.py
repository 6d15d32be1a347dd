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
from mauto.workflow.schema import subject, value_at

ID = "duration"
LEVEL = "error"

# Every key of either schema with one of these names holds a duration.
DURATION_KEYS = frozenset({"wait", "timeout", "after", "within", "for", "offset", "due", "per"})


def check(ctx):
    for file in [ctx.project_file, *ctx.files]:
        for problem in file.schema_problems:
            if problem.rule == ID:
                yield ctx.problem(file, problem.pos, problem.message)
            else:
                message = _bare_number(file, problem)
                if message:  # the runner drops the schema's own "must be a string" at the same place
                    yield ctx.problem(file, problem.pos, message)
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


def _bare_number(file, problem):
    """`wait: 3`: the schema only sees a number where a string goes; say it is a duration without a unit."""
    path = problem.json_path
    if not path or path[-1] not in DURATION_KEYS or file.document is None:
        return None
    value = value_at(file.document.data, path)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        parse_duration(str(value), signed=path[-1] == "offset")
    except DurationError as error:
        return f"{subject(path, file.document.data)}: {error}"
    return None
