"""Tracing through the real server (issue #15, section 1): `watchword serve` with the standard `OTEL_*`
variables pointing at a real OTLP receiver on loopback (tests/support/otlp_receiver.py), over OTLP/gRPC and
OTLP/HTTP. The spans arrive in the caller's trace, under its span; the last ones are flushed when the server
stops; a variable Watchword cannot honour stops the start. And no span ever carries a secret, a token, a
credential id or a tenant's key id: every credential kind is used with tracing on, then every span received
is searched for each of them (as the audit log's own test does)."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import jwt
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.cli import refused_start
from support.jwks_server import JwksServer
from support.otlp_receiver import OtlpReceiver, ReceivedSpan
from support.server import WatchwordProcess
from support.tenants import make_tenant
from support.token_server import Client, TokenServer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
SERVER, CLIENT = 2, 3  # OTLP's SpanKind numbers
AUTHORIZE = "watchword.v1.AuthService/Authorize"


@pytest.fixture(scope="module")
def idp() -> Iterator[JwksServer]:
    with JwksServer(algorithms=("ES256",)) as server:
        yield server


@pytest.fixture(scope="module")
def token_server() -> Iterator[TokenServer]:
    with TokenServer() as running:
        yield running


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory: pytest.TempPathFactory, idp: JwksServer
) -> Iterator[tuple[WatchwordProcess, OtlpReceiver]]:
    """A server tracing everything to an OTLP/gRPC receiver, with an external issuer (C1) configured."""
    directory = tmp_path_factory.mktemp("traced")
    config = directory / "watchword.toml"
    config.write_text(
        f'[[issuers]]\nissuer = "{idp.issuer}"\naudiences = ["api"]\njwks_uri = "{idp.jwks_uri}"\n'
        'allow_insecure_http = true\norganization_claim = "org"\nroles_claim = "roles"\n',
        encoding="utf-8",
    )
    env = {"WATCHWORD_LOG_LEVEL": "DEBUG", "WATCHWORD_OUTBOUND_ALLOW_PRIVATE_TOKEN_URLS": "true"}
    with OtlpReceiver("grpc") as receiver:
        env.update(receiver.env(OTEL_SERVICE_NAME="authz-test"))
        with WatchwordProcess(directory / "data", env=env, args=["--config", str(config)]) as server:
            yield server, receiver


def bearer_source(token: str) -> common_pb2.CredentialSource:
    header = common_pb2.KeyValue(name="Authorization", value=f"Bearer {token}")
    return common_pb2.CredentialSource(http=common_pb2.HttpRequest(method="GET", headers=[header]))


def in_trace(spans: list[ReceivedSpan], trace_id: str) -> dict[str, ReceivedSpan]:
    return {span.name: span for span in spans if span.trace_id == trace_id}


def test_grpc_calls_join_the_callers_trace_with_a_span_per_phase_over_otlp_grpc(traced) -> None:
    server, receiver = traced
    tenant = make_tenant(server, "traced")
    key = server.admin().CreateCredential(
        admin_pb2.CreateCredentialRequest(
            kind=common_pb2.CREDENTIAL_KIND_API_KEY,
            organization_id=tenant.organization_id,
            name="k",
            permissions=["application.list"],
        ),
        metadata=server.admin_metadata,
    )
    request = auth_pb2.AuthorizeRequest(
        credential=bearer_source(key.secret),
        action="application.list",
        resource=auth_pb2.Resource(organization_id=tenant.organization_id),
    )
    metadata = (("traceparent", TRACEPARENT), ("tracestate", "caller=1"), ("x-request-id", "traced-1"))
    assert server.auth().Authorize(request, metadata=metadata).decision.allowed
    spans = receiver.wait_for(lambda found: {"decide", AUTHORIZE} <= set(in_trace(found, TRACE_ID)))
    ours = in_trace(spans, TRACE_ID)
    call = ours[AUTHORIZE]
    assert call.parent_span_id == PARENT_ID
    assert call.kind == SERVER
    assert call.attributes["rpc.grpc.status_code"] == 0
    assert call.attributes["watchword.request_id"] == "traced-1"
    assert call.attributes["watchword.decision"] == "allow"
    assert call.raw["traceState"] == "caller=1"
    for phase in ("extract", "identify", "decide"):
        assert ours[phase].parent_span_id == call.span_id, phase
    assert ours["identify"].attributes["watchword.credential.kind"] == "api_key"
    assert ours["store get_credential"].parent_span_id == ours["identify"].span_id
    assert ours["store get_credential"].kind == CLIENT
    assert call.resource["service.name"] == "authz-test"


def test_http_requests_are_sent_over_otlp_http_and_flushed_when_the_server_stops(tmp_path: Path) -> None:
    with OtlpReceiver("http/protobuf") as receiver:
        # Batches are due only every minute: what arrives before that was flushed by the stop.
        env = receiver.env(OTEL_BSP_SCHEDULE_DELAY="60000")
        with WatchwordProcess(tmp_path / "data", env=env) as server:
            answer = httpx.post(
                f"http://127.0.0.1:{server.http_port}/oauth/token",
                data={"grant_type": "client_credentials"},
                headers={"traceparent": TRACEPARENT},
                timeout=10,
            )
            assert answer.status_code == 401
            time.sleep(0.5)
            assert receiver.spans() == []
        spans = receiver.wait_for(lambda found: bool(in_trace(found, TRACE_ID)), timeout=5)
    token = in_trace(spans, TRACE_ID)["POST /oauth/token"]
    assert token.parent_span_id == PARENT_ID
    assert token.attributes["http.response.status_code"] == 401
    assert token.attributes["http.route"] == "/oauth/token"
    assert token.resource["service.name"] == "watchword"
    assert set(receiver.paths) == {"/v1/traces"}


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "zipkin"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "http/json"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "x"}, "'x'"),
    ],
)  # fmt: skip
def test_tracing_variables_watchword_cannot_honour_stop_the_start(
    tmp_path: Path, variables: dict[str, str], message: str
) -> None:
    result = refused_start({"WATCHWORD_DATA_DIR": str(tmp_path), "OTEL_TRACES_EXPORTER": "otlp", **variables})
    assert "cannot trace" in result.stderr
    assert message in result.stderr


def by_request_id(spans: list[ReceivedSpan], request_id: str) -> ReceivedSpan:
    return next(span for span in spans if span.attributes.get("watchword.request_id") == request_id)


def audited(server: WatchwordProcess, decision_id: str) -> dict[str, object]:
    needle = f'"decision_id":"{decision_id}"'
    deadline = time.monotonic() + 10
    while not (line := next((x for x in server.output if needle in x), None)):
        assert time.monotonic() < deadline, f"no audit record of {decision_id}"
        time.sleep(0.05)
    return json.loads(line)


def test_every_answer_is_on_its_span_with_the_decision_id_the_caller_and_the_audit_got(traced) -> None:
    server, receiver = traced
    tenant = make_tenant(server, "answers")
    key = server.admin().CreateCredential(
        admin_pb2.CreateCredentialRequest(
            kind=common_pb2.CREDENTIAL_KIND_API_KEY, organization_id=tenant.organization_id, name="k",
            permissions=["application.list"],
        ),
        metadata=server.admin_metadata,
    )  # fmt: skip
    auth = server.auth()
    resource = auth_pb2.Resource(organization_id=tenant.organization_id)
    request = auth_pb2.AuthorizeRequest(
        credential=bearer_source(key.secret), action="application.list", resource=resource
    )
    allowed = auth.Authorize(request, metadata=(("x-request-id", "answer-allow"),))
    refused = auth.Authenticate(
        auth_pb2.AuthenticateRequest(credential=bearer_source("not-a-key")),
        metadata=(("x-request-id", "answer-refused"),),
    )
    with pytest.raises(grpc.RpcError) as malformed:  # no action: refused before the pipeline
        auth.Authorize(
            auth_pb2.AuthorizeRequest(credential=bearer_source(key.secret), resource=resource),
            metadata=(("x-request-id", "answer-malformed"),),
        )
    assert malformed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    check = external_auth_pb2.CheckRequest()
    check.attributes.request.http.method, check.attributes.request.http.path = "GET", "/unrouted"
    unrouted = external_auth_pb2_grpc.AuthorizationStub(server.channel()).Check(
        check, metadata=(("x-request-id", "answer-unrouted"),), timeout=10
    )
    unrouted_id = unrouted.dynamic_metadata.fields["x-watchword-decision-id"].string_value
    wanted = {"answer-allow", "answer-refused", "answer-malformed", "answer-unrouted"}
    spans = receiver.wait_for(
        lambda found: wanted <= {span.attributes.get("watchword.request_id") for span in found}
    )

    def outcome(request_id: str) -> tuple[object, ...]:
        found = by_request_id(spans, request_id).attributes
        return tuple(found.get(f"watchword.{name}") for name in ("decision", "reason", "rule", "decision_id"))

    assert outcome("answer-allow") == ("allow", "allowed", "S3", allowed.decision_id)
    assert outcome("answer-refused") == ("refused", refused.refusal.reason, None, refused.decision_id)
    assert outcome("answer-malformed") == ("error", "field_invalid", None, None)
    assert outcome("answer-unrouted") == ("deny", "route_not_configured", "S8", unrouted_id)
    # The caller's id names the audit record of the same decision.
    for decision_id, result in (
        (allowed.decision_id, "allow"),
        (refused.decision_id, "refused"),
        (unrouted_id, "deny"),
    ):
        assert len(decision_id) == 24
        record = audited(server, decision_id)
        assert record["result"] == result


def test_an_overload_refusal_is_on_its_span_and_audited_with_its_reason(
    tmp_path: Path, idp: JwksServer
) -> None:
    """One call in flight (a token whose key the issuer serves slowly) fills a bound of one: the next
    Authenticate and the next Check are refused before any work, and their spans say why."""
    config = tmp_path / "watchword.toml"
    config.write_text(
        f'[[issuers]]\nissuer = "{idp.issuer}"\naudiences = ["api"]\njwks_uri = "{idp.jwks_uri}"\n'
        "allow_insecure_http = true\nrefresh_min_interval_seconds = 1\n",
        encoding="utf-8",
    )
    with OtlpReceiver("grpc") as receiver:
        env = receiver.env(WATCHWORD_MAX_CONCURRENT_RPCS="1")
        with WatchwordProcess(tmp_path / "data", env=env, args=["--config", str(config)]) as server:
            now = int(time.time())
            key = idp.add_key("ES256")
            idp.set(delay_seconds=2.0)
            token = idp.sign({"iss": idp.issuer, "aud": "api", "sub": "u", "iat": now, "exp": now + 300}, key)
            auth = server.auth()
            slow = threading.Thread(
                target=auth.Authenticate,
                args=(auth_pb2.AuthenticateRequest(credential=bearer_source(token)),),
                kwargs={"timeout": 20},
            )
            slow.start()
            time.sleep(0.5)  # the slow call holds the only place
            try:
                with pytest.raises(grpc.RpcError) as refused:
                    auth.Authenticate(
                        auth_pb2.AuthenticateRequest(credential=bearer_source("wwak_x")),
                        metadata=(("x-request-id", "overloaded-auth"),),
                        timeout=5,
                    )
                with pytest.raises(grpc.RpcError) as check_refused:
                    external_auth_pb2_grpc.AuthorizationStub(server.channel()).Check(
                        external_auth_pb2.CheckRequest(),
                        metadata=(("x-request-id", "overloaded-check"),),
                        timeout=5,
                    )
            finally:
                slow.join(20)
                idp.set(delay_seconds=0)
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert check_refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, check_refused.value
            record = next(
                json.loads(line) for line in server.output if '"request_id":"overloaded-auth"' in line
            )
        wanted = {"overloaded-auth", "overloaded-check"}
        spans = receiver.wait_for(
            lambda found: wanted <= {span.attributes.get("watchword.request_id") for span in found}
        )
    for request_id in wanted:
        found = by_request_id(spans, request_id).attributes
        assert (found["watchword.decision"], found["watchword.reason"]) == ("error", "overloaded"), request_id
        assert found["rpc.grpc.status_code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert "watchword.decision_id" not in found  # not a decision
    assert (record["result"], record["reason"], record["status"]) == (
        "error",
        "overloaded",
        "RESOURCE_EXHAUSTED",
    )


# ---- never a secret or an id ----


def pieces(secret: str) -> list[str]:
    """The secret and parts of it that would still give it away (as the audit log's test searches)."""
    found = [secret]
    if secret.startswith("ww") and secret.count("_") >= 2:
        found.append(secret.rsplit("_", 1)[1])
    if secret.count(".") == 2:
        found.extend(part for part in secret.split(".")[1:] if len(part) >= 8)
    if len(secret) >= 24:
        middle = len(secret) // 2
        found.append(secret[middle - 8 : middle + 8])
    return found


def test_no_span_holds_a_secret_token_credential_id_or_key_id(traced, idp: JwksServer, token_server) -> None:
    server, receiver = traced
    admin, auth, md = server.admin(), server.auth(), server.admin_metadata
    tenant = make_tenant(server, "secretive")
    org = tenant.organization_id
    made: dict[str, str] = {"bootstrap admin token": server.admin_token}
    ids: dict[str, str] = {}

    def credential(kind: int, **fields: object) -> admin_pb2.CreateCredentialResponse:
        if kind != common_pb2.CREDENTIAL_KIND_ADMIN_TOKEN:
            fields.setdefault("organization_id", org)
        created = admin.CreateCredential(
            admin_pb2.CreateCredentialRequest(kind=kind, name="t", **fields), metadata=md
        )
        made[f"secret {kind}"], ids[f"id {kind}"] = created.secret, created.credential.id
        return created

    def authorized(token: str, action: str, **resource: str) -> None:
        request = auth_pb2.AuthorizeRequest(
            credential=bearer_source(token), action=action, resource=auth_pb2.Resource(**resource)
        )
        auth.Authorize(request, metadata=(("traceparent", TRACEPARENT),))

    kinds = common_pb2
    credential(kinds.CREDENTIAL_KIND_APPLICATION_SECRET, application_id=tenant.application_id)
    credential(kinds.CREDENTIAL_KIND_STATIC_TOKEN, permissions=["application.list"])
    key = credential(kinds.CREDENTIAL_KIND_API_KEY, permissions=["application.list"], basic_auth_enabled=True)
    connector = credential(kinds.CREDENTIAL_KIND_CONNECTOR, permissions=["track"])
    tenant_secret = credential(kinds.CREDENTIAL_KIND_TENANT_SIGNING_SECRET, permissions=["object.publish"])
    client = credential(
        kinds.CREDENTIAL_KIND_OAUTH_CLIENT,
        permissions=["application.list"],
        client_auth_method=admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_BASIC,
    )
    second_admin = credential(kinds.CREDENTIAL_KIND_ADMIN_TOKEN)
    for kind in (
        kinds.CREDENTIAL_KIND_APPLICATION_SECRET,
        kinds.CREDENTIAL_KIND_STATIC_TOKEN,
        kinds.CREDENTIAL_KIND_API_KEY,
    ):
        authorized(made[f"secret {kind}"], "application.list", organization_id=org)

    # Every other transport and kind: Basic (C5), a header pair (C6), C4, C7 and C1 JWTs.
    basic = base64.b64encode(f"{org}:{key.secret}".encode()).decode()
    made["basic header"] = basic
    for headers in (
        [("Authorization", f"Basic {basic}")],
        [("Hull-App-Id", connector.credential.id), ("Hull-Access-Token", connector.secret)],
    ):
        pairs = [common_pb2.KeyValue(name=name, value=value) for name, value in headers]
        source = common_pb2.CredentialSource(http=common_pb2.HttpRequest(headers=pairs))
        assert auth.Authenticate(auth_pb2.AuthenticateRequest(credential=source)).principal.id
    now = int(time.time())
    made["tenant jwt"] = jwt.encode(
        {"sub": "svc", "iat": now, "exp": now + 300, "iss": "t", "jti": uuid.uuid4().hex,
         "permissions": ["object.publish"]},
        tenant_secret.secret.encode(),
        headers={"kid": tenant_secret.credential.id},
    )  # fmt: skip
    authorized(made["tenant jwt"], "object.publish", organization_id=org, object_id="o-1")
    made["subject jwt"] = jwt.encode(
        {"iat": now, "exp": now + 300, "iss": connector.credential.id,
         "io.hull.asUser": {"external_id": "u1"}},
        connector.secret.encode(),
    )  # fmt: skip
    pair = common_pb2.HttpRequest(
        headers=[common_pb2.KeyValue(name="Hull-Access-Token", value=made["subject jwt"])]
    )
    source = common_pb2.CredentialSource(http=pair)
    assert auth.Authenticate(auth_pb2.AuthenticateRequest(credential=source)).principal.id
    made["external jwt"] = idp.sign(
        {"iss": idp.issuer, "aud": "api", "sub": "alice", "iat": now, "exp": now + 300, "org": org,
         "roles": ["viewer"]}
    )  # fmt: skip
    authorized(made["external jwt"], "organization.get", organization_id=org)

    # Issued tokens (C8), over gRPC and HTTP (C9 client secret in Basic), then used.
    made["issued I1"] = auth.IssueToken(
        auth_pb2.IssueTokenRequest(api_key_exchange=auth_pb2.ApiKeyExchangeGrant(api_key=key.secret))
    ).token.access_token
    client_basic = base64.b64encode(f"{client.credential.id}:{client.secret}".encode()).decode()
    made["client basic"] = client_basic
    over_http = httpx.post(
        f"http://127.0.0.1:{server.http_port}/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"authorization": f"Basic {client_basic}", "traceparent": TRACEPARENT},
        timeout=10,
    )
    assert over_http.status_code == 200, over_http.text
    made["issued over HTTP"] = over_http.json()["access_token"]
    for name in ("issued I1", "issued over HTTP"):
        authorized(made[name], "application.list", organization_id=org)

    # Outbound (O1-O5): a client secret whose token is fetched from a real token server, then signed for.
    outbound_secret = f"ob-client-{secrets.token_hex(12)}"
    made["outbound client secret"] = outbound_secret
    token_server.register(Client(client_id="hooks-client", secret=outbound_secret))
    admin_md = (("authorization", f"Bearer {second_admin.secret}"),)
    outbound = admin.CreateOutboundCredential(
        admin_pb2.CreateOutboundCredentialRequest(
            credential=admin_pb2.OutboundCredential(
                organization_id=org,
                name="hooks",
                scheme=admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS,
                token_url=token_server.token_url,
                client_id="hooks-client",
                client_auth_method=admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_BASIC,
            ),
            secrets=admin_pb2.OutboundSecrets(client_secret=outbound_secret),
        ),
        metadata=admin_md,
    )
    ids["outbound credential"] = outbound.credential.id
    signed = auth.SignOutbound(
        auth_pb2.SignOutboundRequest(
            outbound_credential_id=outbound.credential.id, method="POST", url="https://customer.example/h",
            body=b"{}"
        ),
        metadata=(*admin_md, ("traceparent", TRACEPARENT)),
    )  # fmt: skip
    assert signed.WhichOneof("result") == "signed", signed
    made["fetched outbound token"] = next(
        h.value.split(" ", 1)[1] for h in signed.signed.headers if h.name == "Authorization"
    )
    ids["second admin token"] = second_admin.credential.id

    # Refusals made before the pipeline, each carrying a secret: a malformed call (no action), a batch
    # with a malformed entry, a wrong secret, ext_authz checks that are unrouted or name an unknown action.
    with pytest.raises(grpc.RpcError):
        auth.Authorize(auth_pb2.AuthorizeRequest(credential=bearer_source(key.secret)))
    entries = [auth_pb2.AuthorizeRequest(credential=bearer_source(key.secret), action="x" * 1000)]
    auth.AuthorizeBatch(auth_pb2.AuthorizeBatchRequest(entries=entries))
    made["wrong secret"] = key.secret[:-4] + "AAAA"
    auth.Authenticate(auth_pb2.AuthenticateRequest(credential=bearer_source(made["wrong secret"])))
    checks = external_auth_pb2_grpc.AuthorizationStub(server.channel())
    for extensions in ({}, {"watchword.action": "no.such", "watchword.path": "/{organization_id}"}):
        check = external_auth_pb2.CheckRequest()
        check.attributes.request.http.method, check.attributes.request.http.path = "GET", f"/{org}"
        check.attributes.request.http.headers["authorization"] = f"Bearer {key.secret}"
        check.attributes.context_extensions.update(extensions)
        checks.Check(check, timeout=10)

    wanted = {
        "jwks fetch",
        "outbound token fetch",
        "POST /oauth/token",
        "watchword.v1.AuthService/SignOutbound",
    }
    spans = receiver.wait_for(lambda found: wanted <= {span.name for span in found})
    # Positive control: the spans are there, in the caller's trace, and name every kind used.
    kinds_seen = {span.attributes.get("watchword.credential.kind") for span in spans}
    assert {"application_secret", "static_token", "api_key", "connector", "tenant_jwt",
            "subject_jwt", "external_jwt", "watchword_token"} <= kinds_seen  # fmt: skip
    assert len(in_trace(spans, TRACE_ID)) >= 10
    spans = receiver.wait_for(
        lambda found: (
            {"error", "refused", "deny", "allow"}
            <= {span.attributes.get("watchword.decision") for span in found}
            and any(span.raw.get("events") for span in found)
        )
    )
    reasons_seen = {span.attributes.get("watchword.reason") for span in spans}
    assert {"field_invalid", "route_not_configured", "action_unknown"} <= reasons_seen
    text = json.dumps([{"name": s.name, "span": s.raw, "resource": s.resource} for s in spans])
    assert len(made) >= 15
    for name, secret in made.items():
        assert secret, name
        for piece in pieces(secret):
            assert piece not in text, f"{name} ({piece!r}) is in a span"
    for name, identifier in ids.items():
        assert identifier, name
        assert identifier not in text, f"{name} ({identifier}) is in a span"
    output = "".join(server.output)
    assert "Traceback" not in output
    assert "Failed to detach context" not in output  # every span left the context it entered
