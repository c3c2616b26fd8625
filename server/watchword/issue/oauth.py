"""RFC 6749's answers as data: §5.1 for an issued token, §5.2 for a refusal. Both transports of the token
endpoint send these fields; only the envelope differs (a proto message, or JSON with an HTTP status)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from watchword import reasons
from watchword.domain import ClientAuthentication, Refusal
from watchword.issue.tokens import IssuedToken

INVALID_REQUEST = "invalid_request"
INVALID_CLIENT = "invalid_client"
INVALID_GRANT = "invalid_grant"
UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"
INVALID_SCOPE = "invalid_scope"
# I7: an authenticated client without the grant for introspection or revocation (RFC 6749 §5.2's code;
# 403, as the client is known and only not allowed), and RFC 7009 §2.2.1's refusal of a kind of token
# the revocation endpoint does not revoke.
UNAUTHORIZED_CLIENT = "unauthorized_client"
UNSUPPORTED_TOKEN_TYPE = "unsupported_token_type"

# RFC 6749 §5.2: the HTTP status of each error Watchword answers with; 401 only for a failed client
# authentication (which the HTTP door challenges when the client tried the Authorization header).
HTTP_STATUS: Mapping[str, int] = MappingProxyType(
    {
        INVALID_REQUEST: 400,
        INVALID_CLIENT: 401,
        INVALID_GRANT: 400,
        UNSUPPORTED_GRANT_TYPE: 400,
        INVALID_SCOPE: 400,
        UNAUTHORIZED_CLIENT: 403,
        UNSUPPORTED_TOKEN_TYPE: 400,
    }
)
# Not an answer to the request but Watchword unable to give one (the store down, a fault): RFC 6749
# §4.1.2.1's code, 503 so the client retries later. Only the HTTP door answers it; gRPC has its statuses.
TEMPORARILY_UNAVAILABLE = "temporarily_unavailable"
FAULT_STATUS: Mapping[str, int] = MappingProxyType({TEMPORARILY_UNAVAILABLE: 503})
TOKEN_TYPE = "Bearer"  # RFC 6750: whoever holds the token may use it


@dataclass(frozen=True, slots=True)
class OAuthError:
    """RFC 6749 §5.2; `error` is one of the codes in HTTP_STATUS or FAULT_STATUS."""

    error: str
    description: str
    # A reason code (`watchword.reasons`) the HTTP answer names beside `error`, where saying it tells the
    # caller nothing it may not know: why its own certificate was refused (C10). Empty: none.
    reason: str = ""

    @property
    def status(self) -> int:
        """The HTTP status the token endpoint answers with."""
        return HTTP_STATUS.get(self.error) or FAULT_STATUS[self.error]

    def fields(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}

    def http_fields(self) -> dict[str, str]:
        """The JSON body of an HTTP answer: RFC 6749 §5.2's fields, and the reason when there is one."""
        return {**self.fields(), "reason": self.reason} if self.reason else self.fields()


Outcome = IssuedToken | OAuthError

# C9/I2: one answer for every refused client authentication, so a caller cannot tell an unknown client
# from a known one with a wrong secret, key or method.
CLIENT_REFUSED = OAuthError(INVALID_CLIENT, "client authentication failed")


def client_refused(refusal: Refusal, client: ClientAuthentication) -> OAuthError:
    """`invalid_client` for a refused client authentication: CLIENT_REFUSED, or for a client that
    authenticated with its TLS certificate (RFC 8705 §2, C10) the refusal's reason and message, which
    concern the certificate the caller itself presented (nothing about other clients)."""
    if not (client.uses_certificate or refusal.reason == reasons.CLIENT_CERTIFICATE_MISSING):
        return CLIENT_REFUSED
    return OAuthError(INVALID_CLIENT, refusal.message, refusal.reason)


def token_fields(token: IssuedToken) -> dict[str, str | int]:
    """RFC 6749 §5.1's parameters of an issued token."""
    return {
        "access_token": token.access_token,
        "token_type": TOKEN_TYPE,
        "expires_in": token.expires_in,
        "scope": " ".join(token.scope),
    }
