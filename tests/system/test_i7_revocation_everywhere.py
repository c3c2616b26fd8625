"""I7 across worker processes and replicas: a token revoked and a key deactivated through
`POST /oauth/revoke` are refused by Authenticate on every worker and replica within 1 s.

Two workers on one SQLite file (whichever the HTTP connection reached revokes), and two replicas on one
PostgreSQL database (the first revokes), all with `cache_ttl_seconds = 30`: only the change log or the
change feed can make the others refuse within 1 s, so the tests fail if the revocation bypasses them.
Which worker a gRPC channel reaches is read from the metrics (each sample carries a `worker` label).
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Iterator

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from watchword.crypto.master_key import generate
from watchword.v1 import auth_pb2, auth_pb2_grpc, common_pb2

from support.cli import migrate
from support.postgres import PostgresServer
from support.server import WatchwordProcess
from support.tenants import API_KEY, Tenant, create_credential, make_tenant

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # authlib announces a future move of its httpx integration
    from authlib.integrations.httpx_client import OAuth2Client

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
WORKERS = 2
LIMIT_SECONDS = 1.0


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchwordProcess]:
    env = {"WATCHWORD_WORKERS": str(WORKERS), "WATCHWORD_CACHE_TTL_SECONDS": "30"}
    with WatchwordProcess(tmp_path_factory.mktemp("i7-workers") / "data", env=env) as server:
        yield server


def served(server: WatchwordProcess) -> dict[str, float]:
    """Calls served so far, by worker."""
    text = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "watchword_rpc_duration_seconds_count":
                worker = sample.labels.get("worker", "")
                totals[worker] = totals.get(worker, 0.0) + sample.value
    return totals


def authenticate(channel: grpc.Channel, token: str) -> auth_pb2.AuthenticateResponse:
    source = common_pb2.CredentialSource(bare=common_pb2.BareCredential(token=token))
    request = auth_pb2.AuthenticateRequest(credential=source)
    return auth_pb2_grpc.AuthServiceStub(channel).Authenticate(request, timeout=10)


def channel_per_worker(server: WatchwordProcess, tries: int = 40) -> dict[str, grpc.Channel]:
    """One channel of its own connected to each worker, found by whose count a call on it raises."""
    found: dict[str, grpc.Channel] = {}
    for _ in range(tries):
        channel = grpc.insecure_channel(server.address, options=[("grpc.use_local_subchannel_pool", 1)])
        before = served(server)
        authenticate(channel, "not-a-credential")
        worker = next(w for w, count in served(server).items() if count > before.get(w, 0.0))
        if worker in found:
            channel.close()
        else:
            found[worker] = channel
        if len(found) == WORKERS:
            return found
    raise AssertionError(f"{tries} connections all reached workers {sorted(found)}")


def refused_everywhere_within(channels: dict[str, grpc.Channel], token: str, reason: str) -> float:
    """Seconds from now until every worker refuses `token` with `reason` (fails past LIMIT_SECONDS)."""
    start = time.monotonic()
    for worker, channel in channels.items():
        while (answer := authenticate(channel, token)).refusal.reason != reason:
            assert answer.HasField("principal"), answer
            assert time.monotonic() - start < LIMIT_SECONDS, f"worker {worker} still accepts it"
            time.sleep(0.01)
    return time.monotonic() - start


def revoke(server: WatchwordProcess, tenant: Tenant, token: str) -> None:
    client = create_credential(
        server,
        kind=common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT,
        organization_id=tenant.organization_id,
        name="gateway",
        permissions=["token.revoke"],
        client_auth_method=1,
    )
    with OAuth2Client(client.credential.id, client.secret) as session:
        revoked = session.revoke_token(f"http://127.0.0.1:{server.http_port}/oauth/revoke", token=token)
    assert revoked.status_code == 200


def revoked_everywhere(revoking: WatchwordProcess, channels: dict[str, grpc.Channel]) -> list[float]:
    """A token and the key it was exchanged from, each cached as valid by every channel's server, then
    revoked through `revoking`: seconds until every one refuses each."""
    tenant = make_tenant(revoking, f"i7 {uuid.uuid4().hex[:6]}")
    key = create_credential(
        revoking, kind=API_KEY, organization_id=tenant.organization_id, name="k", permissions=["event.send"]
    )
    grant = auth_pb2.ApiKeyExchangeGrant(api_key=key.secret)
    token = revoking.auth().IssueToken(auth_pb2.IssueTokenRequest(api_key_exchange=grant), timeout=10).token
    for channel in channels.values():
        assert authenticate(channel, token.access_token).HasField("principal")
        assert authenticate(channel, key.secret).HasField("principal")
    revoke(revoking, tenant, token.access_token)
    token_seconds = refused_everywhere_within(channels, token.access_token, "token_revoked")
    revoke(revoking, tenant, key.secret)
    key_seconds = refused_everywhere_within(channels, key.secret, "credential_deactivated")
    return [token_seconds, key_seconds]


def test_i7_a_revocation_through_any_worker_is_refused_by_every_worker_within_1s(workers) -> None:
    seconds = revoked_everywhere(workers, channel_per_worker(workers))
    print(f"\nSQLite workers: token and key refused everywhere after {[round(s, 3) for s in seconds]} s")


def test_i7_a_revocation_through_one_replica_is_refused_by_every_replica_within_1s_on_postgresql(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url = postgres.create_database(f"i7_{uuid.uuid4().hex[:8]}")
    env = {
        "WATCHWORD_DATABASE_URL": url,
        "WATCHWORD_MASTER_KEY": generate(),
        "WATCHWORD_CACHE_TTL_SECONDS": "30",
    }
    migrate(env)
    # One by one: the first start mints the admin token.
    with (
        WatchwordProcess(tmp_path_factory.mktemp("r1") / "data", env=env) as first,
        WatchwordProcess(tmp_path_factory.mktemp("r2") / "data", env=env) as second,
    ):
        second.admin_token = first.admin_token
        channels = {"first": first.channel(), "second": second.channel()}
        seconds = revoked_everywhere(first, channels)
    print(f"\nPostgreSQL replicas: token and key refused everywhere after {[round(s, 3) for s in seconds]} s")
