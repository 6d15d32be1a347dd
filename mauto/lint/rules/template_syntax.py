"""Templates must parse: Jinja2 syntax, and for emails the front matter with a `subject:`.

Reported at the template's own line. Template strings inside workflows (step
`vars`, `update.set`, `task` and `webhook` fields) are checked too.

Bad (`templates/cart/reminder-1.email.html`):

```html
---
subject: Your cart is waiting, {{ contact.first_name }
---
{% extends "layouts/base.html" %}
```

Good:

```html
---
subject: Your cart is waiting, {{ contact.first_name }}
---
{% extends "layouts/base.html" %}
```
"""
from __future__ import annotations

from mauto.lint.problem import Problem

ID = "template-syntax"
LEVEL = "error"


def check(ctx):
    for name in ctx.template_files():
        error = ctx.templates.info(name).error
        if error is not None:
            yield Problem(error.path, error.line or 1, error.col or 1, message=error.message)
    for file, _workflow, _step, path, info in ctx.template_string_infos:
        if info.error is not None:
            yield ctx.problem(file, path, f"{info.error.message} (in a template string)")
