"""`serve.public_url` must be an `https` address: every link mauto writes into a message is built on it.

RFC 8058 requires the one-click `List-Unsubscribe` URL to be `https`, and Gmail and Yahoo ignore the
header otherwise. Tracked links and the open pixel on plain `http` also look like phishing to spam
filters. Only a loopback address (`http://127.0.0.1:8080`, for trying mauto serve out) may use `http`.

With `unsubscribe_url` set as well, that template wins for the unsubscribe link, and mauto serve's own
one-click endpoint is never used. Remove `unsubscribe_url` unless your page forwards the token to mauto serve.

Bad:

```yaml
serve:
  public_url: http://mail.shop.example
```

Good:

```yaml
serve:
  public_url: https://mail.shop.example
```
"""
from __future__ import annotations

from urllib.parse import urlsplit

ID = "serve-url"
LEVEL = "warning"
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def check(ctx):
    data = ctx.project.data if ctx.project_file.document else {}
    serve = data.get("serve")
    url = serve.get("public_url") if isinstance(serve, dict) else None
    if not isinstance(url, str) or not url:
        return
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return  # the schema's pattern says what is wrong
    if parts.scheme.lower() == "http" and host not in _LOOPBACK:
        yield ctx.problem(ctx.project_file, ("serve", "public_url"),
                          f"`serve.public_url` {url} is not https: one-click unsubscribe needs an https link "
                          "(RFC 8058), and links on http look like phishing; serve it behind TLS (docs/serve.md)")
    if data.get("unsubscribe_url"):
        yield ctx.problem(ctx.project_file, ("unsubscribe_url",),
                          "`unsubscribe_url` is set beside `serve.public_url`: it wins for the unsubscribe link, so "
                          "mauto serve's one-click endpoint goes unused; remove it unless your page forwards the token "
                          "to mauto serve")
