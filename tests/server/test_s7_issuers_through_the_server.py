"""S1, S7 through the real server: a user is (issuer, subject), so a second identity provider's user never
inherits the stored roles of a first provider's user with the same `sub`; an issuer asserts roles only in
the organizations bound to it; the admin API and the CLI name the issuer; memberships stored by the
previous release are bound to the one configured issuer at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from watchword import reasons
from watchword.store import database
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.jwks_server import JwksServer
from support.server import WatchwordProcess

ADMIN_ACTION = "organization.delete"  # the admin role only
EDITOR_ACTION = "application.create"  # editor or admin


def _issuer_table(idp: JwksServer, *lines: str) -> str:
    return "\n".join(
        [
            "[[issuers]]",
            f'issuer = "{idp.issuer}"',
            'audiences = ["api"]',
            f'jwks_uri = "{idp.jwks_uri}"',
            "allow_insecure_http = true",
            *lines,
            "",
        ]
    )


def _token(idp: JwksServer, subject: str, **claims: object) -> str:
    now = int(time.time())
    return idp.sign({"iss": idp.issuer, "aud": "api", "sub": subject, "iat": now, "exp": now + 300, **claims})


def _decide(server: WatchwordProcess, token: str, action: str, organization_id: str) -> auth_pb2.Decision:
    http = common_pb2.HttpRequest(
        headers=[common_pb2.KeyValue(name="Authorization", value=f"Bearer {token}")]
    )
    request = auth_pb2.AuthorizeRequest(
        credential=common_pb2.CredentialSource(http=http),
        action=action,
        resource=auth_pb2.Resource(organization_id=organization_id),
    )
    return server.auth().Authorize(request, timeout=10).decision


def _refused_field(call: Callable[[], object]) -> tuple[grpc.StatusCode, str, str]:
    """The status code, the ErrorInfo's `field` and the message of a refused admin call."""
    with pytest.raises(grpc.RpcError) as raised:
        call()
    error = raised.value
    status = rpc_status.from_call(error)
    assert status is not None, error.details()
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return error.code(), info.metadata.get("field", ""), error.details() or ""


def _admin_cli(server: WatchwordProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHWORD_")}
    env |= {"WATCHWORD_ADDRESS": server.address, "WATCHWORD_ADMIN_TOKEN": server.admin_token}
    command = [sys.executable, "-m", "watchword.cli", "admin", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_s7_a_second_issuers_user_never_inherits_stored_roles(tmp_path: Path) -> None:
    with JwksServer(algorithms=("ES256",)) as first, JwksServer(algorithms=("ES256",)) as second:
        config = tmp_path / "watchword.toml"
        config.write_text(
            _issuer_table(first, 'roles_source = "memberships"')
            + _issuer_table(second, 'roles_source = "memberships"')
        )
        with WatchwordProcess(tmp_path / "data", args=["--config", str(config)]) as server:
            admin, md = server.admin(), server.admin_metadata
            org = admin.CreateOrganization(admin_pb2.CreateOrganizationRequest(name="o"), metadata=md).id
            granted = admin.SetMembership(
                admin_pb2.SetMembershipRequest(
                    membership=admin_pb2.Membership(
                        organization_id=org, issuer=first.issuer, user_id="user-1", roles=["admin"]
                    )
                ),
                metadata=md,
            )
            assert granted.issuer == first.issuer
            # The case found: the second provider's user with the same `sub` got the admin role.
            assert _decide(server, _token(first, "user-1"), ADMIN_ACTION, org).allowed
            stranger = _decide(server, _token(second, "user-1"), ADMIN_ACTION, org)
            assert (stranger.allowed, stranger.reason) == (False, reasons.NOT_A_MEMBER)

            listed = admin.ListMemberships(admin_pb2.ListMembershipsRequest(organization_id=org), metadata=md)
            assert [(m.issuer, m.user_id) for m in listed.memberships] == [(first.issuer, "user-1")]

            # Several issuers: a write must name one, and only a configured one.
            for issuer, detail in (("", "required"), ("https://unknown.example", "not a configured issuer")):
                membership = admin_pb2.Membership(organization_id=org, issuer=issuer, user_id="u", roles=[])
                code, field, message = _refused_field(
                    lambda m=membership: admin.SetMembership(
                        admin_pb2.SetMembershipRequest(membership=m), metadata=md, timeout=10
                    )
                )
                assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "membership.issuer")
                assert detail in message
            code, field, _ = _refused_field(
                lambda: admin.DeleteMembership(
                    admin_pb2.DeleteMembershipRequest(organization_id=org, user_id="user-1"), metadata=md
                )
            )
            assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "issuer")
            code, _, _ = _refused_field(
                lambda: admin.DeleteMembership(
                    admin_pb2.DeleteMembershipRequest(
                        organization_id=org, user_id="user-1", issuer=second.issuer
                    ),
                    metadata=md,
                )
            )
            assert code == grpc.StatusCode.NOT_FOUND  # the second issuer's user-1 holds nothing to delete

            # The CLI names the issuer too.
            cli_set = _admin_cli(
                server, "member", "set", "--org", org, "--issuer", second.issuer, "--user", "user-1",
                "--role", "viewer",
            )  # fmt: skip
            assert cli_set.returncode == 0, cli_set.stderr
            assert json.loads(cli_set.stdout)["issuer"] == second.issuer
            cli_list = _admin_cli(server, "member", "list", "--org", org, "--issuer", second.issuer)
            assert [m["issuer"] for m in json.loads(cli_list.stdout)["memberships"]] == [second.issuer]
            assert _decide(server, _token(second, "user-1"), EDITOR_ACTION, org).reason == (
                reasons.ROLE_NOT_GRANTED  # viewer: its own roles, not the first user's admin
            )
            cli_delete = _admin_cli(
                server, "member", "delete", "--org", org, "--issuer", first.issuer, "--user", "user-1"
            )
            assert cli_delete.returncode == 0, cli_delete.stderr
            assert _decide(server, _token(first, "user-1"), ADMIN_ACTION, org).reason == reasons.NOT_A_MEMBER
            assert _decide(server, _token(second, "user-1"), "organization.get", org).allowed


def _previous_release_database(data_dir: Path) -> None:
    """An embedded store at the schema before memberships named their issuer, holding one."""
    data_dir.mkdir(mode=0o700)
    url = f"sqlite:///{data_dir / 'watchword.db'}"
    database.migrate(url, "0005")
    engine = sa.create_engine(database.sync_url(url))
    with engine.begin() as connection:
        for org in ("org-a", "org-b"):
            connection.execute(
                sa.text("INSERT INTO organizations (id, name, created_at) VALUES (:id, 'o', '2026-01-01')"),
                {"id": org},
            )
        connection.execute(
            sa.text(
                """INSERT INTO memberships
                   VALUES ('org-a', 'alice', '["editor"]'), ('org-b', 'alice', '["admin"]')"""
            )
        )
    engine.dispose()


def test_s7_an_issuer_asserts_roles_only_in_organizations_bound_to_it(tmp_path: Path) -> None:
    with JwksServer(algorithms=("ES256",)) as idp:
        _previous_release_database(tmp_path / "data")
        config = tmp_path / "watchword.toml"
        config.write_text(
            _issuer_table(
                idp, 'roles_source = "both"', 'organizations_claim = "orgs"', 'organizations = ["org-a"]'
            )
        )
        with WatchwordProcess(tmp_path / "data", args=["--config", str(config)]) as server:
            # The previous release's membership is bound to the one configured issuer at start.
            assert _decide(server, _token(idp, "alice"), EDITOR_ACTION, "org-a").allowed
            # Stored roles outside the issuer's organizations grant nothing either.
            assert (
                _decide(server, _token(idp, "alice"), EDITOR_ACTION, "org-b").reason == reasons.NOT_A_MEMBER
            )
            claiming = _token(idp, "alice", orgs={"org-a": ["admin"], "org-b": ["admin"]})
            assert _decide(server, claiming, ADMIN_ACTION, "org-a").allowed
            elsewhere = _decide(server, claiming, ADMIN_ACTION, "org-b")
            assert (elsewhere.allowed, elsewhere.reason, elsewhere.rule) == (
                False,
                reasons.ISSUER_NOT_BOUND,
                "S7",
            )
            # Nor can an admin store roles for this issuer's users outside its organizations.
            membership = admin_pb2.Membership(organization_id="org-b", user_id="alice", roles=["admin"])
            code, field, _ = _refused_field(
                lambda: server.admin().SetMembership(
                    admin_pb2.SetMembershipRequest(membership=membership), metadata=server.admin_metadata
                )
            )
            assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "membership.organization_id")
            listed = server.admin().ListMemberships(
                admin_pb2.ListMembershipsRequest(organization_id="org-a"), metadata=server.admin_metadata
            )
            assert [(m.issuer, m.user_id) for m in listed.memberships] == [(idp.issuer, "alice")]


def test_s7_several_issuers_asserting_roles_must_be_bound_at_start(tmp_path: Path) -> None:
    with JwksServer(algorithms=("ES256",)) as first, JwksServer(algorithms=("ES256",)) as second:
        config = tmp_path / "watchword.toml"
        claims = 'organizations_claim = "orgs"'
        config.write_text(
            _issuer_table(first, claims) + _issuer_table(second, claims, 'organizations = ["*"]')
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHWORD_")}
        checked = subprocess.run(
            [sys.executable, "-m", "watchword.cli", "--config", str(config), "check-config"],
            env=env | {"WATCHWORD_DATA_DIR": str(tmp_path / "data")},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert checked.returncode != 0
        assert first.issuer in checked.stderr
        assert "organizations = [" in checked.stderr
