"""Message templates: a sandboxed Jinja2 environment over `templates/`, front matter, analysis, rendering.

`email: cart/reminder-1` is `templates/cart/reminder-1.email.html` (YAML front
matter, then the HTML body) with an optional `cart/reminder-1.email.txt`;
`sms: cart/last-call` is `templates/cart/last-call.sms.txt`. The loader hands
Jinja2 the body with the front matter turned into a comment of as many lines,
so Jinja2's line numbers are the file's own, in every error and in every
template that extends another.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from jinja2 import (
    FileSystemLoader,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    meta,
    nodes,
    select_autoescape,
)

from mauto.errors import MautoError, YamlError
from mauto.workflow.expressions import mask_strings, record_attribute, sandbox
from mauto.workflow.loader import Document, Pos, parse

EXTENSIONS = {"email": ".email.html", "sms": ".sms.txt"}
TEXT_PART = ".email.txt"
FRONT_MATTER_KEYS = ("subject", "preheader", "from", "reply_to")


class TemplateProblem(MautoError):
    """A template that cannot be used, at its own file, line and column."""


def split_front_matter(text: str) -> tuple[str | None, int, str]:
    """(front matter or None, the line the body starts on, the body)."""
    if not text.startswith("---"):
        return None, 1, text
    lines = text.split("\n")
    if lines[0].rstrip() != "---":
        return None, 1, text
    for index in range(1, len(lines)):
        if lines[index].rstrip() == "---":
            return "\n".join(lines[1:index]), index + 2, "\n".join(lines[index + 1:])
    return "\n".join(lines[1:]), len(lines) + 1, ""


class ProjectLoader(FileSystemLoader):
    """FileSystemLoader that hides front matter behind a Jinja2 comment of the same height."""

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        front, body_line, body = split_front_matter(source)
        if front is not None:
            source = "{#" + "\n" * (body_line - 1) + "#}" + body
        return source, filename, uptodate


def environment(templates_dir: Path):
    """The sandboxed environment messages are rendered in (HTML autoescaped)."""
    return sandbox(ProjectLoader(str(templates_dir)),
                   autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False))


@dataclass
class TemplateInfo:
    """What one template file uses, found by walking its AST once."""

    name: str  # the loader name: cart/reminder-1.email.html
    display_path: str
    names: dict[str, Pos] = field(default_factory=dict)  # undeclared names: first place used
    contact_fields: dict[str, Pos] = field(default_factory=dict)
    event_properties: dict[str, Pos] = field(default_factory=dict)
    vars: dict[str, Pos] = field(default_factory=dict)
    filters: dict[str, Pos] = field(default_factory=dict)
    tests: dict[str, Pos] = field(default_factory=dict)
    references: list[str] = field(default_factory=list)  # extends / include / import
    literal_text: str = ""  # the text every rendering contains: the shortest `if` branch, no loop body
    error: TemplateProblem | None = None
    front: Document | None = None


class _AnyName(dict):
    """A filters/tests table that has every name, so analysis never stops at an unknown one.

    Jinja2's meta.find_undeclared_variables runs the code generator, which
    raises on the first unknown filter; the lint reports unknown filters itself
    and wants every other finding of the template too.
    """

    def __contains__(self, name: object) -> bool:
        return True

    def get(self, name, default=None):
        return super().get(name) or (lambda *args, **kwargs: None)

    def __getitem__(self, name):
        return self.get(name)


class TemplateSet:
    """The project's templates, each parsed and analysed at most once."""

    def __init__(self, templates_dir: Path, display_root: Path | None = None) -> None:
        self.dir = templates_dir
        self.display_root = display_root or templates_dir.parent
        self.env = environment(templates_dir)
        self._analysis_env = self.env.overlay()
        self._analysis_env.filters = _AnyName(self.env.filters)
        self._analysis_env.tests = _AnyName(self.env.tests)
        self._info: dict[str, TemplateInfo] = {}
        self._strings: dict[tuple[str, str | None], TemplateInfo] = {}
        self._compiled: dict[str, Any] = {}
        self._loaded: dict[str, Template] = {}

    def display(self, name: str) -> str:
        path = Path(name) if Path(name).is_absolute() else self.dir / name
        try:
            return str(path.relative_to(self.display_root))
        except ValueError:
            return str(path)

    def file_name(self, channel: str, template: str) -> str:
        return template + EXTENSIONS[channel]

    @cached_property
    def files(self) -> frozenset[str]:
        """Every file under templates/, as loader names (read once: lint asks about each send many times)."""
        if not self.dir.is_dir():
            return frozenset()
        return frozenset(path.relative_to(self.dir).as_posix() for path in self.dir.rglob("*") if path.is_file())

    def exists(self, name: str) -> bool:
        return name in self.files

    def available(self, channel: str) -> list[str]:
        """Template names (without extension) of a channel, for suggestions."""
        suffix = EXTENSIONS[channel]
        if not self.dir.is_dir():
            return []
        return sorted(str(p.relative_to(self.dir))[: -len(suffix)] for p in self.dir.rglob("*" + suffix))

    def info(self, name: str) -> TemplateInfo:
        cached = self._info.get(name)
        if cached is None:
            cached = self._info[name] = self._analyse(name)
        return cached

    def _analyse(self, name: str) -> TemplateInfo:
        shown = self.display(name)
        info = TemplateInfo(name, shown)
        try:
            raw = (self.dir / name).read_bytes()
        except OSError as error:
            info.error = TemplateProblem(f"cannot read template: {error.strerror}", shown)
            return info
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line = raw.count(b"\n", 0, error.start) + 1
            info.error = TemplateProblem("template is not UTF-8", shown, line, 1)
            return info
        front, body_line, body = split_front_matter(text)
        if name.endswith(EXTENSIONS["email"]):
            if front is None:
                info.error = TemplateProblem("email template has no front matter; start it with `---`, "
                                             "a `subject:` line and `---`", shown, 1, 1)
                return info
            problem = self._front_matter(info, front)
            if problem:
                info.error = problem
                return info
            document = info.front  # parsed, since _front_matter found no problem
            for key in ("subject", "preheader"):
                value = document.data.get(key) if document is not None else None
                if isinstance(value, str) and document is not None:
                    self._walk(info, value, document.pos((key,)), text_lines=None)
                    if info.error:
                        return info
        source = "{#" + "\n" * (body_line - 1) + "#}" + body if front is not None else text
        self._walk(info, source, Pos(1, 1), text_lines=text.split("\n"))
        return info

    def _front_matter(self, info: TemplateInfo, front: str) -> TemplateProblem | None:
        try:  # a leading newline stands for the opening `---`, so lines are the file's own
            document = parse("\n" + front, info.display_path)
        except YamlError as error:
            return TemplateProblem(f"front matter: {error.message}", info.display_path, error.line or 2,
                                   error.col or 1)
        info.front = document
        data = document.data
        if not isinstance(data, dict):
            return TemplateProblem("front matter must be a mapping with `subject:`", info.display_path, 2, 1)
        for key, value in data.items():
            if key not in FRONT_MATTER_KEYS:
                pos = document.key_pos((key,))
                return TemplateProblem(f"unknown front matter key `{key}`; allowed: {', '.join(FRONT_MATTER_KEYS)}",
                                       info.display_path, pos.line, pos.col)
            if not isinstance(value, str) or not value.strip():
                pos = document.pos((key,))
                return TemplateProblem(f"front matter `{key}` must be a non-empty string", info.display_path,
                                       pos.line, pos.col)
        if "subject" not in data:
            return TemplateProblem("front matter has no `subject:`; every email needs one", info.display_path, 2, 1)
        return None

    def _walk(self, info: TemplateInfo, source: str, origin: Pos, text_lines: list[str] | None) -> None:
        """Parse `source` and record what it uses. `origin` is where it starts in the file."""
        try:
            tree = self._analysis_env.parse(source)
            undeclared = meta.find_undeclared_variables(tree)
        except TemplateSyntaxError as error:
            line = origin.line + (error.lineno or 1) - 1
            info.error = TemplateProblem(f"template syntax error: {error.message}", info.display_path, line,
                                         origin.col if line == origin.line else 1)
            return
        except RecursionError:
            info.error = TemplateProblem("template is nested too deeply to read", info.display_path,
                                         origin.line, origin.col)
            return
        lines = text_lines if text_lines is not None else None

        def place(node: nodes.Node, needle: str) -> Pos:
            line = origin.line + (getattr(node, "lineno", 1) or 1) - 1
            col = origin.col if line == origin.line else 1
            if lines is not None and 0 < line <= len(lines):
                found = lines[line - 1].find(needle)  # HTML quotes attributes: no masking here
                if found >= 0:
                    col = found + 1
            elif lines is None:
                found = mask_strings(source.split("\n")[0]).find(needle)
                if found >= 0:
                    col = origin.col + found + (1 if origin.style in ("'", '"') else 0)
            return Pos(line, col)

        for name in tree.find_all(nodes.Name):
            if name.ctx == "load" and name.name in undeclared and name.name not in info.names:
                info.names[name.name] = place(name, name.name)
        buckets = {"contact": info.contact_fields, "event": info.event_properties, "vars": info.vars}
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            found = record_attribute(node)
            if found is not None:
                buckets[found[0]].setdefault(found[1], place(node, found[1]))
        for node in tree.find_all(nodes.Filter):
            info.filters.setdefault(node.name, place(node, node.name))
        for node in tree.find_all(nodes.Test):
            info.tests.setdefault(node.name, place(node, node.name))
        for reference in meta.find_referenced_templates(tree):
            if reference is not None and reference not in info.references:
                info.references.append(reference)
        if lines is not None:
            info.literal_text += _guaranteed_text(tree.body)

    def analyse_string(self, source: str, display_path: str, origin: Pos) -> TemplateInfo:
        """Analyse a template string written in a workflow (a `vars` value, a task title...).

        Analysed once per distinct (source, quoting), at line 1 column 1, then moved to `origin`.
        """
        if "{" not in source:
            return TemplateInfo("<string>", display_path)  # no Jinja2 syntax: plain text, nothing to check
        key = (source, origin.style)
        base = self._strings.get(key)
        if base is None:
            base = self._strings[key] = TemplateInfo("<string>", "")
            self._walk(base, source, Pos(1, 1, origin.style), text_lines=None)
        return _moved(base, display_path, origin)

    def lineage(self, name: str) -> list[TemplateInfo]:
        """The template and every template it extends or includes, each once."""
        seen: dict[str, TemplateInfo] = {}
        pending = [name]
        while pending:
            current = pending.pop()
            if current in seen or not self.exists(current):
                continue
            seen[current] = self.info(current)
            pending.extend(seen[current].references)
        return list(seen.values())

    # --- rendering ----------------------------------------------------------

    def render(self, name: str, context: dict[str, Any]) -> str:
        """Render a template file's body with `context`; errors name the template's own line."""
        try:
            template = self._loaded.get(name)
            if template is None:  # looked up once: Jinja2's own cache takes a lock and an LRU update each time
                template = self._loaded[name] = self.env.get_template(name)
            return _render(template, context)
        except TemplateNotFound as error:
            raise TemplateProblem(f"template `{error.name}` not found", self.display(name)) from None
        except TemplateSyntaxError as error:
            raise TemplateProblem(f"template syntax error: {error.message}", self.display(error.name or name),
                                  error.lineno) from None
        except (TemplateError, ArithmeticError, TypeError, ValueError, AttributeError, KeyError,
                IndexError, RecursionError) as error:  # a template's own mistake: name its file and line
            failed_in, line = _error_place(error)
            shown = self.display(failed_in) if failed_in else self.display(name)
            reason = str(error) if isinstance(error, TemplateError) else f"{type(error).__name__}: {error}"
            raise TemplateProblem(f"cannot render: {reason}", shown, line) from None

    def compiled(self, source: str):
        """A template string compiled once (subjects and unsubscribe links are rendered for every message)."""
        template = self._compiled.get(source)
        if template is None:
            template = self._compiled[source] = self.env.from_string(source)
        return template

    def render_string(self, source: str, context: dict[str, Any], where: str = "<string>") -> str:
        try:
            return _render(self.compiled(source), context)
        except (TemplateError, ArithmeticError, TypeError, ValueError, AttributeError, KeyError, IndexError,
                RecursionError) as error:
            reason = str(error) if isinstance(error, TemplateError) else f"{type(error).__name__}: {error}"
            raise TemplateProblem(f"cannot render `{source}`: {reason}", where) from None


def _render(template: Template, context: dict[str, Any]) -> str:
    """`template.render(context)`, less what it costs for nothing here (a tenth of a short template's time):
    the copy of `context` merged with the globals, which mauto's environment has none of. Jinja2 never writes
    to the context's parent mapping (`{% set %}` writes to the context's own), so `context` is not changed.
    With globals, or an async environment, Jinja2's own `render`."""
    environment = template.environment
    if template.globals or environment.is_async:
        return template.render(context)
    try:
        return environment.concat(template.root_render_func(
            environment.context_class(environment, context, template.name, template.blocks)))
    except Exception:
        environment.handle_exception()  # raises, as Template.render does: the traceback in the template's lines
        raise  # not reached


def _moved(base: TemplateInfo, display_path: str, origin: Pos) -> TemplateInfo:
    """A copy of an analysis made at 1:1, with every position moved to start at `origin`."""
    def move(pos: Pos) -> Pos:
        if pos.line == 1:
            return Pos(origin.line, pos.col + origin.col - 1)
        return Pos(pos.line + origin.line - 1, pos.col)

    def moved(table: dict[str, Pos]) -> dict[str, Pos]:
        return {name: move(pos) for name, pos in table.items()}

    error = None
    if base.error is not None:
        line = base.error.line or 1
        col = base.error.col or 1
        place = move(Pos(line, col))
        error = TemplateProblem(base.error.message, display_path, place.line, place.col)
    return TemplateInfo(base.name, display_path, moved(base.names), moved(base.contact_fields),
                        moved(base.event_properties), moved(base.vars), moved(base.filters), moved(base.tests),
                        list(base.references), base.literal_text, error)


def _guaranteed_text(body: list[nodes.Node]) -> str:
    """The literal text every rendering of `body` contains: the shortest branch of each `if`, no loop body."""
    parts: list[str] = []
    for node in body:
        if isinstance(node, nodes.Output):
            parts.extend(child.data for child in node.nodes if isinstance(child, nodes.TemplateData))
        elif isinstance(node, nodes.If):
            branches = [node.body, *(branch.body for branch in node.elif_), node.else_]
            parts.append(min((_guaranteed_text(branch) for branch in branches), key=len))
        elif isinstance(node, (nodes.Block, nodes.Scope, nodes.With, nodes.ScopedEvalContextModifier)):
            parts.append(_guaranteed_text(node.body))
        # a for loop may run zero times; macros, call and filter blocks are not counted
    return "".join(parts)


def _error_place(error: Exception) -> tuple[str | None, int | None]:
    """(template file, line) of the innermost template frame an error passed through."""
    traceback = error.__traceback__
    place: tuple[str | None, int | None] = (None, None)
    while traceback is not None:
        filename = traceback.tb_frame.f_code.co_filename
        if filename.endswith((".html", ".txt")):
            place = (filename, traceback.tb_lineno)
        traceback = traceback.tb_next
    return place


# --- SMS length ---------------------------------------------------------------

_GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€\f")


def sms_segments(text: str) -> tuple[int, int, str]:
    """(segments, length in the encoding's units, encoding name) for an SMS text."""
    if all(char in _GSM7_BASIC or char in _GSM7_EXTENDED for char in text):
        length = sum(2 if char in _GSM7_EXTENDED else 1 for char in text)
        return (1 if length <= 160 else math.ceil(length / 153)), length, "GSM-7"
    length = len(text.encode("utf-16-le")) // 2
    return (1 if length <= 70 else math.ceil(length / 67)), length, "UCS-2"




def uses_unsubscribe(infos: list[TemplateInfo]) -> bool:
    return any("unsubscribe_url" in info.names for info in infos)
