"""`start` steps must not form a cycle between workflows: a contact would be enrolled over and over.

Reported on the `start` step of each workflow in the cycle.

Bad:

```yaml
# workflows/a.yaml
id: a
steps: [{start: b}]
# workflows/b.yaml
id: b
steps: [{start: a}]
```

Good:

```yaml
# workflows/a.yaml
id: a
steps: [{start: b}]
# workflows/b.yaml
id: b
steps: [{email: done/thanks}]
```
"""
from __future__ import annotations

from mauto.lint.context import SourceFile
from mauto.workflow.model import Step

ID = "start-cycle"
LEVEL = "error"


def check(ctx):
    edges: dict[str, list[tuple[str, SourceFile, Step]]] = {}
    for file, workflow in ctx.workflows:
        for step in workflow.iter_steps():
            if step.kind == "start":
                edges.setdefault(workflow.id, []).append((step.value, file, step))
    reported = set()
    for start in sorted(edges):
        cycle = _find_cycle(start, edges)
        if cycle is None or cycle[0] != start:
            continue
        text = " → ".join(cycle + [cycle[0]])
        for index, workflow_id in enumerate(cycle):
            target = cycle[(index + 1) % len(cycle)]
            for to, file, step in edges[workflow_id]:
                if to == target and (workflow_id, step.path) not in reported:
                    reported.add((workflow_id, step.path))
                    yield ctx.problem(file, step.path + ("start",),
                                      f"`start: {target}` closes a cycle {text}; a contact would be enrolled "
                                      "again and again: remove one of the start steps")


def _find_cycle(origin, edges):
    """The shortest cycle through `origin`, as a list of workflow ids starting there, or None."""
    frontier = [[origin]]
    seen = {origin}
    while frontier:
        next_frontier = []
        for path in frontier:
            for target, _, _ in edges.get(path[-1], []):
                if target == origin:
                    return path
                if target not in seen:
                    seen.add(target)
                    next_frontier.append(path + [target])
        frontier = next_frontier
    return None
