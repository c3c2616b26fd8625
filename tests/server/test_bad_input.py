"""Bad input never crashes, hangs or leaks a stack trace (issue #2, "Tests").

Everything goes to the real `watchword serve` (the session `server` fixture) through the generated stubs,
or through a raw channel method when the bytes themselves are the bad input. Every call carries a
deadline, so a hang fails the test instead of stalling the suite. Each RPC error must carry a
google.rpc.Status with one ErrorInfo whose reason is a documented code (`api/errors.py`), and no message
may hold a traceback or a file path. Refusals are answers: their reason must be in `reasons.REASONS`.
"""

from __future__ import annotations

import re
import uuid
import zlib
from collections.abc import Callable
from typing import TypeVar

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchword import secret_format
from watchword.api import errors
from watchword.config import Settings
from watchword.domain import CredentialKind
from watchword.reasons import REASONS
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.server import WatchwordProcess
from support.tenants import API_KEY, APPLICATION_SECRET, Tenant, create_credential, make_tenant

TIMEOUT = 10
MAX_TOKEN_BYTES = Settings.model_fields["max_token_bytes"].default
MAX_HEADER_VALUE = 2 * MAX_TOKEN_BYTES  # api/convert.py bounds header and cookie values at twice a token
MAX_HEADERS = Settings.model_fields["max_request_headers"].default
MAX_BATCH = Settings.model_fields["max_batch_entries"].default
MAX_MESSAGE_BYTES = Settings.model_fields["max_message_bytes"].default
MEGABYTE = 1024 * 1024
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# What a message must never contain: a Python traceback, a source file or an installation path.
_LEAKS = re.compile(r"Traceback|File \"|\.py\b|site-packages|/(?:usr|home|root|work|tmp|opt|srv)/")


# ---- helpers -----------------------------------------------------------------------------------------


def assert_clean(text: str) -> None:
    assert not _LEAKS.search(text), f"internals leaked into an answer: {text[:500]!r}"


def bare(token: str, client_id: str = "") -> common_pb2.CredentialSource:
    return common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=token, client_id=client_id))


def http(
    *headers: tuple[str, str], cookies: tuple[tuple[str, str], ...] = (), method: str = "GET"
) -> common_pb2.CredentialSource:
    return common_pb2.CredentialSource(
        http=common_pb2.HttpRequest(
            method=method,
            path="/v1/things",
            headers=[common_pb2.KeyValue(name=name, value=value) for name, value in headers],
            cookies=[common_pb2.KeyValue(name=name, value=value) for name, value in cookies],
        )
    )


def bearer(token: str) -> common_pb2.CredentialSource:
    return http(("Authorization", f"Bearer {token}"))


def authenticate(
    server: WatchwordProcess, source: common_pb2.CredentialSource
) -> auth_pb2.AuthenticateResponse:
    return server.auth().Authenticate(auth_pb2.AuthenticateRequest(credential=source), timeout=TIMEOUT)


def refusal_of(server: WatchwordProcess, source: common_pb2.CredentialSource) -> common_pb2.Refusal:
    """Authenticate, insisting on a refusal (never a principal) with a documented, clean reason."""
    answer = authenticate(server, source)
    assert answer.WhichOneof("result") == "refusal", f"expected a refusal, got {answer}"
    assert answer.refusal.reason in REASONS, answer.refusal
    assert answer.refusal.message
    assert_clean(answer.refusal.message)
    return answer.refusal


def principal_of(server: WatchwordProcess, source: common_pb2.CredentialSource) -> common_pb2.Principal:
    answer = authenticate(server, source)
    assert answer.WhichOneof("result") == "principal", f"expected a principal, got {answer}"
    return answer.principal


def error_info(exc: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    """The rich status of an RPC error: one ErrorInfo, in Watchword's domain, with a documented reason."""
    assert_clean(exc.details() or "")
    status = rpc_status.from_call(exc)
    assert status is not None, f"{exc.code()} without a rich status: {exc.details()!r}"
    assert status.code == exc.code().value[0]
    assert status.message == exc.details()
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        assert detail.Unpack(info), detail.type_url
        infos.append(info)
    assert len(infos) == 1, status
    (info,) = infos
    assert info.domain == errors.DOMAIN
    assert info.reason in errors.ERROR_REASONS, info
    return info


def expect_error(
    code: grpc.StatusCode,
    reason: str,
    call: Callable[[], object],
    field: str | None = None,
) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    exc = caught.value
    assert exc.code() == code, f"expected {code}, got {exc.code()}: {exc.details()!r}"
    info = error_info(exc)
    assert info.reason == reason, info
    if field is not None:
        assert info.metadata.get("field") == field, info
        assert field in (exc.details() or "")
    return exc


def expect_invalid_field(call: Callable[[], object], field: str) -> grpc.RpcError:
    return expect_error(grpc.StatusCode.INVALID_ARGUMENT, errors.FIELD_INVALID, call, field)


T = TypeVar("T")


def outcome(call: Callable[[], T]) -> T | grpc.RpcError:
    """The answer of `call`, or the RPC error it raised (for properties where either is acceptable)."""
    try:
        return call()
    except grpc.RpcError as exc:
        return exc


def with_checksum(body: str) -> str:
    """A secret with a correct checksum for `body` (the documented format: CRC32 as 6 base62 digits)."""
    value = zlib.crc32(body.encode("ascii"))
    digits = []
    for _ in range(6):
        value, remainder = divmod(value, 62)
        digits.append(BASE62[remainder])
    return body + "".join(reversed(digits))


def change_char(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


# Raw protobuf wire encoding, to send bytes the generated stubs would never produce.
def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def tag(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def length_delimited(field: int, payload: bytes) -> bytes:
    return tag(field, 2) + varint(len(payload)) + payload


def raw_call(
    server: WatchwordProcess,
    method: str,
    payload: bytes,
    metadata: tuple[tuple[str, str], ...] | None = None,
) -> bytes:
    call = server.channel().unary_unary(method, request_serializer=None, response_deserializer=None)
    return call(payload, timeout=TIMEOUT, metadata=metadata)


AUTHENTICATE = "/watchword.v1.AuthService/Authenticate"
AUTHORIZE = "/watchword.v1.AuthService/Authorize"


# ---- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def server_log_offset(server: WatchwordProcess) -> int:
    """Where the server's output stood before this module ran, to check later that nothing broke."""
    return len(server.output)


@pytest.fixture(scope="module")
def tenant(server: WatchwordProcess) -> Tenant:
    return make_tenant(server, "bad-input")


@pytest.fixture(scope="module")
def secret(server: WatchwordProcess, tenant: Tenant) -> str:
    """A real application secret (C2) of `tenant`'s first application."""
    return create_credential(
        server,
        kind=APPLICATION_SECRET,
        organization_id=tenant.organization_id,
        application_id=tenant.application_id,
        name="bad-input",
    ).secret


@pytest.fixture(scope="module")
def other_secret(server: WatchwordProcess, tenant: Tenant) -> str:
    return create_credential(
        server,
        kind=API_KEY,
        organization_id=tenant.organization_id,
        name="bad-input key",
        permissions=["application.get"],
    ).secret


# ---- Authenticate: where the credential is -----------------------------------------------------------


def test_authenticate_without_any_credential_source_is_invalid_argument(server: WatchwordProcess) -> None:
    expect_invalid_field(
        lambda: server.auth().Authenticate(auth_pb2.AuthenticateRequest(), timeout=TIMEOUT), "credential"
    )
    expect_invalid_field(
        lambda: server.auth().Authenticate(
            auth_pb2.AuthenticateRequest(credential=common_pb2.CredentialSource()), timeout=TIMEOUT
        ),
        "credential",
    )


@pytest.mark.parametrize("token", ["", " ", "\t\r\n  "])
def test_t6_empty_bare_token_is_refused_as_credential_missing(server: WatchwordProcess, token: str) -> None:
    assert refusal_of(server, bare(token)).reason == "credential_missing"


@pytest.mark.parametrize("headers", [(), (("X-Request-Id", "abc"), ("Accept", "*/*"))])
def test_t1_request_without_authorization_header_is_refused_as_credential_missing(
    server: WatchwordProcess, headers: tuple[tuple[str, str], ...]
) -> None:
    assert refusal_of(server, http(*headers)).reason == "credential_missing"


def test_t6_one_megabyte_bare_token_is_refused_as_malformed(server: WatchwordProcess) -> None:
    refusal = refusal_of(server, bare("a" * MEGABYTE))
    assert refusal.reason == "credential_malformed"
    assert len(refusal.message) < 200


def test_t6_bare_token_just_over_the_token_bound_is_refused_as_malformed(server: WatchwordProcess) -> None:
    assert refusal_of(server, bare("a" * (MAX_TOKEN_BYTES + 1))).reason == "credential_malformed"


def test_t1_one_megabyte_bearer_header_is_invalid_argument_naming_the_header(
    server: WatchwordProcess,
) -> None:
    # Header values are bounded (twice the longest token) before extraction: INVALID_ARGUMENT.
    expect_invalid_field(
        lambda: authenticate(server, bearer("a" * MEGABYTE)), "credential.http.headers[0].value"
    )


def test_t1_bearer_header_at_the_value_bound_is_refused_as_malformed(server: WatchwordProcess) -> None:
    at_bound = "a" * (MAX_HEADER_VALUE - len("Bearer "))
    assert refusal_of(server, bearer(at_bound)).reason == "credential_malformed"
    expect_invalid_field(
        lambda: authenticate(server, bearer(at_bound + "a")), "credential.http.headers[0].value"
    )


def test_t3_one_megabyte_cookie_is_invalid_argument_naming_the_cookie(server: WatchwordProcess) -> None:
    source = http(cookies=(("session", "a" * MEGABYTE),))
    expect_invalid_field(lambda: authenticate(server, source), "credential.http.cookies[0].value")


@pytest.mark.parametrize(
    ("source", "field"),
    [
        (http(("x" * 257, "v")), "credential.http.headers[0].name"),
        (http(cookies=(("c" * 257, "v"),)), "credential.http.cookies[0].name"),
        (http(method="M" * 33), "credential.http.method"),
        (bare("token", client_id="c" * 256), "credential.bare.client_id"),
    ],
    ids=["header-name", "cookie-name", "method", "bare-client-id"],
)
def test_oversized_request_parts_are_invalid_argument_naming_the_field(
    server: WatchwordProcess, source: common_pb2.CredentialSource, field: str
) -> None:
    expect_invalid_field(lambda: authenticate(server, source), field)


def test_too_many_headers_is_invalid_argument(server: WatchwordProcess) -> None:
    many = [(f"X-Header-{index}", "v") for index in range(MAX_HEADERS + 1)]
    expect_invalid_field(lambda: authenticate(server, http(*many)), "credential.http.headers")
    # Headers and cookies count together.
    half = MAX_HEADERS // 2
    mixed = http(*many[: half + 1], cookies=tuple(many[: MAX_HEADERS - half]))
    expect_invalid_field(lambda: authenticate(server, mixed), "credential.http.headers")


def test_as_many_headers_as_the_bound_are_read(server: WatchwordProcess, secret: str) -> None:
    filler = [(f"X-Header-{index}", "v") for index in range(MAX_HEADERS - 1)]
    assert refusal_of(server, http(*filler)).reason == "credential_missing"
    principal = principal_of(server, http(*filler, ("Authorization", f"Bearer {secret}")))
    assert principal.kind == common_pb2.CREDENTIAL_KIND_APPLICATION_SECRET


# ---- Authenticate: what the credential looks like ----------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "x",
        "ww",
        "wwas",
        "wwas_",
        "wwas__",
        "wwas_0123456789abcdef_",
        "WWAS_0123456789abcdef_" + "a" * 38,
        "wwzz_0123456789abcdef_" + "a" * 38,
        "a" * 200,
        "=====",
        "~~~+++///",
    ],
)
@pytest.mark.parametrize("transport", ["bare", "bearer"])
def test_t1_t6_random_garbage_tokens_are_refused_as_malformed(
    server: WatchwordProcess, token: str, transport: str
) -> None:
    source = bare(token) if transport == "bare" else bearer(token)
    assert refusal_of(server, source).reason == "credential_malformed"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        # HS256 without a kid: no tenant secret; answered as a bad signature (C4 oracle, issue #12).
        ("eyJhbGciOiJIUzI1NiJ9.e30.c2ln", "token_signature_invalid"),
        ("eyJhbGciOiJub25lIn0.e30.", "token_algorithm_not_allowed"),  # alg none
        ("a.b.c", "token_malformed"),
        ("eyJhbGciOiJFUzI1NiJ9.e30.c2ln", "token_issuer_unknown"),  # no issuer configured for it
    ],
)
@pytest.mark.parametrize("transport", ["bare", "bearer"])
def test_t1_t6_jwt_shaped_garbage_is_refused_with_a_token_reason(
    server: WatchwordProcess, token: str, reason: str, transport: str
) -> None:
    source = bare(token) if transport == "bare" else bearer(token)
    assert refusal_of(server, source).reason == reason


def test_t6_secret_with_wrong_checksum_is_refused_as_malformed(server: WatchwordProcess, secret: str) -> None:
    assert with_checksum(secret[:-6]) == secret, "the test's checksum oracle disagrees with the server"
    for index in range(len(secret) - 6, len(secret)):
        assert refusal_of(server, bare(change_char(secret, index))).reason == "credential_malformed"
    assert refusal_of(server, bare(secret[:-6] + "000000")).reason == "credential_malformed"
    assert refusal_of(server, bare(secret[:-1])).reason == "credential_malformed"
    assert refusal_of(server, bare(secret + "A")).reason == "credential_malformed"


@pytest.mark.parametrize(
    "kind", [CredentialKind.APPLICATION_SECRET, CredentialKind.API_KEY, CredentialKind.STATIC_TOKEN]
)
def test_t6_well_formed_secret_for_an_id_that_does_not_exist_is_refused_as_unknown(
    server: WatchwordProcess, kind: CredentialKind
) -> None:
    token = secret_format.mint(kind, secret_format.new_credential_id())
    assert refusal_of(server, bare(token)).reason == "credential_unknown"
    assert refusal_of(server, bearer(token)).reason == "credential_unknown"


def test_t6_valid_secret_with_one_character_changed_is_refused_by_its_checksum(
    server: WatchwordProcess, secret: str
) -> None:
    # Every position before the checksum: prefix, separators, id and secret. CRC32 catches any single
    # changed character, so the store is never asked.
    for index in range(len(secret) - 6):
        assert refusal_of(server, bare(change_char(secret, index))).reason == "credential_malformed", index


def test_t6_valid_secret_changed_with_a_recomputed_checksum_is_refused_as_unknown(
    server: WatchwordProcess, secret: str
) -> None:
    body = secret[:-6]
    id_start, secret_start = len("wwas_"), len("wwas_") + 16 + 1
    for index in (id_start, id_start + 15, secret_start, len(body) - 1):
        forged = with_checksum(change_char(body, index))
        assert refusal_of(server, bare(forged)).reason == "credential_unknown", index
    # The right id and secret under another kind's prefix names no credential of that kind.
    assert refusal_of(server, bare(with_checksum("wwak" + body[4:]))).reason == "credential_unknown"


def test_t6_admin_token_is_never_a_principal_of_authenticate(server: WatchwordProcess) -> None:
    assert refusal_of(server, bare(server.admin_token)).reason == "credential_kind_unsupported"
    assert refusal_of(server, bearer(server.admin_token)).reason == "credential_kind_unsupported"


NEAR_MISSES: dict[str, Callable[[str], str]] = {
    "space-inside": lambda s: s[:20] + " " + s[20:],
    "two-words": lambda s: "abc def",
    "trailing-word": lambda s: s + " trailing-word",
    "latin-1-letter": lambda s: s[:-1] + "é",
    "cyrillic": lambda s: "тайна",
    "emoji": lambda s: s[:10] + "😀" + s[11:],
    "zero-width-space": lambda s: "\u200b" + s,
    "fullwidth-underscores": lambda s: s.replace("_", "\uff3f"),
    "trailing-nul": lambda s: s + "\x00",
    "only-nul": lambda s: "\x00",
    "nul-inside": lambda s: s[:5] + "\x00" + s[6:],
    "del-inside": lambda s: s[:30] + "\x7f" + s[31:],
    "newline-inside": lambda s: s[:30] + "\n" + s[31:],
    "quoted": lambda s: '"' + s + '"',
}


@pytest.mark.parametrize("mangle", list(NEAR_MISSES.values()), ids=list(NEAR_MISSES))
@pytest.mark.parametrize("transport", ["bare", "bearer"])
def test_t1_t6_tokens_with_spaces_non_ascii_or_nul_are_refused_as_malformed(
    server: WatchwordProcess, secret: str, mangle: Callable[[str], str], transport: str
) -> None:
    token = mangle(secret)
    source = bare(token) if transport == "bare" else bearer(token)
    assert refusal_of(server, source).reason == "credential_malformed"


def test_t1_two_different_authorization_headers_are_ambiguous(
    server: WatchwordProcess, secret: str, other_secret: str
) -> None:
    for second in (other_secret, "some-other-token", secret[:-1]):
        source = http(("Authorization", f"Bearer {secret}"), ("Authorization", f"Bearer {second}"))
        assert refusal_of(server, source).reason == "credential_ambiguous", second
    source = http(("authorization", f"Bearer {other_secret}"), ("AUTHORIZATION", f"bearer {secret}"))
    assert refusal_of(server, source).reason == "credential_ambiguous"


def test_t1_the_same_authorization_header_twice_is_accepted(server: WatchwordProcess, secret: str) -> None:
    principal = principal_of(
        server, http(("Authorization", f"Bearer {secret}"), ("authorization", f"Bearer {secret}"))
    )
    assert principal.kind == common_pb2.CREDENTIAL_KIND_APPLICATION_SECRET
    assert principal.transport == common_pb2.TRANSPORT_BEARER


@pytest.mark.parametrize(
    "value",
    [
        "Token {s}",
        "Digest {s}",
        "Bearer",
        "Bearer ",
        "",
        "   ",
        "{s}",
        "Bearer: {s}",
        "Bearer\t{s}",
        "MAC {s}",
    ],
)
def test_t1_unsupported_or_broken_authorization_scheme_is_malformed(
    server: WatchwordProcess, secret: str, value: str
) -> None:
    source = http(("Authorization", value.format(s=secret)))
    assert refusal_of(server, source).reason == "credential_malformed"


@pytest.mark.parametrize(
    "encoded",
    ["Zm9vOmJhcg==", "not base64!", "Zm9v", "OmJhcg==", "Zm9vOg==", "/w==", ""],
    ids=["foo:bar", "not-base64", "no-colon", "empty-id", "empty-secret", "not-utf8", "empty"],
)
def test_t2_garbage_basic_credentials_are_malformed(server: WatchwordProcess, encoded: str) -> None:
    assert refusal_of(server, http(("Authorization", f"Basic {encoded}"))).reason == "credential_malformed"


# ---- raw bytes that no stub would send ---------------------------------------------------------------


UNDECODABLE = {
    "all-ff": b"\xff\xff\xff",
    "truncated-length": b"\x0a\x80",
    "length-past-end": b"\x0a\x05\x0a\x03",
    "varint-never-ends": b"\x08" + b"\xff" * 11,
    "open-group": b"\x0b",
    "wire-type-7": b"\x0f\x00",
    "field-number-0": b"\x02\x00",
    "nested-groups-too-deep": b"\x1b" * 200 + b"\x1c" * 200,
    "bare-token-not-utf8": length_delimited(1, length_delimited(1, length_delimited(1, b"\xff\xfe"))),
    "bare-token-utf8-surrogate": length_delimited(
        1, length_delimited(1, length_delimited(1, b"wwas_\xed\xa0\x80"))
    ),
    "bare-token-overlong-utf8": length_delimited(1, length_delimited(1, length_delimited(1, b"\xc0\xaf"))),
    "bare-client-id-not-utf8": length_delimited(
        1, length_delimited(1, length_delimited(1, b"tok") + length_delimited(2, b"\x80"))
    ),
    "header-value-not-utf8": length_delimited(
        1,
        length_delimited(
            2,
            length_delimited(3, length_delimited(1, b"Authorization") + length_delimited(2, b"Bearer \xff")),
        ),
    ),
}


@pytest.mark.parametrize("payload", list(UNDECODABLE.values()), ids=list(UNDECODABLE))
def test_bytes_that_are_not_a_valid_request_are_invalid_argument(
    server: WatchwordProcess, payload: bytes
) -> None:
    expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        errors.REQUEST_UNDECODABLE,
        lambda: raw_call(server, AUTHENTICATE, payload),
    )


def test_authorize_with_an_action_that_is_not_utf8_is_invalid_argument(
    server: WatchwordProcess, secret: str
) -> None:
    request = auth_pb2.AuthorizeRequest(credential=bare(secret)).SerializeToString()
    expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        errors.REQUEST_UNDECODABLE,
        lambda: raw_call(server, AUTHORIZE, request + length_delimited(2, b"application.\xff")),
    )


def test_wrong_wire_type_where_a_message_is_expected_is_invalid_argument(server: WatchwordProcess) -> None:
    # A field of the wrong wire type is an unknown field to protobuf: the credential is then absent.
    for payload in (tag(1, 0) + varint(1), tag(1, 5) + b"\x00\x00\x00\x00", tag(1, 1) + b"\x00" * 8):
        expect_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            errors.FIELD_INVALID,
            lambda payload=payload: raw_call(server, AUTHENTICATE, payload),
        )
    # Inside the credential: a varint where `bare` (a message) belongs.
    expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        errors.FIELD_INVALID,
        lambda: raw_call(server, AUTHENTICATE, length_delimited(1, tag(1, 0) + varint(7))),
    )


def test_wrong_wire_type_for_the_action_is_invalid_argument_naming_it(
    server: WatchwordProcess, secret: str
) -> None:
    request = auth_pb2.AuthorizeRequest(credential=bare(secret)).SerializeToString()
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        errors.FIELD_INVALID,
        lambda: raw_call(server, AUTHORIZE, request + tag(2, 0) + varint(5)),
    )
    assert error_info(error).metadata["field"] == "action"


def test_wrong_wire_type_for_the_token_is_a_refusal_never_a_principal(server: WatchwordProcess) -> None:
    # `bare` is present but its token arrives as a fixed64: protobuf drops it, so no token was given.
    payload = length_delimited(1, length_delimited(1, tag(1, 1) + b"\x01" * 8))
    answer = auth_pb2.AuthenticateResponse.FromString(raw_call(server, AUTHENTICATE, payload))
    assert answer.WhichOneof("result") == "refusal"
    assert answer.refusal.reason == "credential_missing"


def test_unknown_fields_are_ignored_and_the_request_still_answered(
    server: WatchwordProcess, secret: str
) -> None:
    request = auth_pb2.AuthenticateRequest(credential=bare(secret)).SerializeToString()
    for extra in (length_delimited(99, b"\xff\xfe"), tag(1000, 0) + varint(1), b"\x1b\x08\x01\x1c"):
        answer = auth_pb2.AuthenticateResponse.FromString(raw_call(server, AUTHENTICATE, request + extra))
        assert answer.principal.kind == common_pb2.CREDENTIAL_KIND_APPLICATION_SECRET


def test_undecodable_admin_request_is_invalid_argument_only_after_the_admin_token(
    server: WatchwordProcess,
) -> None:
    payload = length_delimited(1, b"\xff\xfe")  # CreateOrganizationRequest.name, not UTF-8
    method = "/watchword.v1.AdminService/CreateOrganization"
    expect_error(
        grpc.StatusCode.UNAUTHENTICATED, errors.ADMIN_TOKEN_MISSING, lambda: raw_call(server, method, payload)
    )
    expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        errors.REQUEST_UNDECODABLE,
        lambda: raw_call(server, method, payload, server.admin_metadata),
    )


def test_message_over_the_size_bound_is_refused_without_touching_watchword(server: WatchwordProcess) -> None:
    # gRPC itself refuses it (RESOURCE_EXHAUSTED, no ErrorInfo: the handler never runs); nothing leaks.
    with pytest.raises(grpc.RpcError) as caught:
        authenticate(server, bare("a" * (MAX_MESSAGE_BYTES + 1)))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_clean(caught.value.details() or "")


# ---- Authorize and AuthorizeBatch --------------------------------------------------------------------


@pytest.mark.parametrize("action", ["", "   "])
def test_authorize_with_an_empty_action_is_invalid_argument_naming_the_field(
    server: WatchwordProcess, tenant: Tenant, secret: str, action: str
) -> None:
    request = auth_pb2.AuthorizeRequest(
        credential=bare(secret),
        action=action,
        resource=auth_pb2.Resource(application_id=tenant.application_id),
    )
    expect_invalid_field(lambda: server.auth().Authorize(request, timeout=TIMEOUT), "action")


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"action": "a" * 129}, "action"),
        ({"action": "application.get", "resource": {"application_id": "x" * 256}}, "resource.application_id"),
        ({"action": "application.get", "resource": {"event_type": "e" * 256}}, "resource.event_type"),
        (
            {"action": "application.get", "resource": {"subject": {"type": 99, "id": "u"}}},
            "resource.subject.type",
        ),
        (
            {"action": "application.get", "resource": {"subject": {"type": 1, "id": ""}}},
            "resource.subject.id",
        ),
    ],
    ids=["long-action", "long-application-id", "long-event-type", "bad-subject-type", "empty-subject-id"],
)
def test_authorize_with_an_invalid_field_is_invalid_argument_naming_it(
    server: WatchwordProcess, secret: str, request_fields: dict, field: str
) -> None:
    request = auth_pb2.AuthorizeRequest(credential=bare(secret), **request_fields)
    expect_invalid_field(lambda: server.auth().Authorize(request, timeout=TIMEOUT), field)


@pytest.mark.parametrize("action", ["no.such.action", "APPLICATION.GET", "application.get ", "ü"])
def test_s8_authorize_with_an_unknown_action_is_denied_as_action_unknown(
    server: WatchwordProcess, tenant: Tenant, secret: str, action: str
) -> None:
    answer = server.auth().Authorize(
        auth_pb2.AuthorizeRequest(
            credential=bare(secret),
            action=action,
            resource=auth_pb2.Resource(application_id=tenant.application_id),
        ),
        timeout=TIMEOUT,
    )
    assert answer.decision.allowed is False
    assert answer.decision.reason == "action_unknown"
    assert answer.principal.kind == common_pb2.CREDENTIAL_KIND_APPLICATION_SECRET
    assert_clean(answer.decision.message)


def test_s8_authorize_with_a_refused_credential_is_denied_with_the_refusal(
    server: WatchwordProcess, tenant: Tenant
) -> None:
    answer = server.auth().Authorize(
        auth_pb2.AuthorizeRequest(
            credential=bare("garbage token"),
            action="application.get",
            resource=auth_pb2.Resource(application_id=tenant.application_id),
        ),
        timeout=TIMEOUT,
    )
    assert answer.decision.allowed is False
    assert answer.decision.reason == "not_authenticated"
    assert answer.refusal.reason == "credential_malformed"
    assert not answer.HasField("principal")


def test_s7_authorize_on_an_application_that_does_not_exist_is_not_in_scope(
    server: WatchwordProcess, secret: str
) -> None:
    for application_id in (str(uuid.uuid4()), "'; DROP TABLE credential; --", "ü" * 255):
        answer = server.auth().Authorize(
            auth_pb2.AuthorizeRequest(
                credential=bare(secret),
                action="application.get",
                resource=auth_pb2.Resource(application_id=application_id),
            ),
            timeout=TIMEOUT,
        )
        assert answer.decision.allowed is False
        assert answer.decision.reason == "resource_not_in_scope", application_id


def test_s7_authorize_with_a_nul_in_the_resource_is_denied_or_invalid_argument(
    server: WatchwordProcess, secret: str
) -> None:
    # Either a denial or INVALID_ARGUMENT naming the field; never UNAVAILABLE (a store that refuses NUL
    # characters, as PostgreSQL does, is not an outage) and never INTERNAL.
    request = auth_pb2.AuthorizeRequest(
        credential=bare(secret),
        action="application.get",
        resource=auth_pb2.Resource(application_id="a\x00b"),
    )
    answer = outcome(lambda: server.auth().Authorize(request, timeout=TIMEOUT))
    if isinstance(answer, grpc.RpcError):
        assert answer.code() == grpc.StatusCode.INVALID_ARGUMENT, (answer.code(), answer.details())
        assert error_info(answer).metadata.get("field") == "resource.application_id"
    else:
        assert answer.decision.allowed is False
        assert answer.decision.reason == "resource_not_in_scope"


def test_t7_batch_over_the_entry_bound_is_invalid_argument(server: WatchwordProcess) -> None:
    entry = auth_pb2.AuthorizeRequest(credential=bare("garbage"), action="application.get")
    too_many = auth_pb2.AuthorizeBatchRequest(entries=[entry] * (MAX_BATCH + 1))
    expect_invalid_field(lambda: server.auth().AuthorizeBatch(too_many, timeout=TIMEOUT), "entries")
    expect_invalid_field(
        lambda: server.auth().AuthorizeBatch(auth_pb2.AuthorizeBatchRequest(), timeout=TIMEOUT), "entries"
    )


def test_t7_batch_at_the_entry_bound_is_decided_entry_by_entry(server: WatchwordProcess) -> None:
    entry = auth_pb2.AuthorizeRequest(credential=bare("garbage"), action="application.get")
    answer = server.auth().AuthorizeBatch(
        auth_pb2.AuthorizeBatchRequest(entries=[entry] * MAX_BATCH), timeout=TIMEOUT
    )
    assert len(answer.results) == MAX_BATCH
    assert {result.decision.reason for result in answer.results} == {"not_authenticated"}


def test_t7_batch_with_bad_entries_refuses_only_those_and_decides_the_others(
    server: WatchwordProcess, tenant: Tenant, secret: str
) -> None:
    own = auth_pb2.Resource(application_id=tenant.application_id)
    other = auth_pb2.Resource(application_id=tenant.other_application_id)
    entries = [
        auth_pb2.AuthorizeRequest(credential=bare(secret), action="application.get", resource=own),
        auth_pb2.AuthorizeRequest(credential=bare(secret), action="", resource=own),
        auth_pb2.AuthorizeRequest(credential=bearer(secret), action="application.get", resource=other),
        auth_pb2.AuthorizeRequest(action="application.get", resource=own),
        auth_pb2.AuthorizeRequest(credential=bearer("a" * MEGABYTE), action="application.get", resource=own),
        auth_pb2.AuthorizeRequest(credential=bare("garbage"), action="application.get", resource=own),
    ]
    results = (
        server.auth().AuthorizeBatch(auth_pb2.AuthorizeBatchRequest(entries=entries), timeout=TIMEOUT).results
    )
    assert len(results) == len(entries)

    assert results[0].decision.allowed is True
    assert results[0].decision.reason == "allowed"
    assert results[2].decision.allowed is False
    assert results[2].decision.reason == "resource_not_in_scope"
    assert results[5].decision.reason == "not_authenticated"
    assert results[5].refusal.reason == "credential_malformed"

    for index, field in (
        (1, "entries[1].action"),
        (3, "entries[3].credential"),
        (4, "entries[4].credential.http.headers[0].value"),
    ):
        result = results[index]
        assert result.decision.allowed is False, index
        assert result.decision.reason == "entry_invalid", index
        assert result.refusal.reason == "entry_invalid", index
        assert field in result.decision.message, (index, result.decision.message)
        assert not result.HasField("principal"), index
        assert_clean(result.decision.message)


# ---- AdminService ------------------------------------------------------------------------------------


def _unknown_ids() -> tuple[str, str]:
    return str(uuid.uuid4()), secret_format.new_credential_id()


ADMIN_NOT_FOUND: dict[str, Callable[[WatchwordProcess, Tenant], tuple[str, object]]] = {
    "get-organization": lambda s, t: (
        "GetOrganization",
        admin_pb2.GetOrganizationRequest(id=_unknown_ids()[0]),
    ),
    "delete-organization": lambda s, t: (
        "DeleteOrganization",
        admin_pb2.DeleteOrganizationRequest(id=_unknown_ids()[0]),
    ),
    "get-application": lambda s, t: ("GetApplication", admin_pb2.GetApplicationRequest(id=_unknown_ids()[0])),
    "delete-application": lambda s, t: (
        "DeleteApplication",
        admin_pb2.DeleteApplicationRequest(id=_unknown_ids()[0]),
    ),
    "create-application-in-unknown-organization": lambda s, t: (
        "CreateApplication",
        admin_pb2.CreateApplicationRequest(organization_id=_unknown_ids()[0], name="x"),
    ),
    "set-membership-in-unknown-organization": lambda s, t: (
        "SetMembership",
        admin_pb2.SetMembershipRequest(
            membership=admin_pb2.Membership(organization_id=_unknown_ids()[0], user_id="u", roles=["viewer"])
        ),
    ),
    "delete-unknown-membership": lambda s, t: (
        "DeleteMembership",
        admin_pb2.DeleteMembershipRequest(organization_id=t.organization_id, user_id="nobody"),
    ),
    "get-credential": lambda s, t: ("GetCredential", admin_pb2.GetCredentialRequest(id=_unknown_ids()[1])),
    "deactivate-credential": lambda s, t: (
        "DeactivateCredential",
        admin_pb2.DeactivateCredentialRequest(id=_unknown_ids()[1]),
    ),
    "delete-credential": lambda s, t: (
        "DeleteCredential",
        admin_pb2.DeleteCredentialRequest(id=_unknown_ids()[1]),
    ),
    "rotate-credential": lambda s, t: (
        "RotateCredential",
        admin_pb2.RotateCredentialRequest(id=_unknown_ids()[1]),
    ),
    "create-credential-in-unknown-organization": lambda s, t: (
        "CreateCredential",
        admin_pb2.CreateCredentialRequest(kind=API_KEY, organization_id=_unknown_ids()[0], name="x"),
    ),
    "create-secret-for-unknown-application": lambda s, t: (
        "CreateCredential",
        admin_pb2.CreateCredentialRequest(
            kind=APPLICATION_SECRET,
            organization_id=t.organization_id,
            application_id=_unknown_ids()[0],
            name="x",
        ),
    ),
    "create-secret-for-another-organizations-application": lambda s, t: (
        "CreateCredential",
        admin_pb2.CreateCredentialRequest(
            kind=APPLICATION_SECRET,
            organization_id=make_tenant(s, "elsewhere").organization_id,
            application_id=t.application_id,
            name="x",
        ),
    ),
}


@pytest.mark.parametrize("case", list(ADMIN_NOT_FOUND.values()), ids=list(ADMIN_NOT_FOUND))
def test_admin_calls_naming_unknown_ids_are_not_found(
    server: WatchwordProcess,
    tenant: Tenant,
    case: Callable[[WatchwordProcess, Tenant], tuple[str, object]],
) -> None:
    method, request = case(server, tenant)
    call = getattr(server.admin(), method)
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        errors.NOT_FOUND,
        lambda: call(request, metadata=server.admin_metadata, timeout=TIMEOUT),
    )


@pytest.mark.parametrize(
    ("method", "request_type"),
    [
        ("ListApplications", admin_pb2.ListApplicationsRequest),
        ("ListMemberships", admin_pb2.ListMembershipsRequest),
        ("ListCredentials", admin_pb2.ListCredentialsRequest),
    ],
)
def test_admin_listing_under_an_unknown_organization_is_not_found(
    server: WatchwordProcess, method: str, request_type: type
) -> None:
    # admin.proto: "Unknown ids give NOT_FOUND" -- an empty page would hide a mistyped organization id.
    call = getattr(server.admin(), method)
    request = request_type(organization_id=str(uuid.uuid4()))
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        errors.NOT_FOUND,
        lambda: call(request, metadata=server.admin_metadata, timeout=TIMEOUT),
    )


def _credential_request(tenant: Tenant, **fields: object) -> admin_pb2.CreateCredentialRequest:
    base: dict[str, object] = {"kind": API_KEY, "organization_id": tenant.organization_id, "name": "bad"}
    base.update(fields)
    return admin_pb2.CreateCredentialRequest(**base)


CREATE_CREDENTIAL_INVALID: dict[str, tuple[dict[str, object], str]] = {
    "unknown-permission": ({"permissions": ["application.get", "no.such.action"]}, "permissions"),
    "kind-out-of-range": ({"kind": 99}, "kind"),
    "kind-unspecified": ({"kind": 0}, "kind"),
    "kind-external-jwt": ({"kind": common_pb2.CREDENTIAL_KIND_EXTERNAL_JWT}, "kind"),
    "kind-watchword-token": ({"kind": common_pb2.CREDENTIAL_KIND_WATCHWORD_TOKEN}, "kind"),
    "missing-organization": ({"organization_id": ""}, "organization_id"),
    "blank-organization": ({"organization_id": "   "}, "organization_id"),
    "secret-missing-organization": (
        {"kind": APPLICATION_SECRET, "organization_id": "", "application_id": "app"},
        "organization_id",
    ),
    "secret-missing-application": ({"kind": APPLICATION_SECRET}, "application_id"),
    "admin-token-with-organization": ({"kind": common_pb2.CREDENTIAL_KIND_ADMIN_TOKEN}, "organization_id"),
    "name-201-chars": ({"name": "n" * 201}, "name"),
    "empty-name": ({"name": ""}, "name"),
    "expired": ({"expires_at": Timestamp(seconds=1)}, "expires_at"),
    "expiry-out-of-range": ({"expires_at": Timestamp(seconds=2**62)}, "expires_at"),
    "expiry-negative-nanos": ({"expires_at": Timestamp(seconds=4_000_000_000, nanos=-1)}, "expires_at"),
    "too-many-patterns": ({"event_types_allowed": ["e.*"] * 101}, "event_types_allowed"),
    "empty-pattern": ({"event_types_denied": ["ok.*", ""]}, "event_types_denied[1]"),
    "secret-with-permissions": (
        {"kind": APPLICATION_SECRET, "application_id": "app", "permissions": ["application.get"]},
        "permissions",
    ),
    "basic-auth-on-static-token": (
        {"kind": common_pb2.CREDENTIAL_KIND_STATIC_TOKEN, "basic_auth_enabled": True},
        "basic_auth_enabled",
    ),
}


@pytest.mark.parametrize(
    ("fields", "field"), list(CREATE_CREDENTIAL_INVALID.values()), ids=list(CREATE_CREDENTIAL_INVALID)
)
def test_admin_create_credential_with_invalid_fields_is_invalid_argument_naming_the_field(
    server: WatchwordProcess, tenant: Tenant, fields: dict[str, object], field: str
) -> None:
    request = _credential_request(tenant, **fields)
    expect_invalid_field(
        lambda: server.admin().CreateCredential(request, metadata=server.admin_metadata, timeout=TIMEOUT),
        field,
    )


def test_admin_names_of_201_characters_are_invalid_argument(server: WatchwordProcess, tenant: Tenant) -> None:
    admin, md = server.admin(), server.admin_metadata
    expect_invalid_field(
        lambda: admin.CreateOrganization(
            admin_pb2.CreateOrganizationRequest(name="n" * 201), metadata=md, timeout=TIMEOUT
        ),
        "name",
    )
    expect_invalid_field(
        lambda: admin.CreateApplication(
            admin_pb2.CreateApplicationRequest(organization_id=tenant.organization_id, name="n" * 201),
            metadata=md,
            timeout=TIMEOUT,
        ),
        "name",
    )
    # 200 characters is the documented maximum, and is accepted.
    created = admin.CreateOrganization(
        admin_pb2.CreateOrganizationRequest(name="n" * 200), metadata=md, timeout=TIMEOUT
    )
    assert created.name == "n" * 200


@pytest.mark.parametrize(
    ("method", "admin_request", "field"),
    [
        ("GetOrganization", admin_pb2.GetOrganizationRequest(id=""), "id"),
        ("GetOrganization", admin_pb2.GetOrganizationRequest(id="i" * 256), "id"),
        ("GetCredential", admin_pb2.GetCredentialRequest(id="  "), "id"),
        ("ListOrganizations", admin_pb2.ListOrganizationsRequest(page_size=-1), "page_size"),
        ("ListOrganizations", admin_pb2.ListOrganizationsRequest(page_size=1001), "page_size"),
        ("ListOrganizations", admin_pb2.ListOrganizationsRequest(page_token="not a token!"), "page_token"),
        ("ListOrganizations", admin_pb2.ListOrganizationsRequest(page_token="ü"), "page_token"),
        ("ListApplications", admin_pb2.ListApplicationsRequest(), "organization_id"),
        ("ListCredentials", admin_pb2.ListCredentialsRequest(), "organization_id"),
        (
            "SetMembership",
            admin_pb2.SetMembershipRequest(membership=admin_pb2.Membership(user_id="u")),
            "membership.organization_id",
        ),
    ],
)
def test_admin_invalid_ids_and_paging_are_invalid_argument_naming_the_field(
    server: WatchwordProcess, method: str, admin_request: object, field: str
) -> None:
    call = getattr(server.admin(), method)
    expect_invalid_field(lambda: call(admin_request, metadata=server.admin_metadata, timeout=TIMEOUT), field)


def test_s1_admin_membership_with_an_unknown_role_is_invalid_argument(
    server: WatchwordProcess, tenant: Tenant
) -> None:
    request = admin_pb2.SetMembershipRequest(
        membership=admin_pb2.Membership(organization_id=tenant.organization_id, user_id="u", roles=["root"])
    )
    expect_invalid_field(
        lambda: server.admin().SetMembership(request, metadata=server.admin_metadata, timeout=TIMEOUT),
        "membership.roles",
    )


@pytest.mark.parametrize("overlap", [-1, 30 * 24 * 3600 + 1, 2**62])
def test_admin_rotation_overlap_out_of_range_is_invalid_argument(
    server: WatchwordProcess, tenant: Tenant, overlap: int
) -> None:
    credential = create_credential(
        server, kind=API_KEY, organization_id=tenant.organization_id, name="rotate-me"
    ).credential
    request = admin_pb2.RotateCredentialRequest(id=credential.id, overlap_seconds=overlap)
    expect_invalid_field(
        lambda: server.admin().RotateCredential(request, metadata=server.admin_metadata, timeout=TIMEOUT),
        "overlap_seconds",
    )


def test_admin_names_with_control_characters_round_trip_or_are_invalid_argument(
    server: WatchwordProcess,
) -> None:
    # Either answer is fine; a store error (UNAVAILABLE) or INTERNAL is not.
    for name in ("a\x00b", "tab\there", "ü" * 200, "\u202eevil"):
        result = outcome(
            lambda name=name: server.admin().CreateOrganization(
                admin_pb2.CreateOrganizationRequest(name=name),
                metadata=server.admin_metadata,
                timeout=TIMEOUT,
            )
        )
        if isinstance(result, grpc.RpcError):
            assert result.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, result.code(), result.details())
            assert error_info(result).metadata.get("field") == "name"
        else:
            assert result.name == name


def test_admin_call_with_a_malformed_admin_token_is_unauthenticated(server: WatchwordProcess) -> None:
    token = server.admin_token
    for value in ("Bearer", "Bearer garbage", "Basic abc", f"Bearer {token}x", f"Bearer {token[:-1]}", "x"):
        expect_error(
            grpc.StatusCode.UNAUTHENTICATED,
            errors.ADMIN_TOKEN_INVALID if value.startswith("Bearer ") else errors.ADMIN_TOKEN_MISSING,
            lambda value=value: server.admin().ListOrganizations(
                admin_pb2.ListOrganizationsRequest(), metadata=(("authorization", value),), timeout=TIMEOUT
            ),
        )


# ---- properties --------------------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=120)
_near_miss_secret = st.builds(
    lambda prefix, ident, body, fix: (
        with_checksum(f"{prefix}_{ident}_{body}") if fix else f"{prefix}_{ident}_{body}"
    ),
    st.sampled_from(["wwas", "wwak", "wwst", "wwad", "wwcs", "wwzz"]),
    st.text(BASE62, min_size=16, max_size=16),
    st.text(BASE62, min_size=32, max_size=32),
    st.booleans(),
)
_token = st.one_of(_text, _near_miss_secret, st.text(BASE62 + "-._~+/=", max_size=80))
_header_name = st.one_of(
    st.sampled_from(["Authorization", "authorization", "AUTHORIZATION", "Cookie", "X-Api-Key", "Host"]),
    st.text(st.characters(codec="utf-8"), max_size=300),
)
_header_value = st.one_of(
    _text,
    st.builds(
        lambda scheme, sep, token: f"{scheme}{sep}{token}",
        st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Digest", "", "Bearer:"]),
        st.sampled_from([" ", "  ", "\t", ""]),
        _token,
    ),
)
_headers = st.lists(st.tuples(_header_name, _header_value), max_size=12)
_cookies = st.lists(st.tuples(_text, _text), max_size=4)

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _assert_refusal_or_invalid_argument(
    server: WatchwordProcess, source: common_pb2.CredentialSource
) -> None:
    answer = outcome(lambda: authenticate(server, source))
    if isinstance(answer, grpc.RpcError):
        assert answer.code() == grpc.StatusCode.INVALID_ARGUMENT, (answer.code(), answer.details())
        assert error_info(answer).reason == errors.FIELD_INVALID
        return
    assert answer.WhichOneof("result") == "refusal", answer
    assert answer.refusal.reason in REASONS, answer.refusal
    assert_clean(answer.refusal.message)


@PROPERTY_SETTINGS
@given(headers=_headers, cookies=_cookies, method=st.text(max_size=40))
def test_t1_property_random_headers_give_a_refusal_or_invalid_argument(
    server: WatchwordProcess,
    headers: list[tuple[str, str]],
    cookies: list[tuple[str, str]],
    method: str,
) -> None:
    _assert_refusal_or_invalid_argument(server, http(*headers, cookies=tuple(cookies), method=method))


@PROPERTY_SETTINGS
@given(token=_token, client_id=st.one_of(st.just(""), st.text(st.characters(codec="utf-8"), max_size=300)))
def test_t6_property_random_bare_tokens_give_a_refusal_or_invalid_argument(
    server: WatchwordProcess, token: str, client_id: str
) -> None:
    _assert_refusal_or_invalid_argument(server, bare(token, client_id))


@PROPERTY_SETTINGS
@given(payload=st.binary(max_size=200))
def test_property_random_request_bytes_give_a_refusal_or_invalid_argument(
    server: WatchwordProcess, payload: bytes
) -> None:
    raw = outcome(lambda: raw_call(server, AUTHENTICATE, payload))
    if isinstance(raw, grpc.RpcError):
        assert raw.code() == grpc.StatusCode.INVALID_ARGUMENT, (raw.code(), raw.details())
        assert error_info(raw).reason in {errors.FIELD_INVALID, errors.REQUEST_UNDECODABLE}
        return
    answer = auth_pb2.AuthenticateResponse.FromString(raw)
    assert answer.WhichOneof("result") == "refusal", answer
    assert answer.refusal.reason in REASONS


# ---- afterwards --------------------------------------------------------------------------------------


def test_server_is_still_serving_after_all_the_bad_input(
    server: WatchwordProcess, server_log_offset: int, secret: str
) -> None:
    assert server.process is not None
    assert server.process.poll() is None, "the server process died"
    health = health_pb2_grpc.HealthStub(server.channel())
    for service in ("", "watchword.v1.AuthService", "watchword.v1.AdminService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
    # And it still answers real questions.
    assert principal_of(server, bearer(secret)).kind == common_pb2.CREDENTIAL_KIND_APPLICATION_SECRET
    # No fault was logged while this module ran (the guard logs every INTERNAL with its traceback).
    log = "".join(server.output[server_log_offset:])
    assert "internal error" not in log, log[-5000:]
    assert "Traceback" not in log, log[-5000:]
