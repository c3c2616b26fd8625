"""Fuzzing extraction (T1-T7): Bearer, Basic, cookies, the header pair, query parameters and bare tokens.

tests/server/test_transports.py already throws random headers at `from_http` and checks that nothing crashes.
These go further: a model of where credentials were placed predicts the exact outcome (one credential,
ambiguous or missing), no credential longer than `max_token_bytes` ever comes out, and the parsers
round-trip what a well-behaved client sends.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import quote_plus

from hypothesis import event, given
from hypothesis import strategies as st

from watchword import extract, reasons
from watchword.domain import CredentialKind, HttpParts, PresentedCredential, Refusal, Transport
from watchword.secret_format import PREFIXES, mint, new_credential_id, parse

from support.fuzz_settings import fuzz

COOKIE = "ww_session"
ID_HEADER, TOKEN_HEADER = "Hull-App-Id", "Hull-Access-Token"
CREDENTIAL_HEADERS = {"authorization", "cookie", ID_HEADER.lower(), TOKEN_HEADER.lower()}

B64TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
# Printable ASCII without ':' (Basic splits at the first one) nor ';', ',' and '=' (cookie syntax).
CLIENT_ID_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ":;,=")

tokens = st.builds(
    lambda body, pad: body + "=" * pad,
    # Short ones, and ones around the smaller size bounds (256, 300).
    st.text(B64TOKEN_CHARS, min_size=1, max_size=40) | st.text(B64TOKEN_CHARS, min_size=250, max_size=320),
    st.integers(0, 2),
)
client_ids = st.text(CLIENT_ID_CHARS, min_size=1, max_size=40)
settings_choices = st.builds(
    extract.TransportSettings,
    max_token_bytes=st.sampled_from([256, 300, 8192]),
    cookie_name=st.sampled_from(["", COOKIE]),
    query_enabled=st.booleans(),
)
# Whatever text a client may put anywhere: unicode, controls, NUL, separators, very long values.
any_text = st.one_of(
    st.text(max_size=100),
    st.text(st.characters(codec="ascii"), max_size=100),
    st.builds(
        lambda c, n: c * n, st.sampled_from(["a", " ", "=", ";", ":", "\x00", "é"]), st.integers(0, 70_000)
    ),
)


def every_outcome_is_clean(found: PresentedCredential | Refusal, max_bytes: int) -> None:
    assert isinstance(found, PresentedCredential | Refusal)
    if isinstance(found, Refusal):
        assert found.reason in reasons.REASONS
        assert found.message
    else:
        assert 0 < len(found.token) <= max_bytes
        assert found.token == found.token.strip()


# ---- a model of where credentials were put ------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """One credential put in one place of a request."""

    where: str  # bearer, basic, cookie_header, cookie_list, header_pair, query
    token: str
    client_id: str  # "" where the transport carries none


PLACES = ["bearer", "basic", "cookie_header", "cookie_list", "header_pair", "query"]


@st.composite
def placements(draw: st.DrawFn) -> list[Placement]:
    pool = draw(st.lists(st.tuples(tokens, client_ids), min_size=1, max_size=3))
    chosen = draw(st.lists(st.tuples(st.sampled_from(PLACES), st.sampled_from(pool)), max_size=4))
    placed = []
    for where, (token, client_id) in chosen:
        carries_id = where in ("basic", "header_pair", "query")
        placed.append(Placement(where, token, client_id if carries_id else ""))
    return placed


def build_request(placed: list[Placement], noise: list[tuple[str, str]], case_of_names: int) -> HttpParts:
    headers: list[tuple[str, str]] = list(noise)
    cookies: list[tuple[str, str]] = []
    query: list[str] = []

    def name(text: str) -> str:  # header names are case-insensitive: vary their case
        return [text, text.lower(), text.upper()][case_of_names % 3]

    for p in placed:
        if p.where == "bearer":
            headers.append((name("Authorization"), f"Bearer {p.token}"))
        elif p.where == "basic":
            encoded = base64.b64encode(f"{p.client_id}:{p.token}".encode()).decode()
            headers.append((name("Authorization"), f"Basic {encoded}"))
        elif p.where == "cookie_header":
            headers.append((name("Cookie"), f"other=1; {COOKIE}={p.token}"))
        elif p.where == "cookie_list":
            cookies.append((COOKIE, p.token))
        elif p.where == "header_pair":
            headers += [(name(ID_HEADER), p.client_id), (name(TOKEN_HEADER), p.token)]
        else:
            query.append(f"id={quote_plus(p.client_id)}&secret={quote_plus(p.token)}")
    return HttpParts(
        method="GET", path="/", headers=tuple(headers), query="&".join(query), cookies=tuple(cookies)
    )


def enabled(place: str, configuration: extract.TransportSettings) -> bool:
    if place in ("cookie_header", "cookie_list"):
        return bool(configuration.cookie_name)
    if place == "query":
        return configuration.query_enabled
    return True


noise_headers = st.lists(
    st.tuples(st.sampled_from(["Accept", "X-Request-Id", "Content-Type", "Hull-App", "Bearer"]), any_text),
    max_size=3,
)


@fuzz(examples=200)
@given(placements(), noise_headers, st.integers(0, 2), settings_choices)
def test_t1_t5_t7_the_outcome_is_exactly_what_the_placed_credentials_predict(
    placed: list[Placement],
    noise: list[tuple[str, str]],
    case_of_names: int,
    configuration: extract.TransportSettings,
) -> None:
    """One distinct credential comes out as itself; two are ambiguous and yield nothing; none is missing;
    one over the size bound is refused. Exactly, whatever the transports and the header names' case."""
    found = extract.from_http(build_request(placed, noise, case_of_names), configuration)
    every_outcome_is_clean(found, configuration.max_token_bytes)
    event(f"outcome: {found.reason if isinstance(found, Refusal) else found.transport.name}")
    read = [p for p in placed if enabled(p.where, configuration)]
    distinct = {(p.token, p.client_id) for p in read}
    # Several header-pair ids (or query ids) are a refusal of their own, even with one token.
    pair_ids = {p.client_id for p in read if p.where == "header_pair"}
    query_ids = {p.client_id for p in read if p.where == "query"}
    if len(distinct) > 1 or len(pair_ids) > 1 or len(query_ids) > 1:
        assert isinstance(found, Refusal)
        assert found.reason in (reasons.CREDENTIAL_AMBIGUOUS, reasons.CREDENTIAL_MALFORMED)
        if not any(len(p.token) > configuration.max_token_bytes for p in read):
            assert found.reason == reasons.CREDENTIAL_AMBIGUOUS
    elif not distinct:
        assert isinstance(found, Refusal)
        assert found.reason == reasons.CREDENTIAL_MISSING
    else:
        ((token, client_id),) = distinct
        if len(token) > configuration.max_token_bytes:
            # Refused; sent several ways it is several refusals, which count as ambiguous.
            assert isinstance(found, Refusal)
            expected = reasons.CREDENTIAL_MALFORMED if len(read) == 1 else reasons.CREDENTIAL_AMBIGUOUS
            assert found.reason in (expected, reasons.CREDENTIAL_MALFORMED)
        else:
            assert isinstance(found, PresentedCredential), found
            assert (found.token, found.client_id) == (token, client_id)
            # The most explicit transport wins when the same credential came several ways.
            transports = {
                "bearer": Transport.BEARER,
                "basic": Transport.BASIC,
                "cookie_header": Transport.COOKIE,
                "cookie_list": Transport.COOKIE,
                "header_pair": Transport.HEADER_PAIR,
                "query": Transport.QUERY,
            }
            assert found.transport == min(transports[p.where] for p in read)


@fuzz(examples=200)
@given(
    headers=st.lists(
        st.tuples(
            st.sampled_from(["Authorization", "AUTHORIZATION", "Cookie", ID_HEADER, TOKEN_HEADER, "x"]),
            st.one_of(
                any_text,
                st.builds(lambda s: "Bearer " + s, any_text),
                st.builds(lambda s: "Basic " + s, any_text),
                st.builds(lambda b: "Basic " + base64.b64encode(b).decode(), st.binary(max_size=20000)),
            ),
        ),
        max_size=6,
    ),
    query=any_text,
    cookies=st.lists(st.tuples(st.sampled_from([COOKIE, "x", ""]), any_text), max_size=3),
    configuration=settings_choices,
)
def test_t1_t5_arbitrary_requests_never_yield_a_credential_over_the_bound(
    headers: list[tuple[str, str]],
    query: str,
    cookies: list[tuple[str, str]],
    configuration: extract.TransportSettings,
) -> None:
    """Huge, unicode, NUL-laden or half-formed parts: a clean answer, never one over max_token_bytes."""
    request = HttpParts(method="GET", path="/", headers=tuple(headers), query=query, cookies=tuple(cookies))
    every_outcome_is_clean(extract.from_http(request, configuration), configuration.max_token_bytes)


# ---- the parsers one by one ---------------------------------------------------------------------------


# Any text but control characters (what a Basic password may hold).
passwords = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1)


@fuzz(examples=200)
@given(client_ids, passwords, st.sampled_from([256, 8192]))
def test_t2_basic_credentials_round_trip(client_id: str, password: str, max_bytes: int) -> None:
    """RFC 7617: base64(id ":" password) gives back exactly the id and password, or a size refusal."""
    encoded = base64.b64encode(f"{client_id}:{password}".encode()).decode()
    found = extract.basic_credentials(encoded, max_bytes)
    if len(password) > max_bytes or len(encoded) > 2 * max_bytes:
        assert isinstance(found, Refusal)
        assert found.reason == reasons.CREDENTIAL_MALFORMED
    else:
        assert isinstance(found, PresentedCredential)
        assert (found.client_id, found.token, found.transport) == (client_id, password, Transport.BASIC)


@fuzz(examples=200)
@given(st.one_of(any_text, st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode())))
def test_t2_any_basic_text_is_a_credential_or_a_malformed_refusal(encoded: str) -> None:
    found = extract.basic_credentials(encoded, 8192)
    every_outcome_is_clean(found, 8192)
    if isinstance(found, Refusal):
        assert found.reason == reasons.CREDENTIAL_MALFORMED


cookie_names = st.text("".join(c for c in B64TOKEN_CHARS if c not in "="), min_size=1, max_size=20)
cookie_values = st.text(B64TOKEN_CHARS + '"', max_size=40).filter(
    lambda v: not (len(v) >= 2 and v[0] == v[-1] == '"')
)


@fuzz(examples=200)
@given(st.lists(st.tuples(cookie_names, cookie_values), max_size=8), st.booleans())
def test_t3_cookie_header_round_trips(pairs: list[tuple[str, str]], quoted: bool) -> None:
    """RFC 6265 §4.2.1 `name=value; name2=value2`; a DQUOTE-wrapped value is read without its quotes."""
    header = "; ".join(f'{n}="{v}"' if quoted else f"{n}={v}" for n, v in pairs)
    assert extract.parse_cookie_header(header) == pairs


@fuzz(examples=200)
@given(any_text)
def test_t3_any_cookie_header_parses_into_bounded_pairs(header: str) -> None:
    pairs = extract.parse_cookie_header(header)
    consumed = header[: extract.MAX_COOKIE_HEADER]
    for name, value in pairs:
        assert name
        assert name in consumed
        assert value in consumed


@fuzz(examples=200)
@given(any_text, st.one_of(st.just(""), client_ids, any_text), st.sampled_from([256, 8192]))
def test_t6_bare_tokens_are_clean_and_bounded(token: str, client_id: str, max_bytes: int) -> None:
    found = extract.from_bare(token, client_id, max_bytes)
    every_outcome_is_clean(found, max_bytes)
    if isinstance(found, PresentedCredential):
        assert found.token == token.strip()
        assert found.transport is Transport.BARE
    elif not token.strip():
        assert found.reason == reasons.CREDENTIAL_MISSING


@fuzz(examples=200)
@given(tokens, st.sampled_from([256, 8192]), st.sampled_from(["Bearer", "bearer", "BEARER"]))
def test_t1_bearer_round_trips(token: str, max_bytes: int, scheme: str) -> None:
    request = HttpParts(headers=(("Authorization", f"{scheme}  {token} "),))
    found = extract.from_http(request, extract.TransportSettings(max_token_bytes=max_bytes))
    if len(token) > max_bytes:
        assert isinstance(found, Refusal)
        assert found.reason == reasons.CREDENTIAL_MALFORMED
    else:
        assert found == PresentedCredential(token=token, transport=Transport.BEARER)


# ---- credentials are compared as sent (issue #12) -----------------------------------------------------

# What str.strip() removes: ASCII blanks and controls, and Unicode spaces a copy-paste may add.
UNICODE_SPACES = ["\u00a0", "\u2003", "\u3000", "\u2028", "\u1680", "\u205f", "\x0b", "\x0c", "\x1c"]
surroundings = st.lists(
    st.sampled_from([" ", "\t", "\n", "\r", *UNICODE_SPACES]), min_size=1, max_size=3
).map("".join)


@fuzz(examples=200)
@given(tokens, surroundings, st.sampled_from(["before", "after", "both"]))
def test_t6_bare_token_with_surrounding_whitespace_is_refused_never_trimmed(
    token: str, space: str, where: str
) -> None:
    sent = (space if where != "after" else "") + token + (space if where != "before" else "")
    found = extract.from_bare(sent, "", 8192)
    assert isinstance(found, Refusal), sent
    assert found.reason == reasons.CREDENTIAL_MALFORMED


@fuzz(examples=200)
@given(tokens, st.sampled_from(UNICODE_SPACES), st.sampled_from(["Bearer", "bearer"]))
def test_t6_t1_unicode_spaces_around_a_bearer_token_are_not_optional_whitespace(
    token: str, space: str, scheme: str
) -> None:
    """HTTP's optional whitespace is space and tab; U+00A0, U+2003, U+3000... are part of the value."""
    for value in (f"{scheme} {space}{token}", f"{scheme} {token}{space}", f"{scheme} {token}{space} "):
        found = extract.from_http(HttpParts(headers=(("Authorization", value),)), extract.TransportSettings())
        assert isinstance(found, Refusal), value
        assert found.reason == reasons.CREDENTIAL_MALFORMED
    cookie = HttpParts(headers=(("Cookie", f"{COOKIE}={space}{token}"),))
    found = extract.from_http(cookie, extract.TransportSettings(cookie_name=COOKIE))
    assert isinstance(found, Refusal)


@fuzz(examples=200)
@given(st.sampled_from(list(PREFIXES)), surroundings, st.booleans())
def test_t6_a_secret_with_surrounding_whitespace_is_not_a_secret(
    kind: CredentialKind, space: str, before: bool
) -> None:
    """secret_format parses exactly what it is given: nothing is trimmed into a valid secret."""
    secret = mint(kind, new_credential_id())
    assert parse(secret) is not None
    assert parse(space + secret if before else secret + space) is None
