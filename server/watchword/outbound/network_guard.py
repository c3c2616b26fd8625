"""O3/O4 SSRF guard: a customer's token URL must not point Watchword at the network it runs in.

Token URLs are customer input. `NetworkGuard.check(url)` resolves the host and refuses the URL when any
resolved address is loopback, private, link-local, shared (CGNAT), multicast, reserved or unspecified, in
IPv4 or IPv6, looking through IPv4-mapped, NAT64, 6to4 and Teredo addresses at the IPv4 address they carry.
`allow_private=True` (tests, on-premises deployments) or a host listed in `allowed_hosts` skips the check.

DNS rebinding: a check that resolves a name, followed by a connect that resolves it again, can be fooled
by a name that answers a public address first and 127.0.0.1 a moment later. `resolve()` therefore returns
the checked addresses, and the token fetcher connects to exactly those (pinning), sending the original
name as Host header and TLS SNI, so certificates are still verified against the name. A host in
`allowed_hosts` is not resolved here and is connected to by name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket

import httpx

DNS_TIMEOUT_SECONDS = 5.0
_SCHEMES = ("http", "https")
# RFC 6052 well-known NAT64 prefix and RFC 8215 local-use prefix: a NAT64 gateway forwards to the IPv4
# address in the low 32 bits, so 64:ff9b::a00:1 reaches 10.0.0.1.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_SHARED_IPV4 = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT, not global
# Host names as httpx leaves them (lowercased, IDNA-encoded): letters, digits, '-', '_' and dots.
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundTokenError(Exception):
    """Why no access token could be had. `reason` is machine-readable; `retryable` says whether asking
    again later can help; `retry_after` (seconds) is set when the token server said when.

    Defined here, the lower layer, and re-exported by `token_cache`. Messages never carry secrets.
    """

    def __init__(
        self, reason: str, detail: str = "", *, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after

    def copy(self) -> OutboundTokenError:
        """A fresh instance for each waiter of a shared fetch (one instance raised in many coroutines
        would collect all their tracebacks)."""
        return OutboundTokenError(
            self.reason, self.detail, retryable=self.retryable, retry_after=self.retry_after
        )


def _forbidden(detail: str) -> OutboundTokenError:
    return OutboundTokenError("token_url_forbidden", detail, retryable=False)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to through NAT64, 6to4 or Teredo (mapped ones aside)."""
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client; the server half is a relay the attacker does not choose
    return None


def is_forbidden_address(address: IPAddress) -> bool:
    """True for any address Watchword must not connect to on a customer's behalf."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # Only the IPv4 address counts: Python versions disagree on the flags of ::ffff:0:0/96.
            return is_forbidden_address(address.ipv4_mapped)
        embedded = _embedded_ipv4(address)
        if embedded is not None and is_forbidden_address(embedded):
            return True
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED_IPV4:
        return True
    # `is_global` alone lets multicast through (224.0.0.1 counts as global), hence every flag.
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


def _parse_address(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id (fe80::1%eth0)


class NetworkGuard:
    """Refuses token URLs that lead into private networks; see the module docstring."""

    __slots__ = ("allow_private", "allowed_hosts")

    def __init__(self, allow_private: bool = False, allowed_hosts: frozenset[str] = frozenset()) -> None:
        self.allow_private = allow_private
        self.allowed_hosts = frozenset(_normal_host(host) for host in allowed_hosts)

    def __repr__(self) -> str:
        return f"NetworkGuard(allow_private={self.allow_private}, allowed_hosts={sorted(self.allowed_hosts)})"

    async def check(self, url: str) -> None:
        """Raise OutboundTokenError("token_url_forbidden") unless `url` may be fetched."""
        await self.resolve(url)

    async def resolve(self, url: str | httpx.URL) -> tuple[str, ...]:
        """The addresses to connect to, every one checked; empty for a host in `allowed_hosts`, which is
        connected to by name. Raises token_url_forbidden, or token_server_unreachable when the name does
        not resolve (retryable: DNS failures are often transient)."""
        target = _parse_url(url)
        host = target.raw_host.decode("ascii")
        if _normal_host(host) in self.allowed_hosts:
            return ()
        port = target.port or (443 if target.scheme == "https" else 80)
        addresses = await _getaddrinfo(host, port)
        if not self.allow_private:
            for text in addresses:
                if is_forbidden_address(_parse_address(text)):
                    # Name the address, not the URL: the URL's query may carry something private.
                    raise _forbidden(f"the token URL's host resolves to a non-public address ({text})")
        return addresses


def _normal_host(host: str) -> str:
    return host.lower().rstrip(".")


def parse_token_url(url: str | httpx.URL) -> httpx.URL:
    """The one parser of token URLs: the admin API at creation, `TokenEndpoint` and the guard all use it,
    so a URL stored is a URL the fetcher can fetch. Raises ValueError naming the problem (never the URL,
    whose query may be private). Stricter than httpx alone: nothing around the URL, ASCII only (an
    international name goes in its xn-- form), a host of name characters or an IP address, a port in
    range, no user information (httpx would send it as Basic auth beside the configured client auth)."""
    if isinstance(url, str):
        if not url.isascii() or not url.isprintable() or url != url.strip():
            raise ValueError("token_url must be printable ASCII without surrounding spaces")
        try:
            url = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            raise ValueError("token_url is not a valid URL") from None
    if url.scheme not in _SCHEMES or not url.raw_host:
        raise ValueError("token_url must be an absolute http or https URL")
    if url.userinfo:
        raise ValueError("token_url must not carry user information")
    if url.port is not None and not 0 < url.port < 65536:
        raise ValueError("token_url's port must be between 1 and 65535")
    host = url.raw_host.decode("ascii")
    if not _HOST_NAME.fullmatch(host) and not _is_address(host):
        raise ValueError("token_url's host is neither a host name nor an IP address")
    return url


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _parse_url(url: str | httpx.URL) -> httpx.URL:
    try:
        return parse_token_url(url)
    except ValueError as exc:
        raise _forbidden(str(exc)) from None


async def _getaddrinfo(host: str, port: int) -> tuple[str, ...]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(DNS_TIMEOUT_SECONDS):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except TimeoutError:
        raise OutboundTokenError(
            "token_server_unreachable", "resolving the token server's name timed out", retryable=True
        ) from None
    except (OSError, UnicodeError):
        # socket.gaierror is an OSError; its text names only the failure, but keep it generic anyway.
        raise OutboundTokenError(
            "token_server_unreachable", "the token server's name does not resolve", retryable=True
        ) from None
    # Every address, in the resolver's order (RFC 6724), without duplicates.
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise OutboundTokenError(
            "token_server_unreachable", "the token server's name has no address", retryable=True
        )
    return addresses
