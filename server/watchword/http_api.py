"""The conventional OAuth HTTP endpoints, for standard clients (I2, I5, I7): `POST /oauth/token` (RFC 6749,
form-encoded), `POST /oauth/introspect` (RFC 7662), `POST /oauth/revoke` (RFC 7009),
`GET /.well-known/jwks.json` and `GET /.well-known/oauth-authorization-server` (RFC 8414).

`POST /oauth/token` only translates: the form and the Authorization header into the token endpoint core's
request (`issue/token_endpoint.py`, which the gRPC IssueToken calls too), and its outcome into RFC 6749's
JSON, HTTP status and headers; introspection and revocation likewise (`issue/introspection.py`,
`issue/revocation.py`). The cores audit every answer, refusals of unreadable requests and faults
included. A fault in any endpoint (the store down, a bug) is a 503 `temporarily_unavailable` in the same
JSON shape, never a traceback, logged under the incident id the answer names.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from email.message import Message
from typing import Any, Protocol
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from watchword import https
from watchword.domain import ClientAuthentication
from watchword.hygiene.report_endpoint import report_route
from watchword.hygiene.secret_scanning import LeakReports
from watchword.issue.grants import Grants, Requested
from watchword.issue.inspection import TokenQuestion
from watchword.issue.introspection import Answer
from watchword.issue.oauth import (
    INVALID_REQUEST,
    TEMPORARILY_UNAVAILABLE,
    UNSUPPORTED_GRANT_TYPE,
    OAuthError,
    token_fields,
)
from watchword.issue.token_endpoint import (
    ApiKeyExchange,
    ClientCredentials,
    Grant,
    Refused,
    TokenEndpoint,
    TokenRequest,
)
from watchword.observe import call, request_id
from watchword.observe.decisions import Recorder
from watchword.store.database import is_store_outage, outage_cause

log = logging.getLogger("watchword.http")

TOKEN_PATH = "/oauth/token"
INTROSPECT_PATH = "/oauth/introspect"
REVOKE_PATH = "/oauth/revoke"
JWKS_PATH = "/.well-known/jwks.json"
METADATA_PATH = "/.well-known/oauth-authorization-server"
MAX_BODY_BYTES = 64 * 1024
MAX_FIELDS = 32
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
FORM_CHARSETS = frozenset({"utf-8", "us-ascii"})
CLIENT_CREDENTIALS = "client_credentials"
API_KEY_GRANT = "urn:watchword:params:oauth:grant-type:api-key"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1

JwksSource = Callable[[], Awaitable[dict[str, Any]]]
Endpoint = Callable[[Request], Awaitable[Response]]


class TokenCheck(Protocol):
    """I7's cores (`IntrospectionEndpoint`, `RevocationEndpoint`): an answer (None: done, no body) or an
    error for each request, and the audited fault."""

    async def answer(self, question: TokenQuestion | OAuthError) -> Answer | OAuthError | None: ...

    def failed(self, fault: OAuthError) -> OAuthError: ...


def _error(error: OAuthError, basic_challenge: bool = False) -> JSONResponse:
    headers = dict(NO_STORE)
    if error.status == 401 and basic_challenge:
        headers["WWW-Authenticate"] = 'Basic realm="watchword"'
    return JSONResponse(error.http_fields(), status_code=error.status, headers=headers)


def _fault(exc: Exception, where: str) -> OAuthError:
    """Log a fault once under an incident id, which the answer names: a store outage in one line (an
    outage fails every request alike), anything else with its traceback (which holds no local values, so
    no secret). The answer says nothing more."""
    incident = uuid.uuid4().hex[:16]
    if is_store_outage(exc):
        log.warning("store unavailable during %s (incident %s): %s", where, incident, outage_cause(exc))
        return OAuthError(TEMPORARILY_UNAVAILABLE, f"the store is unavailable; retry (incident {incident})")
    log.exception("internal error in %s (incident %s)", where, incident)
    return OAuthError(TEMPORARILY_UNAVAILABLE, f"internal error; retry (incident {incident})")


def _fault_contained(endpoint: Endpoint, where: str) -> Endpoint:
    """`endpoint`, answering its faults with 503 `temporarily_unavailable` instead of a plain-text 500."""

    async def contained(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ClientDisconnect:
            raise  # no one to answer: `_client_gone`
        except Exception as exc:
            return _error(_fault(exc, where))

    return contained


def _media_type_error(content_type: str) -> OAuthError | None:
    """RFC 9110 §8.3.1: type and subtype are case-insensitive and may carry parameters; the form is UTF-8
    (RFC 6749 Appendix B), so a charset, when named, must be that."""
    header = Message()
    header["content-type"] = content_type
    if header.get_content_type() != FORM_MEDIA_TYPE:
        return OAuthError(INVALID_REQUEST, f"the body must be {FORM_MEDIA_TYPE}")
    charset = header.get_param("charset")
    if charset is not None and str(charset).lower() not in FORM_CHARSETS:
        return OAuthError(INVALID_REQUEST, "the form must be UTF-8")
    return None


async def _form(request: Request) -> dict[str, str] | OAuthError:
    """RFC 6749 §3.2: form-encoded parameters, each sent at most once."""
    refused = _media_type_error(request.headers.get("content-type", ""))
    if refused is not None:
        return refused
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return OAuthError(INVALID_REQUEST, "the body is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return OAuthError(INVALID_REQUEST, "the body is not a valid form")
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        return OAuthError(INVALID_REQUEST, f"parameters sent more than once: {repeated}")
    return dict(pairs)


def _lifetime(form: dict[str, str]) -> int | OAuthError:
    value = form.get("requested_lifetime", "")
    if not value:
        return 0
    if not value.isdigit() or len(value) > 9:
        return OAuthError(INVALID_REQUEST, "requested_lifetime must be a number of seconds")
    return int(value)


def _client_authentication(
    form: dict[str, str], authorization: str, certificate: str = ""
) -> ClientAuthentication:
    """C9's four methods as they arrive: the form's fields, or the Authorization header (Basic); and the
    TLS client certificate of the connection (RFC 8705 §2, C10), when it has one."""
    return ClientAuthentication(
        client_id=form.get("client_id", ""),
        client_secret=form.get("client_secret", ""),
        authorization=authorization,
        client_assertion_type=form.get("client_assertion_type", ""),
        client_assertion=form.get("client_assertion", ""),
        client_certificate=certificate,
    )


def _client_credentials(form: dict[str, str], authorization: str, certificate: str) -> Grant | OAuthError:
    return ClientCredentials(_client_authentication(form, authorization, certificate))


def _api_key_exchange(form: dict[str, str], _authorization: str, _certificate: str) -> Grant | OAuthError:
    if not form.get("api_key"):
        return OAuthError(INVALID_REQUEST, "api_key is required")
    return ApiKeyExchange(form["api_key"])


# RFC 6749 `grant_type` values: the token endpoint's grant each names (I3 subject tokens: gRPC only), and
# how the form becomes one.
# How a grant is read: the form, the Authorization header, the TLS client certificate (PEM, or "").
GrantReader = Callable[[dict[str, str], str, str], Grant | OAuthError]
GRANT_TYPES: dict[str, tuple[type[Grant], GrantReader]] = {
    CLIENT_CREDENTIALS: (ClientCredentials, _client_credentials),
    API_KEY_GRANT: (ApiKeyExchange, _api_key_exchange),
}


def _grant(form: dict[str, str], authorization: str, certificate: str) -> Grant | OAuthError:
    grant_type = form.get("grant_type", "")
    if not grant_type:
        return OAuthError(INVALID_REQUEST, "grant_type is required")
    known = GRANT_TYPES.get(grant_type)
    if known is None:
        return OAuthError(UNSUPPORTED_GRANT_TYPE, "this server does not support that grant type")
    return known[1](form, authorization, certificate)


async def _token_request(request: Request, authorization: str) -> TokenRequest | Refused:
    """The request as the token endpoint's. What cannot be one is refused (RFC 6749 §5.2) before any grant
    runs, naming the grant for the audit when `grant_type` is one this endpoint knows."""
    form = await _form(request)
    if isinstance(form, OAuthError):
        return Refused(form)
    known = GRANT_TYPES.get(form.get("grant_type", ""))
    named = known[0] if known is not None else None
    lifetime = _lifetime(form)
    if isinstance(lifetime, OAuthError):
        return Refused(lifetime, named)
    grant = _grant(form, authorization, https.client_certificate(request.scope))
    if isinstance(grant, OAuthError):
        return Refused(grant, named)
    return TokenRequest(grant, Requested(form.get("scope", ""), lifetime, form.get("audience", "")))


async def _token_question(request: Request, authorization: str) -> TokenQuestion | OAuthError:
    """RFC 7662 §2.1, RFC 7009 §2.1: the form's `token` (required) and `token_type_hint`, and the
    client's authentication as it arrived."""
    form = await _form(request)
    if isinstance(form, OAuthError):
        return form
    if not form.get("token"):
        return OAuthError(INVALID_REQUEST, "token is required")
    client = _client_authentication(form, authorization, https.client_certificate(request.scope))
    return TokenQuestion(client, form["token"], form.get("token_type_hint", ""))


def _in_call(endpoint: Endpoint, rpc: str) -> Endpoint:
    """As the token endpoint: a request id (header `x-request-id`), and the call named in the audit."""

    async def called(request: Request) -> Response:
        client = f"{request.client.host}:{request.client.port}" if request.client else ""
        info = call.CallInfo(request_id.choose(request.headers.items()), rpc, peer_address=client)
        entered = call.current.set(info)
        try:
            response = await endpoint(request)
        finally:
            call.current.reset(entered)
        response.headers[request_id.HEADER] = info.request_id
        return response

    return called


def _token_check_route(path: str, core: TokenCheck) -> Route:
    """`POST path` for one of I7's cores: its answer as JSON (RFC 7662 §2.2) or an empty 200 (RFC 7009
    §2.2), its errors as the token endpoint's, never cached."""

    async def check(request: Request) -> Response:
        authorization = request.headers.get("authorization", "")
        try:
            outcome = await core.answer(await _token_question(request, authorization))
        except ClientDisconnect:
            raise  # no one to answer: `_client_gone`
        except Exception as exc:
            return _error(core.failed(_fault(exc, f"POST {path}")))
        if isinstance(outcome, OAuthError):
            return _error(outcome, basic_challenge=bool(authorization))
        if outcome is None:
            return Response(headers=NO_STORE)
        return JSONResponse(outcome, headers=NO_STORE)

    return Route(path, _in_call(check, f"POST {path}"), methods=["POST"])


def build_app(
    grants: Grants,
    jwks: JwksSource,
    metadata: dict[str, Any],
    recorder: Recorder | None = None,
    token_checks: dict[str, TokenCheck] | None = None,
    leak_reports: LeakReports | None = None,
) -> Starlette:
    """`token_checks`: I7's cores by path (INTROSPECT_PATH, REVOKE_PATH); none: not served."""
    endpoint = TokenEndpoint(grants, recorder)

    async def token(request: Request) -> Response:
        """As the gRPC calls: a request id (header `x-request-id`), and the decision audited."""
        client = f"{request.client.host}:{request.client.port}" if request.client else ""
        info = call.CallInfo(
            request_id.choose(request.headers.items()), "POST /oauth/token", peer_address=client
        )
        entered = call.current.set(info)
        try:
            response = await issue(request)
        finally:
            call.current.reset(entered)
        response.headers[request_id.HEADER] = info.request_id
        return response

    async def issue(request: Request) -> Response:
        """Every answer audited by the core: a token, a refusal, or a fault (503)."""
        authorization = request.headers.get("authorization", "")
        token_request: TokenRequest | Refused | None = None
        try:
            token_request = await _token_request(request, authorization)
            outcome = await endpoint.issue(token_request)
        except ClientDisconnect:
            raise  # no one to answer: `_client_gone`
        except Exception as exc:
            return _error(endpoint.failed(token_request, _fault(exc, f"POST {TOKEN_PATH}")))
        if isinstance(outcome, OAuthError):
            # RFC 6749 §5.2: a client that tried the Authorization header is challenged with the scheme
            # this endpoint takes there, Basic.
            return _error(outcome, basic_challenge=bool(authorization))
        return JSONResponse(token_fields(outcome), headers=NO_STORE)

    async def jwks_document(_request: Request) -> Response:
        return JSONResponse(await jwks(), headers={"Cache-Control": "max-age=300"})

    async def server_metadata(_request: Request) -> Response:
        return JSONResponse(metadata, headers={"Cache-Control": "max-age=3600"})

    routes = [
        Route(TOKEN_PATH, token, methods=["POST"]),
        Route(JWKS_PATH, _fault_contained(jwks_document, f"GET {JWKS_PATH}"), methods=["GET"]),
        Route(METADATA_PATH, _fault_contained(server_metadata, f"GET {METADATA_PATH}"), methods=["GET"]),
        *(_token_check_route(path, core) for path, core in (token_checks or {}).items()),
    ]
    if leak_reports is not None:  # key hygiene: leaked-key reports of secret scanners
        routes.append(report_route(leak_reports))
    return Starlette(routes=routes, exception_handlers={ClientDisconnect: _client_gone})


async def _client_gone(request: Request, _exc: Exception) -> Response:
    """A client that hung up mid-request is ordinary on the internet: one info line, no traceback. The
    response is never sent (there is no one to read it)."""
    log.info("client disconnected before its request was read: %s %s", request.method, request.url.path)
    return Response(status_code=400)


CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt")
# RFC 8705 §2.1: PKI mutual-TLS client authentication (C10), where the port asks for client certificates.
TLS_CLIENT_AUTH = "tls_client_auth"
CLIENT_ASSERTION_ALGORITHMS = ("HS256", "RS256", "PS256", "ES256", "EdDSA")


def authorization_server_metadata(
    issuer: str,
    token_endpoint: str,
    jwks_uri: str,
    scopes: list[str],
    signing_algorithm: str,
    introspection_endpoint: str = "",
    revocation_endpoint: str = "",
    client_auth_methods: tuple[str, ...] = CLIENT_AUTH_METHODS,
) -> dict[str, Any]:
    """RFC 8414 §2, for a server with a token endpoint and, when named, I7's endpoints (the same clients
    authenticate there with the same methods)."""
    document: dict[str, Any] = {
        "issuer": issuer,
        "token_endpoint": token_endpoint,
        "jwks_uri": jwks_uri,
        "grant_types_supported": list(GRANT_TYPES),
        # REQUIRED and non-empty (RFC 8414 §2; validators refuse []). There is no authorization endpoint,
        # so the one true value is the registered `none` (OAuth 2.0 Multiple Response Type Encoding).
        "response_types_supported": ["none"],
        "token_endpoint_auth_methods_supported": list(client_auth_methods),
        "token_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGORITHMS),
        "scopes_supported": scopes,
        "access_token_signing_alg_values_supported": [signing_algorithm],
    }
    for name, url in (("introspection", introspection_endpoint), ("revocation", revocation_endpoint)):
        if url:
            document[f"{name}_endpoint"] = url
            document[f"{name}_endpoint_auth_methods_supported"] = list(client_auth_methods)
            document[f"{name}_endpoint_auth_signing_alg_values_supported"] = list(CLIENT_ASSERTION_ALGORITHMS)
    return document
