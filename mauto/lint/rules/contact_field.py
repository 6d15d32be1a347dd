"""Contact fields must be built in or declared under `contact_fields` in `mauto.yaml`.

Checked in expressions, templates, `update` steps and `date` triggers (whose
field must be a `date` or `datetime`). Built-in fields: id, email, phone,
timezone, locale, score, tags, lists, email_consent, sms_consent, created_at.

Bad:

```yaml
audience: "contact.contry == 'FR'"
```

Good:

```yaml
audience: "contact.country == 'FR'"     # with `country: string` in contact_fields
```
"""
from __future__ import annotations

import difflib

from mauto.lint.problem import Problem
from mauto.workflow.expressions import ExpressionError

ID = "contact-field"
LEVEL = "error"


def _message(field, fields):
    close = difflib.get_close_matches(field, sorted(fields), n=1, cutoff=0.6)
    hint = f"did you mean `{close[0]}`?" if close else "declare it under `contact_fields` in mauto.yaml"
    return f"unknown contact field `{field}`; {hint}"


def check(ctx):
    if ctx.project_file.yaml_error is not None:
        return  # the declared fields are unknown: yaml-syntax reports the project file
    fields = ctx.project.contact_fields
    yield from _in_expressions(ctx, fields)
    yield from _in_template_files(ctx, fields)
    yield from _in_template_strings(ctx, fields)
    for file, workflow in ctx.workflows:
        for step in workflow.iter_steps():
            if step.kind == "update":
                yield from _in_update_step(ctx, file, step, fields)
        if workflow.trigger.kind == "date":
            yield from _in_date_trigger(ctx, file, workflow.trigger, fields)


def _in_expressions(ctx, fields):
    """`contact.x` in every expression, the `where=` strings nested in them included."""
    for site in ctx.all_expression_sites():
        try:
            uses = site.expression.uses
        except ExpressionError:
            continue  # expression-syntax reports it
        for use in uses:
            if use.kind == "contact" and use.name not in fields:
                yield ctx.problem(site.file, ctx.expression_pos(site, use.offset), _message(use.name, fields))


def _in_template_files(ctx, fields):
    """`contact.x` in the template files under templates/."""
    for name in ctx.template_files():
        info = ctx.templates.info(name)
        for field, pos in info.contact_fields.items():
            if field not in fields:
                yield Problem(info.display_path, pos.line, pos.col, message=_message(field, fields))


def _in_template_strings(ctx, fields):
    """`contact.x` in the template strings written in workflows (step `vars`, `update.set`, tasks, webhooks)."""
    for file, _workflow, _step, _path, info in ctx.template_string_infos:
        for field, pos in info.contact_fields.items():
            if field not in fields:
                yield Problem(file.display, pos.line, pos.col, message=_message(field, fields))


def _in_update_step(ctx, file, step, fields):
    """The fields an `update` step sets (known, and of a fitting value when literal) and unsets (known)."""
    for field, value in step.value.get("set", {}).items():
        path = step.path + ("update", "set", field)
        if field not in fields:
            yield ctx.problem(file, path, _message(field, fields), key=True)
        else:
            wrong = _type_mismatch(fields[field], value)
            if wrong:
                yield ctx.problem(file, path, f"contact field `{field}` {wrong}")
    for index, field in enumerate(step.value.get("unset", [])):
        if field not in fields:
            yield ctx.problem(file, step.path + ("update", "unset", index), _message(field, fields))


def _in_date_trigger(ctx, file, trigger, fields):
    """A `date` trigger's field: known, and a `date` or `datetime`."""
    field = trigger.value["field"]
    path = ("trigger", "date", "field")
    if field not in fields:
        yield ctx.problem(file, path, _message(field, fields))
    elif fields[field] not in ("date", "datetime"):
        yield ctx.problem(file, path, f"contact field `{field}` is {_type_name(fields[field])}, "
                                      "but a date trigger needs a `date` or `datetime` field")


def _type_name(declared):
    if isinstance(declared, dict):
        return "an enum"
    article = "an" if str(declared)[:1] in "aeiou" else "a"
    return f"{article} `{declared}`"


def _type_mismatch(declared, value):
    """Why a literal value does not fit a declared type, or None (template strings are not checked)."""
    if isinstance(value, str) and "{" in value:
        return None
    if isinstance(declared, dict):
        allowed = declared.get("enum", [])
        if value not in allowed:
            return f"takes one of {', '.join(map(str, allowed))}, not `{value}`"
        return None
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "list": lambda v: isinstance(v, list),
        "date": lambda v: isinstance(v, str),
        "datetime": lambda v: isinstance(v, str),
    }
    check = checks.get(declared)
    if value is None or check is None or check(value):
        return None
    return f"is {_type_name(declared)}, not `{value}`"
