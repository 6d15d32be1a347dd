"""YAML with source positions.

PyYAML's C composer builds the node tree (it carries every mark); we turn the
nodes into plain JSON-like data ourselves so that we can keep the line and
column of every key and value, read scalars the YAML 1.2 way, and refuse what
PyYAML's constructor would let through silently: duplicate keys, non-string
keys, merge keys, custom tags, recursive aliases and alias bombs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from yaml.constructor import ConstructorError

from mauto.errors import YamlError

try:  # the C composer is several times faster; fall back where libyaml is missing
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

MAX_ALIAS_EXPANSION = 10_000
MAX_DEPTH = 64  # a workflow nests a few levels; deeper is a mistake or an attack on the validators

JsonPath = tuple  # of str (mapping keys) and int (list indexes)


class Pos(NamedTuple):
    """A place in a source file; line and column start at 1."""

    line: int
    col: int
    style: str | None = None  # scalar style: None (plain), '"', "'", '|', '>'


@dataclass
class Document:
    """A YAML document as plain data, with the position of every key and value."""

    path: str
    text: str
    data: Any
    values: dict[JsonPath, Pos] = field(default_factory=dict)
    keys: dict[JsonPath, Pos] = field(default_factory=dict)

    def pos(self, path: JsonPath) -> Pos:
        """Position of the value at `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, Pos(1, 1))

    def key_pos(self, path: JsonPath) -> Pos:
        """Position of the key that holds `path` (the value's own position for list items)."""
        path = tuple(path)
        found = self.keys.get(path)
        return found if found is not None else self.pos(path)


_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_PASSTHROUGH = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value", "tag:yaml.org,2002:binary", _STR}
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"


def _pos(node: yaml.Node) -> Pos:
    mark = node.start_mark
    style = getattr(node, "style", None) or None
    return Pos(mark.line + 1, mark.column + 1, style)


_IMPLICIT = {_STR, _INT, _FLOAT, _BOOL, _NULL, "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"}
_CORE_INT = re.compile(r"[-+]?[0-9]+")
_CORE_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_NOT_PLAIN_TEXT = frozenset("0123456789+-.~nNtTfF")  # what a YAML 1.2 non-string plain scalar can start with


def _core(value: str) -> Any:
    """A plain scalar read with YAML 1.2's core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution)."""
    if value in ("", "~", "null", "Null", "NULL"):
        return None
    if value in ("true", "True", "TRUE"):
        return True
    if value in ("false", "False", "FALSE"):
        return False
    if _CORE_INT.fullmatch(value):
        return int(value)
    if value.startswith("0o") and len(value) > 2 and all(c in "01234567" for c in value[2:]):
        return int(value[2:], 8)
    if value.startswith("0x") and len(value) > 2 and all(c in "0123456789abcdefABCDEF" for c in value[2:]):
        return int(value[2:], 16)
    if _CORE_FLOAT.fullmatch(value):
        return float(value)
    lowered = value.lower()
    if lowered in (".inf", "+.inf", "-.inf") and value[-3:] in ("inf", "Inf", "INF"):
        return float("-inf") if value.startswith("-") else float("inf")
    if value in (".nan", ".NaN", ".NAN"):
        return float("nan")
    return value


def _scalar(node: yaml.ScalarNode) -> Any:
    """A scalar's value: plain scalars by YAML 1.2's core schema, quoted and block ones as text."""
    tag, value = node.tag, node.value
    if tag in _IMPLICIT:
        if not node.style:  # libyaml gives plain scalars style '' (PyYAML's own loader None)
            return _core(value) if value == "" or value[0] in _NOT_PLAIN_TEXT else value
        if tag == _STR or tag not in (_INT, _FLOAT, _BOOL, _NULL):
            return value
    if tag in _PASSTHROUGH:
        return value
    if tag == _NULL:
        return None
    if tag == _BOOL:
        lowered = value.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
        return value
    if tag == _INT:
        return _int(value)
    if tag == _FLOAT:
        return _float(value)
    raise YamlError(f"unknown tag `{tag}`; mauto files use plain YAML without tags", line=node.start_mark.line + 1,
                    col=node.start_mark.column + 1)


def _int(value: str) -> int | str:
    """An explicitly tagged `!!int`."""
    core = _core(value)
    return core if isinstance(core, int) and not isinstance(core, bool) else value


def _float(value: str) -> float | str:
    """An explicitly tagged `!!float`."""
    core = _core(value)
    return float(core) if isinstance(core, (int, float)) and not isinstance(core, bool) else value


class _Converter:
    def __init__(self, path: str) -> None:
        self.path = path
        self.values: dict[JsonPath, Pos] = {}
        self.keys: dict[JsonPath, Pos] = {}
        self.seen: set[int] = set()
        self.active: set[int] = set()
        self.expanded = 0

    def error(self, message: str, node: yaml.Node) -> YamlError:
        return YamlError(message, self.path, node.start_mark.line + 1, node.start_mark.column + 1)

    def convert(self, node: yaml.Node, path: JsonPath, in_alias: bool) -> Any:
        if len(path) > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} levels deep; a mauto file never needs that", node)
        if path not in self.values:
            self.values[path] = _pos(node)
        if isinstance(node, yaml.ScalarNode):
            if in_alias:
                self._count(node)
            try:
                return _scalar(node)
            except YamlError as error:
                error.path = self.path
                raise
        key = id(node)
        if key in self.active:
            raise self.error("this anchor contains an alias to itself; recursive YAML is not allowed", node)
        if key in self.seen:
            in_alias = True
        if in_alias:
            self._count(node)
        self.seen.add(key)
        self.active.add(key)
        try:
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _SEQ:
                    raise self.error(f"unknown tag `{node.tag}`; mauto files use plain YAML without tags", node)
                return [self.convert(child, path + (index,), in_alias) for index, child in enumerate(node.value)]
            if node.tag != _MAP or not isinstance(node, yaml.MappingNode):
                raise self.error(f"unknown tag `{node.tag}`; mauto files use plain YAML without tags", node)
            return self._mapping(node, path, in_alias)
        finally:
            self.active.discard(key)

    def plain(self, node: yaml.Node, path: JsonPath) -> Any:
        """`convert` for a document without anchors (no `&` in the text, so no aliases): no alias bookkeeping."""
        mark = node.start_mark
        if type(node) is yaml.ScalarNode:
            self.values[path] = Pos(mark.line + 1, mark.column + 1, node.style or None)
            value = node.value
            if node.tag == _STR and (node.style or not value or value[0] not in _NOT_PLAIN_TEXT):
                return value
            try:
                return _scalar(node)
            except YamlError as error:
                error.path = self.path
                raise
        self.values[path] = Pos(mark.line + 1, mark.column + 1)
        if len(path) > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} levels deep; a mauto file never needs that", node)
        if type(node) is yaml.SequenceNode:
            if node.tag != _SEQ:
                raise self.error(f"unknown tag `{node.tag}`; mauto files use plain YAML without tags", node)
            return [self.plain(child, path + (index,)) for index, child in enumerate(node.value)]
        if node.tag != _MAP:
            raise self.error(f"unknown tag `{node.tag}`; mauto files use plain YAML without tags", node)
        result: dict[str, Any] = {}
        keys = self.keys
        for key_node, value_node in node.value:
            if type(key_node) is yaml.ScalarNode and key_node.tag == _STR and key_node.value \
                    and key_node.value[0] not in _NOT_PLAIN_TEXT:
                key = key_node.value
            else:
                key = self._key(key_node)
            child = path + (key,)
            if key in result:
                raise self._duplicate(key, child, key_node)
            key_mark = key_node.start_mark
            keys[child] = Pos(key_mark.line + 1, key_mark.column + 1, key_node.style or None)
            result[key] = self.plain(value_node, child)
        return result

    def _key(self, key_node: yaml.Node) -> str:
        if key_node.tag == _MERGE:
            raise self.error("merge keys (`<<`) are not supported; write the keys out", key_node)
        if not isinstance(key_node, yaml.ScalarNode):
            raise self.error("a key must be a plain string, not a list or mapping", key_node)
        key = _scalar(key_node)
        if not isinstance(key, str):
            raise self.error(f"key `{key_node.value}` is read as {_type_word(key)}; "
                             f"keys must be strings (quote it: \"{key_node.value}\")", key_node)
        return key

    def _duplicate(self, key: str, child: JsonPath, key_node: yaml.Node) -> YamlError:
        first = self.keys[child]
        return self.error(f"duplicate key `{key}` (first defined at line {first.line}); "
                          "YAML would silently keep only the last one", key_node)

    def _count(self, node: yaml.Node) -> None:
        self.expanded += 1
        if self.expanded > MAX_ALIAS_EXPANSION:
            raise self.error(f"aliases here expand to more than {MAX_ALIAS_EXPANSION:,} values; "
                             "this looks like an alias bomb", node)

    def _mapping(self, node: yaml.MappingNode, path: JsonPath, in_alias: bool) -> dict:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node)
            child = path + (key,)
            if key in result:
                raise self._duplicate(key, child, key_node)
            self.keys[child] = _pos(key_node)
            result[key] = self.convert(value_node, child, in_alias)
        return result


def _type_word(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    return type(value).__name__


def decode(raw: bytes, path: str) -> str:
    """Bytes to text: UTF-8 (with or without BOM) or a YamlError at the first bad byte."""
    body = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        line = body.count(b"\n", 0, error.start) + 1
        line_start = body.rfind(b"\n", 0, error.start) + 1
        col = len(body[line_start:error.start].decode("utf-8", errors="replace")) + 1
        raise YamlError(f"not UTF-8: byte 0x{body[error.start]:02x} cannot be decoded; save the file as UTF-8",
                        path, line, col) from None


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def parse(text: str, path: str) -> Document:
    """Parse one YAML document held in `text`; raise YamlError with its position."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        if error.context and error.problem and "expected a single document" in error.context:
            problem = "more than one YAML document (`---`); a mauto file holds one"
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlError(f"invalid YAML: {problem}", path, line, col) from None
    except yaml.YAMLError as error:  # ReaderError: a character YAML forbids
        position = getattr(error, "position", 0) or 0
        if _Loader is not yaml.SafeLoader:  # libyaml counts bytes of the UTF-8 text, not characters
            position = len(text.encode("utf-8")[:position].decode("utf-8", errors="ignore"))
        line, col = _line_col(text, min(position, len(text)))
        reason = getattr(error, "reason", None) or str(error).splitlines()[0]
        character = getattr(error, "character", None)
        if isinstance(character, int):
            character = chr(character)
        if isinstance(character, str) and character:
            reason = f"character #x{ord(character):04X} is not allowed in YAML ({reason})"
        raise YamlError(f"invalid YAML: {reason}", path, line, col) from None
    except RecursionError:
        raise YamlError("invalid YAML: nested too deeply", path, 1, 1) from None
    if node is None:
        return Document(path, text, None)
    converter = _Converter(path)
    try:
        data = converter.convert(node, (), False) if "&" in text else converter.plain(node, ())
    except RecursionError:
        raise YamlError("nested too deeply to be a mauto file", path, 1, 1) from None
    except (ValueError, ConstructorError) as error:  # a malformed number the resolver let through
        raise YamlError(f"invalid YAML: {error}", path, 1, 1) from None
    return Document(path, text, data, converter.values, converter.keys)


def load(path: str | Path, display_path: str | None = None) -> Document:
    """Read and parse a YAML file; errors name `display_path` (default: `path`)."""
    shown = display_path or str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise YamlError("file not found", shown) from None
    except IsADirectoryError:
        raise YamlError("is a directory, not a file", shown) from None
    except OSError as error:
        raise YamlError(f"cannot read: {error.strerror}", shown) from None
    return parse(decode(raw, shown), shown)
