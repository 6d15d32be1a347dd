"""A marketing email must carry an unsubscribe link: `{{ unsubscribe_url }}` in it or in a layout it extends.

The law (CAN-SPAM, GDPR/ePrivacy) and the mailbox providers (Gmail and Yahoo
bulk-sender rules) require it; mauto also adds the `List-Unsubscribe` header.
Transactional workflows are exempt.

Bad (`templates/promo/sale.email.html`, sent by a marketing workflow):

```html
---
subject: 20% off this weekend
---
<p>Our sale starts now.</p>
```

Good:

```html
---
subject: 20% off this weekend
---
<p>Our sale starts now.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
```
"""
from __future__ import annotations

from mauto.templates import uses_unsubscribe

ID = "unsubscribe-link"
LEVEL = "error"


def check(ctx):
    for file, workflow, step, name in ctx.sends():
        if step.kind != "email" or not workflow.marketing or not ctx.templates.exists(name):
            continue
        lineage = ctx.templates.lineage(name)
        if any(info.error for info in lineage):
            continue
        # a missing layout or partial may hold the link; template-missing reports it
        if any(not ctx.templates.exists(reference) for info in lineage for reference in info.references):
            continue
        if not uses_unsubscribe(lineage):
            yield ctx.problem(file, step.path + ("email",),
                              f"marketing email `{step.value}` has no unsubscribe link; add "
                              f"<a href=\"{{{{ unsubscribe_url }}}}\"> to {ctx.templates.display(name)} or its layout, "
                              "or make the workflow `category: transactional` if it is one")
