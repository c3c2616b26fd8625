"""E1: `watchword check-config --envoy-config FILE` finds the Envoy routes whose `watchword.*`
context_extensions a Check would refuse, in the shipped example (as JSON) and in an admin /config_dump."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from watchword.cli import main
from watchword.decide.catalogue import Catalogue
from watchword.ext_authz.envoy_routes import extension_sets, problems
from watchword.routes import RouteTable

from support.envoy import EXAMPLE

ROUTES = RouteTable.build([], Catalogue.load(None))
PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
GOOD = {"watchword.action": "application.get", "watchword.path": "/reports/{application_id}"}


def per_route(extensions: dict[str, str]) -> dict[str, Any]:
    return {"@type": PER_ROUTE, "check_settings": {"context_extensions": extensions}}


def example_with(*routes: dict[str, Any]) -> dict[str, Any]:
    """The shipped gRPC example with `routes` before its catch-all route."""
    config = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    manager["route_config"]["virtual_hosts"][0]["routes"][:0] = routes
    return config


def route(name: str, extensions: dict[str, str], key: str = "envoy.filters.http.ext_authz") -> dict[str, Any]:
    return {
        "name": name,
        "match": {"prefix": f"/{name}/"},
        "route": {"cluster": "api"},
        "typed_per_filter_config": {key: per_route(extensions)},
    }


def test_e1_the_shipped_example_has_no_extension_problems() -> None:
    config = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert problems(config, ROUTES) == []
    assert [extensions for _, extensions in extension_sets(config)] == [{}]  # its catch-all route


def test_e1_each_refused_route_is_named_with_its_reason() -> None:
    config = example_with(
        route("good", GOOD),
        route("typo", {**GOOD, "watchword.action": "application.gte"}, key="authz"),  # any filter name
        route("bad-key", {**GOOD, "watchword.acton": "x"}),
    )
    found = problems(config, ROUTES)
    assert len(found) == 2
    assert found[0].startswith("api/api/typo: context_extensions: ")
    assert "'application.gte' is not in the catalogue" in found[0]
    assert "unknown key 'watchword.acton'" in found[1]


def test_e1_a_config_dump_merges_the_virtual_host_and_unwraps_filter_configs() -> None:
    wrapped = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": per_route(GOOD)}
    host = {
        "name": "vh",
        "typed_per_filter_config": {"ext_authz": per_route({"watchword.dry_run": "true"})},
        "routes": [
            {"match": {"prefix": "/a"}, "typed_per_filter_config": {"x": wrapped}},
            {"match": {"prefix": "/b"}},
        ],
    }
    routes_dump = {
        "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
        "dynamic_route_configs": [{"route_config": {"name": "xds", "virtual_hosts": [host]}}],
    }
    dump = {"configs": [routes_dump]}
    sets = dict(extension_sets(dump))
    assert sets["xds/vh/routes[0]"] == {**GOOD, "watchword.dry_run": "true"}
    assert sets["xds/vh/routes[1]"] == {"watchword.dry_run": "true"}  # no action: refused
    (problem,) = problems(dump, ROUTES)
    assert problem.startswith("xds/vh/routes[1]: ")
    assert "watchword.action is missing" in problem


def test_e1_check_config_reads_an_envoy_config_and_fails_on_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(example_with(route("reports", GOOD))))
    bad.write_text(json.dumps(example_with(route("typo", {**GOOD, "watchword.action": "nope"}))))
    assert main(["check-config", "--envoy-config", str(good)]) == 0
    assert "configuration is valid" in capsys.readouterr().out
    assert main(["check-config", "--envoy-config", str(bad)]) == 2
    assert "api/api/typo: context_extensions: " in capsys.readouterr().err
    (tmp_path / "envoy.yaml").write_text("static_resources: {}\n")
    assert main(["check-config", "--envoy-config", str(tmp_path / "envoy.yaml")]) == 2
    assert "as JSON" in capsys.readouterr().err
