"""Registered JWT claims (RFC 7519 §4.1), checked after the signature verified.

Order of the checks, so each refusal has one reason: required claims present, registered claims of the right
type (a time claim: a finite number of seconds between 1970 and `MAX_TIME`), issuer, audience, then time
(`exp`, `nbf`, `iat`) with a small bounded leeway, then the lifetime the token claims (when bounded).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Mapping

from watchword import reasons

MAX_LEEWAY_SECONDS = 120
# Latest time a time claim may name: 3000-01-01T00:00:00Z. Far beyond any real token, and far enough from
# datetime's (and protobuf Timestamp's) year 9999 that any conversion or arithmetic on it cannot fail.
MAX_TIME = 32503680000

_TIME_CLAIMS = ("exp", "nbf", "iat")
_STRING_CLAIMS = ("iss", "sub", "jti")
_ABSENT = object()


class ClaimsError(ValueError):
    """A refused claim set; `reason` is one of the token_* codes in `watchword.reasons`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def validate(
    claims: Mapping[str, object],
    *,
    now: float,
    leeway: float,
    issuer: str | None,
    audience: str | Collection[str] | None,
    required: Collection[str] = ("exp",),
    max_lifetime: float | None = None,
) -> None:
    """Raise ClaimsError unless the claims fit; ValueError for a bad `now`, `leeway` or `audience`.

    `max_lifetime` (seconds) bounds what the token claims: `exp - iat`, and `exp - now` (beyond the leeway),
    so a token without `iat` cannot claim more either."""
    _check_arguments(now, leeway)
    expected_audiences = _expected_audiences(audience)
    for name in required:
        if name not in claims:
            raise ClaimsError(reasons.TOKEN_CLAIMS_INVALID, f"the required claim {name!r} is missing")
    # Registered claims of the right type (one pass, in line: this runs for every token verified).
    exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
    for name, value in zip(_TIME_CLAIMS, (exp, nbf, iat), strict=True):
        if (value is not None or name in claims) and not _is_time(value):
            raise ClaimsError(
                reasons.TOKEN_CLAIMS_INVALID,
                f"the claim {name!r} is not a number of seconds between 1970 and the year 3000",
            )
    for name in _STRING_CLAIMS:
        value = claims.get(name, _ABSENT)
        if value is not _ABSENT and not isinstance(value, str):
            raise ClaimsError(reasons.TOKEN_CLAIMS_INVALID, f"the claim {name!r} is not a string")
    aud = claims.get("aud")
    if aud is not None or "aud" in claims:
        _audiences(aud)
    if issuer is not None and claims.get("iss") != issuer:
        raise ClaimsError(reasons.TOKEN_ISSUER_UNKNOWN, "the token's iss is not the expected issuer")
    if expected_audiences is not None:
        _check_audience(aud, expected_audiences)
    # Times: every one present is a number now.
    if exp is not None and exp <= now - leeway:  # type: ignore[operator]
        raise ClaimsError(reasons.TOKEN_EXPIRED, "the token has expired")
    if nbf is not None and nbf > now + leeway:  # type: ignore[operator]
        raise ClaimsError(reasons.TOKEN_NOT_YET_VALID, "the token is not valid yet (nbf)")
    if iat is not None and iat > now + leeway:  # type: ignore[operator]
        raise ClaimsError(reasons.TOKEN_NOT_YET_VALID, "the token was issued in the future (iat)")
    if max_lifetime is not None and exp is not None:
        _check_lifetime(exp, iat, now, leeway, max_lifetime)  # type: ignore[arg-type]


def _is_time(value: object) -> bool:
    """A NumericDate (RFC 7519 §2) any datetime conversion accepts: finite, not a bool, in range."""
    return _is_number(value) and 0 <= value <= MAX_TIME  # type: ignore[operator]


def _check_lifetime(exp: float, iat: float | None, now: float, leeway: float, max_lifetime: float) -> None:
    if (iat is not None and exp - iat > max_lifetime) or exp - now > max_lifetime + leeway:
        raise ClaimsError(
            reasons.TOKEN_LIFETIME_TOO_LONG, f"the token claims a lifetime over {max_lifetime:g} seconds"
        )


def _is_number(value: object) -> bool:
    # bool is an int subclass; JSON true is not a time. An int is finite however long (and math.isfinite
    # would overflow on a huge one); a float must be finite.
    if isinstance(value, int):
        return value.__class__ is not bool
    return isinstance(value, float) and math.isfinite(value)


def _check_arguments(now: float, leeway: float) -> None:
    if not _is_number(now):
        raise ValueError("now must be a finite number of seconds")
    if not _is_number(leeway) or not 0 <= leeway <= MAX_LEEWAY_SECONDS:
        raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds")


def _expected_audiences(audience: str | Collection[str] | None) -> frozenset[str] | None:
    if audience is None:
        return None
    if isinstance(audience, str | tuple | frozenset):  # hashable: the settings' own, the same every call
        return _hashable_audiences(audience)
    return _audience_set(audience)


@functools.lru_cache(maxsize=256)
def _hashable_audiences(audience: str | tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    return _audience_set(audience)


def _audience_set(audience: str | Collection[str]) -> frozenset[str]:
    expected = frozenset({audience} if isinstance(audience, str) else audience)
    if not expected or not all(isinstance(item, str) for item in expected):
        raise ValueError("audience must be a string or a non-empty collection of strings")
    return expected


def _audiences(aud: object) -> list[str]:
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list) and all(isinstance(item, str) for item in aud):
        return aud
    raise ClaimsError(reasons.TOKEN_CLAIMS_INVALID, "the claim 'aud' is not a string or array of strings")


def _check_audience(aud: object, expected: frozenset[str]) -> None:
    if aud is None or expected.isdisjoint(_audiences(aud)):
        raise ClaimsError(reasons.TOKEN_AUDIENCE_MISMATCH, "the token's aud does not name this service")
