"""O3/O4 outbound HTTP to a customer's token server: bounded, never redirected, pinned to checked addresses.

A per-attempt deadline (`timeout_seconds`, also per operation), the body read by streaming up to
`max_response_bytes` without content decoding, redirects never followed, only http/https, and the host
checked by `NetworkGuard` and then pinned: the request connects to the checked address while sending the
original name as Host and TLS SNI (certificates are verified against the name). Every request says
`Connection: close` and Watchword's own client keeps no idle connections, so a connection opened for one
name is never reused for another behind the same address. A client passed in must follow the same rule:
HTTP/1.1 only, no proxies that resolve names themselves.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from watchword.outbound.network_guard import NetworkGuard, OutboundTokenError

__all__ = ["Answer", "PinnedTransport", "redacted"]

_FORM_HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "identity",
    "Content-Type": "application/x-www-form-urlencoded",
    "Connection": "close",
}


@dataclass(frozen=True, slots=True)
class Answer:
    """A token server's answer: `body` is None when it could not be read within bounds (`problem`)."""

    status: int
    headers: httpx.Headers
    body: bytes | None = field(repr=False)
    problem: str = ""


def redacted(url: str) -> str:
    """The URL for messages: no query string, which might carry something secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class PinnedTransport:
    """POSTs forms to token URLs under the rules of the module docstring."""

    def __init__(
        self,
        client: httpx.AsyncClient | None,
        *,
        guard: NetworkGuard,
        timeout_seconds: float,
        max_response_bytes: int,
        on_request: Callable[[], None] = lambda: None,
    ) -> None:
        self.guard = guard
        self._timeout = timeout_seconds
        self._http_timeout = httpx.Timeout(timeout_seconds)
        self._max_bytes = max_response_bytes
        self._on_request = on_request  # counts every HTTP request, one per address tried
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=self._http_timeout,
            follow_redirects=False,
            trust_env=False,  # an environment proxy would resolve names itself and undo the pinning
            limits=httpx.Limits(max_keepalive_connections=0),  # see "pinned" in the module docstring
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def post_form(self, token_url: str, headers: dict[str, str], body: bytes) -> Answer:
        """One attempt, bounded by the deadline as a whole (even against a slow drip)."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._post_pinned(token_url, headers | _FORM_HEADERS, body)
        except TimeoutError:
            raise self._timed_out() from None

    def _timed_out(self) -> OutboundTokenError:
        return OutboundTokenError(
            "token_server_timeout", f"no answer within {self._timeout:g} s", retryable=True
        )

    async def _post_pinned(self, token_url: str, headers: dict[str, str], body: bytes) -> Answer:
        url = httpx.URL(token_url)
        addresses = await self.guard.resolve(url)
        refused: httpx.ConnectError | None = None
        for target, pinning_headers, extensions in pinned_targets(url, addresses):
            try:
                return await self._post(target, headers | pinning_headers, body, extensions, token_url)
            except httpx.ConnectError as exc:
                refused = exc  # try the next checked address, as a resolving connect would
            except httpx.TimeoutException:
                raise self._timed_out() from None
            except httpx.TransportError as exc:
                raise OutboundTokenError(
                    "token_server_unreachable",
                    f"the connection to the token server failed ({type(exc).__name__})",
                    retryable=True,
                ) from None
        raise OutboundTokenError(
            "token_server_unreachable",
            f"cannot connect to {redacted(token_url)} ({type(refused).__name__})",
            retryable=True,
        )

    async def _post(
        self,
        target: httpx.URL,
        headers: dict[str, str],
        body: bytes,
        extensions: dict[str, object],
        token_url: str,
    ) -> Answer:
        self._on_request()
        async with self._client.stream(
            "POST",
            target,
            content=body,
            headers=headers,
            timeout=self._http_timeout,
            follow_redirects=False,
            extensions=extensions,
        ) as response:
            status = response.status_code
            if 300 <= status < 400:
                # Never followed: the form carries the client's credentials, and the guard checked only
                # this host.
                raise OutboundTokenError(
                    "redirect_refused",
                    f"{redacted(token_url)} answered HTTP {status}; redirects are not followed",
                    retryable=False,
                )
            payload, problem = await self._read_bounded(response)
        return Answer(status, response.headers, payload, problem)

    async def _read_bounded(self, response: httpx.Response) -> tuple[bytes | None, str]:
        """The raw body, or None and why not. Raw bytes only: a compressed body could expand far beyond
        the bound while being decoded."""
        if response.headers.get("content-encoding", "identity").lower() not in ("", "identity"):
            return None, "came compressed although identity was asked for"
        too_large = f"is larger than {self._max_bytes} bytes"
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            return None, too_large
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > self._max_bytes:
                return None, too_large
        return bytes(body), ""


def pinned_targets(
    url: httpx.URL, addresses: tuple[str, ...]
) -> list[tuple[httpx.URL, dict[str, str], dict[str, object]]]:
    """Where to connect: each checked address in turn, with the original name as Host header and SNI
    (httpx verifies the certificate against the SNI name). By name only when nothing was resolved (an
    allowed host) or the host is already an address."""
    host = url.raw_host.decode("ascii")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [(url, {}, {})]
    pinned = [address for address in addresses if "%" not in address]  # a zoned address has no URL form
    if not pinned:
        return [(url, {}, {})]
    headers = {"Host": url.netloc.decode("ascii")}
    extensions: dict[str, object] = {"sni_hostname": host} if url.scheme == "https" else {}
    return [(url.copy_with(host=address), headers, extensions) for address in pinned]
