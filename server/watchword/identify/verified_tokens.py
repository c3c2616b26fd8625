"""Verified JWTs, remembered so a token seen again costs no signature check.

An entry is used only while the token is unexpired and at most `max_age` seconds after it was verified,
and only after re-checking, through the credential cache, that the stored credential behind it (tenant
signing secret, connector, or the credential a Watchword token was minted from) is exactly as it was
then: a deactivation or a rotation is seen on the very next call, exactly as without this cache, and an
entry verified during a rotation's overlap is dropped when the overlap ends.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime

from watchword.domain import PresentedCredential, Principal
from watchword.store.models import Credential

DEFAULT_MAX_AGE = 60.0
DEFAULT_MAX_ENTRIES = 10_000

CredentialLookup = Callable[[str], Awaitable[Credential | None]]
Key = tuple[str, int, str]
State = tuple[object, ...] | None


def _state(record: Credential | None) -> State:
    if record is None:
        return None
    return (
        record.secret_hash,
        record.previous_secret_hash,
        record.previous_secret_valid_until,
        record.deactivated_at,
        record.expires_at,
    )


class VerifiedTokens:
    def __init__(
        self,
        lookup: CredentialLookup,
        max_age: float = DEFAULT_MAX_AGE,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._max_age = max_age
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Key, tuple[float, Principal, State]] = OrderedDict()
        self.hits = 0  # for metrics
        self.misses = 0

    @staticmethod
    def _key(presented: PresentedCredential) -> Key:
        return (presented.token, int(presented.transport), presented.client_id)

    async def get(self, presented: PresentedCredential, now: datetime) -> Principal | None:
        key = self._key(presented)
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        verified_at, principal, state = entry
        expired = principal.expires_at is not None and principal.expires_at <= now
        stale = self._clock() - verified_at > self._max_age
        if expired or stale or not await self._unchanged(principal, state, now):
            # After the await a concurrent call may have dropped it or kept a fresh one: drop only this.
            if self._entries.get(key) is entry:
                del self._entries[key]
            self.misses += 1
            return None
        self.hits += 1
        return principal

    async def _backing(self, principal: Principal) -> Credential | None:
        """The stored credential a JWT principal rests on (C4's signing secret, C7's connector, the one a
        C8 token was minted from), which can be deactivated or rotated; C1 principals name none."""
        if not principal.credential_id:
            return None
        return await self._lookup(principal.credential_id)

    async def _unchanged(self, principal: Principal, state: State, now: datetime) -> bool:
        record = await self._backing(principal)
        if _state(record) != state:
            return False
        overlap_ended = (
            record is not None
            and record.previous_secret_valid_until is not None
            and record.previous_secret_valid_until <= now
        )
        return not overlap_ended

    async def remember(self, presented: PresentedCredential, principal: Principal) -> None:
        """Keep a principal that was just verified, with the state of the credential behind it."""
        key = self._key(presented)
        self._entries[key] = (self._clock(), principal, _state(await self._backing(principal)))
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, credential_id: str) -> None:
        """Drop every token resting on this credential (it changed, here or on another replica). Entries
        are re-checked against the credential anyway; dropping them also frees the memory at once."""
        entries = self._entries.items()
        stale = [key for key, (_, principal, _) in entries if principal.credential_id == credential_id]
        for key in stale:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
