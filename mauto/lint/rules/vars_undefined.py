"""`vars.NAME` must be set before it is used: by an `assign_coupon`/`webhook` `as:`, or the send step's own `vars`.

Templates render with `StrictUndefined`; a missing var would fail the send
for a real contact.

Bad:

```yaml
- id: reminder-2
  email: cart/reminder-2            # uses {{ vars.coupon }}
- assign_coupon: {pool: CART10, as: coupon}
```

Good:

```yaml
- assign_coupon: {pool: CART10, as: coupon}
- id: reminder-2
  email: cart/reminder-2
```
"""
from __future__ import annotations

from mauto.workflow.expressions import ExpressionError

ID = "vars-undefined"
LEVEL = "error"


def check(ctx):
    for file, workflow in ctx.workflows:
        available = ctx.vars_before(workflow)
        for step in workflow.iter_steps():
            if step.kind not in ("email", "sms"):
                continue
            name = ctx.templates.file_name(step.kind, step.value)
            if not ctx.templates.exists(name):
                continue
            used: dict[str, str] = {}
            for info in ctx.templates.lineage(name):
                for var, pos in info.vars.items():
                    used.setdefault(var, f"{info.display_path}:{pos.line}")
            for var, where in used.items():
                if var not in available[step.path]:
                    yield ctx.problem(file, step.path + (step.kind,),
                                      f"template `{step.value}` uses `vars.{var}` ({where}), but no step before "
                                      f"step {step.label} sets `{var}`; set it with `as: {var}` or the step's `vars`")
        for site in ctx.workflow_expressions(file, workflow):
            try:
                uses = site.expression.uses
            except ExpressionError:
                continue
            step_path = site.json_path[:-1] if site.json_path[-1] == "if" else site.json_path[:-2]
            known = available.get(step_path, set())
            for use in uses:
                if use.kind == "vars" and use.name not in known:
                    yield ctx.problem(file, ctx.expression_pos(site, use.offset),
                                      f"`vars.{use.name}` is not set by any step before this one")
        for _, _, step, _path, info in ctx.template_string_infos_of(workflow):
            for var, pos in info.vars.items():
                if var not in available[step.path]:
                    yield ctx.problem(file, pos, f"`vars.{var}` is not set by any step before step {step.label}")
