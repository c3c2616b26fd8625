"""The token endpoint core (`issue/token_endpoint.py`, I1-I3, C9) without a server: grant dispatch, the
RFC 6749 §5.2 error table, and the one audit record and decision count of every answer. The grants, the
store (SQLite) and the audit log are the real ones; the gRPC translation is checked on messages alone,
the HTTP door (`http_api.py`) in process through httpx's ASGITransport, faults injected into its grants.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.exc import OperationalError

from watchword import secret_format
from watchword.api.auth import token_request, token_response
from watchword.api.errors import FieldError
from watchword.domain import ClientAuthentication, CredentialKind, Subject
from watchword.http_api import API_KEY_GRANT, CLIENT_CREDENTIALS, build_app
from watchword.issue.grants import Grants, Requested
from watchword.issue.oauth import CLIENT_REFUSED, HTTP_STATUS, OAuthError, Outcome, token_fields
from watchword.issue.token_endpoint import (
    NO_GRANT,
    UNKNOWN_GRANT,
    ApiKeyExchange,
    ClientCredentials,
    Refused,
    SubjectToken,
    TokenEndpoint,
    TokenRequest,
)
from watchword.issue.tokens import IssuedToken
from watchword.observe import call
from watchword.observe.audit import AuditLog
from watchword.observe.decisions import Recorder
from watchword.observe.metrics import Metrics
from watchword.v1 import auth_pb2, common_pb2

from support.issuing import Issuing, issuing
from support.observe import audit_records

API_KEY = common_pb2.CREDENTIAL_KIND_API_KEY
OAUTH_CLIENT = common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT
CONNECTOR = common_pb2.CREDENTIAL_KIND_CONNECTOR
BASIC, POST = 1, 2
UNKNOWN_ID = "0123456789ABCDEF"


class Observed:
    """A real Recorder over real metrics and an audit log written to memory."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.audit = AuditLog(stream=self.stream)
        self.metrics = Metrics()
        self.recorder = Recorder(self.metrics, self.audit)
        self.audit.start()

    def text(self) -> str:
        self.audit.close()  # writes what is queued
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return audit_records(self.text().splitlines())


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Issuing]:
    built = await issuing(tmp_path)
    yield built
    await built.store.close()


@pytest.fixture
def observed() -> Iterator[Observed]:
    watched = Observed()
    yield watched
    watched.audit.close()


async def issue(endpoint: TokenEndpoint, request: TokenRequest, rpc: str = "IssueToken") -> Any:
    """As a front door calls it: inside a call, whose rpc names the transport in the record."""
    entered = call.current.set(call.CallInfo("req-1", rpc, peer_address="127.0.0.1:5000"))
    try:
        return await endpoint.issue(request)
    finally:
        call.current.reset(entered)


def ask(grant: Any, **requested: Any) -> TokenRequest:
    return TokenRequest(grant, Requested(**requested))


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


# ---- grant dispatch and the audit record ----


async def test_i1_an_api_key_is_exchanged_and_audited_by_its_id_only(world, observed) -> None:
    key_id, key = await world.register(kind=API_KEY, permissions=["event.send", "event.list"])
    endpoint = TokenEndpoint(world.grants, observed.recorder)
    token = await issue(endpoint, ask(ApiKeyExchange(key), scope="event.send"))
    assert isinstance(token, IssuedToken)
    assert token.scope == ("event.send",)
    assert jwt.decode(token.access_token, options={"verify_signature": False})["credential_id"] == key_id
    text = observed.text()
    assert key not in text
    (record,) = audit_records(text.splitlines())
    assert (record["rpc"], record["result"], record["reason"]) == ("IssueToken", "allow", "issued")
    assert record["who"] == {"credential_id": key_id}
    assert record["what"] == {
        "action": "issue_token",
        "grant": "api_key_exchange",
        "token_id": token.token_id,
    }
    assert record["request_id"] == "req-1"
    assert observed.metrics.decisions == {("IssueToken", "api_key", "allow", "issued"): 1}


async def test_c9_i2_every_refused_client_is_the_one_invalid_client_and_audited(world, observed) -> None:
    post_id, post_secret = await world.register(
        kind=OAUTH_CLIENT, permissions=["event.send"], client_auth_method=POST
    )
    basic_id, basic_secret = await world.register(
        kind=OAUTH_CLIENT, permissions=["event.send"], client_auth_method=BASIC
    )
    attempts = {
        "unknown id": ClientAuthentication(
            client_id=UNKNOWN_ID, client_secret=secret_format.mint(CredentialKind.OAUTH_CLIENT, UNKNOWN_ID)
        ),
        "wrong secret": ClientAuthentication(
            client_id=post_id, client_secret=secret_format.mint(CredentialKind.OAUTH_CLIENT, post_id)
        ),
        "registered for basic": ClientAuthentication(client_id=basic_id, client_secret=basic_secret),
    }
    endpoint = TokenEndpoint(world.grants, observed.recorder)
    for name, client in attempts.items():
        outcome = await issue(endpoint, ask(ClientCredentials(client)), rpc="POST /oauth/token")
        assert outcome == CLIENT_REFUSED, name
        assert outcome.status == 401
    records = observed.records()
    assert [record["who"] for record in records] == [
        {"credential_id": UNKNOWN_ID},
        {"credential_id": post_id},
        {"credential_id": basic_id},
    ]
    assert {(r["rpc"], r["result"], r["reason"]) for r in records} == {
        ("POST /oauth/token", "deny", "invalid_client")
    }
    assert {json.dumps(r["what"]) for r in records} == {
        json.dumps({"action": "issue_token", "grant": "client_credentials"})
    }
    assert observed.metrics.decisions == {("POST /oauth/token", "oauth_client", "deny", "invalid_client"): 3}
    assert post_secret not in observed.text()


async def test_i2_a_client_named_only_by_its_basic_header_is_audited_by_that_id(world, observed) -> None:
    client_id, secret = await world.register(
        kind=OAUTH_CLIENT, permissions=["event.send"], client_auth_method=BASIC
    )
    endpoint = TokenEndpoint(world.grants, observed.recorder)
    grant = ClientCredentials(ClientAuthentication(authorization=basic(client_id, secret)))
    token = await issue(endpoint, ask(grant))
    assert isinstance(token, IssuedToken)
    (record,) = observed.records()
    assert record["who"] == {"credential_id": client_id}
    assert record["what"]["grant"] == "client_credentials"
    assert observed.metrics.decisions == {("IssueToken", "oauth_client", "allow", "issued"): 1}


async def test_i3_s5_a_subject_token_runs_the_connector_grant(world, observed) -> None:
    connector_id, secret = await world.register(kind=CONNECTOR, permissions=["track", "traits"])
    endpoint = TokenEndpoint(world.grants, observed.recorder)
    token = await issue(endpoint, ask(SubjectToken(connector_id, secret, Subject("user", "u-1"))))
    assert isinstance(token, IssuedToken)
    claims = jwt.decode(token.access_token, options={"verify_signature": False})
    assert (claims["subject_type"], claims["subject_id"], claims["scope"]) == ("user", "u-1", "track traits")
    refused = await issue(endpoint, ask(SubjectToken(connector_id, "wwcs_x", Subject("user", "u-1"))))
    assert refused == CLIENT_REFUSED
    assert [(r["what"]["grant"], r["result"]) for r in observed.records()] == [
        ("subject_token", "allow"),
        ("subject_token", "deny"),
    ]
    assert observed.metrics.decisions == {
        ("IssueToken", "connector", "allow", "issued"): 1,
        ("IssueToken", "connector", "deny", "invalid_client"): 1,
    }


async def test_i1_i2_i3_a_request_naming_no_grant_is_invalid_request_and_audited(world, observed) -> None:
    outcome = await issue(TokenEndpoint(world.grants, observed.recorder), ask(None))
    assert outcome == NO_GRANT
    assert (outcome.error, outcome.status) == ("invalid_request", 400)
    assert outcome.description == "name one grant: api_key_exchange, client_credentials or subject_token"
    (record,) = observed.records()
    assert (record["who"], record["what"]) == ({}, {"action": "issue_token", "grant": ""})
    assert observed.metrics.decisions == {("IssueToken", "unknown", "deny", "invalid_request"): 1}


async def test_i1_i2_a_request_refused_by_its_transport_is_answered_and_audited_once(world, observed) -> None:
    endpoint = TokenEndpoint(world.grants, observed.recorder)
    unreadable = OAuthError("invalid_request", "the body is not a valid form")
    assert await issue(endpoint, Refused(unreadable), rpc="POST /oauth/token") == unreadable
    missing = OAuthError("invalid_request", "api_key is required")
    assert await issue(endpoint, Refused(missing, ApiKeyExchange), rpc="POST /oauth/token") == missing
    first, second = observed.records()
    assert (first["who"], first["what"]) == ({}, {"action": "issue_token", "grant": UNKNOWN_GRANT})
    assert (second["who"], second["what"]) == ({}, {"action": "issue_token", "grant": "api_key_exchange"})
    assert {(r["result"], r["reason"]) for r in (first, second)} == {("deny", "invalid_request")}
    assert observed.metrics.decisions == {
        ("POST /oauth/token", "unknown", "deny", "invalid_request"): 1,
        ("POST /oauth/token", "api_key", "deny", "invalid_request"): 1,
    }


async def test_i2_a_fault_its_transport_answers_is_audited_as_an_error(world, observed) -> None:
    endpoint = TokenEndpoint(world.grants, observed.recorder)
    fault = OAuthError("temporarily_unavailable", "the store is unavailable; retry (incident 1)")
    entered = call.current.set(call.CallInfo("req-9", "POST /oauth/token"))
    try:
        grant = ClientCredentials(ClientAuthentication(client_id=UNKNOWN_ID, client_secret="s"))
        assert endpoint.failed(ask(grant), fault) == fault
        assert endpoint.failed(None, fault) == fault
    finally:
        call.current.reset(entered)
    named, unread = observed.records()
    assert (named["result"], named["reason"]) == ("error", "temporarily_unavailable")
    assert (named["who"], named["what"]["grant"]) == ({"credential_id": UNKNOWN_ID}, "client_credentials")
    assert (unread["who"], unread["what"]["grant"], unread["result"]) == ({}, UNKNOWN_GRANT, "error")
    assert observed.metrics.decisions == {
        ("POST /oauth/token", "oauth_client", "error", "temporarily_unavailable"): 1,
        ("POST /oauth/token", "unknown", "error", "temporarily_unavailable"): 1,
    }


async def test_i1_without_a_recorder_nothing_is_counted_and_the_token_is_issued(world) -> None:
    _, key = await world.register(kind=API_KEY, permissions=["event.send"])
    assert isinstance(await TokenEndpoint(world.grants).issue(ask(ApiKeyExchange(key))), IssuedToken)


# ---- RFC 6749 §5.2 errors as data ----


def test_i2_i7_every_error_is_400_except_a_failed_client_authentication_or_grant() -> None:
    assert {code for code, status in HTTP_STATUS.items() if status != 400} == {
        "invalid_client",
        "unauthorized_client",
    }
    assert HTTP_STATUS["invalid_client"] == 401
    # I7: a client that authenticated but lacks the introspection or revocation grant.
    assert HTTP_STATUS["unauthorized_client"] == 403
    assert OAuthError("invalid_scope", "x").fields() == {"error": "invalid_scope", "error_description": "x"}


def test_i2_a_fault_is_503_temporarily_unavailable_and_no_request_error() -> None:
    assert OAuthError("temporarily_unavailable", "x").status == 503
    assert "temporarily_unavailable" not in HTTP_STATUS


def test_i1_token_fields_are_rfc6749_section_5_1() -> None:
    token = IssuedToken(access_token="a.b.c", token_id="jti-1", expires_in=60, scope=("b", "c"))
    assert token_fields(token) == {
        "access_token": "a.b.c",
        "token_type": "Bearer",
        "expires_in": 60,
        "scope": "b c",
    }


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ({"scope": "application.delete"}, "invalid_scope"),
        ({"scope": "event.send\x00"}, "invalid_scope"),
        ({"audience": "urn:other"}, "invalid_request"),
        ({"lifetime": -1}, "invalid_request"),
    ],
)
async def test_i1_refusals_map_to_their_rfc6749_code_and_status(world, observed, requested, expected) -> None:
    _, key = await world.register(kind=API_KEY, permissions=["event.send"])
    outcome = await issue(
        TokenEndpoint(world.grants, observed.recorder), ask(ApiKeyExchange(key), **requested)
    )
    assert isinstance(outcome, OAuthError)
    assert (outcome.error, outcome.status) == (expected, 400)
    (record,) = observed.records()
    assert (record["result"], record["reason"]) == ("deny", expected)


async def test_i1_an_unknown_api_key_is_invalid_grant(world, observed) -> None:
    forged = secret_format.mint(CredentialKind.API_KEY, UNKNOWN_ID)
    outcome = await issue(TokenEndpoint(world.grants, observed.recorder), ask(ApiKeyExchange(forged)))
    assert isinstance(outcome, OAuthError)
    assert (outcome.error, outcome.status) == ("invalid_grant", 400)
    (record,) = observed.records()
    assert (record["who"], record["reason"]) == ({"credential_id": UNKNOWN_ID}, "invalid_grant")


# ---- the gRPC door translates, nothing more ----


def test_i1_i2_i3_the_proto_request_becomes_the_cores() -> None:
    subject = common_pb2.Subject(type=common_pb2.Subject.TYPE_USER, id="u-1")
    client = auth_pb2.ClientAuthentication(client_id="cid", client_secret="s", authorization="Basic x")
    cases = {
        "api_key_exchange": (
            auth_pb2.IssueTokenRequest(
                api_key_exchange=auth_pb2.ApiKeyExchangeGrant(api_key="k"),
                scope="event.send",
                requested_lifetime_seconds=60,
                audience="urn:a",
            ),
            TokenRequest(ApiKeyExchange("k"), Requested("event.send", 60, "urn:a")),
        ),
        "client_credentials": (
            auth_pb2.IssueTokenRequest(client_credentials=auth_pb2.ClientCredentialsGrant(client=client)),
            ask(
                ClientCredentials(
                    ClientAuthentication(client_id="cid", client_secret="s", authorization="Basic x")
                )
            ),
        ),
        "subject_token": (
            auth_pb2.IssueTokenRequest(
                subject_token=auth_pb2.SubjectTokenGrant(
                    connector_id="c", connector_secret="s", subject=subject
                )
            ),
            ask(SubjectToken("c", "s", Subject("user", "u-1"))),
        ),
        "none": (auth_pb2.IssueTokenRequest(scope="x"), ask(None, scope="x")),
    }
    for name, (message, expected) in cases.items():
        assert token_request(message, 8192) == expected, name


def test_i3_a_malformed_proto_grant_is_a_field_error_before_the_core() -> None:
    grant = auth_pb2.SubjectTokenGrant(connector_id="c", connector_secret="s")
    with pytest.raises(FieldError) as raised:
        token_request(auth_pb2.IssueTokenRequest(subject_token=grant), 8192)
    assert raised.value.field == "subject_token.subject"
    with pytest.raises(FieldError) as raised:
        token_request(auth_pb2.IssueTokenRequest(api_key_exchange=auth_pb2.ApiKeyExchangeGrant()), 8192)
    assert raised.value.field == "api_key_exchange.api_key"


def test_i1_the_cores_outcome_becomes_the_proto_answer() -> None:
    token = IssuedToken(access_token="a.b.c", token_id="jti-1", expires_in=60, scope=("event.send",))
    answer = token_response(token).token
    assert (answer.access_token, answer.token_type, answer.expires_in, answer.scope, answer.token_id) == (
        "a.b.c",
        "Bearer",
        60,
        "event.send",
        "jti-1",
    )
    error = token_response(CLIENT_REFUSED).error
    assert (error.error, error.error_description) == ("invalid_client", "client authentication failed")


# ---- the HTTP door: every answer audited once, faults a clean 503 ----

FORM = "application/x-www-form-urlencoded"
SENT_GRANT = "urn:example:never-echoed"


def http_client(grants: Grants, observed: Observed, jwks: Any = None) -> httpx.AsyncClient:
    async def no_jwks() -> dict[str, Any]:
        return {"keys": []}

    app = build_app(grants, jwks or no_jwks, {"issuer": "urn:watchword"}, observed.recorder)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://watchword.test")


# Each request refused before a grant runs: (body, content type, its answer's error, the audited grant).
REFUSED_BEFORE_A_GRANT = {
    "media type": (b"grant_type=client_credentials", "text/plain", "invalid_request", UNKNOWN_GRANT),
    "charset": (
        b"grant_type=client_credentials",
        f"{FORM}; charset=latin-1",
        "invalid_request",
        UNKNOWN_GRANT,
    ),
    "not utf-8": (b"grant_type=\xff\xfe", FORM, "invalid_request", UNKNOWN_GRANT),
    "repeated": (b"grant_type=client_credentials&scope=a&scope=b", FORM, "invalid_request", UNKNOWN_GRANT),
    "lifetime": (
        b"grant_type=client_credentials&client_id=AAAAAAAAAAAAAAAA&requested_lifetime=-5",
        FORM,
        "invalid_request",
        "client_credentials",
    ),
    "no grant_type": (b"scope=event.send", FORM, "invalid_request", UNKNOWN_GRANT),
    "unsupported": (f"grant_type={SENT_GRANT}".encode(), FORM, "unsupported_grant_type", UNKNOWN_GRANT),
    "no api_key": (f"grant_type={API_KEY_GRANT}".encode(), FORM, "invalid_request", "api_key_exchange"),
}


@pytest.mark.parametrize("case", list(REFUSED_BEFORE_A_GRANT))
async def test_i1_i2_every_http_refusal_before_a_grant_is_one_audit_record(world, observed, case) -> None:
    body, content_type, error, grant = REFUSED_BEFORE_A_GRANT[case]
    async with http_client(world.grants, observed) as client:
        response = await client.post(
            "/oauth/token", content=body, headers={"content-type": content_type, "x-request-id": "r-1"}
        )
    assert (response.status_code, response.json()["error"]) == (400, error)
    text = observed.text()
    (record,) = audit_records(text.splitlines())
    assert (record["rpc"], record["request_id"], record["result"]) == ("POST /oauth/token", "r-1", "deny")
    assert (record["reason"], record["who"]) == (error, {})
    assert record["what"] == {"action": "issue_token", "grant": grant}
    assert SENT_GRANT not in text
    assert sum(observed.metrics.decisions.values()) == 1


class FaultyGrants(Grants):
    """The real grants, but every grant run raises `fault` (the store down, or a bug)."""

    def __init__(self, real: Grants, fault: Exception) -> None:
        self.__dict__.update(real.__dict__)
        self._fault = fault

    async def client_credentials(self, client: ClientAuthentication, requested: Requested) -> Outcome:
        raise self._fault


STORE_DOWN = OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        (STORE_DOWN, "the store is unavailable; retry"),
        (RuntimeError("bug near wwk_s3cr3t"), "internal error"),
    ],
)
async def test_i2_a_fault_in_the_http_token_endpoint_is_a_clean_audited_503(
    world, observed, caplog, fault, said
) -> None:
    client_id, secret = await world.register(
        kind=OAUTH_CLIENT, permissions=["event.send"], client_auth_method=POST
    )
    form = {"grant_type": CLIENT_CREDENTIALS, "client_id": client_id, "client_secret": secret}
    caplog.set_level(logging.INFO, logger="watchword.http")
    async with http_client(FaultyGrants(world.grants, fault), observed) as client:
        response = await client.post("/oauth/token", data=form, headers={"x-request-id": "r-2"})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert (response.headers["cache-control"], response.headers["x-request-id"]) == ("no-store", "r-2")
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == "temporarily_unavailable"
    assert body["error_description"].startswith(said)
    assert "Traceback" not in response.text
    assert "s3cr3t" not in response.text
    incident = body["error_description"].rpartition("incident ")[2].rstrip(")")
    assert len(incident) == 16
    logged = [r for r in caplog.records if incident in r.getMessage()]
    assert len(logged) == 1
    assert secret not in caplog.text
    (record,) = observed.records()
    assert (record["request_id"], record["result"], record["reason"]) == (
        "r-2",
        "error",
        "temporarily_unavailable",
    )
    assert (record["who"], record["what"]["grant"]) == ({"credential_id": client_id}, "client_credentials")
    assert observed.metrics.decisions == {
        ("POST /oauth/token", "oauth_client", "error", "temporarily_unavailable"): 1
    }


async def test_i5_a_fault_serving_the_jwks_is_a_clean_503(world, observed, caplog) -> None:
    async def store_down() -> dict[str, Any]:
        raise STORE_DOWN

    caplog.set_level(logging.INFO, logger="watchword.http")
    async with http_client(world.grants, observed, jwks=store_down) as client:
        response = await client.get("/.well-known/jwks.json")
        metadata = await client.get("/.well-known/oauth-authorization-server")
    assert (response.status_code, response.headers["cache-control"]) == (503, "no-store")
    assert response.json()["error"] == "temporarily_unavailable"
    assert "incident" in response.json()["error_description"]
    assert "store unavailable during GET /.well-known/jwks.json" in caplog.text
    assert (metadata.status_code, metadata.json()) == (200, {"issuer": "urn:watchword"})
    assert observed.records() == []  # serving a key set decides nothing
