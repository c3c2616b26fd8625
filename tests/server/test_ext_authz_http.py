"""E4: the HTTP ext_authz front door in process: the door on its listener (ext_authz/http_server.py) on a
loopback port, asked by httpx, over a real pipeline on a real SQLite store; the same answers as the gRPC
adapter from the one decision core, the path prefix, the overload bound, faults, the audit record and the
metrics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from envoy.service.auth.v3 import external_auth_pb2
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from watchword import reasons
from watchword.api.ext_authz import ExtAuthzServicer
from watchword.api.overload import OverloadInterceptor
from watchword.crypto.master_key import MasterKey, generate
from watchword.decide.catalogue import Catalogue
from watchword.ext_authz.core import DECISION_ID, ExtAuthzCore, ExtAuthzSettings
from watchword.ext_authz.http import RPC, HttpFrontDoor, decode_path, strip_prefix
from watchword.ext_authz.http_server import CheckListener
from watchword.extract import TransportSettings
from watchword.listeners import ENVOY_MAX_HEADER_BYTES, tcp_listener
from watchword.observe.audit import AuditLog
from watchword.observe.decisions import Recorder
from watchword.observe.metrics import Metrics
from watchword.pipeline import Pipeline
from watchword.routes import RouteSettings, RouteTable
from watchword.store.repository import Store

from support.api_keys import store_with_api_keys

MASTER = MasterKey.from_text(generate(), "test")
CATALOGUE = Catalogue.load(None)
PREFIX = "/ext_authz"
LIST = {
    "method": "GET",
    "path": "/v1/organizations/{organization_id}/applications",
    "action": "application.list",
}
GET = {"method": "GET", "path": "/v1/applications/{application_id}", "action": "application.get"}
ROUTES = RouteTable.build([RouteSettings.model_validate(r) for r in (LIST, GET)], CATALOGUE)
TRANSPORTS = TransportSettings(cookie_name="ww", query_enabled=True)


@dataclass
class Door:
    client: httpx.AsyncClient
    app: HttpFrontDoor
    core: ExtAuthzCore
    store: Store
    overload: OverloadInterceptor
    metrics: Metrics
    audit_file: Path
    audit: AuditLog
    path: str  # the list route of the store's organization
    secret: str


@pytest.fixture
async def door(tmp_path: Path) -> AsyncIterator[Door]:
    store, organization_id, secrets = await store_with_api_keys(tmp_path, MASTER, count=1)
    pipeline = Pipeline(store, CATALOGUE, TRANSPORTS, MASTER, cache_ttl=30.0)
    metrics = Metrics()
    audit = AuditLog(tmp_path / "audit.log")
    audit.start()
    core = ExtAuthzCore(pipeline, ROUTES, TRANSPORTS, ExtAuthzSettings(True), Recorder(metrics, audit))
    overload = OverloadInterceptor(4)
    app = HttpFrontDoor(core, PREFIX, overload, metrics)
    listener = CheckListener(app, 16, 30.0, ENVOY_MAX_HEADER_BYTES)
    await listener.start(tcp_listener("127.0.0.1", 0))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listener.port}") as client:
        path = f"/v1/organizations/{organization_id}/applications"
        door = Door(
            client, app, core, store, overload, metrics, tmp_path / "audit.log", audit, path, secrets[0]
        )
        yield door
    await listener.stop(1.0)
    door.audit.close()  # closing twice is harmless
    await store.close()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_e4_an_allow_is_200_with_principal_headers_and_headers_for_envoy_to_remove(door: Door) -> None:
    headers = bearer(door.secret) | {
        "x-watchword-principal-id": "admin",
        "x-watchword-x": "1",
        "x-request-id": "r-1",
    }
    answer = await door.client.get(PREFIX + door.path, headers=headers)
    assert answer.status_code == 200
    assert answer.content == b""
    assert answer.headers["content-length"] == "0"
    assert answer.headers["x-watchword-credential-kind"] == "api_key"
    assert answer.headers["x-watchword-principal-id"] != "admin"
    removed = {name.strip() for name in answer.headers["x-envoy-auth-headers-to-remove"].split(",")}
    assert {"authorization", "x-watchword-x", "x-watchword-internal-token"} <= removed
    assert "x-watchword-principal-id" not in removed  # overwritten, not removed
    assert answer.headers["x-request-id"] == "r-1"


async def test_e4_a_missing_credential_is_401_with_json_and_a_challenge(door: Door) -> None:
    answer = await door.client.get(PREFIX + door.path)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["www-authenticate"] == 'Bearer realm="watchword"'
    assert answer.json()["reason"] == reasons.CREDENTIAL_MISSING
    assert int(answer.headers["content-length"]) == len(answer.content)


def grpc_check(method: str, path: str, headers: dict[str, str]) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path = method, path
    http.headers.update(headers)
    return request


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "{list}", {"authorization": "Bearer {secret}"}),
        ("GET", "{list}", {"authorization": "Bearer {secret}", "x-watchword-a": "1", "cookie": "a=1; b=2"}),
        ("GET", "{list}", {}),
        ("GET", "{list}", {"authorization": "Bearer wwak_nope"}),
        ("GET", "{list}/", {"authorization": "Bearer {secret}"}),
        ("POST", "{list}", {"authorization": "Bearer {secret}"}),
        ("GET", "/v1/applications/%2e%2e", {"authorization": "Bearer {secret}"}),
        ("GET", "/v1/applications/app-1", {"authorization": "Bearer {secret}"}),
        ("GET", "/v1/organizations/other/applications", {"authorization": "Basic {secret}"}),
    ],
)
async def test_e4_the_http_and_grpc_doors_give_the_same_answers(
    door: Door, method: str, path: str, headers: dict[str, str]
) -> None:
    path = path.format(list=door.path)
    headers = {name: value.format(secret=door.secret) for name, value in headers.items()}
    over_http = await door.client.request(method, PREFIX + path, headers=headers)
    over_grpc = await ExtAuthzServicer(door.core).Check(grpc_check(method, path, headers), None)  # type: ignore[arg-type]
    # Each answer has its own decision id (both doors give one, in the header and, gRPC, the metadata).
    http_headers = dict(over_http.headers)
    http_id = http_headers.pop(DECISION_ID)
    assert over_grpc.dynamic_metadata.fields[DECISION_ID].string_value != http_id
    if over_grpc.HasField("denied_response"):
        denied = over_grpc.denied_response
        assert over_http.status_code == denied.status.code
        assert over_http.content.decode() == denied.body
        grpc_headers = {option.header.key: option.header.value for option in denied.headers}
        assert grpc_headers.pop(DECISION_ID) == over_grpc.dynamic_metadata.fields[DECISION_ID].string_value
        assert grpc_headers.items() <= http_headers.items()
        return
    assert over_http.status_code == 200
    ok = over_grpc.ok_response
    set_by_grpc = {option.header.key: option.header.value for option in ok.headers}
    assert set_by_grpc.pop(DECISION_ID) == over_grpc.dynamic_metadata.fields[DECISION_ID].string_value
    assert set_by_grpc == {name: value for name, value in http_headers.items() if name in set_by_grpc}
    removed = over_http.headers.get("x-envoy-auth-headers-to-remove", "")
    assert sorted(ok.headers_to_remove) == sorted(name.strip() for name in removed.split(",") if name)


async def test_e4_a_check_without_the_path_prefix_is_denied(door: Door) -> None:
    for path in (door.path, f"{PREFIX}x{door.path}", f"/other{PREFIX}{door.path}", PREFIX):
        answer = await door.client.get(path, headers=bearer(door.secret))
        assert answer.status_code == 403, path
        assert answer.json()["reason"] == reasons.PATH_PREFIX_MISSING


async def test_e4_a_query_credential_that_must_be_removed_is_refused_before_it_is_read(door: Door) -> None:
    answer = await door.client.get(f"{PREFIX}{door.path}?page=1&secret={door.secret}")
    assert answer.status_code == 403
    assert answer.json()["reason"] == reasons.QUERY_CREDENTIAL_NOT_REMOVABLE
    other = await door.client.get(f"{PREFIX}{door.path}?page=1", headers=bearer(door.secret))
    assert other.status_code == 200


async def test_e4_overload_and_drain_are_503_with_their_reason(door: Door) -> None:
    door.overload.in_flight = door.overload.max_concurrent  # every slot taken by other checks
    answer = await door.client.get(PREFIX + door.path, headers=bearer(door.secret))
    assert (answer.status_code, answer.json()["reason"]) == (503, "overloaded")
    assert door.overload.refused == 1
    door.overload.in_flight = 0
    door.overload.drain()
    answer = await door.client.get(PREFIX + door.path, headers=bearer(door.secret))
    assert (answer.status_code, answer.json()["reason"]) == (503, "shutting_down")


async def test_e4_a_check_in_flight_counts_against_the_replica_bound(door: Door) -> None:
    seen: list[int] = []
    original = door.core.check

    async def observed(*args: Any, **kwargs: Any) -> Any:
        seen.append(door.overload.in_flight)
        return await original(*args, **kwargs)

    door.core.check = observed  # type: ignore[method-assign]
    assert (await door.client.get(PREFIX + door.path, headers=bearer(door.secret))).status_code == 200
    assert seen == [1]
    assert door.overload.in_flight == 0


async def test_e4_a_store_fault_is_503_json_never_an_allow(door: Door) -> None:
    async with door.store.engine.begin() as connection:
        await connection.execute(text("DROP TABLE credentials"))
    answer = await door.client.get(PREFIX + door.path, headers=bearer(door.secret))
    assert answer.status_code == 503
    assert answer.json()["error"] == "unavailable"
    assert answer.json()["reason"] == reasons.AUTHORIZATION_UNAVAILABLE


async def test_e4_a_path_that_is_not_ascii_matches_no_route(door: Door) -> None:
    target = f"{PREFIX}/v1/applications/caf\xe9".encode("latin-1")
    headers = [("authorization", f"Bearer {door.secret}")]
    status, _headers, body = await door.app("GET", target, headers, "127.0.0.1:1")
    assert status == 403
    assert json.loads(body)["reason"] == reasons.ROUTE_NOT_CONFIGURED


async def test_e4_the_decision_is_audited_and_counted_with_its_request_id(door: Door) -> None:
    headers = bearer(door.secret) | {"x-request-id": "envoy-42"}
    assert (await door.client.get(PREFIX + door.path, headers=headers)).status_code == 200
    door.audit.close()
    records = [json.loads(line) for line in door.audit_file.read_text().splitlines()]
    (record,) = [r for r in records if r["request_id"] == "envoy-42"]
    assert (record["rpc"], record["result"], record["what"]["action"]) == (RPC, "allow", "application.list")
    assert door.metrics.decisions[(RPC, "api_key", "allow", "allowed")] == 1


SEGMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789._~-", min_size=1, max_size=8)
PREFIXES = st.lists(SEGMENT, max_size=3).map(lambda parts: "".join(f"/{part}" for part in parts))
PATHS = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)


@given(PREFIXES, PATHS)
def test_e4_property_the_prefix_is_removed_exactly_and_required(prefix: str, path: str) -> None:
    stripped = strip_prefix((prefix + path).encode(), prefix.encode())
    if path.startswith("/") or not prefix:
        assert stripped == path.encode()
    else:
        assert stripped is None
    # Nothing but `prefix/...` passes: a path that lacks the prefix is never taken for one that has it.
    bare = strip_prefix(path.encode(), prefix.encode())
    if bare is not None:
        assert prefix + bare.decode() == path
        assert not prefix or bare.startswith(b"/")


@given(PREFIXES, PATHS, st.sampled_from(["GET", "POST", "HEAD"]))
def test_e4_property_the_path_is_matched_exactly_as_in_grpc_mode(prefix: str, path: str, method: str) -> None:
    path = "/" + path
    stripped = strip_prefix((prefix + path).encode(), prefix.encode())
    assert stripped is not None
    assert ROUTES.match(method, decode_path(stripped)) == ROUTES.match(method, path)
