"""Open and click tracking in an email's HTML (`mauto/tracking.py`): links rewritten, the open pixel added, and
nothing else touched.

Besides exact outputs for each case, three kinds of property tests:

- documents built from a small grammar of email HTML (links in every form, opt-outs, comments, Outlook
  conditional comments, scripts, styles, titles, CDATA, bases, plain text), where the generator knows what a
  browser reads: rewriting with `lambda url: None` gives the input back (opt-out attributes removed), and
  rewriting with markers hands exactly the URLs a browser follows to `click_url`, in order, and the markers
  come back out of the result parsed with `html.parser.HTMLParser`;
- arbitrary text (`st.text()`) and HTML-ish soup: never an exception, the input back when nothing is asked;
- the soup compared with `reference_tags` below, a character-by-character transcription of the WHATWG
  tokenizer's states (independent of the module's regular expressions): the module hands `click_url` the links
  the reference finds, and the result, tokenized again, holds the same tags and the same text but the
  rewritten hrefs and the removed opt-out attributes.
"""
from __future__ import annotations

import html.entities
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mauto.tracking import OPT_OUT_ATTRIBUTE, add_pixel, rewrite_links

FAST = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
MARK = "https://t.example/c/"


def rewrite(document: str) -> tuple[str, list[str]]:
    """`rewrite_links` with a click function that hands out numbered marks; also the URLs it was given."""
    seen: list[str] = []

    def click(url: str) -> str:
        seen.append(url)
        return f"{MARK}{len(seen)}"

    return rewrite_links(document, click), seen


# --- exact outputs ------------------------------------------------------------------------------------------

REWRITTEN = [
    # (input, output, URLs handed to click_url)
    ('<a href="https://shop.example/p">Buy</a>', '<a href="https://t.example/c/1">Buy</a>',
     ["https://shop.example/p"]),
    ("<a href='http://shop.example/'>x</a>", '<a href="https://t.example/c/1">x</a>', ["http://shop.example/"]),
    ("<a href=https://shop.example/p?a=1>x</a>", '<a href="https://t.example/c/1">x</a>',
     ["https://shop.example/p?a=1"]),
    ('<A HREF="HTTPS://Shop.example/">x</A>', '<A HREF="https://t.example/c/1">x</A>', ["HTTPS://Shop.example/"]),
    ('<a href = "https://shop.example/" >x</a>', '<a href = "https://t.example/c/1" >x</a>',
     ["https://shop.example/"]),
    ('<a href\n=\n"https://shop.example/">x</a>', '<a href\n=\n"https://t.example/c/1">x</a>',
     ["https://shop.example/"]),
    # a `>` inside another attribute's value does not end the tag; the other attribute keeps its quotes
    ("<a title='a > b' class=big href=\"https://shop.example/\" data-x=\"1\">x</a>",
     "<a title='a > b' class=big href=\"https://t.example/c/1\" data-x=\"1\">x</a>", ["https://shop.example/"]),
    ('<a href="https://shop.example/?q=a>b">x</a>', '<a href="https://t.example/c/1">x</a>',
     ["https://shop.example/?q=a>b"]),
    # the first href wins, as in browsers; the second is left as it is
    ('<a href="https://first.example/" href="https://second.example/">x</a>',
     '<a href="https://t.example/c/1" href="https://second.example/">x</a>', ["https://first.example/"]),
    # character references decoded as a browser decodes them in an attribute: `&region=` and `&copy=` stay
    # (a legacy name followed by `=` or a letter is not a reference there), `&not;` with its semicolon is one
    ('<a href="https://shop.example/?a=1&amp;b=2&region=eu&copy=3&notit=4&not;">x</a>',
     '<a href="https://t.example/c/1">x</a>', ["https://shop.example/?a=1&b=2&region=eu&copy=3&notit=4\u00ac"]),
    ('<a href="https://shop.example/?a=1&#38;b=2&#x26;c=3&#38d=4&amp">x</a>',
     '<a href="https://t.example/c/1">x</a>', ["https://shop.example/?a=1&b=2&c=3&d=4&"]),
    ('<a href="https://shop.example/&#0;&#x110000;&#xD800;&#128;&#99999999999999999999999;">x</a>',
     '<a href="https://t.example/c/1">x</a>', ["https://shop.example/\ufffd\ufffd\ufffd\u20ac\ufffd"]),
    ("<a href=https://shop.example/?a=1&amp;b=2>x</a>", '<a href="https://t.example/c/1">x</a>',
     ["https://shop.example/?a=1&b=2"]),
    # surrounding whitespace stripped; tabs and newlines inside dropped, as the URL parser drops them
    ('<a href=" \n\thttps://shop.example/a\nb\t \r\n">x</a>', '<a href="https://t.example/c/1">x</a>',
     ["https://shop.example/ab"]),
    # an unquoted value ends only at ASCII whitespace: a no-break space is part of it
    ("<a href=https://shop.example/a\u00a0b>x</a>", '<a href="https://t.example/c/1">x</a>',
     ["https://shop.example/a\u00a0b"]),
    ("<area shape=rect coords=0,0,10,10 href=https://shop.example/map>",
     '<area shape=rect coords=0,0,10,10 href="https://t.example/c/1">', ["https://shop.example/map"]),
    # attributes not separated by whitespace, or by a slash, are still attributes
    ('<a title="t"href="https://shop.example/">x</a>', '<a title="t"href="https://t.example/c/1">x</a>',
     ["https://shop.example/"]),
    ('<a/href="https://shop.example/">x</a>', '<a/href="https://t.example/c/1">x</a>', ["https://shop.example/"]),
    ('<a href="https://shop.example/"/>', '<a href="https://t.example/c/1"/>', ["https://shop.example/"]),
    # the links an email client shows: after Outlook's downlevel-revealed comments, in noscript, in SVG
    ('<!--[if !mso]><!--><a href="https://shop.example/">x</a><!--<![endif]-->',
     '<!--[if !mso]><!--><a href="https://t.example/c/1">x</a><!--<![endif]-->', ["https://shop.example/"]),
    ('<![if !mso]><a href="https://shop.example/">x</a><![endif]>',
     '<![if !mso]><a href="https://t.example/c/1">x</a><![endif]>', ["https://shop.example/"]),
    ('<noscript><a href="https://shop.example/">x</a></noscript>',
     '<noscript><a href="https://t.example/c/1">x</a></noscript>', ["https://shop.example/"]),
    ('<svg><a href="https://shop.example/"><text>x</text></a></svg>',
     '<svg><a href="https://t.example/c/1"><text>x</text></a></svg>', ["https://shop.example/"]),
    # a script ends at `</script` and a space; what follows is markup
    ("<script>var s = '</script x>'; '<a href=\"https://shop.example/\">'</script>",
     "<script>var s = '</script x>'; '<a href=\"https://t.example/c/1\">'</script>", ["https://shop.example/"]),
    # `<!--` in a script: `</script>` still ends it, unless a `<script` came after the `<!--` ("double escaped"),
    # where `-->` goes back to plain script data
    ('<script><!-- </script><a href="https://shop.example/">x</a> --></script>',
     '<script><!-- </script><a href="https://t.example/c/1">x</a> --></script>', ["https://shop.example/"]),
    ('<script><!--<script>--></script><a href="https://shop.example/">x</a>',
     '<script><!--<script>--></script><a href="https://t.example/c/1">x</a>', ["https://shop.example/"]),
    ('<script><!--<script></script>--></script><a href="https://shop.example/">x</a>',
     '<script><!--<script></script>--></script><a href="https://t.example/c/1">x</a>', ["https://shop.example/"]),
    ('<script><!--></script><a href="https://shop.example/">x</a>',
     '<script><!--></script><a href="https://t.example/c/1">x</a>', ["https://shop.example/"]),
    ('<script><!--><script></script><a href="https://shop.example/">x</a>',
     '<script><!--><script></script><a href="https://t.example/c/1">x</a>', ["https://shop.example/"]),
    # an attribute name runs up to ASCII whitespace: `\u3000href` is no href
    ('<a title=x \u3000href="https://shop.example/">x</a> <a href="https://shop.example/">y</a>',
     '<a title=x \u3000href="https://shop.example/">x</a> <a href="https://t.example/c/1">y</a>',
     ["https://shop.example/"]),
    # `<!-->` and `<!--->` are whole comments
    ('<!--><a href="https://shop.example/">x</a><!--->', '<!--><a href="https://t.example/c/1">x</a><!--->',
     ["https://shop.example/"]),
    # template leftovers around a link stay as they are
    ('{% if vip %}<a href="https://shop.example/{{ id }}">{{ name }}</a>{% endif %}',
     '{% if vip %}<a href="https://t.example/c/1">{{ name }}</a>{% endif %}', ["https://shop.example/{{ id }}"]),
    # several links, in order
    ('<p><a href="https://a.example/">a</a> <a href="mailto:x@y.example">m</a> <a href="https://b.example/">b</a>',
     '<p><a href="https://t.example/c/1">a</a> <a href="mailto:x@y.example">m</a> <a href="https://t.example/c/2">b</a>',
     ["https://a.example/", "https://b.example/"]),
]


@pytest.mark.parametrize(("document", "expected", "urls"), REWRITTEN)
def test_links_are_rewritten(document: str, expected: str, urls: list[str]) -> None:
    assert rewrite(document) == (expected, urls)


UNTOUCHED = [
    '<a href="mailto:someone@example.com">mail</a>',
    '<a href="tel:+15555550100">call</a>',
    '<a href="#top">top</a>',
    '<a href="/products/1">relative</a>',
    '<a href="products/1">relative</a>',
    '<a href="//cdn.example/x">protocol-relative</a>',
    '<a href="ftp://files.example/x">ftp</a>',
    '<a href="javascript:alert(1)">js</a>',
    '<a href="http:shop.example">no slashes</a>',
    '<a href="https://">no host</a>',
    # URLs urllib.parse.urlsplit refuses (the server could not redirect to them) are dead links in browsers too:
    # a fullwidth number sign or U+2100 in the host becomes `#` or `/` under IDNA mapping; an unclosed `[`
    '<a href="http://\uff03x/">fullwidth #</a>',
    '<a href="http://a\u2100b/">account of</a>',
    '<a href="http://[::1/">unclosed bracket</a>',
    '<a href="{{ url }}">leftover</a>',
    "<a href>no value</a>",
    "<a href=>empty</a>",
    '<a href==https://shop.example/>the value is "=https://…"</a>',
    # a base is not resolved: a relative link stays relative, and the base itself is not a link
    '<base href="https://shop.example/"><a href="p/1">x</a>',
    '<link rel="stylesheet" href="https://cdn.example/s.css"><img src="https://cdn.example/i.png">',
    '<p>href="https://shop.example/"</p> <p>&lt;a href="https://shop.example/"&gt;</p>',
    # comments, Outlook conditional comments (their links are for Outlook only), bogus comments
    '<!-- <a href="https://shop.example/"> -->',
    '<!--[if mso]><v:roundrect href="https://shop.example/"><a href="https://shop.example/">x</a>'
    "</v:roundrect><![endif]-->",
    '<!-- a -- > <a href="https://shop.example/"> -->',
    '<!-- unterminated <a href="https://shop.example/">',
    '<!--!> <a href="https://shop.example/"> -->',
    '<? <a href="https://shop.example/"> ?>',
    '</ <a href="https://shop.example/">',
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">',
    # raw text and escapable raw text: style, script, title, textarea, xmp, iframe, noembed, noframes, plaintext
    '<style>/* <a href="https://shop.example/"> */ a[href^="http"] { color: red }</style>',
    '<script>document.write(\'<a href="https://shop.example/">\')</script>',
    '<script><!--<script>\'</script>\'<a href="https://shop.example/">--></script>',
    '<script><!--<script></script><a href="https://shop.example/">--></script>',
    '<script><!--<SCRIPT/></script ><a href="https://shop.example/"></script>',
    '<style></styles><a href="https://shop.example/"></style>',
    '<textarea></textarea<a href="https://shop.example/"></textarea>',
    '<title><a href="https://shop.example/"></title><textarea><a href="https://shop.example/"></textarea>',
    '<xmp><a href="https://shop.example/"></xmp><iframe><a href="https://shop.example/"></iframe>',
    '<noembed><a href="https://shop.example/"></noembed><noframes><a href="https://shop.example/"></noframes>',
    '<plaintext></plaintext><a href="https://shop.example/">',
    # a CDATA section is read up to `]]>`, as in SVG (a browser reading it as HTML ends it at the first `>`):
    # a link inside is left alone either way
    '<![CDATA[ if (a > b) <a href="https://shop.example/"> ]]>',
    # end tags carry no links; a tag cut off at the end of the document is no tag
    '</a href="https://shop.example/">',
    '<a href="https://shop.example/"',
    '<a title="x>" href=\'https://shop.example/',
    "",
    "plain text, no markup at all & an ampersand",
]


@pytest.mark.parametrize("document", UNTOUCHED)
def test_everything_else_is_left_alone(document: str) -> None:
    assert rewrite(document) == (document, [])


def test_a_click_function_answering_none_leaves_the_link() -> None:
    document = '<a href="https://shop.example/unsubscribe">stop</a> <a href="https://shop.example/">go</a>'
    result = rewrite_links(document, lambda url: None if url.endswith("unsubscribe") else "https://t.example/c/x")
    assert result == '<a href="https://shop.example/unsubscribe">stop</a> <a href="https://t.example/c/x">go</a>'


def test_the_new_href_is_escaped() -> None:
    result = rewrite_links("<a href='https://shop.example/'>x</a>", lambda url: 'https://t.example/c?a=1&b="2"')
    assert result == '<a href="https://t.example/c?a=1&amp;b=&quot;2&quot;">x</a>'


OPTED_OUT = [
    ('<a href="https://shop.example/" data-mauto-track="off">x</a>', '<a href="https://shop.example/">x</a>'),
    ('<a data-mauto-track="off" href="https://shop.example/">x</a>', '<a href="https://shop.example/">x</a>'),
    ("<a href=https://shop.example/ data-mauto-track=false>x</a>", "<a href=https://shop.example/>x</a>"),
    ("<a DATA-MAUTO-TRACK='NO' href=https://shop.example/>x</a>", "<a href=https://shop.example/>x</a>"),
    ('<a href="https://shop.example/" data-mauto-track=" Off ">x</a>', '<a href="https://shop.example/">x</a>'),
    ('<a href="https://shop.example/" data-mauto-track="&#111;ff">x</a>', '<a href="https://shop.example/">x</a>'),
    # the first opt-out attribute is the one read; every one is removed
    ('<a href="https://shop.example/" data-mauto-track="off" data-mauto-track="on">x</a>',
     '<a href="https://shop.example/">x</a>'),
    # on any tag, the attribute is removed
    ('<td data-mauto-track="off" class="cell">x</td>', '<td class="cell">x</td>'),
    ("<img src=x.png data-mauto-track=off>", "<img src=x.png>"),
    # removing it never changes what the rest of the tag says
    ('<a href=https://shop.example/ data-mauto-track="off"/>', "<a href=https://shop.example/ />"),
    ('<a href=https://shop.example/ data-mauto-track="off"/title=t>', "<a href=https://shop.example/ /title=t>"),
    ('<a href="https://shop.example/"/data-mauto-track="off">x</a>', '<a href="https://shop.example/"/ >x</a>'),
    ('<a download data-mauto-track="off"=x href="https://shop.example/">', '<a download /=x href="https://shop.example/">'),
    ('<br data-mauto-track="off"/>', "<br/>"),
    ('<a href="https://shop.example/"\tdata-mauto-track="off"\n>x</a>', '<a href="https://shop.example/"\n>x</a>'),
]


@pytest.mark.parametrize(("document", "expected"), OPTED_OUT)
def test_opted_out_links_stay_and_the_attribute_goes(document: str, expected: str) -> None:
    assert rewrite(document) == (expected, [])


TRACKED_ANYWAY = [
    ('<a data-mauto-track="on" href="https://shop.example/">x</a>', '<a href="https://t.example/c/1">x</a>'),
    ('<a href="https://shop.example/" data-mauto-track>x</a>', '<a href="https://t.example/c/1">x</a>'),
    ('<a href="https://shop.example/" data-mauto-track="">x</a>', '<a href="https://t.example/c/1">x</a>'),
    # a vertical tab is not ASCII whitespace to HTML: not stripped, so not "off"
    ('<a href="https://shop.example/" data-mauto-track="\x0boff">x</a>', '<a href="https://t.example/c/1">x</a>'),
    # the first one is read: here it does not opt out
    ('<a data-mauto-track="yes" data-mauto-track="off" href="https://shop.example/">x</a>',
     '<a href="https://t.example/c/1">x</a>'),
    # KELVIN SIGN is not an ASCII `k`: no browser reads this as data-mauto-track, and neither do we
    ('<a data-mauto-trac\u212a="off" href="https://shop.example/">x</a>',
     '<a data-mauto-trac\u212a="off" href="https://t.example/c/1">x</a>'),
]


@pytest.mark.parametrize(("document", "expected"), TRACKED_ANYWAY)
def test_other_opt_out_values_track(document: str, expected: str) -> None:
    assert rewrite(document) == (expected, ["https://shop.example/"])


def test_opt_out_attribute_inside_a_comment_stays() -> None:
    document = '<!--[if mso]><a href="https://shop.example/" data-mauto-track="off">x</a><![endif]-->'
    assert rewrite(document) == (document, [])


def test_opt_out_name() -> None:
    assert OPT_OUT_ATTRIBUTE == "data-mauto-track"


# --- the open pixel -----------------------------------------------------------------------------------------

PIXEL = ('<img src="https://t.example/o/abc" width="1" height="1" alt="" '
         'style="display:block;border:0;width:1px;height:1px" />')

PIXELS = [
    ("<html><body><p>Hi</p></body></html>", f"<html><body><p>Hi</p>{PIXEL}</body></html>"),
    ("<HTML><BODY><p>Hi</p></BODY ></HTML>", f"<HTML><BODY><p>Hi</p>{PIXEL}</BODY ></HTML>"),
    ("<body>a</body>b</body>c", f"<body>a</body>b{PIXEL}</body>c"),
    # a `</body>` that is no end tag (in a comment, a script, an attribute) is not the place
    ("<body>a</body><!-- </body> -->", f"<body>a{PIXEL}</body><!-- </body> -->"),
    ('<body><script>"</body>"</script><p title="</body>">x</p>', f'<body><script>"</body>"</script>'
     f'<p title="</body>">x</p>{PIXEL}'),
    ("<p>no body</p>", f"<p>no body</p>{PIXEL}"),
    ("", PIXEL),
]


@pytest.mark.parametrize(("document", "expected"), PIXELS)
def test_pixel(document: str, expected: str) -> None:
    assert add_pixel(document, "https://t.example/o/abc") == expected


def test_pixel_url_is_escaped() -> None:
    assert add_pixel("", 'https://t.example/o/a&b"c') == PIXEL.replace("abc", "a&amp;b&quot;c")


# --- a grammar of email HTML, where the generator knows what a browser reads --------------------------------


@dataclass
class Piece:
    """Part of a document: its source, its source without opt-out attributes, and the URLs a browser follows
    from it that should be tracked, in order."""

    source: str
    without_opt_out: str
    urls: list[str] = field(default_factory=list)


def joined(pieces: list[Piece]) -> Piece:
    return Piece("".join(p.source for p in pieces), "".join(p.without_opt_out for p in pieces),
                 [url for p in pieces for url in p.urls])


QUERY_NAMES = ["a", "region", "copy", "not", "amp", "lang", "utm_source", "para", "sect2"]


@st.composite
def http_urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTPS", "Http"]))
    host = draw(st.sampled_from(["shop.example", "www.example.com", "xn--bcher-kva.example", "127.0.0.1:8080"]))
    path = draw(st.text(alphabet="abcXYZ019-._~/%", max_size=12))
    query = draw(st.lists(st.tuples(st.sampled_from(QUERY_NAMES), st.text(alphabet="abc019-+", max_size=4)),
                          max_size=4))
    url = f"{scheme}://{host}/{path}"
    if query:
        url += "?" + "&".join(f"{name}={value}" for name, value in query)
    return url


@st.composite
def encoded(draw: st.DrawFn, url: str) -> str:
    """`url` as an attribute value may write it: each `&` as `&amp;`, `&#38;`, `&#x26;` or bare (a bare `&`
    before a name and `=` is no reference in an attribute)."""
    parts = url.split("&")
    out = parts[0]
    for part in parts[1:]:
        out += draw(st.sampled_from(["&amp;", "&#38;", "&#x26;", "&"])) + part
    return out


OTHER_HREFS = ["mailto:someone@example.com", "tel:+15555550100", "#top", "/products/1", "{{ url }}",
               "//cdn.example/x", "ftp://files.example/", "javascript:void(0)", ""]


@st.composite
def attribute(draw: st.DrawFn, name: str, value: str | None) -> str:
    """`name=value` in one of the ways HTML allows (quotes, spaces around `=`)."""
    if value is None:
        return name
    around = draw(st.sampled_from(["", "", " ", "\n"]))
    quote = draw(st.sampled_from(['"', "'", ""]) if value and not any(c in value for c in " \t\n\"'=<>`")
                 else st.sampled_from(['"', "'"]))
    if quote and quote in value:
        quote = "'" if quote == '"' else '"'
    return f"{name}{around}={around}{quote}{value}{quote}"


@st.composite
def link(draw: st.DrawFn) -> Piece:
    tag = draw(st.sampled_from(["a", "A", "area", "AREA"]))
    tracked = draw(st.booleans())
    url = draw(http_urls()) if tracked else draw(st.sampled_from(OTHER_HREFS))
    padding = draw(st.sampled_from(["", "", " ", "\n  ", "\t"])) if tracked else ""
    href_name = draw(st.sampled_from(["href", "HREF", "Href"]))
    attributes = [draw(attribute(href_name, padding + draw(encoded(url)) + padding[::-1]))]
    if draw(st.booleans()):  # a second href: ignored by browsers
        attributes.append(draw(attribute("href", "https://second.example/")))
    for name, value in draw(st.lists(st.sampled_from([("title", "a > b"), ("class", "button"), ("target", "_blank"),
                                                      ("style", "color:#fff;"), ("download", None)]), max_size=3)):
        attributes.insert(draw(st.integers(0, len(attributes))), draw(attribute(name, value)))
    opt_out = draw(st.one_of(st.none(), st.sampled_from(["off", "false", "no", "OFF", " No ", "on", "yes", "true",
                                                         "", None])))
    opted_out = isinstance(opt_out, str) and opt_out.strip().lower() in ("off", "false", "no")
    kept = list(attributes)
    if draw(st.booleans()) and (opt_out is not None or draw(st.booleans())):
        name = draw(st.sampled_from([OPT_OUT_ATTRIBUTE, OPT_OUT_ATTRIBUTE.upper()]))
        attributes.insert(draw(st.integers(0, len(attributes))), draw(attribute(name, opt_out)))
    else:
        opted_out = False
    close = draw(st.sampled_from([">", " />"]))
    inner = draw(st.sampled_from(["", "Shop now", "<img src=x.png alt=x>"]))
    end = f"</{tag}>" if tag.lower() == "a" else ""
    return Piece(f"<{tag} {' '.join(attributes)}{close}{inner}{end}", f"<{tag} {' '.join(kept)}{close}{inner}{end}",
                 [url.strip()] if tracked and not opted_out else [])


def fixed(source: str, urls: tuple[str, ...] = ()) -> Piece:
    return Piece(source, source, list(urls))


HIDDEN = '<a href="https://hidden.example/">hidden</a>'
FIXED = [
    fixed("<!DOCTYPE html>"), fixed("<html>"), fixed("<head>"), fixed('<meta charset="utf-8">'), fixed("</head>"),
    fixed("<body>"), fixed("</body>"), fixed("</html>"), fixed("<p>"), fixed("</p>"), fixed("<br/>"),
    fixed(f"<!-- {HIDDEN} -->"), fixed(f"<!--[if mso]>{HIDDEN}<![endif]-->"),
    fixed('<!--[if mso]><v:roundrect href="https://hidden.example/" fillcolor="#f00"></v:roundrect><![endif]-->'),
    fixed(f"<script>document.write('{HIDDEN}');</script>"), fixed(f"<style>/* {HIDDEN} */ p {{ margin: 0 }}</style>"),
    fixed(f"<title>{HIDDEN}</title>"), fixed(f"<textarea>{HIDDEN}</textarea>"), fixed(f"<![CDATA[ {HIDDEN} ]]>"),
    fixed('<base href="https://base.example/">'), fixed('<link rel="stylesheet" href="https://cdn.example/s.css">'),
    fixed('<img src="https://cdn.example/i.png" alt="">'), fixed("</a>"),
    Piece('<td data-mauto-track="off" class="c">', '<td class="c">'),
]
TEXT = st.text(alphabet=" abcxyz019&;=\"'/>{}%#\n\u00e9", max_size=20).map(
    lambda text: fixed(text.replace("&", "&amp;")))


@st.composite
def documents(draw: st.DrawFn) -> Piece:
    pieces = draw(st.lists(st.one_of(link(), st.sampled_from(FIXED), TEXT, st.just(fixed("< "))), max_size=25))
    if draw(st.booleans()):  # Outlook's downlevel-revealed comment around some of them: shown by other clients
        middle = draw(st.integers(0, len(pieces)))
        pieces[middle:middle] = [fixed("<!--[if !mso]><!-->"), draw(link()), fixed("<!--<![endif]-->")]
    return joined(pieces)


class Links(HTMLParser):
    """The first href of every a and area start tag, as HTMLParser reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("a", "area"):
            self.hrefs.append(next((value for name, value in attrs if name == "href"), None))


def hrefs(document: str) -> list[str | None]:
    parser = Links()
    parser.feed(document)
    parser.close()
    return parser.hrefs


@FAST
@given(documents())
def test_nothing_asked_nothing_changed(document: Piece) -> None:
    assert rewrite_links(document.source, lambda url: None) == document.without_opt_out


@FAST
@given(documents())
def test_marks_go_in_and_come_out(document: Piece) -> None:
    def mark(url: str) -> str:
        seen.append(url)
        return f'{MARK}{len(seen)}?a=1&b="{url.count("&")}"'

    seen: list[str] = []
    result = rewrite_links(document.source, mark)
    assert seen == document.urls
    marks = [href for href in hrefs(result) if href is not None and href.startswith(MARK)]
    assert marks == [f'{MARK}{n}?a=1&b="{url.count("&")}"' for n, url in enumerate(seen, 1)]


# --- arbitrary text -----------------------------------------------------------------------------------------

SOUP = st.lists(st.sampled_from([
    "<", ">", "/", "!", "-", "--", "?", "=", '"', "'", " ", "\n", "\t", "\f", "\r", "\x00", "&", "&amp;", "&#",
    "&#x", "&not", ";", "a", "A", "area", "href", "HREF", "https://x.example/", "http://", "data-mauto-track", "off",
    "body", "script", "SCRIPT", "style", "title", "textarea", "plaintext", "xmp", "iframe", "noembed", "noframes",
    "noscript", "<!--", "-->", "--!>", "<![CDATA[", "]]>", "<![", "]>", "<!DOCTYPE", "</", "/>", "x", "\u00a0",
    "\u212a", "\u0130", "\u017f", "\u3000", "\x0b",
    # whole constructs, so that they meet often
    "<script>", "</script>", "</script x>", "<SCRIPT>", "<style>", "</style>", "<title>", "</title>", "<textarea>",
    "</textarea>", "<xmp>", "</xmp>", "<noscript>", "<plaintext>", "<a href=https://x.example/>",
    '<a href="https://x.example/?a=1&amp;b">', "<area href='http://y.example/'>", '<a href="/relative">',
    "<a data-mauto-track=off href=https://x.example/>", '<p data-mauto-track="no">', " data-mauto-track=off",
    "</a>", "</body>", "<!-->", "<!--->", "<!--[if mso]>", "<![endif]-->", "<![if !mso]>", "<![endif]>",
]), max_size=60).map("".join)


SEPARATORS = st.sampled_from(["", " ", " ", "\n", "\t", "/", " / ", "//", "\f", "\r\n", "\x0b", "\u00a0"])
NAMES = st.sampled_from(["href", "HREF", "href", OPT_OUT_ATTRIBUTE, OPT_OUT_ATTRIBUTE, "DATA-Mauto-Track", "download",
                         "=", "=x", "title", "x", "\u212aref", "'", "<"])
VALUES = st.one_of(
    st.sampled_from(["off", "OFF", "no", "on", "https://x.example/", "http://y.example/?a=1&amp;b=2&region=1",
                     "/x", "x/", "=", "a>b", "", " false "]),
    st.text(alphabet="ab/=>'\" &;#x\n", max_size=6))


@st.composite
def soup_attributes(draw: st.DrawFn, names: st.SearchStrategy[str] = NAMES) -> str:
    name = draw(names)
    if draw(st.integers(0, 3)) == 0:
        return name
    equals = draw(st.sampled_from(["=", "=", " = ", "\n="]))
    value = draw(VALUES)
    quote = draw(st.sampled_from(['"', "'", ""]))
    return f"{name}{equals}{quote}{value}{quote}"


@st.composite
def soup_tags(draw: st.DrawFn, names: st.SearchStrategy[str] = NAMES,
              separators: st.SearchStrategy[str] = SEPARATORS) -> str:
    name = draw(st.sampled_from(["a", "A", "area", "p", "td", "br", "img", "body", "/a", "/body", "script", "style",
                                 "textarea", "noscript"]))
    parts = [f"<{name}"]
    for attribute in draw(st.lists(soup_attributes(names), max_size=5)):
        parts += [draw(separators), attribute]
    parts += [draw(separators), draw(st.sampled_from([">", ">", "/>", " />", ""]))]
    return "".join(parts)


# tags dense with opt-out attributes, among the neighbours their removal could change: valueless attributes,
# names that begin with `=`, unquoted values, slashes
OPT_OUT_NEIGHBOURS = st.sampled_from([OPT_OUT_ATTRIBUTE] * 4 + ["href", "download", "=", "=x", "x"])
SEPARATORS_NEAR_OPT_OUT = st.sampled_from(["", "", " ", "/", " /", "/ ", "\n"])

SCRIPT_PARTS = st.sampled_from(["<!--", "-->", "--", "-", "<!-", "<!-->", "<script>", "<SCRIPT ", "<scripts>",
                                "</script>", "</script x>", "</script", "</scripty>", "<", ">", "x", "'",
                                "<a href=https://x.example/>"])
COMMENT_PARTS = st.sampled_from(["--", "-", "!", ">", "<!--", "-->", "--!>", "<!", "x", " ", "<a href=https://x.example/>"])
TAG_SOUP = st.lists(st.one_of(
    soup_tags(),
    st.lists(SCRIPT_PARTS, max_size=8).map(lambda parts: "<script>" + "".join(parts)),
    st.lists(COMMENT_PARTS, max_size=8).map(lambda parts: "<!" + "".join(parts)),
    st.sampled_from(["text ", "&amp;", "< ", "</", "</>", "<?x>", "<![CDATA[x>]]>", "<![if !mso]>", "</style>",
                     "</textarea>", "<plaintext>"]),
), max_size=12).map("".join)


@FAST
@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    result = rewrite_links(text, lambda url: "https://t.example/c/1")
    assert isinstance(result, str)
    assert isinstance(add_pixel(text, "https://t.example/o/1"), str)
    if OPT_OUT_ATTRIBUTE not in text.lower():
        assert rewrite_links(text, lambda url: None) == text


@FAST
@given(st.one_of(SOUP, TAG_SOUP))
def test_soup_without_opt_out_comes_back(soup: str) -> None:
    if OPT_OUT_ATTRIBUTE not in soup.lower():
        assert rewrite_links(soup, lambda url: None) == soup


# --- a reference tokenizer, one character at a time ----------------------------------------------------------

WHITESPACE = "\t\n\f\r "
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
RCDATA_OR_RAWTEXT = {"title", "textarea", "style", "xmp", "iframe", "noembed", "noframes"}


def lower(text: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


@dataclass
class Tag:
    end_tag: bool
    name: str
    start: int
    stop: int = -1
    attributes: list[tuple[str, str | None]] = field(default_factory=list)  # raw values, quotes removed
    self_closing: bool = False

    def first(self, name: str) -> tuple[str, str | None] | None:
        return next((attribute for attribute in self.attributes if attribute[0] == name), None)


def reference_tags(html: str) -> list[Tag]:
    """The tags of `html`, read by the WHATWG tokenizer's states (html.spec.whatwg.org §13.2.5) one character at
    a time, with the tree builder's switches to RCDATA/RAWTEXT/script data/PLAINTEXT made by tag name (as in
    HTML content; mauto does the same), CDATA sections read up to `]]>`, DOCTYPEs as bogus comments (both end at
    the first `>`), and duplicate attributes kept (callers take the first)."""
    return Reference(html).tags


class Reference:
    """The tokenizer: `state` names the state; each method reads the character `c` at `i` in a group of states
    and either consumes it (`i += 1`) or leaves it to be reconsumed in the next state. At the end of the input,
    a tag not yet emitted is dropped."""

    def __init__(self, html: str) -> None:
        self.html, self.i, self.state = html, 0, "data"
        self.tags: list[Tag] = []
        self.tag: Tag | None = None
        self.start = 0  # where the current `<` is
        self.name = self.value = self.quote = self.buffer = self.last_start = ""
        self.has_value = False
        handlers: dict[str, Callable[[str], None]] = {
            "data": self.data, "tag open": self.tag_open, "end tag open": self.end_tag_open,
            "tag name": self.tag_name, "before attribute name": self.before_attribute_name,
            "attribute name": self.attribute_name, "after attribute name": self.after_attribute_name,
            "before attribute value": self.before_attribute_value, "quoted attribute value": self.quoted_value,
            "unquoted attribute value": self.unquoted_value, "after quoted attribute value": self.after_quoted_value,
            "self-closing start tag": self.self_closing_start_tag, "markup declaration open": self.declaration,
            "bogus comment": self.bogus_comment,
        }
        for state in ("comment start", "comment start dash", "comment", "comment <", "comment <!", "comment <!-",
                      "comment end dash", "comment end", "comment end bang"):
            handlers[state] = self.comment
        for state in ("text", "script", "escaped", "double escaped"):
            handlers[state] = self.text
        for state in ("escaped -", "escaped --", "double escaped -", "double escaped --"):
            handlers[state] = self.dashes
        for state in ("text <", "script <", "escaped <", "double escaped <", "script <!"):
            handlers[state] = self.text_less_than
        for state in ("text </", "script </", "escaped </", "double escape start", "double escape end"):
            handlers[state] = self.text_tag_name
        while self.i < len(html) and self.state != "plaintext":
            handlers[self.state](html[self.i])

    def go(self, state: str, consume: int = 1) -> None:
        self.state, self.i = state, self.i + consume

    # tags

    def data(self, c: str) -> None:
        if c == "<":
            self.start = self.i
            self.go("tag open")
        else:
            self.i += 1

    def tag_open(self, c: str) -> None:
        if c == "!":
            self.go("markup declaration open")
        elif c == "/":
            self.go("end tag open")
        elif c in LETTERS:
            self.tag = Tag(False, "", self.start)
            self.go("tag name", 0)
        else:  # `<?` is a bogus comment; anything else is text
            self.go("bogus comment" if c == "?" else "data", 0)

    def end_tag_open(self, c: str) -> None:
        if c in LETTERS:
            self.tag = Tag(True, "", self.start)
            self.go("tag name", 0)
        elif c == ">":
            self.go("data")
        else:
            self.go("bogus comment", 0)

    def tag_name(self, c: str) -> None:
        assert self.tag is not None
        if c in WHITESPACE:
            self.go("before attribute name")
        elif c == "/":
            self.go("self-closing start tag")
        elif c == ">":
            self.emit()
        else:
            self.tag.name += lower(c)
            self.i += 1

    def before_attribute_name(self, c: str) -> None:
        if c in WHITESPACE:
            self.i += 1
        elif c in "/>":
            self.go("after attribute name", 0)
        else:  # a name may begin with `=`
            self.begin_attribute()
            self.name = "=" if c == "=" else ""
            self.go("attribute name", 1 if c == "=" else 0)

    def attribute_name(self, c: str) -> None:
        if c in WHITESPACE or c in "/>":
            self.go("after attribute name", 0)
        elif c == "=":
            self.go("before attribute value")
        else:
            self.name += lower(c)
            self.i += 1

    def after_attribute_name(self, c: str) -> None:
        if c in WHITESPACE:
            self.i += 1
        elif c == "/":
            self.go("self-closing start tag")
        elif c == "=":
            self.go("before attribute value")
        elif c == ">":
            self.emit()
        else:
            self.begin_attribute()
            self.go("attribute name", 0)

    def before_attribute_value(self, c: str) -> None:
        self.has_value = True
        if c in WHITESPACE:
            self.i += 1
        elif c in "\"'":
            self.quote = c
            self.go("quoted attribute value")
        elif c == ">":
            self.emit()
        else:
            self.go("unquoted attribute value", 0)

    def quoted_value(self, c: str) -> None:
        if c == self.quote:
            self.go("after quoted attribute value")
        else:
            self.value += c
            self.i += 1

    def unquoted_value(self, c: str) -> None:
        if c in WHITESPACE:
            self.go("before attribute name")
        elif c == ">":
            self.emit()
        else:
            self.value += c
            self.i += 1

    def after_quoted_value(self, c: str) -> None:
        if c in WHITESPACE:
            self.go("before attribute name")
        elif c == "/":
            self.go("self-closing start tag")
        elif c == ">":
            self.emit()
        else:
            self.go("before attribute name", 0)

    def self_closing_start_tag(self, c: str) -> None:
        if c == ">":
            assert self.tag is not None
            self.tag.self_closing = True
            self.emit()
        else:
            self.go("before attribute name", 0)

    def begin_attribute(self) -> None:
        self.finish_attribute()
        self.name, self.value, self.has_value = "", "", False

    def finish_attribute(self) -> None:
        if self.tag is not None and self.name:
            self.tag.attributes.append((self.name, self.value if self.has_value else None))
        self.name = ""

    def emit(self) -> None:
        """The tag ends at the `>` at `i`; the tree builder switches the tokenizer by its name."""
        tag = self.tag
        assert tag is not None
        self.finish_attribute()
        tag.stop = self.i + 1
        self.tags.append(tag)
        self.tag = None
        state = "data"
        if not tag.end_tag:
            self.last_start = tag.name
            state = "text" if tag.name in RCDATA_OR_RAWTEXT else \
                {"script": "script", "plaintext": "plaintext"}.get(tag.name, "data")
        self.go(state)

    # comments and declarations

    def declaration(self, c: str) -> None:
        if self.html.startswith("--", self.i):
            self.go("comment start", 2)
        elif self.html.startswith("[CDATA[", self.i):
            end = self.html.find("]]>", self.i)
            self.state, self.i = "data", (end + 3 if end >= 0 else len(self.html))
        else:
            self.go("bogus comment", 0)

    def bogus_comment(self, c: str) -> None:
        self.go("data" if c == ">" else "bogus comment")

    def comment(self, c: str) -> None:
        state, dash = self.state, c == "-"
        if state in ("comment start", "comment start dash") and (dash or c == ">"):
            if dash:
                self.go("comment start dash" if state == "comment start" else "comment end")
            else:  # `<!-->`, `<!--->`
                self.go("data")
        elif state == "comment":
            self.go("comment <" if c == "<" else "comment end dash" if dash else "comment")
        elif state == "comment <":
            self.go("comment <!" if c == "!" else "comment <", 1) if c in "!<" else self.go("comment", 0)
        elif state == "comment <!":
            self.go("comment <!-") if dash else self.go("comment", 0)
        elif state == "comment <!-":  # `<!--` inside: as if `--` (via "comment less-than sign bang dash dash")
            self.go("comment end") if dash else self.go("comment end dash", 0)
        elif state == "comment end dash":
            self.go("comment end") if dash else self.go("comment", 0)
        elif state == "comment end":
            if c == ">":
                self.go("data")
            else:
                self.go("comment end bang" if c == "!" else "comment end", 1) if c in "!-" else \
                    self.go("comment", 0)
        elif state == "comment end bang":
            self.go("comment end dash") if dash else self.go("data") if c == ">" else self.go("comment", 0)
        else:  # comment start or comment start dash, anything else
            self.go("comment", 0)

    # RCDATA, RAWTEXT and script data

    def text(self, c: str) -> None:
        if c == "<":
            self.start = self.i
            self.go(self.state + " <")
        elif c == "-" and self.state != "text" and self.state != "script":
            self.go(self.state + " -")
        else:
            self.i += 1

    def dashes(self, c: str) -> None:
        base = self.state.rsplit(" ", 1)[0]
        if c == "-":
            self.go(base + " --")
        elif c == "<":
            self.start = self.i
            self.go(base + " <")
        elif c == ">" and self.state.endswith("--"):
            self.go("script")
        else:
            self.go(base)

    def text_less_than(self, c: str) -> None:
        if self.state == "script <!":
            if self.html.startswith("--", self.i):
                self.go("escaped --", 2)
            else:
                self.go("script", 0)
            return
        base = self.state[:-2]
        self.buffer = ""
        if c == "/":
            self.go("double escape end" if base == "double escaped" else base + " </")
        elif c == "!" and base == "script":
            self.go("script <!")
        elif c in LETTERS and base == "escaped":
            self.go("double escape start", 0)
        else:
            self.go(base, 0)

    def text_tag_name(self, c: str) -> None:
        """After `</` in text, or `<` or `</` in escaped script data: letters go to the buffer; the next
        character decides whether they were a tag (or a switch between escaped and double escaped)."""
        if c in LETTERS:
            self.buffer += lower(c)
            self.i += 1
            return
        ends = c in WHITESPACE or c in "/>"
        if self.state == "double escape start":
            self.go("double escaped" if ends and self.buffer == "script" else "escaped", 1 if ends else 0)
        elif self.state == "double escape end":
            self.go("escaped" if ends and self.buffer == "script" else "double escaped", 1 if ends else 0)
        elif ends and self.buffer and self.buffer == self.last_start:  # the appropriate end tag
            self.tag = Tag(True, self.buffer, self.start)
            self.go("tag name", 0)
        else:
            self.go(self.state[:-3], 0)


def decoded(raw: str) -> str:
    """An attribute value as a browser decodes it (§13.2.5.72-80, in an attribute)."""
    out, i = [], 0
    c1 = {0x80: 0x20AC, 0x82: 0x201A, 0x83: 0x0192, 0x84: 0x201E, 0x85: 0x2026, 0x86: 0x2020, 0x87: 0x2021,
          0x88: 0x02C6, 0x89: 0x2030, 0x8A: 0x0160, 0x8B: 0x2039, 0x8C: 0x0152, 0x8E: 0x017D, 0x91: 0x2018,
          0x92: 0x2019, 0x93: 0x201C, 0x94: 0x201D, 0x95: 0x2022, 0x96: 0x2013, 0x97: 0x2014, 0x98: 0x02DC,
          0x99: 0x2122, 0x9A: 0x0161, 0x9B: 0x203A, 0x9C: 0x0153, 0x9E: 0x017E, 0x9F: 0x0178}
    raw = raw.replace("\x00", "\ufffd")
    while i < len(raw):
        c = raw[i]
        if c != "&":
            out.append(c)
            i += 1
            continue
        if raw[i + 1:i + 2] == "#":
            hexadecimal = raw[i + 2:i + 3] in ("x", "X")
            j = i + 3 if hexadecimal else i + 2
            digits = "0123456789abcdefABCDEF" if hexadecimal else "0123456789"
            k = j
            while k < len(raw) and raw[k] in digits:
                k += 1
            if k == j:
                out.append(raw[i:j])
                i = j
                continue
            number = 0
            for digit in raw[j:k]:
                number = min(number * (16 if hexadecimal else 10) + int(digit, 16), 0x110000)
            if number == 0 or number > 0x10FFFF or 0xD800 <= number <= 0xDFFF:
                number = 0xFFFD
            out.append(chr(c1.get(number, number)))
            i = k + 1 if raw[k:k + 1] == ";" else k
            continue
        best = ""
        for length in range(1, 33):
            candidate = raw[i + 1:i + 1 + length]
            if len(candidate) == length and candidate in html.entities.html5:
                best = candidate
        after = raw[i + 1 + len(best):i + 2 + len(best)]
        if best and (best.endswith(";") or not (after == "=" or after.isascii() and after.isalnum())):
            out.append(html.entities.html5[best])
            i += 1 + len(best)
        else:
            out.append("&")
            i += 1
    return "".join(out)


def followed(raw: str) -> str | None:
    """The URL a browser follows from an href's raw value, if it is an absolute http(s) URL that urlsplit reads,
    else None."""
    url = "".join(c for c in decoded(raw).strip("".join(map(chr, range(33)))) if c not in "\t\n\r")
    scheme, colon, rest = url.partition(":")
    if not (colon and lower(scheme) in ("http", "https") and rest[:2] == "//"
            and rest[2:3] not in ("", "/", "\\", "?", "#")):
        return None
    try:
        urlsplit(url)
    except ValueError:
        return None
    return url


def opted_out(tag: Tag) -> bool:
    found = tag.first(OPT_OUT_ATTRIBUTE)
    return found is not None and lower(decoded(found[1] or "").strip(WHITESPACE)) in ("off", "false", "no")


def links(tags: list[Tag]) -> list[str]:
    """The URLs that should go through click_url: first href of a/area start tags, absolute http(s), not opted
    out."""
    found = []
    for tag in tags:
        href = tag.first("href")
        if not tag.end_tag and tag.name in ("a", "area") and href and href[1] is not None and not opted_out(tag):
            url = followed(href[1])
            if url is not None:
                found.append(url)
    return found


def texts(html: str, tags: list[Tag]) -> list[str]:
    """What lies between the tags."""
    out, position = [], 0
    for tag in tags:
        out.append(html[position:tag.start])
        position = tag.stop
    return [*out, html[position:]]


def test_reference_tokenizer_agrees_with_the_examples() -> None:
    for document, _, urls in REWRITTEN:
        assert links(reference_tags(document)) == urls, document
    for document in UNTOUCHED:
        assert links(reference_tags(document)) == [], document


@settings(FAST, max_examples=1000)
@given(st.one_of(SOUP, TAG_SOUP, documents().map(lambda piece: piece.source)))
def test_against_the_reference_tokenizer(soup: str) -> None:
    assert_rewritten_as_the_reference_reads(soup)


@settings(FAST, max_examples=1000)
@given(st.lists(soup_tags(OPT_OUT_NEIGHBOURS, SEPARATORS_NEAR_OPT_OUT), min_size=1, max_size=3).map("".join))
def test_removing_opt_outs_keeps_the_rest_of_the_tag(soup: str) -> None:
    assert_rewritten_as_the_reference_reads(soup)


def assert_rewritten_as_the_reference_reads(soup: str) -> None:
    """The links the reference finds went to click_url, in order; the result, read again, holds the same text
    and the same tags, the same attributes in the same order, but opt-outs gone and links' hrefs marked."""
    before = reference_tags(soup)
    result, seen = rewrite(soup)
    assert seen == links(before)
    after = reference_tags(result)
    assert texts(result, after) == texts(soup, before)
    assert len(after) == len(before)
    rewritten = iter(range(1, len(seen) + 1))
    for old, new in zip(before, after, strict=True):
        expected = [(name, value) for name, value in old.attributes if name != OPT_OUT_ATTRIBUTE]
        if not old.end_tag and old.name in ("a", "area") and not opted_out(old):
            href = old.first("href")
            if href is not None and href[1] is not None and followed(href[1]) is not None:
                index = expected.index(href)
                expected[index] = ("href", None)
                assert new.attributes[index][1] is not None
                assert decoded(new.attributes[index][1] or "") == f"{MARK}{next(rewritten)}"
                new.attributes[index] = ("href", None)
        assert (new.end_tag, new.name, new.attributes, new.self_closing) == \
            (old.end_tag, old.name, expected, old.self_closing)


# --- size ---------------------------------------------------------------------------------------------------


def test_a_big_document_is_read_once() -> None:
    """Every construct that searches forward (comments, scripts, raw text, references) ends its search at the
    first match, so a document of many of them is read in one pass, not once per construct."""
    piece = ('<!-- c --><a href="https://shop.example/?a=1&amp;b=2" data-mauto-track="on">x</a><script>1</script>'
             "<style>p{}</style><title>t</title><![CDATA[x]]><p title='a > b'>&amp; text</p>\n")
    document = piece * 20000  # 2.3 MB
    result, seen = rewrite(document)
    assert len(seen) == 20000
    assert result.count(MARK) == 20000


def test_click_url_type() -> None:
    # a Callable[[str], str | None] is what the renderer passes: a closure over the message's ref
    click: Callable[[str], str | None] = {"https://shop.example/": "https://t.example/c/z"}.get
    assert rewrite_links('<a href="https://shop.example/">x</a>', click) == '<a href="https://t.example/c/z">x</a>'


# --- one pass: track() is rewrite_links then add_pixel -------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from('<>/="\' abhrefodyx-tmk&!-:.'), max_size=80), st.booleans())
def test_track_is_rewrite_links_then_add_pixel(text: str, pixel: bool) -> None:
    from mauto.tracking import track

    def click(url: str) -> str:
        return "https://t.example/c?u=" + url

    for document in (text, f'<html><body><a href="https://a.example/">x</a>{text}</body></html>',
                     f'<body>{text}<a href="http://b.example" data-mauto-track=off>y</a></BODY>{text}'):
        expected = rewrite_links(document, click)
        if pixel:
            expected = add_pixel(expected, "https://t.example/o")
        assert track(document, click, "https://t.example/o" if pixel else None) == expected


# --- what the tokenizer passes over in one look -------------------------------------------------------------------
# `track` passes over text and the constructs that cannot need an edit (other tags, comments, declarations, text
# elements) in one regular expression, and reads the others one at a time: these are at the border.

LINK = '<a href="https://shop.example/">x</a>'
PASSED_OVER_THEN_LINK = [
    # names that begin as those that matter, but are others
    "<abbr title=t>", "<areas>", "<ab>", "<a-b>", "<a\u00e9>", "<a\u00a0href=https://shop.example/>", "<titles>",
    "<stylex>", "<scripts>", "<plaintexts>", "<\u017ftyle>", "<\u017fcript>", "<textareas>", "</bodyx>",
    "</b\u00f3dy>", "</a>", "</title>", "</script>", "</plaintext>",
    # a value that holds a tag, quoted or not: the tag around it is read whole
    '<p title="<a href=https://other.example/>">', "<p title='>'>", "<p x=<a>",
    # text elements, each up to its own end tag, any case
    "<title><a href=https://other.example/></TITLE>", "<style>x</style\n>", "<STYLE/></style x>",
    "<textarea></textarea/>", "<xmp></xmp>", "<iframe src=x></iframe>", "<noembed></noembed>",
    "<noframes></noframes>", "<title></style></title>", "<title></titles></title>",
    # comments and declarations
    "<!---->", "<!-->", "<!--->", "<!-- -- -->", "<!-- --!>", "<!-- - -> -->", "<!---!> -->",
    "<!--!> -->", "<!DOCTYPE html>", "<![if !mso]>", "<!>", "</>", "</ x>", "<?xml?>", "<![CDATA[<a>]]>",
    # `<` that opens nothing
    "< a>", "<1>", "<< ", "<=",
]


@pytest.mark.parametrize("before", PASSED_OVER_THEN_LINK)
def test_a_link_after_what_is_passed_over(before: str) -> None:
    for document in (before + LINK, before + "text\n" + LINK + "</body>"):
        result, seen = rewrite(document)
        assert seen == ["https://shop.example/"], document
        assert result == document.replace('"https://shop.example/"', f'"{MARK}1"')
        assert_rewritten_as_the_reference_reads(document)


@pytest.mark.parametrize("document", [
    "<a\tHREF=https://shop.example/>", "<AREA href=https://shop.example/>", "<A/href=https://shop.example/>",
    "<p>" * 50 + "<a href=https://shop.example/>",
    "<title>t</title><style>s</style>" + LINK,
])
def test_links_among_what_is_passed_over_are_found(document: str) -> None:
    assert rewrite(document)[1] == ["https://shop.example/"]
    assert_rewritten_as_the_reference_reads(document)


@pytest.mark.parametrize("document", [
    # text that never ends: the rest is text
    "<title>" + LINK, "<style></styl" + LINK, "<xmp>" + LINK + "</xm", "<textarea></textarea" + LINK,
    "<script>" + LINK, "<plaintext>" + LINK, "<!-- " + LINK, "<!--!>" + LINK, "<!---!>" + LINK,
    "<![CDATA[" + LINK,
    # a tag cut off by the end: nothing after it is read
    "<p title='" + LINK, '<p title="' + LINK, "<b" + LINK.replace(">", " "),
])
def test_links_in_what_runs_to_the_end_stay(document: str) -> None:
    assert rewrite(document) == (document, [])
    assert_rewritten_as_the_reference_reads(document)


@pytest.mark.parametrize("body_end", ["</body>", "</BODY >", "</body/>", "</body x=1>"])
def test_the_pixel_goes_before_the_last_body_end_among_other_tags(body_end: str) -> None:
    document = f"<body><p>x</p>{body_end}<!-- </body> --><p>{body_end}<title></body></title></bodyx>"
    position = document.rindex(body_end, 0, document.index("<title>"))
    expected = document[:position] + add_pixel("", "https://t.example/o") + document[position:]
    assert add_pixel(document, "https://t.example/o") == expected


def test_an_opt_out_far_into_a_document_is_removed() -> None:
    """With an opt-out anywhere, the tag holding it is read alone however far it lies among tags that need no
    edit, and only the tags holding one are changed."""
    filler = '<p class="data-mauto-trac">t</p><!-- data-mauto-track --><td title="a > b">' * 200
    document = (filler + '<a href="https://shop.example/" DATA-MAUTO-TRACK=off>x</a>' + filler +
                '<img data-mauto-track src=i>' + filler + '<p title="data-mauto-track">' + LINK)
    expected = (filler + '<a href="https://shop.example/">x</a>' + filler + "<img src=i>" + filler +
                f'<p title="data-mauto-track"><a href="{MARK}1">x</a>')
    assert rewrite(document) == (expected, ["https://shop.example/"])


PASSED_OVER = st.sampled_from([*PASSED_OVER_THEN_LINK, "text", " ", "\n", "data-mauto-track", "<p data-mauto-track>",
                               "<a href=https://x.example/ data-mauto-track=off>", "</body>", "<body>", "<script>",
                               "</script>", "<plaintext>", "<a href='https://y.example/?a&amp;b'>", "<!--", "-->",
                               "<title>", "</title>", "<area href=http://z.example/>", "<p title='", "<b"])


@settings(FAST, max_examples=1000)
@given(st.lists(st.one_of(PASSED_OVER, soup_tags()), max_size=20).map("".join))
def test_what_is_passed_over_against_the_reference_tokenizer(soup: str) -> None:
    assert_rewritten_as_the_reference_reads(soup)
    from mauto.tracking import track

    def click(url: str) -> str:
        return "https://t.example/c?u=" + url

    assert track(soup, click, "https://t.example/o") == add_pixel(rewrite_links(soup, click), "https://t.example/o")
