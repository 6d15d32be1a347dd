"""Open and click tracking in the HTML of an email: its links rewritten through mauto's click URLs
(`rewrite_links`), and the open pixel (`add_pixel`). Pure functions over text; the renderer calls them on each
tracked email's HTML.

The HTML is read as a browser reads it, by a tokenizer that follows the WHATWG HTML tokenizer's states
(html.spec.whatwg.org §13.2.5), and the changes are spliced into the original text: whatever is not rewritten
stays byte for byte as written (other attributes and their quotes, comments, `<style>`, `<script>`, text,
template leftovers). Why not `html.parser.HTMLParser`: in Python 3.11 it raises on `<![if !mso]>`-like
declarations (Word and Outlook write those), ends comments at `-- >` and carries on after an unclosed `<!--`, ends
an unquoted value at a no-break space, reads `href==x` as `x`, does not end a script at `</script x>`, reads
links inside `<title>` and `<textarea>`, and decodes `&region=` in a URL as `®ion=`, where browsers leave it:
each time a link a browser follows would be missed, or text it does not read as a link would be changed.

Where the tokenizer depends on the tree builder, it decides by tag name alone, as in HTML content, always erring
toward leaving a link alone:

- `<title>` and `<textarea>` (RCDATA), `<style>`, `<xmp>`, `<iframe>`, `<noembed>`, `<noframes>` (RAWTEXT) and
  `<script>` (script data, with its escaped states) hold text, and `<plaintext>` makes the rest text; inside
  inline SVG or MathML a browser reads those as markup, so a link there (rare) is left alone;
- `<noscript>` holds markup, as in a mail client, which runs no script;
- a CDATA section is read up to `]]>`, as in SVG; a browser reading it as HTML ends it at its first `>`.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from html.entities import html5 as _ENTITIES
from typing import NamedTuple
from urllib.parse import urlsplit

OPT_OUT_ATTRIBUTE = "data-mauto-track"  # <a href="…" data-mauto-track="off">: this link is not rewritten
OPT_OUT_VALUES = frozenset({"off", "false", "no"})

_WHITESPACE = "\t\n\f\r "  # ASCII whitespace, as HTML knows it (not \v, not U+00A0)
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# A tag after its `<` (or `</`): the name, then attributes, then `>` or `/>`. Each attribute is a name (which may
# begin with `=`), then maybe `=` and a value: double-quoted, single-quoted, or unquoted up to whitespace or `>`.
# Possessive and atomic: each character is read once, never tried again (no backtracking on a long tag). A quote
# left open runs to the end of the text, where `close` is missing: the tag is dropped, as browsers drop it.
_NAME = r"[^\t\n\f\r />][^\t\n\f\r />=]*+"
_VALUE = r""""[^"]*+"?|'[^']*+'?|[^\t\n\f\r >"'][^\t\n\f\r >]*+"""
_ATTRIBUTES = rf"(?:[\t\n\f\r ]++|/(?!>)|(?>{_NAME}(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+(?:{_VALUE})?)?))*+"
_TAG = re.compile(rf"(?P<name>[A-Za-z][^\t\n\f\r />]*+){_ATTRIBUTES}(?P<close>/?>)?")
# What `_tags` passes over in one call, because no edit can be there: text, and whole constructs, each read as
# `_tags` reads it: a start tag other than `<a>`, `<area>`, `<script>` and `<plaintext>` (a text element's with its
# text, up to its end tag); an end tag other than `</body>`; a `<` that opens nothing; a DOCTYPE, `<![if …]>`,
# `</ …>` or `<?…>` up to `>`; a comment, ended as `_comment_end` ends it. It stops before anything else, and
# before what runs to the end of the text (a tag cut off, an unclosed comment or text element): `_tags` reads
# those one at a time. Most tags of an email are passed over, so `_tags` builds no `_Tag` for them.
_NAME_END = r"(?![^\t\n\f\r />])"  # the name ends here: whitespace, `/`, `>` or the end of the text
# A text element (RCDATA or RAWTEXT) with its text, up to its end tag (`_TEXT_ELEMENTS`), which must be there.
_SKIPPED_TEXT_ELEMENTS = "".join(
    rf"| <(?i:{name}){_NAME_END}{_ATTRIBUTES}/?>(?:[^<]++|<(?!/(?i:{name})[\t\n\f\r />]))*+(?=<)"
    for name in ("title", "textarea", "style", "xmp", "iframe", "noembed", "noframes"))
_SKIP = re.compile(rf"""(?:
    [^<]++
  | <(?![A-Za-z!/?])
  | <(?!(?i:a|area|title|textarea|style|xmp|iframe|noembed|noframes|script|plaintext){_NAME_END})
    [A-Za-z][^\t\n\f\r />]*+{_ATTRIBUTES}/?>
  | </(?!(?i:body){_NAME_END})[A-Za-z][^\t\n\f\r />]*+{_ATTRIBUTES}/?>
  | <(?:!(?!--|\[CDATA\[)|/(?![A-Za-z])|\?)[^>]*+>
  | <!--(?:>|->|(?:[^-]++|-(?!-!?>))*+--!?>)
  {_SKIPPED_TEXT_ELEMENTS}
)*+""", re.VERBOSE | re.ASCII)
_ATTRIBUTE = re.compile(rf"(?P<name>{_NAME})(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+(?P<value>{_VALUE})?)?")

# Where text elements end: `</name` and whitespace, `/` or `>`, in ASCII case only (re.ASCII: no `ſ` for `s`).
_TEXT_ELEMENTS = {name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE | re.ASCII)
                  for name in ("title", "textarea", "style", "xmp", "iframe", "noembed", "noframes")}
# A script ends at `</script`, unless inside `<!--` … `-->` a `<script` began ("double escaped"), where
# `</script` only goes back to the escaped state (§13.2.5.4-5.26).
_SCRIPT_DATA = re.compile(r"</script[\t\n\f\r />]|<!--", re.IGNORECASE | re.ASCII)
_SCRIPT_ESCAPED = re.compile(r"-->|</script[\t\n\f\r />]|<script[\t\n\f\r />]", re.IGNORECASE | re.ASCII)
_SCRIPT_DOUBLE_ESCAPED = re.compile(r"-->|</script[\t\n\f\r />]", re.IGNORECASE | re.ASCII)
_COMMENT_END = re.compile("--!?>")
_OPT_OUT = re.compile(OPT_OUT_ATTRIBUTE, re.IGNORECASE | re.ASCII)
# What `_opt_out_at` searches for: its `-` is found as fast as a plain string, the first letter of an
# ignore-case pattern ten times slower.
_OPT_OUT_TAIL = re.compile(OPT_OUT_ATTRIBUTE[4:], re.IGNORECASE | re.ASCII)

_REFERENCE = re.compile(r"&(?:#[xX](?P<hex>[0-9A-Fa-f]+);?|#(?P<decimal>[0-9]+);?|(?P<name>[A-Za-z0-9]++;?))")
_LONGEST_ENTITY = max(map(len, _ENTITIES))
# §13.2.5.80: numeric references to C1 controls mean the windows-1252 characters at those bytes.
_WINDOWS_1252 = {0x80: 0x20AC, 0x82: 0x201A, 0x83: 0x0192, 0x84: 0x201E, 0x85: 0x2026, 0x86: 0x2020, 0x87: 0x2021,
                 0x88: 0x02C6, 0x89: 0x2030, 0x8A: 0x0160, 0x8B: 0x2039, 0x8C: 0x0152, 0x8E: 0x017D, 0x91: 0x2018,
                 0x92: 0x2019, 0x93: 0x201C, 0x94: 0x201D, 0x95: 0x2022, 0x96: 0x2013, 0x97: 0x2014, 0x98: 0x02DC,
                 0x99: 0x2122, 0x9A: 0x0161, 0x9B: 0x203A, 0x9C: 0x0153, 0x9E: 0x017E, 0x9F: 0x0178}
_C0_OR_SPACE = "".join(map(chr, range(0x21)))  # what the URL parser strips from both ends
_TAB_OR_NEWLINE = str.maketrans("", "", "\t\n\r")  # and what it drops everywhere
_HTTP = re.compile(r"https?://[^/\\?#]", re.IGNORECASE | re.ASCII)

_PIXEL = '<img src="{}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px" />'


class _Tag(NamedTuple):
    name: str  # ASCII-lowercased
    is_end: bool
    start: int  # at its `<`
    attributes_start: int  # just after its name
    attributes_end: int  # at its `>` or `/>`
    end: int  # just after its `>`


class _Attribute(NamedTuple):
    name: str  # ASCII-lowercased
    start: int
    end: int
    value_start: int  # where its value begins (with its quote); -1 when it has none


def _ascii_lower(text: str) -> str:
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def _tags(html: str, opt_outs: bool = False) -> Iterator[_Tag]:
    """The start and end tags of `html` that a browser reads as tags and that may need an edit, in order: at least
    every `<a>` and `<area>` start tag, every `</body>` end tag and, when `opt_outs`, every tag whose attributes
    hold the opt-out attribute's name; never those inside comments, text elements, CDATA or a tag cut off by the
    end of the text."""
    position, length = 0, len(html)
    skip = _SKIP.match
    # With opt-outs, a tag holding `data-mauto-track` must be yielded, never passed over: `opt_out` is where the
    # next one begins (`length` when none, or without opt-outs); when `skip` would pass it, what comes before it
    # is read one construct at a time, up to `careful_until`.
    opt_out = _opt_out_at(html, 0, length) if opt_outs else -1
    if opt_out < 0:
        opt_out = length
    careful_until = -1
    while True:
        if position > careful_until:
            if opt_out < position:
                opt_out = _opt_out_at(html, position, length)
                if opt_out < 0:
                    opt_out = length
            skipped = skip(html, position)
            assert skipped is not None  # it matches the empty string
            if skipped.end() > opt_out:
                careful_until = opt_out
            else:
                position = skipped.end()
        opening = html.find("<", position)
        if opening < 0 or opening + 1 >= length:
            return
        following = html[opening + 1]
        if following in _LETTERS or (following == "/" and html[opening + 2:opening + 3] in _LETTERS):
            is_end = following == "/"
            found = _TAG.match(html, opening + 2 if is_end else opening + 1)
            assert found is not None  # the name's first letter is there
            if found.group("close") is None:  # cut off at the end: no tag, and nothing after it either
                return
            name = _ascii_lower(found.group("name"))
            yield _Tag(name, is_end, opening, found.end("name"), found.start("close"), found.end())
            position = found.end() if is_end else _content_end(html, name, found.end())
        elif following in "/!?":
            position = _markup_end(html, opening)
        else:  # a `<` that opens nothing
            position = opening + 1
        if position < 0:  # the rest is text or a comment
            return


def has_opt_out(html: str) -> bool:
    """Whether `html` holds the opt-out attribute's name anywhere (ASCII case-insensitive, as it is removed):
    then even a message whose links are not tracked goes through `rewrite_links`, to remove it."""
    return _opt_out_at(html, 0, len(html)) >= 0


def _opt_out_at(html: str, start: int, end: int) -> int:
    """Where the first `data-mauto-track` (ASCII case-insensitive) in `html[start:end]` begins, or -1:
    `_OPT_OUT.search(html, start, end)`, faster."""
    position = start + 4
    while True:
        found = _OPT_OUT_TAIL.search(html, position, end)
        if found is None:
            return -1
        if _OPT_OUT.match(html, found.start() - 4, end):
            return found.start() - 4
        position = found.start() + 1


def _content_end(html: str, name: str, position: int) -> int:
    """Where markup resumes after the start tag `name` that ends at `position`: at once, or, after a text element,
    at its end tag; -1 when the rest is text."""
    if name in _TEXT_ELEMENTS:
        found = _TEXT_ELEMENTS[name].search(html, position)
        return found.start() if found is not None else -1
    if name == "script":
        return _script_end(html, position)
    return -1 if name == "plaintext" else position


def _markup_end(html: str, opening: int) -> int:
    """Just after the comment, CDATA section, declaration or bogus comment (`</` and no letter, `<?`) at
    `opening`, or -1 when it runs to the end."""
    if html.startswith("<!--", opening):
        return _comment_end(html, opening)
    if html.startswith("<![CDATA[", opening):
        end = html.find("]]>", opening + 9)
        return end + 3 if end >= 0 else -1
    end = html.find(">", opening + 2)  # a DOCTYPE, `<![if !mso]>`, `</ …>`, `</>`, `<?…>`: up to `>`
    return end + 1 if end >= 0 else -1


def _comment_end(html: str, opening: int) -> int:
    """Just after the comment that begins at `opening` (`<!--`), or -1 when it runs to the end: at `-->` or `--!>`,
    where `<!-->` and `<!--->` are whole comments but `<!--!>` is not (§13.2.5.43-52)."""
    position = opening + 2
    while True:
        found = _COMMENT_END.search(html, position)
        if found is None:
            return -1
        if found.group() == "--!>" and found.start() < opening + 4:
            position = found.start() + 1
            continue
        return found.end()


def _script_end(html: str, position: int) -> int:
    """Where the script whose text begins at `position` ends (at its `</script`), or -1 when it runs to the end."""
    pattern = _SCRIPT_DATA
    while True:
        found = pattern.search(html, position)
        if found is None:
            return -1
        token = found.group()
        if token == "-->":  # from (double) escaped back to script data
            pattern, position = _SCRIPT_DATA, found.end()
        elif token == "<!--":  # its dashes count toward a `-->`: `<!-->` escapes and ends at once
            pattern, position = _SCRIPT_ESCAPED, found.start() + 2
        elif token[1] == "/":
            if pattern is not _SCRIPT_DOUBLE_ESCAPED:
                return found.start()
            pattern, position = _SCRIPT_ESCAPED, found.end()
        else:  # `<script` inside `<!--`
            pattern, position = _SCRIPT_DOUBLE_ESCAPED, found.end()


def _attributes(html: str, tag: _Tag) -> list[_Attribute]:
    return [_Attribute(_ascii_lower(found.group("name")), found.start(), found.end(), found.start("value"))
            for found in _ATTRIBUTE.finditer(html, tag.attributes_start, tag.attributes_end)]


def _raw_value(html: str, attribute: _Attribute) -> str:
    raw = html[attribute.value_start:attribute.end] if attribute.value_start >= 0 else ""
    return raw[1:-1] if raw[:1] in ('"', "'") else raw


def _reference(found: re.Match[str]) -> str:
    """A character reference in an attribute value as a browser decodes it (§13.2.5.72-80)."""
    digits, base = (found.group("hex"), 16) if found.group("hex") is not None else (found.group("decimal"), 10)
    if digits is not None:
        digits = digits.lstrip("0")
        number = int(digits or "0", base) if len(digits) <= 7 else 0x110000  # past U+10FFFF, however many digits
        if number == 0 or number > 0x10FFFF or 0xD800 <= number <= 0xDFFF:
            return "\ufffd"
        return chr(_WINDOWS_1252.get(number, number))
    name = found.group("name")
    for size in range(min(len(name), _LONGEST_ENTITY), 0, -1):  # the longest name in the table wins
        entity = name[:size]
        if entity in _ENTITIES:
            break
    else:
        return found.group()
    if not entity.endswith(";"):
        # In an attribute, a legacy name without `;` followed by `=` or a letter or digit is left as written
        # (`?a=1&region=eu` keeps its `&reg`).
        after = name[size:size + 1] or found.string[found.end():found.end() + 1]
        if after == "=" or (after.isascii() and after.isalnum()):
            return found.group()
    return _ENTITIES[entity] + name[size:]


def _decoded(raw: str) -> str:
    """An attribute's raw value as a browser reads it: NUL as U+FFFD, character references decoded."""
    if "\0" in raw:
        raw = raw.replace("\0", "\ufffd")
    return _REFERENCE.sub(_reference, raw) if "&" in raw else raw


def _escaped(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;")


def _link(value: str) -> str | None:
    """The URL a browser follows from an href's decoded value, when it is an absolute http(s) URL: the ends
    stripped of C0 controls and spaces, tabs and newlines dropped, as the URL parser does.

    None too for one `urlsplit` refuses (a host holding a character that NFKC makes `#`, `/`, `?`, `@` or `:`,
    such as a fullwidth `＃`; an unclosed `[`): browsers refuse those hosts as well (IDNA maps the character the
    same way), and the server, which splits the URL to redirect to it, could not."""
    url = value.strip(_C0_OR_SPACE)
    if "\t" in url or "\n" in url or "\r" in url:  # rare, and `translate` is slow
        url = url.translate(_TAB_OR_NEWLINE)
    if not _HTTP.match(url):
        return None
    try:
        urlsplit(url)
    except ValueError:
        return None
    return url


def rewrite_links(html: str, click_url: Callable[[str], str | None]) -> str:
    """`html` with the href of every `<a>` and `<area>` start tag that is an absolute http(s) URL replaced by
    `click_url(URL)`; `click_url` answers None to leave a link alone.

    - The URL handed to `click_url` is the one a browser follows: the first `href` (a repeated one is ignored,
      as browsers ignore it), character references decoded as in an attribute (`&amp;` is `&`, but `&region=`
      stays), C0 controls and spaces stripped from both ends and tabs and newlines dropped. "Absolute http(s)":
      `http://` or `https://` (any case) and a host; one `urllib.parse.urlsplit` refuses is left alone (no
      browser follows it either). The new href is written in double quotes, `&` and `"` escaped.
    - A link whose tag has `data-mauto-track` set to "off", "false" or "no" (ASCII case-insensitive, spaces
      around ignored; the first such attribute counts) is left alone; any other value, or none, tracks. The
      attribute is removed from every tag (a mail client has no use for it), with the whitespace before it,
      keeping what the rest of the tag says.
    - Links a browser does not read are left alone: in comments (so in Outlook's conditional comments
      `<!--[if mso]>…<![endif]-->`, whose links, such as VML buttons, only Outlook follows, untracked), in
      `<script>`, `<style>`, `<title>`, `<textarea>`, CDATA; and so are `mailto:`, `tel:`, `#anchors`,
      protocol-relative and relative links. A `<base href>` is not applied: a relative link stays as written.
    - Everything else is unchanged, byte for byte.
    """
    if "<" not in html:
        return html
    return track(html, click_url, None)


def track(html: str, click_url: Callable[[str], str | None], pixel_url: str | None) -> str:
    """`add_pixel(rewrite_links(html, click_url), pixel_url)` (no pixel when `pixel_url` is None) in one pass
    over the tags: each alone reads every tag, which is most of their time."""
    opt_outs = _opt_out_at(html, 0, len(html)) >= 0
    edits: list[tuple[int, int, str]] = []
    body_end = -1
    for tag in _tags(html, opt_outs):
        if tag.is_end:
            if tag.name == "body":
                body_end = tag.start
            if not opt_outs:
                continue
        is_link = not tag.is_end and tag.name in ("a", "area")
        has_opt_out = opt_outs and _opt_out_at(html, tag.attributes_start, tag.attributes_end) >= 0
        if has_opt_out:
            edits += _tag_edits(html, tag, is_link, click_url)
        elif is_link:
            edit = _link_edit(html, tag, click_url)
            if edit is not None:
                edits.append(edit)
    if pixel_url is not None:
        pixel = _PIXEL.format(_escaped(pixel_url))
        if body_end < 0:
            edits.append((len(html), len(html), pixel))
        else:  # before the tag's own edits (an opt-out attribute on `</body>`): they begin after its `<`
            edits.append((body_end, body_end, pixel))
            edits.sort(key=lambda edit: edit[0])  # stable: the pixel stays before an edit at the same place
    if not edits:
        return html
    pieces: list[str] = []
    position = 0
    for start, end, replacement in edits:
        pieces += (html[position:start], replacement)
        position = end
    pieces.append(html[position:])
    return "".join(pieces)


def _link_edit(html: str, tag: _Tag, click_url: Callable[[str], str | None]) -> tuple[int, int, str] | None:
    """The edit of a link whose tag holds no opt-out attribute (`_tag_edits` without them): its first href's value
    replaced, or None when it stays."""
    for found in _ATTRIBUTE.finditer(html, tag.attributes_start, tag.attributes_end):
        if _ascii_lower(found.group("name")) == "href":
            value_start, value_end = found.start("value"), found.end()
            if value_start < 0:
                return None
            raw = html[value_start:value_end]  # never empty: a value is at least one character
            url = _link(_decoded(raw[1:-1] if raw[0] in "\"'" else raw))
            new_href = click_url(url) if url is not None else None
            return None if new_href is None else (value_start, value_end, '"' + _escaped(new_href) + '"')
    return None


def _tag_edits(html: str, tag: _Tag, is_link: bool,
               click_url: Callable[[str], str | None]) -> list[tuple[int, int, str]]:
    """The (start, end, replacement) edits of one tag, in order: its link's value, its opt-out attributes."""
    attributes = _attributes(html, tag)
    href = next((attribute for attribute in attributes if attribute.name == "href"), None)
    opt_out = next((attribute for attribute in attributes if attribute.name == OPT_OUT_ATTRIBUTE), None)
    new_href = None
    if is_link and href is not None and href.value_start >= 0 and (
            opt_out is None or _ascii_lower(_decoded(_raw_value(html, opt_out)).strip(_WHITESPACE))
            not in OPT_OUT_VALUES):
        url = _link(_decoded(_raw_value(html, href)))
        new_href = click_url(url) if url is not None else None
    edits = []
    previous: _Attribute | None = None  # the last attribute kept (None: the tag's name)
    removed: list[_Attribute] = []
    for attribute in attributes:
        if attribute.name == OPT_OUT_ATTRIBUTE:
            removed.append(attribute)
            continue
        if removed:
            edits.append(_removal(html, tag, previous, removed, attribute, previous is href and new_href is not None))
            removed = []
        if attribute is href and new_href is not None:
            edits.append((href.value_start, href.end, '"' + _escaped(new_href) + '"'))
        previous = attribute
    if removed:
        edits.append(_removal(html, tag, previous, removed, None, previous is href and new_href is not None))
    return edits


def _removal(html: str, tag: _Tag, previous: _Attribute | None, removed: list[_Attribute], following: _Attribute |
             None, previous_quoted: bool) -> tuple[int, int, str]:
    """The edit that removes the attributes `removed` (one after another) between `previous` (None: the tag's
    name) and `following` (None: the tag's `>` or `/>`).

    What lies between `previous` and `following` becomes the whitespace and slashes before the first removed
    attribute (less its trailing whitespace) and those after the last; then, so that the tag says the same:
    a space where a name or an unquoted value would run into what follows, a slash where an `=` would become
    the value of a valueless attribute, and never a `/` right before `>` (which would make the tag
    self-closing)."""
    start = previous.end if previous is not None else tag.attributes_start
    end = following.start if following is not None else tag.attributes_end
    between = html[start:removed[0].start].rstrip(_WHITESPACE) + html[removed[-1].end:end]
    quoted = previous_quoted or (previous is not None and previous.value_start >= 0
                                 and html[previous.value_start] in "\"'")
    # (an attribute with `=` and no value is always the last before `>`: never `previous` here)
    valueless = previous is not None and previous.value_start < 0
    unquoted = previous is not None and not quoted and not valueless
    next_character = between[:1] or html[end]  # `end` is a following attribute or the tag's `>` or `/>`
    if following is not None and not between and not quoted:
        between = " "
    elif unquoted and next_character not in _WHITESPACE and next_character != ">":
        between = " " + between
    if valueless and following is not None and html[following.start] == "=" and "/" not in between:
        between += "/"
    if following is None and html[end] == ">" and between.endswith("/"):
        between += " "
    return start, end, between


def add_pixel(html: str, url: str) -> str:
    """`html` with the open pixel, `<img src="URL" width="1" height="1" alt="" style="…" />` (URL escaped),
    just before its last `</body>` end tag (ASCII case-insensitive; not one inside a comment, a script or an
    attribute), else at the end."""
    pixel = _PIXEL.format(_escaped(url))
    body_end = -1
    for tag in _tags(html):
        if tag.is_end and tag.name == "body":
            body_end = tag.start
    return html + pixel if body_end < 0 else html[:body_end] + pixel + html[body_end:]
