"""A scenario file's schema errors in words, at their line and column: the scenario's wording for the one
explainer (mauto.workflow.explain) that says every schema's errors."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mauto.problem import Problem
from mauto.workflow.explain import Wording, and_list, article, count_words
from mauto.workflow.loader import Document, JsonPath
from mauto.workflow.schema import schema, suggest, validate

# What people from other test tools write for a key; difflib cannot guess these.
SYNONYMS = {
    "expects": "expect", "expectations": "expect", "assert": "expect", "asserts": "expect", "then": "expect",
    "duration": "for", "horizon": "for", "until": "for", "begin": "start", "starts": "start", "now": "start",
    "receives": "gets", "get": "gets", "sent": "gets", "email": "gets", "sms": "gets",
    "not_gets": "gets_no", "gets_not": "gets_no", "no_message": "gets_no", "never_gets": "gets_no",
    "enter": "enters", "entered": "enters", "not_enters": "does_not_enter", "never_enters": "does_not_enter",
    "exit": "exits", "leaves": "exits", "exited": "exits", "convert": "converts", "goal": "converts",
    "converted": "converts", "complete": "completes", "finishes": "completes", "split": "variant",
    "reach": "reaches", "reached": "reaches", "has": "fields", "field": "fields", "fail": "fails",
    "sends": "messages", "count": "messages", "time": "at", "when": "at", "within": "tolerance",
}

_ITEMS = {"expect": "expectation", "contacts": "contact", "events": "event"}


class ScenarioWording(Wording):
    """How a scenario names its parts ("expectation 3", "`at` in expectation 3", "the scenario"); its kinds
    are the expectations' checks."""

    synonyms = SYNONYMS

    def subject(self, path: JsonPath, data: Any) -> str:
        """"the scenario", "expectation 3", "`at` in expectation 3", "`start`", "item 2 of `workflows`"."""
        if not path:
            return "the scenario"
        if len(path) >= 2 and path[0] in _ITEMS and isinstance(path[1], int):
            owner = f"{_ITEMS[path[0]]} {path[1] + 1}"
            return f"`{_dotted(path[2:])}` in {owner}" if path[2:] else owner
        if isinstance(path[-1], int):
            return f"item {path[-1] + 1} of `{_dotted(path[:-1])}`"
        return f"`{_dotted(path)}`"

    def suggest(self, word: str, choices: Sequence[str]) -> str:
        synonym = SYNONYMS.get(word.lower())
        if synonym in choices:
            return f"; did you mean `{synonym}`?"
        return suggest(word, choices)

    def kinds(self, path: JsonPath) -> list[str]:
        return list(schema("scenario")["$defs"]["expectation"]["dependentSchemas"])

    def no_kind(self, where: str, path: JsonPath, kinds: list[str]) -> str:
        return f"{where} has nothing to check; add one of: {', '.join(kinds)}"

    def several_kinds(self, where: str, path: JsonPath, present: list[str]) -> str:
        return (f"{where} checks {count_words(len(present))} things, {and_list(present)}; an expectation checks "
                "one: make them separate items")

    def not_allowed(self, key: str, kind: str, where: str, path: JsonPath, allowed: list[str]) -> str:
        return (f"`{key}` does not go with `{kind}` in {where}; {article(kind).split()[0]} `{kind}` expectation "
                f"takes: {', '.join(allowed)}")


def _dotted(path: JsonPath) -> str:
    return ".".join(str(part + 1) if isinstance(part, int) else part for part in path)


def schema_problems(document: Document) -> list[Problem]:
    """The scenario schema's errors for `document`, one sentence each at the line and column of the mistake."""
    return validate(document, "scenario", wording=ScenarioWording())
