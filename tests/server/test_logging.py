"""Structured logs (issue #8): JSON lines (or text) that name the request id of the RPC they belong to."""

from __future__ import annotations

import io
import json
import logging
import socket
from datetime import UTC, datetime

import pytest

from watchword.config import Settings
from watchword.observe import call, logging_setup
from watchword.v1 import admin_pb2, auth_pb2

from support.server import WatchwordProcess
from support.tenants import make_tenant


def emit(log_format: logging_setup.LogFormat, message: str, *args: object, exc: bool = False) -> str:
    stream = io.StringIO()
    logger = logging.getLogger(f"test.{log_format}")
    logger.propagate = False
    logger.handlers = [logging_setup.handler(log_format, stream)]
    logger.setLevel(logging.INFO)
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception(message, *args)
    else:
        logger.warning(message, *args)
    return stream.getvalue()


def test_json_lines_outside_an_rpc() -> None:
    line = emit("json", "hello %s", "world")
    assert line.endswith("\n")
    assert line.count("\n") == 1
    record = json.loads(line)
    assert record["message"] == "hello world"
    assert record["level"] == "WARNING"
    assert record["logger"] == "test.json"
    assert "request_id" not in record
    assert datetime.fromisoformat(record["ts"]).tzinfo == UTC


def test_json_lines_carry_the_request_id_and_keep_exceptions_on_one_line() -> None:
    token = call.current.set(call.CallInfo(request_id="rid-42", rpc="Authorize"))
    try:
        line = emit("json", "failed: %r", "multi\nline", exc=True)
    finally:
        call.current.reset(token)
    assert line.count("\n") == 1, "a newline in a message or a traceback cannot start a forged line"
    record = json.loads(line)
    assert record["request_id"] == "rid-42"
    assert record["message"] == "failed: 'multi\\nline'"
    assert "ValueError: boom" in record["exception"]


def test_text_lines_name_the_request_id_only_during_an_rpc() -> None:
    assert emit("text", "outside").rstrip().endswith("WARNING test.text outside")
    token = call.current.set(call.CallInfo(request_id="rid-7", rpc="Authenticate"))
    try:
        assert emit("text", "inside").rstrip().endswith("WARNING test.text inside request_id=rid-7")
    finally:
        call.current.reset(token)


@pytest.mark.parametrize(
    ("mode", "chosen", "effective"),
    [
        ("development", "auto", "text"),
        ("production", "auto", "json"),
        ("development", "json", "json"),
        ("production", "text", "text"),
    ],
)
def test_auto_format_follows_the_mode(mode: str, chosen: str, effective: str) -> None:
    extra = {"master_key": "A" * 43, "allow_non_https_issuer": True} if mode == "production" else {}
    settings = Settings(mode=mode, log_format=chosen, **extra)
    assert settings.effective_log_format == effective


def test_a_warning_during_an_rpc_is_a_json_line_with_its_request_id(tmp_path) -> None:
    """The outbound token server is down: the warning logged while SignOutbound runs names the call."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    env = {"WATCHWORD_LOG_FORMAT": "json", "WATCHWORD_OUTBOUND_ALLOW_PRIVATE_TOKEN_URLS": "true"}
    with WatchwordProcess(tmp_path / "data", env=env) as server:
        org = make_tenant(server, "logs").organization_id
        created = server.admin().CreateOutboundCredential(
            admin_pb2.CreateOutboundCredentialRequest(
                credential=admin_pb2.OutboundCredential(
                    organization_id=org,
                    name="down",
                    scheme=admin_pb2.OUTBOUND_SCHEME_OAUTH2_CLIENT_CREDENTIALS,
                    token_url=f"http://127.0.0.1:{dead_port}/token",
                    client_id="c",
                    client_auth_method=admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_POST,
                ),
                secrets=admin_pb2.OutboundSecrets(client_secret="never-logged-secret"),
            ),
            metadata=server.admin_metadata,
        )
        response = server.auth().SignOutbound(
            auth_pb2.SignOutboundRequest(
                outbound_credential_id=created.credential.id, url="https://customer.example/h", body=b"{}"
            ),
            metadata=(*server.admin_metadata, ("x-request-id", "sign-down-1")),
            timeout=30,
        )
        assert response.error.reason == "token_server_unreachable"
        logs = []
        for line in server.output:
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(parsed, dict) and "level" in parsed:
                logs.append(parsed)
        warnings = [log for log in logs if log["level"] == "WARNING" and "no access token" in log["message"]]
        assert len(warnings) == 1
        assert warnings[0]["request_id"] == "sign-down-1"
        assert warnings[0]["logger"] == "watchword.outbound.tokens"
        assert logs, "every log line of the server is JSON"
        plain = [line for line in server.output if line.startswith(("20", "INFO", "WARNING"))]
        assert plain == []
        assert "never-logged-secret" not in "".join(server.output)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_s8_repeated_lines_are_rate_limited_and_the_left_out_ones_counted() -> None:
    clock = _Clock()
    stream = io.StringIO()
    out = logging_setup.handler("text", stream)
    out.filters.insert(0, logging_setup.RepeatFilter(burst=3, interval=10.0, clock=clock))
    logger = logging.getLogger("test.repeat")
    logger.propagate = False
    logger.handlers = [out]
    for n in range(50):
        logger.warning("store unavailable during %s", f"call {n}")
    logger.warning("another kind of line")  # a different template is not held back by the flood
    clock.now += 10.0
    logger.warning("store unavailable during %s", "call 50")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5
    assert [line.split(" during ")[-1] for line in lines[:3]] == ["call 0", "call 1", "call 2"]
    assert lines[3].endswith("another kind of line")
    assert lines[4].endswith("call 50 [47 more like this left out in 10s]")


def test_the_server_log_handler_limits_repeats() -> None:
    assert any(isinstance(f, logging_setup.RepeatFilter) for f in logging_setup.handler("json").filters)
