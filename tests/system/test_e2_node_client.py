"""E2: the proto compiles for other languages: node's @grpc/grpc-js and @grpc/proto-loader call
Authenticate and Authorize on a running server with nothing but the .proto files."""

from __future__ import annotations

import json
import shutil
import subprocess

from support.paths import TESTS
from support.tenants import APPLICATION_SECRET, create_credential, make_tenant

CLIENT_DIR = TESTS / "node_client"


def _node() -> str:
    node = shutil.which("node")
    assert node, "node is missing: install Node.js 20 or newer (the E2 test runs node's grpc-js)"
    assert (CLIENT_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir(), (
        "the node packages are missing: run `npm ci --prefix tests/node_client` (.ci/run does)"
    )
    return node


def test_e2_node_grpc_js_calls_authenticate_and_authorize(server) -> None:
    tenant = make_tenant(server, "node")
    secret = create_credential(
        server,
        kind=APPLICATION_SECRET,
        organization_id=tenant.organization_id,
        application_id=tenant.application_id,
        name="node",
    )
    result = subprocess.run(
        [_node(), str(CLIENT_DIR / "client.mjs"), server.address, secret.secret, tenant.application_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    principal = answer["authenticated"]["principal"]
    assert principal["kind"] == "CREDENTIAL_KIND_APPLICATION_SECRET"
    assert principal["application_id"] == tenant.application_id
    assert (answer["own"]["allowed"], answer["own"]["rule"]) == (True, "S2")
    assert (answer["listing"]["allowed"], answer["listing"]["reason"]) == (False, "action_level_not_allowed")
