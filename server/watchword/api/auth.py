"""AuthService: Authenticate, Authorize, AuthorizeBatch, IssueToken (the proto request translated for the
token endpoint core, `issue/token_endpoint.py`) and SignOutbound."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import NoReturn

import grpc

from watchword import reasons
from watchword.api import convert, errors
from watchword.api.errors import FieldError
from watchword.decide.rules import decide
from watchword.domain import (
    ClientAuthentication,
    Decision,
    Principal,
    Refusal,
    Resource,
)
from watchword.issue.grants import Grants, Requested
from watchword.issue.oauth import OAuthError, Outcome, token_fields
from watchword.issue.token_endpoint import (
    ApiKeyExchange,
    ClientCredentials,
    Grant,
    SubjectToken,
    TokenEndpoint,
    TokenRequest,
)
from watchword.observe.decisions import Recorder, new_decision_id
from watchword.outbound import header_values
from watchword.outbound.signer import OutboundSigner, SignFailure, check_url
from watchword.pipeline import (
    AuthorizeOutcome,
    BareInput,
    CredentialInput,
    Memo,
    PeerCertificate,
    Pipeline,
    entry_fault,
)
from watchword.store.database import is_store_outage
from watchword.v1 import auth_pb2, auth_pb2_grpc, common_pb2


def _outcome_to_proto(
    outcome: AuthorizeOutcome, principals: convert.PrincipalMessages, decision_id: str
) -> auth_pb2.AuthorizeResponse:
    response = auth_pb2.AuthorizeResponse(
        decision=convert.decision_to_proto(outcome.decision), decision_id=decision_id
    )
    if outcome.principal is not None:
        response.principal.CopyFrom(principals.get(outcome.principal))
    if outcome.refusal is not None:
        response.refusal.CopyFrom(convert.refusal_to_proto(outcome.refusal))
    return response


def peer_certificate(context: grpc.aio.ServicerContext | None) -> str:
    """C10: the PEM client certificate of the caller's TLS connection (verified by the handshake against
    tls_client_ca_file, and again by the verifier); "" without mutual TLS."""
    if context is None:
        return ""
    certificates = context.auth_context().get("x509_pem_cert") or [b""]
    return certificates[0].decode("ascii", "replace")


# The action (in the catalogue) a caller's credential must hold to use SignOutbound.
SIGN_ACTION = "outbound.sign"


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(
        self,
        pipeline: Pipeline,
        max_token_bytes: int,
        max_headers: int,
        max_batch_entries: int,
        grants: Grants | None = None,
        signer: OutboundSigner | None = None,
        admin_check: Callable[[str], Awaitable[str | None]] | None = None,
        recorder: Recorder | None = None,
        max_batch_credentials: int = 100,
    ) -> None:
        self._pipeline = pipeline
        self._max_token_bytes = max_token_bytes
        self._max_headers = max_headers
        self._max_batch_entries = max_batch_entries
        self._max_batch_credentials = max_batch_credentials
        self._signer = signer
        self._admin_check = admin_check
        self._principals = convert.PrincipalMessages()
        # Counts and audits every decision; without one (unit tests) nothing is counted.
        self._recorder = recorder or Recorder(None, None)
        self._tokens = TokenEndpoint(grants, self._recorder) if grants is not None else None

    async def Authenticate(
        self, request: auth_pb2.AuthenticateRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.AuthenticateResponse:
        source = convert.credential_source(
            request.credential, "credential", self._max_token_bytes, self._max_headers
        )
        if isinstance(source, PeerCertificate):
            source = PeerCertificate(peer_certificate(context))
        result = await self._pipeline.authenticate(source)
        decision_id = new_decision_id()  # returned, audited and traced: the caller's logs join ours
        self._recorder.authenticated(result, decision_id)
        if isinstance(result, Refusal):
            refusal = convert.refusal_to_proto(result)
            return auth_pb2.AuthenticateResponse(refusal=refusal, decision_id=decision_id)
        principal = self._principals.get(result)
        return auth_pb2.AuthenticateResponse(principal=principal, decision_id=decision_id)

    async def _authorize_one(
        self,
        request: auth_pb2.AuthorizeRequest,
        field: str,
        memo: Memo | None = None,
        entry: int | None = None,
        context: grpc.aio.ServicerContext | None = None,
    ) -> auth_pb2.AuthorizeResponse:
        source = convert.credential_source(
            request.credential, f"{field}credential", self._max_token_bytes, self._max_headers
        )
        if isinstance(source, PeerCertificate):  # C10: the connection's own certificate, asked for
            source = PeerCertificate(peer_certificate(context))
        action = convert.required(request.action, f"{field}action", convert.MAX_ACTION)
        resource = convert.resource_from_proto(request.resource, f"{field}resource")
        outcome = await self._pipeline.authorize(source, action, resource, memo=memo)
        decision = outcome.decision
        decision_id = new_decision_id()
        self._recorder.authorized(
            action,
            resource,
            outcome.principal,
            outcome.refusal,
            decision.allowed,
            decision.reason,
            decision.rule,
            entry,
            decision_id,
        )
        return _outcome_to_proto(outcome, self._principals, decision_id)

    async def _bound_and_preload(self, entries: Sequence[auth_pb2.AuthorizeRequest]) -> None:
        """Bound what one batch can make this replica do, by its distinct credentials (each may cost a
        verification and a query), and look the stored ones up together: one query for the batch."""
        if not 0 < len(entries) <= self._max_batch_entries:
            return  # refused by the entry bound
        credentials = self._pipeline.batch_credentials(self._batch_sources(entries))
        if len(credentials) > self._max_batch_credentials:
            raise FieldError(
                "entries",
                f"at most {self._max_batch_credentials} distinct credentials per batch, "
                f"this one carries {len(credentials)}",
            )
        await self._pipeline.preload(credentials)

    def _batch_sources(self, entries: Sequence[auth_pb2.AuthorizeRequest]) -> list[CredentialInput]:
        sources: list[CredentialInput] = []
        limits = (self._max_token_bytes, self._max_headers)
        for index, entry in enumerate(entries):
            with contextlib.suppress(FieldError):  # the entry gets its own refusal when decided
                sources.append(
                    convert.credential_source(entry.credential, f"entries[{index}].credential", *limits)
                )
        return sources

    async def Authorize(
        self, request: auth_pb2.AuthorizeRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.AuthorizeResponse:
        return await self._authorize_one(request, "", context=context)

    async def AuthorizeBatch(
        self, request: auth_pb2.AuthorizeBatchRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.AuthorizeBatchResponse:
        await self._bound_and_preload(request.entries)
        if not request.entries:
            raise FieldError("entries", "at least one entry is required")
        if len(request.entries) > self._max_batch_entries:
            raise FieldError("entries", f"at most {self._max_batch_entries} entries per batch")
        memo: Memo = {}  # each distinct credential of the batch is verified once
        results = [
            await self._authorize_entry(entry, index, memo, context)
            for index, entry in enumerate(request.entries)
        ]
        return auth_pb2.AuthorizeBatchResponse(results=results)

    async def _authorize_entry(
        self,
        entry: auth_pb2.AuthorizeRequest,
        index: int,
        memo: Memo,
        context: grpc.aio.ServicerContext | None = None,
    ) -> auth_pb2.AuthorizeResponse:
        """One batch entry: whatever goes wrong with it is its own denial and never spoils the others (T7).
        Only a store outage fails the whole call (UNAVAILABLE, retryable)."""
        try:
            return await self._authorize_one(entry, f"entries[{index}].", memo, index, context)
        except FieldError as exc:
            return self._entry_denial(index, reasons.ENTRY_INVALID, str(exc))
        except Exception as exc:
            if is_store_outage(exc):
                raise
            return self._entry_denial(index, *entry_fault(f"deciding batch entry {index}"))

    def _entry_denial(self, index: int, reason: str, message: str) -> auth_pb2.AuthorizeResponse:
        refusal = Refusal(reason=reason, message=message)
        denial = Decision(allowed=False, reason=reason, rule="S8", message=message)
        # The entry's fields are what was wrong: none of them goes to the audit log.
        decision_id = new_decision_id()
        self._recorder.authorized("", None, None, None, False, reason, "S8", index, decision_id)
        outcome = AuthorizeOutcome(decision=denial, refusal=refusal)
        return _outcome_to_proto(outcome, self._principals, decision_id)

    async def IssueToken(
        self, request: auth_pb2.IssueTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.IssueTokenResponse:
        if self._tokens is None:
            await _not_enabled(context, "IssueToken")
        certificate = peer_certificate(context)  # C10: RFC 8705 tls_client_auth over mutual TLS
        outcome = await self._tokens.issue(token_request(request, self._max_token_bytes, certificate))
        return token_response(outcome)

    async def _check_signing_caller(
        self, context: grpc.aio.ServicerContext, credential_id: str
    ) -> Principal | str:
        """SignOutbound hands out what proves Watchword to customers (bearer tokens, passwords, fresh access
        tokens): only an admin token, or a caller whom Authorize would allow `outbound.sign` on the
        outbound credential's organization (the same rule: a user's role, a credential's grant), may ask
        for it. Returns the caller: the admin token's id, or its principal."""
        assert self._signer is not None
        token = _bearer(context)
        if not token:
            await errors.abort(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                errors.CALLER_TOKEN_MISSING,
                "SignOutbound needs `authorization: Bearer <token>` of a caller allowed to sign",
            )
        if self._admin_check is not None and (admin_id := await self._admin_check(token)) is not None:
            return admin_id
        principal = await self._pipeline.authenticate(BareInput(token=token))
        record = await self._signer.credentials.get(credential_id)
        organization = record.organization_id if record is not None else None
        allowed = isinstance(principal, Principal) and self._may_sign(principal, organization)
        if not allowed:
            # One answer for an unknown caller, a foreign credential and a missing grant: nothing to probe.
            await errors.abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                errors.CALLER_NOT_ALLOWED,
                "the caller may not sign for this outbound credential",
            )
        assert isinstance(principal, Principal)
        return principal

    def _may_sign(self, principal: Principal, organization_id: str | None) -> bool:
        """Authorize's own rule for `outbound.sign` on the organization (S1 roles, S3 grants, S7...)."""
        if not organization_id:
            return False
        resource = Resource(organization_id=organization_id)
        return decide(self._pipeline.catalogue, principal, SIGN_ACTION, resource).allowed

    async def SignOutbound(
        self, request: auth_pb2.SignOutboundRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.SignOutboundResponse:
        if self._signer is None:
            await _not_enabled(context, "SignOutbound")
        credential_id = convert.required(
            request.outbound_credential_id, "outbound_credential_id", convert.MAX_ID
        )
        url = convert.required(request.url, "url", 8192)
        problem = check_url(url)
        if problem:
            raise FieldError("url", problem)
        convert.bounded(request.method, "method", convert.MAX_METHOD)
        message_id = convert.bounded(request.message_id, "message_id", header_values.MAX_MESSAGE_ID)
        problem = message_id and header_values.message_id_problem(message_id)
        if problem:  # it becomes the `webhook-id` header (O5)
            raise FieldError("message_id", problem)
        caller = await self._check_signing_caller(context, credential_id)
        result = await self._signer.sign(
            credential_id, url, request.body, message_id, request.previous_token_rejected
        )
        self._recorder.signed(credential_id, caller, result.reason if isinstance(result, SignFailure) else "")
        if isinstance(result, SignFailure):
            error = auth_pb2.OutboundError(
                reason=result.reason, message=result.message, retryable=result.retryable
            )
            if result.retry_after is not None:
                error.retry_after.FromTimedelta(timedelta(seconds=result.retry_after))
            return auth_pb2.SignOutboundResponse(error=error)
        signed = auth_pb2.SignedHeaders(
            headers=[common_pb2.KeyValue(name=name, value=value) for name, value in result.headers],
            valid_until=convert.timestamp(result.valid_until),
        )
        return auth_pb2.SignOutboundResponse(signed=signed)


async def _not_enabled(context: grpc.aio.ServicerContext, rpc: str) -> NoReturn:
    """This server was built without the RPC's dependency (a unit test's servicer)."""
    message = f"{rpc} is not enabled"
    await errors.abort(context, grpc.StatusCode.UNIMPLEMENTED, errors.NOT_IMPLEMENTED, message)


def _bearer(context: grpc.aio.ServicerContext) -> str:
    values = [value for key, value in context.invocation_metadata() or () if key == "authorization"]
    if len(values) != 1 or not isinstance(values[0], str) or not values[0].lower().startswith("bearer "):
        return ""
    return values[0][7:].strip()


def token_request(
    request: auth_pb2.IssueTokenRequest, max_token_bytes: int, certificate: str = ""
) -> TokenRequest:
    """The proto request as the token endpoint's; malformed fields raise FieldError (INVALID_ARGUMENT).
    `certificate`: the caller's TLS client certificate (mutual TLS), for RFC 8705 tls_client_auth (C10)."""
    scope = convert.bounded(request.scope, "scope", 4096)
    audience = convert.bounded(request.audience, "audience", convert.MAX_ID)
    which = request.WhichOneof("grant")
    grant = _GRANTS[which](request, max_token_bytes) if which else None
    if certificate and isinstance(grant, ClientCredentials):
        grant = ClientCredentials(replace(grant.client, client_certificate=certificate))
    return TokenRequest(grant, Requested(scope, request.requested_lifetime_seconds, audience))


def token_response(outcome: Outcome) -> auth_pb2.IssueTokenResponse:
    if isinstance(outcome, OAuthError):
        return auth_pb2.IssueTokenResponse(error=auth_pb2.OAuthError(**outcome.fields()))
    token = auth_pb2.TokenResponse(**token_fields(outcome), token_id=outcome.token_id)
    return auth_pb2.IssueTokenResponse(token=token)


def _api_key_exchange(request: auth_pb2.IssueTokenRequest, max_token_bytes: int) -> Grant:
    field = "api_key_exchange.api_key"
    return ApiKeyExchange(convert.required(request.api_key_exchange.api_key, field, max_token_bytes))


def _client_credentials(request: auth_pb2.IssueTokenRequest, max_token_bytes: int) -> Grant:
    client = request.client_credentials.client
    prefix = "client_credentials.client."
    authentication = ClientAuthentication(
        client_id=convert.bounded(client.client_id, prefix + "client_id", convert.MAX_ID),
        client_secret=convert.bounded(client.client_secret, prefix + "client_secret", max_token_bytes),
        authorization=convert.bounded(client.authorization, prefix + "authorization", 2 * max_token_bytes),
        client_assertion_type=convert.bounded(
            client.client_assertion_type, prefix + "client_assertion_type", 255
        ),
        client_assertion=convert.bounded(
            client.client_assertion, prefix + "client_assertion", max_token_bytes
        ),
    )
    return ClientCredentials(authentication)


def _subject_token(request: auth_pb2.IssueTokenRequest, max_token_bytes: int) -> Grant:
    grant = request.subject_token
    subject = convert.subject_from_proto(grant.subject, "subject_token.subject")
    if subject is None:
        raise FieldError("subject_token.subject", "is required")
    connector_id = convert.required(grant.connector_id, "subject_token.connector_id", convert.MAX_ID)
    secret = convert.required(grant.connector_secret, "subject_token.connector_secret", max_token_bytes)
    return SubjectToken(connector_id, secret, subject)


# The `grant` oneof's fields: each names one of the token endpoint's grants (I1-I3).
_GRANTS: dict[str, Callable[[auth_pb2.IssueTokenRequest, int], Grant]] = {
    "api_key_exchange": _api_key_exchange,
    "client_credentials": _client_credentials,
    "subject_token": _subject_token,
}
