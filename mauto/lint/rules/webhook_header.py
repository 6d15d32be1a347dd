"""A webhook's headers are valid: names are HTTP tokens, values one line, each given once.

A control character in a header value (a line break, a carriage return, a
NUL) could end the header and start another one (header injection): it is
refused where it is written, and a rendered value holding one fails the call
for good. A header given both in `headers` and in `headers_env` is refused
too: say where its value comes from once.

Bad:

```yaml
steps:
  - webhook:
      url: "https://crm.example/leads"
      headers: {X-Source: "mauto\\r\\nX-Admin: yes"}
      headers_env: {Authorization: CRM_AUTH}
```

Good:

```yaml
steps:
  - webhook:
      url: "https://crm.example/leads"
      headers: {X-Source: mauto}
      headers_env: {Authorization: CRM_AUTH}
```
"""
from __future__ import annotations

ID = "webhook-header"
LEVEL = "error"


def check(ctx):
    yield from ctx.schema_findings(ID)
    for file, workflow in ctx.workflows:
        for step in workflow.iter_steps():
            if step.kind != "webhook":
                continue
            written = {name.lower(): name for name in step.value.get("headers", {})}
            for name in step.value.get("headers_env", {}):
                if name.lower() in written:
                    yield ctx.problem(file, step.path + ("webhook", "headers_env", name),
                                      f"`{name}` is given both in `headers` (as `{written[name.lower()]}`) and in "
                                      "`headers_env`; keep one", key=True)
