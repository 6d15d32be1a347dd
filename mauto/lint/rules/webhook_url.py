"""A webhook calls an http or https URL whose scheme and host are written out before any `{{ }}`.

`file:`, `ftp:` or `gopher:` URLs, a URL without a scheme or a host, and a
host that comes from a template are refused: contact data must never choose
where a request goes. A template may follow the host, after a `/`, `?` or
`#`. At call time, a rendered URL that is not http(s) with a host fails the
call for good.

Bad:

```yaml
steps:
  - webhook: {url: "file:///etc/passwd"}
  - webhook: {url: "https://{{ contact.crm_host }}/leads"}
```

Good:

```yaml
steps:
  - webhook: {url: "https://crm.example/leads"}
  - webhook: {url: "https://crm.example/contacts/{{ contact.id }}"}
```
"""
from __future__ import annotations

ID = "webhook-url"
LEVEL = "error"


def check(ctx):
    yield from ctx.schema_findings(ID)
