"""Rules about ids and messages: duplicate ids, templates, vars, unsubscribe links, SMS length."""
from __future__ import annotations

import textwrap

import pytest

from .conftest import HELLO_EMAIL, WELCOME_YAML, fails, passes, text

WF = "workflows/welcome.yaml"
HELLO = "templates/welcome/hello.email.html"
HI = "templates/welcome/hi.sms.txt"


def welcome(steps: str, head: str = "") -> str:
    """The welcome workflow with other steps (and extra top-level keys before them); steps start on line 7."""
    return text("""
        id: welcome
        version: 1
        name: Welcome
        trigger:
          event: signed_up
        """) + head + "steps:\n" + textwrap.indent(text(steps), "  ")


def hello_body(body: str) -> str:
    """The hello email with another body line (line 5)."""
    return HELLO_EMAIL.replace("<p>Hello {{ contact.first_name }}</p>", body)


# --- duplicate-workflow-id ----------------------------------------------------

@fails("duplicate-workflow-id")
def test_duplicate_workflow_id_is_reported_on_the_later_file(check):
    check({"workflows/welcome-v2.yaml": WELCOME_YAML}, "duplicate-workflow-id", problem=(1, 5),
          path="workflows/welcome.yaml",
          message="workflow id `welcome` is already used by workflows/welcome-v2.yaml")


@fails("duplicate-workflow-id")
def test_duplicate_workflow_id_quoted_the_same(check):
    check({"workflows/a.yaml": WELCOME_YAML.replace("id: welcome", 'id: "welcome"')},
          "duplicate-workflow-id", problem=(1, 5), path="workflows/welcome.yaml",
          message="already used by workflows/a.yaml")


@passes("duplicate-workflow-id")
def test_duplicate_workflow_id_distinct_ids_pass(check):
    check({"workflows/welcome-sms.yaml": WELCOME_YAML.replace("id: welcome", "id: welcome-sms")},
          "duplicate-workflow-id")


# --- duplicate-step-id --------------------------------------------------------

@fails("duplicate-step-id")
def test_duplicate_step_id(check):
    source = welcome("""
          - id: hello
            email: welcome/hello
          - wait: 1d
          - id: hello
            email: welcome/hello
        """)
    check({WF: source}, "duplicate-step-id", problem=(10, 9),
          message="step id `hello` is already used at line 7; step ids must be unique in a file")


@fails("duplicate-step-id")
def test_duplicate_step_id_between_a_split_and_a_nested_step(check):
    source = welcome("""
          - wait: 1h
          - split:
              id: hello
              variants:
                a: {weight: 50, steps: [{id: hello, email: welcome/hello}]}
                b: {weight: 50}
        """)
    check({WF: source}, "duplicate-step-id", problem=(11, 38), message="step id `hello` is already used at line 9")


@passes("duplicate-step-id")
def test_duplicate_step_id_a_split_may_share_its_steps_id(check):
    source = welcome("""
          - wait: 1h
          - id: subject-test
            split:
              id: subject-test
              variants:
                a: {weight: 50, steps: [{id: hello, email: welcome/hello}]}
                b: {weight: 50, steps: [{id: hello-b, email: welcome/hello}]}
        """)
    check({WF: source}, "duplicate-step-id")


# --- template-missing ---------------------------------------------------------

@fails("template-missing")
def test_template_missing_email_with_suggestion(check):
    source = welcome("""
          - wait: 1h
          - email: welcome/helo
        """)
    check({WF: source}, "template-missing", problem=(8, 12),
          message="email template `welcome/helo` not found: expected templates/welcome/helo.email.html; "
                  "did you mean `welcome/hello`?")


@fails("template-missing")
def test_template_missing_sms_looks_for_the_sms_file(check):
    source = welcome("""
          - wait: 1h
          - sms: welcome/hello
        """)
    check({WF: source}, "template-missing", problem=(8, 10),
          message="expected templates/welcome/hello.sms.txt; did you mean `welcome/hi`?")


@fails("template-missing")
def test_template_missing_layout_is_reported_in_the_template(check):
    # The unsubscribe link may be in the missing layout: only the missing layout is reported.
    email = HELLO_EMAIL.replace("layouts/base.html", "layouts/bse.html")
    check({HELLO: email}, "template-missing", problem=(4, 13), path=HELLO,
          message="template `layouts/bse.html` (extended or included here) not found under templates/")


@fails("template-missing")
def test_template_missing_include(check):
    email = HELLO_EMAIL + '{% include "partials/footer.html" %}\n'
    check({HELLO: email}, "template-missing", problem=(6, 13), path=HELLO, message="`partials/footer.html`")


@passes("template-missing")
def test_template_missing_existing_templates_pass(check):
    source = welcome("""
          - wait: 1h
          - email: welcome/hello
          - sms: welcome/hi
        """)
    check({WF: source, HELLO: HELLO_EMAIL + '{% include "partials/footer.html" %}\n',
           "templates/partials/footer.html": "<p>Shop Inc.</p>\n"}, "template-missing")


# --- template-syntax ----------------------------------------------------------

@fails("template-syntax")
def test_template_syntax_body_error_is_reported_at_the_templates_own_line(check):
    email = text("""
        ---
        subject: Welcome
        preheader: A few words about us
        ---
        {% extends "layouts/base.html" %}
        {% block body %}
        <p>Hello</p>
        <p>Hello {{ contact.first_name }</p>
        {% endblock %}
        """)
    check({HELLO: email}, "template-syntax", problem=(8, 1), path=HELLO,
          message="template syntax error: unexpected '}'")


@fails("template-syntax")
def test_template_syntax_in_the_subject(check):
    email = HELLO_EMAIL.replace("subject: Welcome, {{ contact.first_name }}",
                                "subject: Welcome, {{ contact.first_name }")
    check({HELLO: email}, "template-syntax", problem=(2, 10), path=HELLO, message="unexpected '}'")


@fails("template-syntax")
def test_template_syntax_in_a_layout_is_reported_in_the_layout(check):
    layout = text("""
        <html><body>
        {% block body %}{% endblok %}
        </body></html>
        """)
    check({"templates/layouts/base.html": layout}, "template-syntax", problem=(2, 1),
          path="templates/layouts/base.html", message="unknown tag 'endblok'")


@fails("template-syntax")
def test_template_syntax_unclosed_block(check):
    check({HELLO: HELLO_EMAIL + "{% if contact.first_name %}\nHi\n"}, "template-syntax", problem=(6, 1), path=HELLO,
          message="Unexpected end of template")


@fails("template-syntax")
@pytest.mark.parametrize("email, problem, message", [
    (HELLO_EMAIL.replace("---\n", "", 2), (1, 1), "email template has no front matter"),
    (HELLO_EMAIL.replace("subject:", "subjet:"), (2, 1), "unknown front matter key `subjet`"),
    (HELLO_EMAIL.replace("subject: Welcome, {{ contact.first_name }}", "preheader: Hi"), (2, 1),
     "front matter has no `subject:`"),
    (HELLO_EMAIL.replace("subject: Welcome, {{ contact.first_name }}", "subject: ''"), (2, 10),
     "front matter `subject` must be a non-empty string"),
])
def test_template_syntax_front_matter(check, email, problem, message):
    check({HELLO: email}, "template-syntax", problem=problem, path=HELLO, message=message)


@fails("template-syntax")
def test_template_syntax_sms_and_encoding(check):
    check({HI: b"Hi \xff there\n"}, "template-syntax", problem=(1, 1), path=HI, message="template is not UTF-8")


@fails("template-syntax")
def test_template_syntax_in_a_workflow_template_string(check):
    source = welcome("""
          - wait: 1h
          - task: {title: "Call {{ contact.first_name }"}
        """)
    check({WF: source}, "template-syntax", problem=(8, 19), message="unexpected '}' (in a template string)")


@passes("template-syntax")
def test_template_syntax_valid_templates_pass(check):
    email = text("""
        ---
        subject: "{{ contact.first_name | default('Hi') }}, welcome"
        preheader: Thanks for joining
        from: Shop <news@shop.example>
        ---
        {% extends "layouts/base.html" %}
        {% block body %}
        {% if contact.first_name %}<p>Hello {{ contact.first_name | title }}</p>{% else %}<p>Hello</p>{% endif %}
        {% for tag in contact.tags %}<span>{{ tag }}</span>{% endfor %}
        {% endblock %}
        """)
    check({HELLO: email, HI: "Hi {{ contact.first_name | default('there') }}! STOP to opt out\n"},
          "template-syntax")


def test_template_syntax_deeply_nested_brackets_do_not_crash_lint(check):
    check({HI: "{{ " + "[" * 400 + "\n"}, "template-syntax", problem=(1, 1), path=HI)


# --- template-scope -----------------------------------------------------------

@fails("template-scope")
def test_template_scope_unknown_name_in_body(check):
    check({HELLO: hello_body("<p>Hello {{ first_name }}</p>")}, "template-scope", problem=(5, 29), path=HELLO,
          message="`first_name` is not defined in templates; names in scope: contact, event, vars, now, "
                  "unsubscribe_url")


@fails("template-scope")
def test_template_scope_unknown_name_in_subject(check):
    email = HELLO_EMAIL.replace("subject: Welcome, {{ contact.first_name }}", "subject: Welcome, {{ firstname }}")
    check({HELLO: email}, "template-scope", problem=(2, 22), path=HELLO, message="`firstname` is not defined")


@fails("template-scope")
def test_template_scope_jinja_globals_are_not_available(check):
    check({HELLO: hello_body("<p>{% for i in range(3) %}x{% endfor %}</p>")}, "template-scope", problem=(5, 32),
          path=HELLO, message="`range` is not defined in templates")


@fails("template-scope")
def test_template_scope_unknown_test(check):
    check({HELLO: hello_body("<p>{% if contact.first_name is strng %}x{% endif %}</p>")}, "template-scope",
          problem=(5, 48), path=HELLO, message="unknown test `strng`")


@fails("template-scope")
def test_template_scope_in_sms_and_workflow_strings(check):
    source = welcome("""
          - wait: 1h
          - task: {title: "Call {{ first_name }}"}
          - sms: welcome/hi
        """)
    check({WF: source}, "template-scope", problem=(8, 28),
          message="`first_name` is not defined")
    check({HI: "Hi {{ name }}\n"}, "template-scope", problem=(1, 7), path=HI, message="`name` is not defined")


def test_template_scope_unknown_filter_is_reported_not_a_crash(check):
    check({HELLO: hello_body("<p>Hello {{ contact.first_name | titel }}</p>")}, "template-scope", problem=(5, 50),
          path=HELLO, message="unknown filter `titel`")


@passes("template-scope")
def test_template_scope_locals_filters_and_functions_pass(check):
    body = ("<p>{% set greeting = 'Hello' %}{{ greeting }} {{ contact.first_name | default('there') | title }}, "
            "{{ now | date('%d %B') }} {% if has_event('order_placed') %}again{% endif %} "
            "{% for tag in contact.tags if tag is string %}{{ loop.index }}{{ tag }}{% endfor %}</p>")
    check({HELLO: hello_body(body)}, "template-scope")


# --- vars-undefined -----------------------------------------------------------

CODE_EMAIL = hello_body("<p>Your code: {{ vars.coupon }}</p>")


@fails("vars-undefined")
def test_vars_undefined_no_step_sets_it(check):
    source = welcome("""
          - wait: 1h
          - id: hello
            email: welcome/hello
        """)
    check({WF: source, HELLO: CODE_EMAIL}, "vars-undefined", problem=(9, 12),
          message="template `welcome/hello` uses `vars.coupon` (templates/welcome/hello.email.html:5), but no step "
                  "before step `hello` sets `coupon`")


@fails("vars-undefined")
def test_vars_undefined_set_only_after_the_send(check):
    source = welcome("""
          - wait: 1h
          - id: hello
            email: welcome/hello
          - assign_coupon: {pool: WELCOME10, as: coupon}
        """)
    check({WF: source, HELLO: CODE_EMAIL}, "vars-undefined", problem=(9, 12), message="sets `coupon`")


@fails("vars-undefined")
def test_vars_undefined_in_expressions_and_template_strings(check):
    source = welcome("""
          - wait: 1h
          - if: "vars.coupon"
            then: [{exit: done}]
          - task: {title: "Call about {{ vars.order }}"}
          - wait_for: {event: order_placed, where: "event.total > vars.limit", timeout: 1d}
        """)
    problems = check({WF: source}, "vars-undefined", problem=[(8, 15), (10, 39), (11, 64)])
    assert [p.message for p in problems] == [
        "`vars.coupon` is not set by any step before this one",
        "`vars.order` is not set by any step before step 3",
        "`vars.limit` is not set by any step before this one",
    ]


@passes("vars-undefined")
def test_vars_undefined_set_before_or_by_the_step_itself_passes(check):
    source = welcome("""
          - wait: 1h
          - assign_coupon: {pool: WELCOME10, as: coupon}
          - webhook: {url: "https://crm.example/orders", as: order}
          - if: "vars.coupon and vars.order"
            then:
              - task: {title: "Call about {{ vars.order.id }}"}
          - id: hello
            email: welcome/hello
          - email: welcome/hello
            vars: {coupon: WELCOME}
        """)
    check({WF: source, HELLO: CODE_EMAIL}, "vars-undefined")


# --- unsubscribe-link ---------------------------------------------------------

SALE = "templates/promo/sale.email.html"
SALE_EMAIL = text("""
    ---
    subject: 20% off this weekend
    ---
    <p>Our sale starts now.</p>
    """)
SENDS_SALE = welcome("""
      - wait: 1h
      - email: promo/sale
    """)


@fails("unsubscribe-link")
def test_unsubscribe_link_missing_from_marketing_email(check):
    check({WF: SENDS_SALE, SALE: SALE_EMAIL}, "unsubscribe-link", problem=(8, 12),
          message=("marketing email `promo/sale` has no unsubscribe link",
                   "templates/promo/sale.email.html", "category: transactional"))


@fails("unsubscribe-link")
@pytest.mark.parametrize("tail", [
    "{# unsubscribe_url #}\n",                                          # a comment is not a link
    "{% set unsubscribe_url = '#' %}<a href=\"{{ unsubscribe_url }}\">x</a>\n",  # a local is not the real one
])
def test_unsubscribe_link_that_is_not_the_real_one(check, tail):
    check({WF: SENDS_SALE, SALE: SALE_EMAIL + tail}, "unsubscribe-link", problem=(8, 12))


@passes("unsubscribe-link")
def test_unsubscribe_link_transactional_is_exempt(check):
    check({WF: SENDS_SALE.replace("steps:", "category: transactional\nsteps:"), SALE: SALE_EMAIL}, "unsubscribe-link")


@passes("unsubscribe-link")
@pytest.mark.parametrize("files", [
    {SALE: SALE_EMAIL + '<a href="{{ unsubscribe_url }}">Unsubscribe</a>\n'},
    {SALE: SALE_EMAIL + '{% include "partials/footer.html" %}\n',
     "templates/partials/footer.html": '<a href="{{ unsubscribe_url }}">Unsubscribe</a>\n'},
    {SALE: '---\nsubject: Sale\n---\n{% extends "layouts/base.html" %}\n'},
])
def test_unsubscribe_link_in_the_template_its_layout_or_a_partial_passes(check, files):
    check({WF: SENDS_SALE, **files}, "unsubscribe-link")


@passes("unsubscribe-link")
def test_unsubscribe_link_not_required_in_sms(check):
    check({WF: welcome("- wait: 1h\n- sms: welcome/hi\n")}, "unsubscribe-link")


# --- sms-length ---------------------------------------------------------------

SENDS_HI = welcome("""
      - wait: 1h
      - sms: welcome/hi
    """)


@fails("sms-length")
@pytest.mark.parametrize("sms, message", [
    ("x" * 161, "SMS is at least 161 GSM-7 characters before placeholders: 2 segments, each billed; one segment "
                "holds 160"),
    ("x" * 307, "at least 307 GSM-7 characters before placeholders: 3 segments"),
    ("€" * 81, "at least 162 GSM-7 characters"),  # extended characters take two
    ("✓" * 71, "at least 71 UCS-2 characters before placeholders (a character outside GSM-7 forces Unicode): "
               "2 segments, each billed; one segment holds 70"),
    ("Hi {{ contact.first_name }}, " + "x" * 160, "at least 165 GSM-7 characters"),
    # every branch of the `if` is sent with the 150 characters around it: the shortest one counts
    ("a" * 150 + "{% if contact.locale == 'fr' %}" + "b" * 20 + "{% else %}" + "c" * 11 + "{% endif %}",
     "at least 161 GSM-7 characters"),
])
def test_sms_length_more_than_one_segment_is_a_warning(check, sms, message):
    check({WF: SENDS_HI, HI: sms + "\n"}, "sms-length", problem=(1, 1), path=HI, message=message)


@passes("sms-length")
@pytest.mark.parametrize("sms", [
    "x" * 160,
    "€" * 80,
    "ü" * 160,                                            # in GSM-7's basic set
    "✓" * 70,
    "Hi {{ contact.first_name }}, " + "x" * 155,          # placeholders are not counted
    "{# a long note for the team: " + "x" * 300 + " #}Hi! STOP to opt out",
    # one language or the other is sent, never both
    "{% if contact.locale == 'fr' %}" + "Bonjour ! " + "x" * 140 + "{% else %}" + "Hello! " + "y" * 140 + "{% endif %}",
    "{% if contact.locale == 'fr' %}" + "x" * 150 + "{% elif contact.locale == 'de' %}" + "z" * 200
    + "{% else %}" + "y" * 140 + "{% endif %} STOP",
    # a loop may not run at all
    "Your tags: {% for tag in contact.tags %}" + "#" * 200 + "{{ tag }}{% endfor %}",
])
def test_sms_length_one_segment_passes(check, sms):
    check({WF: SENDS_HI, HI: sms + "\n"}, "sms-length")
