"""Each workflow `id` is used by one file only: the store keys deployments and stats on it.

Reported on every file but the first (in path order) that uses the id.

Bad (two files):

```yaml
# workflows/cart.yaml
id: abandoned-cart
# workflows/cart-v2.yaml
id: abandoned-cart
```

Good:

```yaml
# workflows/cart.yaml
id: abandoned-cart
# workflows/cart-v2.yaml
id: abandoned-cart-sms
```
"""
from __future__ import annotations

ID = "duplicate-workflow-id"
LEVEL = "error"


def check(ctx):
    first: dict[str, object] = {}
    for file in sorted(ctx.files, key=lambda f: f.display):
        data = file.document.data if file.document else None
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            continue
        workflow_id = data["id"]
        if workflow_id in first:
            yield ctx.problem(file, ("id",), f"workflow id `{workflow_id}` is already used by {first[workflow_id]}; "
                                             "give this workflow its own id")
        else:
            first[workflow_id] = file.display
