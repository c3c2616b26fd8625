"""JWT verification without the verified-token cache, against the bare `cryptography` check of the same
signature.

    .venv/bin/python bench/jwt_verify.py [--calls 3000] [--rounds 3]

For each kind, in this process: the path Watchword takes when a token is not in its verified-token
cache — `jws.parse` (strict base64url, JSON of header and claims), the issuer's or credential's key
looked up among the prepared keys, the signature checked, the claims checked, the Principal built
(C1: `ExternalJwtVerifier.verify` over a static JWKS; C4: `tenant_jwt.verify` with the signing secret
as the credential cache returns it; C8: `watchword_token.verify` with Watchword's key ring) — next to
the bare signature check of the same token with `cryptography` and a key object made beforehand:
`public_key.verify(der_signature, signing_input, ...)`, or for HS256 `HMAC(key, SHA256()).verify()`.
The ratio is the full path's cost over the bare check's. The two take turns call by call, each call is
timed on its own and the medians are shown, so other work on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from watchword.crypto.master_key import MasterKey
from watchword.crypto.master_key import generate as generate_master_key
from watchword.domain import CredentialKind, PresentedCredential, Principal, Transport
from watchword.identify import watchword_token
from watchword.identify.external_jwt import ExternalJwtVerifier
from watchword.identify.issuer_settings import IssuerSettings
from watchword.identify.sealed_keys import SealedKeys, sealing_purpose
from watchword.identify.tenant_jwt import TenantJwtVerifier
from watchword.identify.verifier import JwtSettings, PresentedJwt
from watchword.identify.watchword_token import WatchwordTokenVerifier
from watchword.jose import jws
from watchword.store.models import Credential, SigningKey

ISSUER = "https://idp.example"
LEEWAY = 30.0
Check = Callable[[], Awaitable[object]]


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _parts(token: str) -> tuple[bytes, bytes]:
    """The signing input and the raw signature of a compact JWS."""
    header, payload, signature = token.split(".")
    return f"{header}.{payload}".encode(), _b64(signature)


def _ecdsa_check(public_key: ec.EllipticCurvePublicKey, token: str) -> Callable[[], None]:
    data, raw = _parts(token)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    algorithm = ec.ECDSA(hashes.SHA256())
    return lambda: public_key.verify(der, data, algorithm)


def _rsa_check(public_key: rsa.RSAPublicKey, token: str) -> Callable[[], None]:
    data, signature = _parts(token)
    pad, digest = padding.PKCS1v15(), hashes.SHA256()
    return lambda: public_key.verify(signature, data, pad, digest)


def _hmac_check(secret: bytes, token: str) -> Callable[[], None]:
    data, signature = _parts(token)

    def check() -> None:
        mac = hmac.HMAC(secret, hashes.SHA256())
        mac.update(data)
        mac.verify(signature)

    return check


def _expect_principal(result: object) -> object:
    assert isinstance(result, Principal), result
    return result


async def _external_cases(tmp: Path) -> dict[str, tuple[Check, Callable[[], None]]]:
    """C1 over ES256 and RS256, one issuer each, keys from a static JWKS file (no network)."""
    now = int(time.time())
    cases: dict[str, tuple[Check, Callable[[], None]]] = {}
    signers: list[tuple[str, object, Callable[[object, str], Callable[[], None]]]] = [
        ("ES256", ec.generate_private_key(ec.SECP256R1()), _ecdsa_check),  # type: ignore[list-item]
        ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048), _rsa_check),  # type: ignore[list-item]
    ]
    for algorithm, private_key, bare in signers:
        public = private_key.public_key()  # type: ignore[attr-defined]
        jwk = (ECAlgorithm if algorithm == "ES256" else RSAAlgorithm).to_jwk(public, as_dict=True)
        jwk.update({"kid": f"{algorithm}-1", "use": "sig", "alg": algorithm})
        jwks_file = tmp / f"{algorithm}.json"
        jwks_file.write_text(json.dumps({"keys": [jwk]}))
        issuer = f"{ISSUER}/{algorithm}"
        verifier = ExternalJwtVerifier(
            [IssuerSettings(issuer=issuer, audiences=("api",), jwks_file=jwks_file, algorithms=(algorithm,))]
        )
        await verifier.start()
        claims = {"iss": issuer, "aud": "api", "sub": "user-1", "iat": now, "exp": now + 3600, "jti": "t1"}
        token = jwt.encode(claims, private_key, algorithm=algorithm, headers={"kid": f"{algorithm}-1"})

        async def full(v: ExternalJwtVerifier = verifier, t: str = token) -> object:
            presented = PresentedJwt(PresentedCredential(token=t, transport=Transport.BEARER), jws.parse(t))
            return _expect_principal(await v.verify(presented, datetime.now(UTC)))

        cases[f"C1 external IdP JWT ({algorithm})"] = (full, bare(public, token))
    return cases


def _tenant_case() -> tuple[Check, Callable[[], None]]:
    """C4: HS256 with a tenant signing secret, sealed under the master key as the store keeps it."""
    master_key = MasterKey.from_text(generate_master_key(), "bench")
    secret = b"s" * 40
    record = Credential(
        id="TenantSecret0001",
        kind=int(CredentialKind.TENANT_SIGNING_SECRET),
        organization_id="org-1",
        name="bench",
        secret_hash="0" * 64,
        secret_hint="wwts_TenantSecret0001",
        sealed_secret=master_key.seal(secret, sealing_purpose("TenantSecret0001")),
        permissions=["object.publish"],
        algorithms=["HS256"],
    )
    sealed_keys = SealedKeys(master_key)

    async def lookup(_credential_id: str) -> Credential:
        return record  # the credential cache's hit

    now = int(time.time())
    claims = {"sub": "s", "iss": "tenant", "jti": "j", "iat": now, "exp": now + 3600, "permissions": ["x"]}
    token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": record.id})
    presented = PresentedCredential(token=token, transport=Transport.BEARER)

    verifier = TenantJwtVerifier(lookup, sealed_keys, JwtSettings(leeway_seconds=LEEWAY))

    async def full() -> object:
        parsed = PresentedJwt(presented, jws.parse(token))
        return _expect_principal(await verifier.verify(parsed, datetime.now(UTC)))

    return full, _hmac_check(secret, token)


def _watchword_case() -> tuple[Check, Callable[[], None]]:
    """C8: Watchword's own ES256 token, its key from the key ring (loaded from the store's rows)."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    public_jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    public_jwk.update({"kid": "ww-1", "alg": "ES256", "use": "sig"})
    row = SigningKey(
        kid="ww-1", algorithm="ES256", public_jwk=json.dumps(public_jwk), encrypted_private_key=b""
    )

    async def list_keys() -> list[SigningKey]:
        return [row]

    ring = watchword_token.SigningKeyRing(list_keys)

    async def lookup(_credential_id: str) -> Credential | None:
        return None

    now = int(time.time())
    claims = {
        "iss": "urn:watchword",
        "aud": "urn:watchword:api",
        "sub": "key-holder",
        "iat": now,
        "exp": now + 3600,
        "jti": "t1",
        "organization_id": "org-1",
        "scope": "event.send application.list",
    }
    token = jwt.encode(claims, private_key, algorithm="ES256", headers={"kid": "ww-1", "typ": "at+jwt"})
    presented = PresentedCredential(token=token, transport=Transport.BEARER)

    verifier = WatchwordTokenVerifier(ring, lookup, JwtSettings(leeway_seconds=LEEWAY))

    async def full() -> object:
        parsed = PresentedJwt(presented, jws.parse(token))
        return _expect_principal(await verifier.verify(parsed, datetime.now(UTC)))

    return full, _ecdsa_check(private_key.public_key(), token)


async def _paired(full: Check, bare: Callable[[], None], calls: int) -> tuple[list[float], list[float]]:
    """Each call timed on its own, the full path and the bare check taking turns: whatever else the
    machine does hits both alike, and the medians leave the outliers out."""
    clock = time.perf_counter_ns
    full_times, bare_times = [], []
    for _ in range(calls):
        started = clock()
        await full()
        between = clock()
        bare()
        full_times.append((between - started) / 1000)
        bare_times.append((clock() - between) / 1000)
    return full_times, bare_times


async def _run(calls: int, rounds: int) -> list[tuple[str, float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        cases = await _external_cases(Path(tmp))
        cases["C4 tenant JWT (HS256)"] = _tenant_case()
        cases["C8 Watchword token (ES256)"] = _watchword_case()
        for full, bare in cases.values():  # warm up; every full path must accept its token
            await _paired(full, bare, 20)
        samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in cases}
        names = list(cases)
        for round_number in range(rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                full_times, bare_times = await _paired(*cases[name], calls)
                samples[name][0].extend(full_times)
                samples[name][1].extend(bare_times)
    return [(name, statistics.median(f), statistics.median(b)) for name, (f, b) in samples.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000, help="verifications per case and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all cases; the median is shown")
    args = parser.parse_args(argv)
    rows = asyncio.run(_run(args.calls, args.rounds))
    print(
        f"JWT verification without cache: {args.calls} calls per case and round, {args.rounds} rounds, "
        "median µs (ratio: full path over the bare signature check)"
    )
    print(f"{'case':<34} {'full µs':>10} {'bare µs':>10} {'ratio':>8}")
    for name, full, bare in rows:
        print(f"{name:<34} {full:>10.1f} {bare:>10.1f} {full / bare:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
