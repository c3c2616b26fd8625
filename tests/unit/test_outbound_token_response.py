"""O3/O4: `outbound.token_response`, reading a token server's answer (RFC 6749 §5.1/§5.2, RFC 9110
Retry-After) into a token or an OutboundTokenError that says whether a retry can help."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from watchword.outbound.network_guard import OutboundTokenError
from watchword.outbound.token_response import (
    MAX_EXPIRES_IN_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    oauth_error_code,
    parse_token_response,
    read_answer,
    retry_after,
)

WHERE = "https://token.example/t"


def answer(
    status: int, document: object = None, *, headers: dict[str, str] | None = None
) -> tuple[str, float]:
    body = None if document is None else json.dumps(document).encode()
    return read_answer(status, headers or {}, body, "", where=WHERE, default_expires_in=300.0)


def refusal(status: int, document: object = None, **options: object) -> OutboundTokenError:
    with pytest.raises(OutboundTokenError) as caught:
        answer(status, document, **options)  # type: ignore[arg-type]
    return caught.value


def test_o3_a_bearer_token_with_expires_in():
    assert answer(200, {"access_token": "tok", "token_type": "bearer", "expires_in": 60}) == ("tok", 60.0)


def test_o3_a_missing_token_type_and_expires_in_mean_bearer_and_the_default():
    assert answer(200, {"access_token": "tok"}) == ("tok", 300.0)


@pytest.mark.parametrize(
    ("value", "seconds"), [("120", 120.0), (0, 0.0), (1.5, 1.5), (10**400, MAX_EXPIRES_IN_SECONDS)]
)
def test_o3_expires_in_as_number_or_numeric_string_is_bounded(value, seconds):
    assert parse_token_response(json.dumps({"access_token": "t", "expires_in": value}).encode(), 5) == (
        "t",
        seconds,
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"access_token": "t", "expires_in": -1}, "non-negative"),
        ({"access_token": "t", "expires_in": True}, "not a number"),
        ({"access_token": "t", "expires_in": "soon"}, "not a number"),
        ({"access_token": "t", "token_type": "DPoP"}, "not Bearer"),
        ({"access_token": "t\r\nX: 1"}, "Bearer header cannot carry"),
        ({"access_token": ""}, "no access_token"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_o3_an_unusable_success_answer_is_invalid_and_not_retried(document, message):
    error = refusal(200, document)
    assert (error.reason, error.retryable) == ("token_response_invalid", False)
    assert message in str(error)
    assert "X: 1" not in str(error)


def test_o3_a_200_whose_body_could_not_be_read_says_why():
    with pytest.raises(OutboundTokenError, match="is larger than"):
        read_answer(200, {}, None, "is larger than 10 bytes", where=WHERE, default_expires_in=1)
    with pytest.raises(OutboundTokenError, match="not JSON"):
        read_answer(200, {}, b"<html>", "", where=WHERE, default_expires_in=1)


@pytest.mark.parametrize(
    ("status", "document", "reason"),
    [
        (401, None, "token_server_rejected_client"),
        (400, {"error": "invalid_client"}, "token_server_rejected_client"),
        (400, {"error": "invalid_scope"}, "token_server_refused"),
        (403, None, "token_server_refused"),
        (204, None, "token_response_invalid"),
    ],
)
def test_o3_refusals_are_not_retried(status, document, reason):
    error = refusal(status, document)
    assert (error.reason, error.retryable) == (reason, False)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_o3_overload_and_server_errors_are_retryable_with_retry_after(status):
    error = refusal(status, headers={"retry-after": "7"})
    assert (error.reason, error.retryable, error.retry_after) == ("token_server_error", True, 7.0)


def test_o3_the_error_description_is_never_read():
    error = refusal(400, {"error": "invalid_request", "error_description": "your secret is s3cr3t"})
    assert "s3cr3t" not in str(error)
    assert "invalid_request" in str(error)


@pytest.mark.parametrize(
    "body", [b"", b"{", b'{"error": 5}', b'{"error": "a\\"b"}', b'{"error": "' + b"x" * 65 + b'"}']
)
def test_o3_an_unusable_error_code_is_left_out(body):
    assert oauth_error_code(body) is None


def test_o3_retry_after_as_seconds_or_a_date_is_capped():
    assert retry_after(None) is None
    assert retry_after("not a date") is None
    assert retry_after(" 3 ") == 3.0
    assert retry_after("99999") == MAX_RETRY_AFTER_SECONDS
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 <= (retry_after(in_a_minute) or 0) <= 60
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after(past) == 0.0
    next_week = format_datetime(datetime.now(UTC) + timedelta(days=7), usegmt=True)
    assert retry_after(next_week) == MAX_RETRY_AFTER_SECONDS
