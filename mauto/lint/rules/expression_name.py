"""Expressions use only the names and functions in scope, with the arguments they take.

Names: `contact`, `event` (where an event is in scope), `vars`, `now`.
Functions: `has_event(name, within=, since=, where=)`, `event_count(...)` with
the same arguments, `days_since(datetime)`, `in_list(name)`, `duration('7d')`.
A segment trigger's condition has no `event`.

Bad:

```yaml
audience: "country == 'FR' and has_purchased('shoes')"
```

Good:

```yaml
audience: "contact.country == 'FR' and has_event('order_placed', where=\\"event.category == 'shoes'\\")"
```
"""
from __future__ import annotations

import difflib

from mauto.workflow.expressions import FUNCTIONS, NAMES, ExpressionError

ID = "expression-name"
LEVEL = "error"


def _hint(name, choices):
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def check(ctx):
    filters = ctx.templates.env.filters
    tests = ctx.templates.env.tests
    for site in ctx.all_expression_sites():
        try:
            uses = site.expression.uses
        except ExpressionError:
            continue
        names = [name for name in NAMES if name != "event" or site.event_in_scope]
        for use in uses:
            message = None
            if use.kind == "name" and use.name not in names and use.name not in FUNCTIONS:
                if use.name == "event":
                    message = "`event` is not in scope here: no event has arrived (use contact fields or has_event())"
                else:
                    message = (f"unknown name `{use.name}`{_hint(use.name, names + list(FUNCTIONS))} "
                               f"(names in scope: {', '.join(names)})")
            elif use.kind == "call" and use.name not in FUNCTIONS:
                message = (f"unknown function `{use.name}()`{_hint(use.name, list(FUNCTIONS))} "
                           f"(functions: {', '.join(f + '()' for f in FUNCTIONS)})")
            elif use.kind == "argument":
                allowed = FUNCTIONS[use.detail]
                if use.name.endswith(" positional"):
                    message = f"`{use.detail}()` takes {len(allowed)} argument(s): {', '.join(allowed)}"
                else:
                    message = (f"`{use.detail}()` has no argument `{use.name}`"
                               f"{_hint(use.name, list(allowed[1:]))}; it takes {', '.join(allowed)}")
            elif use.kind == "since" and use.name != "entry":
                message = f"`since='{use.name}'`: since takes 'entry' or a datetime such as `now - duration('7d')`"
            elif use.kind == "filter" and use.name not in filters:
                message = f"unknown filter `{use.name}`{_hint(use.name, sorted(filters))}"
            elif use.kind == "test" and use.name not in tests:
                message = f"unknown test `{use.name}`{_hint(use.name, sorted(tests))}"
            if message:
                yield ctx.problem(site.file, ctx.expression_pos(site, use.offset), message)
