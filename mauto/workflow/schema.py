"""The JSON Schemas mauto ships, their validator, and validation with each error in words at its place.

`validate` finds the errors with jsonschema and has `mauto.workflow.explain`
say each in one sentence at its line and column; this module holds how a
workflow and mauto.yaml name their parts (`WorkflowWording`), the scenarios
bring their own wording.

Beyond JSON Schema's own keywords, the validator checks mauto's formats (an
editor ignores them): `mauto-duration` and `mauto-signed-duration` (at most
mauto.limits.LONGEST), `mauto-timeout` (longer than 0s, at most 1h) and
`mauto-moment` (within mauto.limits' years). Past those bounds the engine's date
arithmetic or a socket would overflow, so they are refused where they are written.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from mauto.limits import RANGE_TEXT, LimitError, check_moment
from mauto.problem import Problem
from mauto.workflow.durations import (
    DurationError,
    DurationTooLong,
    check_timeout,
    parse_duration,
)
from mauto.workflow.explain import (
    Wording,
    and_list,
    article,
    count_words,
    explain_all,
    first_duplicate,
    value_at,
    webhook_url_problem,
)
from mauto.workflow.loader import Document, JsonPath

# Kept importable from here: datafiles, the duration rule and the webhook rules use them.
__all__ = ["SCHEMA_NAMES", "WorkflowWording", "container", "describe", "fast_valid", "first_duplicate",
           "format_problem", "schema", "schema_text", "subject", "suggest", "validate", "validator", "value_at",
           "webhook_url_problem"]

SCHEMA_NAMES = ("workflow", "project", "scenario")

# What users of other tools call a step's action; difflib cannot guess these.
SYNONYMS = {
    "delay": "wait", "sleep": "wait", "pause": "wait", "wait_until": "wait", "mail": "email",
    "send_email": "email", "text": "sms", "send_sms": "sms", "condition": "if", "when": "if", "branch": "if",
    "ab_test": "split", "abtest": "split", "experiment": "split", "points": "score", "coupon": "assign_coupon",
    "http": "webhook", "request": "webhook", "end": "exit", "stop": "exit", "goto": "start", "enroll": "start",
    "list": "lists", "tag": "update", "set": "update",
}


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


def validate(document: Document, name: str, fast: bool = False, wording: Wording | None = None) -> list[Problem]:
    """Validate `document` against the named schema; [] when it is valid, else each mistake in words at its
    line and column (`wording`: how the file names its parts; by default a workflow's or mauto.yaml's).

    With `fast`, a compiled check answers first and jsonschema runs only on what it rejects.
    """
    wording = wording or WorkflowWording(name)
    odd = [Problem(document.path, pos.line, pos.col, "schema",
                   f"{wording.subject(path, document.data)}: `{_written(value)}` is not a number mauto can use; "
                   "write a finite number", json_path=path)
           for path, value in _not_finite(document.data) for pos in [document.pos(path)]]
    if fast and not odd and fast_valid(document.data, name):
        return []
    return sorted(explain_all(validator(name).iter_errors(document.data), document, wording) + odd,
                  key=lambda problem: (problem.line, problem.col, problem.message))


def _not_finite(data: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, float]]:
    """The numbers that are NaN or infinite (YAML's `.nan`, `.inf`): every bound of a schema lets NaN through
    (a comparison with it is false), and no setting means either."""
    if isinstance(data, float) and not math.isfinite(data):
        yield path, data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _not_finite(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _not_finite(value, (*path, index))


def _written(value: float) -> str:
    return ".nan" if math.isnan(value) else ".inf" if value > 0 else "-.inf"


# --- wording ----------------------------------------------------------------

class WorkflowWording(Wording):
    """How a workflow (or mauto.yaml) names its parts: "step 3 (`hello`)", "`wait_for.timeout` in step 3",
    "the workflow"; its kinds are a step's actions and a trigger's kinds."""

    synonyms = SYNONYMS

    def __init__(self, name: str = "workflow") -> None:
        self.name = name

    def subject(self, path: JsonPath, data: Any) -> str:
        return subject(path, data)

    def container(self, path: JsonPath, data: Any) -> str:
        return container(path, data, self.name)

    def kinds(self, path: JsonPath) -> list[str]:
        from mauto.workflow.model import ACTIONS, TRIGGER_KINDS

        return list(TRIGGER_KINDS) if path and path[-1] == "trigger" else list(ACTIONS)

    def no_kind(self, where: str, path: JsonPath, kinds: list[str]) -> str:
        if path == ("trigger",):
            return f"no trigger kind in `trigger`; add one of: {', '.join(kinds)}"
        return f"no action in {where}; a step needs one of: {', '.join(kinds)}"

    def several_kinds(self, where: str, path: JsonPath, present: list[str]) -> str:
        count = count_words(len(present))
        if _is_step(path):
            return f"{where} has {count} actions, {and_list(present)}; a step does one thing: make them separate steps"
        return f"{where} has {count} trigger kinds, {and_list(present)}; keep one"

    def not_allowed(self, key: str, kind: str, where: str, path: JsonPath, allowed: list[str]) -> str:
        thing = "step" if _is_step(path) else "trigger"
        return f"`{key}` does not go with `{kind}` in {where}; {article(kind)} {thing} takes: {', '.join(allowed)}"

    def refused(self, what: str, path: JsonPath, data: Any) -> str | None:
        if _field(path) == "score":  # `score` refuses 0 with `not: {const: 0}`
            return f"`score: 0` in {container(path[:-1], data)} does nothing; remove the step or give it points"
        return None


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


def _is_step(path: JsonPath) -> bool:
    return len(path) >= 2 and isinstance(path[-1], int) and path[-2] in _STEP_LISTS


def _field(path: JsonPath) -> str:
    """The last mapping key on the path, for messages about a value."""
    for key in reversed(path):
        if isinstance(key, str):
            return key
    return "value"


def suggest(word: str, choices: Sequence[str]) -> str:
    """"; did you mean `wait`?" for a word people bring from other tools, or one close to a choice; else ""."""
    return _WORKFLOW.suggest(word, choices)


_WORKFLOW = WorkflowWording()
