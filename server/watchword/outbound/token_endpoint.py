"""O3/O4: one outbound credential's token server and how Watchword authenticates to it.

SignOutbound builds a `TokenEndpoint` from the stored row (`from_stored`); construction runs the one
validator of `credential`, so an endpoint that exists can be fetched with. No gRPC and no store calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from watchword.domain import ClientAuthMethod
from watchword.outbound.credential import (
    CredentialError,
    check_private_key,
    check_token_client,
    stored_member,
)
from watchword.outbound.secrets import OutboundSecrets
from watchword.store.models import OutboundCredential

__all__ = ["ClientAuthMethod", "TokenEndpoint", "credential_version"]


def credential_version(record: OutboundCredential) -> str:
    """Changes when the credential's secrets rotate: a token or key of another version is never reused."""
    return (record.rotated_at or record.created_at).isoformat()


@dataclass(frozen=True, slots=True)
class TokenEndpoint:
    """Validated at construction: a ValueError (CredentialError) names the field, never its value."""

    credential_id: str  # cache key (the outbound credential's id)
    token_url: str
    client_id: str
    auth_method: ClientAuthMethod
    client_secret: str = field(default="", repr=False)  # basic, post and client_secret_jwt
    private_key: object | None = field(default=None, repr=False)  # private_key_jwt: a cryptography key
    assertion_algorithm: str = ""  # "RS256"/"ES256" for private_key_jwt; "" or "HS256" for client_secret_jwt
    assertion_kid: str = ""  # optional `kid` header for private_key_jwt
    assertion_audience: str = ""  # `aud` of the assertion; empty means the webhook URL (Coviu's default)
    scope: str = ""
    extra_form_fields: tuple[tuple[str, str], ...] = ()  # e.g. (("audience", "https://api.example"),)
    version: str = ""  # changes when the credential's secrets rotate: never reuses a token of another

    def __post_init__(self) -> None:
        if not self.credential_id:
            raise CredentialError("credential_id", "credential_id is required")
        check_token_client(
            token_url=self.token_url,
            client_id=self.client_id,
            auth_method=self.auth_method,
            assertion_algorithm=self.assertion_algorithm,
            extra_form_fields=self.extra_form_fields,
            has_client_secret=bool(self.client_secret),
        )
        if self.auth_method is ClientAuthMethod.PRIVATE_KEY_JWT:
            check_private_key(self.private_key, self.assertion_algorithm)
        elif self.private_key is not None:
            raise CredentialError("private_key", "private_key is only used by private_key_jwt")

    @classmethod
    def from_stored(
        cls, record: OutboundCredential, current: OutboundSecrets, private_key: object | None
    ) -> TokenEndpoint:
        """A stored O3/O4 credential with its current secrets (and its O4 key, loaded by the caller);
        raises CredentialError when the row is unusable (an unknown method included)."""
        method = stored_member(ClientAuthMethod, record.client_auth_method)
        return cls(
            credential_id=record.id,
            token_url=record.token_url,
            client_id=record.client_id,
            auth_method=method,  # type: ignore[arg-type]  # None is refused by the validator
            client_secret=current.client_secret,
            private_key=private_key,
            assertion_algorithm=record.assertion_algorithm
            or ("HS256" if method is ClientAuthMethod.CLIENT_SECRET_JWT else ""),
            assertion_kid=record.id if private_key is not None else "",
            assertion_audience=record.assertion_audience,
            scope=record.scope,
            extra_form_fields=tuple((name, value) for name, value in record.extra_form_fields),
            version=credential_version(record),
        )

    def audience_for(self, webhook_url: str) -> str:
        """The assertion's `aud`: the configured audience, else the webhook URL; "" without assertion."""
        if not self.auth_method.uses_assertion:
            return ""
        return self.assertion_audience or webhook_url

    def settings(self) -> tuple[object, ...]:
        """The non-secret settings, for the cache key: changing the URL or scope without a rotation must
        not keep serving a token obtained with the old ones."""
        return (
            self.token_url,
            self.client_id,
            self.auth_method,
            self.assertion_algorithm,
            self.assertion_kid,
            self.scope,
            self.extra_form_fields,
        )
