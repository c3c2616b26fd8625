"""The baselines for the Envoy benchmark: ext_authz servers that allow everything, built the way Watchword's
front doors are, so the difference is Watchword's own work:

- gRPC mode (the default): grpc.aio, the same GuardInterceptor, HTTP/2 on loopback;
- `--http`: Envoy's HTTP mode (`http_service`), a check that answers at once served by Watchword's E4
  listener (`ext_authz/http_server.py`: llhttp through httptools, on the asyncio loop), in one process.

    .venv/bin/python bench/always_allow_ext_authz.py [--http] [--port 0]

Prints `always-allow listening on 127.0.0.1:PORT` once it serves. For benchmarks only: it allows every
request, so never put it in front of anything real.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2, status_pb2

from watchword.api.guard import GuardInterceptor
from watchword.ext_authz.http_server import CheckListener, Response
from watchword.listeners import ENVOY_MAX_HEADER_BYTES, tcp_listener

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
# The same shape as Watchword's allow: four principal headers.
_PRINCIPAL = (
    ("x-watchword-principal-id", "always-allow"),
    ("x-watchword-organization-id", "always-allow"),
    ("x-watchword-credential-kind", "static_token"),
    ("x-watchword-credential-id", "always-allow"),
)


def _allow() -> external_auth_pb2.CheckResponse:
    headers = [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=name, value=value), append_action=_OVERWRITE
        )
        for name, value in _PRINCIPAL
    ]
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK),
        ok_response=external_auth_pb2.OkHttpResponse(headers=headers),
    )


class AlwaysAllow(external_auth_pb2_grpc.AuthorizationServicer):
    def __init__(self) -> None:
        self._answer = _allow()

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        return self._answer


# As Watchword's HTTP allow: an empty body, and the headers Envoy must remove upstream.
_HTTP_ALLOW: Response = (
    200,
    [
        (b"content-length", b"0"),
        *((name.encode(), value.encode()) for name, value in _PRINCIPAL),
        (b"x-envoy-auth-headers-to-remove", b"x-watchword-internal-token"),
        (b"x-request-id", b"always-allow"),
    ],
    b"",
)


async def allow_http(method: str, target: bytes, headers: list[tuple[str, str]], peer: str) -> Response:
    """Envoy's HTTP ext_authz: 200 allows, and the headers are what Envoy passes upstream."""
    return _HTTP_ALLOW


async def _until_signalled() -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()


async def serve_grpc(port: int) -> None:
    server = grpc.aio.server(interceptors=[GuardInterceptor()])
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(AlwaysAllow(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"always-allow listening on 127.0.0.1:{bound}", flush=True)
    await _until_signalled()
    await server.stop(1)


async def serve_http(port: int) -> None:
    listener = tcp_listener("127.0.0.1", port)  # as Watchword binds its HTTP listeners
    server = CheckListener(allow_http, 1024, 60.0, ENVOY_MAX_HEADER_BYTES)
    await server.start(listener)
    print(f"always-allow listening on 127.0.0.1:{server.port}", flush=True)
    await _until_signalled()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--http", action="store_true", help="Envoy's HTTP mode instead of gRPC")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    args = parser.parse_args()
    asyncio.run(serve_http(args.port) if args.http else serve_grpc(args.port))


if __name__ == "__main__":
    main()
