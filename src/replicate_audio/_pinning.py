"""Where a download may connect: the allow-list and address checks, and the pinned connections.

A checked host is connected only to the addresses checked for it, so DNS cannot change them after.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from .config import Settings
from .errors import URLNotAllowedError

if TYPE_CHECKING:
    from .download import Resolver

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


def _forbidden(address: str) -> bool:
    """Tell whether *address* is anything but a public unicast address (or not one at all)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True
    embedded: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        embedded += [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
        if ip.teredo is not None:
            embedded.append(ip.teredo[1])
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    # ``is_global`` already excludes private, loopback, link-local, reserved and unspecified.
    return any(not a.is_global or a.is_multicast for a in embedded)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects a host only to the addresses the download checked for it."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, pins: dict[str, list[str]]) -> None:
        self._inner = inner
        self._pins = pins

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = self._pins.get(host.lower())
        if not addresses:
            raise httpcore.ConnectError(f"{host} was not checked before connecting")
        for address in addresses[:-1]:
            with contextlib.suppress(httpcore.ConnectError, httpcore.ConnectTimeout):
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
        return await self._inner.connect_tcp(
            addresses[-1], port, timeout, local_address, socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedHosts:
    """Checks download URLs and remembers, per host, the addresses a connection may use."""

    def __init__(self, settings: Settings, resolver: Resolver) -> None:
        self._settings = settings
        self._resolver = resolver
        self._pins: dict[str, list[str]] = {}

    def transport(self) -> httpx.AsyncHTTPTransport:
        """An httpx transport that connects each host only to the addresses pinned here."""
        # httpx has no public hook for the network backend; httpcore's pool takes one.
        default = httpx.AsyncHTTPTransport(trust_env=False)
        pool = default._pool
        pool._network_backend = _PinnedBackend(pool._network_backend, self._pins)
        return default

    async def check(self, url: str) -> httpx.URL:
        """Refuse *url* unless allow-listed and public; pin its host to the checked addresses."""
        try:
            parsed = httpx.URL(url)
            host = parsed.raw_host.decode("ascii").lower()
        except (httpx.InvalidURL, ValueError, TypeError):
            raise URLNotAllowedError(f"{url!r} is not a valid URL", url=url) from None
        scheme, port = parsed.scheme, parsed.port
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            addresses = []
        if not (addresses or _HOST_NAME.fullmatch(host)) or not any(
            entry.allows(scheme, host, port) for entry in self._settings.allowed_output_hosts
        ):
            raise URLNotAllowedError(
                f"host {host!r} ({scheme}) is not in the allowed output hosts; refused {url}",
                url=url,
            )
        if not addresses:
            addresses = await self._resolver.resolve(
                host, port or (443 if scheme == "https" else 80)
            )
        if not addresses:
            raise OSError(f"{host} has no addresses")
        if not self._settings.allow_private_output_hosts:
            for address in addresses:
                if _forbidden(address):
                    raise URLNotAllowedError(
                        f"host {host!r} resolves to {address}, which is not a public address",
                        url=url,
                    )
        self._pins[host] = addresses
        return parsed
