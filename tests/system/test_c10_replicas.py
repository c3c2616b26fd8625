"""C10 across replicas on one PostgreSQL: a service identity registered through one replica is known to
the other within a second although that one had cached the identity as unknown, and deactivating it is
refused there within a second too. The replicas keep entries for 30 s (`cache_ttl_seconds`), so only the
change feed can do it. The certificate reaches them as Envoy sends it: `attributes.source.certificate`
of an ext_authz CheckRequest (E1)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc

from watchword.crypto.master_key import generate
from watchword.v1 import admin_pb2, common_pb2

from support.certificates import certificate_authority, client_certificate
from support.cli import migrate
from support.envoy import write_config
from support.postgres import PostgresServer
from support.server import WatchwordProcess

SPIFFE_ID = "spiffe://example.org/ns/billing/sa/worker"
LIMIT_SECONDS = 1.0
CA = certificate_authority()
CERTIFICATE = quote(client_certificate(CA, spiffe_id=SPIFFE_ID).pem.decode(), safe="")


@pytest.fixture(scope="module")
def replicas(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[WatchwordProcess]]:
    directory = tmp_path_factory.mktemp("c10-replicas")
    (directory / "ca.pem").write_bytes(CA.pem)
    env = {
        "WATCHWORD_DATABASE_URL": postgres.create_database(f"c10_{uuid.uuid4().hex[:8]}"),
        "WATCHWORD_MASTER_KEY": generate(),
        "WATCHWORD_CACHE_TTL_SECONDS": "30",
    }
    migrate(env)
    config = write_config(directory, f'tls_client_ca_file = "{directory / "ca.pem"}"\n')
    with contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(
                WatchwordProcess(directory / f"data{n}", env=env, args=["--config", str(config)])
            )
            for n in range(2)
        ]
        started[1].admin_token = started[0].admin_token
        yield started


def _check(replica: WatchwordProcess, organization: str) -> int:
    """Envoy's question for GET /v1/organizations/ORG from a client with the workload's certificate."""
    attributes = attribute_context_pb2.AttributeContext(
        source=attribute_context_pb2.AttributeContext.Peer(certificate=CERTIFICATE, principal=SPIFFE_ID),
        request=attribute_context_pb2.AttributeContext.Request(
            http=attribute_context_pb2.AttributeContext.HttpRequest(
                method="GET", path=f"/v1/organizations/{organization}", headers={"accept": "*/*"}
            )
        ),
    )
    stub = external_auth_pb2_grpc.AuthorizationStub(replica.channel())
    answer = stub.Check(external_auth_pb2.CheckRequest(attributes=attributes), timeout=10)
    return answer.denied_response.status.code or 200


def _within_limit(replica: WatchwordProcess, organization: str, wanted: int, since: float) -> float:
    deadline = since + LIMIT_SECONDS + 2.0
    while time.monotonic() < deadline:
        if _check(replica, organization) == wanted:
            return time.monotonic() - since
        time.sleep(0.01)
    raise AssertionError(f"replica still does not answer {wanted}")


def _admin(replicas: list[WatchwordProcess]) -> Callable[..., Any]:
    admin, metadata = replicas[0].admin(), replicas[0].admin_metadata
    return lambda method, request: getattr(admin, method)(request, metadata=metadata)


def test_c10_registration_and_deactivation_reach_the_other_replica_within_a_second(
    replicas: list[WatchwordProcess],
) -> None:
    call = _admin(replicas)
    organization = call("CreateOrganization", admin_pb2.CreateOrganizationRequest(name="w")).id
    assert [_check(replica, organization) for replica in replicas] == [401, 401]  # unknown, and cached so
    changed = time.monotonic()
    created = call(
        "CreateCredential",
        admin_pb2.CreateCredentialRequest(
            kind=common_pb2.CREDENTIAL_KIND_CLIENT_CERTIFICATE,
            organization_id=organization,
            name="worker",
            permissions=["organization.get"],
            service_identity=SPIFFE_ID,
        ),
    )
    assert _within_limit(replicas[1], organization, 200, changed) <= LIMIT_SECONDS
    changed = time.monotonic()
    call("DeactivateCredential", admin_pb2.DeactivateCredentialRequest(id=created.credential.id))
    assert _within_limit(replicas[1], organization, 401, changed) <= LIMIT_SECONDS
