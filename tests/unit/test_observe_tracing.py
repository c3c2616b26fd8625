"""Tracing (issue #15, section 1), in process with the SDK's in-memory exporter: when it is on, the span tree
each front door and phase makes, the caller's trace joined from each transport, the attributes; when it is
off, nothing wrapped and nothing exported."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

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
from watchword.crypto.master_key import MasterKey, generate
from watchword.decide.catalogue import Catalogue
from watchword.domain import HttpParts, Resource
from watchword.extract import TransportSettings
from watchword.observe import spans, tracing
from watchword.pipeline import Pipeline
from watchword.store import database

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
    pipeline = Pipeline(store, Catalogue.load(), TransportSettings(), MASTER)
    with tracing.server_span("request", [[("traceparent", TRACEPARENT)]], {}):
        outcome = await pipeline.authorize(bearer(secrets[0]), "application.list", Resource(organization_id))
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
    assert request.attributes[spans.DECISION] == "allow"
    assert request.attributes[spans.KIND] == "api_key"
    assert request.attributes[spans.ACTION] == "application.list"


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
    with tracing.server_span("request", [], {}):
        await pipeline.authorize(bearer(secrets[0][:-3] + "AAA"), "application.list", resource)
    found = named(exported)
    assert found["identify"].attributes[spans.DECISION] == "refused"
    assert found["identify"].attributes[spans.REASON] == reasons.CREDENTIAL_MALFORMED  # checksum wrong
    assert "decide" not in found
    assert found["request"].attributes[spans.DECISION] == "refused"
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
    from_request, from_envoy = exported.get_finished_spans()
    assert from_request.name == "envoy.service.auth.v3.Authorization/Check"
    assert format(from_request.context.trace_id, "032x") == TRACE_ID
    assert format(from_envoy.context.trace_id, "032x") == OTHER_TRACEPARENT.split("-")[1]


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
