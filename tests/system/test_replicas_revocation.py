"""Several replicas on one PostgreSQL (issue #8): a change made through one replica is refused by every
replica within one second (S6, I6), signing keys rotate everywhere at once (I5), client-assertion jti
replay is refused across replicas (C9), and a replica whose LISTEN connection drops reconnects and
flushes its caches.

The replicas run with `cache_ttl_seconds = 30`: only the change feed can make them refuse within 1 s,
so these tests fail if the feed does not work. Each measured delay runs from the moment the admin call
returned (the change is committed) to the first refusal seen on that replica, polled every 10 ms.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import jwt
import psycopg
import pytest

from watchword.crypto.master_key import generate
from watchword.store import database
from watchword.v1 import admin_pb2, auth_pb2, common_pb2

from support.cli import migrate
from support.jwks_server import JwksServer
from support.postgres import PostgresServer
from support.server import WatchwordProcess
from support.tenants import API_KEY, Tenant, create_credential, make_tenant

REPLICAS = 3
LIMIT_SECONDS = 1.0
POLL_SECONDS = 0.01
CACHE_TTL_SECONDS = 30
TOKEN_ENDPOINT = "urn:watchword:token"
SECRET_JWT = 3  # ClientAuthMethod client_secret_jwt


@dataclass
class Cluster:
    replicas: list[WatchwordProcess]
    database_dsn: str
    tenant: Tenant
    delays: dict[str, float]
    idp: JwksServer  # an external OIDC issuer (C1) whose users' roles are stored memberships (S1)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self.replicas[0].admin_metadata


def _migrate(env: dict[str, str]) -> None:
    assert f"revision {database.head_revision()}" in migrate(env)


@pytest.fixture(scope="module")
def cluster(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    name = f"replicas_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(name)
    env = {
        "WATCHWORD_DATABASE_URL": url,
        "WATCHWORD_MASTER_KEY": generate(),
        "WATCHWORD_MODE": "production",
        "WATCHWORD_ALLOW_NON_HTTPS_ISSUER": "true",  # the default urn:watchword issuer
        "WATCHWORD_CACHE_TTL_SECONDS": str(CACHE_TTL_SECONDS),
    }
    _migrate(env)
    with contextlib.ExitStack() as stack:
        idp = stack.enter_context(JwksServer(algorithms=("ES256",)))
        config = tmp_path_factory.mktemp("config") / "watchword.toml"
        config.write_text(
            f'[[issuers]]\nissuer = "{idp.issuer}"\naudiences = ["replicas"]\njwks_uri = "{idp.jwks_uri}"\n'
            'allow_insecure_http = true\nroles_source = "memberships"\n'
        )
        replicas: list[WatchwordProcess] = []
        for number in range(REPLICAS):
            # The first start mints the admin token; start them one by one so exactly one is minted.
            data = tmp_path_factory.mktemp(f"replica{number + 1}") / "data"
            process = WatchwordProcess(data, env=env, args=["--config", str(config)])
            replicas.append(stack.enter_context(process))
        assert replicas[0].admin_token
        assert not any(r.admin_token for r in replicas[1:])
        for replica in replicas[1:]:
            replica.admin_token = replicas[0].admin_token
        delays: dict[str, float] = {}
        yield Cluster(replicas, postgres.dsn(name), make_tenant(replicas[0], "replicas"), delays, idp)
        print("\nchange propagation, worst replica per case (s):")
        for case, delay in delays.items():
            print(f"  {case:<45} {delay:.3f}")


def _bearer(token: str) -> common_pb2.CredentialSource:
    header = common_pb2.KeyValue(name="authorization", value=f"Bearer {token}")
    return common_pb2.CredentialSource(http=common_pb2.HttpRequest(headers=[header]))


def authenticate(replica: WatchwordProcess, token: str) -> auth_pb2.AuthenticateResponse:
    return replica.auth().Authenticate(auth_pb2.AuthenticateRequest(credential=_bearer(token)), timeout=10)


def accepted(replica: WatchwordProcess, token: str) -> bool:
    return authenticate(replica, token).HasField("principal")


def refused_everywhere_within_limit(
    cluster: Cluster, case: str, refused: Callable[[WatchwordProcess], bool], changed_at: float
) -> list[float]:
    """Poll every replica until each refuses; the delay of each, measured from `changed_at`."""
    delays: list[float | None] = [None] * len(cluster.replicas)
    deadline = changed_at + LIMIT_SECONDS + 2.0  # keep looking a bit past the limit, to report the figure
    while any(d is None for d in delays) and time.monotonic() < deadline:
        for index, replica in enumerate(cluster.replicas):
            if delays[index] is None and refused(replica):
                delays[index] = time.monotonic() - changed_at
        time.sleep(POLL_SECONDS)
    print(f"\n{case}: delay per replica {[None if d is None else round(d, 3) for d in delays]}")
    assert all(d is not None for d in delays), f"{case}: some replica never refused: {delays}"
    measured = [d for d in delays if d is not None]
    cluster.delays[case] = max(measured)
    assert max(measured) <= LIMIT_SECONDS, f"{case}: slowest replica took {max(measured):.3f}s"
    return measured


def api_key(cluster: Cluster, name: str) -> admin_pb2.CreateCredentialResponse:
    return create_credential(
        cluster.replicas[0],
        kind=API_KEY,
        organization_id=cluster.tenant.organization_id,
        name=name,
        permissions=["event.send", "application.list"],
    )


def deactivate(cluster: Cluster, replica: WatchwordProcess, credential_id: str) -> float:
    """Deactivate through `replica`; the monotonic time its answer arrived."""
    request = admin_pb2.DeactivateCredentialRequest(id=credential_id)
    replica.admin().DeactivateCredential(request, metadata=cluster.metadata, timeout=10)
    return time.monotonic()


def exchange(replica: WatchwordProcess, secret: str) -> auth_pb2.TokenResponse:
    grant = auth_pb2.ApiKeyExchangeGrant(api_key=secret)
    response = replica.auth().IssueToken(auth_pb2.IssueTokenRequest(api_key_exchange=grant), timeout=10)
    assert response.HasField("token"), response
    return response.token


def test_s6_deactivation_through_one_replica_is_refused_by_every_replica_within_1s(cluster) -> None:
    key = api_key(cluster, "s6")
    assert all(accepted(replica, key.secret) for replica in cluster.replicas)  # cached everywhere now
    changed_at = deactivate(cluster, cluster.replicas[1], key.credential.id)
    refused_everywhere_within_limit(
        cluster, "S6 credential deactivated", lambda r: not accepted(r, key.secret), changed_at
    )
    for replica in cluster.replicas:
        assert authenticate(replica, key.secret).refusal.reason == "credential_deactivated"


def test_i6_token_revoked_through_one_replica_is_refused_by_every_replica_within_1s(cluster) -> None:
    token = exchange(cluster.replicas[0], api_key(cluster, "i6").secret)
    assert all(accepted(replica, token.access_token) for replica in cluster.replicas)
    request = admin_pb2.RevokeTokenRequest(token_id=token.token_id)
    cluster.replicas[1].admin().RevokeToken(request, metadata=cluster.metadata, timeout=10)
    changed_at = time.monotonic()
    refused_everywhere_within_limit(
        cluster, "I6 token revoked (jti)", lambda r: not accepted(r, token.access_token), changed_at
    )
    for replica in cluster.replicas:
        assert authenticate(replica, token.access_token).refusal.reason == "token_revoked"


def test_s6_i6_jwt_exchanged_from_a_deactivated_api_key_is_refused_by_every_replica_within_1s(
    cluster,
) -> None:
    key = api_key(cluster, "i1")
    token = exchange(cluster.replicas[2], key.secret)
    # Verified once per replica, then served from each replica's verified-token cache (issue #3).
    for _ in range(2):
        assert all(accepted(replica, token.access_token) for replica in cluster.replicas)
    changed_at = deactivate(cluster, cluster.replicas[1], key.credential.id)
    refused_everywhere_within_limit(
        cluster,
        "S6/I6 exchanged JWT of deactivated API key",
        lambda r: not accepted(r, token.access_token),
        changed_at,
    )
    for replica in cluster.replicas:
        assert authenticate(replica, token.access_token).refusal.reason == "credential_deactivated"


def rotate(cluster: Cluster, replica: WatchwordProcess, credential_id: str, overlap: int) -> float:
    """Rotate through `replica`; the monotonic time its answer arrived."""
    request = admin_pb2.RotateCredentialRequest(id=credential_id, overlap_seconds=overlap)
    replica.admin().RotateCredential(request, metadata=cluster.metadata, timeout=10)
    return time.monotonic()


def subject_token(replica: WatchwordProcess, connector_id: str, secret: str) -> str:
    me = common_pb2.Subject(type=common_pb2.Subject.TYPE_USER, id="u-1")
    grant = auth_pb2.SubjectTokenGrant(connector_id=connector_id, connector_secret=secret, subject=me)
    response = replica.auth().IssueToken(auth_pb2.IssueTokenRequest(subject_token=grant), timeout=10)
    assert response.HasField("token"), response
    return response.token.access_token


def test_i6_s6_tokens_of_a_secret_rotated_with_overlap_0_are_refused_by_every_replica_within_1s(
    cluster,
) -> None:
    key = api_key(cluster, "i6-rotated")
    connector = create_credential(
        cluster.replicas[0],
        kind=common_pb2.CREDENTIAL_KIND_CONNECTOR,
        organization_id=cluster.tenant.organization_id,
        name="hull",
        permissions=["track"],
    )
    tokens = [
        exchange(cluster.replicas[2], key.secret).access_token,
        subject_token(cluster.replicas[0], connector.credential.id, connector.secret),
    ]
    for _ in range(2):  # verified, then served from each replica's verified-token cache
        assert all(accepted(replica, token) for replica in cluster.replicas for token in tokens)
    changed_at = rotate(cluster, cluster.replicas[1], key.credential.id, 0)
    rotate(cluster, cluster.replicas[1], connector.credential.id, 0)
    refused_everywhere_within_limit(
        cluster,
        "I6/S6 tokens of a secret rotated (overlap 0)",
        lambda r: not any(accepted(r, token) for token in tokens),
        changed_at,
    )
    for replica in cluster.replicas:
        assert {authenticate(replica, t).refusal.reason for t in tokens} == {"credential_rotated"}


def test_i6_s6_tokens_of_a_rotated_secret_are_refused_by_every_replica_when_the_overlap_ends(
    cluster,
) -> None:
    overlap = 3
    key = api_key(cluster, "i6-overlap")
    token = exchange(cluster.replicas[0], key.secret).access_token
    assert all(accepted(replica, token) for replica in cluster.replicas)
    ends_at = rotate(cluster, cluster.replicas[1], key.credential.id, overlap) + overlap
    during = exchange(cluster.replicas[2], key.secret).access_token  # the old secret still verifies
    for _ in range(2):
        assert all(accepted(replica, t) for replica in cluster.replicas for t in (token, during))
    time.sleep(max(0.0, ends_at - time.monotonic() - 0.5))
    assert all(accepted(replica, token) for replica in cluster.replicas), "refused before the overlap ended"
    refused_everywhere_within_limit(
        cluster,
        "I6/S6 tokens of a rotated secret, overlap ended",
        lambda r: not accepted(r, token) and not accepted(r, during),
        ends_at,
    )
    for replica in cluster.replicas:
        assert authenticate(replica, token).refusal.reason == "credential_rotated"


def test_s1_membership_removed_through_one_replica_is_refused_by_every_replica_within_1s(cluster) -> None:
    organization = cluster.tenant.organization_id
    now = int(time.time())
    user_claims = {
        "iss": cluster.idp.issuer,
        "aud": "replicas",
        "sub": "user-r",
        "iat": now,
        "exp": now + 300,
    }
    request = auth_pb2.AuthorizeRequest(
        credential=_bearer(cluster.idp.sign(user_claims)),
        action="application.create",
        resource=auth_pb2.Resource(organization_id=organization),
    )
    membership = admin_pb2.Membership(organization_id=organization, user_id="user-r", roles=["editor"])
    cluster.replicas[0].admin().SetMembership(
        admin_pb2.SetMembershipRequest(membership=membership), metadata=cluster.metadata, timeout=10
    )

    def allowed(replica: WatchwordProcess) -> bool:
        return replica.auth().Authorize(request, timeout=10).decision.allowed

    assert all(allowed(replica) for replica in cluster.replicas)
    removal = admin_pb2.DeleteMembershipRequest(organization_id=organization, user_id="user-r")
    cluster.replicas[1].admin().DeleteMembership(removal, metadata=cluster.metadata, timeout=10)
    changed_at = time.monotonic()
    refused_everywhere_within_limit(
        cluster, "S1 stored membership removed", lambda r: not allowed(r), changed_at
    )
    for replica in cluster.replicas:
        assert replica.auth().Authorize(request, timeout=10).decision.reason == "not_a_member"


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def test_i5_a_rotated_signing_key_signs_and_verifies_on_every_replica_at_once(cluster) -> None:
    key = api_key(cluster, "i5")
    before = {replica.port: exchange(replica, key.secret) for replica in cluster.replicas}
    for token in before.values():
        assert all(accepted(replica, token.access_token) for replica in cluster.replicas)
    rotated = (
        cluster.replicas[1]
        .admin()
        .RotateSigningKey(admin_pb2.RotateSigningKeyRequest(), metadata=cluster.metadata, timeout=30)
    )
    changed_at = time.monotonic()
    # The rotating replica signs with the new key at once; every replica accepts that token at once.
    fresh = exchange(cluster.replicas[1], key.secret)
    assert _kid(fresh.access_token) == rotated.kid
    assert all(accepted(replica, fresh.access_token) for replica in cluster.replicas)
    # The other replicas switch to the new key on the event (their own periodic look is 5 s).
    refused_everywhere_within_limit(
        cluster,
        "I5 every replica signs with the rotated key",
        lambda r: _kid(exchange(r, key.secret).access_token) == rotated.kid,
        changed_at,
    )
    # Tokens signed with the previous key keep verifying during the overlap.
    for token in before.values():
        assert all(accepted(replica, token.access_token) for replica in cluster.replicas)


def test_c9_a_client_assertion_used_on_one_replica_is_refused_on_another(cluster) -> None:
    client = create_credential(
        cluster.replicas[0],
        kind=common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT,
        organization_id=cluster.tenant.organization_id,
        name="svc",
        permissions=["event.send"],
        client_auth_method=SECRET_JWT,
    )
    now = int(time.time())
    claims = {
        "iss": client.credential.id,
        "sub": client.credential.id,
        "aud": TOKEN_ENDPOINT,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    assertion = jwt.encode(claims, client.secret.encode(), algorithm="HS256")
    authentication = auth_pb2.ClientAuthentication(
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=assertion,
    )
    request = auth_pb2.IssueTokenRequest(
        client_credentials=auth_pb2.ClientCredentialsGrant(client=authentication)
    )
    first = cluster.replicas[0].auth().IssueToken(request, timeout=10)
    assert first.HasField("token"), first
    for replica in cluster.replicas[1:]:
        replayed = replica.auth().IssueToken(request, timeout=10)
        assert replayed.error.error == "invalid_client", replayed


# ---- the LISTEN connection ----


def _listener_backend(cluster: Cluster, replica: WatchwordProcess) -> int | None:
    assert replica.process is not None
    with psycopg.connect(cluster.database_dsn, autocommit=True) as connection:
        row = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            (f"watchword-change-feed:{replica.process.pid}",),
        ).fetchone()
    return None if row is None else int(row[0])


def _connections_logged(replica: WatchwordProcess) -> int:
    found = [re.search(r"change feed listening \(connection (\d+)\)", line) for line in replica.output]
    return max((int(m.group(1)) for m in found if m), default=0)


def test_a_replica_whose_listen_connection_drops_reconnects_flushes_and_refuses_within_1s(cluster) -> None:
    target = cluster.replicas[2]
    old_backend = _listener_backend(cluster, target)
    assert old_backend is not None, "the replica holds no LISTEN connection"
    connections = _connections_logged(target)
    missed = api_key(cluster, "missed")
    # Let the creation's own event reach the replica first (it drops the id, cached or not), then cache it.
    time.sleep(0.5)
    assert accepted(target, missed.secret)
    # A change no event announces (as if its event had been lost): the cache keeps serving it (TTL 30 s).
    with psycopg.connect(cluster.database_dsn, autocommit=True) as connection:
        connection.execute(
            "UPDATE credentials SET deactivated_at = now() WHERE id = %s", (missed.credential.id,)
        )
    assert accepted(target, missed.secret)
    with psycopg.connect(cluster.database_dsn, autocommit=True) as connection:
        assert connection.execute("SELECT pg_terminate_backend(%s)", (old_backend,)).fetchone() == (True,)
    deadline = time.monotonic() + 10
    while _connections_logged(target) <= connections and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    assert _connections_logged(target) == connections + 1, "".join(target.output[-20:])
    new_backend = _listener_backend(cluster, target)
    assert new_backend is not None
    assert new_backend != old_backend
    # Reconnected, it flushed: the change it never heard of is seen now.
    assert authenticate(target, missed.secret).refusal.reason == "credential_deactivated"
    # And it hears the next change as before.
    key = api_key(cluster, "after reconnect")
    assert all(accepted(replica, key.secret) for replica in cluster.replicas)
    changed_at = deactivate(cluster, cluster.replicas[0], key.credential.id)
    refused_everywhere_within_limit(
        cluster, "S6 after a listener reconnect", lambda r: not accepted(r, key.secret), changed_at
    )


def test_every_replica_reconnects_after_a_postgresql_restart_and_refuses_within_1s(cluster, postgres) -> None:
    """The database goes away and comes back: each LISTEN connection retries with backoff, reconnects
    (and flushes), and the next change reaches every replica as before."""
    before = [_connections_logged(replica) for replica in cluster.replicas]
    postgres.restart()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
        _connections_logged(replica) <= count for replica, count in zip(cluster.replicas, before, strict=True)
    ):
        time.sleep(0.05)
    after = [_connections_logged(replica) for replica in cluster.replicas]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)
    key = api_key(cluster, "after restart")
    time.sleep(0.5)  # the creation's event first
    assert all(accepted(replica, key.secret) for replica in cluster.replicas)
    changed_at = deactivate(cluster, cluster.replicas[2], key.credential.id)
    refused_everywhere_within_limit(
        cluster, "S6 after a PostgreSQL restart", lambda r: not accepted(r, key.secret), changed_at
    )


def _propagation(replica: WatchwordProcess) -> tuple[float, float]:
    """(count, sum) of the replica's `watchword_revocation_propagation_seconds` histogram."""
    text = httpx.get(f"http://127.0.0.1:{replica.metrics_port}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        if line.startswith(
            ("watchword_revocation_propagation_seconds_count", "watchword_revocation_propagation_seconds_sum")
        ):
            name, value = line.split()
            values[name.rpartition("_")[2]] = float(value)
    return values["count"], values["sum"]


def test_every_replica_that_receives_a_change_reports_its_propagation_delay_as_a_metric(cluster) -> None:
    """#8 metrics: the revocation delay, as each replica measured it on receiving the change feed's event."""
    before = [_propagation(replica) for replica in cluster.replicas]
    key = api_key(cluster, "metric")
    changed_at = deactivate(cluster, cluster.replicas[1], key.credential.id)
    refused_everywhere_within_limit(
        cluster, "S6 deactivated (metrics)", lambda r: not accepted(r, key.secret), changed_at
    )
    for index in (0, 2):  # the replicas the change reached over the feed (the writer drops its own at once)
        deadline = time.monotonic() + 5
        while _propagation(cluster.replicas[index])[0] < before[index][0] + 1:
            assert time.monotonic() < deadline, f"replica {index + 1} reported no propagation delay"
            time.sleep(0.05)
        count, total = _propagation(cluster.replicas[index])
        mean = (total - before[index][1]) / (count - before[index][0])
        assert 0 <= mean < LIMIT_SECONDS, mean
