"""The `WWW-Authenticate` challenge of a 401 for a refused credential, one rule for every place Watchword
answers HTTP (Envoy's ext_authz, the refusal Authenticate and Authorize return for the Python client's
middleware and other callers).

- The scheme is the one the client used: `Basic` for `Authorization: Basic` (RFC 7617), `Bearer`
  (RFC 6750) for every other transport.
- A Bearer challenge for a credential that was sent and refused carries `error="invalid_token"` (RFC 6750
  §3.1: bad, expired, revoked or malformed); a request that sent none gets none (§3.1: "SHOULD NOT").
"""

from __future__ import annotations

from collections.abc import Iterable

from watchword import reasons

BEARER = 'Bearer realm="watchword"'
INVALID_TOKEN = 'Bearer realm="watchword", error="invalid_token"'
BASIC = 'Basic realm="watchword"'


def used_basic(headers: Iterable[tuple[str, str]]) -> bool:
    """Whether an Authorization header of the request uses the Basic scheme (any case)."""
    return any(
        name.lower() == "authorization" and value.strip()[:6].lower() == "basic " for name, value in headers
    )


def for_refusal(reason: str, headers: Iterable[tuple[str, str]]) -> str:
    if used_basic(headers):
        return BASIC
    return BEARER if reason == reasons.CREDENTIAL_MISSING else INVALID_TOKEN
