"""Inputs the fuzz tests (tests/fuzz/) found crashing Watchword, kept as plain regression tests."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from watchword import config
from watchword.api import errors
from watchword.decide.catalogue import Catalogue, CatalogueError
from watchword.jose import jwk
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.fuzz_messages import error_reason
from support.server import WatchwordProcess
from support.tenants import make_tenant


@pytest.mark.parametrize("alg", [[], ["RS256"], {}, {"RS256": 1}])
def test_c1_jwk_whose_alg_is_an_array_or_object_is_refused_not_a_type_error(alg: object) -> None:
    """A JWKS from an issuer (or a client's registered public JWK) with `"alg": []` raised TypeError."""
    with pytest.raises(jwk.KeySetError, match="alg must be a string"):
        jwk.load_jwk({"kty": "EC", "crv": "P-256", "alg": alg})
    with pytest.raises(jwk.KeySetError, match="alg must be a string"):
        jwk.load_jwks({"keys": [{"kty": "EC", "crv": "P-256", "alg": alg}]})


@pytest.mark.parametrize("crv", [[], ["P-256"], {}])
def test_c1_ec_jwk_whose_crv_is_an_array_or_object_is_refused_not_a_type_error(crv: object) -> None:
    with pytest.raises(jwk.KeySetError, match="unsupported EC curve"):
        jwk.load_jwk({"kty": "EC", "crv": crv})
    with pytest.raises(jwk.KeySetError, match="unsupported EC curve"):
        jwk.load_jwks({"keys": [{"kty": "EC", "crv": crv}]})


def test_a_settings_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """tomllib raised UnicodeDecodeError, which `watchword serve` printed as a traceback."""
    path = tmp_path / "watchword.toml"
    path.write_bytes(b'host = "\xff"\n')
    with pytest.raises(config.ConfigError, match="not UTF-8"):
        config.load(path, environ={})


def test_a_settings_path_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="cannot read configuration file"):
        config.load(tmp_path, environ={})
    with pytest.raises(config.ConfigError, match="cannot read configuration file"):
        config.load(environ={"WATCHWORD_CONFIG": str(tmp_path)})


def test_a_catalogue_file_that_is_not_utf8_is_a_catalogue_error(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.toml"
    path.write_bytes(b'[roles]\nowner = "\xff"\n')
    with pytest.raises(CatalogueError, match="cannot read catalogue file"):
        Catalogue.load(path)


# ---- through the real server: each of these was answered INTERNAL (or lost its reason) -----------------


def expect_invalid_field(call: Callable[[], object], field: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    assert error_reason(error) == errors.FIELD_INVALID
    assert field in (error.details() or "")
    return error


@pytest.mark.parametrize("url", ["http://[", "https://[::1/hook", "http://[::1"])
def test_o5_sign_outbound_with_an_unclosed_ipv6_bracket_in_the_url_is_invalid_argument(
    server: WatchwordProcess, url: str
) -> None:
    """urlsplit raised ValueError("Invalid IPv6 URL"), which the guard answered as INTERNAL."""
    request = auth_pb2.SignOutboundRequest(outbound_credential_id="0123456789abcdef", url=url, method="POST")
    expect_invalid_field(lambda: server.auth().SignOutbound(request, timeout=10), "url")


def test_o3_outbound_credential_with_an_unclosed_bracket_in_its_token_url_is_invalid_argument(
    server: WatchwordProcess,
) -> None:
    spec = admin_pb2.OutboundCredential(
        organization_id="org",
        name="fuzz",
        scheme=admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS,
        token_url="https://[::1/token",
        client_id="client",
    )
    request = admin_pb2.CreateOutboundCredentialRequest(
        credential=spec, secrets=admin_pb2.OutboundSecrets(client_secret="s")
    )
    expect_invalid_field(
        lambda: server.admin().CreateOutboundCredential(request, metadata=server.admin_metadata, timeout=10),
        "credential.token_url",
    )


def test_c9_oauth_client_whose_public_jwk_alg_is_an_array_is_invalid_argument(
    server: WatchwordProcess,
) -> None:
    tenant = make_tenant(server, "fuzz-regression")
    request = admin_pb2.CreateCredentialRequest(
        kind=common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT,
        organization_id=tenant.organization_id,
        name="client",
        client_auth_method=4,  # private_key_jwt
        public_jwk='{"kty": "EC", "crv": "P-256", "alg": []}',
    )
    expect_invalid_field(
        lambda: server.admin().CreateCredential(request, metadata=server.admin_metadata, timeout=10),
        "public_jwk",
    )


def test_an_error_that_echoes_a_huge_request_value_keeps_its_status_and_reason(
    server: WatchwordProcess,
) -> None:
    """A 100 000-character unknown role was echoed into the status message; the trailers then passed the
    client's metadata limit and the answer arrived as RESOURCE_EXHAUSTED without its ErrorInfo."""
    membership = admin_pb2.Membership(organization_id="org", user_id="user", roles=["\U0001f600" * 100_000])
    request = admin_pb2.SetMembershipRequest(membership=membership)
    error = expect_invalid_field(
        lambda: server.admin().SetMembership(request, metadata=server.admin_metadata, timeout=10),
        "membership.roles",
    )
    assert len((error.details() or "").encode()) <= errors.MAX_STATUS_MESSAGE_BYTES


def _jws(header: dict[str, object], claims: dict[str, object]) -> str:
    def b64(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(claims)}.AA"


@pytest.mark.parametrize("typ", [[], {}, ["at+jwt"]])
def test_c8_token_whose_typ_is_an_array_or_object_is_refused_not_internal(
    server: WatchwordProcess, typ: object
) -> None:
    """A Watchword-issued-looking token with `"typ": []` made the verifier look a list up in a set."""
    token = _jws({"alg": "ES256", "typ": typ}, {"iss": "urn:watchword", "aud": "urn:watchword:api"})
    request = auth_pb2.AuthenticateRequest(
        credential=common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=token))
    )
    answer = server.auth().Authenticate(request, timeout=10)
    assert answer.WhichOneof("result") == "refusal"
    assert answer.refusal.reason == "token_claims_invalid"


@pytest.mark.parametrize("typ", [[], {}])
def test_c9_client_assertion_whose_typ_is_an_array_is_invalid_client_not_internal(
    server: WatchwordProcess, typ: object
) -> None:
    assertion = _jws({"alg": "HS256", "typ": typ}, {"iss": "0123456789abcdef", "sub": "0123456789abcdef"})
    client = auth_pb2.ClientAuthentication(
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=assertion,
    )
    request = auth_pb2.IssueTokenRequest(client_credentials=auth_pb2.ClientCredentialsGrant(client=client))
    answer = server.auth().IssueToken(request, timeout=10)
    assert answer.WhichOneof("result") == "error"
    assert answer.error.error == "invalid_client"
