"""One row of facts per credential kind (C1-C10, and the two kinds that are only stored).

Everything that differs between kinds without being verification logic is here, once: the prefix of the
secrets Watchword mints for it (`secret_format`), whether CreateCredential makes it and what it then carries
(`identify/minting`), whether its secret is sealed, the transports it is accepted over (T1-T7, anything
else is `transport_not_allowed`: checked by `OpaqueSecretVerifier` and the JWT router) and its name on the
command line (`cli`).

A new kind: its value in `CredentialKind` (and the proto enum it mirrors), one row here, and its tests.
An opaque secret needs nothing else (`OpaqueSecretVerifier` reads every row with a prefix); a JWT needs
one verifier file in `identify/` (`kind`, `recognises`, `verify`) and its place in the routing order of
`identify/verifiers.jwt_verifiers`; a principal that acts on resources, the scope rule that decides it
(`decide/rules.RULES`; without one it is denied, S8).
"""

from __future__ import annotations

from dataclasses import dataclass

from watchword.domain import CredentialKind, Transport

# A token that stands alone (T1, T6, and T7 entries); most kinds also come in a cookie (T3).
_DIRECT = frozenset({Transport.BEARER, Transport.BARE, Transport.BATCH_ENTRY})
_BEARER_TOKEN = _DIRECT | {Transport.COOKIE}


@dataclass(frozen=True, slots=True)
class KindFacts:
    kind: CredentialKind
    catalogue_id: str  # "C5"; "" for the stored-only kinds
    transports: frozenset[Transport] = frozenset()  # empty: never accepted for authentication
    prefix: str = ""  # of the secrets Watchword mints for it (`wwak_...`); "" when it mints none
    cli_name: str = ""  # `watchword admin credential create --kind NAME`
    mintable: bool = False  # made by CreateCredential (I4)
    # Its reach is its own list of actions (for a tenant signing secret: the ceiling of its C4 tokens, S4).
    carries_permissions: bool = False
    carries_event_filters: bool = False  # event allow/deny patterns (S3)
    sealed: bool = False  # its secret is also an HMAC key Watchword verifies with: sealed, not only hashed
    # No secret at all: its holder proves itself otherwise (C10: a certificate), and the credential is
    # found by the service identity it names (nothing minted, nothing to rotate).
    secretless: bool = False


KINDS: tuple[KindFacts, ...] = (
    KindFacts(CredentialKind.EXTERNAL_JWT, "C1", _BEARER_TOKEN),  # never in a query, Basic or a header pair
    KindFacts(
        CredentialKind.APPLICATION_SECRET,
        "C2",
        _DIRECT,
        prefix="wwas",
        cli_name="application-secret",
        mintable=True,
    ),
    KindFacts(
        CredentialKind.STATIC_TOKEN,
        "C3",
        _BEARER_TOKEN,
        prefix="wwst",
        cli_name="static-token",
        mintable=True,
        carries_permissions=True,
        carries_event_filters=True,
    ),
    KindFacts(CredentialKind.TENANT_JWT, "C4", _BEARER_TOKEN),
    KindFacts(
        CredentialKind.API_KEY,
        "C5",
        _DIRECT | {Transport.BASIC},
        prefix="wwak",
        cli_name="api-key",
        mintable=True,
        carries_permissions=True,
        carries_event_filters=True,
    ),
    KindFacts(
        CredentialKind.CONNECTOR,
        "C6",
        frozenset({Transport.HEADER_PAIR, Transport.QUERY, Transport.BARE}),
        prefix="wwcs",
        cli_name="connector",
        mintable=True,
        carries_permissions=True,
        sealed=True,  # it signs C7 subject tokens
    ),
    KindFacts(
        CredentialKind.SUBJECT_JWT,
        "C7",
        frozenset({Transport.HEADER_PAIR, Transport.QUERY, Transport.BARE, Transport.BATCH_ENTRY}),
    ),
    KindFacts(CredentialKind.WATCHWORD_TOKEN, "C8", _BEARER_TOKEN),
    KindFacts(
        CredentialKind.OAUTH_CLIENT,
        "C9",
        frozenset({Transport.BASIC, Transport.FORM}),
        prefix="wwoc",
        cli_name="oauth-client",
        mintable=True,
        carries_permissions=True,
    ),
    KindFacts(
        CredentialKind.TENANT_SIGNING_SECRET,
        "",
        prefix="wwts",
        cli_name="tenant-signing-secret",
        mintable=True,
        carries_permissions=True,
        sealed=True,  # tenants sign their C4 tokens with it
    ),
    KindFacts(CredentialKind.ADMIN_TOKEN, "", prefix="wwad", cli_name="admin-token", mintable=True),
    KindFacts(
        CredentialKind.CLIENT_CERTIFICATE,
        "C10",
        frozenset({Transport.CLIENT_CERTIFICATE}),
        cli_name="client-certificate",
        mintable=True,
        carries_permissions=True,
        carries_event_filters=True,
        secretless=True,
    ),
)

FACTS: dict[CredentialKind, KindFacts] = {row.kind: row for row in KINDS}


def facts(kind: CredentialKind) -> KindFacts:
    return FACTS[kind]


PREFIXES: dict[CredentialKind, str] = {row.kind: row.prefix for row in KINDS if row.prefix}
CLI_NAMES: dict[str, CredentialKind] = {row.cli_name: row.kind for row in KINDS if row.cli_name}
TRANSPORTS: dict[CredentialKind, frozenset[Transport]] = {row.kind: row.transports for row in KINDS}
MINTABLE = frozenset(row.kind for row in KINDS if row.mintable)
CARRY_PERMISSIONS = frozenset(row.kind for row in KINDS if row.carries_permissions)
CARRY_EVENT_FILTERS = frozenset(row.kind for row in KINDS if row.carries_event_filters)
SEALED = frozenset(row.kind for row in KINDS if row.sealed)
SECRETLESS = frozenset(row.kind for row in KINDS if row.secretless)
