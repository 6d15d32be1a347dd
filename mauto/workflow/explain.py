"""JSON Schema errors said in plain words at their line and column: one explainer for every schema mauto ships.

jsonschema finds the errors; `explain_all` turns each into one sentence that
names the thing ("unknown key `delay` in step 3; did you mean `wait`?") and
places it with the document's position map: an unknown key on that key's own
line, a bad value on the value. Each JSON Schema keyword has one handler here,
whatever the schema (workflow, mauto.yaml, scenario).

What differs between kinds of file is said by a `Wording`: how the file names
its parts ("step 3", "expectation 2", "the workflow"), which words people bring
from other tools, and the sentences about the one construct all three schemas
share: a mapping that holds exactly one of several kinds (a step's action, a
trigger's kind, an expectation's check), written as `dependentSchemas` keyed by
kind, each limiting the keys with `propertyNames`, beside a `not` that refuses
a mapping with none of them.
"""
from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema.exceptions import ValidationError, relevance

from mauto.problem import Problem
from mauto.workflow.durations import DurationError, parse_duration
from mauto.workflow.loader import Document, JsonPath


class Wording:
    """How one kind of file names its parts and its kinds in messages. Subclass it for a new kind of file."""

    synonyms: Mapping[str, str] = {}  # what people write for a key, from other tools; difflib cannot guess these

    def subject(self, path: JsonPath, data: Any) -> str:
        """A value's name: "`wait_for.timeout` in step 3"."""
        return f"`{'.'.join(str(part) for part in path)}`" if path else "the file"

    def container(self, path: JsonPath, data: Any) -> str:
        """A mapping's name: "step 3", "the workflow"."""
        return self.subject(path, data)

    def suggest(self, word: str, choices: Sequence[str]) -> str:
        """"; did you mean `wait`?" when `word` is a known synonym or close to one of `choices`, else ""."""
        synonym = self.synonyms.get(word.lower())
        if synonym in choices:
            return f"; did you mean `{synonym}`?"
        return close_match(word, choices)

    def kinds(self, path: JsonPath) -> list[str]:
        """The kind keys of the mapping at `path`, when the error does not lead to its schema."""
        return []

    def no_kind(self, where: str, path: JsonPath, kinds: list[str]) -> str:
        return f"{where} needs one of: {', '.join(kinds)}"

    def several_kinds(self, where: str, path: JsonPath, present: list[str]) -> str:
        return f"{where} has {count_words(len(present))} of {and_list(present)}; keep one"

    def not_allowed(self, key: str, kind: str, where: str, path: JsonPath, allowed: list[str]) -> str:
        return f"`{key}` does not go with `{kind}` in {where}; it takes: {', '.join(allowed)}"

    def refused(self, what: str, path: JsonPath, data: Any) -> str | None:
        """The sentence for a value a `not` (other than the kinds') refuses; None: the generic one."""
        return None


def explain_all(errors: Iterable[ValidationError], document: Document, wording: Wording) -> list[Problem]:
    """Every error in words, most relevant first, at most once per place and sentence, without the errors
    that only repeat another in other words, in the order of the file."""
    found: dict[tuple[int, int, str], tuple[str, Problem]] = {}
    for error in sorted(errors, key=relevance):
        for tag, problem in _findings(_Error.of(error, document, wording)):
            found.setdefault((problem.line, problem.col, problem.message), (tag, problem))
    return sorted(_without_echoes(list(found.values())), key=lambda p: (p.line, p.col, p.message))


def explain(error: ValidationError, document: Document, wording: Wording) -> Iterator[Problem]:
    """One error in words (one sentence, or one per unknown key; none when another error says it)."""
    for _tag, problem in _findings(_Error.of(error, document, wording)):
        yield problem


# What a finding is, for `_without_echoes`: the kinds of finding that may repeat one another.
UNKNOWN_KEY = "unknown key"
NO_KIND = "no kind"
SEVERAL_KINDS = "several kinds"
NOT_ALLOWED = "not allowed"

_Finding = tuple[str, Problem]


def _without_echoes(findings: list[_Finding]) -> list[Problem]:
    """Drop the findings that only repeat another one in other words.

    An unknown key also fails the mapping's "one kind" and "keys of this kind"
    checks; two kinds in one mapping also fail each kind's key list. The user
    needs one sentence per mistake.
    """
    unknown = {problem.json_path for tag, problem in findings if tag == UNKNOWN_KEY}
    several = {problem.json_path[:-1] for tag, problem in findings if tag == SEVERAL_KINDS}
    kept = []
    for tag, problem in findings:
        if tag == NO_KIND and any(key[:-1] == problem.json_path for key in unknown):
            continue
        if tag == NOT_ALLOWED and (problem.json_path in unknown or problem.json_path[:-1] in several):
            continue
        kept.append(problem)
    return kept


@dataclass(frozen=True)
class _Error:
    """One jsonschema error and what its sentence needs: where it is, in the file's own words."""

    error: ValidationError
    document: Document
    wording: Wording
    path: JsonPath
    where: str  # the mapping holding the mistake: "step 3"
    what: str  # the value at fault: "`wait_for.timeout` in step 3"

    @classmethod
    def of(cls, error: ValidationError, document: Document, wording: Wording) -> _Error:
        path = tuple(error.absolute_path)
        return cls(error, document, wording, path, wording.container(path, document.data),
                   wording.subject(path, document.data))

    @property
    def schema(self) -> dict:
        return self.error.schema if isinstance(self.error.schema, dict) else {}

    @property
    def instance(self) -> Any:
        return self.error.instance  # jsonschema sets it on every error it yields (`Unset` on hand-made ones)

    @property
    def value(self) -> Any:
        """The keyword's value in the schema (`validator_value`)."""
        return self.error.validator_value

    def at_value(self, message: str, rule: str = "schema", tag: str = "") -> _Finding:
        pos = self.document.pos(self.path)
        return tag, Problem(self.document.path, pos.line, pos.col, rule, message, json_path=self.path)

    def at_key(self, message: str, rule: str = "schema", key_path: JsonPath | None = None,
               tag: str = "") -> _Finding:
        key_path = self.path if key_path is None else key_path
        pos = self.document.key_pos(key_path)
        return tag, Problem(self.document.path, pos.line, pos.col, rule, message, json_path=key_path)


def _findings(error: _Error) -> Iterator[_Finding]:
    handler = _KEYWORDS.get(str(error.error.validator))
    if handler is None:
        yield error.at_value(f"{error.what}: {error.error.message}")
        return
    yield from handler(error)


# --- one handler per keyword ------------------------------------------------------------------------

def _additional_properties(error: _Error) -> Iterator[_Finding]:
    if not isinstance(error.instance, dict):  # not a mapping: the type error says it
        return
    allowed = list(error.schema.get("properties", {}))
    for key in error.instance:
        if key not in allowed:
            inside = f" in {error.where}" if error.path else ""
            yield error.at_key(f"unknown key `{key}`{inside}{error.wording.suggest(key, allowed)}",
                               key_path=error.path + (key,), tag=UNKNOWN_KEY)


def _not(error: _Error) -> Iterator[_Finding]:
    if isinstance(error.value, dict) and "propertyNames" in error.value:  # a mapping of none of the kinds
        if isinstance(error.instance, dict):  # else the type error says it
            kinds = list(error.schema.get("dependentSchemas", {}))
            yield error.at_key(error.wording.no_kind(error.where, error.path, kinds), tag=NO_KIND)
        return
    message = error.wording.refused(error.what, error.path, error.document.data)
    yield error.at_value(message or f"{error.what}: {error.error.message}")


def _enum(error: _Error) -> Iterator[_Finding]:
    if "propertyNames" in error.error.relative_schema_path and isinstance(error.instance, str):
        yield _key_of_another_kind(error)
        return
    choices = [str(choice) for choice in error.value]
    suggestion = error.wording.suggest(error.instance, choices) if isinstance(error.instance, str) else ""
    yield error.at_value(f"{error.what} must be one of {', '.join(choices)}, "
                         f"not {_value_words(error.instance)}{suggestion}")


def _key_of_another_kind(error: _Error) -> _Finding:
    """A key the kind present does not take (`at` in a `gets_no`), or a second kind in the same mapping."""
    key = error.instance
    parent = value_at(error.document.data, error.path)
    kinds = _dispatch_kinds(error.error) or error.wording.kinds(error.path)
    present = [kind for kind in kinds if isinstance(parent, dict) and kind in parent]
    if len(present) > 1:
        return error.at_key(error.wording.several_kinds(error.where, error.path, present),
                            key_path=error.path + (present[1],), tag=SEVERAL_KINDS)
    if present:
        return error.at_key(error.wording.not_allowed(key, present[0], error.where, error.path, list(error.value)),
                            key_path=error.path + (key,), tag=NOT_ALLOWED)
    return error.at_key(f"unknown key `{key}` in {error.where}", key_path=error.path + (key,), tag=UNKNOWN_KEY)


def _dispatch_kinds(error: ValidationError) -> list[str]:
    """The kind keys of the dispatching schema an error came from, when it is among the error's parents."""
    node = error.parent
    while node is not None:
        if isinstance(node.schema, dict) and "dependentSchemas" in node.schema:
            return list(node.schema["dependentSchemas"])
        node = node.parent
    return []


def _pattern_keyword(error: _Error) -> Iterator[_Finding]:
    if "propertyNames" in error.error.relative_schema_path and isinstance(error.instance, str):
        key_path = error.path + (error.instance,)
        if error.schema.get("title") == "header-name":
            yield error.at_key(f"`{_shown(error.instance)}` is not a header name in {error.where}: use letters, "
                               "digits and `-`, e.g. X-Request-Id", rule="webhook-header", key_path=key_path)
            return
        yield error.at_key(f"`{error.instance}` is not a valid name in {error.where}: it must match {error.value}",
                           key_path=key_path)
        return
    rule, message = pattern_problem(error.error, error.what)
    yield error.at_value(message, rule)


def _format(error: _Error) -> Iterator[_Finding]:
    rule = "duration" if error.schema.get("title") == "duration" else "schema"
    yield error.at_value(f"{error.what}: {error.error.message}", rule)


def _required(error: _Error) -> Iterator[_Finding]:
    for key in error.value:
        if not (isinstance(error.instance, dict) and key in error.instance):
            yield error.at_key(f"{error.where} is missing `{key}`")


def _type(error: _Error) -> Iterator[_Finding]:
    yield error.at_value(f"{error.what} must be {_type_words(error.value)}, not {_value_words(error.instance)}")


def _const(error: _Error) -> Iterator[_Finding]:
    # the schemas use `const` for `false` beside a mapping (`quiet_hours: false`)
    yield error.at_value(f"{error.what} can only be {json.dumps(error.value)} or a mapping")


def _min_length(error: _Error) -> Iterator[_Finding]:
    yield error.at_value(f"{error.what} must not be empty")


def _min_items(error: _Error) -> Iterator[_Finding]:
    one, many = ("item", "items") if error.error.validator == "minItems" else ("entry", "entries")
    yield error.at_value(f"{error.what} needs at least {error.value} {one if error.value == 1 else many}")


def _unique_items(error: _Error) -> Iterator[_Finding]:
    yield error.at_value(f"{error.what} lists `{first_duplicate(error.instance)}` more than once")


def _bound(error: _Error) -> Iterator[_Finding]:
    bound = "at least" if error.error.validator == "minimum" else "at most"
    yield error.at_value(f"{error.what} must be {bound} {error.value}, not {error.instance}")


_KEYWORDS: dict[str, Callable[[_Error], Iterator[_Finding]]] = {
    "additionalProperties": _additional_properties,
    "not": _not,
    "enum": _enum,
    "pattern": _pattern_keyword,
    "format": _format,
    "required": _required,
    "type": _type,
    "const": _const,
    "minLength": _min_length,
    "minItems": _min_items,
    "minProperties": _min_items,
    "uniqueItems": _unique_items,
    "minimum": _bound,
    "maximum": _bound,
}


# --- words ------------------------------------------------------------------------------------------

def pattern_problem(error: ValidationError, what: str) -> tuple[str, str]:
    """(rule, message) for a string that does not match its pattern, worded for what the pattern stands for
    (the schema's `title` beside it: a duration, a time of day, an id, a URL...)."""
    title = error.schema.get("title") if isinstance(error.schema, dict) else None
    value: Any = error.instance  # jsonschema sets it on every error it yields (`Unset` only on hand-made ones)
    validator_value: Any = error.validator_value
    if title == "duration":
        try:
            parse_duration(value, signed=validator_value.startswith("^-"))
            message = f"`{value}` is not a duration"
        except DurationError as duration_error:
            message = str(duration_error)
        return "duration", f"{what}: {message}"
    if title == "webhook-url":
        rule, message = webhook_url_problem(value)
        return rule, f"{what}: {message}"
    if title == "header-value":
        return "webhook-header", (f"{what}: {_control_character(value)} in a header value; a header is one line "
                                  "of text, and a line break in it would start another header")
    if title in ("step-id", "workflow-id"):
        suggestion = "-".join(filter(None, "".join(c if c.isalnum() else "-" for c in value.lower()).split("-")))
        hint = f", e.g. `{suggestion}`" if suggestion and suggestion != value else ""
        return "schema", f"{what}: `{value}` must be lowercase letters, digits and dashes{hint}"
    words = _PATTERN_WORDS.get(title or "")
    if words is not None:
        rule, sentence = words
        return rule, f"{what}: " + sentence.format(value=value, shown=_shown(value))
    return "schema", f"{what}: `{value}` does not match the pattern {validator_value}"


# title -> (rule, sentence); {value} is the string as written, {shown} with its control characters visible
_PATTERN_WORDS = {
    "time-of-day": ("time-of-day", "`{value}` is not a time of day; write 24-hour HH:MM, e.g. 09:00"),
    "env-name": ("schema", "`{shown}` is not an environment variable name; use letters, digits and `_`, "
                           "e.g. SHOP_API_AUTH"),
    "country-code": ("schema", "`{shown}` is not a country code; write its two capital letters (ISO 3166-1 "
                               "alpha-2), e.g. FR"),
    "template-name": ("schema", "`{value}` is not a template name; write its path under templates/ without the "
                                "extension, e.g. cart/reminder-1"),
    "event-name": ("schema", "`{value}` is not an event name; use letters, digits, `_`, `.`, `:` or `-`, "
                             "e.g. order_placed"),
    "date": ("schema", "`{value}` is not a date; write YYYY-MM-DD, e.g. 2026-12-25"),
}


def webhook_url_problem(url: str) -> tuple[str, str]:
    """(rule, message) saying why a webhook's `url` cannot be called as written (see the schema's pattern).

    A URL holding a user name and password is `secret-in-workflow`'s; anything else is `webhook-url`'s. The
    message never repeats the URL's credentials.
    """
    head, separator, rest = url.partition("://")
    if "{" in head or (not separator and "{" in url):
        return "webhook-url", ("write the scheme and host out before any `{{ }}`, e.g. "
                               "https://crm.example/contacts/{{ contact.id }}: contact data must not choose "
                               "where a request goes")
    if not separator or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", head):
        return "webhook-url", f"`{_shown(url)}` is not a URL; write it whole, e.g. https://crm.example/hooks/lead"
    if head.lower() not in ("http", "https"):
        return "webhook-url", f"`{head}:` URLs cannot be called; a webhook calls an http or https URL"
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        return "secret-in-workflow", ("the URL holds a user name or password (`…@`); a workflow is committed "
                                      "to git: give credentials with `headers_env`, e.g. "
                                      "headers_env: {Authorization: CRM_AUTH}")
    if "{" in authority or "}" in authority:
        return "webhook-url", ("write the host out before any `{{ }}` and end it with `/`, e.g. "
                               "https://crm.example/contacts/{{ contact.id }}: contact data must not choose "
                               "where a request goes")
    if not authority:
        return "webhook-url", f"`{_shown(url)}` has no host; write e.g. https://crm.example/hooks/lead"
    if re.search(r"[\s\\\x00-\x1f\x7f]", authority):
        return "webhook-url", f"`{_shown(url)}`: the host has a space, a backslash or a control character"
    if re.search(r"[\x00-\x1f\x7f]", rest):
        return "webhook-url", f"{_control_character(rest)} in the URL; percent-encode it"
    return "webhook-url", f"`{_shown(url)}` is not an http or https URL mauto can call"


def close_match(word: str, choices: Sequence[str]) -> str:
    """"; did you mean `steps`?" when `word` is close to one of `choices` (difflib), else ""."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def article(word: str) -> str:
    """`word` with its article: "an email", "a wait"."""
    return ("an " if word[:1] in "aeio" else "a ") + word


def count_words(count: int) -> str:
    return {2: "two", 3: "three"}.get(count, str(count))


def and_list(keys: Sequence[str]) -> str:
    """"`gets` and `exits`", "`a`, `b` and `c`"."""
    return ", ".join(f"`{key}`" for key in keys[:-1]) + f" and `{keys[-1]}`"


def first_duplicate(items: Iterable[Any]) -> Any:
    """The first item equal (as JSON) to one before it; None when there is none."""
    seen: set[str] = set()
    for item in items:
        key = json.dumps(item, sort_keys=True)
        if key in seen:
            return item
        seen.add(key)
    return None


def value_at(data: Any, path: JsonPath) -> Any:
    """The value at a JSON path in loaded data, or None when the path does not lead anywhere."""
    node = data
    for key in path:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _type_words(json_type: Any) -> str:
    words = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
             "object": "a mapping", "array": "a list", "null": "empty"}
    if isinstance(json_type, list):
        named = [words.get(t, str(t)) for t in json_type]
        return " or ".join(named)
    return words.get(json_type, str(json_type))


def _value_words(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string `{value}`" if len(value) <= 40 else "a string"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _shown(text: str) -> str:
    """A value for a message: visible control characters, cut short when long."""
    shown = "".join(f"\\x{ord(char):02x}" if ord(char) < 32 or ord(char) == 127 else char for char in text)
    return shown if len(shown) <= 60 else shown[:50] + "…"


def _control_character(text: str) -> str:
    """Which control character `text` holds, in words: "a line break (U+000A)"."""
    names = {"\r": "a carriage return", "\n": "a line break", "\0": "a NUL byte", "\t": "a tab"}
    char = next((char for char in text if ord(char) < 32 or ord(char) == 127), "\0")
    return f"{names.get(char, 'a control character')} (U+{ord(char):04X})"
