"""C10: properties of the x-forwarded-client-cert parser (`identify/xfcc.py`).

A model of Envoy's writer (elements joined by commas, pairs by semicolons, a value quoted when it holds
`,`, `;`, `=` or `"`, a quote inside escaped, Cert and Chain URL-encoded) serialises random elements; the
parser must give back exactly what was written, the last element must be the nearest proxy's, and on any
text at all it either parses or raises XfccError, nothing else.
"""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from watchword.identify import xfcc

from support.fuzz_settings import fuzz

# Printable ASCII and some beyond, with every separator and the quote: what values may hold.
VALUE_CHARS = st.characters(
    min_codepoint=0x20, max_codepoint=0x2FF, blacklist_categories=("Cs", "Cc"), blacklist_characters="\\"
)
values = st.text(VALUE_CHARS, min_size=1, max_size=30)
pems = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n- ", min_size=1, max_size=80
)

elements = st.builds(
    xfcc.XfccElement,
    by=st.lists(values, max_size=2).map(tuple),
    hash=st.just("") | st.text("0123456789abcdef", min_size=1, max_size=64),
    cert=st.just("") | pems,
    chain=st.just("") | pems,
    subject=st.just("") | values,
    uri=st.lists(values, max_size=2).map(tuple),
    dns=st.lists(values, max_size=2).map(tuple),
).filter(lambda e: bool(e.by or e.hash or e.cert or e.chain or e.subject or e.uri or e.dns))


def _quoted(value: str) -> str:
    """Envoy's rule: a value holding `,`, `;`, `=` or `"` is double-quoted, a quote inside escaped."""
    if any(c in value for c in ',;="') or value != value.strip(" \t"):
        return '"' + value.replace('"', '\\"') + '"'
    return value


def _written(element: xfcc.XfccElement, key_case: str) -> str:
    pairs = [("By", v) for v in element.by]
    pairs += [("Hash", element.hash)] if element.hash else []
    pairs += [("Cert", quote(element.cert, safe=""))] if element.cert else []
    pairs += [("Chain", quote(element.chain, safe=""))] if element.chain else []
    pairs += [("Subject", element.subject)] if element.subject else []
    pairs += [("URI", v) for v in element.uri] + [("DNS", v) for v in element.dns]
    cased = {"as is": str, "lower": str.lower, "upper": str.upper}[key_case]
    return ";".join(f"{cased(key)}={_quoted(value)}" for key, value in pairs)


@fuzz(examples=300)
@given(st.lists(elements, min_size=1, max_size=4), st.sampled_from(["as is", "lower", "upper"]))
def test_c10_xfcc_what_envoy_writes_parses_back_exactly(written: list[xfcc.XfccElement], case: str) -> None:
    header = ",".join(_written(element, case) for element in written)
    assert xfcc.parse(header) == tuple(written)
    assert xfcc.nearest([header]) == written[-1]


@fuzz(examples=300)
@given(st.lists(elements, min_size=2, max_size=4), st.integers(1, 3))
def test_c10_xfcc_split_over_header_lines_keeps_the_last_element_last(
    written: list[xfcc.XfccElement], cut: int
) -> None:
    parts = [_written(element, "as is") for element in written]
    cut = min(cut, len(parts) - 1)
    lines = [",".join(parts[:cut]), ",".join(parts[cut:])]
    assert xfcc.nearest(lines) == written[-1]


@fuzz(examples=500)
@given(st.text(max_size=200) | st.text(',;="\\=ByURIHashCert \t', max_size=60))
def test_c10_xfcc_any_text_parses_or_is_refused_as_malformed(header: str) -> None:
    try:
        elements = xfcc.parse(header)
    except xfcc.XfccError:
        return
    assert elements
    assert all(isinstance(element, xfcc.XfccElement) for element in elements)


def test_c10_xfcc_the_documented_example() -> None:
    header = (
        "By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;"
        'Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com,'
        "By=spiffe://example.org/edge;Cert=-----BEGIN%20CERTIFICATE-----%0AMIIB;URI=spiffe://example.org/a"
    )
    first, nearest = xfcc.parse(header)
    assert first.subject == "/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client"
    assert first.uri == ("http://testclient.lyft.com",)
    assert nearest.by == ("spiffe://example.org/edge",)
    assert nearest.cert == "-----BEGIN CERTIFICATE-----\nMIIB"
    (escaped,) = xfcc.parse('Subject="CN=a\\,b,O=Example";URI=spiffe://example.org/a')
    assert escaped.subject == "CN=a\\,b,O=Example"  # RFC 4514's own escape is kept
    for malformed in ('Cert="open', "Hash=1;Hash=2", "=x", "By=a;;URI=b", "By=a,", 'By="a"b', "By=a\nURI=b"):
        try:
            xfcc.parse(malformed)
        except xfcc.XfccError:
            continue
        raise AssertionError(f"{malformed!r} parsed")
