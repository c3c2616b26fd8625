"""C1 end to end: `watchword serve` configured with an [[issuers]] table, a real discovery/JWKS server on
127.0.0.1, keys rotated mid-test, through Authenticate."""

from __future__ import annotations

import time

from watchword import reasons
from watchword.v1 import auth_pb2, common_pb2

from support.jwks_server import JwksServer, generate_key
from support.server import WatchwordProcess


def authenticate(server: WatchwordProcess, token: str) -> auth_pb2.AuthenticateResponse:
    http = common_pb2.HttpRequest(
        headers=[common_pb2.KeyValue(name="Authorization", value=f"Bearer {token}")]
    )
    request = auth_pb2.AuthenticateRequest(credential=common_pb2.CredentialSource(http=http))
    return server.auth().Authenticate(request, timeout=10)


def claims(idp: JwksServer, **extra: object) -> dict:
    now = int(time.time())
    return {
        "iss": idp.issuer, "aud": "hook0-api", "sub": "user-1", "iat": now, "exp": now + 300,
        "realm_access": {"roles": ["editor", "offline_access"]}, "org": "org-77", **extra,
    }  # fmt: skip


def test_c1_keycloak_style_tokens_through_the_real_server_with_key_rotation(tmp_path) -> None:
    with JwksServer(algorithms=("RS256",)) as idp:
        config = tmp_path / "watchword.toml"
        config.write_text(
            "[[issuers]]\n"
            f'issuer = "{idp.issuer}"\n'
            'audiences = ["hook0-api"]\n'
            f'discovery_url = "{idp.discovery_url}"\n'
            "allow_insecure_http = true\n"
            'roles_claim = "realm_access.roles"\n'
            'organization_claim = "org"\n'
            "refresh_min_interval_seconds = 1\n"
        )
        with WatchwordProcess(tmp_path / "data", args=["--config", str(config)]) as server:
            principal = authenticate(server, idp.sign(claims(idp))).principal
            assert principal.kind == common_pb2.CREDENTIAL_KIND_EXTERNAL_JWT
            assert principal.id == "user-1"
            assert principal.issuer == idp.issuer
            assert [(m.organization_id, sorted(m.roles)) for m in principal.memberships] == [
                ("org-77", ["editor", "offline_access"])
            ]
            # The IdP rotates its keys: a token with the new kid makes Watchword refresh once and accept it.
            new_key = idp.rotate("RS256")
            assert authenticate(server, idp.sign(claims(idp), new_key)).HasField("principal")
            # Wrong audience, unknown issuer, alg none: refused with their own reasons.
            assert authenticate(server, idp.sign(claims(idp, aud="other"), new_key)).refusal.reason == (
                reasons.TOKEN_AUDIENCE_MISMATCH
            )
            assert authenticate(
                server, idp.sign(claims(idp, iss="https://evil.example"), new_key)
            ).refusal.reason == (reasons.TOKEN_ISSUER_UNKNOWN)
            stranger = generate_key("RS256", "not-published")
            assert (
                authenticate(server, idp.sign(claims(idp), stranger)).refusal.reason
                == reasons.TOKEN_KEY_UNKNOWN
            )
            expired = claims(idp, exp=int(time.time()) - 600)
            assert authenticate(server, idp.sign(expired, new_key)).refusal.reason == reasons.TOKEN_EXPIRED


def test_s1_user_roles_from_memberships_stored_through_the_admin_api(tmp_path) -> None:
    from watchword.v1 import admin_pb2

    with JwksServer(algorithms=("ES256",)) as idp:
        config = tmp_path / "watchword.toml"
        config.write_text(
            f'[[issuers]]\nissuer = "{idp.issuer}"\naudiences = ["hook0-api"]\njwks_uri = "{idp.jwks_uri}"\n'
            'allow_insecure_http = true\nroles_source = "memberships"\n'
        )
        with WatchwordProcess(tmp_path / "data", args=["--config", str(config)]) as server:
            admin, md = server.admin(), server.admin_metadata
            org = admin.CreateOrganization(admin_pb2.CreateOrganizationRequest(name="m"), metadata=md).id
            token = idp.sign(claims(idp, sub="user-9"))
            http = common_pb2.HttpRequest(
                headers=[common_pb2.KeyValue(name="Authorization", value=f"Bearer {token}")]
            )
            request = auth_pb2.AuthorizeRequest(
                credential=common_pb2.CredentialSource(http=http),
                action="application.create",
                resource=auth_pb2.Resource(organization_id=org),
            )
            denied = server.auth().Authorize(request, timeout=10).decision
            assert (denied.allowed, denied.reason, denied.rule) == (False, reasons.NOT_A_MEMBER, "S1")
            membership = admin_pb2.Membership(organization_id=org, user_id="user-9", roles=["editor"])
            admin.SetMembership(admin_pb2.SetMembershipRequest(membership=membership), metadata=md)
            allowed = server.auth().Authorize(request, timeout=10)
            assert (allowed.decision.allowed, allowed.decision.rule) == (True, "S1")
            assert [(m.organization_id, list(m.roles)) for m in allowed.principal.memberships] == [
                (org, ["editor"])
            ]
            admin.DeleteMembership(
                admin_pb2.DeleteMembershipRequest(organization_id=org, user_id="user-9"), metadata=md
            )
            assert server.auth().Authorize(request, timeout=10).decision.reason == reasons.NOT_A_MEMBER
