"""The audit log (issue #8): every decision and every admin call as a JSON line, and never a secret.

The secret test creates every kind of secret Watchword knows (each credential kind through the admin
API, outbound secrets, issued tokens, fetched outbound tokens, a second admin token), uses each of them,
then greps the audit log and everything the server printed for each secret and for distinctive parts
of it.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
import jwt
import pytest

from watchword import reasons
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.cli import refused_start
from support.observe import file_records, wait_for_records
from support.server import WatchwordProcess
from support.tenants import make_tenant
from support.token_server import Client, TokenServer

KINDS = {
    "application-secret": common_pb2.CREDENTIAL_KIND_APPLICATION_SECRET,
    "static-token": common_pb2.CREDENTIAL_KIND_STATIC_TOKEN,
    "api-key": common_pb2.CREDENTIAL_KIND_API_KEY,
    "connector": common_pb2.CREDENTIAL_KIND_CONNECTOR,
    "tenant-signing-secret": common_pb2.CREDENTIAL_KIND_TENANT_SIGNING_SECRET,
    "oauth-client": common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT,
    "admin-token": common_pb2.CREDENTIAL_KIND_ADMIN_TOKEN,
}
URL = "https://customer.example/hooks"


@pytest.fixture(scope="module")
def token_server():
    with TokenServer() as running:
        yield running


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory, token_server):
    directory = tmp_path_factory.mktemp("audit")
    log = directory / "audit.log"
    env = {
        "WATCHWORD_AUDIT_LOG_FILE": str(log),
        "WATCHWORD_LOG_LEVEL": "DEBUG",  # the most the server ever logs: the grep covers all of it
        "WATCHWORD_OUTBOUND_ALLOW_PRIVATE_TOKEN_URLS": "true",
    }
    with WatchwordProcess(directory / "data", env=env) as server:
        yield server, log


def bearer_source(token: str) -> common_pb2.CredentialSource:
    header = common_pb2.KeyValue(name="Authorization", value=f"Bearer {token}")
    return common_pb2.CredentialSource(http=common_pb2.HttpRequest(method="GET", headers=[header]))


def pieces(secret: str) -> list[str]:
    """The secret and parts of it that would still give it away: the random part of a Watchword secret
    (after its id), the payload and signature of a JWT, a middle slice of anything long."""
    found = [secret]
    if secret.startswith("ww") and secret.count("_") >= 2:
        found.append(secret.rsplit("_", 1)[1])
    if secret.count(".") == 2:
        found.extend(part for part in secret.split(".")[1:] if len(part) >= 8)
    if len(secret) >= 24:
        middle = len(secret) // 2
        found.append(secret[middle - 8 : middle + 8])
    return found


def test_audit_log_never_holds_a_secret_or_token(audited, token_server) -> None:
    server, log = audited
    admin, auth = server.admin(), server.auth()
    md = server.admin_metadata
    tenant = make_tenant(server, "secretive")
    org, app = tenant.organization_id, tenant.application_id
    made: dict[str, str] = {}  # what each secret is -> the secret

    def credential(kind: str, **fields: object) -> admin_pb2.CreateCredentialResponse:
        if kind != "admin-token":
            fields.setdefault("organization_id", org)
        response = admin.CreateCredential(
            admin_pb2.CreateCredentialRequest(kind=KINDS[kind], name=kind, **fields), metadata=md
        )
        made[kind] = response.secret
        return response

    credential("application-secret", application_id=app)
    credential("static-token", permissions=["event.send"])
    key = credential("api-key", permissions=["event.send", "application.list"], basic_auth_enabled=True)
    connector = credential("connector", permissions=["track", "traits"])
    tenant_secret = credential("tenant-signing-secret", permissions=["object.publish"])
    client = credential(
        "oauth-client",
        permissions=["event.send"],
        client_auth_method=admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_BASIC,
    )
    second_admin = credential("admin-token")
    admin_md = (("authorization", f"Bearer {second_admin.secret}"),)
    rotated = admin.RotateCredential(
        admin_pb2.RotateCredentialRequest(id=key.credential.id, overlap_seconds=60), metadata=admin_md
    )
    made["api-key rotated"] = rotated.secret

    # Every credential used, in every transport that carries it.
    for kind in ("application-secret", "static-token", "api-key", "api-key rotated"):
        assert auth.Authenticate(
            auth_pb2.AuthenticateRequest(credential=bearer_source(made[kind]))
        ).principal.id
    workspace_basic = base64.b64encode(f"{org}:{made['api-key rotated']}".encode()).decode()
    basic = common_pb2.KeyValue(name="Authorization", value=f"Basic {workspace_basic}")
    source = common_pb2.CredentialSource(http=common_pb2.HttpRequest(headers=[basic]))
    auth.Authenticate(auth_pb2.AuthenticateRequest(credential=source))
    pair = common_pb2.HttpRequest(
        headers=[
            common_pb2.KeyValue(name="Hull-App-Id", value=connector.credential.id),
            common_pb2.KeyValue(name="Hull-Access-Token", value=connector.secret),
        ]
    )
    assert auth.Authenticate(
        auth_pb2.AuthenticateRequest(credential=common_pb2.CredentialSource(http=pair))
    ).principal.id
    now = int(time.time())
    claims = {
        "sub": "svc",
        "tnd": org,
        "iss": "tenant.example",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "permissions": ["object.publish"],
        "data_provider_patterns": ["truck-*"],
    }
    tenant_jwt = jwt.encode(
        claims, tenant_secret.secret.encode(), algorithm="HS256", headers={"kid": tenant_secret.credential.id}
    )
    made["tenant jwt"] = tenant_jwt
    decision = auth.Authorize(
        auth_pb2.AuthorizeRequest(
            credential=bearer_source(tenant_jwt),
            action="object.publish",
            resource=auth_pb2.Resource(organization_id=org, object_id="truck-7"),
        )
    ).decision
    assert decision.allowed, decision
    subject_jwt = jwt.encode(
        {
            "iat": now,
            "exp": now + 300,
            "iss": connector.credential.id,
            "io.hull.asUser": {"external_id": "u1"},
        },
        connector.secret.encode(),
        algorithm="HS256",
    )
    made["subject jwt"] = subject_jwt
    pair = common_pb2.HttpRequest(headers=[common_pb2.KeyValue(name="Hull-Access-Token", value=subject_jwt)])
    assert auth.Authenticate(
        auth_pb2.AuthenticateRequest(credential=common_pb2.CredentialSource(http=pair))
    ).principal.id

    # Issued tokens (I1, I2, I3), then used.
    issued = auth.IssueToken(
        auth_pb2.IssueTokenRequest(
            api_key_exchange=auth_pb2.ApiKeyExchangeGrant(api_key=made["api-key rotated"])
        )
    ).token
    made["issued I1"] = issued.access_token
    client_basic = base64.b64encode(f"{client.credential.id}:{client.secret}".encode()).decode()
    issued = auth.IssueToken(
        auth_pb2.IssueTokenRequest(
            client_credentials=auth_pb2.ClientCredentialsGrant(
                client=auth_pb2.ClientAuthentication(authorization=f"Basic {client_basic}")
            )
        )
    ).token
    made["issued I2"] = issued.access_token
    issued = auth.IssueToken(
        auth_pb2.IssueTokenRequest(
            subject_token=auth_pb2.SubjectTokenGrant(
                connector_id=connector.credential.id,
                connector_secret=connector.secret,
                subject=common_pb2.Subject(type=common_pb2.Subject.TYPE_USER, id="u2"),
            )
        )
    ).token
    made["issued I3"] = issued.access_token
    over_http = httpx.post(
        f"http://127.0.0.1:{server.http_port}/oauth/token",
        data={
            "grant_type": "urn:watchword:params:oauth:grant-type:api-key",
            "api_key": made["api-key rotated"],
        },
        headers={"x-request-id": "http-issue-1"},
        timeout=10,
    )
    assert over_http.status_code == 200, over_http.text
    assert over_http.headers["x-request-id"] == "http-issue-1"
    made["issued over HTTP"] = over_http.json()["access_token"]
    for name in ("issued I1", "issued I2", "issued I3", "issued over HTTP"):
        assert made[name], name
        assert auth.Authenticate(
            auth_pb2.AuthenticateRequest(credential=bearer_source(made[name]))
        ).principal.id

    # Outbound secrets (O1-O5), signed for with the second admin token; the OAuth token is fetched.
    outbound = {
        "outbound bearer": f"ob-bearer-{secrets.token_hex(12)}",
        "outbound password": f"ob-password-{secrets.token_hex(12)}",
        "outbound client secret": f"ob-client-{secrets.token_hex(12)}",
    }
    made.update(outbound)
    token_server.register(Client(client_id="hooks-client", secret=outbound["outbound client secret"]))
    schemes = [
        (admin_pb2.OUTBOUND_SCHEME_BEARER, {}, {"bearer_token": outbound["outbound bearer"]}),
        (admin_pb2.OUTBOUND_SCHEME_BASIC, {"username": "hooks"}, {"password": outbound["outbound password"]}),
        (
            admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS,
            {
                "token_url": token_server.token_url,
                "client_id": "hooks-client",
                "client_auth_method": admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_BASIC,
            },
            {"client_secret": outbound["outbound client secret"]},
        ),
    ]
    for scheme, fields, outbound_secrets in schemes:
        created = admin.CreateOutboundCredential(
            admin_pb2.CreateOutboundCredentialRequest(
                credential=admin_pb2.OutboundCredential(
                    organization_id=org, name="hooks", scheme=scheme, sign_payload=True, **fields
                ),
                secrets=admin_pb2.OutboundSecrets(**outbound_secrets),
            ),
            metadata=admin_md,
        )
        made[f"payload signing secret {scheme}"] = created.payload_signing_secret
        signed = auth.SignOutbound(
            auth_pb2.SignOutboundRequest(
                outbound_credential_id=created.credential.id,
                method="POST",
                url=URL,
                body=b"{}",
                message_id="m1",
            ),
            metadata=admin_md,
        )
        assert signed.WhichOneof("result") == "signed", signed
        for header in signed.signed.headers:
            if header.name == "Authorization":
                made[f"signed authorization {scheme}"] = header.value.split(" ", 1)[1]
            if header.name == "webhook-signature":
                made[f"webhook signature {scheme}"] = header.value.split(",", 1)[1]
    made["fetched outbound token"] = made[
        f"signed authorization {admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS}"
    ]
    assert made["fetched outbound token"].startswith("at-")

    # I7: every secret and token so far introspected, then revoked, over HTTP by a granted client.
    gateway = admin.CreateCredential(
        admin_pb2.CreateCredentialRequest(
            kind=KINDS["oauth-client"],
            name="gateway",
            organization_id=org,
            permissions=["token.introspect", "token.revoke"],
            client_auth_method=admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_BASIC,
        ),
        metadata=md,
    )
    made["introspecting client"] = gateway.secret
    active = 0
    for path in ("/oauth/introspect", "/oauth/revoke"):
        for secret in list(made.values()):
            answer = httpx.post(
                f"http://127.0.0.1:{server.http_port}{path}",
                data={"token": secret},
                auth=(gateway.credential.id, gateway.secret),
                timeout=10,
            )
            assert answer.status_code in (200, 400), answer.text  # 400: unsupported_token_type
            active += path == "/oauth/introspect" and answer.json()["active"]
    assert active >= 8  # the opaque secrets and the tokens Watchword issued

    # Refusals log no more than successes: a wrong secret, a tampered token, a bad admin token.
    wrong = made["static-token"][:-4] + "AAAA"
    made["wrong static token"] = wrong
    auth.Authenticate(auth_pb2.AuthenticateRequest(credential=bearer_source(wrong)))
    with pytest.raises(grpc.RpcError):
        admin.ListOrganizations(
            admin_pb2.ListOrganizationsRequest(), metadata=(("authorization", f"Bearer {wrong}"),)
        )

    records = wait_for_records(file_records(log), lambda r: r["what"].get("action") == "ListOrganizations")
    assert records, "the refused admin call was audited"
    time.sleep(0.3)  # everything else was queued before it
    audit_text = log.read_text()
    output = "".join(server.output)
    assert len(audit_text.splitlines()) > 30
    # Positive control: the records are there and name the credentials by id.
    for created in (key, connector, tenant_secret, client, second_admin):
        assert created.credential.id in audit_text
    assert len([secret for secret in made.values() if secret]) >= 20
    for name, secret in made.items():
        assert secret, name
        for piece in pieces(secret):
            assert piece not in audit_text, f"{name} ({piece!r}) is in the audit log"
            assert piece not in output, f"{name} ({piece!r}) is in the server's output"
    # The first admin token is printed once, by design, and never again.
    assert output.count(server.admin_token) == 1
    assert server.admin_token not in audit_text
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600


def test_decisions_are_audited_with_reason_rule_and_principal(audited) -> None:
    server, log = audited
    tenant = make_tenant(server, "decisions")
    secret = server.admin().CreateCredential(
        admin_pb2.CreateCredentialRequest(
            kind=common_pb2.CREDENTIAL_KIND_APPLICATION_SECRET,
            organization_id=tenant.organization_id,
            application_id=tenant.application_id,
            name="app",
        ),
        metadata=server.admin_metadata,
    )
    rid = f"audit-{uuid.uuid4().hex}"
    denied = server.auth().Authorize(
        auth_pb2.AuthorizeRequest(
            credential=bearer_source(secret.secret),
            action="application.create",
            resource=auth_pb2.Resource(organization_id=tenant.organization_id),
        ),
        metadata=(("x-request-id", rid),),
    )
    assert denied.decision.reason == reasons.ACTION_LEVEL_NOT_ALLOWED
    (record,) = wait_for_records(file_records(log), lambda r: r["request_id"] == rid)
    assert record["rpc"] == "Authorize"
    assert record["result"] == "deny"
    assert record["reason"] == reasons.ACTION_LEVEL_NOT_ALLOWED
    assert record["rule"] == "S2"
    assert record["who"] == {
        "kind": "application_secret",
        "id": secret.credential.id,
        "organization_id": tenant.organization_id,
    }
    assert record["what"] == {
        "action": "application.create",
        "resource": {"organization_id": tenant.organization_id},
    }
    assert record["peer"].startswith(("ipv4:127.0.0.1:", "ipv6:"))
    assert datetime.fromisoformat(record["ts"]).tzinfo == UTC
    assert record["ts"].endswith("Z")
    # The caller got the decision's id: it names this record.
    assert len(denied.decision_id) == 24
    assert record["decision_id"] == denied.decision_id

    rid = f"audit-{uuid.uuid4().hex}"
    refused = server.auth().Authenticate(
        auth_pb2.AuthenticateRequest(credential=bearer_source("wwas_notAtAllValid")),
        metadata=(("x-request-id", rid),),
    )
    (record,) = wait_for_records(file_records(log), lambda r: r["request_id"] == rid)
    assert (record["rpc"], record["result"], record["who"]) == ("Authenticate", "refused", {})
    assert record["reason"] == reasons.CREDENTIAL_MALFORMED
    assert record["decision_id"] == refused.decision_id != denied.decision_id


def test_every_batch_entry_is_audited(audited) -> None:
    server, log = audited
    tenant = make_tenant(server, "batch")
    key = server.admin().CreateCredential(
        admin_pb2.CreateCredentialRequest(
            kind=common_pb2.CREDENTIAL_KIND_API_KEY,
            organization_id=tenant.organization_id,
            name="k",
            permissions=["event.list"],
        ),
        metadata=server.admin_metadata,
    )
    entry = auth_pb2.AuthorizeRequest(
        credential=bearer_source(key.secret),
        action="event.list",
        resource=auth_pb2.Resource(application_id=tenant.application_id, event_type="a.b"),
    )
    rid = f"batch-{uuid.uuid4().hex}"
    answer = server.auth().AuthorizeBatch(
        auth_pb2.AuthorizeBatchRequest(entries=[entry, auth_pb2.AuthorizeRequest(), entry]),
        metadata=(("x-request-id", rid),),
    )
    records = wait_for_records(file_records(log), lambda r: r["request_id"] == rid, count=3)
    by_entry = {record["what"]["entry"]: record for record in records}
    assert sorted(by_entry) == [0, 1, 2]
    assert by_entry[0]["result"] == by_entry[2]["result"] == "allow"
    assert by_entry[0]["who"]["id"] == key.credential.id
    assert (by_entry[1]["result"], by_entry[1]["reason"]) == ("deny", reasons.ENTRY_INVALID)
    assert {record["rpc"] for record in records} == {"AuthorizeBatch"}
    # Each entry is a decision of its own, with its own id, in its answer and in its record.
    assert [by_entry[i]["decision_id"] for i in range(3)] == [r.decision_id for r in answer.results]
    assert len({r.decision_id for r in answer.results}) == 3


def test_admin_changes_name_the_admin_token_the_call_and_the_ids(audited) -> None:
    server, log = audited
    admin, md = server.admin(), server.admin_metadata
    admin_token_id = server.admin_token.split("_")[1]
    org = admin.CreateOrganization(admin_pb2.CreateOrganizationRequest(name="changes"), metadata=md)
    created = admin.CreateCredential(
        admin_pb2.CreateCredentialRequest(
            kind=common_pb2.CREDENTIAL_KIND_STATIC_TOKEN,
            organization_id=org.id,
            name="t",
            permissions=["track"],
        ),
        metadata=md,
    )
    admin.DeactivateCredential(admin_pb2.DeactivateCredentialRequest(id=created.credential.id), metadata=md)
    with pytest.raises(grpc.RpcError) as missing:
        admin.DeleteOrganization(admin_pb2.DeleteOrganizationRequest(id="no-such-org"), metadata=md)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError):
        admin.DeleteOrganization(admin_pb2.DeleteOrganizationRequest(id=org.id))

    read = file_records(log)
    (create_org,) = wait_for_records(
        read, lambda r: r["what"].get("target_id") == org.id and r["rpc"] == "CreateOrganization"
    )
    assert create_org["who"] == {"admin_token_id": admin_token_id}
    assert (create_org["result"], create_org["reason"]) == ("ok", "ok")
    assert create_org["what"]["request"] == {"name": "changes"}
    (create,) = wait_for_records(
        read, lambda r: r["rpc"] == "CreateCredential" and r["what"].get("target_id") == created.credential.id
    )
    assert create["what"]["request"] == {
        "kind": "CREDENTIAL_KIND_STATIC_TOKEN",
        "organization_id": org.id,
        "name": "t",
        "permissions": ["track"],
    }
    (deactivate,) = wait_for_records(
        read,
        lambda r: (
            r["rpc"] == "DeactivateCredential" and r["what"]["request"].get("id") == created.credential.id
        ),
    )
    assert deactivate["who"] == {"admin_token_id": admin_token_id}
    assert deactivate["result"] == "ok"
    (not_found,) = wait_for_records(read, lambda r: r["what"].get("request") == {"id": "no-such-org"})
    assert (not_found["result"], not_found["reason"], not_found["status"]) == (
        "error",
        "not_found",
        "NOT_FOUND",
    )
    (refused,) = wait_for_records(
        read, lambda r: r["rpc"] == "DeleteOrganization" and r["reason"] == "admin_token_missing"
    )
    assert refused["who"] == {}
    assert refused["what"] == {"action": "DeleteOrganization", "request": {}}, (
        "a refused request is not decoded"
    )
    assert refused["status"] == "UNAUTHENTICATED"


def test_audit_lines_go_to_stdout_by_default_and_can_be_turned_off(tmp_path: Path) -> None:
    from support.observe import audit_records

    with WatchwordProcess(tmp_path / "on") as server:
        server.admin().CreateOrganization(
            admin_pb2.CreateOrganizationRequest(name="stdout"), metadata=server.admin_metadata
        )
        records = wait_for_records(
            lambda: audit_records(server.output), lambda r: r["rpc"] == "CreateOrganization"
        )
        assert records
    with WatchwordProcess(tmp_path / "off", env={"WATCHWORD_AUDIT_ENABLED": "false"}) as server:
        server.admin().CreateOrganization(
            admin_pb2.CreateOrganizationRequest(name="quiet"), metadata=server.admin_metadata
        )
        time.sleep(0.3)
        assert audit_records(server.output) == []


def test_the_http_token_endpoint_is_audited_too(audited) -> None:
    server, log = audited
    response = httpx.post(
        f"http://127.0.0.1:{server.http_port}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "AAAAAAAAAAAAAAAA", "client_secret": "nope"},
        headers={"x-request-id": "http-refused-1"},
        timeout=10,
    )
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "http-refused-1"
    (record,) = wait_for_records(file_records(log), lambda r: r["request_id"] == "http-refused-1")
    assert record["rpc"] == "POST /oauth/token"
    assert (record["result"], record["reason"]) == ("deny", "invalid_client")
    assert record["who"] == {"credential_id": "AAAAAAAAAAAAAAAA"}
    assert record["what"] == {"action": "issue_token", "grant": "client_credentials"}
    assert record["peer"].startswith("127.0.0.1:")


# Refused by `POST /oauth/token` before any grant runs: (form body, content type, answer, audited grant).
REFUSED_BEFORE_A_GRANT = [
    ("grant_type=client_credentials", "application/json", "invalid_request", "unknown"),
    ("grant_type=client_credentials&scope=a&scope=b", "", "invalid_request", "unknown"),
    ("grant_type=client_credentials&requested_lifetime=soon", "", "invalid_request", "client_credentials"),
    ("scope=event.send", "", "invalid_request", "unknown"),
    ("grant_type=password&password=hunter2-never-echoed", "", "unsupported_grant_type", "unknown"),
    ("grant_type=urn:watchword:params:oauth:grant-type:api-key", "", "invalid_request", "api_key_exchange"),
]


def test_every_answer_of_the_http_token_endpoint_is_one_audit_record(audited) -> None:
    server, log = audited
    for index, (body, content_type, error, grant) in enumerate(REFUSED_BEFORE_A_GRANT):
        rid = f"http-unread-{index}-{uuid.uuid4().hex[:8]}"
        response = httpx.post(
            f"http://127.0.0.1:{server.http_port}/oauth/token",
            content=body,
            headers={
                "content-type": content_type or "application/x-www-form-urlencoded",
                "x-request-id": rid,
            },
            timeout=10,
        )
        assert (response.status_code, response.json()["error"]) == (400, error), body
        wait_for_records(file_records(log), lambda r, rid=rid: r["request_id"] == rid)
        time.sleep(0.1)  # a second record would be written by now
        records = [r for r in file_records(log)() if r["request_id"] == rid]
        assert len(records) == 1, body
        (record,) = records
        assert (record["rpc"], record["result"], record["reason"]) == ("POST /oauth/token", "deny", error)
        assert (record["who"], record["what"]) == ({}, {"action": "issue_token", "grant": grant})
    assert "hunter2" not in log.read_text()


def test_an_audit_file_that_cannot_be_opened_stops_the_start_with_a_message(tmp_path: Path) -> None:
    result = refused_start(
        {
            "WATCHWORD_DATA_DIR": str(tmp_path / "data"),
            "WATCHWORD_PORT": "0",
            "WATCHWORD_HTTP_PORT": "0",
            "WATCHWORD_METRICS_PORT": "0",
            "WATCHWORD_AUDIT_LOG_FILE": str(tmp_path / "missing-directory" / "audit.log"),
        }
    )
    assert "cannot open audit_log_file" in result.stderr
