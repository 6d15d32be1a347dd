"""Audiences in SQL: a `--where`, segment or audience expression as a condition on the `contacts` table.

`compile_where` turns an expression into SQL conditions on the contacts row `c`:

- `condition`: the contact matches (the Python evaluator would say true);
- `doubt`: the SQL cannot be sure what the Python evaluator would say for this contact (a value of a type
  the comparison would raise on, a date stored in an odd form, a field that is not there): the caller then
  evaluates that one contact in Python, which gives its answer or its error, exactly as before;
- `keep` (`Compiled.where`): `condition OR doubt`, each part read once, what a query keeps.

So the answer is the Python evaluator's for every contact, whatever the store holds; `doubt` is false for
the usual data, and the common expressions cost one indexed or scanning query. An expression outside what
compiles (see docs/store.md, "Audiences in SQL") gives None: the caller evaluates every contact in Python.

Both stores: the SQL is SQLite's; what PostgreSQL spells otherwise (JSON access, casts, text order, the fields
read once a row) is in `SPELLINGS`, one entry per dialect, and goes through the PostgreSQL store's `translate`
unchanged but for its parameters. For the daemon: `audience_ids` (a segment's first check), and the date
triggers' candidates (`date_trigger_query`); `index_sql` writes the indexes that serve them (made by `mauto
deploy` for its date triggers and by `mauto db index` for fields: mauto.store.indexes).
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from jinja2 import nodes
from jinja2.environment import TemplateExpression

# BUILTIN_DEFAULTS: what ContactState.record gives a built-in field not set
from mauto.engine.records import BUILTIN_DEFAULTS, ContactState
from mauto.store.contact_rows import COLUMN_FIELDS

__all__ = ["DATE_INDEX", "EVERY", "FIELD_INDEX", "SPELLINGS", "SQL_DIALECTS", "Compiled", "Spelling", "audience_ids",
           "compile_where", "date_key_sql", "date_trigger_candidates", "date_trigger_contacts", "date_trigger_query",
           "index_name", "index_sql", "indexed_fields", "segment_members"]


# --- what differs between dialects -------------------------------------------------------------------------

@dataclass(frozen=True)
class Spelling:
    """How one dialect writes the few things SQL dialects disagree on. `{doc}` is a JSON text column,
    `{key}` the member's name as an SQL literal (SQLite: its JSON path), `{member}` the member as the dialect's
    JSON value (`member`, or a column of `record`), `{value}` an SQL value."""

    parameter: str  # a named parameter
    # A field name (checked against _NAME: no quote can be in it) as the SQL literal the JSON accessors take:
    # written into the statement, not bound, so that an index on the same expression can serve the query.
    key: Callable[[str], str]
    member: str  # {doc}'s member {key}, NULL when absent (unused where the templates read {doc} and {key})
    # The JSON text in {column} is one the dialect reads as Python's json.loads reads it, a member found there
    # being the member Python finds. Not always: a store written by an older mauto, another writer or a hand fix
    # may hold NaN or Infinity (json.dumps writes them), which neither engine takes; PostgreSQL also raises on a
    # text that is no object and reads no \u0000 nor a lone surrogate as text. Where it does not hold, the
    # members are of the kind `unreadable` (`_kind`): Python decides. Text tests, but for SQLite's json_valid
    # (its parse is cached for the JSON functions that follow).
    readable: str
    # The dialect's JSON functions do not raise on {column} (else they read '{}' there instead: `_safe_doc`).
    parses: str
    # Where `readable` holds, a member the dialect does not find is not there for Python either (None: always):
    # SQLite finds no member in a text that is no object (`[["amount", 9]]`, which record_of's dict.update
    # reads as {"amount": 9}), nor a key written with a \u escape (`"amo\u0075nt"`). Tested only for a member
    # not found: a cost the usual rows, which hold the fields compared, do not pay. Text tests (GLOB, not
    # substr or instr, which count characters).
    absent: str | None
    # The contact's fields read once a row, as a record whose columns are members ({columns}: `"name" type`);
    # None: the dialect's JSON functions read the text quickly enough each time (SQLite caches the parse).
    record: str | None
    kind: str  # the JSON type of a member, as the dialect names it; NULL when absent
    kinds: dict[str, tuple[str, ...]]  # number, text, array, object, null: the dialect's names of each
    # The member as an SQL number (JSON true and false as 1 and 0, as Python's True == 1), compared with a
    # constant (an int or a float within 2**53, `_plain`) as Python compares the number json.loads gives; never
    # raising; where `inexact_numbers`, NULL for a number it cannot compare so (Python decides).
    number: str
    inexact_numbers: bool
    # `number` for a member read from the text itself (an indexed field's, `_member`), each read of which parses
    # the text again: one read (None: `number`), where `number_guard` holds (`{column}`; None: `readable`).
    number_direct: str | None
    number_guard: str | None
    text: str  # the member as SQL text, ordered by code point
    has_text: str  # the JSON array member holds a text item equal to {value}
    has_number: str  # the JSON array member holds a number (or true/false, as 1/0) equal to {value}
    inexact_item: str  # the JSON array member holds a number `number` cannot compare as Python does (or FALSE)
    nonempty_array: str
    contains: str  # the SQL text {value} contains the text {part}
    # {value} is a time as the store writes it (mauto.store.sqlite.stamp), years 1000-8999, which Python reads
    # as that very time; never NULL. It may say no to such a time (Python then decides), never yes to another.
    canonical_stamp: str
    # A JSON member as the text a time is compared as: its text (`text`), or (PostgreSQL, where reading a json
    # string's text parses it again, each time) its JSON spelling, the text within `stamp_quote`; and
    # `quoted_stamp`, `canonical_stamp` for such a spelling: a time as the store writes it needs no escape, so
    # that where the row is readable (no \u escape) the spelling holds the time itself, quoted.
    stamp: str
    stamp_quote: str
    quoted_stamp: str
    # An integer column read as Python's bool() reads it (record_of: the consent columns), as 1 or 0.
    boolean_column: str


UNREADABLE = "unreadable"  # JSON the dialect cannot read as Python does (Spelling.readable): Python's, always


# A stored time as `stamp` writes it: checked character by character (a GLOB; in PostgreSQL, whose regular
# expressions cost ten times a JSON read, a LIKE and `translate` away the digits), then for a real day and
# hour. No date function but SQLite's for the days past the 28th (its date() alone keeps 2026-02-30 as it is:
# the '+0 days' makes it count, and give 2026-03-02); PostgreSQL's raise on a day that is not: the months'
# lengths are listed, and a leap year counted once the digits are known (the CASE says when).
_SQLITE_STAMP = (
    "({value} GLOB '[1-8][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]"
    ".[0-9][0-9][0-9][0-9][0-9][0-9]+00:00' AND substr({value}, 6, 2) BETWEEN '01' AND '12' "
    "AND substr({value}, 12, 2) < '24' AND (substr({value}, 9, 2) BETWEEN '01' AND '28' "
    "OR date(substr({value}, 1, 10), '+0 days') IS substr({value}, 1, 10)))")
_LONG_DAYS = ", ".join([*(f"'{month}-{day}'" for month in ("01", "03", "05", "07", "08", "10", "12")
                          for day in ("29", "30", "31")),
                        *(f"'{month}-{day}'" for month in ("04", "06", "09", "11") for day in ("29", "30"))])
_PG_STAMP_SHAPE = "____-__-__T__:__:__.______+00:00"


def _pg_real_day(value: str, shift: int = 0) -> str:
    """`value` (text) starts (after `shift` characters) with a day that is, years 1000-8999: for use once its first
    ten characters are known to be digits and dashes in their places (the year is then cast to a number)."""
    def part(start: int, length: int) -> str:
        return f"substr({value}, {start + shift}, {length})"

    year = part(1, 4)
    return (f"({year} BETWEEN '1000' AND '8999' AND {part(6, 2)} BETWEEN '01' AND '12' AND "
            f"({part(9, 2)} BETWEEN '01' AND '28' OR {part(6, 5)} IN ({_LONG_DAYS}) OR "
            f"({part(6, 5)} = '02-29' AND {year}::integer % 4 = 0 AND ({year}::integer % 100 <> 0 OR "
            f"{year}::integer % 400 = 0))))")


def _pg_time_of_day(value: str, shift: int = 0) -> str:
    return (f"substr({value}, {12 + shift}, 2) < '24' AND substr({value}, {15 + shift}, 2) < '60' AND "
            f"substr({value}, {18 + shift}, 2) < '60'")


# A JSON number's text (the `json` type keeps it as written) that compares in SQL, as a double, as Python compares
# the number json.loads gives: an int for an integer, a float for a fraction or an exponent. The double PostgreSQL
# reads from such a text is the one Python reads (both round the decimal to the nearest). So: an integer of at
# most 15 characters (exact as a double; a longer one may be past 2**53, where Python keeps it exactly and
# compares it exactly with a float), or a fraction without an exponent, shorter than 250 characters (it neither
# overflows nor underflows a double; 1e400 is inf to Python and 1e-400 is 0.0, and the cast raises on both). Any
# other number (mauto writes an exponent for a float past 1e16 or below 1e-4 only) goes to Python. String
# functions, not a regular expression, which costs ten times as much here.
def _pg_double(value: str) -> str:
    """The json `value` as the double Python compares (true and false as 1 and 0, as Python's True == 1); NULL
    for any other value and for a number the test above leaves to Python. Nothing here raises."""
    text = f"({value})::text"
    exact = (f"strpos({text}, 'e') = 0 AND strpos({text}, 'E') = 0 AND (length({text}) <= 15 OR "
             f"(length({text}) < 250 AND strpos({text}, '.') > 0))")
    return (f"CASE json_typeof({value}) WHEN 'number' THEN (CASE WHEN {exact} THEN ({text})::float8 END) "
            f"WHEN 'boolean' THEN (CASE WHEN {text} = 'true' THEN 1 ELSE 0 END) END")


# PostgreSQL's Spelling.readable: text tests, not a parse (strpos is the cheapest; PostgreSQL 15 has no test of
# JSON that does not raise): an object's opening brace (json_to_record raises on any other value); NaN and
# Infinity (json takes neither); any \u escape (mauto writes its JSON with ensure_ascii off: \u is there only for
# a control character, and \u0000 or a lone surrogate raises when read as text). That sends a few rows
# PostgreSQL could read to Python, never one it cannot read to the query.
_PG_READABLE = ("(left({column}, 1) = '{{' AND strpos({column}, 'NaN') = 0 AND strpos({column}, 'Infinity') = 0 "
                "AND strpos({column}, '\\u') = 0)")


# A jsonb number that compares in SQL, as a double, as Python compares the number json.loads gives (a JSON path's
# filter: the value itself, or nothing): within ±2**53 an integer is exact as a double, and a fraction is the
# double Python reads (both round the decimal to the nearest); past it Python keeps an integer exactly; below
# 1e-300 a double underflows (1e-400 is 0.0 to Python).
_PG_EXACT = ("'strict $ ? (@.type() == \"number\" && @ >= -9007199254740992 && @ <= 9007199254740992 && "
             "(@ == 0 || @ >= 1e-300 || @ <= -1e-300))'")


def _pg_stamp(quote: str = "") -> str:
    """PostgreSQL's canonical_stamp, for a time within `quote` (its JSON spelling: `"`)."""
    shift = len(quote)
    return (f"CASE WHEN {{value}} LIKE '{quote}{_PG_STAMP_SHAPE}{quote}' AND "
            f"translate({{value}}, '0123456789', '') = '{quote}--T::.+:{quote}' "
            f"THEN ({_pg_time_of_day('{value}', shift)} AND {_pg_real_day('{value}', shift)}) ELSE FALSE END")


SPELLINGS: dict[str, Spelling] = {
    "sqlite": Spelling(
        parameter=":{}",
        key=lambda name: "'$.\"" + name + "\"'",
        member="",
        readable="json_valid({column})",
        parses="json_valid({column})",
        absent="({column} GLOB '{{*' AND {column} NOT GLOB '*\\u*')",
        record=None,
        kind="json_type({doc}, {key})",
        kinds={"number": ("integer", "real", "true", "false"), "text": ("text",), "array": ("array",),
               "object": ("object",), "null": ("null",)},
        number="json_extract({doc}, {key})",
        inexact_numbers=False,  # SQLite reads a JSON number as a 64-bit integer or a double, as Python compares
        number_direct=None,
        number_guard=None,
        text="json_extract({doc}, {key})",
        has_text="EXISTS (SELECT 1 FROM json_each({doc}, {key}) AS item WHERE item.type = 'text' "
                 "AND item.atom = {value})",
        has_number="EXISTS (SELECT 1 FROM json_each({doc}, {key}) AS item WHERE item.type IN "
                   "('integer', 'real', 'true', 'false') AND item.atom = {value})",
        nonempty_array="json_array_length({doc}, {key}) > 0",
        inexact_item="FALSE",
        contains="instr({value}, {part}) > 0",
        canonical_stamp=_SQLITE_STAMP,
        stamp="json_extract({doc}, {key})",
        stamp_quote="",
        quoted_stamp=_SQLITE_STAMP,
        # an INTEGER column may hold a real or a text: 0, 0.0, '' and NULL are false to bool()
        boolean_column="(CASE WHEN {column} IS NULL OR {column} = 0 OR {column} = '' THEN 0 ELSE 1 END)",
    ),
    # contacts.fields and events.properties are text columns there, read as `json` (not jsonb): json keeps a
    # number as written (jsonb reads it into a numeric, and raises for the whole statement on one past numeric's
    # range, 1e999999, which Python reads as inf) and the last of two equal keys (as json.loads), and its parse
    # is cheaper. Each `::json` parses the text again (no cache), so a contact's fields are read once a row
    # through `record` (json_to_record: a JSON null and an absent member are both NULL, as they are both "not
    # set" to typed_fields), but a field with an index (`index_sql`), read as the index has it; events'
    # properties (an absent one is no null one there) directly. The store's `translate` leaves this SQL as it is
    # but for the `:name` parameters (tests/store/test_audience_sql.py). PostgreSQL may evaluate the parts of an
    # AND in any order: no function here raises on a member of another type than its case's (the array
    # functions look first).
    "postgresql": Spelling(
        parameter=":{}",  # as the store's SQL is written: PgDatabase.execute translates it to psycopg's
        key=lambda name: "'" + name + "'",
        member="(({doc})::json -> {key})",
        readable=_PG_READABLE,
        parses=_PG_READABLE,  # the functions raise on what they do not read as Python does
        absent=None,  # json finds a key however written, as json.loads does
        record=" CROSS JOIN LATERAL json_to_record(({doc})::json) AS cf({columns}, \"mauto:unreadable\" boolean)",
        kind="json_typeof({member})",
        kinds={"number": ("number", "boolean"), "text": ("string",), "array": ("array",), "object": ("object",),
               "null": ("null",)},
        number=_pg_double("{member}"),
        inexact_numbers=True,
        # the member read once, as jsonb (numeric: exact), then a JSON path's filter on it, which raises on
        # nothing; where the text holds no number past numeric's range (jsonb would raise on it: an exponent of
        # five digits or more, or 16,384 digits and more, which needs a text that long)
        number_direct=f"coalesce((jsonb_path_query_first(({{member}})::jsonb, {_PG_EXACT}))::numeric::float8, "
                      "CASE ({member})::text WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)",
        number_guard=f"({_PG_READABLE} AND {{column}} !~ '[0-9][eE][-+]?[0-9]{{{{5}}}}' AND "
                     "octet_length({column}) < 16384)",
        text="(({member} #>> '{{}}') COLLATE \"C\")",
        has_text="EXISTS (SELECT 1 FROM json_array_elements(CASE WHEN json_typeof({member}) = 'array' THEN "
                 "{member} END) AS item(value) WHERE json_typeof(item.value) = 'string' AND "
                 "(item.value #>> '{{}}') = {value})",
        has_number="EXISTS (SELECT 1 FROM json_array_elements(CASE WHEN json_typeof({member}) = 'array' THEN "
                   f"{{member}} END) AS item(value) WHERE {_pg_double('item.value')} = {{value}})",
        inexact_item="EXISTS (SELECT 1 FROM json_array_elements(CASE WHEN json_typeof({member}) = 'array' THEN "
                     "{member} END) AS item(value) WHERE json_typeof(item.value) = 'number' AND "
                     f"{_pg_double('item.value')} IS NULL)",
        nonempty_array="coalesce(json_array_length(CASE WHEN json_typeof({member}) = 'array' THEN {member} END), "
                       "0) > 0",
        contains="strpos({value}, {part}) > 0",
        canonical_stamp=_pg_stamp(),
        stamp="(({member})::text COLLATE \"C\")",
        stamp_quote='"',
        quoted_stamp=_pg_stamp('"'),
        boolean_column="(CASE WHEN {column} <> 0 THEN 1 ELSE 0 END)",  # an integer column there: NULL is false
    ),
}


SQL_DIALECTS = ("sqlite", "postgresql")  # the stores whose audiences are queries (the others: Python alone)


# --- the result --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Compiled:
    """An expression as SQL on the contacts row `c`: `condition` (true: the contact matches; where `doubt`
    holds it may say anything), `doubt` (true: only the Python evaluator can tell), with their named
    `parameters`. `where` is what a query keeps: `condition OR doubt`."""

    condition: str
    doubt: str
    parameters: dict[str, Any]
    dialect: str = "sqlite"
    events: bool = False  # reads the events table
    keep: str = ""  # `condition OR doubt`, each part read once (Truth.keep); the plain OR when not given
    joins: str = ""  # what the conditions read besides the row `c` (PostgreSQL: its fields as a record)

    @property
    def table(self) -> str:
        """What a query reads the conditions from: `FROM {table} WHERE c.erased_at IS NULL AND ({where})`."""
        return f"contacts AS c{self.joins}"

    @property
    def where(self) -> str:
        if self.keep:
            return self.keep
        if self.doubt == _FALSE:
            return self.condition
        return f"({self.condition}) OR ({self.doubt})"

    def select(self, columns: str = "c.*", order: str = "c.id") -> str:
        """The query of the contacts (not erased) it keeps, with `doubt` as the last column `mauto_doubt`."""
        return (f"SELECT {columns}, {self.doubt} AS mauto_doubt FROM {self.table} "
                f"WHERE c.erased_at IS NULL AND ({self.where}) ORDER BY {order}")


class _NotCompiled(Exception):
    """A part of the expression the SQL does not cover: the whole goes to the Python evaluator."""


_TRUE, _FALSE = "TRUE", "FALSE"
_ERROR = object()  # an outcome: Python raises (or may): the contact is in doubt

# The classes a value may be of, as the evaluator sees it: what comparisons do depends only on these.
NONE, UNDEFINED, NUMBER, TEXT, DATE_TEXT, STAMP_TEXT, ARRAY, OBJECT, COUNT = (
    "none", "undefined", "number", "text", "date-text", "stamp-text", "array", "object", "count")
_LARGEST_EXACT = 2**53  # numbers past it: SQLite may hold a stored integer as a real
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


@dataclass
class _Const:
    value: Any


@dataclass
class _Value:
    """A value read from the row: `cases`, exclusive and covering every row, each (SQL predicate, class);
    `sql`: the value itself (for the number, text and count classes); `json`: a JSON member as the spellings
    take it (doc, key, member), for array tests; `doubt`: computing it may fail."""

    cases: list[tuple[Any, Any]]  # (str or _Is, class)
    sql: str = ""
    text_sql: str = ""
    json: dict[str, str] | None = None
    doubt: str = _FALSE
    stamp_sql: str = ""  # a JSON member as a time is compared (Spelling.stamp); text_sql when empty
    stamp_quote: str = ""
    inexact: bool = False  # `sql` is NULL for a number it cannot compare as Python does (Spelling.number)

    def number(self, condition: str) -> Any:
        """The outcome `condition` on the number `sql` (of the number class): sure where `sql` is not NULL (where
        it is, the contact is in doubt, and `condition`, NULL there, may be anything). Only a condition that
        reads the number puts it in doubt: `contact.country == 'FR'` is false for any number."""
        return _Checked(f"{self.sql} IS NOT NULL", condition) if self.inexact else condition


@dataclass
class _Context:
    spelling: Spelling
    fields: dict[str, Any]
    now: datetime
    zone: str | None  # None: the zone differs from contact to contact (compile_where)
    parameters: dict[str, Any] = field(default_factory=dict)
    events: bool = False
    processed_only: bool = False
    indexed: Collection[str] = ()  # contact fields with an index (`index_sql`): read as the index has them
    record: list[str] = field(default_factory=list)  # the contact fields read through Spelling.record
    direct: set[str] = field(default_factory=set)  # the contact fields read as their index has them

    def bind(self, value: Any) -> str:
        name = f"a{len(self.parameters)}"
        self.parameters[name] = value
        return self.spelling.parameter.format(name)

    def member(self, column: str, name: str) -> dict[str, str]:
        """The format arguments of a JSON member of `column` (`_member`), read through the contact's record
        where the dialect has one (and the field no index)."""
        record = self.spelling.record is not None and column == "c.fields" and name not in self.indexed \
            and _fits_record(name)
        if record and name not in self.record:
            self.record.append(name)
        elif not record and column == "c.fields":
            self.direct.add(name)
        return _member(self.spelling, column, name, record)

    def joins(self) -> str:
        if not self.record or self.spelling.record is None:
            return ""
        return _record_join(self.spelling, ", ".join(f'"{name}" json' for name in self.record))


# PostgreSQL cuts a longer identifier short (NAMEDATALEN - 1): a record column named so would read another member
_RECORD_NAME_LIMIT = 63


def _fits_record(name: str) -> bool:
    """A field read through the contact's record (Spelling.record) must have a name the record's column can have
    (field names are ASCII: _NAME); a longer one is read as an indexed field is, from the JSON text."""
    return len(name) <= _RECORD_NAME_LIMIT


def _safe_doc(spelling: Spelling, column: str, otherwise: str = "{}") -> str:
    """A JSON column as the functions read it: its text, or `otherwise` where they would raise on it
    (`Spelling.parses`; its members are then `unreadable`, `Spelling.readable`, and Python decides)."""
    return f"CASE WHEN {spelling.parses.format(column=column)} THEN {column} ELSE '{otherwise}' END"


def _record_join(spelling: Spelling, columns: str) -> str:
    """The join that reads the contact's fields once a row (Spelling.record): `cf."<field>"` are its members,
    and `cf."mauto:unreadable"` is true where the dialect cannot read the fields as Python does."""
    assert spelling.record is not None
    return spelling.record.format(doc=_safe_doc(spelling, "c.fields", '{"mauto:unreadable": true}'),
                                  columns=columns)


def _member(spelling: Spelling, column: str, name: str, record: bool = False) -> dict[str, str]:
    """The format arguments of the member `name` of the JSON `column`: doc (the column, or '{}' where it cannot
    be read), key, member (the dialect's JSON value, from the contact's record when `record`), readable."""
    key = spelling.key(name)
    doc = _safe_doc(spelling, column)
    if record:
        return {"doc": doc, "key": key, "member": f'cf."{name}"', "readable": 'cf."mauto:unreadable" IS NULL'}
    readable = spelling.readable.format(column=column)
    absent = {} if spelling.absent is None else {"absent": spelling.absent.format(column=column)}
    if spelling.record is not None:
        # PostgreSQL: the member of the text itself, read only where `readable` holds (`_guarded`: a CASE, which
        # PostgreSQL evaluates in order), the test written once an expression: an index's expressions are
        # kept in a catalog row of at most 8 kB, which a test repeated for each read of the member overflows.
        number_guard = {} if spelling.number_guard is None else {
            "number_guard": spelling.number_guard.format(column=column)}
        return {"doc": column, "key": key, "member": spelling.member.format(doc=column, key=key),
                "readable": readable, "guard": readable, **absent, **number_guard}
    return {"doc": doc, "key": key, "member": spelling.member.format(doc=doc, key=key), "readable": readable,
            **absent}


def _number(spelling: Spelling, member: dict[str, str]) -> str:
    """The member as a number (Spelling.number), as a query and an index (`index_sql`) read it alike."""
    if "number_guard" in member and spelling.number_direct is not None:
        return f"(CASE WHEN {member['number_guard']} THEN {spelling.number_direct.format(**member)} END)"
    return _guarded(member, spelling.number.format(**member))


def _guarded(member: dict[str, str], sql: str, otherwise: str = "NULL") -> str:
    """`sql`, a spelling of the member, where it can be read (`otherwise` elsewhere), for a member read from
    the text itself (`_member`'s guard); as it is for the others, whose doc is read safely already."""
    guard = member.get("guard")
    return sql if guard is None else f"(CASE WHEN {guard} THEN {sql} ELSE {otherwise} END)"


# --- boolean algebra on SQL text, never NULL where the doubt is false ------------------------------------------
# (A condition is NULL only where the contact is in doubt: PostgreSQL's number where it cannot compare it.)

def _and(*parts: str) -> str:
    if _FALSE in parts:
        return _FALSE
    kept = [part for part in parts if part != _TRUE]
    if not kept:
        return _TRUE
    return kept[0] if len(kept) == 1 else "(" + " AND ".join(kept) + ")"


def _or(*parts: str) -> str:
    if _TRUE in parts:
        return _TRUE
    kept = list(dict.fromkeys(part for part in parts if part != _FALSE))
    if not kept:
        return _FALSE
    return kept[0] if len(kept) == 1 else "(" + " OR ".join(kept) + ")"


def _not(part: str) -> str:
    return {_TRUE: _FALSE, _FALSE: _TRUE}.get(part, f"(NOT {part})")


@dataclass(frozen=True)
class Truth:
    """A condition as SQL: `true` (Python says true; it may say anything where `doubt` holds), `doubt` (only
    Python can tell) and `keep`, which is `true OR doubt` written so that each part is read once (what a query
    keeps: a contact's fields are not read again for the doubt, nor an events list built twice)."""

    true: str
    doubt: str
    keep: str


def _both(left: Truth, right: Truth) -> Truth:
    """`left and right`: Python reads `right` only when `left` is true (a failing `right` matters then)."""
    return Truth(_and(left.true, right.true), _or(left.doubt, _and(left.true, right.doubt)),
                 _or(left.doubt, _and(left.true, right.keep)))


def _either(left: Truth, right: Truth) -> Truth:
    """`left or right`: Python reads `right` only when `left` is false."""
    return Truth(_or(left.true, right.true), _or(left.doubt, _and(_not(left.true), right.doubt)),
                 _or(left.keep, right.keep))


def _negation(inner: Truth) -> Truth:
    return Truth(_not(inner.true), inner.doubt, _or(_not(inner.true), inner.doubt))


_ALWAYS, _NEVER = Truth(_TRUE, _FALSE, _TRUE), Truth(_FALSE, _FALSE, _FALSE)


# --- the entry point ---------------------------------------------------------------------------------------

def compile_where(expression: Any, fields: dict[str, Any], zone: str | None, now: datetime,
                  dialect: str = "sqlite", *, processed_events_only: bool = False,
                  indexed: Collection[str] = ()) -> Compiled | None:
    """The expression (its source, an Expression, or a contacts.Where) as SQL on the contacts row `c`, or None
    when it uses what the SQL does not cover (the caller then evaluates every contact in Python). `fields`:
    the declared contact fields with their types (Project.contact_fields); `now`: the moment `now` and
    `within=` count from (aware); `zone`: the zone the evaluator gives every contact (`contacts list`: the
    project's), which a part that reads no contact may read (`now|date('%A')`), or None when it differs from
    contact to contact (the daemon's segment check: the workflow's settings.timezone, else the contact's own):
    such a part does not compile then;
    `processed_events_only`: count only the events a tick has handled, as the daemon's contacts hold them
    (runtime.load_contact), for a segment's check in the daemon; `indexed`: the contact fields with an index
    (`indexed_fields`), read as the index has them (the other ones: as the dialect reads them fastest)."""
    from mauto.workflow.expressions import Expression, ExpressionError

    if not isinstance(expression, (str, Expression)):
        expression = expression.expression  # a contacts.Where
    if isinstance(expression, str):
        expression = Expression(expression)
    if now.tzinfo is None:
        return None
    context = _Context(SPELLINGS[dialect], fields, now, zone, processed_only=processed_events_only,
                       indexed=indexed)
    try:
        truth = _truth(expression.tree, context, None)
    except (_NotCompiled, ExpressionError):
        return None
    if context.record and context.direct and indexed:
        # Some fields indexed, some not: the condition then joins the row to its record, and PostgreSQL uses no
        # index for a join's condition; each indexed field would be parsed again for every row. Read them all
        # through the record (once a row), as without an index (but a name too long for it: `_fits_record`).
        return compile_where(expression, fields, zone, now, dialect, processed_events_only=processed_events_only)
    return Compiled(truth.true, truth.doubt, context.parameters, dialect, context.events, truth.keep,
                    context.joins())


# --- nodes -------------------------------------------------------------------------------------------------

_EVENT_FUNCTIONS = frozenset({"has_event", "event_count", "in_list"})


def _is_constant(node: nodes.Node) -> bool:
    """Whether `node` has one value for every contact (it reads no record and calls no function of one)."""
    for name in (node, *node.find_all(nodes.Name)):
        if isinstance(name, nodes.Name) and name.name in ("contact", "event", "vars", *_EVENT_FUNCTIONS):
            return False
    return not any(isinstance(call.node, nodes.Name) and call.node.name in _EVENT_FUNCTIONS
                   for call in node.find_all(nodes.Call))


def _constant(node: nodes.Node, context: _Context) -> Any:
    """The value of a constant part, computed as the evaluator computes it; _NotCompiled when it fails."""
    if isinstance(node, nodes.Const):
        value = node.value
    elif context.zone is None and _reads_zone(node):
        raise _NotCompiled  # its value depends on the contact's zone: Python, contact by contact
    else:
        from mauto.workflow.durations import parse_duration
        from mauto.workflow.expressions import _ENVIRONMENT

        template = _ENVIRONMENT.from_string(nodes.Template([nodes.Assign(nodes.Name("result", "store"), node,
                                                                         lineno=1)], lineno=1))
        # the names Scope.names gives that read no contact (days_since: Python, through the fallback)
        names = {"now": context.now, "duration": parse_duration, "_zone": context.zone}
        try:
            value = TemplateExpression(template, undefined_to_none=False)(**names)
        except Exception:  # noqa: BLE001 - Python's evaluator raises it for each contact: let it
            raise _NotCompiled from None
    if type(value) in (list, tuple):
        if not all(_plain(item) for item in value):
            raise _NotCompiled
    elif not _plain(value) and not (type(value) is datetime and value.tzinfo is not None):
        raise _NotCompiled
    return value


def _reads_zone(node: nodes.Node) -> bool:
    """Whether a constant part may read the evaluator's zone (`_zone`): a filter or test given Jinja2's context
    (the `date` filter shows a time in that zone), or the name itself."""
    from jinja2.utils import _PassArg

    from mauto.workflow.expressions import _ENVIRONMENT

    for found in (node, *node.find_all((nodes.Name, nodes.Filter, nodes.Test))):
        if not isinstance(found, (nodes.Filter, nodes.Test)):
            if isinstance(found, nodes.Name) and found.name == "_zone":
                return True
            continue
        functions = _ENVIRONMENT.filters if isinstance(found, nodes.Filter) else _ENVIRONMENT.tests
        function = functions.get(found.name)
        if function is None or getattr(function, "jinja_pass_arg", None) is _PassArg.context:
            return True
    return False


def _plain(value: Any) -> bool:
    if type(value) is float:
        return math.isfinite(value) and abs(value) <= _LARGEST_EXACT
    if type(value) is int:
        return abs(value) <= _LARGEST_EXACT
    return type(value) in (str, bool, type(None))


def _truth(node: nodes.Node, context: _Context, event: str | None) -> Truth:
    """The Truth of `node` taken as a condition (Python's truth of its value)."""
    if isinstance(node, nodes.And):
        return _both(_truth(node.left, context, event), _truth(node.right, context, event))
    if isinstance(node, nodes.Or):
        return _either(_truth(node.left, context, event), _truth(node.right, context, event))
    if isinstance(node, nodes.Not):
        return _negation(_truth(node.node, context, event))
    if isinstance(node, nodes.Compare):
        return _comparisons(node, context, event)
    if isinstance(node, nodes.Test):
        return _test(node, context, event)
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "has_event" \
            and event is None:
        return _has_event(node, context)
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "in_list" \
            and event is None:
        return _in_list(node, context)
    value = _operand(node, context, event)
    if isinstance(value, _Const):
        return _ALWAYS if value.value else _NEVER
    return _over_cases(value, lambda kind: _truthy(kind, value, context))


def _over_cases(value: _Value, outcome: Callable[[Any], Any]) -> Truth:
    """The Truth from each case's outcome: True, False, _ERROR, _Checked or an SQL condition."""
    true: list[Any] = []
    doubt: list[Any] = [value.doubt]
    keep: list[Any] = [value.doubt]
    for predicate, kind in value.cases:
        result: Any = _ERROR if kind == UNREADABLE else outcome(kind)
        if result is _ERROR:
            doubt.append(predicate)
            keep.append(predicate)
        elif isinstance(result, _Checked):
            # Where `sure` fails the contact is in doubt, and Python decides: the condition need not say
            # `sure` again (it may be anything where the doubt holds), so the check runs once per row.
            doubt.append(_and(str(predicate), _not(result.sure)))
            true.append(_and(str(predicate), result.true))
            keep.append(_and(str(predicate), _or(result.true, _not(result.sure))))
        elif result is True:
            true.append(predicate)
            keep.append(predicate)
        elif result is not False:
            true.append(_and(str(predicate), result))
            keep.append(_and(str(predicate), result))
    return Truth(_or(*_merged(true)), _or(*_merged(doubt)), _or(*_merged(keep)))


def _truthy(kind: Any, value: _Value, context: _Context) -> Any:
    if isinstance(kind, _Const):
        return bool(kind.value)
    if kind == NONE:
        return False
    if kind == NUMBER:
        return value.number(f"{value.sql} <> 0")
    if kind == COUNT:
        return f"{value.sql} <> 0"
    if kind in (TEXT, DATE_TEXT, STAMP_TEXT):
        return f"{value.text_sql} <> ''"  # a date read as one is never empty, nor a stamp
    if kind == ARRAY and value.json is not None:
        return _guarded(value.json, context.spelling.nonempty_array.format(**value.json), _FALSE)
    return _ERROR  # an Undefined, an object


# --- reading a field ---------------------------------------------------------------------------------------

def _operand(node: nodes.Node, context: _Context, event: str | None) -> _Const | _Value:
    from mauto.workflow.expressions import record_attribute

    if _is_constant(node):
        return _Const(_constant(node, context))
    found = record_attribute(node)
    if found is not None and found[0] == "contact" and event is None:
        return _contact_field(found[1], context)
    if found is not None and found[0] == "event" and event is not None:
        return _event_field(found[1], context, event)
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "event_count" \
            and event is None:
        return _event_count(node, context)
    raise _NotCompiled


def _json_value(column: str, name: str, context: _Context, absent: list[tuple[str, Any]],
                text_kind: str, number_kind: str = NUMBER) -> _Value:
    """A member of a JSON column: `absent` are the cases for a member that is not there or null."""
    spelling = context.spelling
    member = context.member(column, name)
    kind = _kind(spelling, member)
    cases: list[tuple[Any, Any]] = [
        *absent, (_is(kind, ("number",), context), number_kind), (_is(kind, ("text",), context), text_kind),
        (_is(kind, ("array",), context), ARRAY), (_is(kind, ("object",), context), OBJECT),
        (_is(kind, (UNREADABLE,), context), UNREADABLE)]
    return _Value(cases, _number(spelling, member),
                  _guarded(member, spelling.text.format(**member)), member, inexact=spelling.inexact_numbers,
                  stamp_sql=_guarded(member, spelling.stamp.format(**member)), stamp_quote=spelling.stamp_quote)


def _kind(spelling: Spelling, member: dict[str, str]) -> str:
    """The JSON type of a member, never NULL: `absent` when it is not there, `unreadable` when the dialect cannot
    read the JSON as Python does (Spelling.readable), or does not find a member Python may (Spelling.absent); one
    expression: the first column of the field's index, `index_sql`."""
    absent = "'absent'" if "absent" not in member else \
        f"CASE WHEN {member['absent']} THEN 'absent' ELSE '{UNREADABLE}' END"
    return (f"CASE WHEN {member['readable']} THEN coalesce({spelling.kind.format(**member)}, {absent}) "
            f"ELSE '{UNREADABLE}' END")


@dataclass(frozen=True)
class _Is:
    """A case's predicate `kind IN names` (the dialect's type names), merged with its neighbours'."""

    kind: str
    names: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.kind} IN ({', '.join(repr(name) for name in self.names)})"


def _is(kind: str, classes: tuple[str, ...], context: _Context) -> _Is:
    names = tuple(name for group in classes
                  for name in (context.spelling.kinds.get(group) or (group,)))
    return _Is(kind, names)


def _merged(predicates: list[Any]) -> list[str]:
    """The predicates, those on one kind expression merged into one IN."""
    merged: dict[str, list[str]] = {}
    others: list[str] = []
    for predicate in predicates:
        if isinstance(predicate, _Is):
            merged.setdefault(predicate.kind, []).extend(predicate.names)
        else:
            others.append(predicate)
    return [*others, *(str(_Is(kind, tuple(names))) for kind, names in merged.items())]


def _contact_field(name: str, context: _Context) -> _Value:
    """`contact.<name>` as ContactState.record gives it: every declared field (None when unset), the
    built-in defaults, the stored values, dates and datetimes read as such (typed_fields)."""
    declared = context.fields.get(name, _UNDECLARED)
    if name == "id":
        return _Value([(_TRUE, TEXT)], "c.id", "c.id")
    if name in ("email", "phone"):
        return _Value([(f"c.{name} IS NULL", NONE), (f"c.{name} IS NOT NULL", TEXT)], f"c.{name}", f"c.{name}")
    if name in ("email_consent", "sms_consent"):  # record_of reads them with bool(): 2 is True
        return _Value([(_TRUE, NUMBER)], context.spelling.boolean_column.format(column=f"c.{name}"))
    if name == "created_at":
        return _Value([(_TRUE, STAMP_TEXT if declared == "datetime" else TEXT)], "c.created_at", "c.created_at")
    if not _NAME.fullmatch(name):
        raise _NotCompiled
    if name in BUILTIN_DEFAULTS:
        missing: Any = _Const(BUILTIN_DEFAULTS[name])
    else:
        missing = NONE if declared is not _UNDECLARED else UNDEFINED
    text_kind = {"date": DATE_TEXT, "datetime": STAMP_TEXT}.get(declared, TEXT) if isinstance(declared, str) \
        else TEXT
    # a number in a date field may be a date to Python (typed_fields: 19900517 is 1990-05-17): Python decides
    number_kind = UNREADABLE if declared in ("date", "datetime") else NUMBER
    value = _json_value("c.fields", name, context, [], text_kind, number_kind)
    kind = _kind(context.spelling, value.json)  # type: ignore[arg-type]
    value.cases.insert(0, (_is(kind, ("absent", "null"), context), missing))  # typed_fields drops a null
    return value


_UNDECLARED = object()


def _event_field(name: str, context: _Context, alias: str) -> _Value:
    """`event.<name>` inside a has_event/event_count `where=`: Event.record (its properties, then name, at, id,
    contact); a property that is not there is an Undefined, a null one None."""
    if name in ("name", "contact"):
        return _Value([(_TRUE, TEXT)], f"{alias}.{name}", f"{alias}.{name}")
    if name == "id":
        return _Value([(f"{alias}.id IS NULL", NONE), (f"{alias}.id IS NOT NULL", TEXT)], f"{alias}.id",
                      f"{alias}.id")
    if name == "at":
        return _Value([(_TRUE, STAMP_TEXT)], f"{alias}.at", f"{alias}.at")
    if not _NAME.fullmatch(name):
        raise _NotCompiled
    value = _json_value(f"{alias}.properties", name, context, [], TEXT)
    kind = _kind(context.spelling, value.json)  # type: ignore[arg-type]
    value.cases[0:0] = [(_is(kind, ("absent",), context), UNDEFINED), (_is(kind, ("null",), context), NONE)]
    return value


# --- comparisons -------------------------------------------------------------------------------------------

_MIRRORED = {"eq": "eq", "ne": "ne", "lt": "gt", "gt": "lt", "lteq": "gteq", "gteq": "lteq"}
_SQL_OPERATORS = {"eq": "=", "ne": "<>", "lt": "<", "gt": ">", "lteq": "<=", "gteq": ">="}


def _comparisons(node: nodes.Compare, context: _Context, event: str | None) -> Truth:
    """A chain `a < b < c` is `a < b and b < c`, each operand read once (reading has no effect here)."""
    operands = [node.expr, *(operand.expr for operand in node.ops)]
    result = _comparison(node.ops[0].op, operands[0], operands[1], context, event)
    for index, operand in enumerate(node.ops[1:], start=1):
        result = _both(result, _comparison(operand.op, operands[index], operands[index + 1], context, event))
    return result


def _comparison(op: str, left_node: nodes.Node, right_node: nodes.Node, context: _Context,
                event: str | None) -> Truth:
    left, right = _operand(left_node, context, event), _operand(right_node, context, event)
    if op in ("in", "notin"):
        found = _membership(left, right, context)
        return _negation(found) if op == "notin" else found
    if isinstance(left, _Const) and isinstance(right, _Const):
        raise _NotCompiled  # folded by Jinja2 already, or an error
    if isinstance(left, _Const):
        left, right, op = right, left, _MIRRORED[op]
    if not isinstance(right, _Const):
        raise _NotCompiled  # field against field: Python decides
    assert isinstance(left, _Value)
    constant = right.value
    return _over_cases(left, lambda kind: _compare(kind, op, constant, left, context))


def _compare(kind: Any, op: str, constant: Any, value: _Value, context: _Context) -> Any:
    """The outcome of `<value of this class> op constant`, as Python's operators give it."""
    equality = op in ("eq", "ne")
    if isinstance(kind, _Const):
        try:
            return bool(_PYTHON_OPERATORS[op](kind.value, constant))
        except TypeError:
            return _ERROR
    if kind == UNDEFINED:
        return _ERROR  # StrictUndefined raises on == and <
    if type(constant) in (list, tuple):
        if equality and kind in (NONE, NUMBER, COUNT, TEXT):
            return op == "ne"  # a scalar never equals a list
        return _ERROR
    if constant is None:
        return (kind == NONE) == (op == "eq") if equality else _ERROR
    sql_op = _SQL_OPERATORS[op]
    if type(constant) in (int, float, bool):
        if kind in (NUMBER, COUNT):
            compared = f"{value.sql} {sql_op} {context.bind(int(constant) if type(constant) is bool else constant)}"
            return value.number(compared) if kind == NUMBER else compared
        return (op == "ne") if equality else _ERROR
    if type(constant) is str:
        if kind == TEXT:
            return f"{value.text_sql} {sql_op} {context.bind(constant)}"
        if kind in (DATE_TEXT, STAMP_TEXT):
            return _ERROR  # a date read as one never equals a text; one that is not is compared as text
        return (op == "ne") if equality else _ERROR
    if type(constant) is datetime:
        if kind == STAMP_TEXT:
            try:
                stamped = constant.astimezone(UTC).isoformat(timespec="microseconds")
            except (OverflowError, ValueError):
                raise _NotCompiled from None
            text, quote = value.stamp_sql or value.text_sql, value.stamp_quote
            spelling = context.spelling
            canonical = (spelling.quoted_stamp if quote else spelling.canonical_stamp).format(value=text)
            # only a time as the store writes it is certainly read as this time; any other text: Python
            return _Checked(canonical, f"{text} {sql_op} {context.bind(quote + stamped + quote)}")
        if kind == DATE_TEXT:
            return (op == "ne") if equality else _ERROR  # a date never equals a datetime, nor is ordered with one
        return (op == "ne") if equality else _ERROR
    raise _NotCompiled


@dataclass
class _Checked:
    """An outcome sure only where `sure` holds; elsewhere Python decides."""

    sure: str
    true: str


_PYTHON_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b, "gt": lambda a, b: a > b,
    "lteq": lambda a, b: a <= b, "gteq": lambda a, b: a >= b,
}


def _membership(left: _Const | _Value, right: _Const | _Value, context: _Context) -> Truth:
    """`left in right`: a field in a list of constants, or a constant in a list (or text) field."""
    if isinstance(left, _Value) and isinstance(right, _Const):
        items = right.value
        if type(items) not in (list, tuple):
            raise _NotCompiled
        found = _NEVER
        value = left
        for item in items:  # `x in [a, b]` is `x == a or x == b` (== never raises on these)
            def equal_to(kind: Any, item: Any = item) -> Any:
                return _compare(kind, "eq", item, value, context)

            found = _either(found, _over_cases(value, equal_to))
        return Truth(found.true, _or(found.doubt, left.doubt), _or(found.keep, left.doubt))
    if isinstance(left, _Const) and isinstance(right, _Value):
        return _over_cases(right, lambda kind: _contains(kind, left.value, right, context))
    raise _NotCompiled


def _contains(kind: Any, item: Any, value: _Value, context: _Context) -> Any:
    """The outcome of `item in <value of this class>`."""
    if isinstance(kind, _Const):
        try:
            return item in kind.value
        except TypeError:
            return _ERROR
    if kind == ARRAY and value.json is not None and type(item) in (str, int, float, bool):
        spelling = context.spelling
        bound = context.bind(int(item) if type(item) is bool else item)
        if type(item) is str:
            return _guarded(value.json, spelling.has_text.format(**value.json, value=bound), _FALSE)
        found = _guarded(value.json, spelling.has_number.format(**value.json, value=bound), _FALSE)
        if spelling.inexact_item == _FALSE:
            return found
        # an item `number` cannot compare as Python does (PostgreSQL: past 2**53, 1e-400): Python decides
        return _Checked(_not(_guarded(value.json, spelling.inexact_item.format(**value.json), _FALSE)), found)
    if kind == TEXT and type(item) is str:
        return context.spelling.contains.format(value=value.text_sql, part=context.bind(item))
    return _ERROR  # a number, None, an object, a date: Python raises or looks at keys


def _test(node: nodes.Test, context: _Context, event: str | None) -> Truth:
    """`x is none`, `x is defined`, `x is undefined` (`is not` is a Not around it)."""
    if node.name not in ("none", "defined", "undefined") or node.args or node.kwargs:
        raise _NotCompiled
    value = _operand(node.node, context, event)
    if isinstance(value, _Const):
        raise _NotCompiled

    def outcome(kind: Any) -> bool:
        if node.name == "none":
            return kind == NONE or (isinstance(kind, _Const) and kind.value is None)
        return (kind == UNDEFINED) == (node.name == "undefined")

    return _over_cases(value, outcome)


# --- the functions -----------------------------------------------------------------------------------------

def _arguments(node: nodes.Call, context: _Context) -> dict[str, Any]:
    """The constant arguments of has_event/event_count/in_list by name; _NotCompiled for any other."""
    from mauto.workflow.expressions import FUNCTIONS

    names = FUNCTIONS[node.node.name]  # type: ignore[attr-defined]
    if node.dyn_args is not None or node.dyn_kwargs is not None or len(node.args) > len(names):
        raise _NotCompiled
    given = dict(zip(names, node.args, strict=False))
    for keyword in node.kwargs:
        if keyword.key not in names or keyword.key in given:
            raise _NotCompiled
        given[keyword.key] = keyword.value
    return {name: _constant(value, context) if _is_constant(value) else _NotConstant for name, value in given.items()}


_NotConstant = object()


def _events_filter(node: nodes.Call, context: _Context) -> Truth:
    """The events counted (`true`), those whose `where=` Python must decide (`doubt`), and either (`keep`), as
    conditions on the events row `e`, as Scope._matching picks them: the name, at or before now,
    within/since, the `where=` string."""
    from mauto.workflow.durations import parse_duration
    from mauto.workflow.expressions import Expression

    arguments = _arguments(node, context)
    name, within, since, where = (arguments.get(key) for key in ("name", "within", "since", "where"))
    if type(name) is not str or _NotConstant in (within, since, where):
        raise _NotCompiled
    context.events = True
    now = context.now
    parts = [f"e.name = {context.bind(name)}", f"e.at <= {context.bind(_stamp(now))}"]
    if context.processed_only:
        parts.append("e.processed_at IS NOT NULL")
    if within:
        if type(within) is not str:
            raise _NotCompiled
        try:
            duration = parse_duration(within)
        except Exception:  # noqa: BLE001 - a bad duration: Python says so
            raise _NotCompiled from None
        lower = _earlier(now, duration)
        parts.append(f"e.at >= {context.bind(_stamp(lower))}")
    if since is not None:
        if type(since) is not datetime or since.tzinfo is None:
            raise _NotCompiled  # 'entry' (no entry outside a workflow), a text: Python
        parts.append(f"e.at >= {context.bind(_stamp(since))}")
    chosen = _and(*parts)
    if not where:
        return Truth(chosen, _FALSE, chosen)
    if type(where) is not str:
        raise _NotCompiled
    try:
        tree = Expression(where).tree
    except ValueError:
        raise _NotCompiled from None
    found = _truth(tree, context, "e")
    # Python evaluates `where=` on the record of every event chosen, {**properties, ...}: properties that are no
    # JSON object (`[]`, `null`) make it raise, whatever `where=` reads. A text test (mauto writes an object).
    odd = "substr(e.properties, 1, 1) <> '{'"
    return Truth(_and(chosen, found.true), _and(chosen, _or(odd, found.doubt)), _and(chosen, _or(odd, found.keep)))


def _earlier(moment: datetime, duration: timedelta) -> datetime:
    """`moment` less `duration` of elapsed time (plain `-` on a datetime in a ZoneInfo takes wall-clock time),
    the first moment datetime holds past the calendar's start: as Scope._matching computes `within=`'s start
    (mauto.engine.timing.shifted, which the store, a layer below the engine, does not import)."""
    try:
        return (moment.astimezone(UTC) - duration).astimezone(moment.tzinfo)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _having(events: str) -> str:
    """The contact has an event where `events` holds. Not correlated: the engine runs the subquery once per
    query (through the index on events' name and time) and looks ids up in it."""
    return _FALSE if events == _FALSE else f"c.id IN (SELECT e.contact FROM events AS e WHERE {events})"


def _has_event(node: nodes.Call, context: _Context) -> Truth:
    events = _events_filter(node, context)
    return Truth(_having(events.true), _having(events.doubt), _having(events.keep))


def _event_count(node: nodes.Call, context: _Context) -> _Value:
    events = _events_filter(node, context)
    count = f"(SELECT count(*) FROM events AS e WHERE e.contact = c.id AND {events.true})"
    return _Value([(_TRUE, COUNT)], count, doubt=_having(events.doubt))


def _in_list(node: nodes.Call, context: _Context) -> Truth:
    """in_list(name): `name in (contact.lists or [])`."""
    name = _arguments(node, context).get("name")
    if type(name) is not str:
        raise _NotCompiled
    lists = _contact_field("lists", context)

    def outcome(kind: Any) -> Any:
        if kind == TEXT:  # `or []`: an empty text is false, so not looked into
            return _and(f"{lists.text_sql} <> ''", _contains(TEXT, name, lists, context))
        if isinstance(kind, _Const):
            return _contains(_Const(kind.value or []), name, lists, context)
        if kind == NUMBER:  # 0 or false: `or []`; any other number (or one SQL cannot read): `in` raises
            return _Checked(f"coalesce({lists.sql} = 0, FALSE)", _FALSE)
        return _contains(kind, name, lists, context)

    return _over_cases(lists, outcome)


# --- for the daemon ------------------------------------------------------------------------------------------

def audience_ids(db: Any, expression: Any, fields: dict[str, Any], zone: str | None, now: datetime,
                 dialect: str = "sqlite", *, processed_events_only: bool = False) -> list[str] | None:
    """The ids (in id order) of the contacts for which the expression may be true at `now`: those it is true
    for, and those only Python can tell (it may raise on them); None when it does not compile (every contact
    may be). The others are those for which the Python evaluator gives false. `zone`: as compile_where's (None:
    each contact's may differ)."""
    compiled = compile_where(expression, fields, zone, now, dialect, processed_events_only=processed_events_only,
                             indexed=indexed_fields(db, dialect))
    if compiled is None:
        return None
    return [row[0] for row in db.execute(compiled.select("c.id"), compiled.parameters)]


def indexed_fields(db: Any, dialect: str) -> frozenset[str]:
    """The contact fields with an index made by `index_sql` (named contacts_field_<name>); none in SQLite,
    whose queries read a field one way, indexed or not."""
    return frozenset(name[len(FIELD_INDEX):] for name in _indexes(db, dialect) if name.startswith(FIELD_INDEX))


def _indexes(db: Any, dialect: str) -> list[str]:
    """The names of the contacts table's indexes that queries can use, where the queries depend on them
    (PostgreSQL): not one left invalid by a `CREATE INDEX CONCURRENTLY` that did not finish (the planner never
    reads it, and a field read as such an index has it would be parsed again on every row)."""
    if dialect != "postgresql":
        return []
    return [name for (name,) in db.execute(
        "SELECT c.relname FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = to_regclass('contacts') AND i.indisvalid")]


def _date_indexed(db: Any, dialect: str, spec: dict[str, Any]) -> bool:
    field = spec.get("field")
    return isinstance(field, str) and index_name(field, _every(spec.get("every", "year"))) in _indexes(db, dialect)


def segment_members(db: Any, workflow_id: str) -> list[str]:
    """The contacts in the workflow's segment when last checked, in id order."""
    return [row[0] for row in db.execute("SELECT contact FROM segment_members WHERE workflow = ? ORDER BY contact",
                                         [workflow_id])]


# --- date triggers -----------------------------------------------------------------------------------------

_DAY_MARGIN = timedelta(days=3)  # a local date is at most a day from its UTC one, and date_occurrences looks
# two days past its window (DST): three days each side hold every day it can look at, in any zone


# The part of a date a trigger looks at (`every`): its (1-based) place and width in YYYY-MM-DD.
_DATE_PARTS = {"year": (6, 5), "month": (9, 2), "once": (1, 10)}
def _every(every: Any) -> str:
    """A date trigger's `every` as the keys know it (lint allows no other; date_due decides on any other)."""
    return every if every in ("year", "month", "once") else "year"


_ODD = "odd"  # SQLite's key of a value the trigger cannot read a date from: never a date part

# The texts Python reads as the date they spell for sure (datafiles.coerce, then date_due): YYYY-MM-DD of a day
# that is, years 1001-8998 (a date alone at the edge of the years mauto handles, read in a zone, may fall
# outside them), and, for a datetime field, the same followed by a time as the store writes it (UTC). Any other
# value is `odd`: the query keeps it whatever the window, and date_due decides (and words its error).
_SQLITE_DATE = "[1-8][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]"
_SQLITE_TIME = "T[0-2][0-9]:[0-5][0-9]:[0-5][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]+00:00"


def _field_text(name: str, dialect: str, column: str = "c.fields",
                record: bool = False) -> tuple[str, str, str, str]:
    """A contact field's value as text, when the row can be read (TRUE, or Spelling.readable), when a value not
    found is not there for Python either (Spelling.absent), and the quote around the text: its column
    (created_at, the address and consent fields, id), or its member of the row's JSON `column` (SQLite: as
    json_extract gives it; PostgreSQL: its JSON spelling, Spelling.stamp's, a text within `"`, or another
    value's, and 'null'), or (PostgreSQL, `record`) of the row's fields read once as a record."""
    if name in (*COLUMN_FIELDS, "id"):
        table = column.rpartition(".")[0]
        return (f"{table}.{name}" if table else name), _TRUE, _TRUE, ""
    spelling = SPELLINGS[dialect]
    member = _member(spelling, column, name, record)
    absent = member.get("absent", _TRUE)
    # PostgreSQL: the text's own member (`_member`), which date_key_sql reads only past its `WHEN NOT readable`
    return spelling.stamp.format(**member), member["readable"], absent, spelling.stamp_quote


def date_key_sql(name: str, every: str, dialect: str = "sqlite", declared: Any = "date",
                 column: str = "c.fields", record: bool = False) -> str:
    """The SQL of a contact's key for a date trigger on field `name` (declared `date` or `datetime`): the month
    and day (`every: year`), the day (`month`) or the date (`once`) of a value Python reads as that date for
    sure (see above); NULL when the field is not set (or null); for any other value `odd` (SQLite) or '' (an
    empty text, PostgreSQL), and so for a row whose JSON the dialect cannot read as Python does (`readable`).
    One expression, so that one index on it (`index_sql`) serves the trigger's query. `column`: the fields'
    column (`c.fields`, or `fields` in an index); `record`: PostgreSQL reads the field from the fields' record
    (see _field_text), not the JSON text."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"field name {name!r}")
    every = _every(every)
    value, readable, absent, quote = _field_text(name, dialect, column, record)
    begin, width = _DATE_PARTS[every]
    odd = "" if dialect == "postgresql" else _ODD
    unreadable = "" if readable == _TRUE else f"WHEN NOT {readable} THEN '{odd}' "
    unset = "NULL" if absent == _TRUE else f"(CASE WHEN {absent} THEN NULL ELSE '{odd}' END)"  # or not found
    if dialect == "postgresql":
        # a JSON member's spelling (a date needs no escape: within its quotes, as a column holds it)
        shift, null = len(quote), f" OR {value} = 'null'" if quote else ""
        shapes, digits = f"{value} LIKE '{quote}____-__-__{quote}'", f"'{quote}--{quote}'"
        checks = [f"substr({value}, {1 + shift}, 4) NOT IN ('1000', '8999')", _pg_real_day(value, shift)]
        if declared == "datetime":
            shapes = f"({shapes} OR {value} LIKE '{quote}{_PG_STAMP_SHAPE}{quote}')"
            digits += f", '{quote}--T::.+:{quote}'"
            checks.append(f"(length({value}) = {10 + 2 * shift} OR ({_pg_time_of_day(value, shift)}))")
        return (f"CASE {unreadable}WHEN {shapes} AND translate({value}, '0123456789', '') IN ({digits}) THEN "
                f"(CASE WHEN {' AND '.join(checks)} THEN substr({value}, {begin + shift}, {width}) ELSE '' END) "
                f"WHEN {value} IS NULL{null} THEN {unset} ELSE '' END")
    shape = f"{value} GLOB '{_SQLITE_DATE}'"
    if declared == "datetime":
        shape = f"({shape} OR ({value} GLOB '{_SQLITE_DATE}{_SQLITE_TIME}' AND substr({value}, 12, 2) < '24'))"
    day = f"substr({value}, 1, 10)"
    return (f"CASE {unreadable}WHEN {shape} AND substr({value}, 1, 4) NOT IN ('1000', '8999') AND "
            f"substr({value}, 6, 2) BETWEEN '01' AND '12' AND (substr({value}, 9, 2) BETWEEN '01' AND '28' OR "
            f"date({day}, '+0 days') IS {day}) THEN substr({value}, {begin}, {width}) WHEN {value} IS NULL THEN "
            f"{unset} ELSE '{odd}' END")


# The names of the audience indexes (`index_name`): what the queries look up (PostgreSQL) and what `mauto db index`
# lists; `contacts_date_*` are mauto deploy's alone (it drops those no deployed date trigger reads any more),
# `contacts_field_*` the command's (deploy never touches them).
FIELD_INDEX, DATE_INDEX = "contacts_field_", "contacts_date_"
EVERY = ("year", "month", "once")  # a date trigger's `every`, as its index's name ends


def index_name(name: str, every: str | None = None) -> str:
    """The name of the audience index on contact field `name`: `contacts_field_<name>`, or, for a date trigger's
    key (`every`: year, month or once), `contacts_date_<name>_<every>`."""
    return f"{FIELD_INDEX}{name}" if every is None else f"{DATE_INDEX}{name}_{_every(every)}"


def index_sql(name: str, dialect: str = "sqlite", declared: Any = None, *, every: str | None = None,
              concurrently: bool = False) -> str:
    """The statement that creates the audience index (`index_name`, IF NOT EXISTS) on contact field `name`,
    declared as `declared` (mauto.yaml's type: in PostgreSQL a number field indexes the number, any other the
    text): with `every` None, the index that serves a comparison of the field (its JSON type, then its value);
    with `every` (year, month or once), the index that serves a date trigger's query (`date_trigger_query`, on
    a `date` or `datetime` field). The same expressions the queries read, on the `contacts` table.
    `concurrently`: PostgreSQL's CREATE INDEX CONCURRENTLY, which lets writes go on while it is built (and
    cannot run inside a transaction). Made by `mauto deploy` (its date triggers) and `mauto db index` (fields),
    through mauto.store.indexes; docs/store.md, "Audiences in SQL"."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"field name {name!r}")
    spelling = SPELLINGS[dialect]
    create = "CREATE INDEX CONCURRENTLY" if concurrently and dialect == "postgresql" else "CREATE INDEX"
    # quoted: PostgreSQL would fold an unquoted name to lower case, and `indexed_fields` read another field
    head = f'{create} IF NOT EXISTS "{index_name(name, every)}" ON contacts'
    if every is not None:
        return f"{head} (({date_key_sql(name, every, dialect, declared, 'fields')}))"
    member = _member(spelling, "fields", name)
    kind = _kind(spelling, member)
    numeric = declared in ("integer", "number", "boolean")  # compared as numbers (PostgreSQL: another expression)
    value = _number(spelling, member) if numeric else _guarded(member, spelling.text.format(**member))
    return f"{head} (({kind}), ({value}))"


def date_trigger_query(spec: dict[str, Any], declared: Any, start: datetime, end: datetime,
                       dialect: str = "sqlite", columns: str = "c.id", *,
                       indexed: bool = False) -> tuple[str, dict[str, Any]]:
    """The query (SQL, parameters) of the contacts (not erased, in id order) for which a `date` trigger (`spec`:
    field, every, offset) may come due in [start, end), so that only these are read and given to date_due:
    those whose field's month and day (`every: year`), day (`month`) or date (`once`) is near a day of the
    window, plus every one whose field holds anything but a date Python reads as such (date_due then words
    its error as before). A field not declared as a date or datetime: every contact holding it (date_due
    refuses them all); a field name or an offset the trigger cannot have: every contact. Without an index a
    scan of `contacts` in the engine, no Python per contact; with `index_sql(field, every=...)` (`indexed`)
    an index search (docs/store.md)."""
    from mauto.workflow.durations import parse_duration

    name = spec.get("field")
    try:
        offset = parse_duration(spec.get("offset", "0d"), signed=True)
    except Exception:  # noqa: BLE001 - date_due fails on it for each contact, and says why
        offset = None
    if not isinstance(name, str) or not _NAME.fullmatch(name) or offset is None:
        return f"SELECT {columns} FROM contacts AS c WHERE c.erased_at IS NULL ORDER BY c.id", {}  # every one
    every = spec.get("every", "year")
    every = _every(every)
    try:
        first = (start - offset).date() - _DAY_MARGIN
        last = (end - offset).date() + _DAY_MARGIN
    except OverflowError:  # a window at the calendar's edge: every contact holding the field
        first, last, every = date.min, date.max, "year"
    # PostgreSQL: the JSON text read once a row (a column needs no reading)
    record = SPELLINGS[dialect].record \
        if not indexed and name not in (*COLUMN_FIELDS, "id") and _fits_record(name) else None
    key = date_key_sql(name, every, dialect, declared, record=record is not None)
    table = "contacts AS c" + (_record_join(SPELLINGS[dialect], f'"{name}" json') if record is not None else "")
    odd = "''" if dialect == "postgresql" else f"'{_ODD}'"
    parameters: dict[str, Any] = {}
    wanted = None if every == "once" else _near_days(first, last, _DATE_PARTS[every][1])
    if declared not in ("date", "datetime") or (every != "once" and wanted is None):
        near = f"{key} IS NOT NULL"  # every contact holding the field
    elif every == "once":
        near = f"({key} BETWEEN :first AND :last OR {key} = {odd})"
        parameters.update(first=first.isoformat(), last=last.isoformat())
    else:
        assert wanted is not None
        parameters.update({f"d{index}": text for index, text in enumerate(wanted)})
        near = f"{key} IN ({', '.join(f':d{index}' for index in range(len(wanted)))}, {odd})"
    return f"SELECT {columns} FROM {table} WHERE c.erased_at IS NULL AND {near} ORDER BY c.id", parameters


def date_trigger_candidates(db: Any, spec: dict[str, Any], declared: Any, start: datetime,
                            end: datetime, dialect: str = "sqlite") -> Iterator[str]:
    """The ids of `date_trigger_query`'s contacts."""
    sql, parameters = date_trigger_query(spec, declared, start, end, dialect,
                                         indexed=_date_indexed(db, dialect, spec))
    for (contact,) in db.execute(sql, parameters):
        yield contact


def date_trigger_contacts(db: Any, spec: dict[str, Any], fields: dict[str, Any], zone: str, start: datetime,
                          end: datetime, dialect: str = "sqlite") -> Iterator[ContactState]:
    """`date_trigger_query`'s contacts with their typed fields (no events), as runtime.contact_rows gives
    every contact: what the daemon's date triggers look at."""
    from mauto.store.contact_rows import record_of, typed_fields

    sql, parameters = date_trigger_query(spec, fields.get(str(spec.get("field"))), start, end, dialect, "c.*",
                                         indexed=_date_indexed(db, dialect, spec))
    for row in db.query(sql, parameters):
        record = record_of(row)
        yield ContactState(record["id"], typed_fields(record, fields, zone))


def _near_days(first: date, last: date, width: int) -> list[str] | None:
    """The MM-DD (width 5) or DD (width 2) of the days from first to last, and of the days past a month's end
    that come round on its last day (29 February on the 28th, the 31st on the 30th); None past a year."""
    if (last - first).days > 366:
        return None
    wanted: set[str] = set()
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        wanted.add(day.isoformat()[-width:])
        if (day + timedelta(days=1)).month != day.month:
            wanted.update(f"{day.month:02d}-{later:02d}"[-width:] for later in range(day.day + 1, 32))
    return sorted(wanted)
