"""E1 route table: configuration checks with clear messages, exact matching, and properties (hypothesis) that
no path reaches a route by tricks (dot segments, encoded slashes, case, trailing slashes)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watchword import config
from watchword.decide.catalogue import Catalogue
from watchword.domain import Resource, Subject
from watchword.routes import (
    ANY_METHOD,
    MAX_REMEMBERED_EXTENSIONS,
    MAX_REMEMBERED_MATCHES,
    MAX_REMEMBERED_PATH,
    Match,
    RouteError,
    RouteSettings,
    RouteTable,
    UnknownActionError,
)

CATALOGUE = Catalogue.load(None)


def table(*routes: dict[str, str]) -> RouteTable:
    return RouteTable.build([RouteSettings.model_validate(route) for route in routes], CATALOGUE)


EVENT_TYPES = {
    "method": "POST",
    "path": "/v1/applications/{application_id}/event_types",
    "action": "event_type.create",
}
APPLICATION = {"method": "GET", "path": "/v1/applications/{application_id}", "action": "application.get"}
LIST = {
    "method": "GET",
    "path": "/v1/organizations/{organization_id}/applications",
    "action": "application.list",
}
TRACK = {
    "method": "POST",
    "path": "/v1/organizations/{organization_id}/{subject_type}/{subject_id}/track",
    "action": "track",
}
ROUTES = table(EVENT_TYPES, APPLICATION, LIST, TRACK)


def test_e1_a_template_builds_the_resource_from_its_parameters() -> None:
    match = ROUTES.match("POST", "/v1/applications/app-1/event_types")
    assert match is not None
    assert match.route.action == "event_type.create"
    assert match.resource == Resource(application_id="app-1")
    track = ROUTES.match("POST", "/v1/organizations/o-1/account/a%20b/track")
    assert track is not None
    assert track.resource == Resource(organization_id="o-1", subject=Subject(type="account", id="a b"))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/v1/applications/app-1/event_types"),  # methods are matched as written
        ("HEAD", "/v1/applications/app-1"),  # HEAD is not GET unless configured
        ("GET", "/v1/applications/app-1/"),  # no trailing-slash leniency
        ("GET", "/v1/applications//"),
        ("GET", "/v1/applications/"),
        ("GET", "/v1/Applications/app-1"),  # literals are case-sensitive
        ("GET", "/v1/applications/.."),
        ("GET", "/v1/applications/."),
        ("GET", "/v1/applications/%2e%2e"),
        ("GET", "/v1/applications/%2E"),
        ("GET", "/v1/applications/a%2Fb"),
        ("GET", "/v1/applications/a%5Cb"),
        ("GET", "/v1/applications/a%00"),
        ("GET", "/v1/applications/%zz"),
        ("GET", "/v1/applications/%ff"),  # not UTF-8
        ("GET", "/v1/%61pplications/app-1"),  # literals compare raw
        ("GET", "v1/applications/app-1"),
        ("GET", "/v1/applications/" + "a" * 256),
        ("POST", "/v1/organizations/o-1/robot/r-1/track"),  # subject types are user or account
        ("GET", ""),
    ],
)
def test_e1_near_misses_match_no_route(method: str, path: str) -> None:
    assert ROUTES.match(method, path) is None


def test_e1_literal_segments_win_over_parameters() -> None:
    routes = table(
        APPLICATION,
        {"method": "GET", "path": "/v1/{organization_id}/{application_id}", "action": "application.delete"},
    )
    assert routes.match("GET", "/v1/applications/app-9").route.action == "application.get"
    other = routes.match("GET", "/v1/org-1/app-9")
    assert other.route.action == "application.delete"
    assert other.resource == Resource(organization_id="org-1", application_id="app-9")


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"method": "get", "path": "/x/{application_id}", "action": "application.get"}, "upper-case"),
        ({"method": "GET", "path": "x/{application_id}", "action": "application.get"}, "must start with '/'"),
        ({"method": "GET", "path": "/x/{app}", "action": "application.get"}, "unknown parameter {app}"),
        (
            {"method": "GET", "path": "/x/a{application_id}", "action": "application.get"},
            "one whole {parameter}",
        ),
        ({"method": "GET", "path": "/x//{application_id}", "action": "application.get"}, "not empty"),
        ({"method": "GET", "path": "/x/../{application_id}", "action": "application.get"}, "'..'"),
        ({"method": "GET", "path": "/x/.*/{application_id}", "action": "application.get"}, "literal"),
        (
            {"method": "GET", "path": "/{application_id}/{application_id}", "action": "application.get"},
            "more than once",
        ),
        ({"method": "POST", "path": "/u/{subject_id}", "action": "track"}, "a subject needs both"),
        ({"method": "GET", "path": "/x", "action": "application.get", "extra": "1"}, "Extra inputs"),
    ],
)
def test_e1_bad_routes_are_refused_with_clear_messages(route: dict[str, str], message: str) -> None:
    with pytest.raises(
        ValueError,
        match=message.replace("{", r"\{").replace("}", r"\}").replace(".", r"\.").replace("*", r"\*"),
    ):
        RouteSettings.model_validate(route)


def test_e1_routes_must_name_catalogue_actions_with_the_parameters_they_need() -> None:
    with pytest.raises(RouteError, match=r"'application\.nope' is not in the catalogue"):
        table({"method": "GET", "path": "/x/{application_id}", "action": "application.nope"})
    with pytest.raises(RouteError, match=r"event_type-level action 'event.send' needs \{event_type\}"):
        table({"method": "POST", "path": "/x/{application_id}", "action": "event.send"})


def test_e1_the_config_file_carries_routes_and_refuses_duplicates(tmp_path: Path) -> None:
    file = tmp_path / "watchword.toml"
    file.write_text(
        '[[routes]]\nmethod = "GET"\npath = "/a/{application_id}"\naction = "application.get"\n'
        '[[routes]]\nmethod = "GET"\npath = "/a/{organization_id}"\naction = "application.list"\n'
    )
    with pytest.raises(config.ConfigError, match="match the same requests"):
        config.load(file, environ={})
    file.write_text('[[routes]]\nmethod = "GET"\npath = "/a/{application_id}"\naction = "application.get"\n')
    assert len(config.load(file, environ={}).routes) == 1


def test_e1_the_internal_token_audience_cannot_be_watchwords_own(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="must differ from token_audience"):
        config.load(None, environ={"WATCHWORD_EXT_AUTHZ_INTERNAL_TOKEN_AUDIENCE": "urn:watchword:api"})


# -- properties ------------------------------------------------------------------------------------------

SAFE_VALUE = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=40
).filter(lambda value: value not in (".", "..") and not {"/", "\\", ";"} & set(value))


@given(application_id=SAFE_VALUE)
def test_e1_property_any_plain_value_round_trips_through_its_percent_encoding(application_id: str) -> None:
    match = ROUTES.match("GET", "/v1/applications/" + quote(application_id, safe=""))
    assert match is not None
    assert match.resource.application_id == application_id


@given(method=st.text(max_size=10), path=st.text(max_size=200))
def test_e1_property_matching_never_raises_and_only_yields_configured_actions(method: str, path: str) -> None:
    match = ROUTES.match(method, path)
    if match is not None:
        assert match.route.method == method
        assert match.route.action in {"event_type.create", "application.get", "application.list", "track"}


@pytest.mark.parametrize("segment", ["..;", ".;", "x;jsessionid=1", "..%3B", "a%3bb"])
def test_e1_a_captured_value_with_a_semicolon_is_refused(segment: str) -> None:
    """Upstreams that read path parameters (Tomcat, Spring) resolve "..;" as "..": another path than the
    one decided on. Ids never hold ';', so such a segment matches no route."""
    assert ROUTES.match("GET", f"/v1/applications/{segment}") is None


DOT = st.sampled_from([".", "%2e", "%2E"])
DOT_SEGMENT = st.lists(DOT, min_size=1, max_size=2).map("".join)
SEPARATOR = st.sampled_from(["%2f", "%2F", "%5c", "%5C", "%00", "%0a", "%7f"])
PLAIN = st.text(alphabet="abc.-_~", max_size=5)
WITH_SEPARATOR = st.tuples(PLAIN, SEPARATOR, PLAIN).map("".join)


@given(value=st.one_of(DOT_SEGMENT, WITH_SEPARATOR))
def test_e1_property_dot_segments_and_separators_never_match_a_parameter(value: str) -> None:
    assert ROUTES.match("GET", f"/v1/applications/{value}") is None
    assert ROUTES.match("POST", f"/v1/applications/{value}/event_types") is None


@given(method=st.sampled_from(["GET", "POST"]), path=st.text(alphabet="/abv1%.2e{}", max_size=40))
def test_e1_property_a_match_means_the_literals_are_exactly_there(method: str, path: str) -> None:
    match = ROUTES.match(method, path)
    if match is not None:
        template = match.route.template.split("/")
        segments = path.split("/")
        assert len(template) == len(segments)
        for expected, actual in zip(template, segments, strict=True):
            if not expected.startswith("{"):
                assert expected == actual


def test_e1_remembered_matches_answer_as_a_fresh_match_and_stay_bounded() -> None:
    routes = table(APPLICATION, LIST)
    for round_ in range(2):  # the second round answers from the memo
        assert routes.match("GET", "/v1/applications/app-1") == Match(
            routes.match("GET", "/v1/applications/app-2").route,  # type: ignore[union-attr]
            Resource(application_id="app-1"),
        ), round_
        assert routes.match("GET", "/v1/applications/app-1/") is None
        assert routes.match("POST", "/v1/applications/app-1") is None
    long_path = "/v1/applications/" + "a" * MAX_REMEMBERED_PATH
    assert routes.match("GET", long_path) is None  # longer than MAX_VALUE: no match, and not remembered
    for number in range(MAX_REMEMBERED_MATCHES + 10):
        match = routes.match("GET", f"/v1/applications/app-{number}")
        assert match is not None
        assert match.resource.application_id == f"app-{number}"
    assert len(routes._matches) <= MAX_REMEMBERED_MATCHES
    assert all(len(path) <= MAX_REMEMBERED_PATH for _, path in routes._matches)


def test_e1_a_route_may_be_in_dry_run(tmp_path: Path) -> None:
    dry = table({**APPLICATION, "dry_run": True}, LIST)
    assert dry.match("GET", "/v1/applications/app-1").route.dry_run  # type: ignore[union-attr]
    assert not dry.match("GET", "/v1/organizations/o-1/applications").route.dry_run  # type: ignore[union-attr]
    file = tmp_path / "watchword.toml"
    file.write_text('[[routes]]\nmethod = "GET"\npath = "/v1/applications/{application_id}"\n'
                    'action = "application.get"\ndry_run = true\n')  # fmt: skip
    assert config.load(file, environ={}).routes[0].dry_run
    assert config.load(None, environ={"WATCHWORD_EXT_AUTHZ_DRY_RUN": "true"}).ext_authz_dry_run


# ---- routes named by Envoy's context_extensions (gRPC mode) ----

NAMED = {"watchword.action": "application.get", "watchword.path": "/reports/{application_id}"}


def test_e1_extensions_name_a_route_for_any_method() -> None:
    named = ROUTES.for_extensions({**NAMED, "other.key": "ignored"})
    assert isinstance(named, RouteTable)
    for method in ("GET", "DELETE"):
        match = named.match(ANY_METHOD, "/reports/app-7")
        assert match is not None
        assert (match.route.action, match.resource) == ("application.get", Resource(application_id="app-7"))
        assert ROUTES.match(method, "/reports/app-7") is None  # the table itself is unchanged
    assert named.match(ANY_METHOD, "/reports/app-7/more") is None
    assert ROUTES.for_extensions({}) is None
    assert ROUTES.for_extensions({"tenant": "acme"}) is None  # no watchword.* key: the table decides


def test_e1_extension_routes_carry_subject_type_and_dry_run() -> None:
    named = ROUTES.for_extensions(
        {"watchword.action": "track", "watchword.path": "/t/{organization_id}/{subject_id}",
         "watchword.subject_type": "account", "watchword.dry_run": "true"}
    )  # fmt: skip
    assert isinstance(named, RouteTable)
    match = named.match(ANY_METHOD, "/t/o-1/a-1")
    assert match is not None
    assert match.route.dry_run
    assert match.resource.subject == Subject(type="account", id="a-1")


@pytest.mark.parametrize(
    ("extensions", "error", "message"),
    [
        ({**NAMED, "watchword.action": "nope"}, UnknownActionError, "action 'nope' is not in the catalogue"),
        ({**NAMED, "watchword.acton": "x"}, RouteError, "unknown key 'watchword.acton'"),
        ({"watchword.path": "/r/{application_id}"}, RouteError, "watchword.action is missing"),
        ({"watchword.action": "application.get"}, RouteError, "watchword.path: Field required"),
        ({**NAMED, "watchword.path": "/r/{x}"}, RouteError, "unknown parameter {x}"),
        ({**NAMED, "watchword.path": "/r"}, RouteError, "needs {application_id} in the path"),
        ({**NAMED, "watchword.subject_type": "robot"}, RouteError, "watchword.subject_type"),
        ({**NAMED, "watchword.dry_run": "yes"}, RouteError, 'must be "true" or "false"'),
    ],
)
def test_e1_bad_extensions_are_an_error_naming_the_problem(
    extensions: dict[str, str], error: type[RouteError], message: str
) -> None:
    named = ROUTES.for_extensions(extensions)
    assert type(named) is error
    assert message in str(named)
    assert str(named).startswith("context_extensions: ")


def test_e1_extensions_are_checked_once_and_remembered_within_a_bound() -> None:
    routes = table(APPLICATION)
    first = routes.for_extensions(NAMED)
    assert routes.for_extensions(dict(reversed(list(NAMED.items())))) is first  # order does not matter
    for number in range(MAX_REMEMBERED_EXTENSIONS + 5):
        routes.for_extensions({**NAMED, "watchword.path": f"/r{number}/{{application_id}}"})
    assert len(routes._extension_routes) <= MAX_REMEMBERED_EXTENSIONS


def test_e1_a_table_without_a_catalogue_refuses_extensions() -> None:
    named = RouteTable([]).for_extensions(NAMED)
    assert isinstance(named, RouteError)
