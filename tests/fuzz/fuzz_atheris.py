"""Coverage-guided fuzzing of the parsers with atheris (libFuzzer), run by hand; not part of the suite.

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz/fuzz_atheris.py TARGET [libFuzzer options: -max_total_time=600 CORPUS_DIR]

TARGET is one of the names in TARGETS. A crash (any exception but the target's documented error type, or
a broken invariant) stops the run and leaves the input in ./crash-<hash>; replay it with
`.venv/bin/python tests/fuzz/fuzz_atheris.py TARGET ./crash-<hash>`. The hypothesis fuzz tests
(tests/fuzz/test_fuzz_*.py) cover the same parsers with a fixed budget in CI; this finds what random
generation does not reach, by following the branches each input covers.
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["watchword"], enable_loader_override=False):
    from watchword import config, extract, reasons, secret_format
    from watchword.decide.catalogue import Catalogue, CatalogueError
    from watchword.domain import HttpParts, PresentedCredential, Refusal
    from watchword.jose import jwk, jws
    from watchword.outbound import signer
    from watchword.outbound.network_guard import OutboundTokenError, _parse_url

SETTINGS = extract.TransportSettings(max_token_bytes=256, cookie_name="ww_session", query_enabled=True)
HEADER_NAMES = ["Authorization", "authorization", "Cookie", "Hull-App-Id", "Hull-Access-Token", "X-Other"]
_SCRATCH = Path(tempfile.mkdtemp(prefix="watchword-atheris-"))


def _refusal(call: Callable[[], object], *errors: type[Exception]) -> Exception | None:
    """The documented error `call` raised, or None; any other exception propagates (a crash)."""
    try:
        call()
    except errors as error:
        return error
    return None


def _clean(found: PresentedCredential | Refusal, max_bytes: int) -> None:
    if isinstance(found, Refusal):
        assert found.reason in reasons.REASONS, found.reason
    else:
        assert 0 < len(found.token) <= max_bytes, len(found.token)


def fuzz_extract(data: bytes) -> None:
    source = atheris.FuzzedDataProvider(data)
    headers = tuple(
        (
            HEADER_NAMES[source.ConsumeIntInRange(0, len(HEADER_NAMES) - 1)],
            source.ConsumeUnicodeNoSurrogates(300),
        )
        for _ in range(source.ConsumeIntInRange(0, 6))
    )
    cookies = tuple(
        ("ww_session", source.ConsumeUnicodeNoSurrogates(300)) for _ in range(source.ConsumeIntInRange(0, 2))
    )
    query = source.ConsumeUnicodeNoSurrogates(400)
    request = HttpParts(method="GET", path="/", headers=headers, query=query, cookies=cookies)
    _clean(extract.from_http(request, SETTINGS), SETTINGS.max_token_bytes)
    _clean(extract.basic_credentials(query, 256), 256)
    _clean(extract.from_bare(query, "", 256), 256)
    extract.parse_cookie_header(query)


def fuzz_jws(data: bytes) -> None:
    error = _refusal(lambda: jws.parse(data.decode("latin-1")), jws.JwsError)
    assert error is None or getattr(error, "reason", None) in reasons.REASONS


_KTYS = ["RSA", "EC", "OKP", "oct", "x"]
_CURVES = ["P-256", "P-384", "P-521", "Ed25519", "X25519"]
_ALGS = [*sorted(jws.SUPPORTED_ALGORITHMS), "ES521", "none", "RSA-OAEP", ""]
_MEMBERS = ["n", "e", "x", "y", "k", "d", "use", "key_ops", "kid"]


def fuzz_jwk(data: bytes) -> None:
    """A JWK built from the input's choices (random bytes are rarely JSON), or the input as JSON."""
    source = atheris.FuzzedDataProvider(data)
    if source.ConsumeBool():
        try:
            document: object = json.loads(source.ConsumeBytes(source.remaining_bytes()))
        except (ValueError, RecursionError):
            return
    else:
        key: dict[str, object] = {"kty": source.PickValueInList(_KTYS)}
        if source.ConsumeBool():
            key["crv"] = source.PickValueInList(_CURVES)
        if source.ConsumeBool():
            key["alg"] = source.PickValueInList(_ALGS)
        for _ in range(source.ConsumeIntInRange(0, 5)):
            raw = source.ConsumeBytes(source.ConsumeIntInRange(0, 600))
            key[source.PickValueInList(_MEMBERS)] = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        document = {"keys": [key]} if source.ConsumeBool() else key
    _refusal(lambda: jwk.load_jwk(document), jwk.KeySetError)  # type: ignore[arg-type]
    _refusal(lambda: jwk.load_jwks(document), jwk.KeySetError)  # type: ignore[arg-type]


def fuzz_base64url(data: bytes) -> None:
    text = data.decode("latin-1")
    try:
        decoded = jwk.decode_b64url(text)
    except ValueError:
        return
    assert base64.urlsafe_b64encode(decoded).rstrip(b"=").decode() == text


def fuzz_secret(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    parsed = secret_format.parse(text)
    hint = secret_format.hint(text)
    if parsed is not None:
        assert hint == f"{secret_format.PREFIXES[parsed.kind]}_{parsed.credential_id}"


def fuzz_config(data: bytes) -> None:
    path = _SCRATCH / "watchword.toml"
    path.write_bytes(data)
    _refusal(lambda: config.load(path, environ={}), config.ConfigError)


def fuzz_catalogue(data: bytes) -> None:
    path = _SCRATCH / "catalogue.toml"
    path.write_bytes(data)
    _refusal(lambda: Catalogue.load(path), CatalogueError)


def fuzz_url(data: bytes) -> None:
    url = data.decode("utf-8", "replace")
    problem = signer.check_url(url)  # a problem or None; raising is the crash
    assert problem is None or isinstance(problem, str)
    error = _refusal(lambda: _parse_url(url), OutboundTokenError)
    assert error is None or getattr(error, "reason", None) == "token_url_forbidden"


TARGETS: dict[str, Callable[[bytes], None]] = {
    "extract": fuzz_extract,
    "jws": fuzz_jws,
    "jwk": fuzz_jwk,
    "base64url": fuzz_base64url,
    "secret": fuzz_secret,
    "config": fuzz_config,
    "catalogue": fuzz_catalogue,
    "url": fuzz_url,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
