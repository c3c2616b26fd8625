"""AuthService: Authenticate, Authorize, AuthorizeBatch (IssueToken and SignOutbound: later issues)."""

from __future__ import annotations

import grpc

from watchword import reasons
from watchword.api import convert, errors
from watchword.api.errors import FieldError
from watchword.domain import Decision, Refusal
from watchword.pipeline import AuthorizeOutcome, Memo, Pipeline
from watchword.v1 import auth_pb2, auth_pb2_grpc


def _outcome_to_proto(outcome: AuthorizeOutcome) -> auth_pb2.AuthorizeResponse:
    response = auth_pb2.AuthorizeResponse(decision=convert.decision_to_proto(outcome.decision))
    if outcome.principal is not None:
        response.principal.CopyFrom(convert.principal_to_proto(outcome.principal))
    if outcome.refusal is not None:
        response.refusal.CopyFrom(convert.refusal_to_proto(outcome.refusal))
    return response


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(
        self, pipeline: Pipeline, max_token_bytes: int, max_headers: int, max_batch_entries: int
    ) -> None:
        self._pipeline = pipeline
        self._max_token_bytes = max_token_bytes
        self._max_headers = max_headers
        self._max_batch_entries = max_batch_entries

    async def Authenticate(
        self, request: auth_pb2.AuthenticateRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.AuthenticateResponse:
        source = convert.credential_source(
            request.credential, "credential", self._max_token_bytes, self._max_headers
        )
        result = await self._pipeline.authenticate(source)
        if isinstance(result, Refusal):
            return auth_pb2.AuthenticateResponse(refusal=convert.refusal_to_proto(result))
        return auth_pb2.AuthenticateResponse(principal=convert.principal_to_proto(result))

    async def _authorize_one(
        self, request: auth_pb2.AuthorizeRequest, field: str, memo: Memo | None = None
    ) -> auth_pb2.AuthorizeResponse:
        source = convert.credential_source(
            request.credential, f"{field}credential", self._max_token_bytes, self._max_headers
        )
        action = convert.required(request.action, f"{field}action", convert.MAX_ACTION)
        resource = convert.resource_from_proto(request.resource, f"{field}resource")
        return _outcome_to_proto(await self._pipeline.authorize(source, action, resource, memo=memo))

    async def Authorize(
        self, request: auth_pb2.AuthorizeRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.AuthorizeResponse:
        return await self._authorize_one(request, "")

    async def AuthorizeBatch(
        self, request: auth_pb2.AuthorizeBatchRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.AuthorizeBatchResponse:
        if not request.entries:
            raise FieldError("entries", "at least one entry is required")
        if len(request.entries) > self._max_batch_entries:
            raise FieldError("entries", f"at most {self._max_batch_entries} entries per batch")
        results = []
        memo: Memo = {}  # each distinct credential of the batch is verified once
        for index, entry in enumerate(request.entries):
            try:
                results.append(await self._authorize_one(entry, f"entries[{index}].", memo))
            except FieldError as exc:
                # One bad entry gets its own refusal and never spoils the others (T7).
                refusal = Refusal(reason=reasons.ENTRY_INVALID, message=str(exc))
                denial = Decision(allowed=False, reason=reasons.ENTRY_INVALID, rule="S8", message=str(exc))
                results.append(_outcome_to_proto(AuthorizeOutcome(decision=denial, refusal=refusal)))
        return auth_pb2.AuthorizeBatchResponse(results=results)

    # Part of the contract, served by later releases (IssueToken: #5, SignOutbound: #6).
    IssueToken = errors.unimplemented("IssueToken")
    SignOutbound = errors.unimplemented("SignOutbound")
