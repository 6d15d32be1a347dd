"""An SMS longer than one segment (160 GSM-7 characters, or 70 when it needs Unicode) costs one message per segment.

Counted on the template's literal text alone, before placeholders are
filled, so the real message is at least this long. A warning: fails only with
`--strict`.

Bad (`templates/cart/last-call.sms.txt`):

```text
Hi! Just a friendly reminder that the items you left in your basket are still waiting for you and they might sell out soon, so come back and complete your order today!
```

Good:

```text
Your cart is waiting: complete your order today. Reply STOP to opt out.
```
"""  # noqa: E501 - the bad example is an SMS on one line, as it is sent
from __future__ import annotations

from mauto.lint.problem import Problem
from mauto.templates import sms_segments

ID = "sms-length"
LEVEL = "warning"


def check(ctx):
    for name in ctx.template_files():
        if not name.endswith(".sms.txt"):
            continue
        info = ctx.templates.info(name)
        if info.error is not None:
            continue
        segments, length, encoding = sms_segments(info.literal_text.strip())
        if segments > 1:
            limit = 160 if encoding == "GSM-7" else 70
            why = "" if encoding == "GSM-7" else " (a character outside GSM-7 forces Unicode)"
            yield Problem(info.display_path, 1, 1,
                          message=f"SMS is at least {length} {encoding} characters before placeholders{why}: "
                                  f"{segments} segments, each billed; one segment holds {limit}")
