"""JSON Schema validation, with errors said in plain words at their line and column.

jsonschema finds the errors; this module turns each into one sentence that
names the thing ("unknown key `delay` in step 3; did you mean `wait`?") and
places it with the document's position map: an unknown key on that key's own
line, a bad value on the value.

Beyond JSON Schema's own keywords, the validator checks mauto's formats (an
editor ignores them): `mauto-duration` and `mauto-signed-duration` (at most
mauto.limits.LONGEST), `mauto-timeout` (longer than 0s, at most 1h) and
`mauto-moment` (within mauto.limits' years). Past those bounds the engine's date
arithmetic or a socket would overflow, so they are refused where they are written.
"""
from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, TypeVar

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, relevance

from mauto.limits import RANGE_TEXT, LimitError, check_moment
from mauto.workflow.durations import (
    DurationError,
    DurationTooLong,
    check_timeout,
    parse_duration,
)
from mauto.workflow.loader import Document, JsonPath, Pos

SCHEMA_NAMES = ("workflow", "project", "scenario")


def schema_text(name: str) -> str:
    """The JSON text of `workflow` or `project` schema, as shipped in the package."""
    return resources.files("mauto.data").joinpath(f"{name}.schema.json").read_text(encoding="utf-8")


@cache
def schema(name: str) -> dict:
    return json.loads(schema_text(name))


# --- mauto's formats -----------------------------------------------------------

def format_problem(format_name: str, value: Any) -> str | None:
    """Why `value` is not of mauto's format `format_name` (a sentence), or None when it is or when the format
    is not mauto's. A value the pattern beside the format refuses is left to the pattern's own message."""
    if not isinstance(value, str):
        return None
    if format_name in ("mauto-duration", "mauto-signed-duration", "mauto-timeout"):
        try:
            if format_name == "mauto-timeout":
                check_timeout(value)
            else:
                parse_duration(value, signed=format_name == "mauto-signed-duration")
        except DurationTooLong as error:
            return str(error)
        except DurationError as error:
            return str(error) if format_name == "mauto-timeout" and _is_duration(value) else None
        return None
    if format_name == "mauto-moment":
        return _moment_problem(value)
    return None


def _is_duration(value: str) -> bool:
    try:
        parse_duration(value)
        return True
    except DurationError:
        return False


def _moment_problem(value: str) -> str | None:
    """A scenario's moment past the bounds: `+99999999999d`, `9999-12-31T23:59:59-12:00`. Other mistakes are
    the scenario reader's to word."""
    text = value.strip()
    if text[:1] in ("+", "-"):
        try:
            parse_duration(text[1:])
        except DurationTooLong as error:
            return str(error)
        except DurationError:
            return None
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    try:
        check_moment(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    except LimitError:
        return f"`{value}` is outside the times mauto handles ({RANGE_TEXT})"
    return None


def _format(validator_: Any, format_name: Any, instance: Any, schema_: dict) -> Iterator[ValidationError]:
    """jsonschema's `format` keyword, with mauto's formats checked and worded."""
    message = format_problem(format_name, instance)
    if message is not None:
        yield ValidationError(message)
        return
    yield from _STANDARD_FORMAT(validator_, format_name, instance, schema_)


_STANDARD_FORMAT = Draft202012Validator.VALIDATORS["format"]
_Validator = validators.extend(Draft202012Validator, {"format": _format})
_FORMATS = ("mauto-duration", "mauto-signed-duration", "mauto-timeout", "mauto-moment")


@cache
def validator(name: str) -> Draft202012Validator:
    """A validator over the schema with its non-recursive `$ref`s inlined, checking mauto's formats.

    Resolving a `$ref` through jsonschema's registry on every value costs about
    a fifth of the validation time; the inlined schema validates the same.
    """
    shipped = schema(name)
    return _Validator(_inline_refs(shipped, shipped.get("$defs", {}), keep={"step"}))


def _inline_refs(node: Any, defs: dict, keep: set[str]) -> Any:
    if isinstance(node, dict):
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.startswith("#/$defs/"):
            name = reference.rsplit("/", 1)[1]
            if name not in keep:
                target = _inline_refs(defs[name], defs, keep)
                return {**target, **{key: value for key, value in node.items() if key != "$ref"}}
        return {key: _inline_refs(value, defs, keep) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_refs(item, defs, keep) for item in node]
    return node


@dataclass(frozen=True)
class SchemaProblem:
    """One schema error, placed and worded. `rule` is the lint rule id that reports it."""

    rule: str
    pos: Pos
    message: str
    path: JsonPath


# Below this many documents in one run, compiling the fast check costs more than it saves.
FAST_CHECK_THRESHOLD = 100


@cache
def fast_check(name: str) -> Callable[[Any], Any]:
    """A compiled yes/no check of the schema (fastjsonschema), about five times faster than jsonschema.

    fastjsonschema knows drafts up to 7, so it gets the shipped 2020-12 schema with
    `dependentSchemas` spelled as draft 7's schema-valued `dependencies` (the same
    rule); every other keyword the schemas use means the same in both drafts. It
    only ever answers "valid": for a document it rejects, jsonschema finds and
    words the errors. A test keeps the two in agreement.
    """
    import fastjsonschema

    shipped = schema(name)
    draft7 = _as_draft7(_inline_refs(shipped, shipped.get("$defs", {}), keep={"step"}))
    draft7["$schema"] = "http://json-schema.org/draft-07/schema#"
    draft7.pop("$id", None)
    formats = {format_name: (lambda value, format_name=format_name: format_problem(format_name, value) is None)
               for format_name in _FORMATS}
    return fastjsonschema.compile(draft7, formats=formats)


def _as_draft7(node: Any) -> Any:
    if isinstance(node, dict):
        return {("dependencies" if key == "dependentSchemas" else key):
                (value if key in ("enum", "const") else _as_draft7(value)) for key, value in node.items()}
    if isinstance(node, list):
        return [_as_draft7(item) for item in node]
    return node


def fast_valid(data: Any, name: str) -> bool:
    from fastjsonschema import JsonSchemaException

    try:
        fast_check(name)(data)
        return True
    except JsonSchemaException:
        return False


def validate(document: Document, name: str, fast: bool = False) -> list[SchemaProblem]:
    """Validate `document` against the named schema; [] when it is valid.

    With `fast`, a compiled check answers first and jsonschema runs only on what it rejects.
    """
    if fast and fast_valid(document.data, name):
        return []
    checker = validator(name)
    problems: dict[tuple, SchemaProblem] = {}
    errors = sorted(checker.iter_errors(document.data), key=relevance)
    for error in errors:
        for problem in _explain(error, document, name):
            problems.setdefault((problem.pos.line, problem.pos.col, problem.message), problem)
    return _without_echoes(list(problems.values()))


def _without_echoes(problems: list[SchemaProblem]) -> list[SchemaProblem]:
    """Drop the errors that only repeat another one in other words.

    An unknown key also fails the step's "one action" and "keys of this kind"
    checks; two actions in one step also fail each action's key list. The user
    needs one sentence per mistake.
    """
    unknown = {p.path for p in problems if p.message.startswith("unknown key")}
    two_actions = {p.path[:-1] for p in problems if " actions, " in p.message or " trigger kinds, " in p.message}
    kept = []
    for problem in problems:
        if problem.message.startswith(("no action", "no trigger")) and any(
                key[:-1] == problem.path for key in unknown):
            continue
        if " does not go with " in problem.message and (
                problem.path in unknown or problem.path[:-1] in two_actions):
            continue
        kept.append(problem)
    return sorted(kept, key=lambda p: (p.pos.line, p.pos.col, p.message))


# --- wording ----------------------------------------------------------------

def describe(path: JsonPath, data: Any, name: str = "workflow") -> tuple[str, str]:
    """Where `path` is, in words: (the step holding it or "", the field path inside it).

    ("steps", 2, "then", 0, "wait_for", "timeout") is ("step 3.then.1", "wait_for.timeout");
    ("settings", "quiet_hours") is ("", "settings.quiet_hours").
    """
    step_label = ""
    field_start = 0
    for index, key in enumerate(path):
        if isinstance(key, int) and index > 0 and path[index - 1] in _STEP_LISTS:
            between = [str(k) for k in path[field_start:index - 1]] if step_label else []
            container = path[index - 1]
            if not step_label:
                step_label = str(key + 1)
            else:
                extra = [part for part in between if part not in _STEP_LISTS]
                step_label += "".join("." + part for part in extra)
                step_label += ("." + container if container != "steps" else "") + f".{key + 1}"
            field_start = index + 1
    label = ""
    if step_label:
        label = f"step {step_label}"
        step_id = _step_id_at(data, path)
        if step_id:
            label += f" (`{step_id}`)"
    field = ".".join(str(k) for k in path[field_start:])
    return label, field


def subject(path: JsonPath, data: Any) -> str:
    """A value's name for a message: "`wait_for.timeout` in step 3", or "`version`"."""
    label, field = describe(path, data)
    if not field:
        return label or "the file"
    return f"`{field}` in {label}" if label else f"`{field}`"


def container(path: JsonPath, data: Any, name: str = "workflow") -> str:
    """A mapping's name for a message: "step 3", "`trigger`", "the workflow"."""
    label, field = describe(path, data)
    if label and not field:
        return label
    if field:
        return f"`{field}` in {label}" if label else f"`{field}`"
    return "the workflow" if name == "workflow" else "mauto.yaml"


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeio" else "a ") + word


_STEP_LISTS = ("steps", "then", "else", "on_event", "on_timeout")


def _step_id_at(data: Any, path: JsonPath) -> str | None:
    """The id of the innermost step on `path`, if it has one."""
    node = data
    found = None
    for index, key in enumerate(path):
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return found
        if isinstance(key, int) and index > 0 and path[index - 1] in _STEP_LISTS and isinstance(node, dict):
            step_id = node.get("id")
            found = step_id if isinstance(step_id, str) else None
    return found


T = TypeVar("T")


def first_duplicate(items: Iterable[Any]) -> Any:
    """The first item equal (as JSON) to one before it; None when there is none."""
    seen: set[str] = set()
    for item in items:
        key = json.dumps(item, sort_keys=True)
        if key in seen:
            return item
        seen.add(key)
    return None


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


# What users of other tools call a step's action; difflib cannot guess these.
SYNONYMS = {
    "delay": "wait", "sleep": "wait", "pause": "wait", "wait_until": "wait", "mail": "email",
    "send_email": "email", "text": "sms", "send_sms": "sms", "condition": "if", "when": "if", "branch": "if",
    "ab_test": "split", "abtest": "split", "experiment": "split", "points": "score", "coupon": "assign_coupon",
    "http": "webhook", "request": "webhook", "end": "exit", "stop": "exit", "goto": "start", "enroll": "start",
    "list": "lists", "tag": "update", "set": "update",
}


def _suggest(word: str, choices: list[str]) -> str:
    synonym = SYNONYMS.get(word.lower())
    if synonym in choices:
        return f"; did you mean `{synonym}`?"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def _field(path: JsonPath) -> str:
    """The last mapping key on the path, for messages about a value."""
    for key in reversed(path):
        if isinstance(key, str):
            return key
    return "value"


def _explain(error: ValidationError, document: Document, name: str) -> Iterator[SchemaProblem]:  # noqa: C901 - split by the refactor of issue 11
    path = tuple(error.absolute_path)
    where = container(path, document.data, name)
    what = subject(path, document.data)
    kind = error.validator
    schema_ = error.schema if isinstance(error.schema, dict) else {}
    instance: Any = error.instance  # jsonschema sets it on every error it yields (`Unset` only on hand-made ones)
    validator_value: Any = error.validator_value

    def at_value(message: str, rule: str = "schema") -> SchemaProblem:
        return SchemaProblem(rule, document.pos(path), message, path)

    def at_key(message: str, rule: str = "schema", key_path: JsonPath = path) -> SchemaProblem:
        return SchemaProblem(rule, document.key_pos(key_path), message, key_path)

    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema_.get("properties", {}))
        for key in instance:
            if key not in allowed:
                inside = f" in {where}" if path else ""
                yield at_key(f"unknown key `{key}`{inside}{_suggest(key, allowed)}", key_path=path + (key,),
                             rule="schema")
        return
    if kind == "not" and isinstance(validator_value, dict) and "propertyNames" in validator_value \
            and not isinstance(instance, dict):
        return  # a step or trigger that is not a mapping: the type error says it
    if kind == "not" and isinstance(instance, dict) and "propertyNames" in validator_value:
        kinds = [key for key in schema_.get("dependentSchemas", {})]
        if path == ("trigger",):
            yield at_key(f"no trigger kind in `trigger`; add one of: {', '.join(kinds)}")
        else:
            yield at_key(f"no action in {where}; a step needs one of: {', '.join(kinds)}")
        return
    if kind == "enum" and "propertyNames" in error.relative_schema_path and isinstance(instance, str):
        parent = value_at(document.data, path)
        kinds = _dispatch_kinds(error)
        present = [key for key in kinds if isinstance(parent, dict) and key in parent]
        thing = "step" if _is_step(path) else "trigger"
        if len(present) > 1:
            named = ", ".join(f"`{k}`" for k in present[:-1]) + f" and `{present[-1]}`"
            count = {2: "two", 3: "three"}.get(len(present), str(len(present)))
            advice = "a step does one thing: make them separate steps" if thing == "step" else "keep one"
            yield at_key(f"{where} has {count} {'actions' if thing == 'step' else 'trigger kinds'}, {named}; {advice}",
                         key_path=path + (present[1],))
            return
        action = present[0] if present else None
        takes = ", ".join(validator_value)
        if action is not None:
            yield at_key(f"`{instance}` does not go with `{action}` in {where}; "
                         f"{_a(action)} {thing} takes: {takes}", key_path=path + (instance,))
        else:
            yield at_key(f"unknown key `{instance}` in {where}", key_path=path + (instance,))
        return
    if kind == "pattern" and "propertyNames" in error.relative_schema_path and isinstance(instance, str):
        if schema_.get("title") == "header-name":
            yield at_key(f"`{_shown(instance)}` is not a header name in {where}: use letters, digits and `-`, "
                         "e.g. X-Request-Id", rule="webhook-header", key_path=path + (instance,))
            return
        yield at_key(f"`{instance}` is not a valid name in {where}: it must match {validator_value}",
                     key_path=path + (instance,))
        return
    if kind == "format":
        rule = "duration" if schema_.get("title") == "duration" else "schema"
        yield at_value(f"{what}: {error.message}", rule)
        return
    if kind == "required":
        missing = [key for key in validator_value if not (isinstance(instance, dict) and key in instance)]
        for key in missing:
            yield at_key(f"{where} is missing `{key}`")
        return
    if kind == "type":
        yield at_value(f"{what} must be {_type_words(validator_value)}, not {_value_words(instance)}")
        return
    if kind == "enum":
        choices = [str(choice) for choice in validator_value]
        suggestion = _suggest(str(instance), choices) if isinstance(instance, str) else ""
        yield at_value(f"{what} must be one of {', '.join(choices)}, "
                       f"not {_value_words(instance)}{suggestion}")
        return
    if kind == "const":
        yield at_value(f"{what} can only be {json.dumps(validator_value)} or a mapping")
        return
    if kind == "pattern":
        yield _pattern(error, path, what, at_value)
        return
    if kind == "minLength":
        yield at_value(f"{what} must not be empty")
        return
    if kind in ("minItems", "minProperties"):
        one, many = ("item", "items") if kind == "minItems" else ("entry", "entries")
        yield at_value(f"{what} needs at least {validator_value} {one if validator_value == 1 else many}")
        return
    if kind == "uniqueItems":
        yield at_value(f"{what} lists `{first_duplicate(instance)}` more than once")
        return
    if kind in ("minimum", "maximum"):
        bound = "at least" if kind == "minimum" else "at most"
        yield at_value(f"{what} must be {bound} {validator_value}, not {instance}")
        return
    if kind == "not" and _field(path) == "score":
        yield at_value(f"`score: 0` in {container(path[:-1], document.data)} does nothing; "
                       "remove the step or give it points")
        return
    if kind == "additionalProperties":  # additionalProperties on a non-object: a type error follows
        return
    yield at_value(f"{what}: {error.message}")


def _pattern(error: ValidationError, path: JsonPath, what: str, at_value: Callable[..., T]) -> T:
    """The problem with a string that does not match its pattern, worded for what the pattern stands for; built
    with `at_value(message, rule)` (SchemaProblem here, the scenarios' own (pos, message) there)."""
    title = error.schema.get("title") if isinstance(error.schema, dict) else None
    value: Any = error.instance  # jsonschema sets it on every error it yields (`Unset` only on hand-made ones)
    validator_value: Any = error.validator_value
    if title == "duration":
        try:
            parse_duration(value, signed=validator_value.startswith("^-"))
            message = f"`{value}` is not a duration"
        except DurationError as duration_error:
            message = str(duration_error)
        return at_value(f"{what}: {message}", "duration")
    if title == "time-of-day":
        return at_value(f"{what}: `{value}` is not a time of day; write 24-hour HH:MM, e.g. 09:00", "time-of-day")
    if title in ("step-id", "workflow-id"):
        suggestion = "-".join(filter(None, "".join(c if c.isalnum() else "-" for c in value.lower()).split("-")))
        hint = f", e.g. `{suggestion}`" if suggestion and suggestion != value else ""
        return at_value(f"{what}: `{value}` must be lowercase letters, digits and dashes{hint}")
    if title == "webhook-url":
        rule, message = webhook_url_problem(value)
        return at_value(f"{what}: {message}", rule)
    if title == "header-value":
        return at_value(f"{what}: {_control_character(value)} in a header value; a header is one line of text, "
                        "and a line break in it would start another header", "webhook-header")
    if title == "env-name":
        return at_value(f"{what}: `{_shown(value)}` is not an environment variable name; use letters, digits "
                        "and `_`, e.g. SHOP_API_AUTH")
    if title == "country-code":
        return at_value(f"{what}: `{_shown(value)}` is not a country code; write its two capital letters "
                        "(ISO 3166-1 alpha-2), e.g. FR")
    if title == "template-name":
        return at_value(f"{what}: `{value}` is not a template name; write its path under templates/ "
                        "without the extension, e.g. cart/reminder-1")
    if title == "event-name":
        return at_value(f"{what}: `{value}` is not an event name; use letters, digits, `_`, `.`, `:` or `-`, "
                        "e.g. order_placed")
    return at_value(f"{what}: `{value}` does not match the pattern {validator_value}")


def _shown(text: str) -> str:
    """A value for a message: visible control characters, cut short when long."""
    shown = "".join(f"\\x{ord(char):02x}" if ord(char) < 32 or ord(char) == 127 else char for char in text)
    return shown if len(shown) <= 60 else shown[:50] + "…"


def _control_character(text: str) -> str:
    """Which control character `text` holds, in words: "a line break (U+000A)"."""
    names = {"\r": "a carriage return", "\n": "a line break", "\0": "a NUL byte", "\t": "a tab"}
    char = next((char for char in text if ord(char) < 32 or ord(char) == 127), "\0")
    return f"{names.get(char, 'a control character')} (U+{ord(char):04X})"


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


def _dispatch_kinds(error: ValidationError) -> list[str]:
    """The kind keys (step actions or trigger kinds) of the dispatching schema an error came from."""
    node = error.parent
    while node is not None:
        if isinstance(node.schema, dict) and "dependentSchemas" in node.schema:
            return list(node.schema["dependentSchemas"])
        node = node.parent
    from mauto.workflow.model import ACTIONS, TRIGGER_KINDS

    return list(TRIGGER_KINDS) if error.absolute_path and list(error.absolute_path)[-1] == "trigger" else list(ACTIONS)


def value_at(data: Any, path: JsonPath) -> Any:
    """The value at a JSON path in loaded data, or None when the path does not lead anywhere."""
    node = data
    for key in path:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _is_step(path: JsonPath) -> bool:
    return len(path) >= 2 and isinstance(path[-1], int) and path[-2] in _STEP_LISTS
