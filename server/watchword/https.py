"""HTTPS for the HTTP listeners (the OAuth endpoints and E4's ext_authz door), C10 over Watchword's own TLS.

`server_context` is the one way a listener's TLS is set up: TLS 1.2 or later (as the gRPC port: grpc's
default floor), Python's default server ciphers (forward-secret AEAD suites, no compression, no
renegotiation), `http/1.1` offered by ALPN, and, with a client CA bundle, a client certificate requested
(`optional`: verified when sent, the handshake goes on without one) or required (`require`: the handshake
fails without one). The handshake itself refuses a certificate that is expired, not yet valid, of another
CA or not for TLS clients; what passes is verified again, and mapped to a service identity, by C10's
verifier (`identify/client_certificate.py`), which also reads its SPIFFE id or subject.

uvicorn does not hand the peer's certificate to the application: `ClientCertificateScope` (mixed into
the HTTP protocol class uvicorn is given, `listeners.uvicorn_options`) reads it once per connection and
puts it in each request's scope as the ASGI TLS extension says (`scope["extensions"]["tls"]`,
`client_cert_chain`: PEM strings, the client's own certificate first). Python before 3.13 gives the
leaf only: a client certificate issued by an intermediate CA is then re-verified against
`tls_client_ca_file` alone, so put the intermediate there too.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Literal

ClientAuth = Literal["none", "optional", "require"]
# How long a client may take to finish its TLS handshake (as the gRPC port's handshake timeout).
HANDSHAKE_TIMEOUT_SECONDS = 10.0
TLS_EXTENSION = "tls"
_VERIFY_MODES = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "require": ssl.CERT_REQUIRED}

Scope = MutableMapping[str, Any]
Asgi = Callable[[Scope, Any, Any], Awaitable[None]]


def server_context(
    certificate: Path, key: Path, client_ca: Path | None = None, client_auth: ClientAuth = "none"
) -> ssl.SSLContext:
    """A server context for one listener. ssl.SSLError or OSError when a file does not load."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    context.set_alpn_protocols(["http/1.1"])
    if client_auth != "none" and client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = _VERIFY_MODES[client_auth]
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def key_pair_problem(certificate: Path, key: Path) -> str | None:
    """Why a certificate and its key cannot serve TLS (None: they can): unreadable, not PEM, or a key
    that is not the certificate's. Checked with the settings, so every port's start (and check-config)
    says so, instead of grpc's "cannot listen"."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certificate, key)
    except ssl.SSLError as exc:
        return f"not a certificate and its private key ({exc.reason or exc})"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def peer_chain(transport: Any) -> tuple[str, ...]:
    """The PEM certificates the client proved on this TLS connection, its own first (empty: none, or no
    TLS). The verified chain where Python gives it (3.13+), else the leaf alone."""
    tls = transport.get_extra_info("ssl_object")
    if tls is None:
        return ()
    chain = getattr(tls, "get_verified_chain", None)
    if chain is not None:
        try:
            return tuple(certificate.public_bytes() for certificate in chain() or ())
        except ssl.SSLError:
            return ()
    leaf = tls.getpeercert(binary_form=True)
    return (ssl.DER_cert_to_PEM_cert(leaf),) if leaf else ()


def client_certificate(scope: Scope) -> str:
    """The client's certificate chain of a request as one PEM text (empty: none): the ASGI TLS extension."""
    tls = scope.get("extensions", {}).get(TLS_EXTENSION)
    if not tls:
        return ""
    return "".join(tls.get("client_cert_chain") or ())


def with_chain(app: Asgi, chain: tuple[str, ...]) -> Asgi:
    """`app`, with the connection's client certificate chain in each request's scope."""

    async def app_with_chain(scope: Scope, receive: Any, send: Any) -> None:
        extensions = scope.setdefault("extensions", {})
        extensions[TLS_EXTENSION] = {"client_cert_chain": chain, "server_cert": None}
        await app(scope, receive, send)

    return app_with_chain


class ClientCertificateScope:
    """Mixed in before uvicorn's HTTP protocol class on a TLS listener: the connection's client
    certificate (read once, when the connection is made, after its handshake) in every request's scope."""

    app: Asgi

    def connection_made(self, transport: Any) -> None:
        # Every TLS connection carries the extension, with an empty chain when the client sent none.
        if transport.get_extra_info("ssl_object") is not None:
            self.app = with_chain(self.app, peer_chain(transport))
        super().connection_made(transport)  # type: ignore[misc]
