"""Files must be the YAML mauto reads: UTF-8, one document, no duplicate keys.

PyYAML silently keeps the last of two duplicate keys, expands aliases without
limit and reads non-string keys; mauto refuses all of these, and merge keys,
custom tags and files that are not UTF-8.

Bad:

```yaml
id: welcome
version: 1
version: 2        # duplicate key: which one did you mean?
```

Good:

```yaml
id: welcome
version: 2
```
"""
from __future__ import annotations

ID = "yaml-syntax"
LEVEL = "error"


def check(ctx):
    for file in [ctx.project_file, *ctx.files]:
        error = file.yaml_error
        if error is not None:
            yield ctx.problem(file, _pos(error), error.message)


def _pos(error):
    from mauto.workflow.loader import Pos
    return Pos(error.line or 1, error.col or 1)
