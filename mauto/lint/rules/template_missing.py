"""Every `email:` and `sms:` names a template that exists, and every `{% extends %}`/`{% include %}` too.

`email: cart/reminder-1` is `templates/cart/reminder-1.email.html`;
`sms: cart/last-call` is `templates/cart/last-call.sms.txt`.

Bad:

```yaml
steps:
  - email: cart/remider-1       # templates/cart/remider-1.email.html does not exist
```

Good:

```yaml
steps:
  - email: cart/reminder-1
```
"""
from __future__ import annotations

import difflib

from mauto.lint.problem import Problem

ID = "template-missing"
LEVEL = "error"


def check(ctx):
    for file, _workflow, step, name in ctx.sends():
        if ctx.templates.exists(name):
            continue
        close = difflib.get_close_matches(step.value, ctx.templates.available(step.kind), n=1, cutoff=0.6)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        yield ctx.problem(file, step.path + (step.kind,),
                          f"{step.kind} template `{step.value}` not found: expected "
                          f"{ctx.templates.display(name)}{hint}")
    for name in ctx.template_files():
        info = ctx.templates.info(name)
        for reference in info.references:
            if not ctx.templates.exists(reference):
                line, col = _find(ctx.templates.dir / name, reference)
                yield Problem(info.display_path, line, col,
                              message=f"template `{reference}` (extended or included here) not found under templates/")


def _find(path, needle):
    try:
        for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
            found = line.find(needle)
            if found >= 0:
                return number, found + 1
    except (OSError, UnicodeDecodeError):
        pass
    return 1, 1
