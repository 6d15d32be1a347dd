"""Secrets never go into `mauto.yaml`: name the environment variable that holds them instead.

`mauto.yaml` is committed to git; a password in it is a leaked password.

Bad:

```yaml
channels:
  email: {transport: smtp, host: smtp.example.com, username: shop, password: hunter2}
```

Good:

```yaml
channels:
  email: {transport: smtp, host: smtp.example.com, username_env: SMTP_USER, password_env: SMTP_PASSWORD}
```
"""
from __future__ import annotations

import re

ID = "secret-in-config"
LEVEL = "error"

_SECRET_KEY = re.compile(r"(pass(word|wd)?|secret|token|api_?key|credential|private_?key|auth)", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s:]+:[^/@\s]+@", re.IGNORECASE)


def check(ctx):
    file = ctx.project_file
    if file.document is None:
        return
    data = file.document.data
    if not isinstance(data, dict):
        return
    # field and event catalogues hold type names, not values
    settings = {key: value for key, value in data.items() if key not in ("contact_fields", "events", "segments")}
    for path, value in _walk((), settings):
        key = path[-1] if path and isinstance(path[-1], str) else ""
        named = key.endswith("_env") or (len(path) > 1 and path[-2] == "headers_env")  # a variable's name
        if isinstance(value, str) and value and key and not named and _SECRET_KEY.search(key):
            yield ctx.problem(file, path, f"`{key}` holds a secret written into mauto.yaml; put it in an environment "
                                          f"variable and name it with `{key}_env: VARIABLE`", key=True)
        elif isinstance(value, str) and _URL_CREDENTIALS.search(value):
            yield ctx.problem(file, path, f"`{key or 'value'}` holds a URL with a password in it; "
                                          "keep credentials in environment variables")


def _walk(path, value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(path + (key,), item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(path + (index,), item)
    else:
        yield path, value
