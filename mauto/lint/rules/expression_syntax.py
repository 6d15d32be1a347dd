"""Expressions (`where`, `audience`, `if`, segments) must parse as Jinja2 expressions, written without `{{ }}`.

An expression reads fields, never Python's internals: a name starting with
`_` (`contact.__class__`) is refused. It is at most 10,000 characters long and
nested at most 100 levels deep (32 levels of brackets): a chain of thousands
of `or` is better written `contact.country in ['FR', 'BE', …]` or as a named
segment.

Bad:

```yaml
audience: "{{ contact.country == 'FR' }}"
steps:
  - if: "contact.score >="
    then: [{exit: done}]
  - if: "contact.__class__"
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
            site.expression.tree  # noqa: B018 - parsing is the check; the tree is cached on the expression
        except ExpressionError as error:
            yield ctx.problem(site.file, ctx.expression_pos(site, error.offset),
                              f"{error} in `{_shown(site.expression.source)}`")


def _shown(source: str) -> str:
    """The expression for the message: a long one cut short (its place is in the finding already)."""
    return source if len(source) <= 100 else source[:80] + "…"
