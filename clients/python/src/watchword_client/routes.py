"""A route table: (method, path template) to (action, resource), as the ASGI middleware consults it.

Templates are literal segments and `{name}` placeholders, each matching exactly one non-empty path
segment: `POST /v1/applications/{application_id}/event_types` -> `event_type.create`. Placeholders named
like `Resource` fields (organization_id, application_id, event_type, object_id) fill the resource; a
route may instead build its resource with `resource=`. Matching is exact (no trailing-slash or prefix
leniency) and the first matching route wins; a request no route matches is denied by the middleware.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from watchword_client.types import Resource

ANY_METHOD = "*"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_RESOURCE_FIELDS = ("organization_id", "application_id", "event_type", "object_id")

ResourceBuilder = Callable[[Mapping[str, str]], Resource]


def _resource_from_path(params: Mapping[str, str]) -> Resource:
    return Resource(**{name: params[name] for name in _RESOURCE_FIELDS if name in params})


@dataclass(frozen=True)
class Route:
    """`action=None` makes a public route: passed through without asking Watchword (e.g. /healthz)."""

    method: str
    template: str
    action: str | None
    resource: ResourceBuilder = field(default=_resource_from_path, compare=False)
    _segments: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.template.startswith("/"):
            raise ValueError(f"route template must start with '/': {self.template!r}")
        if self.action is not None and not self.action:
            raise ValueError(f"empty action for {self.template!r}; use Route.public for public paths")
        segments = tuple(self.template.split("/")[1:])
        names: list[str] = []
        for segment in segments:
            if "{" in segment or "}" in segment:
                placeholder = _PLACEHOLDER.fullmatch(segment)
                if placeholder is None:
                    raise ValueError(
                        f"a placeholder must be a whole segment: {segment!r} in {self.template!r}"
                    )
                names.append(placeholder.group(1))
        if len(names) != len(set(names)):
            raise ValueError(f"repeated placeholder in {self.template!r}")
        object.__setattr__(self, "method", self.method.upper())
        object.__setattr__(self, "_segments", segments)

    @classmethod
    def public(cls, method: str, template: str) -> Route:
        return cls(method, template, None)

    @property
    def is_public(self) -> bool:
        return self.action is None

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The placeholder values when this route matches, else None."""
        if self.method not in (ANY_METHOD, method.upper()):
            return None
        parts = path.split("/")[1:] if path.startswith("/") else None
        if parts is None or len(parts) != len(self._segments):
            return None
        params: dict[str, str] = {}
        for expected, actual in zip(self._segments, parts, strict=True):
            placeholder = _PLACEHOLDER.fullmatch(expected)
            if placeholder is None:
                if expected != actual:
                    return None
            elif not actual:
                return None
            else:
                params[placeholder.group(1)] = actual
        return params


class RouteTable:
    """Routes in order; `find` returns the first that matches, with its placeholder values."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)

    def find(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None
