"""Expressions: parse errors, what an expression uses (with offsets), and evaluation in the sandbox."""
from __future__ import annotations

import sys
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from mauto.workflow.expressions import Expression, ExpressionError, Use, mask_strings, parse, sandbox
from mauto.workflow.loader import Pos


def uses(source: str) -> list[tuple[str, str, int]]:
    return [(use.kind, use.name, use.offset) for use in Expression(source).uses]


# --- parse errors -------------------------------------------------------------------

@pytest.mark.parametrize(("source", "message", "offset"), [
    ("", "the expression is empty", -1),
    ("   ", "the expression is empty", -1),
    ("{{ contact.score }}", "write the expression without `{{ }}` or `{% %}`", 0),
    ("contact.score > 1 and {% if x %}", "write the expression without `{{ }}` or `{% %}`", 22),
    ("contact.score >=", "invalid expression: it ends too early (a missing operand or closing bracket?)", -1),
    ("has_event(", "invalid expression: it ends too early (a missing operand or closing bracket?)", -1),
    ("contact.score 50", "unexpected `50` after the end of the expression", 14),
    ("a b", "unexpected `b` after the end of the expression", 2),
    ("(contact.score", "invalid expression: unexpected end of template, expected ')'.", -1),
])
def test_parse_errors(source, message, offset):
    with pytest.raises(ExpressionError) as caught:
        parse(source)
    assert str(caught.value) == message
    assert caught.value.offset == offset


def test_an_expression_parses_lazily_and_keeps_its_place():
    expression = Expression("contact.score >", "workflows/w.yaml", Pos(3, 7, '"'))
    assert (expression.source, expression.path, expression.pos) == ("contact.score >", "workflows/w.yaml",
                                                                    Pos(3, 7, '"'))
    with pytest.raises(ExpressionError):
        _ = expression.tree
    with pytest.raises(ExpressionError):
        _ = expression.uses


def test_a_non_string_is_not_an_expression():
    with pytest.raises(ExpressionError, match="the expression is empty"):
        parse(42)  # type: ignore[arg-type]


@pytest.mark.skipif(sys.get_int_max_str_digits() == 0, reason="Python reads numbers of any length here")
def test_a_number_past_pythons_limit_on_digits_is_refused_in_words():
    # Jinja2's lexer reads it with int(), whose ValueError reached `mauto lint` as an internal error
    limit = sys.get_int_max_str_digits()
    with pytest.raises(ExpressionError) as caught:
        parse("contact.score < 1_" + "9" * limit)
    assert str(caught.value) == f"a number of more than {limit:,} digits cannot be read"
    assert caught.value.offset == 16
    assert parse(f"contact.id == '{'9' * (limit + 1)}'") is not None  # in a string, digits are only text
    # a hexadecimal one is read, but Jinja2's compiler writes it back in decimal: a ValueError at the first use
    with pytest.raises(ExpressionError) as caught:
        parse("contact.score < 0x" + "f" * limit)
    assert (str(caught.value), caught.value.offset) == (f"a number of more than {limit:,} digits cannot be read", -1)


# --- what an expression uses ---------------------------------------------------------

def test_names_and_fields_with_their_offsets():
    # a field is placed on the field itself, a name on the name
    assert uses("contact.score >= 50 and event.cart_value > vars.limit") == [
        ("contact", "score", 8), ("event", "cart_value", 30), ("vars", "limit", 48),
        ("name", "contact", 0), ("name", "event", 24), ("name", "vars", 43),
    ]


def test_an_unknown_name_is_found_where_it_is_written():
    assert uses("now and 1 or contcat.score") == [("name", "now", 0), ("name", "contcat", 13)]
    # a name that also appears inside a longer name or after a dot is not mistaken for it
    assert ("name", "event", 19) in uses("contact.event_x or event")


def test_names_inside_string_literals_are_not_uses():
    found = uses("'contact.fake' == contact.real")
    assert found == [("contact", "real", 26), ("name", "contact", 18)]


def test_function_calls_and_their_literal_arguments():
    source = "has_event('order_placed', within='7d', where=\"event.total > 10\") and duration('2w')"
    found = [(use.kind, use.name, use.offset, use.detail) for use in Expression(source).uses]
    assert found == [
        ("call", "has_event", 0, None),
        ("event-name", "order_placed", 11, None),
        ("duration", "7d", 26, None),
        ("nested", "event.total > 10", 39, "order_placed"),
        ("call", "duration", 69, None),
        ("duration", "2w", 69, None),
    ]


def test_unknown_and_extra_arguments_are_reported_as_uses():
    found = [(use.kind, use.name, use.offset, use.detail) for use in Expression("has_event('x', bogus=1)").uses]
    assert ("argument", "bogus", 15, "has_event") in found
    found = [(use.kind, use.name, use.detail) for use in Expression("days_since(contact.created_at, 2)").uses]
    assert ("argument", "2 positional", "days_since") in found


def test_since_strings_are_reported_entry_included():
    # the lint accepts 'entry' in a workflow; `contacts list --where` refuses it (no enrollment there)
    assert ("since", "yesterday", 15) in uses("has_event('x', since='yesterday')")
    assert ("since", "entry", 15) in uses("has_event('x', since='entry')")
    assert not [use for use in uses("has_event('x', since=now - duration('7d'))") if use[0] == "since"]


def test_filters_tests_and_step_references():
    assert ("filter", "length", 12) in uses("contact.tags|length > 0")
    assert ("test", "defined", 14) in uses("contact.phone is defined")
    assert ("test", "none", 14) in uses("contact.phone is not none")
    assert uses("event.step in ['a', 'b']")[-2:] == [("step", "a", 15), ("step", "b", 20)]
    assert ("step", "reminder-2", 14) in uses("event.step == 'reminder-2'")


def test_subscript_access_is_a_field_use():
    kinds = [(use.kind, use.name) for use in Expression("contact['country'] == 'FR'").uses]
    assert ("contact", "country") in kinds


def test_subscript_access_has_an_offset():
    assert ("contact", "country", 20) in uses("1 == 1 and contact['country'] == 'FR'")
    assert ("contact", "country", 9) in uses('contact["country"]')


def test_mask_strings_keeps_length_and_quotes():
    assert mask_strings("a == 'x.y' and b == \"z\"") == "a == '   ' and b == \" \""
    assert len(mask_strings("f('it\\'s')")) == len("f('it\\'s')")


def test_use_is_a_small_value_object():
    assert Use("name", "contact") == Use("name", "contact", -1, None)


# --- evaluation -------------------------------------------------------------------------

def test_evaluation_with_the_names_in_scope():
    expression = Expression("contact.score >= 50 and 'vip' in contact.tags")
    assert expression.evaluate(contact={"score": 60, "tags": ["vip"]}) is True
    assert expression.evaluate(contact={"score": 60, "tags": []}) is False
    assert Expression("contact.score + 1").evaluate(contact={"score": 3}) == 4
    assert Expression("contact['country'] == 'FR'").evaluate(contact={"country": "FR"}) is True


def test_functions_are_whatever_the_caller_puts_in_scope():
    calls = []

    def has_event(name, within=None, since=None, where=None):
        calls.append((name, within, since, where))
        return True

    source = "has_event('order_placed', within='7d', where='event.total > 10')"
    assert Expression(source).evaluate(has_event=has_event) is True
    assert calls == [("order_placed", "7d", None, "event.total > 10")]


def test_jinja_filters_and_tests_work_but_its_globals_do_not():
    assert Expression("contact.name | upper").evaluate(contact={"name": "ana"}) == "ANA"
    assert Expression("contact.tags | length").evaluate(contact={"tags": [1, 2]}) == 2
    assert Expression("contact.phone is none").evaluate(contact={"phone": None}) is True
    for source in ("range(3)", "lipsum()", "dict(a=1)", "cycler(1, 2)"):
        with pytest.raises(UndefinedError):
            Expression(source).evaluate()


def test_the_date_filter_formats_in_the_contacts_zone():
    env = sandbox()
    template = env.from_string("{{ at | date('%Y-%m-%d %H:%M') }}")
    at = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    assert template.render(at=at, _zone="Europe/Paris") == "2026-03-02 00:30"
    assert template.render(at=at) == "2026-03-01 23:30"
    assert env.from_string("{{ d | date }}").render(d=date(2026, 12, 24)) == "2026-12-24"


def test_undefined_names_and_fields_fail_when_used():
    with pytest.raises(UndefinedError):
        bool(Expression("contact.missing").evaluate(contact={}))
    with pytest.raises(UndefinedError):
        bool(Expression("nobody").evaluate())


class Contact:
    _secret = "hidden"
    visible = "shown"

    def _private(self):
        return "hidden"


@pytest.mark.parametrize(("source", "name", "offset"), [
    ("contact._secret", "_secret", 8), ("contact._private()", "_private", 8),
    ("contact.__class__.__mro__", "__class__", 8), ("contact.__dict__.items()", "__dict__", 8),
    ("contact.visible.__class__.__base__", "__class__", 16), ("contact['__class__']", "__class__", 9),
    ("contact|attr('__class__')", "__class__", 14), ("contact.score > 5 and vars.__init__", "__init__", 27),
])
def test_attributes_starting_with_an_underscore_are_refused_when_parsed(source, name, offset):
    # Before: parsed fine and failed only when evaluated, for every contact (`contacts list --where
    # "contact.__class__"` was an internal error: SecurityError).
    with pytest.raises(ExpressionError) as caught:
        parse(source)
    assert str(caught.value) == (f"`{name}` cannot be read: names starting with `_` are internal; an expression "
                                 "reads fields, such as contact.first_name")
    assert caught.value.offset == offset


def test_a_computed_underscore_name_is_refused_by_the_sandbox_when_evaluated():
    # Only a name the expression computes reaches the sandbox; the refusal is raised by evaluate() itself,
    # not by whatever first uses the undefined it used to return.
    with pytest.raises(SecurityError):
        Expression("contact[vars.key]").evaluate(contact=Contact(), vars={"key": "_secret"})
    with pytest.raises(SecurityError):
        Expression("contact[vars.key]").evaluate(contact={}, vars={"key": "__class__"})


def test_public_attributes_of_objects_are_readable():
    assert Expression("contact.visible").evaluate(contact=Contact()) == "shown"


def test_the_sandbox_has_no_globals():
    assert sandbox().globals == {}


# --- size and depth: a sentence, never a RecursionError ---------------------------------------------

def test_five_thousand_or_clauses_are_too_long():
    # Before: RecursionError (`contacts list --where` and lint ended in an internal error).
    source = " or ".join(f"contact.score > {number}" for number in range(5000))
    with pytest.raises(ExpressionError) as caught:
        _ = Expression(source).uses
    assert str(caught.value) == ("expression too long (118,886 characters; at most 10,000); name a segment in "
                                 "mauto.yaml, or test a list with `in [...]`")


def test_a_long_chain_of_or_is_too_deeply_nested():
    # Before: SyntaxError "too many nested parentheses" from the code Jinja2 wrote, when first evaluated.
    source = " or ".join(f"contact.score > {number}" for number in range(250))
    with pytest.raises(ExpressionError) as caught:
        parse(source)
    assert str(caught.value) == ("expression too deeply nested (252 levels; at most 100); test a list of values "
                                 "with `in [...]` rather than a chain of `or`")


def test_a_chain_within_the_bound_parses_compiles_and_runs():
    source = " or ".join(f"contact.score == {number}" for number in range(95))
    assert Expression(source).evaluate(contact={"score": 94}) is True


@pytest.mark.parametrize(("source", "message", "offset"), [
    ("(" * 40 + "1" + ")" * 40, "expression too deeply nested (40 levels of brackets; at most 32)", 32),
    ("[" * 33 + "1" + "]" * 33, "expression too deeply nested (33 levels of brackets; at most 32)", 32),
    ("contact.x in " + "[" * 33 + "]" * 33, "expression too deeply nested (33 levels of brackets; at most 32)", 45),
    ("not " * 2400 + "true", "expression too deeply nested (more than 100 levels)", -1),
    ("a" + ".b" * 3000, "expression too deeply nested (3,001 levels; at most 100)", -1),
])
def test_deep_nesting_is_refused_in_words(source, message, offset):
    # Before: RecursionError in Jinja2's parser or compiler.
    with pytest.raises(ExpressionError) as caught:
        parse(source)
    assert str(caught.value) == message
    assert caught.value.offset == offset


def test_brackets_inside_strings_do_not_count():
    assert Expression("contact.x == '" + "(" * 50 + "'").evaluate(contact={"x": "(" * 50}) is True


# --- operators that would build something huge -------------------------------------------------------------

@pytest.mark.parametrize(("source", "message", "offset"), [
    ("(9**9)**(9**9) > 0", "`**` with an exponent of 387,420,489 is refused (at most 1,000)", -1),
    ("contact.x and 'ab' * 10**9", "`*` building a string of 2,000,000,000 characters is refused (at most 100,000)",
     19),
    ("[0] * 100001", "`*` building a list of 100,001 items is refused (at most 100,000)", 4),
    ("'a' * 99999 + 'bc' == contact.x", "`+` building a string of 100,001 characters is refused (at most 100,000)",
     12),
    ("(10**1000)**1000", "`**` with a result of about 996,300 digits is refused (at most 30,000)", -1),
    ("-(2**2000)", "`**` with an exponent of 2,000 is refused (at most 1,000)", 3),
    ("'%0999999d' % 1", "a `%` format with a width or precision of 999,999 is refused (at most 100,000)", 12),
])
def test_a_huge_constant_is_refused_when_parsed(source, message, offset):
    # Before: parsed; compiling then folded the constant (hours for `(9**9)**(9**9)`, gigabytes for `'ab' * 10**9`)
    started = time.monotonic()
    with pytest.raises(ExpressionError) as caught:
        parse(source)
    assert (str(caught.value), caught.value.offset) == (message, offset)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(("source", "contact", "message"), [
    ("contact.n ** contact.e > 0", {"n": 9, "e": 5000}, "`**` with an exponent of 5,000 is refused (at most 1,000)"),
    ("contact.s * contact.n", {"s": "ab", "n": 60_000},
     "`*` building a string of 120,000 characters is refused (at most 100,000)"),
    ("contact.n * contact.s", {"s": [1, 2], "n": 60_000}, "`*` building a list of 120,000 items is refused "
     "(at most 100,000)"),
    ("contact.s + contact.s", {"s": "x" * 60_000},
     "`+` building a string of 120,000 characters is refused (at most 100,000)"),
    ("contact.f % 1", {"f": "%0200000d"},
     "a `%` format with a width or precision of 200,000 is refused (at most 100,000)"),
    ("contact.f % (1, 2)", {"f": "%*d"}, "a `%` format taking its width or precision from `*` is refused"),
    ("contact.n * contact.n", {"n": 10 ** 20_000}, "`*` with a result of about 39,863 digits is refused "
     "(at most 30,000)"),
])
def test_a_huge_result_from_fields_is_refused_when_evaluated(source, contact, message):
    # Before: computed (a 5,000-digit power, a 120,000-character string, …); with bigger fields, for hours
    with pytest.raises(SecurityError) as caught:
        Expression(source).evaluate(contact=contact)
    assert str(caught.value) == message


@pytest.mark.parametrize(("source", "value"), [
    ("2 ** 10", 1024),
    ("2 ** 1000 > 10 ** 300", True),
    ("2 ** -1", 0.5),
    ("1 ** 5000", 1),
    ("(-1) ** 5001", -1),
    ("2.5 ** 2", 6.25),
    ("'ab' * 3", "ababab"),
    ("3 * [0]", [0, 0, 0]),
    ("[1] * 2 + [3]", [1, 1, 3]),
    ("'a' + 'b' ~ 'c'", "abc"),
    ("'%5.1f%%' % 12.34", " 12.3%"),
    ("'%(n)03d' % {'n': 7}", "007"),
    ("7 % 3 + 2 * 3", 7),
    ("'x' * 100000 == 'x' * 100000", True),
])
def test_ordinary_arithmetic_is_unchanged(source, value):
    assert Expression(source).evaluate() == value


def test_date_arithmetic_goes_through_the_bounded_operators():
    moment = datetime(2024, 5, 1, tzinfo=UTC)
    assert Expression("now + step").evaluate(now=moment, step=timedelta(days=1)) == datetime(2024, 5, 2, tzinfo=UTC)


def test_a_float_power_too_big_fails_at_once():
    with pytest.raises(OverflowError):
        Expression("2.0 ** contact.e").evaluate(contact={"e": 10 ** 9})


def test_templates_share_the_bounds():
    # Before: the template rendered a 2,000,000-character string
    template = sandbox().from_string("{{ 'ab' * contact.n }}")
    with pytest.raises(SecurityError, match="`\\*` building a string of 2,000,000 characters is refused"):
        template.render(contact={"n": 1_000_000})
    assert sandbox().from_string("{{ 'ab' * 2 }}{{ 2 ** 3 }}").render() == "abab8"


@pytest.mark.parametrize(("source", "message"), [
    ("contact.name.ljust(10**9)", "`.ljust()` with a width of 1,000,000,000 is refused (at most 100,000)"),
    ("contact.name.zfill(200000)", "`.zfill()` with a width of 200,000 is refused (at most 100,000)"),
    ("'{:>999999999}'.format(contact.name)",
     "a `.format()` field with a width of 999,999,999 is refused (at most 100,000)"),
    ("(contact.name * 50000).replace('a', 'aaaaa')",
     "`.replace()` building a string of 250,000 characters is refused (at most 100,000)"),
    ("contact.name|center(10**8)", "`|center` with a width of 100,000,000 is refused (at most 100,000)"),
    ("contact.name|indent(10**7)",
     "`|indent` building a string of 10,000,001 characters is refused (at most 100,000)"),
    ("'%0999999d'|format(1)", "a `%` format with a width or precision of 999,999 is refused (at most 100,000)"),
    ("[contact.name * 99999, contact.name * 99999]|join",
     "`|join` building a string of 199,998 characters is refused (at most 100,000)"),
])
def test_string_methods_and_filters_that_pad_or_build_are_bounded(source, message):
    # The operators are bounded above; these build as much without one (`'x'.ljust(10**9)`: a gigabyte).
    started = time.perf_counter()
    with pytest.raises(SecurityError) as refused:
        Expression(source).evaluate(contact={"name": "a"})
    assert str(refused.value) == message
    assert time.perf_counter() - started < 1


def test_ordinary_padding_formatting_and_joining_are_unchanged():
    assert Expression("contact.name.zfill(5) ~ '{:>3}'.format('b') ~ contact.name|center(3)").evaluate(
        contact={"name": "a"}) == "0000a  b a "
    template = sandbox().from_string("{{ 'a\nb' | indent(2) }}|{{ ['a', 'b'] | join('-') }}"
                                     "|{{ 'ab' | replace('a', 'c') }}|{{ '%s!' | format('hi') }}")
    assert template.render() == "a\n  b|a-b|cb|hi!"
