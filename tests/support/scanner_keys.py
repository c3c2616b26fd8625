"""A secret scanner's key document (GitHub's `{"public_keys": [...]}` shape), written out or served by a
real HTTP server on 127.0.0.1, for the key hygiene tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def document(**keys: ec.EllipticCurvePrivateKey) -> bytes:
    entries = [
        {
            "key_identifier": name,
            "key": key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii"),
            "is_current": True,
        }
        for name, key in keys.items()
    ]
    return json.dumps({"public_keys": entries}).encode()


class KeyServer:
    """Serves `self.body` with `self.status` at /keys; counts the requests."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                self.send_response(owner.status)
                if owner.status == 302:
                    self.send_header("location", "http://127.0.0.1:1/elsewhere")
                self.send_header("content-length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/keys"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
