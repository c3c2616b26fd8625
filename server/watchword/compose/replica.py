"""What a replica loads before any worker serves: the catalogue, the routes, the master key, the store
and the signing key ring (`prepare` once per replica, `attach` in each worker process)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from watchword import secret_format
from watchword.compose.failures import StartupError, on_close, store_reachable
from watchword.config import Settings
from watchword.crypto.master_key import MasterKey
from watchword.decide.catalogue import Catalogue
from watchword.domain import CredentialKind
from watchword.issue.keyring import IssuingKeyring, SigningKeyError
from watchword.routes import RouteError, RouteTable
from watchword.store import database, models
from watchword.store.repository import Store

log = logging.getLogger("watchword")


@dataclass
class Prepared:
    """What a worker serves from. `admin_token` is the bootstrap admin token when this start minted it
    (to be shown once)."""

    catalogue: Catalogue
    routes: RouteTable
    master_key: MasterKey
    store: Store
    keyring: IssuingKeyring
    admin_token: str | None = None


# `prepare` or `attach`: each opens the store and pushes its closer on the stack it is given.
LoadReplica = Callable[[AsyncExitStack, Settings], Awaitable[Prepared]]


async def prepare(stack: AsyncExitStack, settings: Settings) -> Prepared:
    """What a replica does once, before any worker serves: the data directory, the master key, the
    schema, the signing key, unbound memberships and the bootstrap admin token."""
    catalogue = Catalogue.load(settings.catalogue_file)
    routes = route_table(settings, catalogue)
    ensure_data_dir(settings)
    master_key = load_master_key(settings)
    url = settings.effective_database_url
    with store_reachable(url):
        store = await open_store(stack, settings)
        await check_schema(settings)
        keyring = await load_keyring(store, master_key, settings)
        await bind_unbound_memberships(store, [entry.issuer for entry in settings.issuers])
        admin_token = await bootstrap_admin_token(store)
    return Prepared(catalogue, routes, master_key, store, keyring, admin_token)


async def attach(stack: AsyncExitStack, settings: Settings) -> Prepared:
    """What a worker process loads for itself once the supervisor has prepared the replica: no
    migration, no bootstrap, no key creation (the supervisor did them)."""
    catalogue = Catalogue.load(settings.catalogue_file)
    routes = route_table(settings, catalogue)
    master_key = load_master_key(settings)
    with store_reachable(settings.effective_database_url):
        store = await open_store(stack, settings)
        keyring = await load_keyring(store, master_key, settings)
    return Prepared(catalogue, routes, master_key, store, keyring)


def ensure_data_dir(settings: Settings) -> None:
    """The data directory holds the embedded store and the development master key: owner only."""
    needed = settings.uses_embedded_store or (not settings.master_key and settings.master_key_file is None)
    if needed and not settings.data_dir.exists():
        settings.data_dir.mkdir(mode=0o700, parents=True)


def route_table(settings: Settings, catalogue: Catalogue) -> RouteTable:
    """E1: the configured routes, checked against the catalogue."""
    try:
        return RouteTable.build(settings.routes, catalogue)
    except RouteError as exc:
        raise StartupError(f"invalid route table: {exc}") from None


def load_master_key(settings: Settings) -> MasterKey:
    if settings.master_key:
        return MasterKey.from_text(settings.master_key, "WATCHWORD_MASTER_KEY")
    if settings.master_key_file is not None:
        return MasterKey.from_file(settings.master_key_file)
    # Development mode only (production without a key is refused by the settings' validation).
    path = settings.data_dir / "master.key"
    if path.exists():
        return MasterKey.from_file(path)
    log.warning("development mode: created a master key at %s; production needs its own", path)
    return MasterKey.create_file(path)


async def open_store(stack: AsyncExitStack, settings: Settings) -> Store:
    """The store, every call of it bounded in time: a hung database is an outage, not a hang."""
    store = bounded_store(settings.effective_database_url, settings.store_timeout_seconds)
    on_close(stack, "the store", store.close)
    return store


def bounded_store(url: str, timeout: float) -> Store:
    store = Store(database.create_engine(url, timeout))
    database.bound_calls(store, database.TimeBound(timeout, database.engine_probe(store.engine)))
    return store


async def check_schema(settings: Settings) -> None:
    """Bring the schema up to date (embedded SQLite) or check that it is (PostgreSQL, where `watchword
    migrate` runs once per release, not once per replica)."""
    url = settings.effective_database_url
    if settings.uses_embedded_store:
        await database.migrate_async(url)
        return
    current = await asyncio.to_thread(database.current_revision, url)
    if current != database.head_revision():
        raise StartupError(
            f"the database schema is at revision {current or 'none'}, this release needs "
            f"{database.head_revision()}: run `watchword migrate` with the same configuration first"
        )


async def load_keyring(store: Store, master_key: MasterKey, settings: Settings) -> IssuingKeyring:
    """The signing key ring, with its active key (created on the very first start)."""
    keyring = IssuingKeyring.from_settings(store, master_key, settings)
    try:
        await keyring.load()
    except SigningKeyError as exc:
        raise StartupError(f"cannot use the stored signing key: {exc}") from None
    return keyring


async def bind_unbound_memberships(store: Store, issuers: Sequence[str], chosen: str = "") -> int:
    """Migration 0006 leaves memberships stored before issuers were recorded unbound: they grant nothing.
    They are bound to `chosen`, else to the only configured issuer (what such a row always meant). With
    several issuers and none chosen they stay unbound, and a warning says how to bind them (S1, S7)."""
    issuer = chosen or (issuers[0] if len(issuers) == 1 else "")
    if issuer:
        bound = await store.bind_unbound_memberships(issuer)
        if bound:
            log.info("%d memberships stored before issuers were recorded are now %r's", bound, issuer)
        return bound
    unbound = await store.count_unbound_memberships() if issuers else 0  # without issuers none is used
    if unbound:
        log.warning(
            "%d memberships were stored before issuers were recorded and grant nothing until bound to one: "
            "run `watchword migrate --bind-memberships-to ISSUER` with the same configuration",
            unbound,
        )
    return 0


async def bootstrap_admin_token(store: Store) -> str | None:
    """The first start mints an admin token and returns it (to be shown once); later starts return None."""
    if await store.count_credentials(int(CredentialKind.ADMIN_TOKEN)) > 0:
        return None
    credential_id = secret_format.new_credential_id()
    secret = secret_format.mint(CredentialKind.ADMIN_TOKEN, credential_id)
    await store.add_credential(
        models.Credential(
            id=credential_id,
            kind=int(CredentialKind.ADMIN_TOKEN),
            name="bootstrap admin token",
            secret_hash=secret_format.hash_secret(secret),
            secret_hint=secret_format.hint(secret),
        )
    )
    return secret
