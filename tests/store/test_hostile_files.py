"""Hostile and messy data files through `contacts import`, `events ingest`, `coupons load` and the simulation's
loaders: each is a clear error naming the file, the line (and the field), never an internal error, never a
silent success, never a partial write. The real CLI (typer's CliRunner) on a real SQLite file in tmp_path."""
from __future__ import annotations

import json
import os
import sqlite3
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mauto.cli import app
from mauto.datafiles import DataError

pytestmark = pytest.mark.usefixtures("cli_environment")

MAUTO_YAML = """timezone: Europe/Paris
store: data/mauto.db
contact_fields:
  first_name: string
  postcode: string
  birthday: date
  lifetime_value: number
events:
  order_placed: {total: number}
"""
AT = "2026-11-20T10:00:00+01:00"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "mauto.yaml").write_text(MAUTO_YAML)
    monkeypatch.chdir(tmp_path)
    assert run("db", "init").exit_code == 0
    return tmp_path


@pytest.fixture
def with_c1(project: Path) -> Path:
    assert run("contacts", "import", "-", "-f", "jsonl", input='{"id": "c1"}\n').exit_code == 0
    return project


def run(*args: str, input: str | bytes | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def counts() -> dict[str, int]:
    with sqlite3.connect("data/mauto.db") as db:
        return {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("contacts", "events", "coupons")}


def lines(text: str) -> list[str]:
    return text.splitlines()


NOTHING = ("nothing imported: {n} bad row{s} in {file} "
           "(fix them, or import the good rows with --skip-invalid --rejects FILE)")


# --- 1. --rejects naming the input ------------------------------------------------------------------------


@pytest.mark.parametrize("rejects", ["c.jsonl", "./sub/../c.jsonl", "link.jsonl", "hard.jsonl", "{absolute}"])
def test_rejects_naming_the_input_is_refused_before_anything_is_opened(project: Path, rejects: str) -> None:
    source = project / "c.jsonl"
    source.write_text('{"id": "c1"}\n{"id": ""}\n')
    (project / "sub").mkdir()
    (project / "link.jsonl").symlink_to(source)
    os.link(source, project / "hard.jsonl")
    rejects = rejects.format(absolute=source)
    result = run("contacts", "import", "c.jsonl", "--skip-invalid", "--rejects", rejects)
    assert (result.exit_code, result.stdout, result.stderr) == (
        2, "", (f"--rejects {Path(rejects)}: that is the input file; writing the bad rows there would destroy it: "
               "name another file\n"))
    assert source.read_text() == '{"id": "c1"}\n{"id": ""}\n'
    assert counts()["contacts"] == 0


def test_rejects_naming_the_input_of_an_ingest_is_refused(with_c1: Path) -> None:
    text = f'{{"contact": "c1", "event": "order_placed", "at": "{AT}"}}\n{{"contact": "c1"}}\n'
    (with_c1 / "e.jsonl").write_text(text)
    result = run("events", "ingest", "e.jsonl", "--skip-invalid", "--rejects", "./e.jsonl")
    assert (result.exit_code, result.stderr) == (
        2, ("--rejects e.jsonl: that is the input file; writing the bad rows there would destroy it: name another "
           "file\n"))
    assert (with_c1 / "e.jsonl").read_text() == text
    assert counts()["events"] == 1  # c1's contact_created only


def test_a_file_error_leaves_no_rejects_file_behind(project: Path) -> None:
    (project / "c.csv").write_bytes(b"id,birthday\nc1,1990-02-30\nc2,1990-01-01\nc3,Jos\xe9\n")
    result = run("contacts", "import", "c.csv", "--skip-invalid", "--rejects", "bad.csv")
    assert (result.exit_code, result.stderr) == (
        1, "c.csv:4:7: not UTF-8 text (byte 0xe9 cannot be decoded); save the file as UTF-8\n")
    assert not (project / "bad.csv").exists() and sorted(os.listdir(project)) == ["c.csv", "data", "mauto.yaml"]
    assert counts()["contacts"] == 0


# --- 2. an unterminated quote -------------------------------------------------------------------------------


def test_an_unterminated_quote_is_reported_where_it_opened(project: Path) -> None:
    (project / "c.csv").write_text('id,first_name\nc1,"Ann ""A"" Lee"\nc2,"Bob\nMarie",x\n'
                                   'c3,"Cat\nc4,Dan\nc5,Eve\n')
    result = run("contacts", "import", "c.csv", "--skip-invalid")
    assert (result.exit_code, result.stderr) == (
        1, ('c.csv:5: a quote opened on this line is never closed: the rest of the file (3 lines) would be one cell; '
           'close it (a quote inside a quoted cell is written twice: "")\n'))
    assert counts()["contacts"] == 0
    (project / "d.csv").write_text('id,first_name\nc1,"Ann')  # at the very end, without a line break
    assert lines(run("contacts", "import", "d.csv").stderr) == [
        ('d.csv:2: a quote opened on this line is never closed: the rest of the file (1 line) would be one cell; '
        'close it (a quote inside a quoted cell is written twice: "")')]


# --- 3. not UTF-8 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "content", "message"), [
    ("c.csv", "id,first_name\nc1,Ann\nc2,José\n".encode("latin-1"),
     "c.csv:3:7: not UTF-8 text (byte 0xe9 cannot be decoded); save the file as UTF-8"),
    ("c.jsonl", '{"id": "c1"}\n{"id": "c2", "first_name": "Zoë"}\n'.encode("cp1252"),
     "c.jsonl:2:31: not UTF-8 text (byte 0xeb cannot be decoded); save the file as UTF-8"),
    ("c.yaml", "- id: c1\n- id: c2\n  first_name: Zoë\n".encode("latin-1"),
     "c.yaml:3:17: not UTF-8 text (byte 0xeb cannot be decoded); save the file as UTF-8"),
    ("c.csv", "id,first_name\nc1,Zoë\n".encode("utf-16"),
     "c.csv:1:1: not UTF-8 text: the file starts with a UTF-16 byte order mark; save it as UTF-8"),
    ("c.jsonl", '{"id": "c1"}\n'.encode("utf-32"),
     "c.jsonl:1:1: not UTF-8 text: the file starts with a UTF-32 byte order mark; save it as UTF-8"),
    ("c.yaml", "- id: c1\n".encode("utf-16-be"),
     ("c.yaml:1:1: not UTF-8 text: NUL bytes in every other place look like UTF-16 without a byte order mark; save "
     "the file as UTF-8")),
])
def test_text_that_is_not_utf8_is_an_error_at_its_first_bad_byte(project: Path, name: str, content: bytes,
                                                                  message: str) -> None:
    (project / name).write_bytes(content)
    result = run("contacts", "import", name, "--skip-invalid")
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", message + "\n")
    assert counts()["contacts"] == 0


def test_standard_input_in_latin1_and_crlf_or_lone_cr_lines(project: Path) -> None:
    result = run("contacts", "import", "-", "-f", "jsonl", input='{"id": "c1"}\n{"id": "cé"}\n'.encode("latin-1"))
    assert (result.exit_code, result.stderr) == (
        1, "<stdin>:2:10: not UTF-8 text (byte 0xe9 cannot be decoded); save the file as UTF-8\n")
    # Excel's byte order mark and CRLF, and an old Mac file's lone CRs, are still read, lines counted alike
    result = run("contacts", "import", "-", "-f", "csv", input="\ufeffid,birthday\r\nc1,1990-01-01\r\nc2,x\r\n")
    assert lines(result.stderr)[0] == "<stdin>:3: field `birthday`: `x` is not a date (YYYY-MM-DD)"
    (project / "mac.csv").write_bytes(b'id,first_name\rc1,"Ann\rMarie"\rc2,Bob\rc3,"Cat\r')
    assert lines(run("contacts", "import", "mac.csv").stderr)[0].startswith(
        "mac.csv:5: a quote opened on this line is never closed")
    assert counts()["contacts"] == 0


def test_csv_and_json_lines_still_stream(tmp_path: Path) -> None:
    """Rows come before the file is read to its end (an undecodable byte far below is met only when reached),
    and memory stays flat however long the file."""
    from mauto.datafiles import iter_rows

    source = tmp_path / "c.jsonl"
    with source.open("wb") as out:
        for number in range(60_000):
            out.write(json.dumps({"id": f"c{number}", "first_name": "Ann" * 20, "tags": ["a", "b"]}).encode() + b"\n")
        out.write(b'{"id": "\xe9"}\n')
    rows = iter_rows(source, "jsonl")
    assert next(rows) == (1, {"id": "c0", "first_name": "Ann" * 20, "tags": ["a", "b"]})
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="not UTF-8"):
            for _ in rows:
                pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert source.stat().st_size > 5_000_000 and peak < 1_000_000


# --- 4. a CSV cell over the csv module's limit -------------------------------------------------------------


def test_a_cell_over_the_csv_limit_is_an_error_at_its_row(project: Path) -> None:
    (project / "c.csv").write_text('id,first_name\nc1,Ann\nc2,"' + "x" * 140_000 + '"\nc3,Cat\n')
    result = run("contacts", "import", "c.csv", "--skip-invalid")
    assert (result.exit_code, result.stderr) == (
        1, ("c.csv:3: a cell of the row starting here is longer than 131,072 characters (the CSV reader's limit); "
           "is a quote missing?\n"))
    assert counts()["contacts"] == 0


# --- 5-8. JSON values no field can hold ----------------------------------------------------------------------


def test_bad_json_values_are_row_errors_naming_the_field(project: Path) -> None:
    good = ['{"id": "c1", "lifetime_value": 12.5}', '{"id": "c9", "tags": [[1, [2]]]}']
    bad = [
        '{"id": "c2", "tags": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"id": "c3", "tags": ' + "[" * 80 + "]" * 80 + "}",
        '{"id": "c4", "lifetime_value": ' + "9" * 5000 + "}",
        '{"id": "c5", "tags": [1, -9223372036854775809]}',
        '{"id": "c6", "first_name": "An\\ud800n"}',
        '{"id": "c7", "lifetime_value": NaN}',
        '{"id": "c8", "lifetime_value": -Infinity}',
        '{"id": "c10", "lifetime_value": 1e400}',
        '{"id": "c11", "first_name": "' + "x" * (1 << 20) + '"}',
        '{"id": "c12", "\\udfff": 1}',
    ]
    (project / "c.jsonl").write_text("\n".join([good[0], *bad, good[1]]) + "\n")
    result = run("contacts", "import", "c.jsonl")
    huge = "9" * 80 + "…"
    bits = "(64 bits: -9223372036854775808 to 9223372036854775807)"
    assert (result.exit_code, lines(result.stderr)) == (1, [
        "c.jsonl:2: nested more than 64 levels deep",
        "c.jsonl:3: field `tags`: nested more than 64 levels deep",
        f"c.jsonl:4: field `lifetime_value`: `{huge}` is outside the integers mauto handles {bits}",
        f"c.jsonl:5: field `tags[1]`: `-9223372036854775809` is outside the integers mauto handles {bits}",
        "c.jsonl:6: field `first_name`: contains a lone surrogate (U+D800), which is not text",
        "c.jsonl:7: field `lifetime_value`: must be a finite number, not `NaN`",
        "c.jsonl:8: field `lifetime_value`: must be a finite number, not `-Infinity`",
        "c.jsonl:9: field `lifetime_value`: must be a finite number, not `Infinity`",
        "c.jsonl:10: line longer than 1 MiB",
        "c.jsonl:11: the key `\\udfff` contains a lone surrogate (U+DFFF), which is not text",
        NOTHING.format(n=10, s="s", file="c.jsonl")])
    assert counts()["contacts"] == 0
    result = run("contacts", "import", "c.jsonl", "--skip-invalid", "--rejects", "bad.jsonl")
    assert (result.exit_code, result.stdout) == (
        0, "c.jsonl: 2 created, 0 updated, 0 unchanged; 10 bad rows skipped, written to bad.jsonl\n")
    assert counts()["contacts"] == 2
    assert [json.loads(line)["_line"] for line in (project / "bad.jsonl").read_text().splitlines()] == list(
        range(2, 12))


def test_bad_json_values_in_events_are_row_errors(with_c1: Path) -> None:
    def event(**properties) -> str:
        return json.dumps({"contact": "c1", "event": "order_placed", "at": AT, **properties})

    (with_c1 / "e.jsonl").write_text("\n".join([
        event(total=10),
        event(total=10)[:-1] + ', "note": "\\ud83d"}',  # half of an emoji: crashed the insert
        event(total=10, properties={"items": [{"qty": 2 ** 64}]}),
        event(total=10)[:-1] + ', "score": NaN}',  # a property the catalogue does not declare
        event(total=10)[:-1] + ', "big": ' + "1" * 4500 + "}",
    ]) + "\n")
    result = run("events", "ingest", "e.jsonl")
    assert (result.exit_code, lines(result.stderr)[:4]) == (1, [
        "e.jsonl:2: field `note`: contains a lone surrogate (U+D83D), which is not text",
        ("e.jsonl:3: field `properties.items[0].qty`: `18446744073709551616` is outside the integers mauto handles "
        "(64 bits: -9223372036854775808 to 9223372036854775807)"),
        "e.jsonl:4: field `score`: must be a finite number, not `NaN`",
        "e.jsonl:5: field `big`: `" + "1" * 80 + "…` is outside the integers mauto handles (64 bits: "
        "-9223372036854775808 to 9223372036854775807)"])
    assert counts()["events"] == 1
    result = run("events", "ingest", "e.jsonl", "--skip-invalid")
    assert (result.exit_code, result.stdout) == (0, "e.jsonl: 1 stored, 0 already stored; 4 bad rows skipped\n")


# --- 9. CSV headers and cells past them ---------------------------------------------------------------------


def test_a_duplicate_column_is_a_file_error_and_cells_past_the_header_a_row_error(project: Path) -> None:
    (project / "d.csv").write_text("id,first_name,postcode,first_name\nc1,Ann,01234,Annie\n")
    result = run("contacts", "import", "d.csv", "--skip-invalid")
    assert (result.exit_code, result.stderr) == (
        1, "d.csv:1: duplicate column `first_name` (columns 2 and 4); a row could hold only one of its cells\n")
    (project / "x.csv").write_text("id,first_name\nc1,Ann\nc2,Bob,Lee\nc3,Cat,,\nc4,Dan,, 7 \n")
    result = run("contacts", "import", "x.csv")
    assert lines(result.stderr) == [
        ("x.csv:3: 3 cells but the header has 2 columns: `Lee` (cell 3) has no column; is a separator or a quote "
        "missing?"),
        ("x.csv:5: 4 cells but the header has 2 columns: ` 7 ` (cell 4) has no column; is a separator or a quote "
        "missing?"),
        NOTHING.format(n=2, s="s", file="x.csv")]
    assert counts()["contacts"] == 0
    assert run("contacts", "import", "x.csv", "--skip-invalid").stdout == (
        "x.csv: 2 created, 0 updated, 0 unchanged; 2 bad rows skipped\n")  # empty cells past the end: no matter


# --- 10. YAML: declared types decide ------------------------------------------------------------------------


def test_yaml_scalars_keep_their_text_for_the_declared_types(project: Path) -> None:
    (project / "c.yaml").write_text(
        "- {id: c1, phone: +33612345678, postcode: 01234, first_name: true, score: 12, email_consent: true,\n"
        "   lifetime_value: 1.50, tags: [1, a]}\n"
        "- id: 007\n"
        "  postcode: 0x1F\n"
        "  first_name: !!int 12\n"
        "- {id: c3, lifetime_value: .nan}\n"
        "- {id: c4, tags: [.inf]}\n")
    result = run("contacts", "import", "c.yaml", "--skip-invalid")
    assert lines(result.stderr) == ["c.yaml:6: field `lifetime_value`: must be a number, not `.nan`",
                                    "c.yaml:7: field `tags[0]`: must be a finite number, not `Infinity`"]
    stored = {row["id"]: row for row in
              json.loads(run("contacts", "list", "-f", "json").stdout)}
    assert {key: stored["c1"][key] for key in ("phone", "postcode", "first_name", "score", "email_consent",
                                                "lifetime_value", "tags")} == {
        "phone": "+33612345678", "postcode": "01234", "first_name": "true", "score": 12, "email_consent": True,
        "lifetime_value": 1.5, "tags": [1, "a"]}
    assert (stored["007"]["postcode"], stored["007"]["first_name"]) == ("0x1F", "12")
    assert sorted(stored) == ["007", "c1"]


def test_yaml_rows_as_read_for_the_simulation_are_typed_as_before(tmp_path: Path) -> None:
    from mauto.datafiles import iter_rows, read_rows

    source = tmp_path / "e.yaml"
    source.write_text("- {contact: c1, event: x, at: '+1h', total: 54.90, first: true, n: 0612}\n- 12\n")
    rows = iter_rows(source, "yaml")
    assert next(rows) == (1, {"contact": "c1", "event": "x", "at": "+1h", "total": 54.9, "first": True, "n": 612})
    line, problem = next(rows)
    assert (line, str(problem)) == (2, f"{source}:2:3: each row must be a mapping (`- {{id: c1, ...}}`)")
    with pytest.raises(DataError, match="each row must be a mapping"):
        list(read_rows(source))


# --- 11. coupon files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "content", "message"), [
    ("c.txt", "CODE-1\nCODE-2\nCÖDE-3\n".encode("latin-1"),
     "c.txt:3:2: not UTF-8 text (byte 0xd6 cannot be decoded); save the file as UTF-8"),
    ("c.txt", "code\nA\n".encode("utf-16"),
     "c.txt:1:1: not UTF-8 text: the file starts with a UTF-16 byte order mark; save it as UTF-8"),
    ("c.txt", b"A1\nB\x002\n", ("c.txt:2: the code `B\\x002` contains a NUL character (U+0000); a code is one line "
                              "of printable text")),
    ("c.txt", b"A1\nB\tC\n", ("c.txt:2: the code `B\\tC` contains a control character (U+0009); a code is one line "
                             "of printable text")),
    ("c.csv", b'code,value\nA1,10\n"B1\nB2",10\n',
     ("c.csv:4: the code `B1\\nB2` contains a line break (U+000A); a code is one line of printable text")),
    ("c.csv", b'code,value\nA1,10\n"B1,10\nC1,10\n', ("c.csv:3: a quote opened on this line is never closed: the rest "
                                                    "of the file (2 lines) would be one cell; close it (a quote inside "
                                                    "a quoted cell is written twice: \"\")")),
    ("c.csv", b"value,code\n10,A1\n10,B1,x\n", ("c.csv:3: 3 cells but the header has 2 columns: `x` (cell 3) has no "
                                              "column; is a separator or a quote missing?")),
    ("c.txt", b"A1\n" + b"X" * 201 + b"\n", ("c.txt:2: a code of 201 characters (`XXXXXXXXXXXXXXXXXXXX…`); a code has "
                                            "at most 200 characters: is a separator missing?")),
    ("c.txt", b"", "c.txt: no codes in this file: one code a line, or a CSV with a `code` column"),
    ("c.csv", b"code\n\n \n", "c.csv: no codes in this file: one code a line, or a CSV with a `code` column"),
])
def test_bad_coupon_files_are_errors_with_their_line_and_load_nothing(project: Path, name: str, content: bytes,
                                                                      message: str) -> None:
    (project / name).write_bytes(content)
    result = run("coupons", "load", "welcome", name)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", message + "\n")
    assert counts()["coupons"] == 0


def test_a_code_repeated_in_the_file_is_counted_and_loaded_once(project: Path) -> None:
    from mauto.store import Store
    from mauto.store.coupons import load_coupons

    (project / "codes.txt").write_text("code\n\nA1\n  A2  \nA1\r\nA3\n")
    with Store(project / "data" / "mauto.db") as store:
        result = load_coupons(store, "welcome", project / "codes.txt")
    assert result.to_dict() == {"pool": "welcome", "read": 4, "added": 3, "already_loaded": 0, "repeated": 1}
    with sqlite3.connect("data/mauto.db") as db:
        assert [code for (code,) in db.execute("SELECT code FROM coupons ORDER BY rowid")] == ["A1", "A2", "A3"]


def test_a_list_or_mapping_for_a_text_field_is_a_row_error(project: Path) -> None:
    (project / "c.yaml").write_text("- {id: c1, first_name: [a, b]}\n- {id: c2, postcode: {a: 1}}\n- {id: c3}\n")
    result = run("contacts", "import", "c.yaml")
    assert result.exit_code == 1 and counts()["contacts"] == 0
    assert [line.split(": ", 2)[:2] for line in lines(result.stderr)[:2]] == [
        ["c.yaml:1", "field `first_name`"], ["c.yaml:2", "field `postcode`"]]
