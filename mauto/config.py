"""Find and read `mauto.yaml`, the project file."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mauto.errors import MautoError, ProjectNotFound, YamlError
from mauto.workflow.expressions import Expression
from mauto.workflow.loader import Document, load

PROJECT_FILE = "mauto.yaml"

BUILTIN_FIELDS = {
    "id": "string", "email": "string", "phone": "string", "timezone": "string", "locale": "string",
    "score": "integer", "tags": "list", "lists": "list", "email_consent": "boolean", "sms_consent": "boolean",
    "created_at": "datetime",
}

# What every event about a message carries: the step that sent it, and its ref (`message`); those recorded
# from a provider or a bounce also the provider's name and its diagnostic.
_MESSAGE_EVENT = {"workflow": "string", "step": "string", "template": "string", "message": "string"}
_FEEDBACK_EVENT = {**_MESSAGE_EVENT, "provider": "string", "reason": "string"}
BUILTIN_EVENTS: dict[str, dict[str, Any]] = {
    "contact_created": {"fields": "object"},
    "contact_updated": {"changed": "list", "previous": "object"},
    "email_sent": _MESSAGE_EVENT, "email_delivered": _FEEDBACK_EVENT,
    # `prefetched`: fetched by a privacy proxy (Apple Mail Privacy Protection loads every pixel, read or not)
    "email_opened": {**_MESSAGE_EVENT, "prefetched": "boolean"},
    "email_clicked": {**_MESSAGE_EVENT, "url": "string"},
    "email_bounced": {**_FEEDBACK_EVENT, "kind": {"enum": ["hard", "soft"]}},
    "email_complained": _FEEDBACK_EVENT,
    "sms_sent": _MESSAGE_EVENT, "sms_delivered": _FEEDBACK_EVENT, "sms_failed": _FEEDBACK_EVENT,
    # `source`: how (one-click, page, preferences, sms-stop, cli); `message`: the message whose link was used
    "unsubscribed": {"channel": {"enum": ["email", "sms"]}, "source": "string", "message": "string"},
}
EVENT_ATTRIBUTES = ("name", "at", "id", "contact")


def find_project(start: Path | None = None, explicit: Path | None = None) -> Path:
    """The `mauto.yaml` to use: `explicit` (a file or its folder), else the nearest one upwards from `start`."""
    if explicit is not None:
        candidate = explicit / PROJECT_FILE if explicit.is_dir() else explicit
        if not candidate.is_file():
            raise ProjectNotFound(f"no project file at {candidate}")
        return candidate
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate
    raise ProjectNotFound(f"no {PROJECT_FILE} in {here} or any parent folder; run mauto inside a project "
                          "or pass --project PATH")


@dataclass
class Project:
    """A loaded `mauto.yaml`. Accessors are lenient: lint reports schema problems, others rely on a valid file."""

    path: Path
    document: Document
    display_root: Path = field(default_factory=Path.cwd)
    load_error: YamlError | None = None  # set only by a lenient load: the file is not YAML mauto reads

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def data(self) -> dict:
        return self.document.data if isinstance(self.document.data, dict) else {}

    @property
    def workflows_dir(self) -> Path:
        return self.root / "workflows"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def timezone(self) -> str:
        zone = self.data.get("timezone")
        return zone if isinstance(zone, str) else "UTC"

    @cached_property
    def phone_region(self) -> str | None:
        """`phone_region` (two letters, e.g. FR): the country whose national numbers an import reads
        (`06 12 34 56 78` is +33612345678 in FR). None when unset: numbers must then be written in
        international form (+33…). An unknown region is an error at its line in mauto.yaml."""
        from mauto.addresses import check_region

        region = self.data.get("phone_region")
        if region is None:
            return None
        try:
            return check_region(region)
        except ValueError as error:
            position = self.document.pos(("phone_region",))
            raise MautoError(f"`phone_region`: {error}", self.document.path, position.line, position.col) from None

    @cached_property
    def serve(self) -> ServeSettings:
        """`serve:` in mauto.yaml, with its defaults (lenient: lint reports what is wrong in it)."""
        return ServeSettings.read(self.data.get("serve"))

    @cached_property
    def contact_fields(self) -> dict[str, Any]:
        """Every contact field, built-in and declared, with its type."""
        declared = self.data.get("contact_fields")
        fields = dict(BUILTIN_FIELDS)
        if isinstance(declared, dict):
            fields.update(declared)
        return fields

    @cached_property
    def segments(self) -> dict[str, Expression]:
        segments = self.data.get("segments")
        if not isinstance(segments, dict):
            return {}
        return {name: Expression(source, self.document.path, self.document.pos(("segments", name)))
                for name, source in segments.items() if isinstance(source, str)}

    @cached_property
    def events(self) -> dict[str, dict[str, Any]] | None:
        """The event catalogue with the built-in events, or None when mauto.yaml has none."""
        catalogue = self.data.get("events")
        if not isinstance(catalogue, dict):
            return None
        events: dict[str, dict[str, Any]] = dict(BUILTIN_EVENTS)
        for name, properties in catalogue.items():
            events[name] = properties if isinstance(properties, dict) else {}
        return events

    @cached_property
    def _display_root(self) -> str:
        return os.path.realpath(self.display_root)

    def display(self, path: Path) -> str:
        """A path as the user should see it: relative to where they stand when possible."""
        absolute = os.path.realpath(path)
        root = self._display_root
        if absolute == root or absolute.startswith(root.rstrip(os.sep) + os.sep):
            return os.path.relpath(absolute, root)
        return str(path)


@dataclass(frozen=True)
class Tracking:
    """Open and click tracking: which, and whether transactional emails get it too."""

    opens: bool = False
    clicks: bool = False
    transactional: bool = False

    def merged(self, override: Any) -> Tracking:
        """These settings with a workflow's `settings.tracking` over them (false: none)."""
        if override is False:
            return Tracking()
        if not isinstance(override, dict):
            return self
        return Tracking(*(override.get(name, getattr(self, name)) is True
                          for name in ("opens", "clicks", "transactional")))


@dataclass(frozen=True)
class ServeSettings:
    """What `mauto serve` answers at, and what it accepts."""

    public_url: str | None = None  # without a trailing slash
    bounce_address: str | None = None
    tracking: Tracking = Tracking()
    lists: dict[str, str] = field(default_factory=dict)
    soft_bounce_limit: int = 3
    max_body: int = 1 << 20
    providers: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def read(cls, data: Any) -> ServeSettings:
        if not isinstance(data, dict):
            return cls()
        url = data.get("public_url")
        url = url.rstrip("/") if isinstance(url, str) and url else None
        # With a public URL, opens and clicks are tracked unless mauto.yaml says otherwise.
        tracking = Tracking(opens=url is not None, clicks=url is not None).merged(data.get("tracking"))
        lists = data.get("lists")
        providers = data.get("providers")
        limit, size = data.get("soft_bounce_limit"), data.get("max_body")
        bounce = data.get("bounce_address")
        return cls(url, bounce if isinstance(bounce, str) and "@" in bounce else None, tracking,
                   {str(k): str(v) for k, v in lists.items()} if isinstance(lists, dict) else {},
                   limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1 else 3,
                   size if isinstance(size, int) and not isinstance(size, bool) and size >= 1024 else 1 << 20,
                   {str(name): {str(k): str(v) for k, v in value.items()} for name, value in providers.items()
                    if isinstance(value, dict)} if isinstance(providers, dict) else {})


def load_project(path: Path, display_root: Path | None = None, lenient: bool = False) -> Project:
    """Read `mauto.yaml`. YAML errors raise, or with `lenient` (for lint) are kept in `load_error`;
    schema problems are left to `mauto lint`."""
    root = display_root or Path.cwd()
    try:
        shown = str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        shown = str(path)
    try:
        return Project(path, load(path, shown), root)
    except YamlError as error:
        if not lenient:
            raise
        return Project(path, Document(shown, "", None), root, load_error=error)
