"""The scope table's cases, fewer of them, through the real server with real credentials of every kind:
for each kind one allowed request on its own resource, one denied in the same organization (a sibling
resource or an action it was not granted), one denied in another organization. Then the same cases as
one AuthorizeBatch (T7).

C1 comes from a local OIDC issuer (roles and organization read from claims), C2/C3/C5 are Bearer
secrets, C4 a tenant-signed HS256 JWT, C6 the connector's header pair, C7 a subject token signed with
the connector secret, C8 a token signed with the server's own key, C9 an OAuth client over Basic.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import pytest

from watchword import reasons
from watchword.v1 import auth_pb2, common_pb2

from support.jwks_server import JwksServer
from support.server import WatchwordProcess
from support.tenants import API_KEY, APPLICATION_SECRET, STATIC_TOKEN, create_credential, make_tenant
from support.tokens import watchword_token

TIMEOUT = 10
AUDIENCE = "hook0-api"
SubjectRef = tuple[str, str]  # ("user" | "account", id)


@dataclass(frozen=True)
class Case:
    kind: str
    place: str
    action: str
    # Resource fields; "A", "B" name the two organizations and "A1", "A2", "B1" their applications.
    resource: Mapping[str, str | SubjectRef]
    allowed: bool
    reason: str
    rule: str

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.place}-{self.action}"


U1, U2 = ("user", "u-1"), ("user", "u-2")
# Resources by name; the server looks an application's organization up itself.
A, B = {"organization_id": "A"}, {"organization_id": "B"}
A1, A2, B1 = {"application_id": "A1"}, {"application_id": "A2"}, {"application_id": "B1"}
SEND_A1 = {**A1, "event_type": "order.created"}
AUDIT_A2 = {**A2, "event_type": "order.internal.audit"}
SEND_B1 = {**B1, "event_type": "order.created"}
TRUCK_A, CAR_A = {**A, "object_id": "truck-12"}, {**A, "object_id": "car-1"}
TRUCK_B = {**B, "object_id": "truck-12"}
U1_A, U2_A, U1_B = {**A, "subject": U1}, {**A, "subject": U2}, {**B, "subject": U1}
OUTSIDE = "resource_not_in_scope"

CASES = [
    # C1: a user who is editor in A (from the token's claims).
    Case("C1", "own", "event_type.create", A1, True, "allowed", "S1"),
    Case("C1", "sibling", "organization.delete", A, False, "role_not_granted", "S1"),
    Case("C1", "other-org", "application.list", B, False, "not_a_member", "S1"),
    # C2: application secret of A1.
    Case("C2", "own", "event_type.create", A1, True, "allowed", "S2"),
    Case("C2", "sibling", "subscription.list", A2, False, OUTSIDE, "S2"),
    Case("C2", "other-org", "event_type.create", B1, False, OUTSIDE, "S7"),
    # C3: static token {event.send, application.get}, denying *.internal.*.
    Case("C3", "own", "event.send", SEND_A1, True, "allowed", "S3"),
    Case("C3", "sibling", "event.send", AUDIT_A2, False, "event_type_denied", "S3"),
    Case("C3", "other-org", "application.get", B1, False, OUTSIDE, "S7"),
    # C4: tenant token {object.publish} for truck-*.
    Case("C4", "own", "object.publish", TRUCK_A, True, "allowed", "S4"),
    Case("C4", "sibling", "object.publish", CAR_A, False, "object_not_in_patterns", "S4"),
    Case("C4", "other-org", "object.publish", TRUCK_B, False, OUTSIDE, "S7"),
    # C5: API key {event.send, application.list, event_type.list}, allowing order.*, denying order.internal.*.
    Case("C5", "own", "event.send", SEND_A1, True, "allowed", "S3"),
    Case("C5", "sibling", "event.send", AUDIT_A2, False, "event_type_denied", "S3"),
    Case("C5", "other-org", "application.list", B, False, OUTSIDE, "S7"),
    # C6: connector {track, traits, alias}: any subject of its organization, nothing else.
    Case("C6", "own", "track", U1_A, True, "allowed", "S3"),
    Case("C6", "sibling", "event.send", AUDIT_A2, False, "action_not_granted", "S3"),
    Case("C6", "other-org", "track", U1_B, False, OUTSIDE, "S7"),
    # C7: subject token of user u-1, signed with the connector's secret.
    Case("C7", "own", "traits", U1_A, True, "allowed", "S5"),
    Case("C7", "sibling", "traits", U2_A, False, "subject_mismatch", "S5"),
    Case("C7", "other-org", "traits", U1_B, False, OUTSIDE, "S7"),
    # C8: Watchword token with scope event.send.
    Case("C8", "own", "event.send", SEND_A1, True, "allowed", "S3"),
    Case("C8", "sibling", "application.list", A, False, "action_not_granted", "S3"),
    Case("C8", "other-org", "event.send", SEND_B1, False, OUTSIDE, "S7"),
    # C9: an OAuth client authenticates, but no rule lets it act on resources.
    Case("C9", "own", "application.list", A, False, "no_rule_allows", "S8"),
    Case("C9", "other-org", "application.list", B, False, OUTSIDE, "S7"),
]


@pytest.fixture(scope="module")
def idp() -> Iterator[JwksServer]:
    with JwksServer(algorithms=("ES256",)) as issuer:
        yield issuer


@pytest.fixture(scope="module")
def ww(tmp_path_factory: pytest.TempPathFactory, idp: JwksServer) -> Iterator[WatchwordProcess]:
    """Its own server: C1 needs an [[issuers]] entry that the session server does not have."""
    directory = tmp_path_factory.mktemp("scope")
    config = directory / "watchword.toml"
    config.write_text(
        f'[[issuers]]\nissuer = "{idp.issuer}"\naudiences = ["{AUDIENCE}"]\njwks_uri = "{idp.jwks_uri}"\n'
        'allow_insecure_http = true\nroles_claim = "roles"\norganization_claim = "org"\n'
    )
    with WatchwordProcess(directory / "data", args=["--config", str(config)]) as process:
        yield process


@pytest.fixture(scope="module")
def names(ww: WatchwordProcess) -> dict[str, str]:
    a, b = make_tenant(ww, "scope-a"), make_tenant(ww, "scope-b")
    return {
        "A": a.organization_id,
        "A1": a.application_id,
        "A2": a.other_application_id,
        "B": b.organization_id,
        "B1": b.application_id,
    }


def _http(*headers: tuple[str, str]) -> common_pb2.CredentialSource:
    return common_pb2.CredentialSource(
        http=common_pb2.HttpRequest(
            method="POST", path="/v1/x", headers=[common_pb2.KeyValue(name=n, value=v) for n, v in headers]
        )
    )


def _bearer(token: str) -> common_pb2.CredentialSource:
    return _http(("Authorization", f"Bearer {token}"))


@pytest.fixture(scope="module")
def credentials(
    ww: WatchwordProcess, idp: JwksServer, names: dict[str, str]
) -> dict[str, common_pb2.CredentialSource]:
    org = names["A"]
    now = int(time.time())
    user_token = idp.sign(
        {
            "iss": idp.issuer,
            "aud": AUDIENCE,
            "sub": "user-1",
            "iat": now,
            "exp": now + 600,
            "roles": ["editor"],
            "org": org,
        }
    )
    app_secret = create_credential(
        ww, kind=APPLICATION_SECRET, organization_id=org, application_id=names["A1"], name="c2"
    )
    static = create_credential(
        ww,
        kind=STATIC_TOKEN,
        organization_id=org,
        name="c3",
        permissions=["event.send", "application.get"],
        event_types_denied=["*.internal.*"],
    )
    signing = create_credential(
        ww,
        kind=common_pb2.CREDENTIAL_KIND_TENANT_SIGNING_SECRET,
        organization_id=org,
        name="c4",
        permissions=["object.publish", "object.read"],
    )
    tenant_token = jwt.encode(
        {
            "sub": "tracker",
            "iat": now,
            "exp": now + 600,
            "iss": "tenant.example",
            "jti": uuid.uuid4().hex,
            "permissions": ["object.publish"],
            "data_provider_patterns": ["truck-*"],
        },
        signing.secret.encode(),
        algorithm="HS256",
        headers={"kid": signing.credential.id},
    )
    key = create_credential(
        ww,
        kind=API_KEY,
        organization_id=org,
        name="c5",
        permissions=["event.send", "application.list", "event_type.list"],
        event_types_allowed=["order.*"],
        event_types_denied=["order.internal.*"],
    )
    connector = create_credential(
        ww,
        kind=common_pb2.CREDENTIAL_KIND_CONNECTOR,
        organization_id=org,
        name="c6",
        permissions=["track", "traits", "alias"],
    )
    subject_token = jwt.encode(
        {
            "iss": connector.credential.id,
            "iat": now,
            "exp": now + 600,
            "io.hull.asUser": {"external_id": "u-1"},
        },
        connector.secret.encode(),
        algorithm="HS256",
    )
    client = create_credential(
        ww,
        kind=common_pb2.CREDENTIAL_KIND_OAUTH_CLIENT,
        organization_id=org,
        name="c9",
        permissions=["application.list"],
        client_auth_method=1,  # client_secret_basic
    )
    basic = base64.b64encode(f"{client.credential.id}:{client.secret}".encode()).decode()
    return {
        "C1": _bearer(user_token),
        "C2": _bearer(app_secret.secret),
        "C3": _bearer(static.secret),
        "C4": _bearer(tenant_token),
        "C5": _bearer(key.secret),
        "C6": _http(("Hull-App-Id", connector.credential.id), ("Hull-Access-Token", connector.secret)),
        "C7": _http(("Hull-App-Id", connector.credential.id), ("Hull-Access-Token", subject_token)),
        "C8": _bearer(watchword_token(ww.data_dir, org, scope="event.send")),
        "C9": _http(("Authorization", f"Basic {basic}")),
    }


def _resource(fields: Mapping[str, str | SubjectRef], names: dict[str, str]) -> auth_pb2.Resource:
    resource = auth_pb2.Resource()
    for field, value in fields.items():
        if isinstance(value, tuple):
            kind = common_pb2.Subject.TYPE_USER if value[0] == "user" else common_pb2.Subject.TYPE_ACCOUNT
            resource.subject.CopyFrom(common_pb2.Subject(type=kind, id=value[1]))
        else:
            setattr(resource, field, names.get(value, value))
    return resource


def _request(case: Case, credentials: dict, names: dict[str, str]) -> auth_pb2.AuthorizeRequest:
    return auth_pb2.AuthorizeRequest(
        credential=credentials[case.kind], action=case.action, resource=_resource(case.resource, names)
    )


def _check(case: Case, response: auth_pb2.AuthorizeResponse) -> None:
    decision = response.decision
    assert (decision.allowed, decision.reason, decision.rule) == (case.allowed, case.reason, case.rule), (
        decision.message,
        response.refusal,
    )
    # Every case authenticated as the kind it names: the decision is about scope, not a refusal.
    assert response.principal.kind == int(case.kind[1:])


def _cases(*kinds: str) -> list[Any]:
    return [pytest.param(case, id=case.id) for case in CASES if case.kind in kinds]


def _authorize(ww: WatchwordProcess, case: Case, credentials: dict, names: dict[str, str]) -> None:
    _check(case, ww.auth().Authorize(_request(case, credentials, names), timeout=TIMEOUT))


@pytest.mark.parametrize("case", _cases("C1"))
def test_s1_user_through_the_server(ww, credentials, names, case: Case) -> None:
    _authorize(ww, case, credentials, names)


@pytest.mark.parametrize("case", _cases("C2"))
def test_s2_application_secret_through_the_server(ww, credentials, names, case: Case) -> None:
    _authorize(ww, case, credentials, names)


@pytest.mark.parametrize("case", _cases("C3", "C5", "C6", "C8"))
def test_s3_grants_and_event_globs_through_the_server(ww, credentials, names, case: Case) -> None:
    _authorize(ww, case, credentials, names)


@pytest.mark.parametrize("case", _cases("C4"))
def test_s4_tenant_token_through_the_server(ww, credentials, names, case: Case) -> None:
    _authorize(ww, case, credentials, names)


@pytest.mark.parametrize("case", _cases("C7"))
def test_s5_subject_token_through_the_server(ww, credentials, names, case: Case) -> None:
    _authorize(ww, case, credentials, names)


@pytest.mark.parametrize("case", _cases("C9"))
def test_s8_oauth_client_through_the_server(ww, credentials, names, case: Case) -> None:
    _authorize(ww, case, credentials, names)


def test_t7_s7_one_batch_decides_every_case_as_one_call_would(ww, credentials, names) -> None:
    batch = auth_pb2.AuthorizeBatchRequest(entries=[_request(case, credentials, names) for case in CASES])
    results = ww.auth().AuthorizeBatch(batch, timeout=TIMEOUT).results
    assert len(results) == len(CASES)
    for case, result in zip(CASES, results, strict=True):
        _check(case, result)
    assert not any(
        r.decision.allowed for case, r in zip(CASES, results, strict=True) if case.place == "other-org"
    )


def test_s3_a_token_minted_from_an_api_key_keeps_the_key_s_deny_list(ww, names) -> None:
    org = names["A"]
    key = create_credential(
        ww,
        kind=API_KEY,
        organization_id=org,
        name="exchanged",
        permissions=["event.send"],
        event_types_denied=["order.internal.*"],
    )
    # What the I1 exchange hands out: a token naming the key it was minted from, whose event filters it
    # must keep obeying (a token must never reach further than the key it came from).
    token = watchword_token(ww.data_dir, org, scope="event.send", credential_id=key.credential.id)
    request = auth_pb2.AuthorizeRequest(
        credential=_bearer(token),
        action="event.send",
        resource=_resource({**A1, "event_type": "order.internal.audit"}, names),
    )
    decision = ww.auth().Authorize(request, timeout=TIMEOUT).decision
    assert (decision.allowed, decision.reason) == (False, reasons.EVENT_TYPE_DENIED)


@pytest.mark.parametrize(
    "event_type",
    [
        "order.INTERNAL.audit",
        "order.internal\u200b.audit",
        "order.internal.audit\n",
        "order.*",
        "order.[i]nternal.x",
    ],
)
def test_s3_spellings_that_could_slip_past_a_deny_pattern_are_refused_through_the_server(
    ww, credentials, names, event_type: str
) -> None:
    for kind in ("C3", "C5"):  # C3 denies *.internal.*, C5 allows order.* and denies order.internal.*
        request = auth_pb2.AuthorizeRequest(
            credential=credentials[kind],
            action="event.send",
            resource=_resource({**A1, "event_type": event_type}, names),
        )
        decision = ww.auth().Authorize(request, timeout=TIMEOUT).decision
        assert (decision.allowed, decision.reason, decision.rule) == (False, reasons.EVENT_TYPE_INVALID, "S3")


@pytest.mark.parametrize(
    "pattern", ["Order.Internal.*", "order.internal.*\n", "order\u200b.*", "order..*", ""]
)
def test_s3_event_patterns_outside_the_canonical_form_are_refused_at_creation(
    ww, names, pattern: str
) -> None:
    import grpc

    with pytest.raises(grpc.RpcError) as caught:
        create_credential(
            ww,
            kind=API_KEY,
            organization_id=names["A"],
            name="bad-pattern",
            permissions=["event.send"],
            event_types_denied=[pattern],
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "event_types_denied[0]" in (caught.value.details() or "")


@pytest.mark.parametrize(
    "object_id", ["truck-1/../secret", "truck-1/x", "truck-..", "truck-\u200b1", "truck-1\x07"]
)
def test_s4_object_ids_that_look_like_paths_are_refused_through_the_server(
    ww, credentials, names, object_id: str
) -> None:
    request = auth_pb2.AuthorizeRequest(
        credential=credentials["C4"],
        action="object.publish",
        resource=_resource({**A, "object_id": object_id}, names),
    )
    decision = ww.auth().Authorize(request, timeout=TIMEOUT).decision
    assert (decision.allowed, decision.reason, decision.rule) == (False, reasons.OBJECT_ID_INVALID, "S4")
