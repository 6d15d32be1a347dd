"""The YAML loader: plain data, the position of every key and value, YAML 1.2 scalars, and refusals."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from mauto.errors import MautoError, YamlError
from mauto.workflow.loader import MAX_ALIAS_EXPANSION, Document, Pos, decode, load, parse


def yaml(source: str) -> str:
    return textwrap.dedent(source).lstrip("\n")


def refused(text: str) -> YamlError:
    with pytest.raises(YamlError) as caught:
        parse(text, "w.yaml")
    error = caught.value
    assert error.path == "w.yaml"
    return error


def at(error: YamlError) -> tuple[int | None, int | None]:
    return error.line, error.col


# --- positions ----------------------------------------------------------------

BLOCK = yaml("""
    id: welcome
    trigger:
      event: signed_up
    steps:
      - wait: 1h
      - id: hello
        email: 'welcome/hello'
        vars:
          coupon: "X1"
""")


def test_block_style_values_and_keys_have_their_own_line_and_column():
    document = parse(BLOCK, "w.yaml")
    assert document.data == {
        "id": "welcome", "trigger": {"event": "signed_up"},
        "steps": [{"wait": "1h"}, {"id": "hello", "email": "welcome/hello", "vars": {"coupon": "X1"}}],
    }
    assert document.values[()][:2] == (1, 1)
    assert document.keys[("id",)][:2] == (1, 1)
    assert document.values[("id",)][:2] == (1, 5)
    assert document.keys[("trigger", "event")][:2] == (3, 3)
    assert document.values[("trigger", "event")][:2] == (3, 10)
    assert document.values[("steps",)][:2] == (5, 3)
    assert document.values[("steps", 0)][:2] == (5, 5)
    assert document.keys[("steps", 0, "wait")][:2] == (5, 5)
    assert document.values[("steps", 0, "wait")][:2] == (5, 11)
    assert document.keys[("steps", 1, "email")][:2] == (7, 5)
    assert document.values[("steps", 1, "email")] == Pos(7, 12, "'")
    assert document.keys[("steps", 1, "vars", "coupon")][:2] == (9, 7)
    assert document.values[("steps", 1, "vars", "coupon")] == Pos(9, 15, '"')


def test_flow_style_values_and_keys_have_their_own_column():
    document = parse('trigger: {event: cart_abandoned, where: "event.cart_value >= 20"}\ntags: [a, "b"]\n', "w.yaml")
    assert document.data == {"trigger": {"event": "cart_abandoned", "where": "event.cart_value >= 20"},
                             "tags": ["a", "b"]}
    assert document.values[("trigger",)][:2] == (1, 10)
    assert document.keys[("trigger", "event")][:2] == (1, 11)
    assert document.values[("trigger", "event")][:2] == (1, 18)
    assert document.keys[("trigger", "where")][:2] == (1, 34)
    assert document.values[("trigger", "where")] == Pos(1, 41, '"')
    assert document.values[("tags", 0)][:2] == (2, 8)
    assert document.values[("tags", 1)] == Pos(2, 11, '"')


def test_block_scalar_position_and_style():
    document = parse("description: |\n  two\n  lines\n", "w.yaml")
    assert document.data == {"description": "two\nlines\n"}
    assert document.values[("description",)] == Pos(1, 14, "|")


def test_columns_count_characters_not_bytes():
    document = parse("é: {ü: 1, k: v}\n", "w.yaml")
    assert document.keys[("é", "k")][:2] == (1, 11)
    assert document.values[("é", "k")][:2] == (1, 14)


def test_pos_falls_back_to_the_nearest_ancestor_and_key_pos_to_the_value():
    document = parse(BLOCK, "w.yaml")
    assert document.pos(("steps", 1, "vars", "missing", "deeper"))[:2] == (9, 7)
    assert document.pos(("nowhere",))[:2] == (1, 1)
    # a list item has no key: key_pos gives the item's own position
    assert document.key_pos(("steps", 1))[:2] == (6, 5)
    assert document.key_pos(("steps", 1, "id"))[:2] == (6, 5)
    assert document.pos(("steps", 1, "id"))[:2] == (6, 9)


# --- YAML 1.2 scalars -----------------------------------------------------------

@pytest.mark.parametrize(("written", "read"), [
    ("NO", "NO"), ("no", "no"), ("Yes", "Yes"), ("on", "on"), ("off", "off"), ("y", "y"),
    ("1:30", "1:30"), ("190:20:30", "190:20:30"), ("1:30.5", "1:30.5"),
    ("2026-12-24", "2026-12-24"), ("2026-12-24T09:00:00Z", "2026-12-24T09:00:00Z"),
    ("true", True), ("True", True), ("TRUE", True), ("false", False), ("False", False),
    ("~", None), ("null", None), ("", None),
    ("42", 42), ("-7", -7), ("+5", 5), ("0", 0), ("0x1F", 31), ("017", 17),
    ("1.5", 1.5), ("-0.25", -0.25), (".inf", math.inf), ("-.Inf", -math.inf),
    ("'NO'", "NO"), ('"1:30"', "1:30"), ("'42'", "42"),
])
def test_scalars_are_read_the_yaml_1_2_way(written, read):
    assert parse(f"value: {written}\n", "w.yaml").data == {"value": read}


def test_nan_is_a_float():
    value = parse("value: .nan\n", "w.yaml").data["value"]
    assert isinstance(value, float) and math.isnan(value)


@pytest.mark.parametrize(("written", "read"), [
    ("0o17", 15),      # YAML 1.2 core octal; PyYAML's 1.1 resolver leaves it a string
    ("1e3", 1000.0),   # YAML 1.2 core float; the 1.1 resolver wants a dot
    ("1_000", "1_000"),  # underscores are YAML 1.1 only; a string in 1.2
])
def test_numbers_follow_the_yaml_1_2_core_schema(written, read):
    assert parse(f"value: {written}\n", "w.yaml").data == {"value": read}


# --- refusals ----------------------------------------------------------------------

def test_duplicate_key_is_reported_at_the_second_one_and_names_the_first():
    error = refused("id: a\nversion: 1\nid: b\n")
    assert at(error) == (3, 1)
    assert error.message == ("duplicate key `id` (first defined at line 1); "
                             "YAML would silently keep only the last one")


def test_duplicate_key_in_a_nested_flow_mapping():
    error = refused("steps:\n  - wait_for: {event: a, timeout: 1d, event: b}\n")
    assert at(error) == (2, 39)
    assert "duplicate key `event` (first defined at line 2)" in error.message


@pytest.mark.parametrize(("text", "where", "word"), [
    ("id: a\n1: x\n", (2, 1), "an integer"),
    ("id: a\nsteps:\n  - true: 1\n", (3, 5), "a boolean"),
    ("~: x\n", (1, 1), "null"),
    ("1.5: x\n", (1, 1), "a number"),
])
def test_non_string_keys_are_refused_with_a_quoting_hint(text, where, word):
    error = refused(text)
    assert at(error) == where
    assert f"is read as {word}; keys must be strings (quote it:" in error.message


def test_quoted_keys_that_look_like_numbers_are_fine():
    assert parse('"1": x\n"true": y\n', "w.yaml").data == {"1": "x", "true": "y"}


def test_a_list_or_mapping_as_key_is_refused():
    error = refused("id: a\n? [x, y]\n: 1\n")
    assert at(error) == (2, 3)
    assert error.message == "a key must be a plain string, not a list or mapping"


def test_merge_key_is_refused_at_the_merge_key():
    error = refused(yaml("""
        base: &base {wait: 1d}
        steps:
          - <<: *base
            id: x
    """))
    assert at(error) == (3, 5)
    assert error.message == "merge keys (`<<`) are not supported; write the keys out"


@pytest.mark.parametrize(("text", "where", "tag"), [
    ("a: !foo bar\n", (1, 4), "!foo"),
    ("a:\n  b: !!python/object:os.system [echo]\n", (2, 6), "tag:yaml.org,2002:python/object:os.system"),
    ("a: !!set {x}\n", (1, 4), "tag:yaml.org,2002:set"),
    ("a: !custom {x: 1}\n", (1, 4), "!custom"),
    ("a: !!omap [x: 1]\n", (1, 4), "tag:yaml.org,2002:omap"),
])
def test_tags_are_refused(text, where, tag):
    error = refused(text)
    assert at(error) == where
    assert error.message == f"unknown tag `{tag}`; mauto files use plain YAML without tags"


def test_a_plain_alias_is_expanded():
    document = parse("a: &x [1, 2]\nb: *x\n", "w.yaml")
    assert document.data == {"a": [1, 2], "b": [1, 2]}


def test_recursive_alias_is_refused():
    error = refused("id: a\nsteps: &loop\n  - then: *loop\n")
    assert at(error) == (2, 8)  # the anchored node
    assert error.message == "this anchor contains an alias to itself; recursive YAML is not allowed"


def test_alias_bomb_is_refused():
    bomb = yaml("""
        a: &a [x, x, x, x, x, x, x, x, x, x]
        b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
        c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
        d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
        e: [*d, *d]
    """)
    error = refused(bomb)
    assert error.message == (f"aliases here expand to more than {MAX_ALIAS_EXPANSION:,} values; "
                             "this looks like an alias bomb")
    # PyYAML's composer replaces an alias by its anchored node, so the place is a node of the bomb
    assert at(error) == (1, 11)


def test_aliases_just_under_the_limit_are_fine():
    # 1,000 expanded references to a 9-value list: 9,000 nodes, under the 10,000 limit
    text = "a: &a [1, 2, 3, 4, 5, 6, 7, 8]\nb: [" + ", ".join(["*a"] * 1000) + "]\n"
    assert len(parse(text, "w.yaml").data["b"]) == 1000


def test_more_than_one_document_is_refused_at_the_second():
    error = refused("id: a\n---\nid: b\n")
    assert at(error) == (2, 1)
    assert error.message == "invalid YAML: more than one YAML document (`---`); a mauto file holds one"


def test_an_explicit_single_document_is_fine():
    assert parse("---\nid: a\n...\n", "w.yaml").data == {"id": "a"}


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_an_empty_file_is_a_document_without_data(text):
    document = parse(text, "w.yaml")
    assert isinstance(document, Document)
    assert document.data is None


def test_an_empty_workflow_is_a_yaml_syntax_finding_at_1_1(tmp_path):
    from mauto.lint.context import load_source

    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    source = load_source(path, "workflows/empty.yaml", "workflow")
    assert source.yaml_error is not None
    assert str(source.yaml_error) == "workflows/empty.yaml:1:1: the file is empty"


@pytest.mark.parametrize(("text", "where", "code"), [
    ("a: b\nc: d\x07e\n", (2, 5), "0007"),
    ("a: b\x00\n", (1, 5), "0000"),
    ("a: \x1b[31m\n", (1, 4), "001B"),
    ("id: a\nname: 'x\x08'\n", (2, 9), "0008"),
])
def test_control_characters_are_refused_where_they_are(text, where, code):
    error = refused(text)
    assert at(error) == where
    assert error.message == (f"invalid YAML: character #x{code} is not allowed in YAML "
                             "(control characters are not allowed)")


def test_control_character_after_non_ascii_text_is_placed_by_characters():
    error = refused("a: éééé\nc: dé\x07e\n")
    assert at(error) == (2, 6)


@pytest.mark.parametrize(("text", "where", "message"), [
    ("a: [1, 2\n", (2, 1), "invalid YAML: did not find expected ',' or ']'"),
    ("a:\n\tb: 1\n", (2, 1), "invalid YAML: found character that cannot start any token"),
    ("a: é: b\n", (1, 5), "invalid YAML: mapping values are not allowed in this context"),
    ("a: 'open\n", (2, 1), "invalid YAML: found unexpected end of stream"),
    ("a: *nowhere\n", (1, 4), "invalid YAML: found undefined alias"),
])
def test_syntax_errors_keep_the_parser_position(text, where, message):
    error = refused(text)
    assert at(error) == where
    assert error.message == message


def test_yaml_error_is_a_mauto_error_printed_as_path_line_col():
    error = refused("id: a\nid: b\n")
    assert isinstance(error, MautoError)
    assert str(error).startswith("w.yaml:2:1: duplicate key `id`")


# --- files and encodings --------------------------------------------------------------

def test_load_reads_a_file_and_names_the_display_path(tmp_path: Path):
    good = tmp_path / "good.yaml"
    good.write_text("id: a\n", encoding="utf-8")
    document = load(good, "workflows/good.yaml")
    assert (document.path, document.text, document.data) == ("workflows/good.yaml", "id: a\n", {"id": "a"})
    path = tmp_path / "w.yaml"
    path.write_text("id: a\nid: b\n", encoding="utf-8")
    with pytest.raises(YamlError) as caught:
        load(path, "workflows/w.yaml")
    assert str(caught.value).startswith("workflows/w.yaml:2:1: duplicate key")


def test_load_missing_file_and_folder(tmp_path: Path):
    with pytest.raises(YamlError) as caught:
        load(tmp_path / "nope.yaml", "nope.yaml")
    assert str(caught.value) == "nope.yaml: file not found"
    with pytest.raises(YamlError) as caught:
        load(tmp_path, "folder")
    assert str(caught.value) == "folder: is a directory, not a file"


def test_non_utf8_file_names_the_bad_byte_and_its_place(tmp_path: Path):
    path = tmp_path / "w.yaml"
    path.write_bytes(b"id: a\nname: W\ndescription: caf\xe9 au lait\n")
    with pytest.raises(YamlError) as caught:
        load(path, "w.yaml")
    assert at(caught.value) == (3, 17)
    assert caught.value.message == "not UTF-8: byte 0xe9 cannot be decoded; save the file as UTF-8"


def test_a_truncated_multibyte_character_at_the_end(tmp_path: Path):
    with pytest.raises(YamlError) as caught:
        decode(b"a: \xc3", "w.yaml")
    assert at(caught.value) == (1, 4)
    assert "byte 0xc3" in caught.value.message


def test_utf8_with_a_byte_order_mark_is_read():
    assert parse(decode(b"\xef\xbb\xbfid: a\n", "w.yaml"), "w.yaml").data == {"id": "a"}


def test_latin1_file_is_refused_not_misread(tmp_path: Path):
    path = tmp_path / "w.yaml"
    path.write_bytes("name: Café\n".encode("latin-1"))
    with pytest.raises(YamlError, match="not UTF-8"):
        load(path)


def test_bad_byte_after_a_byte_order_mark_is_named_and_placed():
    with pytest.raises(YamlError) as caught:
        decode(b"\xef\xbb\xbfa: 1\n\xfe\n", "w.yaml")
    assert at(caught.value) == (2, 1)
    assert "byte 0xfe" in caught.value.message


def test_bad_byte_column_counts_characters():
    with pytest.raises(YamlError) as caught:
        decode(b"b: caf\xc3\xa9 \xff\n", "w.yaml")
    assert at(caught.value) == (1, 9)
