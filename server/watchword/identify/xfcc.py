"""Envoy's `x-forwarded-client-cert` header (XFCC), parsed (C10).

The value is a comma-separated list of elements, one per proxy that handled the request, the last one
added by the nearest proxy. An element is `Key=value` pairs separated by semicolons; keys are
case-insensitive (By, Hash, Cert, Chain, Subject, URI, DNS); a value holding `,`, `;`, `=` or `"` is
double-quoted, with `\\"` for a quote inside. Cert and Chain are URL-encoded PEM. By, URI and DNS may
repeat (one pair per SAN); the others may not. Anything else is `XfccError`, never a guess.

Whether the header can be believed at all is not decided here: only when the operator says the proxy in
front sets it (`xfcc_trusted`), see `identify.client_certificate`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

HEADER = "x-forwarded-client-cert"
# Longer than any sane header of certificates (a leaf and a few intermediates, URL-encoded).
MAX_HEADER_CHARS = 65536
_REPEATABLE = frozenset({"by", "uri", "dns"})
_SINGLE = frozenset({"hash", "cert", "chain", "subject"})
# `key=` then a quoted value (escapes allowed) or a bare one up to the next separator.
_PAIR = re.compile(r'[ \t]*([A-Za-z]+)=("(?:[^"\\]|\\.)*"|[^;,"]*)[ \t]*')
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class XfccError(ValueError):
    """The header is not a well-formed XFCC value."""


@dataclass(frozen=True, slots=True)
class XfccElement:
    """What one proxy said about the client certificate of its downstream connection."""

    by: tuple[str, ...] = ()
    hash: str = ""
    cert: str = ""  # PEM, URL-decoded
    chain: str = ""  # PEM, URL-decoded: the leaf and its intermediates
    subject: str = ""
    uri: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()


def _value(raw: str) -> str:
    if raw.startswith('"'):
        # Envoy escapes only the quote; other backslashes are the value's own (RFC 4514's `\,`).
        return raw[1:-1].replace('\\"', '"')
    return raw.rstrip(" \t")


def _element(pairs: list[tuple[str, str]]) -> XfccElement:
    single: dict[str, str] = {}
    repeated: dict[str, list[str]] = {name: [] for name in _REPEATABLE}
    for key, value in pairs:
        if key in _REPEATABLE:
            repeated[key].append(value)
        elif key in _SINGLE:
            if key in single:
                raise XfccError(f"{key} appears twice in one element")
            single[key] = value
        # Other keys: a newer proxy's additions, which say nothing Watchword relies on.
    return XfccElement(
        by=tuple(repeated["by"]),
        hash=single.get("hash", ""),
        cert=unquote(single.get("cert", "")),
        chain=unquote(single.get("chain", "")),
        subject=single.get("subject", ""),
        uri=tuple(repeated["uri"]),
        dns=tuple(repeated["dns"]),
    )


def parse(header: str) -> tuple[XfccElement, ...]:
    """Every element of an XFCC value, in order (the nearest proxy's last); XfccError if malformed."""
    if len(header) > MAX_HEADER_CHARS:
        raise XfccError("the header is too long")
    if _CONTROL.search(header):
        raise XfccError("the header contains control characters")
    elements: list[XfccElement] = []
    pairs: list[tuple[str, str]] = []
    position = 0
    while True:
        match = _PAIR.match(header, position)
        if match is None:
            raise XfccError(f"expected Key=value at offset {position}")
        pairs.append((match.group(1).lower(), _value(match.group(2))))
        position = match.end()
        if position == len(header):
            elements.append(_element(pairs))
            return tuple(elements)
        separator = header[position]
        if separator == ",":
            elements.append(_element(pairs))
            pairs = []
        elif separator != ";":
            raise XfccError(f"unexpected {separator!r} at offset {position}")
        position += 1


def nearest(header_values: list[str]) -> XfccElement:
    """The element the nearest proxy added: the last of the header's values joined in order (RFC 9110
    §5.3); XfccError if any part is malformed or there is none."""
    elements = parse(",".join(header_values))
    return elements[-1]
