"""Builders of what answers the calls: the external JWT verifier, the pipeline and its caches, the
outbound signer with its token client, the change feed that keeps the caches fresh, the ext_authz core."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from watchword.caches import CacheRegistry
from watchword.compose.failures import StartupError, on_close
from watchword.compose.hygiene import build_leak_reports, build_usage
from watchword.compose.observing import Observing, watch
from watchword.compose.replica import Prepared
from watchword.config import Settings
from watchword.config import options as config_options
from watchword.ext_authz.core import ExtAuthzCore
from watchword.hygiene.secret_scanning import LeakReports
from watchword.identify.client_certificate import CertificateSettings
from watchword.identify.external_jwt import ExternalJwtVerifier
from watchword.identify.jwks_source import JwksSourceError
from watchword.invalidation import for_replica, replica_caches
from watchword.issue.grants import Grants
from watchword.observe import metrics as observe_metrics
from watchword.observe.decisions import Recorder
from watchword.outbound.signer import OutboundSigner
from watchword.outbound.token_cache import TokenCache
from watchword.pipeline import Pipeline


@dataclass(frozen=True)
class Answering:
    """What the front doors answer with: the pipeline, the token grants, the outbound signer and the
    ext_authz core."""

    pipeline: Pipeline
    grants: Grants
    signer: OutboundSigner
    ext_authz: ExtAuthzCore
    leak_reports: LeakReports | None = None  # key hygiene: the leaked-key report endpoint's core


async def build_answering(
    stack: AsyncExitStack, settings: Settings, prepared: Prepared, observing: Observing
) -> Answering:
    external = await build_external_jwt(stack, settings)
    pipeline = build_pipeline(settings, prepared, external)
    build_usage(stack, settings, prepared, pipeline, observing)
    outbound = build_outbound(stack, settings, prepared)
    caches = replica_caches(pipeline, outbound.signer, prepared.keyring)
    # Store outages: known credentials keep answering from cache for a bounded time (S8).
    caches.serve_stale_during_outage(settings.store_outage_grace_seconds)
    await follow_change_feed(stack, settings, prepared, caches, observing.metrics)
    watch(observing, caches, outbound.tokens, external)
    grants = Grants(pipeline, prepared.keyring, config_options.token_settings(settings))
    ext_authz = build_ext_authz_core(settings, prepared, pipeline, observing.recorder)
    leak_reports = await build_leak_reports(stack, settings, prepared, observing)
    return Answering(pipeline, grants, outbound.signer, ext_authz, leak_reports)


async def build_external_jwt(stack: AsyncExitStack, settings: Settings) -> ExternalJwtVerifier | None:
    """C1: the trusted OIDC issuers' key sources (None: no issuer); a bad static JWKS stops the start."""
    if not settings.issuers:
        return None
    external = ExternalJwtVerifier(settings.issuers)
    on_close(stack, "the JWKS client", external.close)
    try:
        await external.start()
    except JwksSourceError as exc:
        raise StartupError(str(exc)) from None
    return external


def certificate_settings(settings: Settings) -> CertificateSettings | None:
    """C10's CAs, read at start: an unreadable bundle stops it with the reason."""
    try:
        return config_options.certificate_settings(settings)
    except ValueError as exc:
        raise StartupError(f"tls_client_ca_file: {exc}") from None


def build_pipeline(settings: Settings, prepared: Prepared, external: ExternalJwtVerifier | None) -> Pipeline:
    """The request pipeline and its caches, signing with the replica's active key."""
    pipeline = Pipeline(
        prepared.store,
        prepared.catalogue,
        config_options.transport_settings(settings),
        prepared.master_key,
        config_options.jwt_settings(settings),
        external,
        cache_ttl=settings.cache_ttl_seconds,
        cache_max_entries=settings.cache_max_entries,
        certificates=certificate_settings(settings),
    )
    pipeline.signing_keys.local = prepared.keyring.active
    return pipeline


@dataclass(frozen=True)
class Outbound:
    """O1-O6: the signer and the token client it fetches access tokens with."""

    tokens: TokenCache
    signer: OutboundSigner


def build_outbound(stack: AsyncExitStack, settings: Settings, prepared: Prepared) -> Outbound:
    tokens = TokenCache(guard=config_options.network_guard(settings))
    on_close(stack, "the outbound token client", tokens.close)
    signer = OutboundSigner(prepared.store, prepared.master_key, tokens, settings.cache_ttl_seconds)
    return Outbound(tokens, signer)


async def follow_change_feed(
    stack: AsyncExitStack,
    settings: Settings,
    prepared: Prepared,
    caches: CacheRegistry,
    metrics: observe_metrics.Metrics,
) -> None:
    """Other replicas' changes drop this replica's cached entries (the LISTEN connection on PostgreSQL,
    the change log on SQLite); each drop's delay is measured."""
    bus = for_replica(prepared.store, caches, settings.effective_database_url)
    on_close(stack, "the change feed", bus.stop)  # stopping one that has not started does nothing
    await bus.start()
    bus.delay_observers.append(lambda _change, seconds: metrics.revocation_delay.observe(seconds))


def build_ext_authz_core(
    settings: Settings, prepared: Prepared, pipeline: Pipeline, recorder: Recorder
) -> ExtAuthzCore:
    """E1/E4: the decision core shared by Envoy's gRPC Check and the HTTP ext_authz front door."""
    options = config_options.ext_authz_settings(settings, prepared.keyring)
    return ExtAuthzCore(
        pipeline, prepared.routes, config_options.transport_settings(settings), options, recorder
    )
