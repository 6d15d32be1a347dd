"""Credentials never go into a workflow: a webhook names the environment variable that holds them.

A workflow is committed to git, stored with every deploy and shown by `mauto
graph`; a password or token in it is a leaked one. Refused: a user name and
password in a webhook URL (`https://user:pass@…`), a value written out for a
query parameter that carries one (`?api_key=…`, `&token=…`: a name ending in
`token`, `secret`, `apikey`/`api_key`, `password` or `sig`, or `key` itself),
and a value written out for a header that carries a credential: `Authorization`, `Proxy-Authorization`,
`Cookie`, `X-API-Key`, `X-Auth-Token`, or any header whose name contains
`token`, `secret`, `api-key`/`apikey` or `password`. Give such a header with
`headers_env: {HEADER: VARIABLE}`: the variable holds the header's whole value
and is read when the request is sent, never written to the store or the logs.
A header value that only comes from a template (`Bearer {{ vars.token }}`, a
token an earlier webhook returned) is not written into the workflow and passes.

Bad:

```yaml
steps:
  - webhook:
      url: "https://shop:hunter2@crm.example/leads"
      headers: {Authorization: "Bearer sk_live_4eC39HqLyjWDarjtT1zdp7dc"}
```

Good:

```yaml
steps:
  - webhook:
      url: "https://crm.example/leads"
      headers_env: {Authorization: CRM_AUTH}
```
"""
from __future__ import annotations

import re

ID = "secret-in-workflow"
LEVEL = "error"

_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key", "x-auth-token"})
_SECRET_PART = re.compile(r"token|secret|api-?key|password", re.IGNORECASE)
_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_STRING = re.compile(r"""'((?:\\.|[^'\\])*)'|"((?:\\.|[^"\\])*)\"""")
_SCHEME_WORD = re.compile(r"\b(?:bearer|basic|digest|token)\b", re.IGNORECASE)


def is_secret_header(name: str) -> bool:
    """Whether a header of this name carries a credential."""
    return name.lower() in _SECRET_HEADERS or bool(_SECRET_PART.search(name))


def written_out(value: str) -> bool:
    """Whether a header value holds text written in the workflow beyond an auth scheme word (`Bearer`):
    the text outside `{{ }}` and the string literals inside it."""
    literal = [_TEMPLATE.sub(" ", value)]
    for block in _TEMPLATE.findall(value):
        literal.extend(single or double for single, double in _STRING.findall(block))
    return bool(_SCHEME_WORD.sub(" ", " ".join(literal)).strip())


_QUERY_SECRET = re.compile(r"^(?:.*(?:token|secret|api[-_]?key|password|passwd|sig(?:nature)?)|key)$", re.IGNORECASE)


def query_secrets(url: str) -> list[str]:
    """The query parameters of a webhook URL whose name says they carry a credential and whose value is
    written out in the workflow (a value that only comes from a template passes)."""
    query = _TEMPLATE.sub(lambda block: "\x00" * len(block.group()), url).partition("?")[2].partition("#")[0]
    found = []
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")  # NULs stand where templates were: not written out
        if equals and _QUERY_SECRET.match(name.strip()) and value.replace("\x00", "").strip():
            found.append(name.strip())
    return found


def check(ctx):
    yield from ctx.schema_findings(ID)
    for file, workflow in ctx.workflows:
        for step in workflow.iter_steps():
            if step.kind != "webhook":
                continue
            url = step.value.get("url")
            for name in query_secrets(url) if isinstance(url, str) else []:
                yield ctx.problem(file, step.path + ("webhook", "url"),
                                  f"the URL of step {step.label} has the query parameter `{name}` written out: a "
                                  "workflow is committed to git; give credentials in a header with `headers_env`, "
                                  "e.g. headers_env: {Authorization: CRM_AUTH}")
            for name, value in step.value.get("headers", {}).items():
                if is_secret_header(name) and isinstance(value, str) and written_out(value):
                    yield ctx.problem(file, step.path + ("webhook", "headers", name),
                                      f"header `{name}` in step {step.label} holds a credential written into the "
                                      f"workflow; put it in an environment variable and name it with "
                                      f"`headers_env: {{{name}: VARIABLE}}`")
