"""The fast path of expressions (Expression.fast): taken for literals, names, record fields, comparisons and
`and`/`or`/`not`/`if else`, and always giving what Jinja2's sandbox gives, its errors and messages included."""
from __future__ import annotations

import re
import types
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import StrictUndefined, Undefined
from jinja2.exceptions import UndefinedError
from jinja2.utils import missing
from markupsafe import Markup

from mauto.engine.context import Scope
from mauto.engine.records import ContactState, Record
from mauto.workflow.expressions import Expression, ExpressionError

NOW = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)


def jinja(expression: Expression, names: dict[str, Any]) -> Any:
    """What Expression.evaluate gave before the fast path: Jinja2's sandbox alone."""
    value = expression.evaluator(**names)
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value


def outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """A value by its type and repr, or an exception by its type and message; without the addresses of
    functions, which the sandbox builds afresh for each `str.format` it hands over."""
    try:
        value = call()
    except Exception as error:
        return ("raises", type(error), _without_addresses(str(error)))
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return ("function", type(value), value.__qualname__)
    return ("value", type(value), _without_addresses(repr(value)))


def _without_addresses(text: str) -> str:
    return re.sub(r" at 0x[0-9a-f]+", " at 0x...", text)


def scope_names(score: Any = 72, country: Any = "FR", cart_value: Any = 30) -> dict[str, Any]:
    """The names the engine gives an expression (engine/context.py's Scope)."""
    contact = ContactState("c1", {"score": score, "country": country, "email": "ada@example.com"})
    event = Record({"name": "cart_abandoned", "cart_value": cart_value, "at": NOW})
    return Scope(contact, contact.record({"country": None}), NOW, None, {"coupon": "C-1"}, event, "UTC").names()


# --- the fast path is taken where it can be, and only there ----------------------------------------------

def test_the_benchmarks_condition_takes_the_fast_path():
    expression = Expression("contact.score >= 50")
    for score in (72, 50, 49, 0):
        assert expression.evaluate(**scope_names(score=score)) is (score >= 50)
    assert expression.fast is not None
    assert expression.fallbacks == 0


def test_a_condition_on_the_event_and_a_list_takes_the_fast_path():
    expression = Expression("event.cart_value >= 20 and contact.country in ['FR', 'BE']")
    assert expression.evaluate(**scope_names(cart_value=30, country="BE")) is True
    assert expression.evaluate(**scope_names(cart_value=30, country="DE")) is False
    assert expression.evaluate(**scope_names(cart_value=10, country="FR")) is False
    assert expression.fast is not None
    assert expression.fallbacks == 0


@pytest.mark.parametrize(("source", "value"), [
    ("contact.score > 50 or not contact.email_consent", True),
    ("1 < contact.score < 100", True),
    ("contact.score < 10 < 100", False),
    ("contact.country not in ('DE', 'AT')", True),
    ("'vip' in contact.tags", False),
    ("vars.coupon if contact.score >= 50 else none", "C-1"),
    ("contact.score >= -1 and contact.score != +2.5", True),
    ("event.cart_value or 0", 30),
    ("[contact.country, event.name]", ["FR", "cart_abandoned"]),
    ("(contact.score,)", (72,)),
    ("event.at == now", True),
])
def test_each_construct_of_the_grammar_takes_the_fast_path(source, value):
    names = scope_names()
    expression = Expression(source)
    got = expression.evaluate(**names)
    assert (type(got), got) == (type(value), value)
    assert outcome(lambda: got) == outcome(lambda: jinja(Expression(source), names))
    assert expression.fast is not None
    assert expression.fallbacks == 0


@pytest.mark.parametrize("source", [
    "contact.email|lower == 'ada@example.com'",  # a filter
    "has_event('cart_abandoned')",  # a call
    "contact.email.endswith('@example.com')",  # a method call
    "contact.score is defined",  # a test
    "contact['score'] >= 50",  # an item
    "contact.score + 1 > 50",  # arithmetic: the sandbox bounds it
    "contact.first_name ~ '!' != '!'",  # string building
    "'a' if contact.score > 50",  # no else: a false test is Jinja2's Undefined
    "contact.score < 1e400",  # Jinja2 writes `inf`
    "self == 1",  # the template's own reference, not a name in scope
])
def test_a_filter_a_call_or_anything_else_goes_through_jinja(source):
    expression = Expression(source)
    assert expression.fast is None
    names = scope_names() | {"has_event": lambda name: name == "cart_abandoned"}
    assert outcome(lambda: expression.evaluate(**names)) == outcome(lambda: jinja(Expression(source), names))


@pytest.mark.parametrize(("source", "names", "error", "message"), [
    ("contact.score >= 50", {}, UndefinedError, "'contact' is undefined"),
    ("contact.absent >= 50", scope_names(), UndefinedError,
     "'mauto.engine.records.Record object' has no attribute 'absent'"),
    ("event.cart_value >= 20", scope_names() | {"event": None}, UndefinedError,
     "'None' has no attribute 'cart_value'"),
    ("contact.score >= 50", scope_names(score=StrictUndefined(name="score")), UndefinedError,
     "'score' is undefined"),
    ("contact.score >= 50", scope_names(score="high"), TypeError,
     "'>=' not supported between instances of 'str' and 'int'"),
])
def test_what_the_fast_path_cannot_decide_fails_as_jinja_fails(source, names, error, message):
    expression = Expression(source)
    with pytest.raises(error) as caught:
        expression.evaluate(**names)
    assert str(caught.value) == message
    assert outcome(lambda: expression.evaluate(**names)) == outcome(lambda: jinja(Expression(source), names))
    assert expression.fallbacks == 2


@pytest.mark.parametrize("source", ["event", "contact.score > 100 or event", "event if true else 1"])
def test_an_undefined_given_as_a_name_fails_as_jinja_fails(source):
    expression = Expression(source)
    names = scope_names() | {"event": StrictUndefined(name="event")}
    with pytest.raises(UndefinedError, match="^'event' is undefined$"):
        expression.evaluate(**names)
    assert expression.fast is not None
    assert expression.fallbacks == 1


def test_a_field_that_is_not_plain_data_is_read_by_the_sandbox():
    expression = Expression("contact.format == contact.format")
    # the sandbox hands `str.format` over wrapped, a new function each time: never equal to itself
    assert expression.evaluate(contact=Record({"format": "{}".format})) is False
    assert expression.fallbacks == 1
    assert expression.evaluate(contact=Record({"format": "{}"})) is True
    assert expression.fallbacks == 1


def test_an_attribute_of_an_object_that_is_not_a_record_is_read_by_the_sandbox():
    expression = Expression("now.year >= 2024 and contact.items == 1")
    assert expression.evaluate(now=NOW, contact={"items": 1}) is False  # the dict's method, not its item
    assert expression.evaluate(now=NOW, contact=Record({"items": 1})) is True
    assert expression.fallbacks == 2  # `now` is a datetime, both times


# --- the fast path gives what Jinja2 gives, for any expression and any records ---------------------------

FIELDS = ["score", "country", "tags", "x", "absent", "items", "format"]
LITERALS = ["0", "1", "50", "-3", "2.5", "-0.0", "1e400", "'FR'", "'BE'", "''", "none", "true", "false", "True",
            "None", "[]", "['FR', 'BE']", "[1, 2.0, 'a']", "(1,)", "()", "(1, 'x')", "[[1], (2,)]"]
RECORDS = ["contact", "event", "vars"]
COMPARISONS = ["==", "!=", "<", "<=", ">", ">=", "in", "not in"]


def one_of_these(items: list[Any]) -> st.SearchStrategy[Any]:
    """sampled_from for values that cannot be hashed (a StrictUndefined refuses)."""
    return st.integers(0, len(items) - 1).map(items.__getitem__)


fields = st.builds("{}.{}".format, st.sampled_from(RECORDS), st.sampled_from(FIELDS))
numbers = st.one_of(st.sampled_from(["0", "1", "50", "-3", "2.5", "-0.0"]), fields, fields)  # ordered, mostly
atoms = st.one_of(st.sampled_from(LITERALS), fields, fields, st.sampled_from([*RECORDS, "now"]))
odd_atoms = st.one_of(
    atoms,
    st.sampled_from(["nobody", "self"]),  # a name not given; the template's own reference
    st.builds("{}.{}".format, st.sampled_from(["now", "nobody"]), st.sampled_from(["year", *FIELDS])),
    st.builds("{}.{}".format, fields, st.sampled_from(FIELDS)),  # a field of what is not a Record (mostly)
)


def inside(parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """The grammar of the fast path; comparisons also of operands that compare without an error, most of the
    time (numbers, or a list on the right of `in`)."""
    comparison = st.sampled_from(COMPARISONS)
    order = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])
    membership = st.sampled_from(["in", "not in"])
    return st.one_of(
        st.builds("({} {} {})".format, parts, comparison, parts),
        st.builds("({} {} {} {} {})".format, parts, comparison, parts, comparison, parts),  # a chain
        st.builds("({} {} {})".format, numbers, order, numbers),
        st.builds("({} {} {} {} {})".format, numbers, order, numbers, order, numbers),
        st.builds("({} {} [{}, {}])".format, parts, membership, parts, parts),
        st.builds("({} {} {})".format, parts, st.sampled_from(["==", "!="]), parts),
        st.builds("({} and {})".format, parts, parts),
        st.builds("({} or {})".format, parts, parts),
        st.builds("(not {})".format, parts),
        st.builds("(-{})".format, parts),
        st.builds("(+{})".format, parts),
        st.builds("({} if {} else {})".format, parts, parts, parts),
        st.builds("[{}, {}]".format, parts, parts),
        st.builds("({}, {})".format, parts, parts),
        st.builds("({},)".format, parts),
    )


def inside_or_out(parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """The grammar of the fast path and, as often, what it leaves to Jinja2."""
    return st.one_of(inside(parts), st.one_of(
        st.builds("({} if {})".format, parts, parts),
        st.builds("({} + {})".format, parts, parts),
        st.builds("({} ~ {})".format, parts, parts),
        st.builds("({}|length)".format, parts),
        st.builds("({} is defined)".format, parts),
        st.builds("{}[0]".format, parts),
        st.builds("{}['score']".format, parts),
        st.builds("{}.upper()".format, parts),
    ))


expressions = st.one_of(st.recursive(atoms, inside, max_leaves=6), st.recursive(atoms, inside, max_leaves=6),
                        st.recursive(odd_atoms, inside_or_out, max_leaves=6))

plain = st.one_of(st.integers(-100, 200), st.floats(width=32), st.sampled_from(["FR", "BE", "", "vip"]),
                  st.none(), st.booleans())
odd = one_of_these([StrictUndefined(name="odd"), Markup("FR"), "{}".format, {"score": 1}, date(2024, 3, 1), NOW,
                    Record({"score": 60}), missing])
formats = st.just("{}".format)  # a bound `str.format`: the sandbox hands it over wrapped, a new function each time
values = st.one_of(plain, plain, plain, st.lists(plain, max_size=3), st.tuples(plain), odd, formats)
numeric_records = st.builds(  # every field, and comparable: the fast path answers for these
    Record, st.fixed_dictionaries(dict.fromkeys(FIELDS, st.one_of(st.integers(-100, 200), st.floats(width=32)))))
records = st.one_of(  # one_of draws each branch as often: a branch twice is drawn twice as often
    numeric_records, numeric_records,
    st.builds(Record, st.fixed_dictionaries(dict.fromkeys(FIELDS, st.one_of(plain, plain, odd, formats)))),
    st.builds(Record, st.dictionaries(st.sampled_from(FIELDS), values, max_size=6)),  # some, of any kind
)


@st.composite
def scopes(draw: st.DrawFn) -> dict[str, Any]:
    """The names: records mostly, with now and then something else, or a name not given at all."""
    names: dict[str, Any] = {
        "contact": draw(st.one_of(records, records, records, st.dictionaries(st.sampled_from(FIELDS), plain))),
        "event": draw(st.one_of(records, records, st.none(), one_of_these([StrictUndefined(name="e")]))),
        "vars": draw(records),
        "now": draw(one_of_these([NOW, NOW, NOW, missing, StrictUndefined(name="now"), 3])),
    }
    chance = draw(st.integers(0, 9))
    if chance == 0:
        del names[draw(st.sampled_from(sorted(names)))]
    elif chance in (1, 2):
        name = draw(st.sampled_from(sorted(names)))
        names[name] = StrictUndefined(name=name)
    return names


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=expressions, cases=st.lists(scopes(), min_size=1, max_size=4))
def test_the_fast_path_gives_what_jinja_gives(source, cases):
    expression, reference = Expression(source), Expression(source)
    fast = outcome(lambda: expression.fast)  # a function, None (outside the grammar), or the expression refused
    assert fast[0] == "function" or fast[:2] == ("value", type(None)) or fast[1] is ExpressionError, fast
    for names in cases:
        expected = outcome(lambda names=names: jinja(reference, names))
        assert outcome(lambda names=names: expression.evaluate(**names)) == expected, (source, names)
        if fast[0] == "function":  # and where it answers itself, it answers as Jinja2
            answer = outcome(lambda names=names: expression.fast(names))
            if answer[0] == "value" and not issubclass(answer[1], Undefined):
                assert answer == expected, (source, names)


def test_the_sandbox_reads_a_records_field_at_once_and_anything_else_its_own_way(monkeypatch) -> None:
    # Templates read `contact.first_name` through the sandbox's getattr: a Record's plain field is handed at
    # once; an underscore name, a missing field or another object go through Jinja2's sandbox as before.
    from jinja2.exceptions import SecurityError, UndefinedError
    from jinja2.sandbox import SandboxedEnvironment

    from mauto.engine.records import Record
    from mauto.workflow.expressions import sandbox

    environment = sandbox()
    reached: list[str] = []
    real = SandboxedEnvironment.getattr
    monkeypatch.setattr(SandboxedEnvironment, "getattr",
                        lambda self, obj, attribute: reached.append(attribute) or real(self, obj, attribute))
    contact = Record({"first_name": "Ana", "tags": ["vip"], "odd": object()})
    assert environment.from_string("{{ contact.first_name }} {{ contact.tags[0] }}").render(contact=contact) == \
        "Ana vip"
    assert reached == []
    with pytest.raises(UndefinedError, match="has no attribute 'last_name'"):
        environment.from_string("{{ contact.last_name }}").render(contact=contact)
    with pytest.raises(SecurityError, match="access to attribute '_fields' of 'Record' object is unsafe"):
        environment.from_string("{{ contact._fields }}").render(contact=contact)
    assert reached[-1:] == ["_fields"]
    environment.from_string("{{ contact.odd }}").render(contact=contact)
    assert reached[-1] == "odd"
