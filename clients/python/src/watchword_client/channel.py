"""How a client reaches Watchword: target, TLS, caller token and default deadline, shared by both clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grpc

from watchword_client.retry import RetryPolicy

DEFAULT_DEADLINE_SECONDS = 2.0
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ChannelSettings:
    """Everything a client needs to open its one channel and to make calls on it."""

    target: str
    credentials: grpc.ChannelCredentials | None = field(repr=False)
    metadata: Metadata = field(repr=False)
    deadline: float
    retry: RetryPolicy
    options: tuple[tuple[str, object], ...] = ()

    def sync_channel(self) -> grpc.Channel:
        if self.credentials is None:
            return grpc.insecure_channel(self.target, options=self.options)
        return grpc.secure_channel(self.target, self.credentials, options=self.options)

    def aio_channel(self) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(self.target, options=self.options)
        return grpc.aio.secure_channel(self.target, self.credentials, options=self.options)


def channel_settings(
    target: str,
    *,
    tls: bool,
    root_ca_file: str | Path | None,
    channel_credentials: grpc.ChannelCredentials | None,
    token: str | None,
    deadline: float,
    retry: RetryPolicy | None,
    options: tuple[tuple[str, object], ...],
) -> ChannelSettings:
    if not target:
        raise ValueError("target is required, e.g. '127.0.0.1:50051'")
    if deadline <= 0:
        raise ValueError("deadline must be positive (seconds)")
    if channel_credentials is not None and root_ca_file is not None:
        raise ValueError("give either root_ca_file or channel_credentials, not both")
    credentials = channel_credentials
    if root_ca_file is not None:
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(root_ca_file).read_bytes())
    elif tls and credentials is None:
        credentials = grpc.ssl_channel_credentials()  # the system's trusted roots
    if token is not None and not token.strip():
        raise ValueError("token is empty")
    metadata: Metadata = (("authorization", f"Bearer {token}"),) if token else ()
    return ChannelSettings(target, credentials, metadata, deadline, retry or RetryPolicy(), options)
