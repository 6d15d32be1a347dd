"""The few HTML pages a recipient sees: unsubscribe (a button, never a change on GET), done, the preference
centre, and the page of a link that does not work. Plain HTML with inline style: no script, no cookie, no
external resource (nothing loads from anywhere but this page)."""
from __future__ import annotations

from html import escape

_STYLE = ("body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d1d1f;background:#f5f5f7;"
          "margin:0;padding:2rem 1rem}main{max-width:32rem;margin:0 auto;background:#fff;border-radius:12px;"
          "padding:2rem;box-shadow:0 1px 3px rgba(0,0,0,.1)}h1{font-size:1.4rem;margin:0 0 1rem}"
          "button{font:inherit;padding:.6rem 1.2rem;border:0;border-radius:8px;background:#1d1d1f;color:#fff;"
          "cursor:pointer}fieldset{border:0;padding:0;margin:0 0 1rem}label{display:block;margin:.4rem 0}"
          "p.small{color:#6e6e73;font-size:.9rem}a{color:#0066cc}")


def page(title: str, body: str) -> str:
    """A whole page; `body` is HTML already escaped by the caller."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<meta name="robots" content="noindex,nofollow"><title>{escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><main><h1>{escape(title)}</h1>{body}</main></body></html>\n")


def masked(address: str | None) -> str:
    """`a•••@example.com` / `+33 •••• 78`: enough for people to know it is theirs, not enough to learn it."""
    if not address:
        return "your address"
    if "@" in address:
        local, _, domain = address.rpartition("@")
        return f"{local[:1]}•••@{domain}"
    return f"{address[:3]} •••• {address[-2:]}" if len(address) > 5 else "••••"


CHANNEL_WORDS = {"email": "emails", "sms": "text messages"}


def unsubscribe(action: str, channel: str, address: str | None, preferences: str | None) -> str:
    """The page a GET of an unsubscribe link shows: one button, which POSTs (a GET changes nothing: link
    scanners follow every link of a message)."""
    more = (f'<p class="small">Or <a href="{escape(preferences)}">choose what you receive</a>.</p>'
            if preferences else "")
    return page("Unsubscribe", (
        f"<p>Stop {CHANNEL_WORDS[channel]} to <strong>{escape(masked(address))}</strong>?</p>"
        f'<form method="post" action="{escape(action)}">'
        '<input type="hidden" name="source" value="page">'
        f"<button type=\"submit\">Unsubscribe</button></form>{more}"))


def done(channel: str, address: str | None, preferences: str | None = None) -> str:
    more = (f'<p class="small"><a href="{escape(preferences)}">Choose what else you receive</a>.</p>'
            if preferences else "")
    return page("You are unsubscribed", (
        f"<p>You will get no more {CHANNEL_WORDS[channel]} from us at "
        f"<strong>{escape(masked(address))}</strong>.</p>"
        '<p class="small">Messages already on their way may still arrive in the next few minutes.</p>' + more))


def gone() -> str:
    return page("You are unsubscribed", "<p>There is nothing more to do: we hold no address for you.</p>")


def preferences(action: str, channels: list[tuple[str, str | None, bool]], lists: list[tuple[str, str]],
                saved: bool = False) -> str:
    """The preference centre: a box per channel the contact has an address on (ticked: still receiving) and
    per list of `serve.lists` they are on; unticking and saving leaves it."""
    rows = [f'<label><input type="checkbox" name="channel" value="{escape(channel)}"{" checked" if on else ""}> '
            f"{escape(CHANNEL_WORDS[channel].capitalize())} to {escape(masked(address))}</label>"
            for channel, address, on in channels]
    rows += [f'<label><input type="checkbox" name="list" value="{escape(name)}" checked> {escape(label)}</label>'
             for name, label in lists]
    note = '<p class="small">Saved.</p>' if saved else ""
    if not rows:
        return page("Your preferences", f"{note}<p>You receive nothing from us.</p>")
    return page("Your preferences", (
        f'{note}<form method="post" action="{escape(action)}"><input type="hidden" name="form" value="preferences">'
        f'<fieldset>{"".join(rows)}</fieldset><button type="submit">Save</button></form>'))


def not_found() -> str:
    return page("This link does not work", "<p>The link is incomplete or was changed. Open it again from the "
                                           "message, or reply to the message to reach us.</p>")
