"""Message templates: front matter, the template's own line numbers, SMS segments, strict rendering."""
from __future__ import annotations

from pathlib import Path

import pytest

from mauto.templates import TemplateProblem, TemplateSet, sms_segments, split_front_matter, uses_unsubscribe
from mauto.workflow.loader import Pos


@pytest.fixture
def templates(tmp_path: Path, write_files):
    """A TemplateSet over tmp_path/templates; call it with {name: text} to write templates first."""

    def make(files: dict[str, str | bytes]) -> TemplateSet:
        write_files(tmp_path / "templates", files)
        return TemplateSet(tmp_path / "templates", tmp_path)

    return make


LAYOUT = """
    <html>
    {% block body %}{% endblock %}
    <p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
    </html>
"""


# --- front matter ------------------------------------------------------------------

def test_split_front_matter():
    assert split_front_matter("---\nsubject: x\n---\nbody\nmore") == ("subject: x", 4, "body\nmore")
    assert split_front_matter("---\nsubject: x\nfrom: y\n---\n") == ("subject: x\nfrom: y", 5, "")
    assert split_front_matter("---  \nsubject: x\n---\t\nbody") == ("subject: x", 4, "body")


@pytest.mark.parametrize("text", ["no front matter\n", "---x\nsubject: x\n---\nb", " ---\nsubject: x\n---\n", ""])
def test_no_front_matter(text):
    assert split_front_matter(text) == (None, 1, text)


def test_unclosed_front_matter_takes_the_whole_file():
    assert split_front_matter("---\nsubject: x\n") == ("subject: x\n", 4, "")


def test_front_matter_is_read_with_positions_in_the_file(templates):
    info = templates({"a/hi.email.html": "---\nsubject: Hi {{ contact.first_name }}\npreheader: P\n---\n<p>x</p>\n"}) \
        .info("a/hi.email.html")
    assert info.error is None
    assert info.front.data == {"subject": "Hi {{ contact.first_name }}", "preheader": "P"}
    assert info.front.pos(("preheader",))[:2] == (3, 12)
    assert info.front.key_pos(("preheader",))[:2] == (3, 1)
    # names used in the subject are placed on the subject's line
    assert info.contact_fields == {"first_name": Pos(2, 24)}


@pytest.mark.parametrize(("text", "error"), [
    ("<p>no front</p>\n",
     "templates/t.email.html:1:1: email template has no front matter; "
     "start it with `---`, a `subject:` line and `---`"),
    ("---\npreheader: Hi\n---\nbody\n",
     "templates/t.email.html:2:1: front matter has no `subject:`; every email needs one"),
    ("---\nsubject: Hi\ncolour: red\n---\nbody\n",
     "templates/t.email.html:3:1: unknown front matter key `colour`; allowed: subject, preheader, from, reply_to"),
    ("---\nsubject: ''\n---\nbody\n",
     "templates/t.email.html:2:10: front matter `subject` must be a non-empty string"),
    ("---\n- subject\n---\nbody\n",
     "templates/t.email.html:2:1: front matter must be a mapping with `subject:`"),
    ("---\nsubject: [Hi\n---\nbody\n",
     "templates/t.email.html:3:1: front matter: invalid YAML: did not find expected ',' or ']'"),
    ("---\nsubject: Hi\nsubject: again\n---\nbody\n",
     "templates/t.email.html:3:1: front matter: duplicate key `subject`"),
])
def test_front_matter_problems_at_the_files_own_line(templates, text, error):
    info = templates({"t.email.html": text}).info("t.email.html")
    assert isinstance(info.error, TemplateProblem)
    assert str(info.error).startswith(error)


def test_duplicate_front_matter_key_names_the_files_line(templates):
    info = templates({"t.email.html": "---\nsubject: Hi\nsubject: again\n---\nbody\n"}).info("t.email.html")
    assert "first defined at line 2" in str(info.error)


def test_sms_templates_have_no_front_matter(templates):
    info = templates({"a/hi.sms.txt": "Hi {{ contact.first_name }}, 20% off today\n"}).info("a/hi.sms.txt")
    assert info.error is None and info.front is None
    assert info.contact_fields == {"first_name": Pos(1, 15)}
    assert info.literal_text == "Hi , 20% off today\n"


def test_a_template_that_is_not_utf8(templates):
    info = templates({"a/hi.sms.txt": b"Hi\ncaf\xe9\n"}).info("a/hi.sms.txt")
    assert str(info.error) == "templates/a/hi.sms.txt:2:1: template is not UTF-8"


# --- line numbers of the body -------------------------------------------------------------

def test_a_syntax_error_in_the_body_is_at_the_files_own_line(templates):
    text = """
        ---
        subject: Hello
        preheader: A short line
        ---
        <p>Hello</p>
        {% if contact.first_name %}
        <p>{{ contact.first_name }</p>
        {% endif %}
    """
    info = templates({"a/broken.email.html": text}).info("a/broken.email.html")
    assert str(info.error) == "templates/a/broken.email.html:7:1: template syntax error: unexpected '}'"


def test_a_syntax_error_in_the_subject_is_on_the_subject_line(templates):
    info = templates({"a/s.email.html": '---\nsubject: "Hi {{ contact.first_name }"\n---\nbody\n'}) \
        .info("a/s.email.html")
    assert str(info.error) == "templates/a/s.email.html:2:10: template syntax error: unexpected '}'"


def test_a_syntax_error_in_an_sms_is_at_its_line(templates):
    info = templates({"a/s.sms.txt": "line one\nline two {% for %}\n"}).info("a/s.sms.txt")
    assert info.error.line == 2
    assert info.error.message.startswith("template syntax error:")


def test_names_and_fields_are_placed_on_the_files_lines(templates):
    text = """
        ---
        subject: Hi
        ---
        {% extends "layouts/base.html" %}
        {% block body %}
        <p>Hello {{ contact.first_name }}, your code is {{ vars.coupon }}.</p>
        <p>{{ event.cart_value | round(2) }}</p>
        {% endblock %}
    """
    info = templates({"a/hi.email.html": text, "layouts/base.html": LAYOUT}).info("a/hi.email.html")
    assert info.error is None
    assert info.contact_fields == {"first_name": Pos(6, 21)}
    assert info.vars == {"coupon": Pos(6, 57)}
    assert info.event_properties == {"cart_value": Pos(7, 13)}
    assert info.filters == {"round": Pos(7, 26)}
    assert set(info.names) == {"contact", "vars", "event"}
    assert info.references == ["layouts/base.html"]


def test_a_field_inside_an_html_attribute_is_placed_at_its_column(templates):
    info = templates({"a/hi.sms.txt": 'Visit <a href="{{ contact.website }}">us</a>\n'}).info("a/hi.sms.txt")
    assert info.contact_fields == {"website": Pos(1, 27)}


def test_lineage_follows_extends_and_finds_the_unsubscribe_link(templates):
    text = '---\nsubject: Hi\n---\n{% extends "layouts/base.html" %}\n{% block body %}x{% endblock %}\n'
    template_set = templates({"a/hi.email.html": text, "layouts/base.html": LAYOUT, "a/bare.email.html":
                              "---\nsubject: Hi\n---\n<p>no link</p>\n"})
    lineage = template_set.lineage("a/hi.email.html")
    assert [info.name for info in lineage] == ["a/hi.email.html", "layouts/base.html"]
    assert uses_unsubscribe(lineage)
    assert not uses_unsubscribe(template_set.lineage("a/bare.email.html"))


def test_available_templates_by_channel(templates):
    template_set = templates({"cart/one.email.html": "---\nsubject: s\n---\n", "cart/two.sms.txt": "x",
                              "cart/one.email.txt": "x", "layouts/base.html": LAYOUT})
    assert template_set.available("email") == ["cart/one"]
    assert template_set.available("sms") == ["cart/two"]
    assert template_set.file_name("email", "cart/one") == "cart/one.email.html"
    assert template_set.exists("cart/two.sms.txt") and not template_set.exists("cart/nope.sms.txt")


# --- SMS segments --------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("", (1, 0, "GSM-7")),
    ("a" * 160, (1, 160, "GSM-7")),
    ("a" * 161, (2, 161, "GSM-7")),
    ("a" * 306, (2, 306, "GSM-7")),
    ("a" * 307, (3, 307, "GSM-7")),
    ("é" * 160, (1, 160, "GSM-7")),        # é is in the GSM-7 basic set
    ("Ç@£$¥\n" * 10, (1, 60, "GSM-7")),
    ("€" * 80, (1, 160, "GSM-7")),         # extended characters count two
    ("€" * 81, (2, 162, "GSM-7")),
    ("a" * 159 + "[", (2, 161, "GSM-7")),
    ("{}[]~|^\\", (1, 16, "GSM-7")),
    ("ç", (1, 1, "UCS-2")),                 # lowercase ç is not GSM-7
    ("ç" * 70, (1, 70, "UCS-2")),
    ("ç" * 71, (2, 71, "UCS-2")),
    ("ç" * 134, (2, 134, "UCS-2")),
    ("ç" * 135, (3, 135, "UCS-2")),
    ("a" * 69 + "ç", (1, 70, "UCS-2")),     # one character outside GSM-7 makes the whole text UCS-2
    ("😀" * 35, (1, 70, "UCS-2")),          # outside the BMP: two UTF-16 units each
    ("😀" * 36, (2, 72, "UCS-2")),
])
def test_sms_segments(text, expected):
    assert sms_segments(text) == expected


# --- rendering -------------------------------------------------------------------------------

def test_render_strips_front_matter_and_autoescapes_html(templates):
    text = ('---\nsubject: Hi\n---\n{% extends "layouts/base.html" %}\n'
            '{% block body %}<p>Hello {{ contact.first_name }}</p>{% endblock %}\n')
    template_set = templates({"a/hi.email.html": text, "layouts/base.html": LAYOUT})
    rendered = template_set.render("a/hi.email.html", {"contact": {"first_name": "<Ana & Bo>"},
                                                       "unsubscribe_url": "https://x.example/u?a=1&b=2"})
    assert rendered == ('<html>\n<p>Hello &lt;Ana &amp; Bo&gt;</p>\n'
                        '<p><a href="https://x.example/u?a=1&amp;b=2">Unsubscribe</a></p>\n</html>\n')


def test_text_templates_are_not_escaped(templates):
    template_set = templates({"a/hi.sms.txt": "Hi {{ contact.first_name }} & <b>\n"})
    assert template_set.render("a/hi.sms.txt", {"contact": {"first_name": "A&B"}}) == "Hi A&B & <b>\n"


def test_render_is_strict_about_undefined_names_and_names_the_line(templates):
    text = "---\nsubject: Hi\n---\nline four\nline five {{ contact.nope }}\n"
    template_set = templates({"a/u.email.html": text})
    with pytest.raises(TemplateProblem) as caught:
        template_set.render("a/u.email.html", {"contact": {}})
    assert str(caught.value) == "templates/a/u.email.html:5: cannot render: 'dict object' has no attribute 'nope'"
    with pytest.raises(TemplateProblem, match="'contact' is undefined"):
        template_set.render("a/u.email.html", {})


def test_render_a_syntax_error_and_a_missing_template(templates):
    template_set = templates({"a/s.email.html": "---\nsubject: Hi\n---\nok\n{{ x }\n"})
    with pytest.raises(TemplateProblem) as caught:
        template_set.render("a/s.email.html", {})
    assert str(caught.value) == "templates/a/s.email.html:5: template syntax error: unexpected '}'"
    with pytest.raises(TemplateProblem) as caught:
        template_set.render("a/none.email.html", {})
    assert str(caught.value) == "templates/a/none.email.html: template `a/none.email.html` not found"


def test_an_error_in_a_layout_names_the_layout(templates):
    layout = "<html>\n{% block body %}{% endblock %}\n<p>{{ contact.footer_note }}</p>\n</html>\n"
    child = '---\nsubject: Hi\n---\n{% extends "layouts/base.html" %}\n{% block body %}Hello{% endblock %}\n'
    template_set = templates({"a/child.email.html": child, "layouts/base.html": layout})
    with pytest.raises(TemplateProblem) as caught:
        template_set.render("a/child.email.html", {"contact": {}})
    assert str(caught.value).startswith("templates/layouts/base.html:3: cannot render")


def test_render_is_sandboxed(templates):
    template_set = templates({"a/x.sms.txt": "{{ contact.__class__.__mro__ }}\n"})
    with pytest.raises(TemplateProblem, match="unsafe"):
        template_set.render("a/x.sms.txt", {"contact": {}})


def test_render_string_for_workflow_values(templates):
    template_set = templates({})
    assert template_set.render_string("Hi {{ contact.first_name }}", {"contact": {"first_name": "A&B"}}) == "Hi A&B"
    with pytest.raises(TemplateProblem) as caught:
        template_set.render_string("Hi {{ x }}", {}, where="workflows/w.yaml")
    assert str(caught.value) == "workflows/w.yaml: cannot render `Hi {{ x }}`: 'x' is undefined"


@pytest.mark.parametrize("body", ["Hi {{ contact.first_name | uper }}\n", "{{ contact.phone is nuber }}\n"])
def test_an_unknown_filter_is_a_finding_not_a_crash(templates, body):
    info = templates({"a/typo.sms.txt": body}).info("a/typo.sms.txt")
    reported = str(info.error or "") + " ".join(info.filters) + " ".join(info.tests)
    assert "uper" in reported or "nuber" in reported
