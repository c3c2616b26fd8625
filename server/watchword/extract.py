"""Extract: turn what arrived (an HTTP request's parts or a bare token) into exactly one credential.

Transports (catalogue T1-T7): `Authorization: Bearer` (T1), `Authorization: Basic` (T2), a cookie whose
name is configured (T3), a pair of custom headers such as `Hull-App-Id` + `Hull-Access-Token` (T4),
query parameters `id` + `secret` when enabled (T5, always flagged as discouraged), a bare token (T6);
batch entries (T7) are HTTP parts or bare tokens of their own. Two different credentials in one request
are refused as ambiguous; the same credential sent twice is not an error. Nothing here touches storage
or keys: which kind of credential it is gets decided by `identify`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from watchword import reasons
from watchword.domain import HttpParts, PresentedCredential, Refusal, Transport
from watchword.identify import client_certificate, xfcc
from watchword.identify.verifier import refuse

# RFC 6750 §2.1 b64token.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# A Basic password (RFC 7617) may hold any text but control characters (OAuth clients form-encode theirs).
_BASIC_PASSWORD = re.compile(r"[^\x00-\x1f\x7f]+")
# Printable ASCII without separators: what an id in a header, cookie or query may hold.
_CLIENT_ID = re.compile(r"[\x21-\x7e]{1,255}")
# HTTP's optional whitespace around a field value and its parts (RFC 9110 §5.6.3): space and tab only.
# str.strip() would also remove U+00A0, U+2003, U+3000...: a credential is compared exactly as sent.
OWS = " \t"
MAX_COOKIE_HEADER = 16384


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """Where credentials may be read from, as configured."""

    max_token_bytes: int = 8192
    cookie_name: str = ""  # T3 off when empty
    header_pair: tuple[str, str] = ("Hull-App-Id", "Hull-Access-Token")  # T4: (id header, token header)
    query_enabled: bool = False  # T5
    query_parameters: tuple[str, str] = ("id", "secret")
    # C10: a client certificate is read when the request carries no other credential: the one a trusted
    # proxy's x-forwarded-client-cert names (only when `xfcc_trusted`), else the connection's own.
    client_certificates: bool = False
    xfcc_trusted: bool = False
    xfcc_trusted_by: tuple[str, ...] = ()


def _check_token(token: str, max_bytes: int, pattern: re.Pattern[str] = _B64TOKEN) -> Refusal | None:
    if not token:
        return refuse(reasons.CREDENTIAL_MALFORMED, "the credential is empty")
    if len(token) > max_bytes:
        return refuse(reasons.CREDENTIAL_MALFORMED, f"the credential is longer than {max_bytes} bytes")
    if pattern is _B64TOKEN and (token[0].isspace() or token[-1].isspace()):
        # A Basic password is base64-wrapped: taken as decoded, spaces included, and simply not matching.
        return refuse(
            reasons.CREDENTIAL_MALFORMED,
            "the credential has leading or trailing whitespace: it is compared exactly as sent",
        )
    if pattern.fullmatch(token) is None:
        return refuse(reasons.CREDENTIAL_MALFORMED, "the credential contains characters no token has")
    return None


def _check_client_id(client_id: str) -> Refusal | None:
    if _CLIENT_ID.fullmatch(client_id) is None:
        return refuse(reasons.CREDENTIAL_MALFORMED, "the client id is empty, too long or not printable ASCII")
    return None


def _presented(
    token: str, transport: Transport, client_id: str, max_bytes: int
) -> PresentedCredential | Refusal:
    pattern = _BASIC_PASSWORD if transport is Transport.BASIC else _B64TOKEN
    refusal = _check_token(token, max_bytes, pattern) or (_check_client_id(client_id) if client_id else None)
    return refusal or PresentedCredential(token=token, transport=transport, client_id=client_id)


def basic_credentials(encoded: str, max_bytes: int) -> PresentedCredential | Refusal:
    """T2, RFC 7617: base64(user-id ":" password). The id and password are kept exactly as sent; the
    RFC 6749 §2.3.1 form-decoding applies to OAuth clients only and is done by their verifier."""
    if len(encoded) > 2 * max_bytes:
        return refuse(reasons.CREDENTIAL_MALFORMED, "the Basic credentials are too long")
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return refuse(reasons.CREDENTIAL_MALFORMED, "the Basic credentials are not base64 of UTF-8 text")
    user, separator, password = decoded.partition(":")
    if not separator or not user or not password:
        return refuse(reasons.CREDENTIAL_MALFORMED, "Basic credentials must be `id:secret`")
    return _presented(password, Transport.BASIC, user, max_bytes)


def _from_authorization(value: str, max_bytes: int) -> PresentedCredential | Refusal:
    scheme, _, rest = value.strip(OWS).partition(" ")
    scheme = scheme.lower()
    token = rest.strip(OWS)
    if scheme == "bearer":
        return _presented(token, Transport.BEARER, "", max_bytes)
    if scheme == "basic":
        return basic_credentials(token, max_bytes)
    return refuse(reasons.CREDENTIAL_MALFORMED, "the Authorization header uses an unsupported scheme")


def parse_cookie_header(value: str) -> list[tuple[str, str]]:
    """`name=value; name2=value2` (RFC 6265 §4.2.1), leniently: pairs without '=' are skipped."""
    pairs = []
    for part in value[:MAX_COOKIE_HEADER].split(";"):
        name, separator, cookie_value = part.strip(OWS).partition("=")
        if separator and name:
            cookie_value = cookie_value.strip(OWS)
            if len(cookie_value) >= 2 and cookie_value[0] == cookie_value[-1] == '"':
                cookie_value = cookie_value[1:-1]
            pairs.append((name.strip(OWS), cookie_value))
    return pairs


def _wanted_headers(request: HttpParts, names: tuple[str, ...]) -> dict[str, set[str]]:
    """The distinct (stripped) values of each header in `names` (lower case), in one pass over the
    headers: case-insensitive names, as HTTP says."""
    found: dict[str, set[str]] = {name: set() for name in names}
    for header, value in request.headers:
        values = found.get(header.lower())
        if values is not None:
            values.add(value.strip(OWS))
    return found


def _candidates(request: HttpParts, settings: TransportSettings) -> list[PresentedCredential | Refusal]:
    found: list[PresentedCredential | Refusal] = []
    max_bytes = settings.max_token_bytes
    id_header, token_header = settings.header_pair
    id_name, token_name = id_header.lower(), token_header.lower()
    headers = _wanted_headers(request, ("authorization", "cookie", id_name, token_name))
    found.extend(_from_authorization(value, max_bytes) for value in headers["authorization"])
    if settings.cookie_name:
        cookies = list(request.cookies)
        for value in headers["cookie"]:
            cookies.extend(parse_cookie_header(value))
        found.extend(
            _presented(value, Transport.COOKIE, "", max_bytes)
            for name, value in cookies
            if name == settings.cookie_name
        )
    ids, tokens = headers[id_name], headers[token_name]
    if len(ids) > 1:
        found.append(refuse(reasons.CREDENTIAL_AMBIGUOUS, f"more than one {id_header} header"))
    client_id = next(iter(ids), "")
    found.extend(_presented(token, Transport.HEADER_PAIR, client_id, max_bytes) for token in tokens)
    if settings.query_enabled and request.query:
        id_name, secret_name = settings.query_parameters
        params = parse_qsl(request.query[: 4 * max_bytes], keep_blank_values=True)
        query_ids = {value for name, value in params if name == id_name}
        secrets = {value for name, value in params if name == secret_name}
        if len(query_ids) > 1:
            found.append(refuse(reasons.CREDENTIAL_AMBIGUOUS, f"more than one `{id_name}` parameter"))
        query_id = next(iter(query_ids), "")
        found.extend(_presented(secret, Transport.QUERY, query_id, max_bytes) for secret in secrets)
    return found


def _client_certificate(request: HttpParts, settings: TransportSettings) -> PresentedCredential | Refusal:
    """C10: the XFCC element of a trusted proxy first (it names the client further out), then the
    certificate of the connection (Envoy's source attributes). A client-sent XFCC is never read unless the
    operator says the proxy in front sets it."""
    if settings.xfcc_trusted:
        values = [value for name, value in request.headers if name.lower() == xfcc.HEADER]
        if values:
            return client_certificate.from_xfcc(values, settings.xfcc_trusted_by)
    if request.client_certificate:
        return client_certificate.presented(request.client_certificate)
    return refuse(reasons.CREDENTIAL_MISSING, "the request carries no credential")


def from_bare(token: str, client_id: str, max_bytes: int) -> PresentedCredential | Refusal:
    """T6: a bare token, e.g. the auth message of a persistent connection. There is no HTTP around it, so
    no optional whitespace either: surrounding whitespace is refused, never removed."""
    if not token or token.isspace():
        return refuse(reasons.CREDENTIAL_MISSING, "no credential was given")
    return _presented(token, Transport.BARE, client_id, max_bytes)


# The same callers send the same Authorization header again and again: its parse (a pure function of
# the value, giving immutable results) is remembered for values up to this length, bounded.
MAX_REMEMBERED_AUTHORIZATION = 512


@functools.lru_cache(maxsize=4096)
def _parsed_authorization(value: str, max_bytes: int) -> PresentedCredential | Refusal:
    return _from_authorization(value, max_bytes)


@functools.lru_cache(maxsize=16)
def _pair_in_authorization(settings: TransportSettings) -> bool:
    """Whether a header of the T4 pair is configured as `Authorization` itself (then no shortcut)."""
    return "authorization" in (settings.header_pair[0].lower(), settings.header_pair[1].lower())


def from_http(request: HttpParts, settings: TransportSettings) -> PresentedCredential | Refusal:
    """Every place a credential may be in an HTTP request; exactly one distinct credential is accepted."""
    if len(request.headers) == 1 and not request.cookies and not (settings.query_enabled and request.query):
        # The usual request: one header and nothing else that could carry a credential. When that header
        # is Authorization, it is the only candidate there can be (what _candidates would find too).
        name, value = request.headers[0]
        if name.lower() == "authorization" and not _pair_in_authorization(settings):
            if len(value) > MAX_REMEMBERED_AUTHORIZATION:
                return _from_authorization(value, settings.max_token_bytes)
            return _parsed_authorization(value, settings.max_token_bytes)
    found = _candidates(request, settings)
    if not found and settings.client_certificates:
        return _client_certificate(request, settings)
    if len(found) == 1:  # the common case: one credential, or one refusal, and nothing else
        return found[0]
    presented = [c for c in found if isinstance(c, PresentedCredential)]
    refusals = [c for c in found if isinstance(c, Refusal)]
    distinct = {(c.token, c.client_id) for c in presented}
    if len(distinct) + len(refusals) > 1:
        return refuse(reasons.CREDENTIAL_AMBIGUOUS, "the request carries more than one credential")
    if refusals:
        return refusals[0]
    if not presented:
        return refuse(reasons.CREDENTIAL_MISSING, "the request carries no credential")
    # The same credential over several transports: keep the most explicit one (the lowest T number).
    return min(presented, key=lambda c: c.transport.value)
