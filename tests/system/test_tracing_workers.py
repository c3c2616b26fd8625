"""Tracing with worker processes (issue #15, section 1): `watchword serve --workers 2` with the `OTEL_*`
variables; each worker sets up its own tracer provider and exports its own spans (its own process id and
service instance), the supervisor none."""

from __future__ import annotations

from pathlib import Path

import grpc

from watchword.v1 import auth_pb2, auth_pb2_grpc, common_pb2

from support.otlp_receiver import OtlpReceiver
from support.server import WatchwordProcess

AUTHENTICATE = "watchword.v1.AuthService/Authenticate"
TRACE_ID = "5bf92f3577b34da6a3ce929d0e0e4736"


def authenticate_on_a_new_connection(server: WatchwordProcess, index: int) -> None:
    # A channel with a connection of its own: SO_REUSEPORT spreads connections over the workers.
    with grpc.insecure_channel(server.address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        header = common_pb2.KeyValue(name="authorization", value="Bearer not-a-credential")
        request = auth_pb2.AuthenticateRequest(
            credential=common_pb2.CredentialSource(http=common_pb2.HttpRequest(headers=[header]))
        )
        traceparent = f"00-{TRACE_ID}-{index + 1:016x}-01"
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        stub.Authenticate(request, metadata=(("traceparent", traceparent),), timeout=10)


def test_each_worker_exports_its_own_spans(tmp_path: Path) -> None:
    with OtlpReceiver("grpc") as receiver:
        env = {"WATCHWORD_WORKERS": "2", **receiver.env()}
        with WatchwordProcess(tmp_path / "data", env=env) as server:
            for index in range(24):
                authenticate_on_a_new_connection(server, index)

            def both_workers(spans: list) -> bool:
                return len({s.resource["process.pid"] for s in spans if s.name == AUTHENTICATE}) == 2

            spans = receiver.wait_for(both_workers)
            supervisor = server.process.pid if server.process is not None else 0
    calls = [span for span in spans if span.name == AUTHENTICATE]
    assert all(span.trace_id == TRACE_ID for span in calls)
    assert supervisor not in {span.resource["process.pid"] for span in spans}
    assert len({span.resource["service.instance.id"] for span in calls}) == 2
    assert {span.resource["service.name"] for span in spans} == {"watchword"}
