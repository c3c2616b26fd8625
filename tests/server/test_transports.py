"""Transports T1-T6: where a credential may arrive, ambiguity, and C5 over Basic, C6 over T4/T5."""

from __future__ import annotations

import base64
from urllib.parse import quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchword import extract, reasons
from watchword.domain import HttpParts, PresentedCredential, Refusal, Transport
from watchword.v1 import auth_pb2, common_pb2

from support.server import WatchwordProcess
from support.tenants import API_KEY, APPLICATION_SECRET, STATIC_TOKEN, create_credential, make_tenant

ALL_ON = extract.TransportSettings(cookie_name="ww_session", query_enabled=True)
DEFAULTS = extract.TransportSettings()


def parts(*headers: tuple[str, str], query: str = "", cookies: tuple[tuple[str, str], ...] = ()) -> HttpParts:
    return HttpParts(method="GET", path="/", headers=headers, query=query, cookies=cookies)


def basic(user: str, password: str) -> tuple[str, str]:
    return ("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


# ---- extraction, unit ----


def test_t1_bearer_is_read_case_insensitively() -> None:
    found = extract.from_http(parts(("AUTHORIZATION", "bearer abc.def")), DEFAULTS)
    assert found == PresentedCredential("abc.def", Transport.BEARER)


def test_t2_basic_yields_id_and_secret_verbatim() -> None:
    found = extract.from_http(parts(basic("a919b437-c958", "s3cr%2Bet")), DEFAULTS)
    assert found == PresentedCredential("s3cr%2Bet", Transport.BASIC, "a919b437-c958")


def test_t3_cookie_only_when_a_name_is_configured() -> None:
    request = parts(("Cookie", "theme=dark; ww_session=tok123"))
    assert extract.from_http(request, ALL_ON) == PresentedCredential("tok123", Transport.COOKIE)
    refused = extract.from_http(request, DEFAULTS)
    assert isinstance(refused, Refusal)
    assert refused.reason == reasons.CREDENTIAL_MISSING
    assert extract.from_http(parts(cookies=(("ww_session", "tok9"),)), ALL_ON) == PresentedCredential(
        "tok9", Transport.COOKIE
    )


def test_t4_header_pair_carries_the_client_id() -> None:
    found = extract.from_http(parts(("hull-app-id", "conn1"), ("Hull-Access-Token", "sec")), DEFAULTS)
    assert found == PresentedCredential("sec", Transport.HEADER_PAIR, "conn1")


def test_t5_query_only_when_enabled() -> None:
    request = parts(query="id=conn1&secret=sec&page=2")
    assert extract.from_http(request, ALL_ON) == PresentedCredential("sec", Transport.QUERY, "conn1")
    refused = extract.from_http(request, DEFAULTS)
    assert isinstance(refused, Refusal)
    assert refused.reason == reasons.CREDENTIAL_MISSING


def test_two_different_credentials_are_ambiguous_whatever_the_transports() -> None:
    cases = [
        parts(("Authorization", "Bearer a"), ("Authorization", "Bearer b")),
        parts(("Authorization", "Bearer a"), ("Cookie", "ww_session=b")),
        parts(("Authorization", "Bearer a"), ("Hull-Access-Token", "b")),
        parts(("Authorization", "Bearer a"), query="id=x&secret=b"),
        parts(("Hull-App-Id", "x"), ("Hull-App-Id", "y"), ("Hull-Access-Token", "b")),
        parts(("Authorization", "Bearer a"), ("Authorization", "Basic !!")),
        parts(("Cookie", "ww_session=a"), ("Cookie", "ww_session=b")),
    ]
    for request in cases:
        refused = extract.from_http(request, ALL_ON)
        assert isinstance(refused, Refusal), request
        assert refused.reason == reasons.CREDENTIAL_AMBIGUOUS, request


def test_the_same_credential_twice_is_not_an_error() -> None:
    request = parts(
        ("Authorization", "Bearer tok"), ("authorization", "Bearer tok"), ("Cookie", "ww_session=tok")
    )
    assert extract.from_http(request, ALL_ON) == PresentedCredential("tok", Transport.BEARER)


def test_t6_bare_token() -> None:
    assert extract.from_bare("tok", "", 8192) == PresentedCredential("tok", Transport.BARE)
    # Issue #12: surrounding whitespace used to be stripped; a credential is now compared as sent.
    refused = extract.from_bare(" tok ", "", 8192)
    assert isinstance(refused, Refusal)
    assert refused.reason == reasons.CREDENTIAL_MALFORMED
    assert "whitespace" in refused.message


_header_names = st.sampled_from(
    [
        "Authorization",
        "authorization",
        "Cookie",
        "Hull-App-Id",
        "Hull-Access-Token",
        "X-Other",
        "Content-Type",
    ]
)
_values = st.one_of(
    st.text(max_size=80),
    st.builds(lambda s: "Bearer " + s, st.text(max_size=60)),
    st.builds(lambda s: "Basic " + s, st.text(max_size=60)),
    st.builds(lambda b: "Basic " + base64.b64encode(b).decode(), st.binary(max_size=60)),
)


@settings(max_examples=400, deadline=None)
@given(
    headers=st.lists(st.tuples(_header_names, _values), max_size=6),
    query=st.text(max_size=80),
    cookies=st.lists(st.tuples(st.sampled_from(["ww_session", "x"]), st.text(max_size=30)), max_size=3),
)
def test_t1_t5_random_requests_never_crash_and_never_invent_a_credential(
    headers: list[tuple[str, str]], query: str, cookies: list[tuple[str, str]]
) -> None:
    request = HttpParts(method="GET", path="/", headers=tuple(headers), query=query, cookies=tuple(cookies))
    for configuration in (ALL_ON, DEFAULTS):
        found = extract.from_http(request, configuration)
        assert isinstance(found, PresentedCredential | Refusal)
        if isinstance(found, Refusal):
            assert found.reason in reasons.REASONS
            continue
        # Whatever is extracted was really sent somewhere in the request.
        haystack = " ".join([query, *(v for _, v in headers), *(v for _, v in cookies)])
        assert found.token in haystack or found.transport is Transport.BASIC


# ---- through the real server ----


@pytest.fixture(scope="module")
def transports_server(tmp_path_factory: pytest.TempPathFactory):
    env = {"WATCHWORD_AUTH_COOKIE_NAME": "ww_session", "WATCHWORD_QUERY_CREDENTIALS_ENABLED": "true"}
    with WatchwordProcess(tmp_path_factory.mktemp("transports") / "data", env=env) as process:
        yield process


def authenticate(
    server: WatchwordProcess, *headers: tuple[str, str], query: str = ""
) -> auth_pb2.AuthenticateResponse:
    http = common_pb2.HttpRequest(
        method="POST",
        path="/",
        headers=[common_pb2.KeyValue(name=n, value=v) for n, v in headers],
        query=query,
    )
    request = auth_pb2.AuthenticateRequest(credential=common_pb2.CredentialSource(http=http))
    return server.auth().Authenticate(request, timeout=10)


@pytest.fixture(scope="module")
def world(transports_server: WatchwordProcess) -> dict:
    server = transports_server
    tenant = make_tenant(server, "transports")
    return {
        "tenant": tenant,
        "basic_key": create_credential(
            server, kind=API_KEY, organization_id=tenant.organization_id, name="b", basic_auth_enabled=True
        ),
        "plain_key": create_credential(
            server, kind=API_KEY, organization_id=tenant.organization_id, name="p"
        ),
        "connector": create_credential(
            server,
            kind=common_pb2.CREDENTIAL_KIND_CONNECTOR,
            organization_id=tenant.organization_id,
            name="hull",
            permissions=["track", "traits", "alias"],
        ),
        "static": create_credential(
            server, kind=STATIC_TOKEN, organization_id=tenant.organization_id, name="s"
        ),
        "app_secret": create_credential(
            server,
            kind=APPLICATION_SECRET,
            organization_id=tenant.organization_id,
            application_id=tenant.application_id,
            name="a",
        ),
    }


def test_c5_t2_api_key_over_basic_with_the_workspace_guid(transports_server, world) -> None:
    key, org = world["basic_key"], world["tenant"].organization_id
    principal = authenticate(transports_server, basic(org, key.secret)).principal
    assert principal.kind == common_pb2.CREDENTIAL_KIND_API_KEY
    assert principal.transport == common_pb2.TRANSPORT_BASIC
    assert principal.organization_id == org


def test_c5_t2_basic_refused_where_not_enabled_on_the_key(transports_server, world) -> None:
    key, org = world["plain_key"], world["tenant"].organization_id
    refusal = authenticate(transports_server, basic(org, key.secret)).refusal
    assert refusal.reason == reasons.BASIC_NOT_ENABLED
    # The same key as Bearer still works.
    assert authenticate(transports_server, ("Authorization", f"Bearer {key.secret}")).HasField("principal")


def test_c5_t2_basic_with_another_workspace_guid_is_unknown(transports_server, world) -> None:
    other = make_tenant(transports_server, "not-theirs")
    refusal = authenticate(transports_server, basic(other.organization_id, world["basic_key"].secret)).refusal
    assert refusal.reason == reasons.CREDENTIAL_UNKNOWN


def test_c6_t4_connector_id_and_secret_in_the_header_pair(transports_server, world) -> None:
    connector = world["connector"]
    response = authenticate(
        transports_server, ("Hull-App-Id", connector.credential.id), ("Hull-Access-Token", connector.secret)
    )
    principal = response.principal
    assert principal.kind == common_pb2.CREDENTIAL_KIND_CONNECTOR
    assert principal.transport == common_pb2.TRANSPORT_HEADER_PAIR
    assert not principal.discouraged_transport
    assert sorted(principal.permissions) == ["alias", "track", "traits"]


def test_c6_t4_connector_secret_with_a_wrong_or_missing_id_is_refused(transports_server, world) -> None:
    connector, other = world["connector"], world["plain_key"]
    wrong = authenticate(
        transports_server, ("Hull-App-Id", other.credential.id), ("Hull-Access-Token", connector.secret)
    )
    assert wrong.refusal.reason == reasons.CREDENTIAL_UNKNOWN
    missing = authenticate(transports_server, ("Hull-Access-Token", connector.secret))
    assert missing.refusal.reason == reasons.CREDENTIAL_UNKNOWN


def test_c6_t5_query_parameters_work_only_when_enabled_and_are_flagged(
    transports_server, world, server
) -> None:
    connector = world["connector"]
    query = f"id={connector.credential.id}&secret={quote_plus(connector.secret)}"
    principal = authenticate(transports_server, query=query).principal
    assert principal.transport == common_pb2.TRANSPORT_QUERY
    assert principal.discouraged_transport
    # The default server does not read the query at all.
    assert authenticate(server, query=query).refusal.reason == reasons.CREDENTIAL_MISSING


def test_c3_t3_static_token_in_the_configured_cookie(transports_server, world) -> None:
    static = world["static"]
    principal = authenticate(transports_server, ("Cookie", f"lang=en; ww_session={static.secret}")).principal
    assert principal.kind == common_pb2.CREDENTIAL_KIND_STATIC_TOKEN
    assert principal.transport == common_pb2.TRANSPORT_COOKIE


def test_each_kind_is_refused_over_transports_it_does_not_use(transports_server, world) -> None:
    cases = [
        (("Cookie", f"ww_session={world['app_secret'].secret}"),),
        (("Authorization", f"Bearer {world['connector'].secret}"),),
        (basic(world["tenant"].organization_id, world["static"].secret),),
        (("Hull-App-Id", world["plain_key"].credential.id), ("Hull-Access-Token", world["plain_key"].secret)),
    ]
    for headers in cases:
        assert authenticate(transports_server, *headers).refusal.reason == reasons.TRANSPORT_NOT_ALLOWED, (
            headers
        )


@given(
    st.one_of(
        st.text(max_size=40),
        st.builds(
            lambda s, t: f"{s} {t}", st.sampled_from(["Bearer", "basic", "Digest"]), st.text(max_size=40)
        ),
    ),
    st.sampled_from([16, 8192]),
)
def test_t1_a_remembered_authorization_parse_answers_as_a_fresh_one(value: str, max_bytes: int) -> None:
    settings = extract.TransportSettings(max_token_bytes=max_bytes)
    fresh = extract._from_authorization(value, max_bytes)
    for _ in range(2):  # the second answer comes from the memo
        assert extract.from_http(parts(("authorization", value)), settings) == fresh
    longer = "Bearer " + "a" * extract.MAX_REMEMBERED_AUTHORIZATION  # parsed afresh, not remembered
    assert extract.from_http(parts(("authorization", longer)), settings) == extract._from_authorization(
        longer, max_bytes
    )
