"""E1: the `watchword.*` context_extensions of every route in an Envoy configuration, checked as a Check
would check them (`watchword check-config --envoy-config FILE`), so that a typo or an unknown action is
found before the first request through that route is refused.

The file is JSON: an Envoy bootstrap, or what Envoy's admin endpoint serves at `/config_dump` (which also
holds the routes Envoy got over xDS). Every route configuration in it (anything with `virtual_hosts`) is
read; a route's extensions are its virtual host's with its own on top, as Envoy merges them. The per-route
filter configurations are recognised by their type (`ExtAuthzPerRoute`, also inside a `FilterConfig`),
whatever name the operator gave the filter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from watchword.routes import RouteError, RouteTable

PER_ROUTE_TYPE = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"


def problems(config: object, routes: RouteTable) -> list[str]:
    """One line per Envoy route whose `watchword.*` extensions a Check would refuse, naming the route."""
    found = []
    for where, extensions in extension_sets(config):
        named = routes.for_extensions(extensions)
        if isinstance(named, RouteError):
            found.append(f"{where}: {named}")
    return found


def extension_sets(config: object) -> Iterator[tuple[str, dict[str, str]]]:
    """(where, the context_extensions Envoy sends) for every route of every route configuration."""
    for route_config in _route_configs(config):
        for host in _dicts(route_config.get("virtual_hosts")):
            base = _extensions(host)
            for index, route in enumerate(_dicts(host.get("routes"))):
                name = route.get("name") or f"routes[{index}]"
                where = f"{route_config.get('name', '')}/{host.get('name', '')}/{name}"
                yield where, {**base, **_extensions(route)}


def _route_configs(value: object) -> Iterator[dict[str, Any]]:
    """Every mapping with `virtual_hosts` (a RouteConfiguration), wherever it sits."""
    if isinstance(value, dict):
        if isinstance(value.get("virtual_hosts"), list):
            yield value
            return
        for item in value.values():
            yield from _route_configs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _route_configs(item)


def _extensions(entry: dict[str, Any]) -> dict[str, str]:
    extensions: dict[str, str] = {}
    per_filter = entry.get("typed_per_filter_config")
    for config in per_filter.values() if isinstance(per_filter, dict) else ():
        if isinstance(config, dict) and str(config.get("@type", "")).endswith(".FilterConfig"):
            config = config.get("config")  # the optional-filter wrapper
        if isinstance(config, dict) and str(config.get("@type", "")).endswith(PER_ROUTE_TYPE):
            settings = config.get("check_settings")
            found = settings.get("context_extensions") if isinstance(settings, dict) else None
            if isinstance(found, dict):
                extensions.update({str(key): str(value) for key, value in found.items()})
    return extensions


def _dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
