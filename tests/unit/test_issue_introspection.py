"""I7's cores without a server (`issue/inspection.py`, `introspection.py`, `revocation.py`): what an
answer says of a rotated secret, which tokens revocation recognises by shape as never its own, the audit
record of each call, and a fault answered as a clean, audited 503. The store (SQLite), the pipeline and
the audit log are the real ones; the HTTP door runs in process through httpx's ASGITransport.
"""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.exc import OperationalError

from watchword import reasons, secret_format
from watchword.decide.catalogue import Catalogue
from watchword.domain import ClientAuthentication, CredentialKind
from watchword.http_api import INTROSPECT_PATH, REVOKE_PATH, build_app
from watchword.identify import minting
from watchword.invalidation import InvalidationBus
from watchword.issue.grants import Requested
from watchword.issue.inspection import TokenQuestion
from watchword.issue.introspection import IntrospectionEndpoint
from watchword.issue.oauth import OAuthError
from watchword.issue.revocation import RevocationEndpoint, unsupported_by_shape
from watchword.issue.tokens import IssuedToken
from watchword.observe import call
from watchword.observe.audit import AuditLog
from watchword.observe.decisions import Recorder
from watchword.observe.metrics import Metrics
from watchword.v1 import common_pb2

from support.issuing import ISSUER, Issuing, issuing
from support.observe import audit_records

API_KEY = common_pb2.CREDENTIAL_KIND_API_KEY
OAUTH_CLIENT = common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT
POST = 2
GRANTS = ["token.introspect", "token.revoke"]
STORE_DOWN = OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


class Observed:
    """A real Recorder over real metrics and an audit log written to memory."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.audit = AuditLog(stream=self.stream)
        self.recorder = Recorder(Metrics(), self.audit)
        self.audit.start()

    def records(self) -> list[dict[str, Any]]:
        self.audit.close()  # writes what is queued
        return audit_records(self.stream.getvalue().splitlines())


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Issuing]:
    built = await issuing(tmp_path)
    # As a replica: its own store changes drop its caches' entries (a revocation, a deactivation).
    InvalidationBus(built.pipeline.caches).attach(built.store)
    yield built
    await built.store.close()


@pytest.fixture
def observed() -> Iterator[Observed]:
    watched = Observed()
    yield watched
    watched.audit.close()


async def client(world: Issuing) -> ClientAuthentication:
    client_id, secret = await world.register(kind=OAUTH_CLIENT, permissions=GRANTS, client_auth_method=POST)
    return ClientAuthentication(client_id=client_id, client_secret=secret)


async def in_call(coroutine: Any, rpc: str = "POST /oauth/introspect") -> Any:
    """As the HTTP door calls a core: inside a call, whose rpc the record names."""
    entered = call.current.set(call.CallInfo("req-1", rpc, peer_address="127.0.0.1:5000"))
    try:
        return await coroutine
    finally:
        call.current.reset(entered)


async def test_i7_a_previous_secret_in_its_overlap_is_active_until_the_overlap_ends(world) -> None:
    key_id, old_secret = await world.register(kind=API_KEY, permissions=["event.send"])
    row = await world.store.get_credential(key_id)
    assert row is not None
    rotated = minting.rotated_secret(row, world.master)
    overlap_ends = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    await world.store.rotate_credential(key_id, rotated.hash, rotated.sealed, overlap_ends)
    endpoint = IntrospectionEndpoint(world.pipeline)
    caller = await client(world)
    old = await endpoint.answer(TokenQuestion(caller, old_secret))
    new = await endpoint.answer(TokenQuestion(caller, rotated.value))
    assert (old["active"], old["exp"], old["credential_id"]) == (True, int(overlap_ends.timestamp()), key_id)
    assert "iat" not in old  # when the previous secret was issued is not recorded
    stored = await world.store.get_credential(key_id)
    assert stored is not None
    assert stored.rotated_at is not None
    assert new["iat"] == int(stored.rotated_at.timestamp())
    assert "exp" not in new  # the key never expires


def test_i7_revocation_recognises_what_it_never_revokes_by_shape_alone() -> None:
    never = {
        "oauth client secret": secret_format.mint(CredentialKind.OAUTH_CLIENT, "0123456789ABCDEF"),
        "tenant signing secret": secret_format.mint(CredentialKind.TENANT_SIGNING_SECRET, "0123456789ABCDEF"),
        "admin token": secret_format.mint(CredentialKind.ADMIN_TOKEN, "0123456789ABCDEF"),
        "another issuer's jwt": jwt.encode({"iss": "https://idp.example"}, "k" * 32, algorithm="HS256"),
        "a jwt naming no issuer": jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256"),
    }
    maybe = {
        "api key": secret_format.mint(CredentialKind.API_KEY, "0123456789ABCDEF"),
        "static token": secret_format.mint(CredentialKind.STATIC_TOKEN, "0123456789ABCDEF"),
        "application secret": secret_format.mint(CredentialKind.APPLICATION_SECRET, "0123456789ABCDEF"),
        "connector secret": secret_format.mint(CredentialKind.CONNECTOR, "0123456789ABCDEF"),
        "a jwt of watchword's issuer": jwt.encode({"iss": ISSUER}, "k" * 32, algorithm="HS256"),
        "three dots of nothing": "a.b.c",
        "no token": "hello",
        "a near miss of a secret": secret_format.mint(CredentialKind.OAUTH_CLIENT, "0123456789ABCDEF")[:-1],
    }
    assert {name for name, token in never.items() if unsupported_by_shape(token, ISSUER, 8192)} == set(never)
    assert {name for name, token in maybe.items() if unsupported_by_shape(token, ISSUER, 8192)} == set()


async def test_i7_each_answer_is_audited_by_ids_only(world, observed) -> None:
    _, key = await world.register(kind=API_KEY, permissions=["event.send"])
    token = await world.grants.api_key_exchange(key, Requested())
    assert isinstance(token, IssuedToken)
    caller = await client(world)
    introspection = IntrospectionEndpoint(world.pipeline, observed.recorder)
    revocation = RevocationEndpoint(world.pipeline, observed.recorder)
    assert (await in_call(introspection.answer(TokenQuestion(caller, token.access_token))))["active"]
    assert (
        await in_call(revocation.answer(TokenQuestion(caller, token.access_token)), "POST /oauth/revoke")
        is None
    )
    assert await in_call(introspection.answer(TokenQuestion(caller, token.access_token))) == {"active": False}
    records = observed.records()
    text = "\n".join(map(str, records))
    assert key not in text
    assert token.access_token not in text
    assert caller.client_secret not in text
    summary = [
        (r["rpc"], r["what"]["action"], r["result"], r["reason"], r["what"].get("detail")) for r in records
    ]
    assert summary == [
        ("POST /oauth/introspect", "introspect_token", "allow", "active", None),
        ("POST /oauth/revoke", "revoke_token", "allow", "revoked", None),
        ("POST /oauth/introspect", "introspect_token", "allow", "inactive", reasons.TOKEN_REVOKED),
    ]
    assert records[1]["what"]["token"]["token_id"] == token.token_id
    assert {record["who"]["id"] for record in records} == {caller.client_id}


@pytest.mark.parametrize("path", [INTROSPECT_PATH, REVOKE_PATH])
async def test_i7_a_fault_is_a_clean_audited_503(world, observed, caplog, monkeypatch, path) -> None:
    caller = await client(world)

    async def store_down(*_args: object, **_kwargs: object) -> None:
        raise STORE_DOWN

    monkeypatch.setattr(world.pipeline, "authenticate", store_down)
    checks = {
        INTROSPECT_PATH: IntrospectionEndpoint(world.pipeline, observed.recorder),
        REVOKE_PATH: RevocationEndpoint(world.pipeline, observed.recorder),
    }
    app = build_app(world.grants, world.keyring.jwks, {}, observed.recorder, checks)
    caplog.set_level(logging.INFO, logger="watchword.http")
    form = {"token": "wwak_x", "client_id": caller.client_id, "client_secret": caller.client_secret}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://watchword.test") as http:
        response = await http.post(path, data=form)
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert "the store is unavailable" in response.json()["error_description"]
    assert response.headers["cache-control"] == "no-store"
    assert "Traceback" not in caplog.text
    (record,) = observed.records()
    assert (record["rpc"], record["result"], record["reason"]) == (
        f"POST {path}",
        "error",
        "temporarily_unavailable",
    )


async def test_i7_a_catalogue_without_the_action_turns_its_endpoint_off(world, monkeypatch) -> None:
    caller = await client(world)  # granted both while the catalogue had them
    _, key = await world.register(kind=API_KEY, permissions=["event.send"])
    actions = {name: action for name, action in world.catalogue.actions.items() if name != "token.introspect"}
    monkeypatch.setattr(world.pipeline, "catalogue", Catalogue(world.catalogue.roles, actions))
    refused = await IntrospectionEndpoint(world.pipeline).answer(TokenQuestion(caller, key))
    assert refused == OAuthError("unauthorized_client", "this client is not granted token.introspect")
    assert await RevocationEndpoint(world.pipeline).answer(TokenQuestion(caller, key)) is None
