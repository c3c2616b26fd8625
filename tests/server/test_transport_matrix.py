"""Every credential kind (C1-C9) over every transport (T1-T7): accepted exactly where the docs table
says, refused everywhere else, through the real server."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote_plus

import jwt
import pytest

from watchword import reasons
from watchword.v1 import auth_pb2, common_pb2

from support.jwks_server import JwksServer
from support.paths import ROOT
from support.server import WatchwordProcess
from support.tenants import API_KEY, APPLICATION_SECRET, STATIC_TOKEN, create_credential, make_tenant
from support.tokens import watchword_token

TRANSPORTS = ("T1", "T2", "T3", "T4", "T5", "T6", "T7")
ACCEPTED = {
    "C1": {"T1", "T3", "T6", "T7"},
    "C2": {"T1", "T6", "T7"},
    "C3": {"T1", "T3", "T6", "T7"},
    "C4": {"T1", "T3", "T6", "T7"},
    "C5": {"T1", "T2", "T6", "T7"},
    "C6": {"T4", "T5", "T6", "T7"},
    "C7": {"T4", "T5", "T6", "T7"},
    "C8": {"T1", "T3", "T6", "T7"},
    "C9": {"T2"},
}
REFUSALS = {
    reasons.TRANSPORT_NOT_ALLOWED,
    reasons.CREDENTIAL_UNKNOWN,
    reasons.TOKEN_KEY_UNKNOWN,
    reasons.TOKEN_SIGNATURE_INVALID,  # a JWT beside an id that names no connector (C7, issue #12)
    reasons.CREDENTIAL_MALFORMED,
    reasons.CLIENT_AUTH_METHOD_NOT_ALLOWED,
    reasons.TOKEN_CLAIMS_INVALID,  # a JWT beside a connector id that did not sign it
}
COOKIE = "ww_token"


@dataclass(frozen=True)
class Credential:
    token: str
    client_id: str  # what goes beside the token on paired transports (T2 user, T4/T5/T6 id)


@pytest.fixture(scope="module")
def idp():
    with JwksServer(algorithms=("ES256",)) as server:
        yield server


@pytest.fixture(scope="module")
def matrix_server(tmp_path_factory: pytest.TempPathFactory, idp: JwksServer):
    directory = tmp_path_factory.mktemp("matrix")
    config = directory / "watchword.toml"
    config.write_text(
        f'auth_cookie_name = "{COOKIE}"\nquery_credentials_enabled = true\n'
        f'[[issuers]]\nissuer = "{idp.issuer}"\naudiences = ["api"]\njwks_uri = "{idp.jwks_uri}"\n'
        "allow_insecure_http = true\n"
    )
    with WatchwordProcess(directory / "data", args=["--config", str(config)]) as process:
        yield process


@pytest.fixture(scope="module")
def credentials(matrix_server: WatchwordProcess, idp: JwksServer) -> dict[str, Credential]:
    server = matrix_server
    tenant = make_tenant(server, "matrix")
    org = tenant.organization_id

    def create(kind: int, **fields: object):
        return create_credential(server, kind=kind, organization_id=org, name="m", **fields)

    now = int(time.time())
    app_secret = create(APPLICATION_SECRET, application_id=tenant.application_id)
    static = create(STATIC_TOKEN)
    api_key = create(API_KEY, basic_auth_enabled=True)
    connector = create(common_pb2.CREDENTIAL_KIND_CONNECTOR, permissions=["track"])
    tenant_secret = create(common_pb2.CREDENTIAL_KIND_TENANT_SIGNING_SECRET)
    oauth = create(common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT, client_auth_method=1)
    tenant_claims = {"sub": "s", "iat": now, "exp": now + 600, "iss": "t", "jti": "j"}
    subject_claims = {
        "iat": now,
        "exp": now + 600,
        "iss": connector.credential.id,
        "io.hull.asUser": {"id": "u"},
    }
    idp_claims = {"iss": idp.issuer, "aud": "api", "sub": "user", "iat": now, "exp": now + 600}
    return {
        "C1": Credential(idp.sign(idp_claims), ""),
        "C2": Credential(app_secret.secret, app_secret.credential.id),
        "C3": Credential(static.secret, static.credential.id),
        "C4": Credential(
            jwt.encode(
                tenant_claims, tenant_secret.secret.encode(), headers={"kid": tenant_secret.credential.id}
            ),
            tenant_secret.credential.id,
        ),
        "C5": Credential(api_key.secret, org),
        "C6": Credential(connector.secret, connector.credential.id),
        "C7": Credential(jwt.encode(subject_claims, connector.secret.encode()), connector.credential.id),
        "C8": Credential(watchword_token(server.data_dir, org, exp=now + 600), ""),
        "C9": Credential(oauth.secret, oauth.credential.id),
    }


def _http(*headers: tuple[str, str], query: str = "") -> common_pb2.CredentialSource:
    kvs = [common_pb2.KeyValue(name=n, value=v) for n, v in headers]
    return common_pb2.CredentialSource(
        http=common_pb2.HttpRequest(method="POST", path="/", headers=kvs, query=query)
    )


def _paired(c: Credential) -> common_pb2.CredentialSource:
    return _http(("Hull-App-Id", c.client_id), ("Hull-Access-Token", c.token))


PRESENT: dict[str, Callable[[Credential], common_pb2.CredentialSource]] = {
    "T1": lambda c: _http(("Authorization", f"Bearer {c.token}")),
    "T2": lambda c: _http(
        ("Authorization", "Basic " + base64.b64encode(f"{c.client_id or 'x'}:{c.token}".encode()).decode())
    ),
    "T3": lambda c: _http(("Cookie", f"other=1; {COOKIE}={c.token}")),
    "T4": _paired,
    "T5": lambda c: _http(query=f"id={quote_plus(c.client_id or 'x')}&secret={quote_plus(c.token)}"),
    "T6": lambda c: common_pb2.CredentialSource(
        bare=common_pb2.BareCredential(token=c.token, client_id=c.client_id if c.client_id else "")
    ),
}


def _bare_for(kind: str, c: Credential) -> common_pb2.CredentialSource:
    # Only the paired kinds send their id beside a bare token; the others send the token alone.
    client_id = c.client_id if kind in {"C6", "C7"} else ""
    return common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=c.token, client_id=client_id))


@pytest.mark.parametrize("kind", sorted(ACCEPTED))
def test_each_credential_kind_over_each_transport(matrix_server, credentials, kind: str) -> None:
    credential = credentials[kind]
    sources = {transport: PRESENT[transport](credential) for transport in TRANSPORTS if transport != "T7"}
    sources["T6"] = _bare_for(kind, credential)
    outcomes: dict[str, str] = {}
    for transport, source in sources.items():
        response = matrix_server.auth().Authenticate(
            auth_pb2.AuthenticateRequest(credential=source), timeout=10
        )
        outcomes[transport] = "accepted" if response.HasField("principal") else response.refusal.reason
        if response.HasField("principal"):
            assert response.principal.kind == int(kind[1:]), (kind, transport)
    # T7: one batch entry carrying the credential the way its kind travels over HTTP.
    entry_source = _paired(credential) if kind in {"C6", "C7"} else sources["T2" if kind == "C9" else "T1"]
    batch = auth_pb2.AuthorizeBatchRequest(
        entries=[auth_pb2.AuthorizeRequest(credential=entry_source, action="track")]
    )
    result = matrix_server.auth().AuthorizeBatch(batch, timeout=10).results[0]
    outcomes["T7"] = "accepted" if result.HasField("principal") else result.refusal.reason
    if kind == "C9":
        outcomes.pop("T7")  # OAuth clients authenticate at the token endpoint, not per batch entry
    for transport, outcome in outcomes.items():
        if transport in ACCEPTED[kind]:
            assert outcome == "accepted", (kind, transport, outcome)
        else:
            assert outcome in REFUSALS, (kind, transport, outcome)


def test_the_documented_table_is_the_one_tested() -> None:
    docs = ROOT / "docs" / "guides" / "credentials" / "index.md"
    section = docs.read_text().split("## Credentials and where they may arrive", 1)[1].split("\n## ", 1)[0]
    for kind, transports in ACCEPTED.items():
        row = next(line for line in section.splitlines() if line.startswith(f"| {kind} "))
        for transport in TRANSPORTS:
            if kind == "C9":
                continue
            assert (transport in row) == (transport in transports), (kind, transport, row)
