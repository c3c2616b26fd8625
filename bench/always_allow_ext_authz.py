"""The baseline for the Envoy benchmark: an ext_authz server that allows everything, built the way Watchword
is (grpc.aio, the same GuardInterceptor, HTTP/2 on loopback), so the difference is Watchword's own work.

    .venv/bin/python bench/always_allow_ext_authz.py [--port 0]

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

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def _allow() -> external_auth_pb2.CheckResponse:
    # The same shape as Watchword's allow (four principal headers), built once.
    headers = [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=name, value=value), append_action=_OVERWRITE
        )
        for name, value in (
            ("x-watchword-principal-id", "always-allow"),
            ("x-watchword-organization-id", "always-allow"),
            ("x-watchword-credential-kind", "static_token"),
            ("x-watchword-credential-id", "always-allow"),
        )
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


async def serve(port: int) -> None:
    server = grpc.aio.server(interceptors=[GuardInterceptor()])
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(AlwaysAllow(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"always-allow listening on 127.0.0.1:{bound}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
