"""A workflow drawn as SVG for the HTML report, from the neutral graph of `mauto.graph.flow`.

The graph is a DAG whose edges follow execution, so it is laid out in layers (after Sugiyama, Tagawa and
Toda, 1981): each node's rank is its longest path from the trigger; an edge that spans several ranks gets a
waypoint in each rank between, so it runs in a lane of its own instead of across the nodes there; nodes are
ordered within their rank by the order a depth-first walk meets them (a step's branches side by side, in the
file's order), then by the mean position of their neighbours while that removes crossings; and x positions are
the least-squares fit to the neighbours' positions under the rank's order and spacing (pool adjacent violators),
so that chains run straight down. Shapes follow `mauto graph`'s Mermaid output: a rounded box for the trigger
and the end, a hexagon for the audience, a flag for the note, a stadium for waits, a diamond for `if` and
`split`, a double-sided box for `start`, a box for every other step.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mauto.graph import AUDIENCE, DECISION, END, NOTE, START, TRIGGER, WAIT, Edge, Flow, flow
from mauto.stats.svg import LINE_HEIGHT, document, group, number, rect, tag, text, text_width, title, wrap
from mauto.workflow.model import Workflow

_WRAP = {DECISION: 190.0, NOTE: 230.0}  # the widest line of a label, in pixels; 250 for the other roles
_WRAP_DEFAULT = 250.0
_GAP = 28.0  # between two nodes side by side
_LANE = 14.0  # the room an edge passing through a rank takes
_RANK_GAP = 54.0  # between ranks: room for an edge's label
_MARGIN = 12.0
_FIGURES_SIZE = 11.0
_SWEEPS = 8


@dataclass
class _Box:
    """A node, or the waypoint of an edge through a rank (`role` None), with its size and place."""

    key: str
    role: str | None
    lines: list[str] = field(default_factory=list)
    figures: str | None = None
    tooltip: str = ""
    width: float = 0.0
    height: float = 0.0
    rank: int = 0
    x: float = 0.0  # the centre
    y: float = 0.0  # the top
    above: list[str] = field(default_factory=list)  # neighbours in the rank above
    below: list[str] = field(default_factory=list)


def _size(box: _Box) -> None:
    """The box's width and height from its text and its shape's margins."""
    text_box = max([text_width(line) for line in box.lines]
                   + [text_width(box.figures, _FIGURES_SIZE) if box.figures else 0.0])
    lines = len(box.lines) + (1 if box.figures else 0)
    inner_width, inner_height = text_box + 8, lines * LINE_HEIGHT + 6
    if box.role == DECISION:
        # A rhombus W × H holds a centred w × h box when w/W + h/H ≤ 1: a fixed vertical margin, and the width
        # that follows from it.
        box.height = inner_height + 48
        box.width = inner_width / (1 - inner_height / box.height)
    elif box.role == WAIT:
        box.height = inner_height + 10
        box.width = inner_width + box.height  # the round ends
    elif box.role in (AUDIENCE, NOTE):
        box.height = inner_height + 10
        box.width = inner_width + 12 + box.height / 2
    elif box.role == START:
        box.height = inner_height + 10
        box.width = inner_width + 28
    else:
        box.height = inner_height + 10
        box.width = inner_width + 16


def _ranks(graph: Flow, main: list[Edge]) -> dict[str, int]:
    """Each node's longest path from the trigger (Kahn's order: edges follow execution, so there is no loop)."""
    incoming = {node.id: 0 for node in graph.nodes}
    for edge in main:
        incoming[edge.target] += 1
    rank = {node.id: 0 for node in graph.nodes}
    ready = [node.id for node in graph.nodes if incoming[node.id] == 0]
    while ready:
        here = ready.pop(0)
        for edge in main:
            if edge.source == here:
                rank[edge.target] = max(rank[edge.target], rank[here] + 1)
                incoming[edge.target] -= 1
                if incoming[edge.target] == 0:
                    ready.append(edge.target)
    return rank


def _crossings(layers: list[list[str]], boxes: dict[str, _Box]) -> int:
    """How many pairs of edges cross between adjacent ranks."""
    total = 0
    for upper, lower in zip(layers, layers[1:], strict=False):
        position = {key: index for index, key in enumerate(lower)}
        pairs = [(index, position[below]) for index, key in enumerate(upper) for below in boxes[key].below]
        total += sum(1 for index, (a1, b1) in enumerate(pairs) for a2, b2 in pairs[index + 1:]
                     if (a1 - a2) * (b1 - b2) < 0)
    return total


def _order(layers: list[list[str]], boxes: dict[str, _Box], fixed: set[str]) -> list[list[str]]:
    """Reorder each rank by the mean position of its neighbours, down then up, keeping the order with the
    fewest crossings (ties keep the walk's order: the file's order of branches)."""
    best = [list(layer) for layer in layers]
    best_crossings = _crossings(best, boxes)
    current = [list(layer) for layer in layers]
    for sweep in range(_SWEEPS):
        downward = sweep % 2 == 0
        indices = range(1, len(current)) if downward else range(len(current) - 2, -1, -1)
        for rank in indices:
            neighbour_layer = current[rank - 1] if downward else current[rank + 1]
            position = {key: index for index, key in enumerate(neighbour_layer)}

            def centre(key: str, rank: int = rank, position: dict[str, int] = position,
                       downward: bool = downward) -> float:
                neighbours = boxes[key].above if downward else boxes[key].below
                if not neighbours or key in fixed:
                    return float(current[rank].index(key))
                return sum(position[other] for other in neighbours) / len(neighbours)

            movable = [key for key in current[rank] if key not in fixed]
            ordered = sorted(movable, key=centre)
            current[rank] = ordered + [key for key in current[rank] if key in fixed]
        crossings = _crossings(current, boxes)
        if crossings < best_crossings:
            best, best_crossings = [list(layer) for layer in current], crossings
    return best


def _fit(targets: list[float], weights: list[float], gaps: list[float]) -> list[float]:
    """Positions as close as may be to `targets` (weighted least squares) with position[i + 1] − position[i] ≥
    gaps[i]: shifting out the gaps leaves an isotonic regression, solved by pooling adjacent violators."""
    offsets = [0.0]
    for gap in gaps:
        offsets.append(offsets[-1] + gap)
    blocks: list[list[float]] = []  # [mean, weight, size]
    for target, weight, offset in zip(targets, weights, offsets, strict=True):
        blocks.append([target - offset, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean2, weight2, size2 = blocks.pop()
            mean1, weight1, size1 = blocks.pop()
            total = weight1 + weight2
            blocks.append([(mean1 * weight1 + mean2 * weight2) / total, total, size1 + size2])
    shifted = [mean for mean, _, size in blocks for _ in range(int(size))]
    return [value + offset for value, offset in zip(shifted, offsets, strict=True)]


def _between(left: _Box, right: _Box) -> float:
    """The room between two neighbours in a rank: more beside a node, where an edge leaving it may be labelled."""
    if left.role and right.role:
        return _GAP
    return _LANE if left.role is None and right.role is None else 22.0


def _place(layers: list[list[str]], boxes: dict[str, _Box]) -> None:
    """x: every rank fitted to its neighbours' positions, down, up, and both ways; waypoints weigh more, so
    that long edges run straight and the nodes move to them."""
    def gaps(layer: list[str]) -> list[float]:
        return [(boxes[a].width + boxes[b].width) / 2 + _between(boxes[a], boxes[b])
                for a, b in zip(layer, layer[1:], strict=False)]

    for layer in layers:
        position = 0.0
        for index, key in enumerate(layer):
            boxes[key].x = position
            if index + 1 < len(layer):
                position += gaps(layer)[index]
    plan = ["down", "up"] * 6 + ["both", "both", "down"]
    for direction in plan:
        indices = range(len(layers)) if direction != "up" else range(len(layers) - 1, -1, -1)
        for rank in indices:
            layer = layers[rank]
            targets, weights = [], []
            for key in layer:
                box = boxes[key]
                neighbours = {"down": box.above, "up": box.below, "both": box.above + box.below}[direction]
                targets.append(sum(boxes[other].x for other in neighbours) / len(neighbours)
                               if neighbours else box.x)
                weights.append(4.0 if box.role is None else 1.0 if neighbours else 0.05)
            for key, value in zip(layer, _fit(targets, weights, gaps(layer)), strict=True):
                boxes[key].x = value


def _shape(box: _Box) -> str:
    """The node's outline, by role, around (x, y) .. (x + width, y + height)."""
    left, top, width, height = box.x - box.width / 2, box.y, box.width, box.height
    right, bottom, middle = left + width, top + height, top + height / 2

    def polygon(points: list[tuple[float, float]]) -> str:
        return tag("polygon", {"points": " ".join(f"{number(px)},{number(py)}" for px, py in points),
                               "class": "shape"})

    if box.role == DECISION:
        return polygon([(box.x, top), (right, middle), (box.x, bottom), (left, middle)])
    if box.role == AUDIENCE:
        cut = height / 2
        return polygon([(left + cut, top), (right - cut, top), (right, middle), (right - cut, bottom),
                        (left + cut, bottom), (left, middle)])
    if box.role == NOTE:
        cut = height / 2
        return polygon([(left, top), (right, top), (right, bottom), (left, bottom), (left + cut, middle)])
    if box.role == WAIT:
        return rect(left, top, width, height, "shape", height / 2)
    if box.role in (TRIGGER, END):
        return rect(left, top, width, height, "shape", 12)
    if box.role == START:
        return (rect(left, top, width, height, "shape") + tag("line", {
            "x1": float(left + 7), "y1": float(top), "x2": float(left + 7), "y2": float(bottom), "class": "inner"})
            + tag("line", {"x1": float(right - 7), "y1": float(top), "x2": float(right - 7), "y2": float(bottom),
                           "class": "inner"}))
    return rect(left, top, width, height, "shape")


def _node(box: _Box) -> str:
    lines = len(box.lines) + (1 if box.figures else 0)
    first = box.y + box.height / 2 - lines * LINE_HEIGHT / 2 + LINE_HEIGHT - 4
    marks = [_shape(box)]
    for index, line in enumerate(box.lines):
        marks.append(text(box.x, first + index * LINE_HEIGHT, line, None, "middle"))
    if box.figures:
        marks.append(text(box.x, first + len(box.lines) * LINE_HEIGHT, box.figures, "figures", "middle",
                          size=_FIGURES_SIZE))
    return group(marks, f"node node-{box.role}", box.tooltip)


def _path(points: list[tuple[float, float]]) -> str:
    """Through `points`, top to bottom: straight where x does not change, else a curve leaving and arriving
    vertically."""
    commands = [f"M{number(points[0][0])},{number(points[0][1])}"]
    for (x1, y1), (x2, y2) in zip(points, points[1:], strict=False):
        if abs(x1 - x2) < 0.05:
            commands.append(f"L{number(x2)},{number(y2)}")
        else:
            middle = (y1 + y2) / 2
            commands.append(f"C{number(x1)},{number(middle)} {number(x2)},{number(middle)} "
                            f"{number(x2)},{number(y2)}")
    return " ".join(commands)


def step_keys(workflow: Workflow) -> list[str]:
    """How `mauto stats` names each step, in document order: its id, or its 1-based path (`3.then.1`)."""
    return [step.id or step.label for step in workflow.all_steps]


def workflow_svg(workflow: Workflow, figures: Mapping[str, str] | None = None) -> str:
    """The workflow as an SVG diagram; `figures` adds a line under the steps it names (by `step_keys`)."""
    graph = flow(workflow)
    main = [edge for edge in graph.edges if not edge.dotted]
    notes = [edge for edge in graph.edges if edge.dotted]
    rank = _ranks(graph, main)
    # The steps' nodes come after the trigger, audience and note, in document order, and the end is last.
    step_nodes = [node.id for node in graph.nodes if node.role not in (TRIGGER, AUDIENCE, NOTE)][:-1]
    keys = step_keys(workflow)
    named = dict(zip(step_nodes, keys, strict=False)) if len(step_nodes) == len(keys) else {}
    boxes: dict[str, _Box] = {}
    for node in graph.nodes:
        box = _Box(node.id, node.role, wrap(node.label, _WRAP.get(node.role, _WRAP_DEFAULT)), tooltip=node.label)
        if figures and node.id in named and named[node.id] in figures:
            box.figures = figures[named[node.id]]
            box.tooltip += f" ({box.figures})"
        box.rank = rank[node.id]
        _size(box)
        boxes[node.id] = box
    routes: list[tuple[Edge, list[str]]] = []
    for index, edge in enumerate(main):
        chain = [edge.source]
        for between in range(rank[edge.source] + 1, rank[edge.target]):
            key = f"e{index}r{between}"
            boxes[key] = _Box(key, None, rank=between, width=_LANE / 2)
            chain.append(key)
        chain.append(edge.target)
        for upper, lower in zip(chain, chain[1:], strict=False):
            boxes[upper].below.append(lower)
            boxes[lower].above.append(upper)
        routes.append((edge, chain))
    layers = _walk_order(graph, boxes, routes)
    for edge in notes:  # the note sits beside the trigger, outside every path
        layers[boxes[edge.target].rank].remove(edge.target)
        layers[boxes[edge.target].rank].append(edge.target)
    layers = _order(layers, boxes, {edge.target for edge in notes})
    _place(layers, boxes)
    for edge in notes:  # beside its trigger, whatever room the fit left
        trigger, note = boxes[edge.source], boxes[edge.target]
        note.x = trigger.x + (trigger.width + note.width) / 2 + _GAP
    bottoms = _stack(layers, boxes)
    left = min(box.x - box.width / 2 for box in boxes.values())
    for box in boxes.values():
        box.x += _MARGIN - left
    width = max(box.x + box.width / 2 for box in boxes.values()) + _MARGIN
    height = max(box.y + box.height for box in boxes.values()) + _MARGIN
    body = [_edges(routes, boxes, notes, bottoms)]
    body.extend(_node(boxes[node.id]) for node in graph.nodes)
    return document(width, height, body, f"diagram of {workflow.id} version {workflow.version}", "diagram")


def _walk_order(graph: Flow, boxes: dict[str, _Box], routes: list[tuple[Edge, list[str]]]) -> list[list[str]]:
    """Each rank's nodes and waypoints in the order a depth-first walk from the trigger meets them."""
    out: dict[str, list[list[str]]] = {}
    for edge, chain in routes:
        out.setdefault(edge.source, []).append(chain[1:])
    seen: set[str] = set()
    order: list[str] = []

    def visit(key: str) -> None:
        stack = [key]
        while stack:
            here = stack.pop()
            if here in seen:
                continue
            seen.add(here)
            order.append(here)
            following: list[str] = []
            for chain in out.get(here, []):
                following.extend(chain)  # a waypoint leads only to the next one: take the whole lane at once
            stack.extend(reversed(following))

    for node in graph.nodes:
        visit(node.id)
    layers: list[list[str]] = [[] for _ in range(max(box.rank for box in boxes.values()) + 1)]
    for key in order:
        layers[boxes[key].rank].append(key)
    return layers


def _stack(layers: list[list[str]], boxes: dict[str, _Box]) -> list[float]:
    """y: each rank a band as tall as its tallest node, nodes centred in it; the bottom of each band."""
    top = _MARGIN
    bottoms = []
    for layer in layers:
        band = max([boxes[key].height for key in layer if boxes[key].role] + [0.0])
        for key in layer:
            box = boxes[key]
            if box.role is None:
                box.y, box.height = top, band
            else:
                box.y = top + (band - box.height) / 2
        bottoms.append(top + band)
        top += band + _RANK_GAP
    return bottoms


def _label_places(routes: list[tuple[Edge, list[float]]], boxes: dict[str, _Box],
                  bottoms: list[float]) -> dict[int, tuple[float, float, float]]:
    """Where each labelled edge's label goes (by the edge's index): centred on the edge in the middle of the gap
    below its source's rank, then the labels leaving one node spread so that none covers another."""
    places: dict[int, tuple[float, float, float]] = {}
    by_source: dict[str, list[int]] = {}
    for index, (edge, first) in enumerate(routes):
        if not edge.label:
            continue
        x1, y1, x2, y2 = first
        y = bottoms[boxes[edge.source].rank] + _RANK_GAP / 2
        x = x1 if abs(x2 - x1) < 0.05 else x1 + (x2 - x1) * _curve_share(y - y1, y2 - y1)
        places[index] = (x, y, text_width(edge.label, 11) + 8)
        by_source.setdefault(edge.source, []).append(index)
    for indices in by_source.values():
        ordered = sorted(indices, key=lambda index: places[index][0])
        wanted = [places[index][0] for index in ordered]
        gaps = [(places[a][2] + places[b][2]) / 2 + 4 for a, b in zip(ordered, ordered[1:], strict=False)]
        for index, x in zip(ordered, _fit(wanted, [1.0] * len(ordered), gaps), strict=True):
            places[index] = (x, places[index][1], places[index][2])
    return places


def _edges(routes: list[tuple[Edge, list[str]]], boxes: dict[str, _Box], notes: list[Edge],
           bottoms: list[float]) -> str:
    """Every edge: its path, its arrowhead, its label on a background below its source."""
    lines: list[str] = []
    firsts: list[tuple[Edge, list[float]]] = []
    for edge, chain in routes:
        source, target = boxes[edge.source], boxes[edge.target]
        points = [(source.x, source.y + source.height)]
        for key in chain[1:-1]:
            points += [(boxes[key].x, boxes[key].y), (boxes[key].x, boxes[key].y + boxes[key].height)]
        tip = (target.x, target.y)
        points.append((tip[0], tip[1] - 1))
        firsts.append((edge, [points[0][0], points[0][1], points[1][0], points[1][1]]))
        arrow = tag("polygon", {"points": f"{number(tip[0] - 4.5)},{number(tip[1] - 9)} "
                                          f"{number(tip[0] + 4.5)},{number(tip[1] - 9)} "
                                          f"{number(tip[0])},{number(tip[1])}", "class": "arrow"})
        described = f"{edge.label}: " if edge.label else ""
        tooltip = title(f"{described}{source.tooltip} → {target.tooltip}")
        lines.append(tag("g", {"class": "edge"}, tooltip + tag("path", {"d": _path(points)}) + arrow))
    labels = []
    for index, (x, y, width) in sorted(_label_places(firsts, boxes, bottoms).items()):
        labels.append(group([rect(x - width / 2, y - 9, width, 17, "label-back", 3),
                             text(x, y + 4, firsts[index][0].label, "edge-label", "middle", size=11)],
                            "edge-label-group"))
    for edge in notes:
        source, target = boxes[edge.source], boxes[edge.target]
        y = source.y + source.height / 2
        start, end = (source.x + source.width / 2, target.x - target.width / 2) if target.x > source.x else (
            source.x - source.width / 2, target.x + target.width / 2)
        lines.append(tag("line", {"x1": float(start), "y1": float(y), "x2": float(end),
                                  "y2": float(target.y + target.height / 2), "class": "note-link"}))
    return "".join(lines) + "".join(labels)


def _curve_share(depth: float, span: float) -> float:
    """How far across (0..1) a curve leaving and arriving vertically has gone `depth` down its `span`: the
    x of a cubic with control points at mid-height, solved for its y by bisection."""
    if span <= 0:
        return 0.5
    target = depth / span
    low, high = 0.0, 1.0
    for _ in range(40):
        t = (low + high) / 2
        y = 3 * (1 - t) ** 2 * t * 0.5 + 3 * (1 - t) * t * t * 0.5 + t ** 3
        low, high = (t, high) if y < target else (low, t)
    t = (low + high) / 2
    return 3 * (1 - t) * t * t + t ** 3

