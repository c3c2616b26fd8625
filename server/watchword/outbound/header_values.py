"""What may become a header of an outbound delivery (O1-O5): one set of checks for creation and signing.

Every value SignOutbound hands back is written by the delivery service into an HTTP request. A CR or LF in
one would end the header and start another (header injection), so each value is checked where it enters
(the admin API) and again where it leaves (signing, for rows stored before these checks and for what a
token server answers). The functions answer why a value is unusable, or None; they never echo it.

- RFC 9110 §5.5 field values: visible ASCII, with SP or HTAB only between visible characters. obs-text
  (bytes 0x80-0xFF) is left out: RFC 9110 says new values SHOULD be US-ASCII, and HTTP clients such as
  httpx refuse anything else.
- Bearer tokens (O1 stored, O3/O4 fetched): one word of visible ASCII, no whitespace (RFC 6749 §A.12
  VSCHAR minus SP), since the value becomes `Authorization: Bearer <token>`.
- Basic user-id and password (O2): RFC 7617 §2 forbids control characters; the user-id also ':'.
  (They reach the header base64-encoded, but a receiver decodes them.)
- `webhook-id` (O5): the Standard Webhooks spec says a message id must not contain `.` (it is signed as
  `{id}.{timestamp}.{body}`). Watchword accepts the URL-safe base64 alphabet `[A-Za-z0-9_-]`, 1-255
  characters: its own `msg_...` ids, UUIDs and ULIDs fit.
"""

from __future__ import annotations

import re
import unicodedata

MAX_MESSAGE_ID = 255
_FIELD_VALUE = re.compile(r"[\x21-\x7e](?:[\x20\x21-\x7e\t]*[\x21-\x7e])?")
_TOKEN = re.compile(r"[\x21-\x7e]+")
_MESSAGE_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_MESSAGE_ID}}}")


def field_value_problem(value: str) -> str | None:
    """Why `value` cannot be an HTTP field value (RFC 9110 §5.5), or None. Empty is refused too: every
    header Watchword produces carries something."""
    if _FIELD_VALUE.fullmatch(value):
        return None
    if not value:
        return "is empty"
    if value != value.strip(" \t"):
        return "has leading or trailing whitespace"
    if not value.isascii():
        return "has non-ASCII characters"
    return "has control characters (CR, LF, NUL, ...)"


def bearer_token_problem(value: str) -> str | None:
    """Why `value` cannot follow `Bearer ` in an Authorization header, or None."""
    if _TOKEN.fullmatch(value):
        return None
    return field_value_problem(value) or "has whitespace inside"


def basic_part_problem(value: str, *, user_id: bool = False) -> str | None:
    """Why `value` cannot be a Basic user-id (`user_id=True`) or password (RFC 7617 §2), or None."""
    if any(unicodedata.category(char) == "Cc" for char in value):
        return "has control characters (RFC 7617)"
    if user_id and ":" in value:
        return "must not contain ':' (RFC 7617)"
    return None


def message_id_problem(value: str) -> str | None:
    """Why `value` cannot be a Standard Webhooks `webhook-id`, or None."""
    if _MESSAGE_ID.fullmatch(value):
        return None
    if not value or len(value) > MAX_MESSAGE_ID:
        return f"must be 1 to {MAX_MESSAGE_ID} characters"
    return "may hold only ASCII letters, digits, '_' and '-' (Standard Webhooks forbids '.')"


def headers_problem(headers: list[tuple[str, str]]) -> str | None:
    """The first header whose value cannot be sent, named with why; None when all can. The last gate
    before SignOutbound answers."""
    for name, value in headers:
        problem = field_value_problem(value)
        if problem:
            return f"the {name} header {problem}"
    return None
