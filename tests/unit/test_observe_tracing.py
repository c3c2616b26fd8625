"""Tracing (issue #15, section 1), in process with the SDK's in-memory exporter: when it is on, the span tree
each front door and phase makes, the caller's trace joined from each transport, the attributes; when it is
off, nothing wrapped and nothing exported."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from watchword import reasons
from watchword.api import ext_authz as ext_authz_api
from watchword.api.auth import AuthServicer
from watchword.api.overload import OverloadInterceptor
from watchword.crypto.master_key import MasterKey, generate
from watchword.decide.catalogue import Catalogue
from watchword.domain import HttpParts, Resource
from watchword.ext_authz.core import ExtAuthzCore, ExtAuthzSettings
from watchword.ext_authz.http import HttpFrontDoor
from watchword.extract import TransportSettings
from watchword.observe import call, spans, tracing
from watchword.pipeline import Pipeline
from watchword.routes import RouteSettings, RouteTable
from watchword.store import database
from watchword.v1 import auth_pb2, common_pb2

from support.api_keys import store_with_api_keys

MASTER = MasterKey.from_text(generate(), "test")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
OTHER_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield
    tracing.shutdown()


@pytest.fixture
def exported() -> InMemorySpanExporter:
    """Tracing on, every span exported to memory as it ends."""
    exporter = InMemorySpanExporter()
    tracing.use(TracerProvider(resource=tracing.resource()), SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Any, str, list[str]]]:
    store, organization_id, secrets = await store_with_api_keys(tmp_path, MASTER, count=1)
    yield store, organization_id, secrets
    await store.close()


def bearer(token: str, *extra: tuple[str, str]) -> HttpParts:
    return HttpParts(method="GET", path="/", headers=(("authorization", f"Bearer {token}"), *extra))


def bearer_source(token: str) -> common_pb2.CredentialSource:
    header = common_pb2.KeyValue(name="authorization", value=f"Bearer {token}")
    return common_pb2.CredentialSource(http=common_pb2.HttpRequest(headers=[header]))


def authorize_request(
    token: str, organization_id: str, action: str = "application.list"
) -> auth_pb2.AuthorizeRequest:
    return auth_pb2.AuthorizeRequest(
        credential=bearer_source(token),
        action=action,
        resource=auth_pb2.Resource(organization_id=organization_id),
    )


def named(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.parent is not None, f"{child.name} has no parent"
    return child.parent.span_id == parent.context.span_id


# ---- the OTEL_* variables ----


def test_tracing_is_off_without_an_exporter_or_an_endpoint() -> None:
    assert tracing.read_settings({}) is None
    assert tracing.read_settings({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}) is None
    assert tracing.enabled is False


@pytest.mark.parametrize(
    "environment",
    [
        {"OTEL_TRACES_EXPORTER": "otlp"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"},
    ],
)
def test_an_otlp_exporter_or_endpoint_turns_tracing_on(environment: dict[str, str]) -> None:
    found = tracing.read_settings(environment)
    assert found is not None
    assert found.exporters == ("otlp",)
    assert found.protocol == "http/protobuf"  # the specification's default
    assert found.sampler == "parentbased_always_on"


@pytest.mark.parametrize(
    "environment",
    [
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
        {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"},
        {"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
    ],
)
def test_none_and_sdk_disabled_keep_tracing_off(environment: dict[str, str]) -> None:
    assert tracing.read_settings(environment) is None


def test_the_traces_protocol_wins_over_the_general_one_and_console_is_an_exporter() -> None:
    found = tracing.read_settings(
        {
            "OTEL_TRACES_EXPORTER": "otlp,console",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
        }
    )
    assert found is not None
    assert found.exporters == ("otlp", "console")
    assert found.protocol == "grpc"
    assert found.sampler == "parentbased_traceidratio 0.25"


@pytest.mark.parametrize(
    ("environment", "named_in_message"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "jaeger"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "http/json"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "sometimes"}, "sometimes"),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_TRACES_SAMPLER": "traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "2",
            },
            "'2'",
        ),
    ],
)
def test_what_watchword_cannot_do_is_a_clear_error(
    environment: dict[str, str], named_in_message: str
) -> None:
    with pytest.raises(tracing.TracingConfigError, match=named_in_message):
        tracing.read_settings(environment)


def test_the_service_is_watchword_unless_the_operator_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    first = tracing.resource().attributes
    assert first["service.name"] == "watchword"
    assert first["service.instance.id"]  # the SDK's, one per process: each worker is an instance
    monkeypatch.setenv("OTEL_SERVICE_NAME", "authz-eu")
    assert tracing.resource().attributes["service.name"] == "authz-eu"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=authz-us,deployment.environment=prod")
    attributes = tracing.resource().attributes
    assert attributes["service.name"] == "authz-us"
    assert attributes["deployment.environment"] == "prod"


# ---- off: nothing wrapped, nothing called ----


async def test_off_the_pipeline_is_not_wrapped_and_span_is_a_shared_no_op(world) -> None:
    store, _organization, _secrets = world
    pipeline = Pipeline(store, Catalogue.load(), TransportSettings(), MASTER)
    assert "_identify" not in vars(pipeline)
    assert "authorize" not in vars(pipeline)
    assert tracing.span("a") is tracing.span("b")
    with tracing.span("a") as current:
        assert current is None


# ---- the phases ----


async def test_authorize_makes_extract_identify_and_decide_spans_under_the_request_span(
    world, exported: InMemorySpanExporter
) -> None:
    store, organization_id, secrets = world
    servicer = AuthServicer(Pipeline(store, Catalogue.load(), TransportSettings(), MASTER), 8192, 64, 10)
    with tracing.server_span("request", [[("traceparent", TRACEPARENT)]], {}):
        outcome = await servicer.Authorize(authorize_request(secrets[0], organization_id), GrpcContext(()))
    assert outcome.decision.allowed
    found = named(exported)
    request = found["request"]
    assert request.kind is SpanKind.SERVER
    assert format(request.context.trace_id, "032x") == TRACE_ID
    assert request.parent is not None
    assert format(request.parent.span_id, "016x") == PARENT_ID
    for phase in ("extract", "identify", "decide"):
        assert is_child(found[phase], request), phase
    assert found["extract"].attributes[spans.TRANSPORT] == "bearer"
    assert found["identify"].attributes[spans.KIND] == "api_key"
    assert found["identify"].attributes[spans.CACHE] == "miss"
    assert dict(found["decide"].attributes) == {
        spans.ACTION: "application.list",
        spans.DECISION: "allow",
        spans.REASON: outcome.decision.reason,
        spans.RULE: outcome.decision.rule,
    }
    # The answer, on the request's span as in its audit record, with the decision id the caller got.
    assert dict(request.attributes) == {
        spans.DECISION: "allow",
        spans.REASON: outcome.decision.reason,
        spans.RULE: outcome.decision.rule,
        spans.KIND: "api_key",
        spans.ACTION: "application.list",
        spans.DECISION_ID: outcome.decision_id,
    }
    assert len(outcome.decision_id) == 24


async def test_the_second_call_is_a_cache_hit_and_a_refusal_names_its_reason(
    world, exported: InMemorySpanExporter
) -> None:
    store, organization_id, secrets = world
    pipeline = Pipeline(store, Catalogue.load(), TransportSettings(), MASTER)
    resource = Resource(organization_id)
    await pipeline.authorize(bearer(secrets[0]), "application.list", resource)
    exported.clear()
    await pipeline.authorize(bearer(secrets[0]), "application.list", resource)
    assert named(exported)["identify"].attributes[spans.CACHE] == "hit"
    exported.clear()
    servicer = AuthServicer(pipeline, 8192, 64, 10)
    with tracing.server_span("request", [], {}):
        wrong = authorize_request(secrets[0][:-3] + "AAA", organization_id)
        await servicer.Authorize(wrong, GrpcContext(()))
    found = named(exported)
    assert found["identify"].attributes[spans.DECISION] == "refused"
    assert found["identify"].attributes[spans.REASON] == reasons.CREDENTIAL_MALFORMED  # checksum wrong
    assert "decide" not in found
    assert found["request"].attributes[spans.DECISION] == "refused"
    assert found["request"].attributes[spans.REASON] == reasons.CREDENTIAL_MALFORMED
    assert found["request"].attributes[spans.RULE] == "S8"
    assert found["request"].parent is None  # no carrier named a trace: a new one


async def test_store_calls_are_client_spans_naming_the_method_and_never_its_arguments(
    world, exported: InMemorySpanExporter
) -> None:
    store, _organization, _secrets = world
    database.bound_calls(store, database.TimeBound(2.0, database.engine_probe(store.engine)))
    await store.get_credential("kYZqCzenyVq1dZzE")
    (span,) = exported.get_finished_spans()
    assert span.name == "store get_credential"
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes) == {"db.system.name": "sqlite", "db.operation.name": "get_credential"}


def test_a_failing_phase_is_marked_by_its_exception_type_never_its_text(
    exported: InMemorySpanExporter,
) -> None:
    def leaky(_value: str) -> str:
        raise ValueError("the secret wwak_s3cr3t was refused")

    with pytest.raises(ValueError):
        tracing.phase("extract", leaky, spans.extracted)("x")
    (span,) = exported.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError"
    assert not span.events


def test_the_sampler_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    exporter = InMemorySpanExporter()
    tracing.use(TracerProvider(resource=tracing.resource()), SimpleSpanProcessor(exporter))
    with tracing.server_span("request", [[("traceparent", TRACEPARENT)]], {}), tracing.span("child"):
        pass
    assert exporter.get_finished_spans() == ()


# ---- the front doors ----


class GrpcContext:
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def code(self) -> None:
        return None


async def answer(_request: Any, _context: Any) -> str:
    return "ok"


async def test_a_grpc_call_joins_the_trace_of_its_metadata(exported: InMemorySpanExporter) -> None:
    traced = tracing.traced_rpc(answer, "/watchword.v1.AuthService/Authorize", lambda: "rid-1")
    assert await traced(None, GrpcContext((("traceparent", TRACEPARENT),))) == "ok"
    (span,) = exported.get_finished_spans()
    assert span.name == "watchword.v1.AuthService/Authorize"
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.attributes["rpc.method"] == "Authorize"
    assert span.attributes["rpc.grpc.status_code"] == 0
    assert span.attributes["watchword.request_id"] == "rid-1"


def check_request(*headers: tuple[str, str]) -> Any:
    request = ext_authz_api.external_auth_pb2.CheckRequest()
    for name, value in headers:
        request.attributes.request.http.headers[name] = value
    return request


async def test_an_ext_authz_check_joins_the_checked_requests_trace_unless_envoy_traces_the_call(
    exported: InMemorySpanExporter,
) -> None:
    method = f"/{ext_authz_api.SERVICE_NAME}/Check"
    traced = tracing.traced_rpc(answer, method, lambda: "")
    await traced(check_request(("traceparent", TRACEPARENT)), GrpcContext(()))
    await traced(
        check_request(("traceparent", TRACEPARENT)), GrpcContext((("traceparent", OTHER_TRACEPARENT),))
    )
    # A Check refused before its request was decoded (overload: the raw bytes) has no request headers.
    assert await traced(b"\x0a\x02", GrpcContext((("traceparent", OTHER_TRACEPARENT),))) == "ok"
    from_request, from_envoy, undecoded = exported.get_finished_spans()
    assert from_request.name == "envoy.service.auth.v3.Authorization/Check"
    assert format(from_request.context.trace_id, "032x") == TRACE_ID
    assert format(from_envoy.context.trace_id, "032x") == OTHER_TRACEPARENT.split("-")[1]
    assert format(undecoded.context.trace_id, "032x") == OTHER_TRACEPARENT.split("-")[1]


async def test_an_http_ext_authz_check_joins_the_trace_of_the_headers_envoy_forwards(
    exported: InMemorySpanExporter,
) -> None:
    async def door(method: str, target: bytes, headers: list[tuple[str, str]], peer: str) -> Any:
        with tracing.span("inner"):
            return 403, [], b""

    traced = tracing.traced_http_check(door, "ext_authz http")
    await traced("POST", b"/x", [("traceparent", TRACEPARENT), ("tracestate", "vendor=1")], "127.0.0.1")
    found = named(exported)
    check = found["ext_authz http"]
    assert format(check.context.trace_id, "032x") == TRACE_ID
    assert check.context.trace_state.get("vendor") == "1"
    assert check.attributes["http.response.status_code"] == 403
    assert check.attributes["http.request.method"] == "POST"
    assert is_child(found["inner"], check)


async def test_an_oauth_http_request_is_a_span_named_by_its_route(exported: InMemorySpanExporter) -> None:
    async def token(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("no", status_code=401)

    app = tracing.traced_asgi(Starlette(routes=[Route("/oauth/token", token, methods=["POST"])]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ww.test") as client:
        assert (await client.post("/oauth/token", headers={"traceparent": TRACEPARENT})).status_code == 401
        assert (await client.request("BREW", "/nowhere/secret-path")).status_code == 404
    token_span, other = exported.get_finished_spans()
    assert token_span.name == "POST /oauth/token"
    assert format(token_span.context.trace_id, "032x") == TRACE_ID
    assert token_span.attributes["http.route"] == "/oauth/token"
    assert token_span.attributes["http.response.status_code"] == 401
    assert other.name == "_OTHER"  # neither an unknown method nor a path a caller chose names a span


async def test_an_unsampled_caller_costs_one_span_and_no_phase_spans(world) -> None:
    store, organization_id, secrets = world
    exporter = InMemorySpanExporter()
    # The default sampler follows the parent: a caller that did not sample (flags 00) is not sampled here.
    tracing.use(TracerProvider(resource=tracing.resource()), SimpleSpanProcessor(exporter))
    pipeline = Pipeline(store, Catalogue.load(), TransportSettings(), MASTER)
    unsampled = f"00-{TRACE_ID}-{PARENT_ID}-00"
    with tracing.server_span("request", [[("traceparent", unsampled)]], {}) as request:
        assert not request.is_recording()
        outcome = await pipeline.authorize(bearer(secrets[0]), "application.list", Resource(organization_id))
        with tracing.span("store call") as child:
            assert child is None
    assert outcome.decision.allowed
    assert exporter.get_finished_spans() == ()
    with tracing.server_span("request", [[("traceparent", TRACEPARENT)]], {}):
        await pipeline.authorize(bearer(secrets[0]), "application.list", Resource(organization_id))
    assert {span.name for span in exporter.get_finished_spans()} == {
        "request",
        "extract",
        "identify",
        "decide",
    }


async def test_no_phase_span_holds_the_secret_or_the_credential_id(
    world, exported: InMemorySpanExporter
) -> None:
    store, organization_id, secrets = world
    pipeline = Pipeline(store, Catalogue.load(), TransportSettings(), MASTER)
    resource = Resource(organization_id)
    with tracing.server_span("request", [[("traceparent", TRACEPARENT)]], {}):
        outcome = await pipeline.authorize(bearer(secrets[0]), "application.list", resource)
        await pipeline.authorize(bearer(secrets[0][:-1] + "x"), "application.list", resource)
    assert outcome.principal is not None
    exported_text = " ".join(span.to_json() for span in exported.get_finished_spans())
    assert "identify" in exported_text  # positive control
    for forbidden in (secrets[0], secrets[0].rsplit("_", 1)[1], outcome.principal.credential_id):
        assert forbidden not in exported_text


# ---- every answer on its request's span, also the refusals made before the pipeline ----


class FailedContext(GrpcContext):
    """A call the guard answered with an error status (the servicer raised, the abort set the code)."""

    def __init__(self, status: grpc.StatusCode) -> None:
        super().__init__(())
        self.status = status

    def code(self) -> grpc.StatusCode:  # type: ignore[override]
        return self.status


@pytest.mark.parametrize(
    ("status", "noted", "reason"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "field_invalid", "field_invalid"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded", "overloaded"),
        (grpc.StatusCode.UNAVAILABLE, "", "unavailable"),  # no ErrorInfo reason: the status names it
    ],
)
async def test_a_grpc_call_ended_by_an_error_status_carries_error_and_its_reason(
    exported: InMemorySpanExporter, status: grpc.StatusCode, noted: str, reason: str
) -> None:
    async def refused(_request: Any, _context: Any) -> Any:
        info = call.current.get()
        assert info is not None
        info.error_reason = noted  # what errors.abort and the overload bound note for the audit record
        raise RuntimeError("aborted")

    traced = tracing.traced_rpc(refused, "/watchword.v1.AuthService/Authorize", lambda: "", spans.rpc_failed)
    entered = call.current.set(call.CallInfo("rid", "Authorize"))
    try:
        with pytest.raises(RuntimeError):
            await traced(None, FailedContext(status))
    finally:
        call.current.reset(entered)
    (span,) = exported.get_finished_spans()
    assert span.attributes["rpc.grpc.status_code"] == status.value[0]
    assert (span.attributes[spans.DECISION], span.attributes[spans.REASON]) == ("error", reason)


async def test_authenticate_and_each_batch_entry_carry_their_answer_and_decision_id(
    world, exported: InMemorySpanExporter
) -> None:
    store, organization_id, secrets = world
    servicer = AuthServicer(Pipeline(store, Catalogue.load(), TransportSettings(), MASTER), 8192, 64, 10)
    with tracing.server_span("authenticate", [], {}):
        refused = await servicer.Authenticate(
            auth_pb2.AuthenticateRequest(credential=bearer_source("nope")), GrpcContext(())
        )
    batch = auth_pb2.AuthorizeBatchRequest(
        entries=[
            authorize_request(secrets[0], organization_id),
            authorize_request(secrets[0], organization_id, action=""),  # malformed: its own refusal
        ]
    )
    with tracing.server_span("batch", [], {}):
        results = (await servicer.AuthorizeBatch(batch, GrpcContext(()))).results
    found = named(exported)
    assert dict(found["authenticate"].attributes) == {
        spans.DECISION: "refused",
        spans.REASON: refused.refusal.reason,
        spans.ACTION: "authenticate",
        spans.DECISION_ID: refused.decision_id,
    }
    # A batch has no single answer: each entry's is an event of the batch's span.
    assert spans.DECISION not in found["batch"].attributes
    events = [dict(event.attributes or {}) for event in found["batch"].events]
    assert [event[spans.ENTRY] for event in events] == [0, 1]
    assert [event[spans.DECISION_ID] for event in events] == [r.decision_id for r in results]
    assert (events[0][spans.DECISION], events[1][spans.DECISION]) == ("allow", "deny")  # as audited
    assert (events[1][spans.REASON], events[1][spans.RULE]) == (reasons.ENTRY_INVALID, "S8")
    assert len({refused.decision_id, *(r.decision_id for r in results)}) == 3


def ext_authz_core(store: Any, routes: list[dict[str, str]], **settings: Any) -> ExtAuthzCore:
    catalogue = Catalogue.load()
    pipeline = Pipeline(store, catalogue, TransportSettings(), MASTER)
    table = RouteTable.build([RouteSettings.model_validate(route) for route in routes], catalogue)
    return ExtAuthzCore(pipeline, table, TransportSettings(), ExtAuthzSettings(**settings))


LIST_ROUTE = {"method": "GET", "path": "/orgs/{organization_id}/apps", "action": "application.list"}
LIST_ROUTE_EXTENSIONS = {"watchword.path": LIST_ROUTE["path"]}


@pytest.mark.parametrize(
    ("path", "extensions", "reason"),
    [
        ("/nowhere", {}, reasons.ROUTE_NOT_CONFIGURED),
        ("/x/o-1", {"watchword.action": "application.gte", "watchword.path": "/x/{organization_id}"},
         reasons.ACTION_UNKNOWN),
        ("/orgs/o-1/apps", {**LIST_ROUTE_EXTENSIONS, "watchword.action": "organization.get"},
         reasons.ROUTE_CONFLICT),
    ],
)  # fmt: skip
async def test_an_ext_authz_refusal_before_the_pipeline_carries_its_answer_and_decision_id(
    world, exported: InMemorySpanExporter, path: str, extensions: dict[str, str], reason: str
) -> None:
    store, _organization_id, secrets = world
    servicer = ext_authz_api.ExtAuthzServicer(ext_authz_core(store, [LIST_ROUTE]))
    request = check_request(("authorization", f"Bearer {secrets[0]}"))
    request.attributes.request.http.method, request.attributes.request.http.path = "GET", path
    request.attributes.context_extensions.update(extensions)
    with tracing.server_span("check", [], {}):
        answer = await servicer.Check(request, GrpcContext(()))
    decision_id = answer.dynamic_metadata.fields["x-watchword-decision-id"].string_value
    assert dict(named(exported)["check"].attributes) == {
        spans.DECISION: "deny",
        spans.REASON: reason,
        spans.RULE: "S8",
        spans.DECISION_ID: decision_id,
    }


async def test_an_ext_authz_check_watchword_cannot_decide_carries_error_and_its_reason(
    world, exported: InMemorySpanExporter
) -> None:
    store, _organization_id, _secrets = world
    core = ext_authz_core(store, [LIST_ROUTE], dry_run=True)

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    core._pipeline.authorize = broken  # type: ignore[method-assign]
    request = check_request()
    request.attributes.request.http.method, request.attributes.request.http.path = "GET", "/orgs/o/apps"
    with tracing.server_span("grpc check", [], {}):
        answer = await ext_authz_api.ExtAuthzServicer(core).Check(request, GrpcContext(()))
    assert answer.denied_response.status.code == 503  # never dry-run into an allow
    busy = OverloadInterceptor(1)
    busy.in_flight = 1
    door = tracing.traced_http_check(HttpFrontDoor(core, admission=busy), "http check")
    assert (await door("GET", b"/orgs/o/apps", [], "127.0.0.1"))[0] == 503
    busy.draining = True
    assert (await door("GET", b"/orgs/o/apps", [], "127.0.0.1"))[0] == 503
    outcomes = [
        (
            span.name,
            span.attributes[spans.DECISION],
            span.attributes[spans.REASON],
            spans.DECISION_ID in span.attributes,
        )
        for span in exported.get_finished_spans()
    ]
    assert outcomes == [
        ("grpc check", "error", reasons.AUTHORIZATION_UNAVAILABLE, False),
        ("http check", "error", "overloaded", False),
        ("http check", "error", "shutting_down", False),
    ]


async def test_a_dry_run_decision_says_so_on_its_span_with_the_would_be_answer(
    world, exported: InMemorySpanExporter
) -> None:
    store, _organization_id, _secrets = world
    servicer = ext_authz_api.ExtAuthzServicer(ext_authz_core(store, [LIST_ROUTE], dry_run=True))
    request = check_request()
    request.attributes.request.http.method, request.attributes.request.http.path = "GET", "/nowhere"
    with tracing.server_span("check", [], {}):
        answer = await servicer.Check(request, GrpcContext(()))
    assert answer.HasField("ok_response")  # allowed, in dry-run
    found = named(exported)["check"].attributes
    assert (found[spans.DECISION], found[spans.REASON], found[spans.DRY_RUN]) == (
        "deny",
        reasons.ROUTE_NOT_CONFIGURED,
        True,
    )
