"""`POST /secret-scanning/github`: the HTTP door of the leaked-key reports (`hygiene.secret_scanning`), on
the OAuth HTTP port. Translation only: the raw body (bounded) and the two signature headers in, the
program's JSON array out; a refused report is a 4xx `{"error": reason, "error_description": ...}` and
a fault (the store down) a 503, after which the scanner sends the report again."""

from __future__ import annotations

import logging
import uuid

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from watchword import reasons
from watchword.hygiene.secret_scanning import (
    KEY_ID_HEADER,
    MAX_BODY_BYTES,
    REPORT_PATH,
    SIGNATURE_HEADER,
    LeakReports,
    ReportRefused,
)
from watchword.observe import call, request_id
from watchword.store.database import is_store_outage, outage_cause

log = logging.getLogger("watchword.http")

RPC_NAME = f"POST {REPORT_PATH}"


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ReportRefused(413, reasons.LEAK_REPORT_TOO_LARGE, "the report is too large")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ReportRefused(413, reasons.LEAK_REPORT_TOO_LARGE, "the report is too large")
    return body


def _refused(refused: ReportRefused) -> JSONResponse:
    fields = {"error": refused.reason, "error_description": str(refused)}
    return JSONResponse(fields, status_code=refused.status)


def _fault(exc: Exception) -> JSONResponse:
    incident = uuid.uuid4().hex[:16]
    if is_store_outage(exc):
        log.warning("store unavailable during a leak report (incident %s): %s", incident, outage_cause(exc))
    else:
        log.exception("internal error in a leak report (incident %s)", incident)
    fields = {"error": reasons.INTERNAL_ERROR, "error_description": f"retry later (incident {incident})"}
    return JSONResponse(fields, status_code=503)


async def _answer(request: Request, reports: LeakReports) -> Response:
    try:
        body = await _body(request)
        key_id = request.headers.get(KEY_ID_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        return JSONResponse(await reports.receive(body, key_id, signature))
    except ReportRefused as refused:
        return _refused(refused)
    except ClientDisconnect:
        raise  # no one to answer: http_api's `_client_gone`
    except Exception as exc:
        return _fault(exc)


def report_route(reports: LeakReports) -> Route:
    """The route that http_api registers when leak reports are configured."""

    async def receive(request: Request) -> Response:
        """As the token endpoint: a request id (header `x-request-id`), which the audit records carry."""
        client = f"{request.client.host}:{request.client.port}" if request.client else ""
        info = call.CallInfo(request_id.choose(request.headers.items()), RPC_NAME, peer_address=client)
        entered = call.current.set(info)
        try:
            response = await _answer(request, reports)
        finally:
            call.current.reset(entered)
        response.headers[request_id.HEADER] = info.request_id
        return response

    return Route(REPORT_PATH, receive, methods=["POST"])
