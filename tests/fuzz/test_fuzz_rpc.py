"""Fuzzing every RPC of AuthService and AdminService against the real server.

Random but structurally valid requests (built from the message descriptors, see support/fuzz_messages.py)
and raw random bytes. Every answer must be OK or a clean status (INVALID_ARGUMENT, UNAUTHENTICATED,
PERMISSION_DENIED, NOT_FOUND, FAILED_PRECONDITION, ALREADY_EXISTS, RESOURCE_EXHAUSTED, UNIMPLEMENTED)
with a documented google.rpc.ErrorInfo reason: never INTERNAL, UNKNOWN, or a call past its deadline.
After each test the server still answers its health check and has logged no traceback.

Admin calls with a valid admin token write records, so they go to a server of their own; the shared
session server only sees reads and refused writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import event, given
from hypothesis import strategies as st

from watchword.api import errors
from watchword.v1 import admin_pb2, auth_pb2

from support.fuzz_messages import INTERESTING_STRINGS, check_clean_answer, error_reason, messages
from support.fuzz_settings import fuzz
from support.server import WatchwordProcess

CALL_TIMEOUT = 10.0  # seconds: a call still running then is a hang
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # the server's default max_message_bytes

AUTH = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
ADMIN = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]
AUTH_METHODS = list(AUTH.methods)
ADMIN_METHODS = list(ADMIN.methods)


def path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def stub(channel: grpc.Channel, method: MethodDescriptor) -> grpc.UnaryUnaryMultiCallable:
    response = GetMessageClass(method.output_type)
    return channel.unary_unary(
        path(method),
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response.FromString,
    )


def raw_stub(channel: grpc.Channel, method: MethodDescriptor) -> grpc.UnaryUnaryMultiCallable:
    # Identity serializers: the bytes go on the wire as they are.
    return channel.unary_unary(path(method), request_serializer=None, response_deserializer=None)


def assert_still_healthy(server: WatchwordProcess) -> None:
    assert server.process is not None
    assert server.process.poll() is None, "the server died:\n" + "".join(server.output[-50:])
    health = health_pb2_grpc.HealthStub(server.channel())
    answer = health.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    output = "".join(server.output)
    assert "Traceback" not in output, output[-5000:]


@pytest.fixture
def shared(server: WatchwordProcess) -> Iterator[WatchwordProcess]:
    """The session server, checked after the test's examples."""
    yield server
    assert_still_healthy(server)


@pytest.fixture(scope="module")
def writable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchwordProcess]:
    """A server of this module's own: random admin writes with a valid token land here."""
    with WatchwordProcess(Path(tmp_path_factory.mktemp("fuzz-rpc")) / "data") as process:
        yield process


@pytest.fixture
def admin_server(writable: WatchwordProcess) -> Iterator[WatchwordProcess]:
    yield writable
    assert_still_healthy(writable)


# Metadata values are what HTTP/2 allows (printable ASCII); gRPC's client refuses others before sending.
_PRINTABLE = [value for value in INTERESTING_STRINGS if value.isascii() and value.isprintable()]
authorizations = st.one_of(
    st.just(()),
    st.sampled_from(_PRINTABLE).map(lambda value: (("authorization", f"Bearer {value}".strip()),)),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(
        lambda value: (("authorization", value),)
    ),
)


def method_id(method: MethodDescriptor) -> str:
    return method.name


@pytest.mark.parametrize("method", AUTH_METHODS, ids=method_id)
@fuzz(examples=30, timeout_per_call=True)
@given(data=st.data())
def test_auth_rpcs_answer_any_request_cleanly(
    shared: WatchwordProcess, method: MethodDescriptor, data: st.DataObject
) -> None:
    request = data.draw(messages(method.input_type), label="request")
    metadata = data.draw(authorizations, label="metadata")
    call = stub(shared.channel(), method)
    outcome = check_clean_answer(
        lambda: call(request, timeout=CALL_TIMEOUT, metadata=metadata), request.ByteSize(), MAX_MESSAGE_BYTES
    )
    event(outcome)


@pytest.mark.parametrize("method", ADMIN_METHODS, ids=method_id)
@fuzz(examples=5, timeout_per_call=True)
@given(data=st.data())
def test_admin_rpcs_without_a_valid_admin_token_are_unauthenticated(
    shared: WatchwordProcess, method: MethodDescriptor, data: st.DataObject
) -> None:
    request = data.draw(messages(method.input_type), label="request")
    metadata = data.draw(authorizations, label="metadata")
    with pytest.raises(grpc.RpcError) as caught:
        stub(shared.channel(), method)(request, timeout=CALL_TIMEOUT, metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, caught.value.details()
    assert error_reason(caught.value) in (errors.ADMIN_TOKEN_MISSING, errors.ADMIN_TOKEN_INVALID)


@pytest.mark.parametrize("method", ADMIN_METHODS, ids=method_id)
@fuzz(examples=10, timeout_per_call=True)
@given(data=st.data())
def test_admin_rpcs_with_the_admin_token_answer_any_request_cleanly(
    admin_server: WatchwordProcess, method: MethodDescriptor, data: st.DataObject
) -> None:
    request = data.draw(messages(method.input_type), label="request")
    call = stub(admin_server.channel(), method)
    outcome = check_clean_answer(
        lambda: call(request, timeout=CALL_TIMEOUT, metadata=admin_server.admin_metadata),
        request.ByteSize(),
        MAX_MESSAGE_BYTES,
    )
    event(outcome)


raw_bytes = st.one_of(
    st.binary(max_size=200),
    # Valid framing with garbage inside: field 1, length-delimited, random payload.
    st.binary(max_size=120).map(lambda b: b"\x0a" + bytes([len(b)]) + b if len(b) < 128 else b),
    st.sampled_from(
        [b"\x0a\x80", b"\x08" + b"\xff" * 11, b"\x0b", b"\x0f\x00", b"\x1b" * 100 + b"\x1c" * 100]
    ),
)


@pytest.mark.parametrize("method", AUTH_METHODS + ADMIN_METHODS, ids=method_id)
@fuzz(examples=6, timeout_per_call=True)
@given(payload=raw_bytes)
def test_raw_random_bytes_are_answered_cleanly_by_every_rpc(
    admin_server: WatchwordProcess, method: MethodDescriptor, payload: bytes
) -> None:
    """Bytes that may not even be a message; admin RPCs get them behind a valid token, so they are
    decoded."""
    metadata = admin_server.admin_metadata
    call = raw_stub(admin_server.channel(), method)
    outcome = check_clean_answer(
        lambda: call(payload, timeout=CALL_TIMEOUT, metadata=metadata), len(payload), MAX_MESSAGE_BYTES
    )
    event(outcome)
