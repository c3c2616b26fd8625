"""O3/O4: reading a token server's answer (RFC 6749 §5.1 success, §5.2 error, RFC 9110 Retry-After).

`read_answer` turns status, headers and the bounded body into `(access_token, expires_in)` or an
OutboundTokenError: 5xx and 429 are retryable (with the server's Retry-After), `invalid_client`/401 and
other 4xx are not, nor is anything unusable. Only a Bearer `token_type` is accepted, and the access token
must fit an Authorization header. `error_description` is never read: a server may echo anything there,
secrets included.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from watchword.outbound import header_values
from watchword.outbound.network_guard import OutboundTokenError

__all__ = ["MAX_EXPIRES_IN_SECONDS", "MAX_RETRY_AFTER_SECONDS", "parse_token_response", "read_answer"]

# A longer Retry-After is cut to this: a misconfigured server must not stall deliveries for hours.
MAX_RETRY_AFTER_SECONDS = 300.0
MAX_EXPIRES_IN_SECONDS = 365 * 24 * 3600.0  # bounds expires_at, so callers can turn it into a datetime
_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")
# RFC 6749 §A.7: `error` is NQSCHAR; bounded here because it ends up in messages.
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}")


def invalid(detail: str) -> OutboundTokenError:
    return OutboundTokenError("token_response_invalid", detail, retryable=False)


def read_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes | None,
    problem: str,
    *,
    where: str,
    default_expires_in: float,
) -> tuple[str, float]:
    """The token and its lifetime from a 200, else the error the status and body call for. `body` is
    None when it could not be read within bounds (`problem` says why); `where` is the redacted URL."""
    if status == 200:
        if body is None:
            raise invalid(f"the answer of {where} {problem}")
        return parse_token_response(body, default_expires_in)
    if status == 429 or status >= 500:
        raise OutboundTokenError(
            "token_server_error",
            f"{where} answered HTTP {status}",
            retryable=True,
            retry_after=retry_after(headers.get("retry-after")),
        )
    if 400 <= status < 500:
        raise _refusal(status, oauth_error_code(body), where)
    raise invalid(f"{where} answered HTTP {status} instead of 200")


def _refusal(status: int, code: str | None, where: str) -> OutboundTokenError:
    """RFC 6749 §5.2: a 401 or `invalid_client` is about the client's credentials; the rest about the
    request. Neither is retried: asking again the same way gets the same answer."""
    said = f"HTTP {status}, {code or 'no error code'}"
    if status == 401 or code == "invalid_client":
        return OutboundTokenError(
            "token_server_rejected_client",
            f"{where} refused the client credentials ({said})",
            retryable=False,
        )
    return OutboundTokenError(
        "token_server_refused", f"{where} refused the request ({said})", retryable=False
    )


def parse_token_response(body: bytes, default_expires_in: float) -> tuple[str, float]:
    """RFC 6749 §5.1: `access_token` and `expires_in` (the default when absent) from a 200 answer."""
    document = _json_object(body)
    access_token = document.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise invalid("the token response has no access_token")
    problem = header_values.bearer_token_problem(access_token)
    if problem:
        # It becomes a header value: CR, LF or a space would break (or inject into) the delivery request.
        raise invalid(f"the access_token has characters a Bearer header cannot carry (it {problem})")
    token_type = document.get("token_type", "Bearer")  # REQUIRED by RFC 6749, but some servers omit it
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        # DPoP, MAC, ...: Watchword sends `Authorization: Bearer`, which would be wrong for them.
        raise invalid("the token_type is not Bearer")
    return access_token, _expires_in(document, default_expires_in)


def _json_object(body: bytes) -> dict[str, object]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise invalid("the token response is not JSON") from None
    if not isinstance(document, dict):
        raise invalid("the token response is not a JSON object")
    return document


def _expires_in(document: dict[str, object], default: float) -> float:
    value = document.get("expires_in")
    if value is None:
        return default
    if isinstance(value, str) and _DELTA_SECONDS.fullmatch(value.strip()):
        return min(float(value), MAX_EXPIRES_IN_SECONDS)  # some servers send a numeric string
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid("expires_in is not a number")
    if isinstance(value, int):
        value = min(value, int(MAX_EXPIRES_IN_SECONDS))  # before float(): 10**400 would overflow
    if not math.isfinite(value) or value < 0:
        raise invalid("expires_in is not a finite non-negative number")
    return min(float(value), MAX_EXPIRES_IN_SECONDS)


def oauth_error_code(body: bytes | None) -> str | None:
    """The `error` of an RFC 6749 §5.2 answer, if it has a sane one."""
    if not body:
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    code = document.get("error") if isinstance(document, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else None


def retry_after(value: str | None) -> float | None:
    """Retry-After (RFC 9110 §10.2.3) as seconds from now: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, min((when - datetime.now(UTC)).total_seconds(), MAX_RETRY_AFTER_SECONDS))
