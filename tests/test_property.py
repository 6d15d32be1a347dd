"""Property tests: whatever bytes or text arrive, the loader raises only YamlError and lint always answers.

The inputs are random bytes, random text, YAML dumped from random trees of
dicts, lists and scalars (some shaped like workflows, with the language's own
keys and values so that the deeper rules run), and real sample workflows and
templates with random edits. Hypothesis's example database is off so that the
tests write nothing outside their temporary folder.
"""
from __future__ import annotations

import math
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mauto.config import load_project
from mauto.errors import YamlError
from mauto.lint.runner import LintResult, lint
from mauto.workflow.loader import Document, decode, parse
from mauto.workflow.model import ACTIONS, TRIGGER_KINDS

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

FAST = settings(max_examples=100, deadline=None, database=None)
LINT = settings(max_examples=30, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

# --- strategies -------------------------------------------------------------------------------

KEYS = [
    *ACTIONS, *TRIGGER_KINDS, "id", "version", "name", "description", "category", "tags", "owner", "trigger",
    "audience", "reentry", "exit_on", "goal", "settings", "in_flight", "steps", "then", "else", "on_event",
    "on_timeout", "vars", "where", "timeout", "until", "days", "variants", "weight", "pool", "as", "url",
    "method", "set", "unset", "add", "remove", "add_tags", "title", "due", "field", "every", "at", "offset",
    "cron", "for", "within", "exit", "after", "timezone", "quiet_hours", "start", "end", "send_days",
    "frequency_cap", "max", "per", "<<", "", "1",
]
WORDS = [
    "1h", "3d", "2w", "30m", "P3D", "PT1H", "-7d", "3 days", "P1M", "09:00", "25:00", "2026-12-24",
    "2020-01-01", "2026-12-24T09:00:00+01:00", "0 9 * * MON", "0 9 * * *", "* *",
    "signed_up", "order_placed", "cart_abandoned", "email_clicked", "nope_event",
    "cart/reminder-1", "cart/last-call", "birthday/happy-birthday", "welcome/welcome", "missing/template",
    "contact.score >= 50", "event.cart_value > 10", "has_event('order_placed', within='7d')",
    "has_event('x', within='1 month', where='event.total > 1')", "contcat.x", "contact.__class__",
    "(", "{{ x }}", "event.step == 'reminder-1'", "vars.coupon", "in_list('vip')", "duration('P1Y')",
    "now - duration('3d')", "days_since(contact.created_at) > 30",
    "marketing", "transactional", "never", "always", "contact", "Europe/Paris", "Mars/Olympus",
    "vip", "best-customers", "welcome", "abandoned-cart", "reminder-1", "a", "b", "mon", "sun", "year",
    "NO", "on", "1:30", "~", "", " ", "\t", "é", "€", "\u2028", "x" * 200,
]


def make_trees(text: st.SearchStrategy[str], words: list[str]) -> st.SearchStrategy:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
        st.floats(allow_nan=False), st.sampled_from(words), text,
    )
    keys = st.one_of(st.sampled_from(KEYS), text)
    return st.recursive(
        scalars,
        lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)),
        max_leaves=30,
    )


trees = make_trees(st.text(max_size=15), WORDS)
# PyYAML (YAML 1.1) treats NEL and the Unicode line and paragraph separators as line breaks, and its dumper
# writes them inside quoted scalars, which its reader then folds: not a round trip, and not mauto's doing.
_BREAKS = "\x85\u2028\u2029"
plain_trees = make_trees(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=_BREAKS),
                                 max_size=15),
                         [word for word in WORDS if not set(word) & set(_BREAKS)])
steps = st.dictionaries(st.sampled_from(KEYS), trees, min_size=1, max_size=3)
triggers = st.one_of(
    st.dictionaries(st.sampled_from([*TRIGGER_KINDS, "where"]), trees, min_size=1, max_size=2),
    trees,
)
workflows = st.fixed_dictionaries(
    {"id": st.sampled_from(["fuzz", "welcome", "abandoned-cart", "Bad Id"]), "version": st.integers(0, 3),
     "name": st.sampled_from(["Fuzz", ""]), "trigger": triggers, "steps": st.lists(steps, max_size=5)},
    optional={"category": st.sampled_from(["marketing", "transactional", "other"]), "audience": trees,
              "reentry": trees, "exit_on": trees, "goal": trees, "settings": trees, "in_flight": trees,
              "extra": trees},
)


class _Yaml12Dumper(yaml.SafeDumper):
    """PyYAML's dumper follows YAML 1.1 and leaves `1e3` or `0o17` unquoted, which YAML 1.2 (mauto) reads as
    numbers: quote every string the 1.2 core schema would not read back as that string."""


def _represent_text(dumper, value):
    from mauto.workflow.loader import _core

    style = '"' if value != "" and _core(value) != value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Yaml12Dumper.add_representer(str, _represent_text)


def dump(data) -> str:
    return yaml.dump(data, Dumper=_Yaml12Dumper, allow_unicode=True, sort_keys=False, default_flow_style=None,
                     width=60)


def workflow_texts() -> list[str]:
    texts = [path.read_text(encoding="utf-8") for path in sorted((ROOT / "workflows").glob("*.yaml"))]
    return texts or [
        "id: fuzz\nversion: 1\nname: Fuzz\ntrigger: {event: signed_up}\nsteps:\n  - wait: 1h\n"
        "  - if: \"contact.score > 1\"\n    then:\n      - email: cart/reminder-1\n"]


SNIPPETS = ["\n", ": ", "- ", "  ", "{", "}", "[", "]", "&a ", "*a", "!tag ", "<<: ", "---\n", "'", '"', "#",
            "|\n", "\t", "\x00", "\ufeff", "é", "3 days", "wait", "email", "then:\n  - ", "contact.", "{{", "%"]


@st.composite
def mutated(draw, texts: list[str]) -> str:
    """A real text with a few random edits: cut, insert, duplicate or swap lines."""
    text = draw(st.sampled_from(texts))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["cut", "insert", "duplicate", "swap", "replace"]))
        if not text:
            text = draw(st.sampled_from(SNIPPETS))
            continue
        at = draw(st.integers(0, len(text)))
        if kind == "cut":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif kind == "insert":
            text = text[:at] + draw(st.one_of(st.sampled_from(SNIPPETS + WORDS), st.text(max_size=5))) + text[at:]
        else:
            lines = text.split("\n")
            first = draw(st.integers(0, len(lines) - 1))
            second = draw(st.integers(0, len(lines) - 1))
            if kind == "duplicate":
                lines.insert(first, lines[first])
            elif kind == "swap":
                lines[first], lines[second] = lines[second], lines[first]
            else:
                lines[first] = lines[first].split(":")[0] + ": " + draw(st.sampled_from(WORDS))
            text = "\n".join(lines)
    return text


# --- the loader -----------------------------------------------------------------------------

def load_or_refuse(raw: bytes | str) -> Document | None:
    """The loader's whole contract: a Document, or a YamlError with a usable position."""
    try:
        text = decode(raw, "f.yaml") if isinstance(raw, bytes) else raw
        return parse(text, "f.yaml")
    except YamlError as error:
        assert error.path == "f.yaml"
        assert error.message
        if error.line is not None:
            assert error.line >= 1 and (error.col or 1) >= 1
        return None


@FAST
@given(st.binary(max_size=300))
def test_loader_on_random_bytes(raw: bytes):
    load_or_refuse(raw)


@FAST
@given(st.text(max_size=300))
def test_loader_on_random_text(text: str):
    load_or_refuse(text)


@FAST
@given(st.text(alphabet=st.sampled_from(list(":-[]{},&*!|>'\"#%@`?\n ab1\t")), max_size=80))
def test_loader_on_yaml_punctuation(text: str):
    load_or_refuse(text)


def same(left, right) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        return left == right or (math.isnan(left) and math.isnan(right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    return type(left) is type(right) and left == right


@FAST
@given(plain_trees)
def test_loader_reads_back_what_a_yaml_dumper_wrote(data):
    document = parse(dump(data), "f.yaml")
    assert same(document.data, data)


@FAST
@given(trees)
def test_every_value_has_a_position(data):
    document = parse(dump(data), "f.yaml")

    def walk(node, path):
        assert path in document.values, path
        if isinstance(node, dict):
            for key, child in node.items():
                assert path + (key,) in document.keys
                walk(child, path + (key,))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, path + (index,))

    if document.data is not None:
        walk(document.data, ())


@FAST
@given(mutated(workflow_texts()))
def test_loader_on_mutated_sample_workflows(text: str):
    load_or_refuse(text)


# --- a whole lint run ------------------------------------------------------------------------

@pytest.fixture
def fuzz_project(tmp_path: Path) -> Path:
    """The sample mauto.yaml and a few of its templates, in tmp_path; each example writes workflows/fuzz.yaml."""
    root = tmp_path / "project"
    (root / "workflows").mkdir(parents=True)
    sample = ROOT / "mauto.yaml"
    if sample.is_file():
        shutil.copy(sample, root / "mauto.yaml")
    else:
        (root / "mauto.yaml").write_text("timezone: Europe/Paris\n", encoding="utf-8")
    for folder in ("cart", "layouts", "birthday", "welcome"):
        if (ROOT / "templates" / folder).is_dir():
            shutil.copytree(ROOT / "templates" / folder, root / "templates" / folder)
    return root


def lint_with(root: Path, files: dict[str, str | bytes]) -> LintResult:
    """Write `files` into the project and lint it; check that every finding is well formed."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
    # as `mauto lint` does: a mauto.yaml that is not YAML is a finding, not the end of the run
    project = load_project(root / "mauto.yaml", display_root=root, lenient=True)
    result = lint(project, NOW)
    assert isinstance(result, LintResult)
    for problem in result.problems:
        assert problem.line >= 1 and problem.col >= 1, problem
        assert problem.rule and problem.message, problem
        assert problem.severity in ("error", "warning"), problem
    assert result.workflows == len(list((root / "workflows").glob("*.yaml")))
    return result


@LINT
@given(workflows)
def test_lint_on_workflow_shaped_yaml(fuzz_project: Path, data):
    lint_with(fuzz_project, {"workflows/fuzz.yaml": dump(data)})


@LINT
@given(st.one_of(mutated(workflow_texts()), st.binary(max_size=200)))
def test_lint_on_mutated_workflows_and_random_bytes(fuzz_project: Path, content):
    lint_with(fuzz_project, {"workflows/fuzz.yaml": content})


@LINT
@given(trees)
def test_lint_on_a_random_project_file(fuzz_project: Path, data):
    seed = workflow_texts()[0]
    lint_with(fuzz_project, {"mauto.yaml": dump(data), "workflows/fuzz.yaml": seed})


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_lint_on_mutated_templates(fuzz_project: Path, data):
    templates = sorted(p for p in (fuzz_project / "templates").rglob("*") if p.is_file())
    if not templates:
        pytest.skip("no sample templates yet")
    target = data.draw(st.sampled_from(templates))
    original = target.read_text(encoding="utf-8")  # restored after each example
    text = data.draw(mutated([original]))
    seeds = workflow_texts()
    try:
        lint_with(fuzz_project, {str(target.relative_to(fuzz_project)): text,
                                 "workflows/fuzz.yaml": data.draw(st.sampled_from(seeds))})
    finally:
        target.write_text(original, encoding="utf-8")


@LINT
@given(st.one_of(mutated([(ROOT / "mauto.yaml").read_text(encoding="utf-8")]
                         if (ROOT / "mauto.yaml").is_file() else ["timezone: Europe/Paris\n"]),
                 st.binary(max_size=100)))
def test_lint_on_a_mutated_project_file(fuzz_project: Path, content):
    lint_with(fuzz_project, {"mauto.yaml": content, "workflows/fuzz.yaml": workflow_texts()[0]})
