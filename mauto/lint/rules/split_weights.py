"""A split's variant weights add up to 100.

Bad:

```yaml
- split:
    variants:
      a: {weight: 50, steps: [{email: promo/a}]}
      b: {weight: 40, steps: [{email: promo/b}]}
```

Good (b gets 40%, 10% are a holdout that gets nothing):

```yaml
- split:
    variants:
      a: {weight: 50, steps: [{email: promo/a}]}
      b: {weight: 40, steps: [{email: promo/b}]}
      holdout: {weight: 10}
```
"""
from __future__ import annotations

ID = "split-weights"
LEVEL = "error"


def check(ctx):
    for file, workflow in ctx.workflows:
        for step in workflow.iter_steps():
            if step.kind == "split":
                variants = step.value["variants"]
                total = sum(variant["weight"] for variant in variants.values())
                if total != 100:
                    parts = " + ".join(f"{name} {variant['weight']}" for name, variant in variants.items())
                    yield ctx.problem(file, step.path + ("split", "variants"),
                                      f"split weights add up to {total} ({parts}), not 100; "
                                      "adjust them or add a holdout variant")
