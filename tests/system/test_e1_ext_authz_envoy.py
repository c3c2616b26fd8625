"""E1 and E4 end to end: a real Envoy (a shipped example, ports filled in) with its ext_authz filter asking a
real Watchword, in front of an upstream that echoes the headers it received. Real HTTP requests carry every
credential kind (C1-C8) over every HTTP transport (T1-T5). Every test runs in both modes against the same
Watchword: gRPC (`clients/envoy/envoy.yaml`, E1) and HTTP (`clients/envoy/envoy-http.yaml`, E4)."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from watchword import reasons
from watchword.v1 import common_pb2

from support.envoy import (
    CLUSTERS,
    HTTP_MODE_SETTINGS,
    EchoUpstream,
    EnvoyProcess,
    example_config,
    write_config,
)
from support.jwks_server import JwksServer
from support.server import WatchwordProcess
from support.tamper import change_last_character
from support.tenants import API_KEY, APPLICATION_SECRET, STATIC_TOKEN, create_credential, make_tenant
from support.tokens import watchword_token

COOKIE = "ww_session"
# Envoy's ext_authz modes: gRPC (E1) and HTTP (E4); the ids put the catalogue id in each test's name.
MODES = pytest.mark.parametrize("mode", ["grpc", "http"], ids=["e1-grpc", "e4-http"])


@dataclass(frozen=True)
class World:
    mode: str
    envoy: EnvoyProcess
    watchword: WatchwordProcess
    org: str
    app: str
    other_app: str
    tokens: dict[str, str]
    ids: dict[str, str]


@pytest.fixture(scope="module")
def idp() -> Iterator[JwksServer]:
    with JwksServer(algorithms=("ES256",)) as server:
        yield server


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, idp: JwksServer
) -> Iterator[tuple[WatchwordProcess, EchoUpstream, Path]]:
    """One Watchword serving both front doors (gRPC Check and HTTP ext_authz), and the upstream."""
    directory = tmp_path_factory.mktemp("e1")
    settings = (
        f'auth_cookie_name = "{COOKIE}"\nquery_credentials_enabled = true\n'
        "ext_authz_remove_credential_headers = true\next_authz_internal_token_enabled = true\n"
        + HTTP_MODE_SETTINGS
        + f'[[issuers]]\nissuer = "{idp.issuer}"\naudiences = ["api"]\njwks_uri = "{idp.jwks_uri}"\n'
        'allow_insecure_http = true\norganization_claim = "org"\nroles_claim = "roles"\n'
    )
    config = write_config(directory, settings)
    with (
        WatchwordProcess(directory / "data", args=["--config", str(config)]) as watchword,
        EchoUpstream() as upstream,
    ):
        yield watchword, upstream, directory


def door(watchword: WatchwordProcess, mode: str) -> int:
    """The port Envoy asks in this mode: the gRPC port, or the ext_authz HTTP port."""
    return watchword.port if mode == "grpc" else watchword.ext_authz_http_port


@pytest.fixture(scope="module", params=["grpc", "http"], ids=["e1-grpc", "e4-http"])
def world(request: pytest.FixtureRequest, served, idp: JwksServer) -> Iterator[World]:
    watchword, upstream, directory = served
    mode = request.param
    config = example_config([door(watchword, mode)], upstream.port, mode)
    with EnvoyProcess(config, directory / f"envoy-{mode}") as envoy:
        envoy.wait_healthy(CLUSTERS[mode], 1)
        yield _populate(mode, envoy, watchword, idp)


def _populate(mode: str, envoy: EnvoyProcess, watchword: WatchwordProcess, idp: JwksServer) -> World:
    tenant = make_tenant(watchword, f"e1-{mode}")
    org = tenant.organization_id

    def create(kind: int, **fields: object):
        return create_credential(watchword, kind=kind, organization_id=org, name="e1", **fields)

    app_secret = create(APPLICATION_SECRET, application_id=tenant.application_id)
    static = create(STATIC_TOKEN, permissions=["object.publish"])
    api_key = create(
        API_KEY, permissions=["event.send"], basic_auth_enabled=True, event_types_allowed=["invoice.*"]
    )
    connector = create(common_pb2.CREDENTIAL_KIND_CONNECTOR, permissions=["track"])
    tenant_secret = create(common_pb2.CREDENTIAL_KIND_TENANT_SIGNING_SECRET, permissions=["object.publish"])
    now = int(time.time())
    tokens = {
        "C1": idp.sign(
            {"iss": idp.issuer, "aud": "api", "sub": "alice", "iat": now, "exp": now + 600, "org": org,
             "roles": ["viewer"]}
        ),
        "C2": app_secret.secret,
        "C3": static.secret,
        "C4": jwt.encode(
            {"sub": "svc", "iat": now, "exp": now + 600, "iss": "t", "jti": uuid.uuid4().hex,
             "permissions": ["object.publish"], "data_provider_patterns": ["truck-*"]},
            tenant_secret.secret.encode(),
            headers={"kid": tenant_secret.credential.id},
        ),
        "C5": api_key.secret,
        "C6": connector.secret,
        "C7": jwt.encode(
            {"iat": now, "exp": now + 600, "iss": connector.credential.id, "io.hull.asUser": {"id": "u-1"}},
            connector.secret.encode(),
        ),
        "C8": watchword_token(watchword.data_dir, org, scope="organization.get", exp=now + 600),
    }  # fmt: skip
    ids = {
        "C2": app_secret.credential.id,
        "C3": static.credential.id,
        "C5": api_key.credential.id,
        "C6": connector.credential.id,
        "C4": tenant_secret.credential.id,
    }
    return World(mode, envoy, watchword, org, tenant.application_id, tenant.other_application_id, tokens, ids)


def send(world: World, method: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.request(method, world.envoy.url(path), headers=headers or {}, timeout=10)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def upstream_saw(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.text
    return response.json()["headers"]


def assert_principal(seen: dict[str, list[str]], kind: str, org: str, credential_id: str = "") -> None:
    assert seen["x-watchword-credential-kind"] == [kind]
    assert seen["x-watchword-organization-id"] == [org]
    assert len(seen["x-watchword-principal-id"]) == 1
    if credential_id:
        assert seen["x-watchword-credential-id"] == [credential_id]


def test_e1_c2_application_secret_bearer_is_allowed_with_principal_headers_and_credential_removed(
    world,
) -> None:
    spoofed = {"x-watchword-principal-id": "admin", "x-watchword-credential-kind": "admin_token",
               "x-watchword-internal-token": "forged", "x-watchword-anything": "x"}  # fmt: skip
    response = send(
        world, "POST", f"/v1/applications/{world.app}/event_types", bearer(world.tokens["C2"]) | spoofed
    )
    seen = upstream_saw(response)
    assert_principal(seen, "application_secret", world.org, world.ids["C2"])
    assert seen["x-watchword-principal-id"] == [world.ids["C2"]]
    assert "authorization" not in seen  # ext_authz_remove_credential_headers
    assert "x-watchword-anything" not in seen
    # The internal token is Watchword's, for the principal, with the internal audience.
    (internal,) = seen["x-watchword-internal-token"]
    claims = jwt.decode(internal, options={"verify_signature": False})
    assert claims["sub"] == world.ids["C2"]
    assert claims["aud"] == "urn:watchword:internal"
    assert claims["exp"] - claims["iat"] <= 60


def test_e1_c2_on_another_application_is_403_with_the_decision_reason(world) -> None:
    response = send(
        world, "POST", f"/v1/applications/{world.other_app}/event_types", bearer(world.tokens["C2"])
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == "forbidden"
    assert body["reason"] == reasons.RESOURCE_NOT_IN_SCOPE
    assert body["message"]


def test_e1_missing_credential_is_401_with_www_authenticate(world) -> None:
    response = send(world, "GET", f"/v1/applications/{world.app}")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="watchword"'
    assert response.json() == {
        "error": "unauthenticated",
        "reason": reasons.CREDENTIAL_MISSING,
        "message": "the request carries no credential",
    }


def test_e1_unknown_and_malformed_credentials_are_401(world) -> None:
    forged = world.tokens["C2"][:-4] + "AAAA"
    assert send(world, "GET", f"/v1/applications/{world.app}", bearer(forged)).json()["reason"] in {
        reasons.CREDENTIAL_UNKNOWN,
        reasons.CREDENTIAL_MALFORMED,
    }
    response = send(world, "GET", f"/v1/applications/{world.app}", bearer("not a token at all"))
    assert response.status_code == 401
    assert response.json()["reason"] == reasons.CREDENTIAL_MALFORMED


def test_e1_unmatched_routes_are_403_route_not_configured(world) -> None:
    token = bearer(world.tokens["C2"])
    for method, path in [
        ("GET", "/v1/unknown"),
        ("DELETE", f"/v1/applications/{world.app}"),  # the path exists, not for this method
        ("HEAD", f"/v1/applications/{world.app}"),  # HEAD is not GET unless configured
        ("GET", f"/v1/applications/{world.app}/"),  # no trailing-slash leniency
    ]:
        response = send(world, method, path, token)
        assert response.status_code == 403, (method, path)
        if method != "HEAD":
            assert response.json()["reason"] == reasons.ROUTE_NOT_CONFIGURED


def raw_get(world: World, raw_path: str, headers: dict[str, str]) -> tuple[int, dict]:
    """A request whose path goes on the wire exactly as written (httpx would remove dot segments)."""
    connection = http.client.HTTPConnection("127.0.0.1", world.envoy.listeners["http"], timeout=10)
    try:
        connection.request("GET", raw_path, headers=headers)
        answer = connection.getresponse()
        body = answer.read()
        return answer.status, json.loads(body) if body.startswith(b"{") else {}
    finally:
        connection.close()


def test_e1_dot_segments_and_encoded_slashes_never_reach_another_route(world) -> None:
    token = bearer(world.tokens["C2"])
    # Envoy normalises the path before asking, and forwards the path that was authorized.
    status, body = raw_get(world, f"/v1/applications/{world.other_app}/../{world.app}", token)
    assert status == 200
    assert body["path"] == f"/v1/applications/{world.app}"
    status, body = raw_get(world, f"/v1/applications/{world.app}/../{world.other_app}", token)
    assert status == 403
    assert body["reason"] == reasons.RESOURCE_NOT_IN_SCOPE
    status, _ = raw_get(world, f"/v1/applications/x%2F..%2F{world.app}", token)
    assert status in (400, 403)
    status, body = raw_get(world, f"/v1/applications/{world.app}/%2e%2e/x", token)
    assert status in (400, 403)


def test_e1_c3_static_token_bearer_and_cookie_t3(world) -> None:
    path = f"/v1/organizations/{world.org}/objects/truck-1"
    seen = upstream_saw(send(world, "POST", path, bearer(world.tokens["C3"])))
    assert_principal(seen, "static_token", world.org, world.ids["C3"])
    cookies = {"cookie": f"theme=dark; {COOKIE}={world.tokens['C3']}"}
    seen = upstream_saw(send(world, "POST", path, cookies))
    assert_principal(seen, "static_token", world.org, world.ids["C3"])
    assert seen["cookie"] == ["theme=dark"]  # the credential cookie is gone, the others stay
    # A static token granted object.publish only: application.get is denied.
    denied = send(world, "GET", f"/v1/applications/{world.app}", bearer(world.tokens["C3"]))
    assert denied.status_code == 403
    assert denied.json()["reason"] == reasons.ACTION_NOT_GRANTED


def test_e1_c5_api_key_bearer_and_basic_t2(world) -> None:
    path = f"/v1/applications/{world.app}/events/invoice.paid"
    assert_principal(
        upstream_saw(send(world, "POST", path, bearer(world.tokens["C5"]))), "api_key", world.org
    )
    basic = base64.b64encode(f"{world.org}:{world.tokens['C5']}".encode()).decode()
    seen = upstream_saw(send(world, "POST", path, {"authorization": f"Basic {basic}"}))
    assert_principal(seen, "api_key", world.org, world.ids["C5"])
    assert "authorization" not in seen
    denied = send(
        world, "POST", f"/v1/applications/{world.app}/events/user.created", bearer(world.tokens["C5"])
    )
    assert denied.status_code == 403
    assert denied.json()["reason"] == reasons.EVENT_TYPE_NOT_ALLOWED


def test_e1_c6_connector_header_pair_t4_and_query_t5(world) -> None:
    path = f"/v1/organizations/{world.org}/users/u-1/track"
    pair = {"hull-app-id": world.ids["C6"], "hull-access-token": world.tokens["C6"]}
    seen = upstream_saw(send(world, "POST", path, pair))
    assert_principal(seen, "connector", world.org, world.ids["C6"])
    assert "hull-app-id" not in seen
    assert "hull-access-token" not in seen
    response = send(world, "POST", f"{path}?id={world.ids['C6']}&secret={world.tokens['C6']}&page=2")
    if world.mode == "http":
        # Envoy's HTTP mode cannot remove query parameters: the credential must not reach the upstream.
        assert response.status_code == 403
        assert response.json()["reason"] == reasons.QUERY_CREDENTIAL_NOT_REMOVABLE
        return
    assert_principal(upstream_saw(response), "connector", world.org, world.ids["C6"])
    assert response.json()["path"] == f"{path}?page=2"  # the query credentials are removed


def test_e1_c7_subject_jwt_on_its_own_subject_only(world) -> None:
    pair = {"hull-app-id": world.ids["C6"], "hull-access-token": world.tokens["C7"]}
    seen = upstream_saw(send(world, "POST", f"/v1/organizations/{world.org}/users/u-1/track", pair))
    assert_principal(seen, "subject_jwt", world.org)
    denied = send(world, "POST", f"/v1/organizations/{world.org}/users/u-2/track", pair)
    assert denied.status_code == 403
    assert denied.json()["reason"] == reasons.SUBJECT_MISMATCH


def test_e1_c4_tenant_jwt_within_its_data_provider_patterns(world) -> None:
    token = bearer(world.tokens["C4"])
    seen = upstream_saw(send(world, "POST", f"/v1/organizations/{world.org}/objects/truck-9", token))
    assert_principal(seen, "tenant_jwt", world.org)
    denied = send(world, "POST", f"/v1/organizations/{world.org}/objects/car-1", token)
    assert denied.status_code == 403
    assert denied.json()["reason"] == reasons.OBJECT_NOT_IN_PATTERNS


def test_e1_c1_external_idp_jwt_user_by_role(world) -> None:
    token = bearer(world.tokens["C1"])
    seen = upstream_saw(send(world, "GET", f"/v1/organizations/{world.org}", token))
    assert seen["x-watchword-credential-kind"] == ["external_jwt"]
    assert seen["x-watchword-principal-id"] == ["alice"]
    denied = send(world, "POST", f"/v1/applications/{world.app}/event_types", token)  # viewer cannot create
    assert denied.status_code == 403
    assert denied.json()["reason"] == reasons.ROLE_NOT_GRANTED


def test_e1_c8_watchword_token_and_bad_signature(world) -> None:
    token = world.tokens["C8"]
    seen = upstream_saw(send(world, "GET", f"/v1/organizations/{world.org}", bearer(token)))
    assert_principal(seen, "watchword_token", world.org)
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-6]}AAAAAA"
    response = send(world, "GET", f"/v1/organizations/{world.org}", bearer(tampered))
    assert response.status_code == 401
    assert response.json()["reason"] == reasons.TOKEN_SIGNATURE_INVALID
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["www-authenticate"] == 'Bearer realm="watchword", error="invalid_token"'


def test_e1_refused_tokens_get_invalid_token_and_basic_gets_a_basic_challenge(world) -> None:
    """Through Envoy (RFC 6750 §3.1, RFC 7617): expired and bad tokens carry `error="invalid_token"`; a
    refused Basic credential is challenged with Basic, in whatever case the client spelled the scheme."""
    path = f"/v1/organizations/{world.org}"
    expired = watchword_token(world.watchword.data_dir, world.org, exp=int(time.time()) - 600)
    response = send(world, "GET", path, bearer(expired))
    assert (response.status_code, response.json()["reason"]) == (401, reasons.TOKEN_EXPIRED)
    assert response.headers["www-authenticate"] == 'Bearer realm="watchword", error="invalid_token"'
    wrong = base64.b64encode(f"{world.org}:{change_last_character(world.tokens['C5'])}".encode()).decode()
    for scheme in ("Basic", "BASIC"):
        response = send(
            world,
            "POST",
            f"/v1/applications/{world.app}/events/invoice.paid",
            {"authorization": f"{scheme} {wrong}"},
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Basic realm="watchword"'


def test_e1_two_credentials_are_refused_as_ambiguous(world) -> None:
    headers = bearer(world.tokens["C2"]) | {"cookie": f"{COOKIE}={world.tokens['C3']}"}
    response = send(world, "GET", f"/v1/applications/{world.app}", headers)
    assert response.status_code == 401
    assert response.json()["reason"] == reasons.CREDENTIAL_AMBIGUOUS


def test_e1_huge_and_odd_inputs_get_clean_answers(world) -> None:
    token = bearer(world.tokens["C2"])
    long_id = "a" * 4000
    assert send(world, "GET", f"/v1/applications/{long_id}", token).status_code == 403
    assert send(world, "GET", f"/v1/applications/{world.app}", bearer("x" * 20000)).status_code == 401
    assert send(world, "GET", "/v1/applications/%ff%fe", token).status_code in (400, 403)
    assert (
        send(world, "GET", f"/v1/applications/{world.app}", {"authorization": "Digest abc"}).status_code
        == 401
    )


@MODES
def test_e1_watchword_down_fails_closed_with_503(tmp_path: Path, mode: str) -> None:
    config = write_config(tmp_path, HTTP_MODE_SETTINGS)
    with (
        WatchwordProcess(tmp_path / "data", args=["--config", str(config)]) as watchword,
        EchoUpstream() as upstream,
        EnvoyProcess(
            example_config([door(watchword, mode)], upstream.port, mode), tmp_path / "envoy"
        ) as envoy,
    ):
        tenant = make_tenant(watchword, "down")
        secret = create_credential(
            watchword, kind=APPLICATION_SECRET, organization_id=tenant.organization_id,
            application_id=tenant.application_id, name="s",
        ).secret  # fmt: skip
        url = envoy.url(f"/v1/applications/{tenant.application_id}")
        envoy.wait_healthy(CLUSTERS[mode], 1)
        assert httpx.get(url, headers=bearer(secret), timeout=10).status_code == 200
        watchword.stop()
        response = httpx.get(url, headers=bearer(secret), timeout=10)
        assert response.status_code == 503
        assert response.status_code != 200


def test_e4_http_mode_asks_another_replica_when_one_is_down(served) -> None:
    """The HTTP example's retry policy: a check that finds a replica down goes to another one."""
    watchword, upstream, directory = served
    tenant = make_tenant(watchword, "e4-retry")
    secret = create_credential(
        watchword, kind=APPLICATION_SECRET, organization_id=tenant.organization_id,
        application_id=tenant.application_id, name="retry",
    ).secret  # fmt: skip
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]  # closed again before Envoy starts: nothing listens there
    config = example_config([door(watchword, "http"), dead], upstream.port, "http")
    with EnvoyProcess(config, directory / "envoy-dead") as envoy:
        url = envoy.url(f"/v1/applications/{tenant.application_id}")
        statuses = [httpx.get(url, headers=bearer(secret), timeout=10).status_code for _ in range(10)]
    assert statuses == [200] * 10


def test_e4_http_mode_audits_each_check_under_envoys_request_id(served, tmp_path: Path) -> None:
    """Envoy's x-request-id reaches Watchword as a header of the check (in gRPC mode the call has its own),
    names the audit record, and the client sees it on a refusal."""
    watchword, upstream, _directory = served
    config = example_config([door(watchword, "http")], upstream.port, "http")
    with EnvoyProcess(config, tmp_path / "envoy") as envoy:
        response = httpx.get(envoy.url("/v1/applications/app-1"), timeout=10)
    assert response.status_code == 401
    record = f'"request_id":"{response.headers["x-request-id"]}","rpc":"ext_authz http"'
    deadline = time.monotonic() + 5  # the audit log is written off the event loop
    while record not in "".join(watchword.output) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert record in "".join(watchword.output)
