"""The `watchword` command: serve, migrate, check the configuration, and call the admin service."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from watchword import config, workers
from watchword.app import serve
from watchword.compose.failures import StartupError
from watchword.compose.replica import bind_unbound_memberships, ensure_data_dir, route_table
from watchword.crypto import master_key
from watchword.decide.catalogue import Catalogue, CatalogueError
from watchword.ext_authz import envoy_routes
from watchword.identify import kinds
from watchword.observe import logging_setup
from watchword.routes import RouteTable
from watchword.store import database
from watchword.store.repository import Store
from watchword.v1 import admin_pb2, admin_pb2_grpc

# `--kind NAME`: each kind's CLI name, from the kinds table (domain values are the proto enum's).
KIND_NAMES = {name: int(kind) for name, kind in kinds.CLI_NAMES.items()}


CLIENT_AUTH_METHODS = {
    "client_secret_basic": admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_BASIC,
    "client_secret_post": admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_POST,
    "client_secret_jwt": admin_pb2.CLIENT_AUTH_METHOD_CLIENT_SECRET_JWT,
    "private_key_jwt": admin_pb2.CLIENT_AUTH_METHOD_PRIVATE_KEY_JWT,
}


_ISSUER_HELP = "the user's identity provider (`iss`); may be left out when exactly one is configured"


def _fail(message: str) -> int:
    print(f"watchword: {message}", file=sys.stderr)
    return 2


def _settings(args: argparse.Namespace) -> config.Settings:
    return config.load(args.config)


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.workers is not None:
        settings = settings.model_copy(update={"workers": args.workers})
    logging_setup.configure(settings.log_level, settings.effective_log_format)
    count = config.worker_count(settings.workers)
    if count > 1:
        workers.run(settings, count)  # a supervisor and `count` worker processes
    else:
        asyncio.run(serve(settings))
    return 0


def _worker_count(text: str) -> int:
    """--workers: the same bounds as the `workers` setting."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= config.MAX_WORKERS:
        raise argparse.ArgumentTypeError(
            f"{value} is out of range: 0 (one per usable core) to {config.MAX_WORKERS}"
        )
    return value


def _cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    issuers = [entry.issuer for entry in settings.issuers]
    if args.bind_memberships_to and args.bind_memberships_to not in issuers:
        return _fail(f"--bind-memberships-to must name a configured issuer; configured: {issuers}")
    ensure_data_dir(settings)
    database.migrate(settings.effective_database_url)
    print(f"database schema at revision {database.current_revision(settings.effective_database_url)}")
    bound = asyncio.run(_bind_memberships(settings.effective_database_url, issuers, args.bind_memberships_to))
    if bound:
        print(f"{bound} memberships stored before issuers were recorded are now bound to their issuer")
    return 0


async def _bind_memberships(url: str, issuers: list[str], chosen: str | None) -> int:
    store = Store.connect(url)
    try:
        return await bind_unbound_memberships(store, issuers, chosen or "")
    finally:
        await store.close()


def _cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    routes = route_table(settings, Catalogue.load(settings.catalogue_file))  # E1: catalogue actions
    if found := _envoy_route_problems(args.envoy_config, routes):
        return _fail("\n".join(found))
    if settings.master_key:
        master_key.MasterKey.from_text(settings.master_key, "WATCHWORD_MASTER_KEY")
    elif settings.master_key_file is not None:
        master_key.MasterKey.from_file(settings.master_key_file)
    print(f"configuration is valid (workers: {config.worker_count(settings.workers)})")
    return 0


def _envoy_route_problems(path: Path | None, routes: RouteTable) -> list[str]:
    """E1: the Envoy routes whose watchword.* context_extensions a Check would refuse (no file: none)."""
    if path is None:
        return []
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"cannot read the Envoy configuration {path} as JSON: {exc}"]
    return envoy_routes.problems(document, routes)


def _cmd_generate_master_key(_args: argparse.Namespace) -> int:
    print(master_key.generate())
    return 0


# ---- admin commands: thin calls to the admin service ----


# A server listening on every address is reached on loopback.
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1", "": "127.0.0.1"}  # noqa: S104 (not a bind)


def _server_address(settings: config.Settings) -> str:
    """Where a server started with these settings listens, as a client target."""
    if settings.port == 0:
        raise config.ConfigError(
            "the server's port is 0 (any free one): pass --address or set WATCHWORD_ADDRESS to the port it "
            "printed"
        )
    host = _ANY_ADDRESS.get(settings.host, settings.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"{host}:{settings.port}"


def _admin_target(args: argparse.Namespace) -> tuple[str, bool]:
    """The admin service's address and whether to use TLS: --address (or $WATCHWORD_ADDRESS), with TLS when
    a CA file is given; else where the server with this configuration and environment listens
    (WATCHWORD_HOST, WATCHWORD_PORT, the config file), with TLS when it serves TLS."""
    if args.address:
        return args.address, bool(args.ca_file)
    settings = _settings(args)
    return _server_address(settings), bool(args.ca_file) or settings.tls_cert_file is not None


def _channel(args: argparse.Namespace) -> grpc.Channel:
    address, tls = _admin_target(args)
    if tls:
        # Without a CA file, the system's trusted roots.
        roots = Path(args.ca_file).read_bytes() if args.ca_file else None
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(roots, *_client_key_pair(args)))
    return grpc.insecure_channel(address)


def _client_key_pair(args: argparse.Namespace) -> tuple[bytes | None, bytes | None]:
    """C10: the CLI's own client certificate, for a server that requires mutual TLS."""
    if not args.client_cert_file:
        return None, None
    return Path(args.client_key_file).read_bytes(), Path(args.client_cert_file).read_bytes()


def _print(message: Message) -> None:
    print(json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2))


def _timestamp(value: str | None) -> Timestamp | None:
    if not value:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(value))
    return stamp


# Each admin command: the AdminService method to call and how to build its request from the arguments.
AdminCall = tuple[str, Callable[[argparse.Namespace], Message]]

ADMIN_CALLS: dict[tuple[str, str], AdminCall] = {
    ("org", "create"): ("CreateOrganization", lambda a: admin_pb2.CreateOrganizationRequest(name=a.name)),
    ("org", "get"): ("GetOrganization", lambda a: admin_pb2.GetOrganizationRequest(id=a.id)),
    ("org", "list"): (
        "ListOrganizations",
        lambda a: admin_pb2.ListOrganizationsRequest(page_size=a.page_size, page_token=a.page_token),
    ),
    ("org", "delete"): ("DeleteOrganization", lambda a: admin_pb2.DeleteOrganizationRequest(id=a.id)),
    ("app", "create"): (
        "CreateApplication",
        lambda a: admin_pb2.CreateApplicationRequest(organization_id=a.org, name=a.name),
    ),
    ("app", "get"): ("GetApplication", lambda a: admin_pb2.GetApplicationRequest(id=a.id)),
    ("app", "list"): (
        "ListApplications",
        lambda a: admin_pb2.ListApplicationsRequest(
            organization_id=a.org, page_size=a.page_size, page_token=a.page_token
        ),
    ),
    ("app", "delete"): ("DeleteApplication", lambda a: admin_pb2.DeleteApplicationRequest(id=a.id)),
    ("member", "set"): (
        "SetMembership",
        lambda a: admin_pb2.SetMembershipRequest(
            membership=admin_pb2.Membership(
                organization_id=a.org, user_id=a.user, roles=a.role, issuer=a.issuer or ""
            )
        ),
    ),
    ("member", "list"): (
        "ListMemberships",
        lambda a: admin_pb2.ListMembershipsRequest(
            organization_id=a.org, page_size=a.page_size, page_token=a.page_token, issuer=a.issuer or ""
        ),
    ),
    ("member", "delete"): (
        "DeleteMembership",
        lambda a: admin_pb2.DeleteMembershipRequest(
            organization_id=a.org, user_id=a.user, issuer=a.issuer or ""
        ),
    ),
    ("credential", "create"): (
        "CreateCredential",
        lambda a: admin_pb2.CreateCredentialRequest(
            kind=KIND_NAMES[a.kind],
            organization_id=a.org or "",
            application_id=a.app or "",
            name=a.name,
            permissions=a.permission,
            event_types_allowed=a.allow_event,
            event_types_denied=a.deny_event,
            basic_auth_enabled=a.basic,
            expires_at=_timestamp(a.expires_at),
            client_auth_method=CLIENT_AUTH_METHODS.get(a.client_auth_method or "", 0),
            public_jwk=Path(a.public_jwk_file).read_text() if a.public_jwk_file else "",
            service_identity=a.service_identity or "",
        ),
    ),
    ("credential", "get"): ("GetCredential", lambda a: admin_pb2.GetCredentialRequest(id=a.id)),
    ("credential", "list"): (
        "ListCredentials",
        lambda a: admin_pb2.ListCredentialsRequest(
            organization_id=a.org or "",
            kind=KIND_NAMES[a.kind] if a.kind else 0,
            application_id=a.app or "",
            page_size=a.page_size,
            page_token=a.page_token,
        ),
    ),
    ("credential", "unused"): (
        "ListCredentials",
        lambda a: admin_pb2.ListCredentialsRequest(
            organization_id=a.org or "",
            kind=KIND_NAMES[a.kind] if a.kind else 0,
            unused_for_days=a.days,
            page_size=a.page_size,
            page_token=a.page_token,
        ),
    ),
    ("credential", "deactivate"): (
        "DeactivateCredential",
        lambda a: admin_pb2.DeactivateCredentialRequest(id=a.id),
    ),
    ("credential", "delete"): ("DeleteCredential", lambda a: admin_pb2.DeleteCredentialRequest(id=a.id)),
    ("credential", "rotate"): (
        "RotateCredential",
        lambda a: admin_pb2.RotateCredentialRequest(id=a.id, overlap_seconds=a.overlap_seconds),
    ),
    ("signing-key", "list"): ("ListSigningKeys", lambda a: admin_pb2.ListSigningKeysRequest()),
    ("signing-key", "rotate"): (
        "RotateSigningKey",
        lambda a: admin_pb2.RotateSigningKeyRequest(algorithm=a.algorithm or ""),
    ),
}


def _cmd_admin(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("WATCHWORD_ADMIN_TOKEN", "")
    if not token:
        return _fail("admin commands need an admin token: set WATCHWORD_ADMIN_TOKEN or pass --token")
    if bool(args.client_cert_file) != bool(args.client_key_file):
        return _fail("mutual TLS needs both --client-cert-file and --client-key-file")
    method, build_request = ADMIN_CALLS[(args.resource, args.verb)]
    with _channel(args) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        try:
            response = getattr(stub, method)(
                build_request(args), metadata=(("authorization", f"Bearer {token}"),), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            return _fail(f"{exc.code().name}: {exc.details()}")
    _print(response)
    return 0


def _add_paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--page-size", type=int, default=0)
    parser.add_argument("--page-token", default="")


def _admin_parsers(subparsers: Any) -> None:
    admin = subparsers.add_parser("admin", help="call the admin service of a running Watchword")
    admin.add_argument(
        "--address",
        default=os.environ.get("WATCHWORD_ADDRESS", ""),
        help="host:port (default: $WATCHWORD_ADDRESS, else where the server's own settings listen: "
        "WATCHWORD_HOST and WATCHWORD_PORT, 127.0.0.1:50051 by default)",
    )
    admin.add_argument("--token", default="", help="admin token (default: $WATCHWORD_ADMIN_TOKEN)")
    admin.add_argument("--ca-file", default=os.environ.get("WATCHWORD_CA_FILE", ""), help="CA bundle for TLS")
    admin.add_argument(
        "--client-cert-file",
        default=os.environ.get("WATCHWORD_CLIENT_CERT_FILE", ""),
        help='mutual TLS (tls_client_auth = "require"): the client certificate (PEM)',
    )
    admin.add_argument(
        "--client-key-file",
        default=os.environ.get("WATCHWORD_CLIENT_KEY_FILE", ""),
        help="its private key (PEM)",
    )
    admin.add_argument("--timeout", type=float, default=10.0, help="deadline per call, in seconds")
    resources = admin.add_subparsers(dest="resource", required=True)

    org = resources.add_parser("org", help="organizations").add_subparsers(dest="verb", required=True)
    org.add_parser("create").add_argument("name")
    org.add_parser("get").add_argument("id")
    _add_paging(org.add_parser("list"))
    org.add_parser("delete").add_argument("id")

    app = resources.add_parser("app", help="applications").add_subparsers(dest="verb", required=True)
    create = app.add_parser("create")
    create.add_argument("--org", required=True)
    create.add_argument("name")
    app.add_parser("get").add_argument("id")
    listing = app.add_parser("list")
    listing.add_argument("--org", required=True)
    _add_paging(listing)
    app.add_parser("delete").add_argument("id")

    member = resources.add_parser("member", help="memberships (S1)").add_subparsers(
        dest="verb", required=True
    )
    setting = member.add_parser("set")
    setting.add_argument("--org", required=True)
    setting.add_argument("--issuer", help=_ISSUER_HELP)
    setting.add_argument("--user", required=True, help="the user id the issuer gives (its `sub`)")
    setting.add_argument("--role", action="append", default=[])
    listing = member.add_parser("list")
    listing.add_argument("--org", required=True)
    listing.add_argument("--issuer", help="only this issuer's users")
    _add_paging(listing)
    deleting = member.add_parser("delete")
    deleting.add_argument("--org", required=True)
    deleting.add_argument("--issuer", help=_ISSUER_HELP)
    deleting.add_argument("--user", required=True)

    credential = resources.add_parser("credential", help="inbound credentials").add_subparsers(
        dest="verb", required=True
    )
    create = credential.add_parser("create", help="create a credential; its secret is printed once")
    create.add_argument("--kind", choices=sorted(KIND_NAMES), required=True)
    create.add_argument("--org")
    create.add_argument("--app")
    create.add_argument("--name", required=True)
    create.add_argument("--permission", action="append", default=[], help="an action name; repeat")
    create.add_argument("--allow-event", action="append", default=[], help="event type glob; repeat")
    create.add_argument("--deny-event", action="append", default=[], help="event type glob; repeat")
    create.add_argument("--basic", action="store_true", help="API keys: accept over HTTP Basic")
    create.add_argument("--expires-at", help="ISO 8601 with a time zone, e.g. 2027-01-01T00:00:00+00:00")
    create.add_argument(
        "--client-auth-method", choices=sorted(CLIENT_AUTH_METHODS), help="OAuth clients: the method"
    )
    create.add_argument(
        "--public-jwk-file", help="OAuth clients with private_key_jwt: their public JWK (JSON file)"
    )
    create.add_argument(
        "--service-identity",
        help="client certificates (C10): the SPIFFE id (spiffe://domain/path) or subject name to match",
    )
    credential.add_parser("get").add_argument("id")
    listing = credential.add_parser("list")
    listing.add_argument("--org")
    listing.add_argument("--kind", choices=sorted(KIND_NAMES))
    listing.add_argument("--app")
    _add_paging(listing)
    unused = credential.add_parser("unused", help="credentials neither used nor created in the last N days")
    unused.add_argument("--org", help="the organization (not for --kind admin-token)")
    unused.add_argument("--kind", choices=sorted(KIND_NAMES))
    unused.add_argument("--days", type=int, required=True, help="unused for at least this many days")
    _add_paging(unused)
    credential.add_parser("deactivate").add_argument("id")
    credential.add_parser("delete").add_argument("id")
    rotate = credential.add_parser("rotate", help="new secret, printed once")
    rotate.add_argument("id")
    rotate.add_argument("--overlap-seconds", type=int, default=0)

    signing = resources.add_parser("signing-key", help="Watchword's signing keys").add_subparsers(
        dest="verb", required=True
    )
    signing.add_parser("list")
    signing.add_parser(
        "rotate", help="a new key signs; the old one verifies until its tokens expire"
    ).add_argument("--algorithm", choices=["ES256", "EdDSA", "RS256"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="watchword", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML configuration file (default: $WATCHWORD_CONFIG)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    serve_parser = subparsers.add_parser(
        "serve", help="run the gRPC server (embedded defaults with no configuration)"
    )
    serve_parser.add_argument(
        "--workers",
        type=_worker_count,
        metavar="N",
        help="worker processes on the same ports (default: the `workers` setting; 0: one per usable core)",
    )
    migrate = subparsers.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument(
        "--bind-memberships-to",
        metavar="ISSUER",
        help="give memberships stored before issuers were recorded to this configured issuer (needed "
        "only with several [[issuers]]; with one, they are bound to it)",
    )
    check = subparsers.add_parser("check-config", help="validate the configuration and catalogue, then exit")
    check.add_argument(
        "--envoy-config",
        type=Path,
        metavar="FILE",
        help="also check the watchword.* context_extensions of every route in this Envoy configuration "
        "(JSON: a bootstrap, or the admin endpoint's /config_dump)",
    )
    subparsers.add_parser("generate-master-key", help="print a new master key")
    _admin_parsers(subparsers)
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": _cmd_serve,
    "migrate": _cmd_migrate,
    "check-config": _cmd_check_config,
    "generate-master-key": _cmd_generate_master_key,
    "admin": _cmd_admin,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (config.ConfigError, CatalogueError, StartupError, master_key.MasterKeyError) as exc:
        return _fail(str(exc))
    except database.DatabaseUrlError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
