"""`phone_region` in `mauto.yaml` must be a region whose numbers mauto can read (ISO 3166 alpha-2, e.g. FR).

It is the country whose national numbers (`06 12 34 56 78`) imports read contacts' phones in; one that
phonenumbers does not know would make every store command refuse the project, so lint says it first.

Bad:

```yaml
phone_region: XX
```

Good:

```yaml
phone_region: FR
```
"""
from __future__ import annotations

ID = "phone-region"
LEVEL = "error"


def check(ctx):
    from mauto.addresses import check_region

    region = ctx.project.data.get("phone_region") if ctx.project_file.document else None
    if not isinstance(region, str) or len(region) != 2 or not region.isalpha() or not region.isupper():
        return  # absent, or not two capital letters: the schema says so
    try:
        check_region(region)
    except ValueError as error:
        yield ctx.problem(ctx.project_file, ("phone_region",), f"`phone_region`: {error}")
