"""O1-O4: what an outbound credential must hold to be usable, checked by one validator.

The admin API checks a new credential with these functions before storing it, SignOutbound checks a stored
row again before signing (rows written before a check existed), and `TokenEndpoint` checks what the token
fetcher is handed: so whatever the admin API stores, the fetcher can use. Errors name the setting, never
its value.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from watchword.domain import ClientAuthMethod
from watchword.outbound import header_values
from watchword.outbound.network_guard import parse_token_url
from watchword.outbound.secrets import OutboundSecrets

__all__ = [
    "PRIVATE_KEY_ALGORITHMS",
    "RESERVED_FORM_FIELDS",
    "ClientAuthMethod",
    "CredentialError",
    "OutboundScheme",
    "check_header_secrets",
    "check_private_key",
    "check_static_scheme",
    "check_token_client",
    "stored_member",
]


class OutboundScheme(enum.IntEnum):
    """How an outbound request proves itself; values match admin.proto's OutboundScheme and the store."""

    NONE = 1  # no credential header, only a payload signature (O5)
    BEARER = 2  # O1
    BASIC = 3  # O2
    OAUTH2_CLIENT_CREDENTIALS = 4  # O3/O4


_Member = TypeVar("_Member", OutboundScheme, ClientAuthMethod)


def stored_member(kind: type[_Member], value: int) -> _Member | None:
    """A stored (or received) integer as its enum member; None for a value no version of Watchword
    writes, for the caller to refuse."""
    try:
        return kind(value)
    except ValueError:
        return None


PRIVATE_KEY_ALGORITHMS = ("ES256", "RS256")  # O4; the first is the default
SECRET_JWT_ALGORITHMS = ("", "HS256")  # client_secret_jwt: "" means HS256
# Form fields Watchword sets itself; extra fields may not override them (`scope` has its own setting).
RESERVED_FORM_FIELDS = frozenset(
    {"grant_type", "client_id", "client_secret", "client_assertion", "client_assertion_type", "scope"}
)
MIN_RSA_BITS = 2048


class CredentialError(ValueError):
    """An unusable setting: `field` is its name (as in admin.proto, `client_secret` for the secret),
    the message says why and names the field, never its value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_token_client(
    *,
    token_url: str,
    client_id: str,
    auth_method: object,
    assertion_algorithm: str,
    extra_form_fields: Sequence[tuple[str, str]],
    has_client_secret: bool,
) -> None:
    """O3/O4: the token server, the client and how it authenticates. Raises CredentialError."""
    _check_token_url(token_url)
    if not client_id.strip():
        raise CredentialError("client_id", "client_id is required")
    if not isinstance(auth_method, ClientAuthMethod):
        names = [method.rfc_name for method in ClientAuthMethod]
        raise CredentialError("client_auth_method", f"client_auth_method must be one of {names}")
    _check_algorithm(auth_method, assertion_algorithm)
    if auth_method is not ClientAuthMethod.PRIVATE_KEY_JWT and not has_client_secret:
        raise CredentialError("client_secret", f"{auth_method.rfc_name} needs a client_secret")
    check_form_fields(extra_form_fields)


def _check_token_url(url: object) -> None:
    if not isinstance(url, str):
        raise CredentialError("token_url", "token_url is not a valid URL")
    try:
        parse_token_url(url)  # the parser the network guard uses on every fetch
    except ValueError as exc:
        raise CredentialError("token_url", str(exc)) from None


def _check_algorithm(method: ClientAuthMethod, algorithm: str) -> None:
    if method is ClientAuthMethod.PRIVATE_KEY_JWT and algorithm not in PRIVATE_KEY_ALGORITHMS:
        allowed = " or ".join(PRIVATE_KEY_ALGORITHMS)
        raise CredentialError("assertion_algorithm", f"private_key_jwt needs assertion_algorithm {allowed}")
    if method is ClientAuthMethod.CLIENT_SECRET_JWT and algorithm not in SECRET_JWT_ALGORITHMS:
        raise CredentialError("assertion_algorithm", "client_secret_jwt signs with HS256 only")


def check_form_fields(fields: Sequence[tuple[str, str]]) -> None:
    """O4 extra form fields: named, none overriding a field Watchword sets, none given twice."""
    seen: set[str] = set()
    for index, pair in enumerate(fields):
        where = f"extra_form_fields[{index}].name"
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(part, str) for part in pair)):
            raise CredentialError(
                "extra_form_fields", "extra_form_fields must be (name, value) pairs of strings"
            )
        name = pair[0]
        if not name.strip():
            raise CredentialError(where, "an extra form field needs a name")
        if name in RESERVED_FORM_FIELDS:
            raise CredentialError(where, f"extra form field {name!r} would override a field Watchword sets")
        if name in seen:
            raise CredentialError(where, f"extra form field {name!r} is given twice (RFC 6749 §3.2)")
        seen.add(name)


def check_private_key(key: object, algorithm: str) -> None:
    """O4: the loaded private key fits `algorithm` (RS256: RSA of 2048+ bits; ES256: P-256)."""
    if algorithm == "RS256":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CredentialError("private_key", "RS256 needs an RSA private key")
        if key.key_size < MIN_RSA_BITS:
            raise CredentialError("private_key", f"RS256 needs an RSA key of at least {MIN_RSA_BITS} bits")
    elif not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CredentialError("private_key", "ES256 needs a P-256 private key")


def check_header_secrets(scheme: OutboundScheme, username: str, secrets: OutboundSecrets) -> None:
    """O1/O2: the bearer token, user-id and password can go into an Authorization header."""
    if scheme is OutboundScheme.BEARER:
        _header_part("bearer_token", "bearer token", header_values.bearer_token_problem(secrets.bearer_token))
    elif scheme is OutboundScheme.BASIC:
        _header_part("username", "username", header_values.basic_part_problem(username, user_id=True))
        _header_part("password", "password", header_values.basic_part_problem(secrets.password))


def _header_part(field: str, label: str, problem: str | None) -> None:
    if problem:
        raise CredentialError(field, f"the {label} {problem}")


def check_static_scheme(
    scheme: OutboundScheme, username: str, secrets: OutboundSecrets, *, sign_payload: bool
) -> None:
    """NONE, O1 and O2 at creation: what each scheme needs is given, and fits a header."""
    if scheme is OutboundScheme.NONE and not sign_payload:
        raise CredentialError("sign_payload", "a credential with no scheme must sign payloads")
    if scheme is OutboundScheme.BEARER and not secrets.bearer_token:
        raise CredentialError("bearer_token", "bearer_token is required for a Bearer credential")
    check_header_secrets(scheme, username, secrets)
    if scheme is OutboundScheme.BASIC and not secrets.password:
        raise CredentialError("password", "password is required for a Basic credential")
