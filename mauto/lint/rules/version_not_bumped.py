"""With `--base REF`: a workflow whose content changed since REF must have a higher `version`.

The store keys deployments on id + version; `mauto deploy` refuses changed
content under a deployed version number. Content is the parsed YAML, so a
comment-only change needs no bump. This is the check a reviewer wants on
every pull request: `mauto lint --base origin/main`.

Bad (changed since the base, still version 3):

```yaml
id: abandoned-cart
version: 3
steps:
  - wait: 2h           # was 1h
```

Good:

```yaml
id: abandoned-cart
version: 4
steps:
  - wait: 2h
```
"""
from __future__ import annotations

ID = "version-not-bumped"
LEVEL = "error"


def check(ctx):
    if ctx.base is None:
        return
    from mauto.lint.base import base_versions

    previous = base_versions(ctx)
    for file, workflow in ctx.workflows:
        before = previous.get(str(file.path.resolve()))
        if before is None:
            continue
        old_version, old_hash, old_id = before
        if old_id != workflow.id:
            continue
        if workflow.version < old_version:
            yield ctx.problem(file, ("version",), f"version went down from {old_version} to {workflow.version} "
                                                  f"since {ctx.base}; versions only go up")
        elif workflow.version == old_version and old_hash != workflow.content_hash:
            yield ctx.problem(file, ("version",), f"content changed since {ctx.base} but `version` is still "
                                                  f"{workflow.version}; bump it to {workflow.version + 1}")
