"""Extract: turn what arrived (an HTTP request's parts or a bare token) into exactly one credential.

Transports handled today: T1 (`Authorization: Bearer`) and T6 (a bare token). Others are recognised
and refused with `transport_not_allowed` until their verifiers land, so nothing is silently ignored.
Nothing here touches storage or keys.
"""

from __future__ import annotations

import re

from watchword import reasons
from watchword.domain import HttpParts, PresentedCredential, Refusal, Transport

# RFC 6750 §2.1 b64token.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_BEARER_CHALLENGE = 'Bearer realm="watchword"'


def _refuse(reason: str, message: str) -> Refusal:
    return Refusal(reason=reason, message=message, www_authenticate=_BEARER_CHALLENGE)


def _check_token(token: str, max_bytes: int) -> Refusal | None:
    if not token:
        return _refuse(reasons.CREDENTIAL_MALFORMED, "the credential is empty")
    if len(token) > max_bytes:
        return _refuse(reasons.CREDENTIAL_MALFORMED, f"the credential is longer than {max_bytes} bytes")
    if _B64TOKEN.fullmatch(token) is None:
        return _refuse(reasons.CREDENTIAL_MALFORMED, "the credential contains characters no token has")
    return None


def _from_authorization(value: str, max_bytes: int) -> PresentedCredential | Refusal:
    scheme, _, rest = value.strip().partition(" ")
    scheme = scheme.lower()
    token = rest.strip()
    if scheme == "bearer":
        return _check_token(token, max_bytes) or PresentedCredential(token=token, transport=Transport.BEARER)
    if scheme == "basic":
        return _refuse(reasons.TRANSPORT_NOT_ALLOWED, "HTTP Basic is not accepted by this deployment yet")
    return _refuse(reasons.CREDENTIAL_MALFORMED, "the Authorization header uses an unsupported scheme")


def from_bare(token: str, client_id: str, max_bytes: int) -> PresentedCredential | Refusal:
    """T6: a bare token, e.g. the auth message of a persistent connection."""
    token = token.strip()
    if not token:
        return _refuse(reasons.CREDENTIAL_MISSING, "no credential was given")
    return _check_token(token, max_bytes) or PresentedCredential(
        token=token, transport=Transport.BARE, client_id=client_id
    )


def from_http(request: HttpParts, max_bytes: int) -> PresentedCredential | Refusal:
    """Every place a credential may be in an HTTP request; exactly one distinct credential is accepted."""
    values = {value.strip() for name, value in request.headers if name.lower() == "authorization"}
    if len(values) > 1:
        return _refuse(reasons.CREDENTIAL_AMBIGUOUS, "the request carries more than one credential")
    if not values:
        return _refuse(reasons.CREDENTIAL_MISSING, "the request carries no credential")
    return _from_authorization(values.pop(), max_bytes)
