"""E1: the route table that turns an HTTP request seen by Envoy into (action, resource).

Configured as `[[routes]]` tables in the TOML file:

```toml
[[routes]]
method = "POST"
path = "/v1/applications/{application_id}/event_types"
action = "event_type.create"
```

A template is a list of segments: literal segments (unreserved URL characters only) compared with the
request's raw segment exactly, and `{name}` segments that capture one whole segment into the resource
field `name`. Matching is exact and deny-by-default: no regular expressions from the configuration, no
prefix matching, no trailing-slash leniency, methods compared as written (HEAD is not GET). A captured
segment is percent-decoded strictly and refused when it decodes to something that could change the
path's meaning to another reader (`/`, `\\`, `.`, `..`, control characters). When several templates
match, the one whose first differing segment is literal wins, so `/v1/applications/list` beats
`/v1/applications/{application_id}`; two templates of the same shape are a configuration error.

A route may set `dry_run = true` (ext_authz/core.py). In gRPC mode an Envoy route can name its own route in
its `context_extensions` (`watchword.action`, `watchword.path`, `watchword.subject_type`,
`watchword.dry_run`): `for_extensions` checks them like a `[[routes]]` table, once per distinct set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from watchword.decide.catalogue import Catalogue, Level
from watchword.domain import Resource, Subject

# Resource fields a template may capture (`subject_type` and `subject_id` build `Resource.subject`).
PARAMETERS = frozenset(
    {"organization_id", "application_id", "event_type", "object_id", "subject_type", "subject_id"}
)
SUBJECT_TYPES = frozenset({"user", "account"})
MAX_PATH = 8192
MAX_SEGMENTS = 64
MAX_VALUE = 255  # a captured value becomes an id in the resource, bounded like every other id
# Matches remembered per (method, path): routes are fixed for a table's life and Match is immutable.
MAX_REMEMBERED_MATCHES = 4096
MAX_REMEMBERED_PATH = 256  # longer paths are matched afresh: the memo stays within about a megabyte

_METHOD = re.compile(r"[A-Z]{1,32}")
_LITERAL = re.compile(r"[A-Za-z0-9._~-]+")
_PARAMETER = re.compile(r"\{([a-z_]+)\}")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
# ';' too: upstreams that read path parameters (Tomcat, Spring: "..;") would resolve another path.
_FORBIDDEN_DECODED = re.compile(r"[\x00-\x1f\x7f/\\;]")


class RouteSettings(BaseModel):
    """One `[[routes]]` table: which requests it covers and what they ask to do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field(description="HTTP method, upper case, matched exactly (HEAD is not GET).")
    path: str = Field(
        min_length=1, max_length=1024, description="Path template, e.g. /v1/apps/{application_id}."
    )
    action: str = Field(min_length=1, max_length=128, description="Action of the catalogue.")
    subject_type: Literal["", "user", "account"] = Field(
        default="", description="Fixed subject type for templates that capture only {subject_id}."
    )
    dry_run: bool = Field(
        default=False,
        description="Decide, audit and count as usual, then allow, with the would-be answer for the "
        "upstream and Envoy (docs/guides/envoy.md, Dry-run).",
    )

    @field_validator("method")
    @classmethod
    def _method_is_upper_case_token(cls, value: str) -> str:
        if _METHOD.fullmatch(value) is None:
            raise ValueError(f"method {value!r} must be an upper-case HTTP method such as GET or POST")
        return value

    @field_validator("path")
    @classmethod
    def _path_is_a_template(cls, value: str) -> str:
        segments = template_segments(value)  # raises ValueError with the reason
        names = [name for kind, name in segments if kind == "parameter"]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"path {value!r} captures {duplicates} more than once")
        return value

    @model_validator(mode="after")
    def _subject_is_complete(self) -> Self:
        names = self.parameters
        has_type = "subject_type" in names or bool(self.subject_type)
        if ("subject_id" in names) != has_type:
            raise ValueError(
                f"route {self.method} {self.path}: a subject needs both {{subject_id}} and a type "
                '({subject_type} in the path, or subject_type = "user" / "account")'
            )
        if "subject_type" in names and self.subject_type:
            raise ValueError(f"route {self.method} {self.path}: subject_type is both captured and fixed")
        return self

    @property
    def parameters(self) -> frozenset[str]:
        return frozenset(name for kind, name in template_segments(self.path) if kind == "parameter")

    @property
    def shape(self) -> tuple[str, tuple[str | None, ...]]:
        """The method and the segments with parameter names erased: equal shapes match the same paths."""
        return self.method, tuple(
            name if kind == "literal" else None for kind, name in template_segments(self.path)
        )


def template_segments(template: str) -> list[tuple[Literal["literal", "parameter"], str]]:
    """Split a template into ("literal", text) and ("parameter", name) segments; ValueError if invalid."""
    if not template.startswith("/"):
        raise ValueError(f"path {template!r} must start with '/'")
    parts = template[1:].split("/")
    if len(parts) > MAX_SEGMENTS:
        raise ValueError(f"path {template!r} has more than {MAX_SEGMENTS} segments")
    segments: list[tuple[Literal["literal", "parameter"], str]] = []
    for part in parts:
        if parameter := _PARAMETER.fullmatch(part):
            name = parameter.group(1)
            if name not in PARAMETERS:
                raise ValueError(
                    f"path {template!r}: unknown parameter {{{name}}}; known ones are "
                    + ", ".join(f"{{{known}}}" for known in sorted(PARAMETERS))
                )
            segments.append(("parameter", name))
        elif _LITERAL.fullmatch(part) and part not in (".", ".."):
            segments.append(("literal", part))
        else:
            raise ValueError(
                f"path {template!r}: segment {part!r} must be a literal of letters, digits and '-._~' "
                "(not empty, '.' or '..') or one whole {parameter}"
            )
    return segments


def _unique_shapes(routes: tuple[RouteSettings, ...]) -> tuple[RouteSettings, ...]:
    seen: dict[tuple[str, tuple[str | None, ...]], RouteSettings] = {}
    for route in routes:
        if route.shape in seen:
            first = seen[route.shape]
            raise ValueError(
                f"routes {first.method} {first.path} and {route.method} {route.path} match the same requests"
            )
        seen[route.shape] = route
    return routes


RouteList = Annotated[tuple[RouteSettings, ...], AfterValidator(_unique_shapes)]


class RouteError(ValueError):
    """The route table does not fit the action catalogue; the message names the route."""


class UnknownActionError(RouteError):
    """A route names an action the catalogue does not have."""


# What each level of action needs from the path (or, for an application, from the store).
_NEEDED: dict[Level, tuple[frozenset[str], ...]] = {
    Level.ORGANIZATION: (frozenset({"organization_id", "application_id"}),),
    Level.APPLICATION: (frozenset({"application_id"}),),
    Level.EVENT_TYPE: (frozenset({"application_id"}), frozenset({"event_type"})),
    Level.OBJECT: (frozenset({"organization_id", "application_id"}), frozenset({"object_id"})),
    Level.SUBJECT: (frozenset({"organization_id", "application_id"}), frozenset({"subject_id"})),
}


def compile_route(entry: RouteSettings, catalogue: Catalogue, method: str = "") -> Route:
    """One checked route: its action is in the catalogue and its path captures what the action's level
    needs (e.g. {application_id} for an application-level action); RouteError naming the route if not.
    `method` overrides the entry's (ANY_METHOD for a route from Envoy's context_extensions)."""
    label = f"route {method or entry.method} {entry.path}"
    action = catalogue.get(entry.action)
    if action is None:
        raise UnknownActionError(f"{label}: action {entry.action!r} is not in the catalogue")
    for alternatives in _NEEDED[action.level]:
        if not alternatives & entry.parameters:
            wanted = " or ".join(f"{{{name}}}" for name in sorted(alternatives))
            raise RouteError(
                f"{label}: {action.level.value}-level action {entry.action!r} needs {wanted} in the path"
            )
    return Route(
        method=method or entry.method,
        template=entry.path,
        action=entry.action,
        segments=tuple(template_segments(entry.path)),
        fixed_subject_type=entry.subject_type,
        dry_run=entry.dry_run,
    )


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    action: str
    segments: tuple[tuple[Literal["literal", "parameter"], str], ...]
    fixed_subject_type: str = ""
    dry_run: bool = False

    @property
    def specificity(self) -> tuple[bool, ...]:
        """Literal segments rank above parameters, from the left."""
        return tuple(kind == "literal" for kind, _ in self.segments)


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    resource: Resource


def _decode(segment: str) -> str | None:
    """Strict percent-decoding of one captured segment; None when it is not a safe, plain value."""
    if "%" in segment:
        if segment.count("%") != len(_PERCENT.findall(segment)):
            return None  # a '%' not followed by two hex digits
        try:
            raw = _PERCENT.sub(lambda m: chr(int(m.group(1), 16)), segment).encode("latin-1")
            segment = raw.decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return None
    if not segment or segment in (".", "..") or len(segment) > MAX_VALUE:
        return None
    if _FORBIDDEN_DECODED.search(segment):
        return None
    return segment


class RouteTable:
    """The configured routes, checked against the catalogue, indexed by (method, segment count)."""

    def __init__(self, routes: Sequence[Route], catalogue: Catalogue | None = None) -> None:
        self._index: dict[tuple[str, int], list[Route]] = {}
        self._matches: dict[tuple[str, str], Match | None] = {}
        # What Envoy's per-route context_extensions name is checked against (without it, refused).
        self._catalogue = catalogue
        self._extension_routes: dict[tuple[tuple[str, str], ...], RouteTable | RouteError] = {}
        for route in routes:
            self._index.setdefault((route.method, len(route.segments)), []).append(route)
        for candidates in self._index.values():
            candidates.sort(key=lambda route: route.specificity, reverse=True)

    def __len__(self) -> int:
        return sum(len(routes) for routes in self._index.values())

    @classmethod
    def build(cls, settings: Sequence[RouteSettings], catalogue: Catalogue) -> RouteTable:
        return cls([compile_route(entry, catalogue) for entry in settings], catalogue)

    def match(self, method: str, path: str) -> Match | None:
        """The route for this request (the path without its query), or None: deny by default. Remembered
        (bounded, cleared when full): the same few paths come back on every request."""
        key = (method, path)
        matches = self._matches
        if key in matches:
            return matches[key]
        found = self._match(method, path)
        if len(path) > MAX_REMEMBERED_PATH:
            return found
        if len(matches) >= MAX_REMEMBERED_MATCHES:
            matches.clear()
        matches[key] = found
        return found

    def for_extensions(self, extensions: Mapping[str, str]) -> RouteTable | RouteError | None:
        """The route an Envoy route names in its `watchword.*` context_extensions, as a table of that one
        route for any method (`match(ANY_METHOD, path)`); None when they name none (the other keys are
        for others); RouteError (UnknownActionError for an unknown action) when they are invalid.
        Remembered: extensions come from Envoy's configuration, so the same few come back."""
        ours = tuple(sorted(item for item in extensions.items() if item[0].startswith(EXTENSION_PREFIX)))
        if not ours:
            return None
        known = self._extension_routes.get(ours)
        if known is None:
            if len(self._extension_routes) >= MAX_REMEMBERED_EXTENSIONS:
                self._extension_routes.clear()
            known = self._extension_routes[ours] = self._extension_route(dict(ours))
        return known

    def _extension_route(self, extensions: dict[str, str]) -> RouteTable | RouteError:
        unknown = sorted(set(extensions) - set(EXTENSION_KEYS))
        if unknown:
            return RouteError(f"context_extensions: unknown key {unknown[0][:64]!r}")
        if EXTENSION_ACTION not in extensions:
            return RouteError(f"context_extensions: {EXTENSION_ACTION} is missing")
        if extensions.get(EXTENSION_DRY_RUN, "false") not in ("true", "false"):
            return RouteError(f'context_extensions: {EXTENSION_DRY_RUN} must be "true" or "false"')
        if self._catalogue is None:
            return RouteError("context_extensions: this route table has no action catalogue")
        fields = {field: extensions[key] for key, field in EXTENSION_KEYS.items() if key in extensions}
        try:
            entry = RouteSettings.model_validate({"method": "GET", **fields})
            route = compile_route(entry, self._catalogue, ANY_METHOD)
        except ValidationError as error:
            first = error.errors()[0]
            key = f"{EXTENSION_PREFIX}{first['loc'][0]}" if first["loc"] else "context_extensions"
            return RouteError(f"context_extensions: {key}: {first['msg'][:200]}")
        except RouteError as error:
            return type(error)(f"context_extensions: {error}")
        return RouteTable([route], self._catalogue)

    def _match(self, method: str, path: str) -> Match | None:
        if len(path) > MAX_PATH or not path.startswith("/"):
            return None
        parts = path[1:].split("/")
        for route in self._index.get((method, len(parts)), ()):
            captured = _capture(route, parts)
            if captured is not None:
                return Match(route=route, resource=_resource(route, captured))
        return None


# E1: the keys of Envoy's per-route `context_extensions` (gRPC mode) that name a route themselves, and the
# route field each sets; a route from them matches whatever methods its Envoy route matches.
EXTENSION_PREFIX = "watchword."
EXTENSION_ACTION = "watchword.action"
EXTENSION_DRY_RUN = "watchword.dry_run"
EXTENSION_KEYS = {
    EXTENSION_ACTION: "action",
    "watchword.path": "path",
    "watchword.subject_type": "subject_type",
    EXTENSION_DRY_RUN: "dry_run",
}
ANY_METHOD = "*"
MAX_REMEMBERED_EXTENSIONS = 1024


def _capture(route: Route, parts: list[str]) -> dict[str, str] | None:
    captured: dict[str, str] = {}
    for (kind, text), part in zip(route.segments, parts, strict=True):
        if kind == "literal":
            if part != text:
                return None
            continue
        value = _decode(part)
        if value is None or (text == "subject_type" and value not in SUBJECT_TYPES):
            return None
        captured[text] = value
    return captured


def _resource(route: Route, captured: dict[str, str]) -> Resource:
    subject_type = captured.get("subject_type", route.fixed_subject_type)
    subject = None
    if "subject_id" in captured:
        subject = Subject(type=subject_type, id=captured["subject_id"])
    return Resource(
        organization_id=captured.get("organization_id", ""),
        application_id=captured.get("application_id", ""),
        event_type=captured.get("event_type", ""),
        object_id=captured.get("object_id", ""),
        subject=subject,
    )
