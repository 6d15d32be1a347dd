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


def check(ctx):  # noqa: C901 - split by the refactor of issue 11
    if ctx.project_file.yaml_error is not None:
        return  # the declared fields are unknown: yaml-syntax reports the project file
    fields = ctx.project.contact_fields
    for site in ctx.all_expression_sites():
        try:
            uses = site.expression.uses
        except ExpressionError:
            continue
        for use in uses:
            if use.kind == "contact" and use.name not in fields:
                yield ctx.problem(site.file, ctx.expression_pos(site, use.offset), _message(use.name, fields))
    for name in ctx.template_files():
        info = ctx.templates.info(name)
        for field, pos in info.contact_fields.items():
            if field not in fields:
                yield Problem(info.display_path, pos.line, pos.col, message=_message(field, fields))
    for file, _workflow, _step, _path, info in ctx.template_string_infos:
        for field, pos in info.contact_fields.items():
            if field not in fields:
                yield Problem(file.display, pos.line, pos.col, message=_message(field, fields))
    for file, workflow in ctx.workflows:
        for step in workflow.iter_steps():
            if step.kind != "update":
                continue
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
        trigger = workflow.trigger
        if trigger.kind == "date":
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
