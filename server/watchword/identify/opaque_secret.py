"""Opaque Watchword secrets: C2 application secrets, C3 static tokens, C5 API keys (also over Basic),
C6 connector secrets (header pair or query), and the OAuth client secrets of C9 over Basic.

The secret names its credential (see `secret_format`), so verification is one lookup by primary key and
a constant-time hash comparison. A malformed secret costs no store query. The refusal for a wrong
secret is the same as for an unknown id, so nobody learns which credential ids exist; state (deactivated,
expired, Basic not enabled) is only revealed to a caller who holds the secret.
"""

from __future__ import annotations

import operator
from datetime import datetime
from urllib.parse import unquote_plus

from watchword import reasons, secret_format
from watchword.domain import CredentialKind, PresentedCredential, Principal, Refusal, Transport
from watchword.identify import kinds
from watchword.identify.credential_state import proved_secret_version, state_refusal
from watchword.identify.verifier import CredentialLookup, refuse, transport_refusal
from watchword.store.models import Credential

# Transports that carry the credential's own id beside the secret: it must name the same credential.
_PAIRED = frozenset({Transport.HEADER_PAIR, Transport.QUERY, Transport.FORM})

# An OAuth client must authenticate with the one method it was registered for (admin.proto's
# ClientAuthMethod: 1 client_secret_basic, 2 client_secret_post).
_REGISTERED_METHOD = {Transport.BASIC: 1, Transport.FORM: 2}

DEFAULT_MAX_ENTRIES = 10_000
# What an unknown credential's secret is compared with (no secret hashes to it).
_NO_SUCH_HASH = secret_format.hash_secret("unknown credential")
# A remembered secret: the record it verified against, that record's state then, the principal, and
# whether it matched the current secret (False: the previous one, during its overlap).
_Entry = tuple[Credential, tuple[object, ...], Principal, bool]


def _in_overlap(record: Credential, now: datetime) -> bool:
    """Whether the previous secret of a rotation is still accepted."""
    return record.previous_secret_valid_until is not None and now < record.previous_secret_valid_until


def _secret_matches(token: str, record: Credential, now: datetime) -> bool | None:
    """True: the current secret; False: the previous one, during its overlap; None: neither."""
    current = secret_format.secret_matches(token, record.secret_hash)
    previous = _in_overlap(record, now) and secret_format.secret_matches(token, record.previous_secret_hash)
    if current:
        return True
    return False if previous else None


_STATE_FIELDS = (
    "secret_hash",
    "previous_secret_hash",
    "previous_secret_valid_until",
    "deactivated_at",
    "expires_at",
)
_loaded_state = operator.itemgetter(*_STATE_FIELDS)


def _state(record: Credential) -> tuple[object, ...]:
    """What a rotation, deactivation or expiry changes on a credential. Read from the row's loaded
    values, as SQLAlchemy's attributes return them when loaded (a fifth of the cost of five attribute
    reads, on every call); through the attributes when one is not loaded."""
    try:
        return _loaded_state(record.__dict__)  # type: ignore[no-any-return]
    except KeyError:
        return tuple(getattr(record, name) for name in _STATE_FIELDS)


class VerifiedSecrets:
    """Secrets that verified, each kept with the record object it verified against and that record's state.

    The credential cache hands out the same record object until the credential changes (admin change on
    this replica, or its entry reloaded after the TTL), and the store never changes a record it handed out.
    So while a lookup returns the object kept here, the format, hash, id, kind and transport checks would
    answer as they did and the principal built from it is the same: they are skipped. The credential's
    state (secrets, deactivation, expiry) is still compared, and the time checks (expiry, a previous
    secret's overlap) made, on every call. Any other object, or another state: a full verification.
    Only successes are kept, bounded, oldest dropped first.
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._max_entries = max_entries
        self._entries: dict[PresentedCredential, _Entry] = {}

    async def get(
        self, presented: PresentedCredential, lookup: CredentialLookup, now: datetime
    ) -> Principal | Refusal | None:
        """The principal (or the state refusal) for a secret verified before, or None: verify it afresh."""
        entry = self._entries.get(presented)
        if entry is None:
            return None
        seen, state, principal, current = entry
        record = await lookup(principal.credential_id)
        if record is not seen or _state(record) != state or not (current or _in_overlap(record, now)):
            self._forget(presented, entry)
            return None
        return state_refusal(record, now) or principal

    def _forget(self, presented: PresentedCredential, entry: _Entry) -> None:
        """Drop `entry` if it is still the one kept: concurrent calls for one secret all reach here after
        the lookup's await, and one of them may have dropped it or remembered a fresh one meanwhile."""
        if self._entries.get(presented) is entry:
            del self._entries[presented]

    def remember(
        self, presented: PresentedCredential, record: Credential, principal: Principal, current: bool
    ) -> None:
        entries = self._entries
        entries.pop(presented, None)
        entries[presented] = (record, _state(record), principal, current)
        while len(entries) > self._max_entries:
            del entries[next(iter(entries))]

    def invalidate(self, credential_id: str) -> None:
        """Drop the secrets of a credential that changed. They would fail the record check on their next
        use anyway (a changed credential is a new record object); dropping them frees the memory now."""
        entries = self._entries.items()
        for presented in [key for key, entry in entries if entry[2].credential_id == credential_id]:
            del self._entries[presented]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def form_decoded(value: str) -> str:
    """OAuth clients over Basic form-encode id and secret before base64 (RFC 6749 §2.3.1)."""
    return unquote_plus(value)


def _secret_and_id(presented: PresentedCredential) -> tuple[str, str]:
    token, client_id = presented.token, presented.client_id
    if presented.transport is Transport.BASIC and secret_format.parse(token) is None:
        token, client_id = form_decoded(token), form_decoded(client_id)
    return token, client_id


def credential_id_of(presented: PresentedCredential) -> str | None:
    """The credential id an opaque secret names, read without the store (None: not one of ours)."""
    parsed = secret_format.parse(_secret_and_id(presented)[0])
    return None if parsed is None else parsed.credential_id


def _id_matches(
    kind: CredentialKind, record: Credential, presented: PresentedCredential, client_id: str
) -> bool:
    """Where the transport carries an id beside the secret, it must be the right one."""
    if presented.transport is Transport.BASIC:
        expected = record.organization_id if kind is CredentialKind.API_KEY else record.id
        return client_id == expected
    if presented.transport in _PAIRED or (presented.transport is Transport.BARE and client_id):
        return client_id == record.id
    return True


def principal_for(
    record: Credential,
    presented: PresentedCredential,
    application_actions: frozenset[str],
    current: bool = True,
) -> Principal:
    """`current`: whether the current secret was presented (False: the previous one, in its overlap)."""
    kind = CredentialKind(record.kind)
    permissions = (
        application_actions if kind is CredentialKind.APPLICATION_SECRET else frozenset(record.permissions)
    )
    return Principal(
        id=record.id,
        kind=kind,
        transport=presented.transport,
        credential_id=record.id,
        organization_id=record.organization_id or "",
        application_id=record.application_id or "",
        permissions=permissions,
        expires_at=record.expires_at,
        discouraged_transport=presented.transport is Transport.QUERY,
        event_types_allowed=tuple(record.event_types_allowed),
        event_types_denied=tuple(record.event_types_denied),
        secret_version=proved_secret_version(record, previous=not current),
    )


class OpaqueSecretVerifier:
    """C2, C3, C5, C6 secrets and C9 client secrets: anything presented that is not a JWT."""

    def __init__(
        self,
        lookup: CredentialLookup,
        application_actions: frozenset[str],
        verified: VerifiedSecrets | None = None,
    ) -> None:
        self._lookup = lookup
        self._application_actions = application_actions  # what a C2 application secret may do
        self._verified = verified

    async def verify(self, presented: PresentedCredential, now: datetime) -> Principal | Refusal:
        if self._verified is not None:
            known = await self._verified.get(presented, self._lookup, now)
            if known is not None:
                return known
        token, client_id = _secret_and_id(presented)
        parsed = secret_format.parse(token)
        if parsed is None:
            return refuse(reasons.CREDENTIAL_MALFORMED, "the credential is not in any accepted format")
        accepted = kinds.TRANSPORTS[parsed.kind]
        if not accepted:
            message = "this kind of credential is not accepted for authentication"
            return refuse(reasons.CREDENTIAL_KIND_UNSUPPORTED, message)
        refusal = transport_refusal(presented.transport, accepted)
        if refusal is not None:
            return refusal
        record = await self._lookup(parsed.credential_id)
        matched = _matched(token, record, parsed.kind, now)
        if record is None or matched is None or not _id_matches(parsed.kind, record, presented, client_id):
            return refuse(reasons.CREDENTIAL_UNKNOWN, "the credential is not recognised")
        refusal = state_refusal(record, now) or _use_refusal(record, parsed.kind, presented.transport)
        if refusal is not None:
            return refusal
        principal = principal_for(record, presented, self._application_actions, matched)
        if self._verified is not None:
            self._verified.remember(presented, record, principal, matched)
        return principal


def _matched(token: str, record: Credential | None, kind: CredentialKind, now: datetime) -> bool | None:
    """Which of the record's secrets `token` is (see `_secret_matches`); None for an unknown record."""
    if record is None or record.kind != kind:
        # The same hashing as for a known credential: the time taken does not tell which ids exist.
        secret_format.secret_matches(token, _NO_SUCH_HASH)
        return None
    return _secret_matches(token, record, now)


def _use_refusal(record: Credential, kind: CredentialKind, transport: Transport) -> Refusal | None:
    """How this credential may be used, once its holder is known: an OAuth client only with its one
    registered method (C9), an API key over Basic only where enabled (C5)."""
    if kind is CredentialKind.OAUTH_CLIENT and record.client_auth_method != _REGISTERED_METHOD.get(transport):
        return refuse(reasons.CLIENT_AUTH_METHOD_NOT_ALLOWED, "the client is registered for another method")
    if transport is Transport.BASIC and kind is CredentialKind.API_KEY and not record.basic_auth_enabled:
        return refuse(reasons.BASIC_NOT_ENABLED, "HTTP Basic is not enabled for this API key")
    return None
