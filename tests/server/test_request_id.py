"""Request ids (issue #8): the caller's `x-request-id` when safe, a fresh one otherwise; echoed back in
the response metadata and written into the audit log."""

from __future__ import annotations

import re
import string

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from watchword.observe import request_id
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.observe import audit_records, wait_for_records
from support.server import WatchwordProcess

SAFE = string.ascii_letters + string.digits + "-._:"
GENERATED = re.compile(r"[0-9a-f]{24}")


# ---- the validator ----


@given(st.text(alphabet=SAFE, min_size=1, max_size=request_id.MAX_LENGTH))
def test_safe_ids_are_kept(value: str) -> None:
    assert request_id.is_valid(value)
    assert request_id.choose([("x-request-id", value)]) == value


@given(st.text(max_size=300))
def test_anything_else_is_replaced_by_a_fresh_id(value: str) -> None:
    safe = 1 <= len(value) <= request_id.MAX_LENGTH and all(char in SAFE for char in value)
    assert request_id.is_valid(value) == safe
    chosen = request_id.choose([("x-request-id", value)])
    assert request_id.is_valid(chosen)
    if not safe:
        assert GENERATED.fullmatch(chosen)


@given(st.binary(max_size=64))
def test_binary_values_are_never_echoed(value: bytes) -> None:
    assert GENERATED.fullmatch(request_id.choose([("x-request-id", value)]))


def test_missing_or_repeated_ids_get_a_fresh_one() -> None:
    assert GENERATED.fullmatch(request_id.choose(None))
    assert GENERATED.fullmatch(request_id.choose([("other", "abc")]))
    assert GENERATED.fullmatch(request_id.choose([("x-request-id", "a"), ("x-request-id", "b")]))
    assert request_id.choose([("other", "x"), ("x-request-id", "abc-1")]) == "abc-1"
    assert request_id.new() != request_id.new()


@pytest.mark.parametrize(
    "bad",
    ["", "x" * 129, "two words", "line\nbreak", 'quote"', "tab\t", "ünïcode", "a/b", "{json}", "x" * 100_000],
)
def test_unsafe_examples(bad: str) -> None:
    assert not request_id.is_valid(bad)


# ---- through the server ----


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    with WatchwordProcess(tmp_path_factory.mktemp("request-id") / "data") as server:
        yield server


def authenticate(server: WatchwordProcess, *metadata: tuple[str, str]) -> tuple[str, list[str]]:
    source = common_pb2.CredentialSource(bare=common_pb2.BareCredential(token="wwak_nope"))
    _, call = server.auth().Authenticate.with_call(
        auth_pb2.AuthenticateRequest(credential=source), metadata=metadata, timeout=10
    )
    initial = [value for key, value in call.initial_metadata() if key == "x-request-id"]
    trailing = [value for key, value in call.trailing_metadata() if key == "x-request-id"]
    return (trailing or initial or [""])[0], trailing


def test_a_callers_request_id_comes_back_and_is_in_the_audit_line(served) -> None:
    rid, trailing = authenticate(served, ("x-request-id", "req-2024:abc.DEF_1"))
    assert rid == "req-2024:abc.DEF_1"
    assert trailing == [rid]
    records = wait_for_records(lambda: audit_records(served.output), lambda r: r["request_id"] == rid)
    assert [(r["rpc"], r["result"]) for r in records] == [("Authenticate", "refused")]


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "x" * 4000, "semi;colon", "<b>"])
def test_an_invalid_or_huge_request_id_is_replaced(served, bad: str) -> None:
    rid, _ = authenticate(served, ("x-request-id", bad))
    assert GENERATED.fullmatch(rid), rid
    records = wait_for_records(lambda: audit_records(served.output), lambda r: r["request_id"] == rid)
    assert len(records) == 1
    assert bad not in "".join(served.output)


def test_a_call_without_one_gets_a_fresh_id_each_time(served) -> None:
    first, _ = authenticate(served)
    second, _ = authenticate(served)
    assert GENERATED.fullmatch(first)
    assert GENERATED.fullmatch(second)
    assert first != second


def test_errors_carry_the_request_id_too(served) -> None:
    """An abort replaces the trailers: the request id is put back into them (and the ErrorInfo stays)."""
    with pytest.raises(grpc.RpcError) as refused:
        served.admin().ListOrganizations(
            admin_pb2.ListOrganizationsRequest(), metadata=(("x-request-id", "admin-no-token"),), timeout=10
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    trailers = dict(refused.value.trailing_metadata())
    assert trailers["x-request-id"] == "admin-no-token"
    assert "grpc-status-details-bin" in trailers
    with pytest.raises(grpc.RpcError) as invalid:
        served.auth().Authorize(
            auth_pb2.AuthorizeRequest(), metadata=(("x-request-id", "bad-input"),), timeout=10
        )
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(invalid.value.trailing_metadata())["x-request-id"] == "bad-input"
    records = wait_for_records(lambda: audit_records(served.output), lambda r: r["request_id"] == "bad-input")
    assert [(r["rpc"], r["result"], r["reason"], r["status"]) for r in records] == [
        ("Authorize", "error", "field_invalid", "INVALID_ARGUMENT")
    ]
