"""OpenTelemetry tracing: the SDK set up from the standard `OTEL_*` variables, and the few calls the rest of
Watchword makes (docs/operations/tracing.md).

Off unless the operator names an exporter (`OTEL_TRACES_EXPORTER=otlp` or `console`) or an OTLP endpoint
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `OTEL_SDK_DISABLED=true` and
`OTEL_TRACES_EXPORTER=none` keep it off whatever else is set. Each serving process (each worker) sets up its
own provider, exports through the SDK's BatchSpanProcessor and flushes it when it stops.

Off, nothing here calls into OpenTelemetry: the hot path reads the module attribute `enabled` (and the
pipeline and the front doors wrap their phases only when it is on), `span()` hands out one shared no-op
context manager. Attributes are ids of routes, actions, reasons and rules, never what a caller sent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

log = logging.getLogger("watchword.tracing")

DEFAULT_SERVICE_NAME = "watchword"
# The specification's default transport; the Python SDK's own auto-configuration defaults to grpc.
DEFAULT_PROTOCOL = "http/protobuf"
PROTOCOLS = ("grpc", "http/protobuf")
EXPORTERS = ("otlp", "console")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
TRACER_NAME = "watchword"
SERVER, CLIENT, INTERNAL = SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL
Attributes = Mapping[str, str | int | bool]
Headers = Iterable[tuple[str, str]]
P = ParamSpec("P")
# What a wrapped call's span carries, read from its result (and its positional arguments).
Describe = Callable[..., Attributes]
R = TypeVar("R")

# Read on the hot path: a module attribute, so "off" costs one lookup and no call.
enabled = False
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None


class TracingConfigError(ValueError):
    """An `OTEL_*` variable names something Watchword cannot do: a start-up error, with what to fix."""


@dataclass(frozen=True)
class TraceSettings:
    """What the `OTEL_*` variables ask for, once checked."""

    exporters: tuple[str, ...]
    protocol: str
    endpoint: str  # as the exporter will read it; "" for its default
    sampler: str


def _value(environ: Mapping[str, str], *names: str, default: str = "") -> str:
    """The first of `names` that is set and not blank (the signal-specific variable comes first)."""
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return value
    return default


def _sampler(environ: Mapping[str, str]) -> str:
    sampler = _value(environ, "OTEL_TRACES_SAMPLER", default="parentbased_always_on").lower()
    if sampler not in SAMPLERS:
        raise TracingConfigError(f"OTEL_TRACES_SAMPLER={sampler!r} is not one of {', '.join(SAMPLERS)}")
    if sampler.endswith("traceidratio"):
        argument = _value(environ, "OTEL_TRACES_SAMPLER_ARG", default="1.0")
        try:
            ratio = float(argument)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise TracingConfigError(f"OTEL_TRACES_SAMPLER_ARG={argument!r} is not a ratio from 0 to 1")
        sampler = f"{sampler} {ratio:g}"
    return sampler


def read_settings(environ: Mapping[str, str] = os.environ) -> TraceSettings | None:
    """The tracing the environment asks for, or None: off (the default)."""
    if _value(environ, "OTEL_SDK_DISABLED").lower() == "true":
        return None
    endpoint = _value(environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    named = _value(environ, "OTEL_TRACES_EXPORTER", default="otlp" if endpoint else "none").lower()
    exporters = tuple(dict.fromkeys(name.strip() for name in named.split(",") if name.strip()))
    if exporters == ("none",) or not exporters:
        return None
    unknown = [name for name in exporters if name not in EXPORTERS]
    if unknown:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER names {', '.join(unknown)}: Watchword exports to otlp, console or none"
        )
    protocol = _value(
        environ, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL", default=DEFAULT_PROTOCOL
    )
    if "otlp" in exporters and protocol not in PROTOCOLS:
        raise TracingConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not one of {PROTOCOLS}")
    return TraceSettings(exporters, protocol, endpoint, _sampler(environ))


def resource() -> Resource:
    """`OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` as the SDK reads them (with a
    `service.instance.id` of each process), and the process id: each worker is an instance of its own. The
    service is `watchword` unless they name it."""
    found = Resource.create()
    own: dict[str, str | int] = {"process.pid": os.getpid()}
    if str(found.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        own[SERVICE_NAME] = DEFAULT_SERVICE_NAME
    return found.merge(Resource(own))


def _exporter(name: str, protocol: str) -> SpanExporter:
    """The exporter `name` names; each reads its own `OTEL_EXPORTER_OTLP_*` variables (endpoint, headers,
    timeout, certificates, compression)."""
    if name == "console":
        return ConsoleSpanExporter()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


def start(settings: TraceSettings) -> None:
    """Set up this process's provider (the sampler comes from `OTEL_TRACES_SAMPLER(_ARG)`, the batching
    from `OTEL_BSP_*`) and turn tracing on."""
    processors = [BatchSpanProcessor(_exporter(name, settings.protocol)) for name in settings.exporters]
    use(TracerProvider(resource=resource()), *processors)
    # Scheme, host and port only: a URL's user part or query could hold a key.
    parts = urlsplit(settings.endpoint)
    port = f":{parts.port}" if parts.port else ""
    where = f"{parts.scheme}://{parts.hostname}{port}" if parts.hostname else "the default endpoint"
    log.info(
        "tracing on: %s (%s to %s), sampler %s",
        ", ".join(settings.exporters),
        settings.protocol,
        where,
        settings.sampler,
    )


def use(provider: TracerProvider, *processors: SpanProcessor) -> None:
    """Trace through `provider` from now on (tests and benchmarks pass one with an in-memory exporter).
    Watchword keeps its own provider rather than the process-wide one, which can be set only once."""
    global enabled, _provider, _tracer
    for processor in processors:
        provider.add_span_processor(processor)
    _provider, _tracer = provider, provider.get_tracer(TRACER_NAME)
    enabled = True


def shutdown() -> None:
    """Turn tracing off, exporting every span still queued (blocking: run it off the event loop)."""
    global enabled, _provider, _tracer
    provider, enabled, _provider, _tracer = _provider, False, None, None
    if provider is not None:
        provider.shutdown()


# ---- the calls the rest of Watchword makes ----


class _NoSpan:
    """What `span()` hands out when tracing is off: enters and leaves, touching nothing."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_exc: object) -> None:
        return None


_NO_SPAN = _NoSpan()


def span(
    name: str, attributes: Attributes | None = None, kind: SpanKind = INTERNAL
) -> AbstractContextManager[Span | None]:
    """A child of the current span, or a no-op when tracing is off (the span is None then)."""
    tracer = _tracer
    if tracer is None or _unsampled.get():
        return _NO_SPAN
    return _Opened(tracer.start_span(name, None, kind, attributes))


# True inside a request whose span was sampled out: its children would be dropped too (the default,
# parent-based samplers), so they are not made at all, and an unsampled request costs one span.
_unsampled: ContextVar[bool] = ContextVar("watchword_trace_unsampled", default=False)


class _Opened:
    """`span` as the current span while the block runs. An exception marks it failed with its type only:
    the SDK's own default records the exception's text and traceback, which may quote a token or a store
    statement's parameters."""

    __slots__ = ("_span", "_tokens")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._tokens: tuple[object, Token[bool] | None] = (None, None)

    def __enter__(self) -> Span:
        span = self._span
        unsampled = None if span.is_recording() else _unsampled.set(True)
        self._tokens = (otel_context.attach(trace.set_span_in_context(span)), unsampled)
        return span

    def __exit__(self, kind: object, exc: BaseException | None, _tb: object) -> None:
        if exc is not None:
            self._span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        self._span.end()
        attached, unsampled = self._tokens
        if unsampled is not None:
            _unsampled.reset(unsampled)
        otel_context.detach(attached)  # type: ignore[arg-type]


def _carrier(headers: Headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def parent_of(*carriers: Headers) -> Any:
    """The trace context of the first carrier that has one (W3C `traceparent`/`tracestate`, or whatever
    `OTEL_PROPAGATORS` names), or None: a new trace."""
    for headers in carriers:
        context = propagate.extract(_carrier(headers))
        if trace.get_current_span(context).get_span_context().is_valid:
            return context
    return None


def server_span(
    name: str, carriers: Iterable[Headers], attributes: Attributes
) -> AbstractContextManager[Span]:
    """The span of one request Watchword serves, a child of the caller's span when a carrier names one.
    Only called when tracing is on."""
    assert _tracer is not None, "server_span is only called while tracing is on"
    return _Opened(_tracer.start_span(name, parent_of(*carriers), SERVER, attributes))


def annotate(attributes: Attributes) -> None:
    """Add attributes to the current span (a server span, or a phase's)."""
    trace.get_current_span().set_attributes(attributes)


def answered(current: Span | None, status: int) -> None:
    """An HTTP client span's answer: its status, and an error from 400 up (semantic conventions)."""
    if current is not None:
        current.set_attribute("http.response.status_code", status)
        if status >= 400:
            current.set_status(Status(StatusCode.ERROR, str(status)))


def phase(name: str, function: Callable[P, R], describe: Describe) -> Callable[P, R]:
    """`function` in a span of its own, with the attributes `describe` reads from its result and its
    positional arguments."""
    tracer = _tracer
    assert tracer is not None, "phases are wrapped only while tracing is on"

    def traced(*args: P.args, **kwargs: P.kwargs) -> R:
        if _unsampled.get():
            return function(*args, **kwargs)
        with _Opened(tracer.start_span(name)) as current:
            result = function(*args, **kwargs)
            current.set_attributes(describe(result, *args))
            return result

    return traced


def async_phase(
    name: str, function: Callable[P, Awaitable[R]], describe: Describe
) -> Callable[P, Awaitable[R]]:
    """`phase` for a coroutine function."""
    tracer = _tracer
    assert tracer is not None, "phases are wrapped only while tracing is on"

    async def traced(*args: P.args, **kwargs: P.kwargs) -> R:
        if _unsampled.get():
            return await function(*args, **kwargs)
        with _Opened(tracer.start_span(name)) as current:
            result = await function(*args, **kwargs)
            current.set_attributes(describe(result, *args))
            return result

    return traced


def annotated(function: Callable[P, Awaitable[R]], describe: Describe) -> Callable[P, Awaitable[R]]:
    """`function`, adding what `describe` reads from its result to the span current when it is called."""

    async def noted(*args: P.args, **kwargs: P.kwargs) -> R:
        if _unsampled.get():
            return await function(*args, **kwargs)
        current = trace.get_current_span()
        result = await function(*args, **kwargs)
        current.set_attributes(describe(result, *args))
        return result

    return noted


# ---- the front doors' server spans (each wrapped only while tracing is on) ----

# gRPC methods whose trace context also travels in the request itself, after the call's own metadata:
# method name -> the request's headers (the ext_authz Check: the headers of the request Envoy checks).
request_carriers: dict[str, Callable[[Any], Headers]] = {}
RpcBehavior = Callable[[Any, Any], Awaitable[Any]]


def traced_rpc(
    behavior: RpcBehavior,
    method: str,
    request_id: Callable[[], str],
    failed: Callable[[str], Attributes] | None = None,
) -> RpcBehavior:
    """A unary gRPC behavior in a server span named `package.Service/Method` (semantic conventions),
    joining the trace of the call's metadata or, for the methods in `request_carriers`, of the request.
    `failed` reads the outcome of a call that ended in an error status (given the status's name)."""
    name = method.lstrip("/")
    service, _, rpc = name.rpartition("/")
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc}
    in_request = request_carriers.get(method)

    async def traced(request: Any, context: Any) -> Any:
        carriers: list[Headers] = [context.invocation_metadata() or ()]
        if in_request is not None:
            carriers.append(in_request(request))
        with server_span(name, carriers, attributes) as current:
            current.set_attribute("watchword.request_id", request_id())
            try:
                return await behavior(request, context)
            finally:
                code = context.code()  # None: OK (nothing was set)
                status = code.value[0] if code is not None else 0
                current.set_attribute("rpc.grpc.status_code", status)
                if status and failed is not None:
                    current.set_attributes(failed(code.name))

    return traced


HttpCheck = Callable[[str, bytes, list[tuple[str, str]], str], Awaitable[tuple[int, Any, bytes]]]


def traced_http_check(check: HttpCheck, name: str) -> HttpCheck:
    """The E4 door's checks (ext_authz over HTTP) in server spans joining the trace of the checked
    request's headers, which Envoy forwards (`allowed_headers` must let `traceparent` through)."""

    async def traced(method: str, target: bytes, headers: list[tuple[str, str]], peer: str) -> Any:
        with server_span(name, (headers,), {"http.request.method": method[:16]}) as current:
            response = await check(method, target, headers, peer)
            current.set_attribute("http.response.status_code", response[0])
            return response

    return traced


Asgi = Callable[[Any, Any, Any], Awaitable[None]]
# RFC 9110's methods; any other is `_OTHER` (semantic conventions), so callers cannot grow the span names.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})


def traced_asgi(app: Asgi) -> Asgi:
    """An ASGI app (the OAuth HTTP endpoints) whose requests are server spans named `METHOD route`."""

    async def traced(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        method = scope["method"] if scope["method"] in HTTP_METHODS else "_OTHER"
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
        answered: list[int] = []

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                answered.append(message["status"])
            await send(message)

        with server_span(method, (headers,), {"http.request.method": method}) as current:
            try:
                await app(scope, receive, sending)
            finally:
                _name_route(current, method, scope.get("route"))
                if answered:
                    current.set_attribute("http.response.status_code", answered[0])
        return None

    return traced


def _name_route(current: Span, method: str, route: Any) -> None:
    """Named by the route the router matched (a fixed path, never the request's own path)."""
    path = getattr(route, "path", "")
    if path:
        current.update_name(f"{method} {path}")
        current.set_attribute("http.route", path)
