"""Every machine-readable reason code Watchword answers with, listed once.

The README's reason-code table is generated from `REASONS` (a test checks that the two agree), so a
code added here without documentation fails the suite.
"""

from __future__ import annotations

# Authentication refusals.
CREDENTIAL_MISSING = "credential_missing"
CREDENTIAL_MALFORMED = "credential_malformed"
CREDENTIAL_AMBIGUOUS = "credential_ambiguous"
CREDENTIAL_UNKNOWN = "credential_unknown"
CREDENTIAL_DEACTIVATED = "credential_deactivated"
CREDENTIAL_EXPIRED = "credential_expired"
CREDENTIAL_ROTATED = "credential_rotated"
CREDENTIAL_KIND_UNSUPPORTED = "credential_kind_unsupported"
TRANSPORT_NOT_ALLOWED = "transport_not_allowed"
BASIC_NOT_ENABLED = "basic_not_enabled"
TOKEN_MALFORMED = "token_malformed"
TOKEN_ALGORITHM_NOT_ALLOWED = "token_algorithm_not_allowed"
TOKEN_HEADER_UNSUPPORTED = "token_header_unsupported"
TOKEN_KEY_UNKNOWN = "token_key_unknown"
TOKEN_SIGNATURE_INVALID = "token_signature_invalid"
TOKEN_EXPIRED = "token_expired"
TOKEN_NOT_YET_VALID = "token_not_yet_valid"
TOKEN_ISSUER_UNKNOWN = "token_issuer_unknown"
TOKEN_AUDIENCE_MISMATCH = "token_audience_mismatch"
TOKEN_CLAIMS_INVALID = "token_claims_invalid"
TOKEN_LIFETIME_TOO_LONG = "token_lifetime_too_long"
TOKEN_TYPE_NOT_ACCEPTED = "token_type_not_accepted"
TOKEN_CLIENT_NOT_ALLOWED = "token_client_not_allowed"
TOKEN_REPLAYED = "token_replayed"
TOKEN_REVOKED = "token_revoked"
CLIENT_AUTH_METHOD_NOT_ALLOWED = "client_auth_method_not_allowed"
# C10: client certificates and service identities.
CLIENT_CERTIFICATE_MISSING = "client_certificate_missing"
CLIENT_CERTIFICATE_UNTRUSTED = "client_certificate_untrusted"
CLIENT_CERTIFICATE_EXPIRED = "client_certificate_expired"
CLIENT_CERTIFICATE_NOT_YET_VALID = "client_certificate_not_yet_valid"
CLIENT_CERTIFICATE_USAGE_INVALID = "client_certificate_usage_invalid"
CLIENT_CERTIFICATE_SAN_MISSING = "client_certificate_san_missing"
CLIENT_CERTIFICATE_SAN_INVALID = "client_certificate_san_invalid"
SERVICE_IDENTITY_UNKNOWN = "service_identity_unknown"
CLIENT_CERTIFICATE_MISMATCH = "client_certificate_mismatch"
XFCC_UNTRUSTED = "xfcc_untrusted"
XFCC_MALFORMED = "xfcc_malformed"

# Authorization decisions.
ALLOWED = "allowed"
NOT_AUTHENTICATED = "not_authenticated"
ACTION_UNKNOWN = "action_unknown"
ACTION_NOT_GRANTED = "action_not_granted"
ACTION_LEVEL_NOT_ALLOWED = "action_level_not_allowed"
RESOURCE_INCOMPLETE = "resource_incomplete"
RESOURCE_NOT_IN_SCOPE = "resource_not_in_scope"
EVENT_TYPE_DENIED = "event_type_denied"
EVENT_TYPE_NOT_ALLOWED = "event_type_not_allowed"
NO_RULE_ALLOWS = "no_rule_allows"
ENTRY_INVALID = "entry_invalid"
INTERNAL_ERROR = "internal_error"
NOT_A_MEMBER = "not_a_member"
ROLE_NOT_GRANTED = "role_not_granted"
ISSUER_NOT_BOUND = "issuer_not_bound"
OBJECT_NOT_IN_PATTERNS = "object_not_in_patterns"
EVENT_TYPE_INVALID = "event_type_invalid"
OBJECT_ID_INVALID = "object_id_invalid"
SUBJECT_MISMATCH = "subject_mismatch"
# HTTP answers in front of an API (E1 Envoy ext_authz).
ROUTE_NOT_CONFIGURED = "route_not_configured"
AUTHORIZATION_UNAVAILABLE = "authorization_unavailable"
# E1: an Envoy route's `watchword.*` context_extensions (gRPC mode).
ROUTE_EXTENSIONS_INVALID = "route_extensions_invalid"
ROUTE_CONFLICT = "route_conflict"
# E4: the HTTP ext_authz front door.
QUERY_CREDENTIAL_NOT_REMOVABLE = "query_credential_not_removable"
PATH_PREFIX_MISSING = "path_prefix_missing"
# E4: the HTTP listener's own refusals, before any check (the connection is closed after them).
MALFORMED_HTTP_REQUEST = "malformed_http_request"
REQUEST_HEADER_TOO_LARGE = "request_header_too_large"
REQUEST_BODY_TOO_LARGE = "request_body_too_large"
# Key hygiene: a leaked-key report refused whole (`hygiene.secret_scanning`); nothing is changed.
LEAK_REPORT_UNSIGNED = "leak_report_unsigned"
LEAK_REPORT_KEY_UNKNOWN = "leak_report_key_unknown"
LEAK_REPORT_SIGNATURE_INVALID = "leak_report_signature_invalid"
LEAK_REPORT_MALFORMED = "leak_report_malformed"
LEAK_REPORT_TOO_LARGE = "leak_report_too_large"

REASONS: dict[str, str] = {
    CREDENTIAL_MISSING: "No credential was found where credentials are read.",
    CREDENTIAL_MALFORMED: "The credential is not in any accepted format (bad prefix, length or checksum); "
    "refused without touching the store.",
    CREDENTIAL_AMBIGUOUS: "Two different credentials arrived in one request; Watchword never picks one.",
    CREDENTIAL_UNKNOWN: "Well-formed, but no such credential exists or the secret does not match "
    "(the two are deliberately indistinguishable).",
    CREDENTIAL_DEACTIVATED: "The credential was deactivated (S6).",
    CREDENTIAL_EXPIRED: "The credential is past its expiry time (S6).",
    CREDENTIAL_ROTATED: "A token minted from a secret that no longer verifies: its credential was rotated "
    "and the overlap, if any, has ended (I6, S6).",
    CREDENTIAL_KIND_UNSUPPORTED: "The credential is of a kind this deployment does not accept yet.",
    TRANSPORT_NOT_ALLOWED: "The credential arrived over a transport not allowed for its kind.",
    BASIC_NOT_ENABLED: "An API key sent over HTTP Basic, but Basic was not enabled on that key (C5).",
    TOKEN_MALFORMED: "Not a compact JWS: wrong number of parts, bad base64url, a header or payload that is "
    "not a JSON object, or over the size bounds.",
    TOKEN_ALGORITHM_NOT_ALLOWED: "The JWS `alg` is not allowed for this issuer or key (never `none`; no "
    "HMAC with a public key).",
    TOKEN_HEADER_UNSUPPORTED: "The JWS header carries a `crit` extension Watchword does not understand, or a "
    "`cty` (nested or typed content: a JWT's payload is its claims).",
    TOKEN_KEY_UNKNOWN: "No key with the token's `kid` is known for its issuer, even after a refresh (C1, C8, "
    "C9).",
    TOKEN_SIGNATURE_INVALID: "The signature does not verify with the issuer's key; for tenant (C4) and "
    "subject (C7) tokens also a `kid` or connector id that names no signing secret or connector "
    "(deliberately indistinguishable; the audit record's `detail` tells them apart).",
    TOKEN_EXPIRED: "The token's `exp` has passed (beyond the allowed leeway) (S6).",
    TOKEN_NOT_YET_VALID: "The token's `nbf` (or `iat`) is in the future (beyond the allowed leeway) (S6).",
    TOKEN_ISSUER_UNKNOWN: "The token's `iss` is not a configured issuer.",
    TOKEN_AUDIENCE_MISMATCH: "The token's `aud` does not name this service.",
    TOKEN_CLAIMS_INVALID: "A required claim is missing or has the wrong type (a time claim `exp`, `nbf` or "
    "`iat` that is not a number of seconds from 1970 to the year 3000).",
    TOKEN_LIFETIME_TOO_LONG: "A tenant (C4) or subject (C7) token claims a longer lifetime (`exp` - `iat`, "
    "or `exp` - now) than `max_tenant_token_lifetime_seconds`.",
    TOKEN_TYPE_NOT_ACCEPTED: "C1: not an access token: an ID token (Keycloak's `typ` claim `ID`, or any "
    "`typ` claim but `Bearer`) or a header `typ` naming another kind of token than `JWT` or `at+jwt`.",
    TOKEN_CLIENT_NOT_ALLOWED: "C1: the token's `azp` (the client it was issued to) is not one of its "
    "issuer's `allowed_clients`.",
    TOKEN_REPLAYED: "A client assertion whose `jti` was already used (C9); each is accepted once, across "
    "replicas sharing a database.",
    TOKEN_REVOKED: "The token was revoked by its `jti` (I6, S6).",
    CLIENT_AUTH_METHOD_NOT_ALLOWED: "An OAuth client authenticated with another method than the one it was "
    "registered for, or with more than one (RFC 6749 §2.3).",
    CLIENT_CERTIFICATE_MISSING: "C10: a client certificate was asked for (a `peer_certificate` source) but "
    "the connection has none, or a proxy named the client without its certificate while bare identities "
    "are not trusted (`client_certificate_trust_bare_identity`), or a client at the OAuth HTTP endpoints "
    "sent a `client_id` and no secret, assertion or certificate (`tls_client_auth`).",
    CLIENT_CERTIFICATE_UNTRUSTED: "C10: the client certificate does not chain to a CA of "
    "`tls_client_ca_file` (or its chain breaks the RFC 5280 profile); the audit record's `detail` says "
    "where the path failed.",
    CLIENT_CERTIFICATE_EXPIRED: "C10: the client certificate's `notAfter` has passed (S6).",
    CLIENT_CERTIFICATE_NOT_YET_VALID: "C10: the client certificate's `notBefore` is in the future (S6).",
    CLIENT_CERTIFICATE_USAGE_INVALID: "C10: the client certificate has an extended key usage without "
    "`clientAuth` (RFC 5280 §4.2.1.12): it was issued for something else, e.g. a server.",
    CLIENT_CERTIFICATE_SAN_MISSING: "C10: the client certificate has no SPIFFE id (URI SAN), and subject "
    "names are not accepted (`client_certificate_subject_names`) or it has none.",
    CLIENT_CERTIFICATE_SAN_INVALID: "C10: the client certificate's SPIFFE id breaks the SPIFFE-ID spec "
    "(more than one URI SAN, an uppercase trust domain, a port, userinfo, query or fragment, an empty or "
    "dot segment) or names a trust domain outside `client_certificate_trust_domains`.",
    SERVICE_IDENTITY_UNKNOWN: "C10: the certificate verified, but no service identity is registered for "
    "its SPIFFE id or subject name (matched exactly).",
    CLIENT_CERTIFICATE_MISMATCH: "C10, RFC 8705 §2.1 (`tls_client_auth` at the OAuth HTTP endpoints): the "
    "client certificate verified, but `client_id` does not name the service identity it maps to (or "
    "names no credential: the two are deliberately indistinguishable).",
    XFCC_UNTRUSTED: "C10: the `x-forwarded-client-cert` element the nearest proxy added does not name one "
    "of `xfcc_trusted_by` in its `By=`.",
    XFCC_MALFORMED: "C10: the `x-forwarded-client-cert` header is not in Envoy's format (elements of "
    "`Key=value` pairs, quoted where needed).",
    ALLOWED: "A rule explicitly allowed the action.",
    NOT_AUTHENTICATED: "The credential was refused; the refusal says why.",
    ACTION_UNKNOWN: "The action is not in the action catalogue.",
    ACTION_NOT_GRANTED: "The principal holds no grant for this action (S3).",
    ACTION_LEVEL_NOT_ALLOWED: "The action's level is out of reach for this kind of credential, e.g. an "
    "application secret creating applications (S2).",
    RESOURCE_INCOMPLETE: "The resource lacks a field the action's level needs (e.g. the application id).",
    RESOURCE_NOT_IN_SCOPE: "The resource is outside the principal's organization or application, or "
    "does not exist (the two are deliberately indistinguishable) (S2, S7).",
    EVENT_TYPE_DENIED: "The event type matches one of the credential's deny patterns (S3).",
    EVENT_TYPE_NOT_ALLOWED: "The event type matches none of the credential's allow patterns (S3).",
    NO_RULE_ALLOWS: "No rule allowed the action: deny by default (S8).",
    NOT_A_MEMBER: "The user holds no role in the resource's organization (S1, S7).",
    ROLE_NOT_GRANTED: "None of the user's roles in the organization grants the action (S1).",
    ISSUER_NOT_BOUND: "The user's token claims roles in the resource's organization, but its issuer is not "
    "bound to that organization (`organizations` of its `[[issuers]]` table): the claim is ignored (S7).",
    OBJECT_NOT_IN_PATTERNS: "The object id matches none of the tenant token's data-provider patterns (S4).",
    SUBJECT_MISMATCH: "A subject-scoped token acting on another subject than its own (S5).",
    EVENT_TYPE_INVALID: "The requested event type is not in canonical form (lowercase `[a-z0-9_-]` segments "
    "separated by dots): uppercase, glob characters, control or invisible characters are refused (S3).",
    OBJECT_ID_INVALID: "The requested object id contains `/`, `\\`, `..`, or control or invisible "
    "characters (S4).",
    ENTRY_INVALID: "A batch entry is malformed (the message names the field); the other entries are "
    "decided as usual (T7).",
    INTERNAL_ERROR: "A fault in Watchword while deciding this batch entry (the message carries an incident "
    "id under which the server log has the details); the other entries are decided as usual (T7).",
    ROUTE_NOT_CONFIGURED: "E1: the HTTP request matches no configured route (method and path template); "
    "denied with 403 before any credential is read.",
    AUTHORIZATION_UNAVAILABLE: "E1: Watchword could not decide (store unavailable, internal error); the "
    "HTTP request is refused with 503, never allowed.",
    ROUTE_EXTENSIONS_INVALID: "E1: the `watchword.*` context_extensions of the Envoy route are invalid (an "
    "unknown `watchword.` key, no `watchword.action`, a bad `watchword.path` template or one that lacks what "
    "the action's level needs, a `watchword.dry_run` other than true or false): denied with 403 before any "
    "credential is read, also in dry-run. An unknown action is `action_unknown`.",
    ROUTE_CONFLICT: "E1: the Envoy route's context_extensions and Watchword's route table both name a route "
    "for the request, with different actions or resources: denied with 403 before any credential is read, "
    "also in dry-run.",
    QUERY_CREDENTIAL_NOT_REMOVABLE: "E4: the request carries a T5 query-parameter credential, credential "
    "removal is on, and the HTTP front door cannot remove query parameters (Envoy's `http_service` has no "
    "way to): denied with 403 before the credential is read, so the secret never reaches the upstream.",
    PATH_PREFIX_MISSING: "E4: the HTTP front door received a path without the configured "
    "`ext_authz_http_path_prefix`, so it did not come from Envoy's filter as configured: denied with 403.",
    MALFORMED_HTTP_REQUEST: "E4: the bytes on the HTTP ext_authz port are not an HTTP/1.1 request llhttp "
    "accepts (e.g. a bad header line, both Content-Length and Transfer-Encoding): 400, then the connection "
    "is closed. Never decided.",
    REQUEST_HEADER_TOO_LARGE: "E4: the request line and headers exceed 64 KiB (Envoy's own 60 KiB "
    "bound and the path prefix): 400, then the connection is closed. Never decided.",
    REQUEST_BODY_TOO_LARGE: "E4: a check request's body exceeds 64 KiB (Watchword reads no body; Envoy "
    "sends one only with `with_request_body`): 413, then the connection is closed. Never decided.",
    LEAK_REPORT_UNSIGNED: "Key hygiene: a leaked-key report without the `Github-Public-Key-Identifier` "
    "and `Github-Public-Key-Signature` headers: 401, nothing changed.",
    LEAK_REPORT_KEY_UNKNOWN: "Key hygiene: a leaked-key report signed with a key that is not in "
    "`secret_scanning_public_keys_file`: 401, nothing changed.",
    LEAK_REPORT_SIGNATURE_INVALID: "Key hygiene: a leaked-key report whose signature does not verify "
    "against the named key (ECDSA P-256, SHA-256, over the raw body): 401, nothing changed.",
    LEAK_REPORT_MALFORMED: "Key hygiene: a signed leaked-key report that is not a JSON array of 1 to 1000 "
    '`{"token", "type", "url", "source"}` objects: 400, nothing changed.',
    LEAK_REPORT_TOO_LARGE: "Key hygiene: a leaked-key report body over 1 MiB: 413, nothing changed.",
}


# SignOutbound errors (OutboundError.reason): whether a retry can help is in OutboundError.retryable.
OUTBOUND_REASONS: dict[str, str] = {
    "outbound_credential_unknown": "No outbound credential has this id. Not retryable.",
    "outbound_credential_deactivated": "The outbound credential was deactivated. Not retryable.",
    "outbound_credential_invalid": "The stored credential cannot be used as configured; fix it through the "
    "admin API. Not retryable.",
    "scheme_not_served": "The credential's scheme is not served by this deployment. Not retryable.",
    "token_server_unreachable": "O3/O4: the customer's token server could not be reached. Retryable.",
    "token_server_timeout": "O3/O4: the token server did not answer in time. Retryable.",
    "token_server_error": "O3/O4: the token server answered 5xx (or 429). Retryable, after `retry_after`.",
    "token_server_rejected_client": "O3/O4: the token server refused Watchword's client credentials "
    "(`invalid_client`, 401). Not retryable: fix the credential.",
    "token_server_refused": "O3/O4: the token server refused the request (another 4xx, e.g. "
    "`invalid_scope`). Not retryable.",
    "token_response_invalid": "O3/O4: the token server's answer is not a usable token response. "
    "Not retryable.",
    "token_url_forbidden": "O3/O4: the token URL resolves to a loopback, private or link-local address. "
    "Not retryable.",
    "redirect_refused": "O3/O4: the token server answered with a redirect, which Watchword never follows. "
    "Not retryable.",
    "message_id_invalid": "O5: the message id cannot be a `webhook-id`: only ASCII letters, digits, `_` "
    "and `-`, 1 to 255 characters (Standard Webhooks forbids `.`; nothing a header cannot carry). "
    "Not retryable.",
}
