"""`mauto graph`: workflows drawn as Mermaid flowcharts and Graphviz dot graphs (mauto/graph.py)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from mauto.config import load_project
from mauto.errors import MautoError, UsageError, YamlError
from mauto.graph import RENDERERS, dot_string, flow, load_workflow, locate, step_label, to_dot, to_mermaid
from mauto.workflow.loader import load, parse
from mauto.workflow.model import Workflow, build

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "workflows").glob("*.yaml"))


def workflow_from(text: str) -> Workflow:
    return build(parse(textwrap.dedent(text).lstrip("\n"), "w.yaml"))


HEAD = "id: w\nversion: 1\nname: W\ntrigger: {event: signed_up}\n"


def with_head(body: str) -> Workflow:
    """A workflow `w` triggered by signed_up, with the rest of the file indented as it reads best in a test."""
    return workflow_from(HEAD + textwrap.dedent(body).lstrip("\n"))

# --- a structural reading of the Mermaid we write ----------------------------

_NODE = re.compile(r'    (n\d+)(\(|\(\[|\{\{|>|\{|\[\[|\[)"([^"]*)"(\)|\]\)|\}\}|\]|\}|\]\]|\])')
_EDGE = re.compile(r'    (n\d+) (-->|-\.-)(?:\|"([^"]*)"\|)? (n\d+)')
_PAIRS = {"(": ")", "([": "])", "{{": "}}", ">": "]", "{": "}", "[[": "]]", "[": "]"}


def read_mermaid(text: str) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str, str | None]]]:
    """Nodes {id: (opening, label)} and edges [(source, target, label)], asserting the structure holds:
    one statement a line, shapes closed, ids n0… in order, every edge between defined nodes."""
    lines = text.split("\n")
    assert lines[0] == "flowchart TD"
    assert lines[-1] == "", "the text ends with a newline"
    nodes: dict[str, tuple[str, str]] = {}
    edges: list[tuple[str, str, str | None]] = []
    for line in lines[1:-1]:
        node, edge = _NODE.fullmatch(line), _EDGE.fullmatch(line)
        if node:
            assert not edges, f"node after the edges: {line!r}"
            node_id, opening, label, closing = node.groups()
            assert _PAIRS[opening] == closing, f"unbalanced shape: {line!r}"
            assert node_id == f"n{len(nodes)}", f"ids are n0, n1, … in order: {line!r}"
            nodes[node_id] = (opening, label)
        else:
            assert edge, f"neither a node nor an edge: {line!r}"
            source, _arrow, label, target = edge.groups()
            assert source in nodes and target in nodes, f"edge to an undefined node: {line!r}"
            edges.append((source, target, label))
    for label in [label for _, label in nodes.values()] + [label for *_, label in edges if label]:
        assert not set(label) & set('"<>{}|`'), f"raw markup character in label {label!r}"
        assert not re.search(r"#(?!(?:quot|lt|gt|amp|35|58|92|96|123|124|125);)", label), f"stray # in {label!r}"
    return nodes, edges


def reachable(nodes: dict, edges: list) -> set[str]:
    seen, todo = {"n0"}, ["n0"]
    while todo:
        here = todo.pop()
        for source, target, _ in edges:
            if source == here and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


# --- the sample workflows ----------------------------------------------------

@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.stem)
def test_every_sample_draws_every_step_in_both_formats(sample: Path):
    workflow = load_workflow(sample)
    steps = workflow.all_steps
    nodes, edges = read_mermaid(to_mermaid(workflow))
    labels = [label for _, label in nodes.values()]
    step_labels = labels[len(labels) - 1 - len(steps):-1]  # after trigger/audience/note, before the end
    assert labels[-1] == "end"
    for step, label in zip(steps, step_labels, strict=True):
        name = step.id or (step.value.get("id") if step.kind == "split" else None)
        assert label.startswith(f"{name}: {step.kind} " if name else f"{step.kind} "), (step.path, label)
        if step.kind in ("email", "sms", "start"):
            assert step.value in label
    assert reachable(nodes, edges) == set(nodes), "every node is on a path from the trigger"
    assert any(target == f"n{len(nodes) - 1}" for _, target, _ in edges), "something reaches the end"

    dot = to_dot(workflow)
    assert dot.startswith(f'digraph "{workflow.id}" {{\n') and dot.endswith("}\n")
    for index, step in enumerate(steps):
        node_id = f"n{len(labels) - 1 - len(steps) + index}"
        assert f"    {node_id} [label={dot_string(step_label(step))}, " in dot


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.stem)
def test_output_is_deterministic(sample: Path):
    first, second = load_workflow(sample), load_workflow(sample)
    for render in RENDERERS.values():
        assert render(first) == render(second)


# --- one small workflow with every step kind and every construct -------------

EVERY_STEP = """
    id: every-step
    version: 1
    name: Every step
    trigger:
      event: cart_abandoned
      where: "event.cart_value >= 20"
    audience: "contact.country in ['FR', 'BE']"
    exit_on: [order_placed]
    goal: {event: order_placed, within: 7d}
    steps:
      - wait: 1h
      - id: morning
        wait: {until: "09:00", days: [mon, tue]}
      - id: reminder-1
        email: cart/reminder-1
      - if: "contact.sms_consent"
        then:
          - sms: cart/nudge
      - id: ab
        split:
          variants:
            a:
              weight: 45
              steps:
                - update: {set: {lifecycle: customer}, unset: [phone], add_tags: [ab-a], remove_tags: [cold]}
            b:
              weight: 45
              steps:
                - score: -5
            holdout: {weight: 10}
      - if: "contact.score > 50"
        then:
          - lists: {add: [vip], remove: [prospects]}
          - exit: vip
        else:
          - task: {title: "Call {{ contact.email }}", assignee: sales@shop.example, due: 2d}
      - webhook: {url: "https://crm.example/leads", as: crm}
      - assign_coupon: {pool: CART10, as: coupon}
      - id: clicked
        wait_for: {event: email_clicked, timeout: 3d}
        on_event:
          - start: vip-welcome
        on_timeout:
          - exit: no click
      - score: 10
"""

EVERY_STEP_MERMAID = """\
flowchart TD
    n0("event: cart_abandoned where event.cart_value #gt;= 20")
    n1{{"audience: contact.country in ['FR', 'BE']"}}
    n2>"exits on order_placed; goal order_placed within 7d"]
    n3(["wait 1h"])
    n4(["morning: wait until 09:00 (mon, tue)"])
    n5["reminder-1: email cart/reminder-1"]
    n6{"if contact.sms_consent"}
    n7["sms cart/nudge"]
    n8{"ab: split (a 45% / b 45% / holdout 10%)"}
    n9["update lifecycle = customer, phone unset, tags +ab-a −cold"]
    n10["score −5"]
    n11{"if contact.score #gt; 50"}
    n12["lists +vip −prospects"]
    n13["exit vip"]
    n14["task Call #123;#123; contact.email #125;#125; → sales@shop.example, due 2d"]
    n15["webhook POST https://crm.example/leads → vars.crm"]
    n16["assign_coupon CART10 → vars.coupon"]
    n17(["clicked: wait_for email_clicked (timeout 3d)"])
    n18[["start vip-welcome"]]
    n19["exit no click"]
    n20["score +10"]
    n21("end")
    n0 --> n1
    n0 -.- n2
    n1 --> n3
    n3 --> n4
    n4 --> n5
    n5 --> n6
    n6 -->|"yes"| n7
    n6 -->|"no"| n8
    n7 --> n8
    n8 -->|"a 45%"| n9
    n8 -->|"b 45%"| n10
    n8 -->|"holdout 10%"| n11
    n9 --> n11
    n10 --> n11
    n11 -->|"yes"| n12
    n11 -->|"no"| n14
    n12 --> n13
    n13 -->|"vip"| n21
    n14 --> n15
    n15 --> n16
    n16 --> n17
    n17 -->|"email_clicked"| n18
    n17 -->|"after 3d"| n19
    n18 --> n20
    n19 -->|"no click"| n21
    n20 --> n21
"""

EVERY_STEP_DOT = """\
digraph "every-step" {
    node [shape=box];
    n0 [label="event: cart_abandoned where event.cart_value >= 20", shape=ellipse];
    n1 [label="audience: contact.country in ['FR', 'BE']", shape=hexagon];
    n2 [label="exits on order_placed; goal order_placed within 7d", shape=note];
    n3 [label="wait 1h", shape=box, style=rounded];
    n4 [label="morning: wait until 09:00 (mon, tue)", shape=box, style=rounded];
    n5 [label="reminder-1: email cart/reminder-1", shape=box];
    n6 [label="if contact.sms_consent", shape=diamond];
    n7 [label="sms cart/nudge", shape=box];
    n8 [label="ab: split (a 45% / b 45% / holdout 10%)", shape=diamond];
    n9 [label="update lifecycle = customer, phone unset, tags +ab-a −cold", shape=box];
    n10 [label="score −5", shape=box];
    n11 [label="if contact.score > 50", shape=diamond];
    n12 [label="lists +vip −prospects", shape=box];
    n13 [label="exit vip", shape=box];
    n14 [label="task Call {{ contact.email }} → sales@shop.example, due 2d", shape=box];
    n15 [label="webhook POST https://crm.example/leads → vars.crm", shape=box];
    n16 [label="assign_coupon CART10 → vars.coupon", shape=box];
    n17 [label="clicked: wait_for email_clicked (timeout 3d)", shape=box, style=rounded];
    n18 [label="start vip-welcome", shape=box, peripheries=2];
    n19 [label="exit no click", shape=box];
    n20 [label="score +10", shape=box];
    n21 [label="end", shape=ellipse];
    n0 -> n1;
    n0 -> n2 [style=dashed, arrowhead=none];
    n1 -> n3;
    n3 -> n4;
    n4 -> n5;
    n5 -> n6;
    n6 -> n7 [label="yes"];
    n6 -> n8 [label="no"];
    n7 -> n8;
    n8 -> n9 [label="a 45%"];
    n8 -> n10 [label="b 45%"];
    n8 -> n11 [label="holdout 10%"];
    n9 -> n11;
    n10 -> n11;
    n11 -> n12 [label="yes"];
    n11 -> n14 [label="no"];
    n12 -> n13;
    n13 -> n21 [label="vip"];
    n14 -> n15;
    n15 -> n16;
    n16 -> n17;
    n17 -> n18 [label="email_clicked"];
    n17 -> n19 [label="after 3d"];
    n18 -> n20;
    n19 -> n21 [label="no click"];
    n20 -> n21;
}
"""


@pytest.fixture
def every_step(tmp_path: Path) -> Workflow:
    """Written to a file and read back the way the command reads it: loader, schema, model."""
    path = tmp_path / "every-step.yaml"
    path.write_text(textwrap.dedent(EVERY_STEP).lstrip("\n"), encoding="utf-8")
    return load_workflow(path)


def test_every_step_kind_and_construct_in_mermaid(every_step: Workflow):
    assert to_mermaid(every_step) == EVERY_STEP_MERMAID
    read_mermaid(EVERY_STEP_MERMAID)


def test_every_step_kind_and_construct_in_dot(every_step: Workflow):
    assert to_dot(every_step) == EVERY_STEP_DOT


def test_the_model_is_built_from_the_loaded_document(every_step: Workflow, tmp_path: Path):
    assert to_mermaid(build(load(tmp_path / "every-step.yaml"))) == EVERY_STEP_MERMAID


# --- triggers, notes and blocks ------------------------------------------------

@pytest.mark.parametrize(("trigger", "label"), [
    ("{event: signed_up}", "event: signed_up"),
    ('{event: form_submitted, where: "event.form == \'demo\'"}', "event: form_submitted where event.form == 'demo'"),
    ("{segment: vip}", "segment: vip"),
    ('{segment: "contact.score >= 50"}', "segment: contact.score #gt;= 50"),
    ('{date: {field: birthday, every: year, at: "09:00"}}', "date: birthday at 09:00"),
    ("{date: {field: renewal_date, every: month, offset: -7d}}", "date: renewal_date 7d before every month at 09:00"),
    ('{date: {field: signup_date, every: once, offset: 30d, at: "10:30"}}',
     "date: signup_date 30d after once at 10:30"),
    ("{date: {field: birthday, offset: 0d}}", "date: birthday at 09:00"),
    ("{date: {field: birthday, offset: -PT2H}}", "date: birthday PT2H before at 09:00"),
    ('{schedule: {cron: "0 9 * * MON"}}', "schedule: 0 9 * * MON"),
    ('{schedule: {cron: "0 9 * * MON", timezone: Europe/Paris}}', "schedule: 0 9 * * MON (Europe/Paris)"),
    ("{inactivity: {event: order_placed, for: 90d}}", "inactivity: order_placed for 90d"),
    ("{inactivity: {event: login, for: 30d, where: \"event.app == 'web'\"}}",
     "inactivity: login for 30d where event.app == 'web'"),
])
def test_trigger_labels(trigger: str, label: str):
    workflow = workflow_from(f"id: w\nversion: 1\nname: W\ntrigger: {trigger}\nsteps:\n  - wait: 1d\n")
    assert to_mermaid(workflow).split("\n")[1] == f'    n0("{label}")'


def test_note_with_conditional_exit_and_a_goal_that_does_not_exit():
    workflow = with_head("""
        exit_on:
          - unsubscribed
          - {event: form_submitted, where: "event.form == 'demo'"}
        goal: {event: order_placed, where: "event.total > 100", within: 30d, exit: false}
        steps:
          - wait: 1d
    """)
    assert to_mermaid(workflow).split("\n")[2] == (
        '    n1>"exits on unsubscribed, form_submitted where event.form == \'demo\'; '
        'goal order_placed where event.total #gt; 100 within 30d (counted, no exit)"]')


def test_no_note_and_no_audience_when_the_workflow_has_none():
    nodes, edges = read_mermaid(to_mermaid(with_head("steps:\n  - wait: 1d\n")))
    assert list(nodes.values()) == [("(", "event: signed_up"), ("([", "wait 1d"), ("(", "end")]
    assert edges == [("n0", "n1", None), ("n1", "n2", None)]


def test_empty_and_missing_blocks_go_straight_on():
    workflow = with_head("""
        steps:
          - if: "contact.vip"
            then: []
          - wait_for: {event: email_opened, timeout: 2d}
          - wait_for: {event: email_clicked, timeout: 1d}
            on_timeout:
              - score: -1
          - split:
              variants:
                treatment: {weight: 90, steps: [{email: a/b}]}
                holdout: {weight: 10, steps: []}
    """)
    _, edges = read_mermaid(to_mermaid(workflow))
    assert edges == [
        ("n0", "n1", None),
        ("n1", "n2", "yes"), ("n1", "n2", "no"),
        ("n2", "n3", "email_opened"), ("n2", "n3", "after 2d"),
        ("n3", "n5", "email_clicked"), ("n3", "n4", "after 1d"),
        ("n4", "n5", None),
        ("n5", "n6", "treatment 90%"), ("n5", "n7", "holdout 10%"),
        ("n6", "n7", None),
    ]


def test_nested_blocks_rejoin_the_step_after_their_outermost_parent_unless_they_exit():
    workflow = with_head("""
        steps:
          - if: "contact.a"
            then:
              - if: "contact.b"
                then:
                  - exit: b
                else:
                  - score: 1
            else:
              - exit: not a
          - score: 2
    """)
    _, edges = read_mermaid(to_mermaid(workflow))
    # n1 if a, n2 if b, n3 exit b, n4 score 1, n5 exit not a, n6 score 2, n7 end
    assert edges == [
        ("n0", "n1", None),
        ("n1", "n2", "yes"), ("n1", "n5", "no"),
        ("n2", "n3", "yes"), ("n2", "n4", "no"),
        ("n3", "n7", "b"),
        ("n4", "n6", None),
        ("n5", "n7", "not a"),
        ("n6", "n7", None),
    ]


def test_split_id_labels_the_split_and_the_step_id_wins():
    workflow = with_head("""
        steps:
          - split: {id: subject-test, variants: {a: {weight: 50}, b: {weight: 50}}}
          - id: step-id
            split: {id: split-id, variants: {a: {weight: 50}, b: {weight: 50}}}
    """)
    assert [node.label for node in flow(workflow).nodes][1:3] == [
        "subject-test: split (a 50% / b 50%)", "step-id: split (a 50% / b 50%)"]


def test_long_task_titles_are_shortened_and_multiline_text_is_one_line():
    workflow = with_head("""
        steps:
          - task:
              title: "Call {{ contact.first_name }} about the renewal of the contract that ends next month, today"
          - if: >-
              contact.a
              and contact.b
            then: [{webhook: {url: "https://x.example/{{ contact.id }}", method: PUT}}]
    """)
    labels = [node.label for node in flow(workflow).nodes]
    assert labels[1] == "task Call {{ contact.first_name }} about the renewal of the cont…"
    assert len(labels[1]) == len("task ") + 60
    assert labels[2] == "if contact.a and contact.b"
    assert labels[3] == "webhook PUT https://x.example/{{ contact.id }}"


# --- escaping -------------------------------------------------------------------

TRICKY = """
    id: tricky
    version: 1
    name: Tricky
    trigger: {event: signed_up}
    steps:
      - if: 'contact.note == "{a}" or "<b>" in contact.tags or "#quot;&|`\\n" == "[x]"'
        then:
          - exit: 'said "no" {really} <now> | #1;'
"""


def test_mermaid_escapes_quotes_brackets_and_entities():
    text = to_mermaid(workflow_from(TRICKY))
    assert text.split("\n")[2] == (
        '    n1{"if contact.note == #quot;#123;a#125;#quot; or #quot;#lt;b#gt;#quot; in contact.tags or '
        '#quot;#35;quot;#amp;#124;#96;#92;n#quot; == #quot;[x]#quot;"}')
    assert text.split("\n")[3] == '    n2["exit said #quot;no#quot; #123;really#125; #lt;now#gt; #124; #35;1;"]'
    assert '    n2 -->|"said #quot;no#quot; #123;really#125; #lt;now#gt; #124; #35;1;"| n3' in text
    read_mermaid(text)


def test_mermaid_keeps_style_lines_whole():
    """Mermaid cuts the last `;` off a line like `style …:…#…;` before parsing: such a label has no `:` left."""
    workflow = with_head("""
        steps:
          - if: "contact.style == 'a:#b'"
            then: [{score: 1}]
          - if: "contact.plain == 'a:#b'"
            then: [{score: 1}]
    """)
    lines = to_mermaid(workflow).split("\n")
    assert lines[2] == '    n1{"if contact.style == \'a#58;#35;b\'"}'
    assert lines[4] == '    n3{"if contact.plain == \'a:#35;b\'"}'


def test_dot_escapes_quotes_and_backslashes():
    text = to_dot(workflow_from(TRICKY))
    assert ('    n1 [label="if contact.note == \\"{a}\\" or \\"<b>\\" in contact.tags or '
            '\\"#quot;&|`\\\\n\\" == \\"[x]\\"", shape=diamond];') in text
    assert '    n2 -> n3 [label="said \\"no\\" {really} <now> | #1;"];' in text


def test_dot_quotes_the_graph_name():
    assert to_dot(with_head("steps:\n  - wait: 1d\n")).startswith('digraph "w" {\n')


# On a laptop without Graphviz these skip; in CI (CI=true) they run, and fail if `dot` is missing (.ci/run
# installs it): a missing tool never passes silently there.
@pytest.mark.skipif(shutil.which("dot") is None and not os.environ.get("CI"), reason="Graphviz `dot` is not "
                    "installed (.ci/run installs it)")
@pytest.mark.parametrize("name", [path.stem for path in SAMPLES] + ["every-step", "tricky"])
def test_graphviz_accepts_the_dot_output(name: str, tmp_path: Path):
    assert shutil.which("dot"), "Graphviz `dot` is not installed: .ci/run installs Debian's graphviz"
    if name == "every-step":
        workflow = workflow_from(EVERY_STEP)
    elif name == "tricky":
        workflow = workflow_from(TRICKY)
    else:
        workflow = load_workflow(ROOT / "workflows" / f"{name}.yaml")
    result = subprocess.run(["dot", "-Tsvg"], input=to_dot(workflow), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "<svg" in result.stdout


# --- finding and loading the file -------------------------------------------------

@pytest.fixture
def project(tmp_path: Path, write_files):
    write_files(tmp_path, {
        "mauto.yaml": "timezone: Europe/Paris\n",
        "workflows/welcome.yaml": HEAD + "steps:\n  - wait: 1d\n",
        "workflows/nested/renamed.yaml": HEAD.replace("id: w", "id: other") + "steps:\n  - wait: 1d\n",
        "workflows/broken.yaml": "id: [\n",
    })
    return load_project(tmp_path / "mauto.yaml", display_root=tmp_path)


def test_locate_a_file_needs_no_project(project):
    path = project.workflows_dir / "welcome.yaml"
    assert locate(path, lambda: pytest.fail("no project needed")) == (path, str(path))


def test_locate_a_path_that_does_not_exist_leaves_it_to_the_loader(tmp_path: Path):
    missing = tmp_path / "missing.yaml"
    assert locate(missing, lambda: pytest.fail("no project needed")) == (missing, str(missing))
    with pytest.raises(YamlError, match="file not found"):
        load_workflow(missing)


def test_locate_a_workflow_by_id(project):
    assert locate(Path("w"), lambda: project) == (project.workflows_dir / "welcome.yaml", "workflows/welcome.yaml")
    assert locate(Path("other"), lambda: project) == (project.workflows_dir / "nested" / "renamed.yaml",
                                                      "workflows/nested/renamed.yaml")


def test_locate_an_unknown_id(project):
    with pytest.raises(UsageError) as raised:
        locate(Path("nope"), lambda: project)
    assert str(raised.value) == "nope: no such file, and no workflow with id `nope` in workflows"


def test_a_schema_problem_is_raised_at_its_place(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("id: bad\nversion: 1\nname: Bad\ntrigger: {event: signed_up}\nsteps:\n  - wiat: 1d\n",
                    encoding="utf-8")
    with pytest.raises(MautoError) as raised:
        load_workflow(path, "workflows/bad.yaml")
    assert str(raised.value) == "workflows/bad.yaml:6:5: unknown key `wiat` in step 1; did you mean `wait`?"


def test_an_empty_file_is_an_error(tmp_path: Path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(YamlError, match="empty.yaml:1:1: the file is empty"):
        load_workflow(path)


# --- the documentation ------------------------------------------------------------

def test_the_docs_example_is_the_current_output_for_the_abandoned_cart():
    page = (ROOT / "docs" / "graph.md").read_text(encoding="utf-8")
    example = re.search(r"```mermaid\n(.*?)```", page, re.DOTALL)
    assert example, "docs/graph.md has a ```mermaid example"
    assert example.group(1) == to_mermaid(load_workflow(ROOT / "workflows" / "abandoned-cart.yaml")), (
        "docs/graph.md is stale: paste the output of `mauto graph abandoned-cart` into it")
