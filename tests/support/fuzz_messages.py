"""Hypothesis strategies for any protobuf message, built from its descriptor, and the checks of an RPC answer.

`messages(descriptor)` fills a random subset of fields, at most one per oneof, with values chosen to hurt:
strings that are huge, unicode, NUL-laden or shaped like Watchword's own tokens and URLs; integers at
their type's bounds; unknown enum values; NaN and infinite floats; repeated fields with many entries;
nested messages down to a depth bound. Nothing here is specific to Watchword's messages, so a new RPC or
field is fuzzed without touching this file.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import strategies as st

from watchword import secret_format
from watchword.api.errors import ERROR_REASONS

MAX_DEPTH = 4
HUGE = 200_000  # characters: far past every field bound, far below the 4 MiB message bound

# Statuses an RPC may answer with on bad input; anything else (INTERNAL, UNKNOWN, DEADLINE_EXCEEDED,
# UNAVAILABLE with the store up) is a fault.
CLEAN_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


def _jws(header: dict[str, object], claims: dict[str, object], signature: str) -> str:
    def b64(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(claims)}.{signature}"


def _token_shaped() -> list[str]:
    minted = [secret_format.mint(kind, "0123456789abcdef") for kind in secret_format.PREFIXES]
    return [
        *minted,
        minted[0][:-1] + "x",
        _jws({"alg": "HS256", "kid": "k"}, {"exp": 1}, "c2ln"),
        _jws({"alg": "none"}, {}, ""),
        _jws({"alg": "ES256", "kid": "../../etc/passwd"}, {"iss": "urn:watchword"}, "AA"),
        # Members of the wrong JSON type, where a verifier looks them up.
        _jws({"alg": "ES256", "typ": []}, {"iss": "urn:watchword"}, "AA"),
        _jws({"alg": "HS256", "typ": {}}, {"iss": "0123456789abcdef", "sub": "0123456789abcdef"}, "AA"),
        _jws({"alg": "RS256", "typ": "at+jwt"}, {"iss": "0123456789abcdef", "sub": "0123456789abcdef"}, "AA"),
        "Bearer " + minted[0],
        "Basic " + base64.b64encode(b"id:secret").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(),
        "eyJ.eyJ.",
        "a.b.c.d",
    ]


INTERESTING_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ufeff",
    "é",
    "\U0001f600",
    "\u202e",
    "../..",
    "%00",
    "' OR 1=1 --",
    "*",
    "**",
    "invoice.*",
    "event.list",
    "application.create",
    "outbound.sign",
    "track",
    "owner",
    "admin",
    "ES256",
    "RS256",
    "EdDSA",
    "HS256",
    "none",
    "POST",
    "http://[",
    "http://[::1",
    "https://127.0.0.1/token",
    "http://169.254.169.254/latest/meta-data/",
    "https://user:pass@example.com/",
    "ftp://example.com/",
    "urn:watchword:api",
    "urn:watchword:params:oauth:grant-type:api-key",
    "client_credentials",
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    '{"kty":"EC","crv":"P-256","alg":[]}',
    '{"kty":"RSA","n":"AQAB","e":"AQAB"}',
    '{"kty":"oct","k":"AAAA"}',
    "{",
    "0123456789abcdef",
    "00000000-0000-0000-0000-000000000000",
    *_token_shaped(),
]

# Branches are picked about evenly: repeating one makes it likelier. Huge values are rarer than the rest,
# so that most requests get past the size checks to the code behind them.
_any_text = st.one_of(
    st.sampled_from(INTERESTING_STRINGS),
    st.sampled_from(INTERESTING_STRINGS),
    st.text(max_size=40),
    st.text(st.characters(codec="ascii"), max_size=40),
    st.builds(
        lambda c, n: c * n, st.sampled_from(["a", "\x00", "é", "\U0001f600", "/", "."]), st.integers(0, HUGE)
    ),
)
# Wrapped so that reprs (in hypothesis' messages and statistics) name the strategy, not every value.
_text = st.deferred(lambda: _any_text)
_bytes = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"\x00", b"{}", b'{"a":1}', b"\xff\xfe"]),
    st.builds(lambda n: b"x" * n, st.integers(0, HUGE)),
)


# Values where conversions break: type bounds, Timestamp's range (years 1 and 9999), nanosecond bounds.
_EDGES = (0, 1, -1, 2**31 - 1, -(2**31), 2**32 - 1, 2**63 - 1, -(2**63), 2**64 - 1)
_EDGES += (253402300799, 253402300800, -62135596800, -62135596801, 999_999_999, 10**9)


def _integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = sorted({lo, hi, lo + 1, hi - 1, *(v for v in _EDGES if lo <= v <= hi)})
    return st.sampled_from(edges) | st.integers(lo, hi)


_INT_RANGES: dict[int, tuple[int, int]] = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


# Field names hint at what a field holds: such fields also get values of that shape, which reach the
# checks behind the first "is it well-formed" test more often than random text does.
_URLS = st.one_of(
    st.sampled_from([value for value in INTERESTING_STRINGS if "://" in value]),
    st.builds(
        lambda scheme, host, rest: f"{scheme}://{host}{rest}",
        st.sampled_from(["http", "https", "ftp", ""]),
        st.sampled_from(["[", "[::1", "[::1]", "127.0.0.1", "example.com", "a@b", "", "%"])
        | st.text(max_size=8),
        st.sampled_from(["", "/", ":99999", ":0/x", "#f", "?q=1"]),
    ),
)
_TOKENS = st.deferred(lambda: st.sampled_from(_token_shaped()))
_HINTS: tuple[tuple[str, st.SearchStrategy[str]], ...] = (
    ("url", _URLS),
    ("token", _TOKENS),
    ("secret", _TOKENS),
    ("assertion", _TOKENS),
    ("authorization", _TOKENS),
    ("jwk", st.sampled_from([value for value in INTERESTING_STRINGS if value.startswith("{")])),
)


def _strings(field: FieldDescriptor) -> st.SearchStrategy[str]:
    hinted = [strategy for hint, strategy in _HINTS if hint in field.name]
    return st.one_of(*hinted, *hinted, _text) if hinted else _text


def _scalar(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _strings(field)
    if kind == FieldDescriptor.TYPE_BYTES:
        return _bytes
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in _INT_RANGES:
        return _integers(*_INT_RANGES[kind])
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if kind == FieldDescriptor.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        # proto3 enums are open: an unknown number arrives as itself.
        return st.sampled_from(known) | _integers(-(2**31), 2**31 - 1)
    if kind == FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    raise NotImplementedError(f"field type {kind} of {field.full_name}")


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    single = _scalar(field, depth)
    if not field.is_repeated:
        return single
    few = st.lists(single, max_size=4)
    # Many entries: past the bounds on headers (256), batch entries (1000) and the like; small ones, so
    # that the message stays under the gRPC size bound.
    many = (
        st.tuples(single, st.integers(200, 1100))
        .filter(lambda pair: _size(pair[0]) * pair[1] < 1_000_000)
        .map(lambda pair: [pair[0]] * pair[1])
    )
    return st.one_of(few, many) if depth < 2 else few


def _size(value: Any) -> int:
    if isinstance(value, Message):
        return value.ByteSize()
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    return len(value) if isinstance(value, bytes) else 8


def _assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    if field.is_repeated:
        target = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for entry in value:
                target[entry.key] = entry.value  # scalar map values only in these protos
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


_CACHE: dict[tuple[str, int], st.SearchStrategy[Message]] = {}


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Random but structurally valid messages of `descriptor`'s type."""
    key = (descriptor.full_name, depth)
    if key in _CACHE:
        return _CACHE[key]
    cls = GetMessageClass(descriptor)
    if depth >= MAX_DEPTH:
        strategy: st.SearchStrategy[Message] = st.builds(cls)
        _CACHE[key] = strategy
        return strategy
    # A field is set three times out of four: requests then get past "is required" more often.
    plain = [
        f for f in descriptor.fields if f.containing_oneof is None or f.containing_oneof.name.startswith("_")
    ]
    optional = {f.name: st.one_of(st.none(), *[_value(f, depth)] * 3) for f in plain}
    oneofs = [
        st.one_of(st.none(), *(st.tuples(st.just(f.name), _value(f, depth)) for f in oneof.fields))
        for oneof in descriptor.oneofs
        if not oneof.name.startswith("_")
    ]
    fields_by_name = descriptor.fields_by_name

    def build(chosen: dict[str, Any], oneof_choices: list[tuple[str, Any] | None]) -> Message:
        message = cls()
        for name, value in chosen.items():
            if value is not None:
                _assign(message, fields_by_name[name], value)
        for choice in oneof_choices:
            if choice is not None:
                _assign(message, fields_by_name[choice[0]], choice[1])
        return message

    built = st.builds(build, st.fixed_dictionaries(optional), st.tuples(*oneofs).map(list))
    strategy = st.deferred(lambda: built)
    _CACHE[key] = strategy
    return strategy


# ---- checking an answer -------------------------------------------------------------------------------


def error_reason(error: grpc.RpcError) -> str | None:
    """The google.rpc.ErrorInfo reason of a failed call, or None when it carries none."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return None


def check_clean_answer(call: Callable[[], Any], request_size: int, max_message_bytes: int) -> str:
    """Run one RPC; pass when it answers OK or a clean status with a documented ErrorInfo reason.

    Returns the outcome ("OK" or the status name and reason), for hypothesis' statistics.
    """
    try:
        call()
    except grpc.RpcError as raised:
        error = raised
    else:
        return "OK"
    code = error.code()
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and request_size > max_message_bytes:
        return "RESOURCE_EXHAUSTED (message over the bound, refused by gRPC)"
    assert code in CLEAN_CODES, f"{code}: {error.details()!r}"
    reason = error_reason(error)
    assert reason in ERROR_REASONS, f"{code} without a documented ErrorInfo reason: {reason!r}"
    assert "Traceback" not in (error.details() or "")
    return f"{code.name} {reason}"
