"""Expressions (`where`, `audience`, `if`, segments) must parse as Jinja2 expressions, written without `{{ }}`.

Bad:

```yaml
audience: "{{ contact.country == 'FR' }}"
steps:
  - if: "contact.score >="
    then: [{exit: done}]
```

Good:

```yaml
audience: "contact.country == 'FR'"
steps:
  - if: "contact.score >= 50"
    then: [{exit: done}]
```
"""
from __future__ import annotations

from mauto.workflow.expressions import ExpressionError

ID = "expression-syntax"
LEVEL = "error"


def check(ctx):
    for site in ctx.all_expression_sites():
        try:
            site.expression.tree
        except ExpressionError as error:
            yield ctx.problem(site.file, ctx.expression_pos(site, error.offset),
                              f"{error} in `{site.expression.source}`")
