"""SignOutbound: the headers an outbound webhook must carry to prove itself to a customer's endpoint.

O1 Bearer, O2 Basic (RFC 7617), O3/O4 an access token from the customer's token server (fetched and
cached by `token_cache`), and O5 a Standard Webhooks payload signature, combinable with any of them.
The secrets are unsealed only here, per call, from the sealed document (O6).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization

from watchword.crypto.master_key import MasterKey
from watchword.identify.cache import TtlCache, trim_oldest
from watchword.outbound import header_values, standard_webhooks
from watchword.outbound.credential import (
    CredentialError,
    OutboundScheme,
    check_header_secrets,
    stored_member,
)
from watchword.outbound.network_guard import OutboundTokenError
from watchword.outbound.secrets import OutboundSecrets, unseal
from watchword.outbound.token_cache import TokenCache
from watchword.outbound.token_endpoint import TokenEndpoint, credential_version
from watchword.store.models import OutboundCredential
from watchword.store.repository import Store

# How long static headers and a payload signature are good for: Standard Webhooks receivers accept a
# timestamp within 5 minutes.
STATIC_VALIDITY = timedelta(minutes=5)
MAX_PRIVATE_KEYS = 10_000  # parsed O4 private keys kept, one per outbound credential


@dataclass(frozen=True, slots=True)
class Signed:
    headers: list[tuple[str, str]]
    valid_until: datetime


@dataclass(frozen=True, slots=True)
class SignFailure:
    reason: str
    message: str
    retryable: bool = False
    retry_after: float | None = None


class OutboundSigner:
    def __init__(
        self,
        store: Store,
        master_key: MasterKey,
        tokens: TokenCache | None = None,
        cache_ttl: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._master_key = master_key
        self._tokens = tokens  # O3/O4
        self._clock = clock
        self.credentials: TtlCache[OutboundCredential] = TtlCache(store.get_outbound_credential, cache_ttl)
        self._private_keys: dict[str, tuple[str, Any]] = {}

    def _secrets_in_use(self, record: OutboundCredential, now: datetime) -> list[OutboundSecrets]:
        """The current secrets, then the previous ones while a rotation's overlap lasts."""
        found = [unseal(self._master_key, record.id, record.sealed_secrets)]
        overlap = record.previous_secret_valid_until is not None and now < record.previous_secret_valid_until
        if overlap and record.previous_sealed_secrets is not None:
            found.append(unseal(self._master_key, record.id, record.previous_sealed_secrets))
        return found

    def _private_key(self, credential_id: str, version: str, pem: str) -> Any:
        """O4: the loaded private key, parsed once per credential version (RSA parsing is slow)."""
        if not pem:
            return None
        cached = self._private_keys.get(credential_id)
        if cached is None or cached[0] != version:
            cached = (version, serialization.load_pem_private_key(pem.encode(), password=None))
            self._private_keys.pop(credential_id, None)  # re-inserted last: trimmed oldest first
            self._private_keys[credential_id] = cached
            trim_oldest(self._private_keys, MAX_PRIVATE_KEYS)
        return cached[1]

    async def sign(
        self,
        credential_id: str,
        url: str,
        body: bytes,
        message_id: str,
        previous_token_rejected: bool,
    ) -> Signed | SignFailure:
        record = await self.credentials.get(credential_id)
        if record is None:
            return SignFailure("outbound_credential_unknown", "no such outbound credential")
        if record.deactivated_at is not None:
            return SignFailure(
                "outbound_credential_deactivated", "the outbound credential has been deactivated"
            )
        if message_id and (problem := header_values.message_id_problem(message_id)):
            return SignFailure("message_id_invalid", f"the message id {problem}")
        now = datetime.fromtimestamp(self._clock(), UTC)
        in_use = self._secrets_in_use(record, now)
        authorized = await self._authorization(record, in_use[0], url, previous_token_rejected)
        if isinstance(authorized, SignFailure):
            return authorized
        headers, token_valid_until = authorized
        valid_until = now + STATIC_VALIDITY
        if token_valid_until is not None:
            valid_until = min(valid_until, token_valid_until)
        if record.sign_payload:
            signing = [s.payload_signing_secret for s in in_use if s.payload_signing_secret]
            timestamp = int(now.timestamp())
            headers.extend(
                standard_webhooks.headers(
                    signing, message_id or standard_webhooks.new_message_id(), timestamp, body
                )
            )
        problem = header_values.headers_problem(headers)
        if problem:  # unreachable after the checks above; the last gate stays anyway
            return SignFailure("outbound_credential_invalid", problem)
        return Signed(headers=headers, valid_until=valid_until)

    async def _authorization(
        self, record: OutboundCredential, current: OutboundSecrets, url: str, rejected: bool
    ) -> tuple[list[tuple[str, str]], datetime | None] | SignFailure:
        """The Authorization header of the credential's scheme (none for NONE) and, for an access token,
        how long it holds. Stored rows are checked again: they may predate the admin API's checks."""
        scheme = stored_member(OutboundScheme, record.scheme)
        if scheme is None:
            return SignFailure("outbound_credential_invalid", "the stored scheme is unknown")
        try:
            check_header_secrets(scheme, record.username, current)
        except CredentialError as exc:
            return SignFailure("outbound_credential_invalid", f"stored credential: {exc}")
        if scheme is OutboundScheme.BEARER:
            return [("Authorization", f"Bearer {current.bearer_token}")], None
        if scheme is OutboundScheme.BASIC:
            pair = f"{record.username}:{current.password}".encode()
            return [("Authorization", "Basic " + base64.b64encode(pair).decode("ascii"))], None
        if scheme is OutboundScheme.OAUTH2_CLIENT_CREDENTIALS:
            fetched = await self._access_token(record, current, url, rejected)
            if isinstance(fetched, SignFailure):
                return fetched
            return [("Authorization", f"Bearer {fetched[0]}")], fetched[1]
        return [], None

    async def _access_token(
        self, record: OutboundCredential, current: OutboundSecrets, url: str, rejected: bool
    ) -> tuple[str, datetime] | SignFailure:
        if self._tokens is None:
            return SignFailure(
                "scheme_not_served", "OAuth2 outbound credentials are not served by this version"
            )
        try:
            endpoint = self._endpoint(record, current)
        except ValueError as exc:
            return SignFailure("outbound_credential_invalid", str(exc))
        try:
            fetched = await self._tokens.token(endpoint, url, force_refresh=rejected)
        except OutboundTokenError as exc:
            return SignFailure(exc.reason, str(exc), exc.retryable, exc.retry_after)
        problem = header_values.bearer_token_problem(fetched.access_token)
        if problem:  # the fetcher refuses such answers; a cache filled by another path must not pass
            return SignFailure("token_response_invalid", f"the access token {problem}")
        seconds_left = fetched.expires_at - time.monotonic()
        return fetched.access_token, datetime.now(UTC) + timedelta(seconds=max(0.0, seconds_left))

    def _endpoint(self, record: OutboundCredential, current: OutboundSecrets) -> TokenEndpoint:
        """The stored O3/O4 credential as the fetcher's TokenEndpoint; raises ValueError (the one
        validator's CredentialError) when it is unusable."""
        version = credential_version(record)
        private_key = self._private_key(record.id, version, current.private_key_pem)
        return TokenEndpoint.from_stored(record, current, private_key)


def check_url(url: str) -> str | None:
    """Why a webhook URL is unusable, or None: absolute http(s) with a host."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket, "http://[::1"
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not hostname:
        return "must be an absolute http or https URL"
    return None
