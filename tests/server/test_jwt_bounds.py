"""Issue #12 through the real server: tenant (C4), subject (C7) and Watchword (C8) tokens with time claims
out of range, the lifetime a tenant may claim, unknown key vs wrong signature, and bare tokens (T6)
compared exactly as sent."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt
import pytest

from watchword import reasons
from watchword.v1 import auth_pb2, common_pb2

from support.server import WatchwordProcess
from support.tenants import API_KEY, create_credential, make_tenant
from support.tokens import watchword_token

LIFETIME = 600
FAR_FUTURE = 10**12  # past the year 9999: datetime.fromtimestamp used to raise on it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("bounds")
    env = {
        "WATCHWORD_AUDIT_LOG_FILE": str(directory / "audit.log"),
        "WATCHWORD_MAX_TENANT_TOKEN_LIFETIME_SECONDS": str(LIFETIME),
    }
    with WatchwordProcess(directory / "data", env=env) as process:
        yield process


@pytest.fixture(scope="module")
def world(server):
    tenant = make_tenant(server, "bounds")
    org = tenant.organization_id
    signing = create_credential(
        server,
        kind=common_pb2.CREDENTIAL_KIND_TENANT_SIGNING_SECRET,
        organization_id=org,
        name="signing",
        permissions=["object.read"],
    )
    connector = create_credential(
        server,
        kind=common_pb2.CREDENTIAL_KIND_CONNECTOR,
        organization_id=org,
        name="c",
        permissions=["track"],
    )
    api_key = create_credential(
        server, kind=API_KEY, organization_id=org, name="k", permissions=["event.send"]
    )
    return org, signing, connector, api_key


def tenant_token(signing, **claims: object) -> str:
    now = int(time.time())
    body = {"sub": "s", "iat": now, "exp": now + 300, "iss": "t", "jti": uuid.uuid4().hex, **claims}
    body = {name: value for name, value in body.items() if value is not None}
    return jwt.encode(body, signing.secret.encode(), headers={"kid": signing.credential.id})


def subject_token(connector, secret: str = "", **claims: object) -> str:
    now = int(time.time())
    body = {"iat": now, "exp": now + 300, "io.hull.asUser": {"id": "u"}, **claims}
    body = {name: value for name, value in body.items() if value is not None}
    return jwt.encode(body, (secret or connector.secret).encode())


def http(*headers: tuple[str, str]) -> common_pb2.CredentialSource:
    kvs = [common_pb2.KeyValue(name=name, value=value) for name, value in headers]
    return common_pb2.CredentialSource(http=common_pb2.HttpRequest(method="POST", headers=kvs))


def bare(token: str, client_id: str = "") -> common_pb2.CredentialSource:
    return common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=token, client_id=client_id))


def paired(connector, token: str, client_id: str = "") -> common_pb2.CredentialSource:
    return http(("Hull-App-Id", client_id or connector.credential.id), ("Hull-Access-Token", token))


def refusal(server: WatchwordProcess, source: common_pb2.CredentialSource) -> auth_pb2.Refusal:
    response = server.auth().Authenticate(auth_pb2.AuthenticateRequest(credential=source), timeout=10)
    assert response.WhichOneof("result") == "refusal", response
    return response.refusal


def test_s8_c4_c7_c8_far_future_time_claims_are_refused_with_a_reason(server, world) -> None:
    org, signing, connector, _ = world
    for name in ("exp", "nbf", "iat"):
        sources = {
            "C4 bearer": http(("Authorization", f"Bearer {tenant_token(signing, **{name: FAR_FUTURE})}")),
            "C4 bare": bare(tenant_token(signing, **{name: 1e12})),
            "C7 pair": paired(connector, subject_token(connector, **{name: FAR_FUTURE})),
            "C8 bearer": http(
                ("Authorization", f"Bearer {watchword_token(server.data_dir, org, **{name: FAR_FUTURE})}")
            ),
        }
        for what, source in sources.items():
            assert refusal(server, source).reason == reasons.TOKEN_CLAIMS_INVALID, (name, what)


def test_s8_t7_far_future_entry_in_a_batch_is_that_entry_s_refusal(server, world) -> None:
    _, _signing, connector, _ = world
    good = paired(connector, subject_token(connector))
    bad = paired(connector, subject_token(connector, exp=FAR_FUTURE))
    entries = [auth_pb2.AuthorizeRequest(credential=source, action="track") for source in (good, bad, good)]
    results = (
        server.auth().AuthorizeBatch(auth_pb2.AuthorizeBatchRequest(entries=entries), timeout=10).results
    )
    assert [r.refusal.reason for r in results] == ["", reasons.TOKEN_CLAIMS_INVALID, ""]
    # The entries around it are authenticated and decided as usual.
    assert results[0].principal.kind == results[2].principal.kind == common_pb2.CREDENTIAL_KIND_SUBJECT_JWT


def test_c4_c7_lifetime_over_the_setting_is_refused(server, world) -> None:
    _, signing, connector, _ = world
    now = int(time.time())
    too_long = {"iat": now, "exp": now + LIFETIME + 60}
    backdated = {"iat": now - 3600, "exp": now + 60}  # exp - iat is what it claims
    for claims in (too_long, backdated):
        assert (
            refusal(server, bare(tenant_token(signing, **claims))).reason == reasons.TOKEN_LIFETIME_TOO_LONG
        )
        token = subject_token(connector, **claims)
        assert refusal(server, paired(connector, token)).reason == reasons.TOKEN_LIFETIME_TOO_LONG
    within = {"iat": now, "exp": now + LIFETIME - 60}
    response = server.auth().Authenticate(
        auth_pb2.AuthenticateRequest(credential=bare(tenant_token(signing, **within))), timeout=10
    )
    assert response.principal.kind == common_pb2.CREDENTIAL_KIND_TENANT_JWT


def _audit_details(server: WatchwordProcess) -> list[str]:
    log = Path(server.data_dir).parent / "audit.log"
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        details = [
            line["what"].get("detail", "")
            for line in lines
            if line.get("reason") == "token_signature_invalid"
        ]
        if len(details) >= 4 or time.monotonic() > deadline:
            return details
        time.sleep(0.05)


def test_c4_c7_unknown_key_and_wrong_signature_look_the_same_to_the_caller(server, world) -> None:
    _, signing, connector, _ = world
    unknown_kid = jwt.encode({"sub": "s"}, signing.secret.encode(), headers={"kid": "0123456789abcdef"})
    wrong_signature = tenant_token(signing, _="x").rsplit(".", 1)[0] + ".c2lnbmF0dXJlLXdyb25n"
    c4 = [refusal(server, bare(token)) for token in (unknown_kid, wrong_signature)]
    unknown_connector = paired(connector, subject_token(connector), client_id="0123456789abcdef")
    wrong_secret = paired(
        connector, subject_token(connector, secret="not-the-connector-secret-but-32-bytes-long")
    )
    c7 = [refusal(server, source) for source in (unknown_connector, wrong_secret)]
    for unknown, wrong in (c4, c7):
        assert unknown.reason == wrong.reason == reasons.TOKEN_SIGNATURE_INVALID
        assert unknown.message == wrong.message
    # The audit log may tell them apart (a fixed text, never what the caller sent).
    details = _audit_details(server)
    assert any("kid" in detail for detail in details), details
    assert any("connector" in detail for detail in details), details
    assert any("signature does not verify" in detail for detail in details), details


@pytest.mark.parametrize("space", ["\u00a0", "\u2003", "\u3000", " ", "\t", "\n"])
def test_t6_bare_secret_with_surrounding_whitespace_is_refused_not_trimmed(server, world, space) -> None:
    _, _, _, api_key = world
    for sent in (api_key.secret + space, space + api_key.secret):
        found = refusal(server, bare(sent))
        assert found.reason == reasons.CREDENTIAL_MALFORMED
        assert "whitespace" in found.message
    response = server.auth().Authenticate(
        auth_pb2.AuthenticateRequest(credential=bare(api_key.secret)), timeout=10
    )
    assert response.principal.credential_id == api_key.credential.id
