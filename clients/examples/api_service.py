"""Example HTTP API service: Watchword is its only source of identity.

Every route is guarded by WatchwordMiddleware alone; the handlers never look at credentials, only at the
typed principal the middleware puts on `request.state.watchword_principal`.

    .venv/bin/python clients/examples/api_service.py --watchword 127.0.0.1:50051 --port 8000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as StarletteRoute

from watchword_client import AsyncWatchwordClient, Principal, Route, WatchwordMiddleware

# Each path the service serves, and what Watchword is asked for it; anything else is refused (403).
ROUTES = [
    Route.public("GET", "/healthz"),
    Route("GET", "/v1/organizations/{organization_id}", "organization.get"),
    Route("GET", "/v1/applications/{application_id}/event_types", "event_type.list"),
    Route("POST", "/v1/applications/{application_id}/event_types", "event_type.create"),
]


def describe(principal: Principal) -> dict[str, object]:
    return {
        "id": principal.id,
        "kind": principal.kind.name.lower(),
        "organization_id": principal.organization_id,
        "application_id": principal.application_id,
        "credential_id": principal.credential_id,
    }


def build_app(client: AsyncWatchwordClient) -> WatchwordMiddleware:
    event_types: dict[str, list[str]] = defaultdict(list)  # a stand-in for the service's own database

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def organization(request: Request) -> JSONResponse:
        principal: Principal = request.state.watchword_principal
        return JSONResponse(
            {"organization_id": request.path_params["organization_id"], "principal": describe(principal)}
        )

    async def list_event_types(request: Request) -> JSONResponse:
        application_id = request.path_params["application_id"]
        principal: Principal = request.state.watchword_principal
        return JSONResponse({"event_types": event_types[application_id], "principal": describe(principal)})

    async def create_event_type(request: Request) -> JSONResponse:
        application_id = request.path_params["application_id"]
        principal: Principal = request.state.watchword_principal
        try:
            name = (await request.json())["name"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "invalid_request", "message": 'expected {"name": "..."}'}, 400)
        if not isinstance(name, str) or not name:
            return JSONResponse(
                {"error": "invalid_request", "message": "name must be a non-empty string"}, 400
            )
        event_types[application_id].append(name)
        return JSONResponse({"created": name, "principal": describe(principal)}, status_code=201)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.close()

    app = Starlette(
        routes=[
            StarletteRoute("/healthz", healthz),
            StarletteRoute("/v1/organizations/{organization_id}", organization),
            StarletteRoute(
                "/v1/applications/{application_id}/event_types", list_event_types, methods=["GET"]
            ),
            StarletteRoute(
                "/v1/applications/{application_id}/event_types", create_event_type, methods=["POST"]
            ),
        ],
        lifespan=lifespan,
    )
    return WatchwordMiddleware(app, client=client, routes=ROUTES)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--watchword", default=os.environ.get("WATCHWORD_ADDRESS", "127.0.0.1:50051"))
    parser.add_argument("--ca-file", default=os.environ.get("WATCHWORD_CA_FILE"), help="PEM roots: use TLS")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port (printed)")
    arguments = parser.parse_args(argv)
    client = AsyncWatchwordClient(arguments.watchword, root_ca_file=arguments.ca_file)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((arguments.host, arguments.port))
    host, port = listener.getsockname()[:2]
    print(f"api service listening on http://{host}:{port}", flush=True)
    server = uvicorn.Server(uvicorn.Config(build_app(client), log_level="warning"))
    server.run(sockets=[listener])
    sys.exit(0)


if __name__ == "__main__":
    main()
