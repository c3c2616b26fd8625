"""C1: how one external OIDC issuer (e.g. a Keycloak realm) is configured, one `[[issuers]]` TOML table.

```toml
[[issuers]]
issuer = "https://sso.example.com/realms/hook0"
audiences = ["watchword"]
discovery_url = "https://sso.example.com/realms/hook0/.well-known/openid-configuration"
organization_claim = "organization"
roles_claim = "realm_access.roles"
```

Everything is checked at start: a setting that would weaken verification (an HMAC algorithm for an issuer
that publishes public keys, plain http, no audience) stops the service with a message saying what to fix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

# JWS algorithms an external issuer may sign with: asymmetric only (RFC 8725 §3.1, §3.2).
SUPPORTED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DEFAULT_ALGORITHMS = ("RS256", "ES256", "PS256", "EdDSA")
MIN_CACHE_SECONDS = 60
EVERY_ORGANIZATION = "*"  # `organizations = ["*"]`: an issuer trusted in every organization (S7)
MAX_CACHE_SECONDS = 86400

# A dotted claim path: non-empty segments without dots or whitespace, e.g. `realm_access.roles`.
_CLAIM_PATH = re.compile(r"[^.\s]+(\.[^.\s]+)*")
_ClaimPath = Annotated[str, Field(max_length=200)]
_ClaimName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S+$")]


def check_url(name: str, url: str, allow_insecure_http: bool) -> None:
    """Raise ValueError unless `url` is an absolute https URL (http only when explicitly allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{name} must be an absolute https:// URL, got {url!r}")
    if parts.scheme == "http" and not allow_insecure_http:
        raise ValueError(
            f"{name} uses plain http, so anyone on the path could swap the issuer's keys: use https, "
            "or set allow_insecure_http = true (tests only)"
        )
    if parts.username or parts.password:
        # Credentials in a URL end up in logs; JWKS and discovery documents are public anyway.
        raise ValueError(f"{name} must not carry a user name or password")
    if parts.fragment:
        raise ValueError(f"{name} must not have a #fragment")


class IssuerSettings(BaseModel):
    """One trusted external issuer: whose tokens (`issuer`, `audiences`), which keys (exactly one of
    `discovery_url`, `jwks_uri`, `jwks_file`) and where the user and organization roles are read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(min_length=1, max_length=2048, description="The exact `iss` of the tokens.")
    audiences: tuple[Annotated[str, Field(min_length=1, max_length=2048)], ...] = Field(
        min_length=1, description="The token's `aud` must contain at least one of these."
    )
    discovery_url: str | None = Field(
        default=None, description="OIDC discovery document (`.../.well-known/openid-configuration`)."
    )
    jwks_uri: str | None = Field(default=None, description="The issuer's JWKS URL, without discovery.")
    jwks_file: Path | None = Field(default=None, description="A static JWKS file, read once at start.")
    algorithms: tuple[str, ...] = Field(
        default=DEFAULT_ALGORITHMS, min_length=1, description="JWS algorithms accepted from this issuer."
    )
    leeway_seconds: float = Field(default=30, ge=0, le=120, description="Clock skew allowed on exp/nbf/iat.")
    user_id_claim: _ClaimPath = Field(default="sub", description="Dotted path of the user id claim.")
    organizations_claim: _ClaimPath | None = Field(
        default=None,
        description='Dotted path of {org_id: [roles]} or of ["org_id:role", ...] (many organizations).',
    )
    organization_claim: _ClaimPath | None = Field(
        default=None, description="Dotted path of the one organization id (with `roles_claim`)."
    )
    roles_claim: _ClaimPath | None = Field(
        default=None, description="Dotted path of the roles in that organization, e.g. realm_access.roles."
    )
    roles_source: Literal["claims", "memberships", "both"] = Field(
        default="claims",
        description="S1: where a user's organization roles come from: the token's claims, the memberships "
        "stored through the admin API (keyed by this issuer and the user id), or both (merged).",
    )
    organizations: tuple[Annotated[str, Field(min_length=1, max_length=255)], ...] | None = Field(
        default=None,
        min_length=1,
        description="S7: the organization ids this issuer's users may hold roles in (from claims or "
        'stored memberships); ["*"] trusts it in every organization. Unset: every organization with one '
        "issuer; with several, required for an issuer that reads roles from claims.",
    )
    refresh_min_interval_seconds: float = Field(
        default=30, ge=1, le=3600, description="At most one unknown-kid JWKS refresh per this interval."
    )
    jwks_cache_seconds: int = Field(
        default=300,
        ge=MIN_CACHE_SECONDS,
        le=MAX_CACHE_SECONDS,
        description="How long fetched keys are fresh, unless the response's max-age says otherwise "
        f"(bounded to [{MIN_CACHE_SECONDS}, {MAX_CACHE_SECONDS}]).",
    )
    allow_insecure_http: bool = Field(default=False, description="Accept http:// URLs (tests only).")
    required_claims: tuple[_ClaimName, ...] = Field(
        default=("iat",),
        max_length=32,
        description="Claims a token must carry besides iss, aud and exp (always required); every "
        "mainstream IdP sends iat.",
    )
    allowed_clients: tuple[_ClaimName, ...] = Field(
        default=(),
        max_length=1000,
        description="When set, the token's `azp` (the client it was issued to) must be one of these.",
    )
    organization_claim_format: Literal["id", "keycloak_alias", "keycloak_id"] = Field(
        default="id",
        description="What organization_claim holds: the organization id (a string), or a Keycloak 26 "
        "`organization` claim (a list of aliases, or a map alias -> attributes) naming one organization by "
        "its alias or by its `id` attribute.",
    )

    @field_validator("issuer")
    @classmethod
    def _issuer_has_no_spaces(cls, value: str) -> str:
        if value != value.strip() or any(ch.isspace() for ch in value):
            raise ValueError("issuer must be the exact `iss` string, without whitespace")
        return value

    @field_validator("algorithms")
    @classmethod
    def _algorithms_are_asymmetric(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name.lower() == "none":
                raise ValueError("`none` is never accepted: unsigned tokens prove nothing")
            if name.upper().startswith("HS"):
                raise ValueError(
                    f"{name} is a shared-secret algorithm; an external issuer publishes public keys, and "
                    "accepting HMAC would let a public key be used as a secret (algorithm confusion)"
                )
            if name not in SUPPORTED_ALGORITHMS:
                raise ValueError(
                    f"unknown algorithm {name!r}; supported: {', '.join(sorted(SUPPORTED_ALGORITHMS))}"
                )
        return tuple(dict.fromkeys(value))  # drop repeats, keep order

    @field_validator("user_id_claim", "organizations_claim", "organization_claim", "roles_claim")
    @classmethod
    def _is_claim_path(cls, value: str | None) -> str | None:
        if value is not None and _CLAIM_PATH.fullmatch(value) is None:
            raise ValueError(
                f"{value!r} is not a claim path: names separated by single dots, e.g. realm_access.roles"
            )
        return value

    @field_validator("organizations")
    @classmethod
    def _every_or_named(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and EVERY_ORGANIZATION in value and len(value) > 1:
            raise ValueError('"*" (every organization) stands alone in organizations')
        return value

    @property
    def reads_role_claims(self) -> bool:
        """Whether this issuer's tokens can assert roles (S1)."""
        configured = self.organizations_claim is not None or self.organization_claim is not None
        return configured and self.roles_source != "memberships"

    def binds(self, organization_id: str) -> bool:
        """S7: whether this issuer's users may hold roles in the organization."""
        bound = self.organizations
        return bound is None or bound == (EVERY_ORGANIZATION,) or organization_id in bound

    @model_validator(mode="after")
    def _is_consistent(self) -> Self:
        self._check_key_source()
        self._check_membership_claims()
        return self

    def _check_key_source(self) -> None:
        given = [
            name
            for name in ("discovery_url", "jwks_uri", "jwks_file")
            if getattr(self, name) not in (None, "")
        ]
        if len(given) != 1:
            raise ValueError(
                f"issuer {self.issuer!r}: set exactly one of discovery_url, jwks_uri or jwks_file "
                f"(got {', '.join(given) or 'none'})"
            )
        for name in ("discovery_url", "jwks_uri"):
            url = getattr(self, name)
            if url:
                check_url(name, url, self.allow_insecure_http)

    def _check_membership_claims(self) -> None:
        if (self.roles_claim is None) != (self.organization_claim is None):
            raise ValueError(
                "roles_claim and organization_claim go together: the roles are those in the one "
                "organization named by organization_claim"
            )
        if self.organization_claim_format != "id" and self.organization_claim is None:
            raise ValueError("organization_claim_format applies to organization_claim: set it too")
        if self.organizations_claim is not None and self.roles_claim is not None:
            raise ValueError(
                "set organizations_claim (many organizations) or organization_claim + roles_claim "
                "(one organization), not both"
            )


def _unique_issuers(issuers: tuple[IssuerSettings, ...]) -> tuple[IssuerSettings, ...]:
    seen: set[str] = set()
    for entry in issuers:
        if entry.issuer in seen:
            # Two configurations for one `iss` would make the choice of keys and claims ambiguous.
            raise ValueError(f"issuer {entry.issuer!r} is configured twice; merge the two [[issuers]] tables")
        seen.add(entry.issuer)
    return issuers


def _bound_when_several(issuers: tuple[IssuerSettings, ...]) -> tuple[IssuerSettings, ...]:
    """S7: with several issuers, one that asserts roles in its tokens must say where it may. Unbound, any
    issuer's admin could grant its users roles in every organization, including other issuers' ones."""
    if len(issuers) < 2:
        return issuers
    for entry in issuers:
        if entry.reads_role_claims and entry.organizations is None:
            raise ValueError(
                f"issuer {entry.issuer!r} reads roles from its tokens' claims and several issuers are "
                'configured: bind it with organizations = ["<organization id>", ...] (or ["*"] to trust '
                "it in every organization)"
            )
    return issuers


# The type of the `issuers` setting: a list of tables, each issuer at most once, bound when several.
IssuerList = Annotated[
    tuple[IssuerSettings, ...], AfterValidator(_unique_issuers), AfterValidator(_bound_when_several)
]
_ISSUER_LIST: TypeAdapter[tuple[IssuerSettings, ...]] = TypeAdapter(IssuerList)


def load_issuers(raw: object) -> list[IssuerSettings]:
    """Validate the `[[issuers]]` tables of a parsed TOML file (None: no issuer). Raises pydantic's
    ValidationError (a ValueError) naming each problem."""
    if raw is None:
        return []
    return list(_ISSUER_LIST.validate_python(raw))


def by_issuer(issuers: Sequence[IssuerSettings]) -> dict[str, IssuerSettings]:
    return {entry.issuer: entry for entry in _unique_issuers(tuple(issuers))}
