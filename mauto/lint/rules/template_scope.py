"""Templates use only the names in scope: `contact`, `event`, `vars`, `now`, `unsubscribe_url` and mauto's functions.

Templates render with `StrictUndefined`: an unknown name would fail at send
time, for a real contact. Unknown filters and tests are reported too, and a
template that uses `event` but is sent by a workflow with no event trigger
(segment, date, schedule, inactivity): there is no event to show.

Bad:

```html
<p>Hello {{ first_name }}</p>
```

Good:

```html
<p>Hello {{ contact.first_name | default('there') }}</p>
```
"""
from __future__ import annotations

from mauto.lint.problem import Problem
from mauto.workflow.expressions import FUNCTIONS, TEMPLATE_NAMES

ID = "template-scope"
LEVEL = "error"

ALLOWED = set(TEMPLATE_NAMES) | set(FUNCTIONS)


def problems(ctx, info, place):
    """Findings for one analysed template; `place(pos)` turns a template position into (path, line, col)."""
    for name, pos in info.names.items():
        if name not in ALLOWED:
            yield place(pos, f"`{name}` is not defined in templates; names in scope: "
                             f"{', '.join(TEMPLATE_NAMES)} and {', '.join(f + '()' for f in FUNCTIONS)}")
    for name, pos in info.filters.items():
        if name not in ctx.templates.env.filters:
            yield place(pos, f"unknown filter `{name}`")
    for name, pos in info.tests.items():
        if name not in ctx.templates.env.tests:
            yield place(pos, f"unknown test `{name}`")


def check(ctx):
    for name in ctx.template_files():
        info = ctx.templates.info(name)
        if info.error is None:
            yield from problems(ctx, info, lambda pos, message, info=info: Problem(
                info.display_path, pos.line, pos.col, message=message))
    for file, workflow, _step, _path, info in ctx.template_string_infos:
        if info.error is None:
            yield from problems(ctx, info, lambda pos, message, file=file: Problem(
                file.display, pos.line, pos.col, message=message))
            if workflow.trigger.kind != "event" and "event" in info.names:
                pos = info.names["event"]
                yield Problem(file.display, pos.line, pos.col, message=_no_event(workflow))
    for _file, workflow, step, name in ctx.sends():
        if workflow.trigger.kind == "event" or not ctx.templates.exists(name):
            continue
        for info in ctx.templates.lineage(name):
            if info.error is None and "event" in info.names:
                pos = info.names["event"]
                yield Problem(info.display_path, pos.line, pos.col,
                              message=_no_event(workflow) + f" (sent by step {step.label})")


def _no_event(workflow):
    return (f"`event` is not in scope: workflow `{workflow.id}` is triggered by a {workflow.trigger.kind}, "
            "not an event; use contact fields or vars")
