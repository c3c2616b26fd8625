"""Offering a token to one JWT verifier the way the pipeline does: parsed once, then routed."""

from __future__ import annotations

from datetime import UTC, datetime

from watchword.domain import PresentedCredential, Principal, Refusal, Transport
from watchword.identify.verifier import JwtVerifier
from watchword.identify.verifiers import JwtRouter


async def verify_jwt(
    verifier: JwtVerifier, token: str, transport: Transport, now: float, max_bytes: int = 8192
) -> Principal | Refusal:
    """`now` in Unix seconds, as the JWT claims count it."""
    router = JwtRouter((verifier,), max_bytes)
    return await router.verify(PresentedCredential(token, transport), datetime.fromtimestamp(now, UTC))
