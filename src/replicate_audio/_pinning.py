"""Where a download may connect: the allow-list and address checks, and the pinned connections.

A checked host is connected only to the addresses checked for it, so DNS cannot change them after:
an httpcore pool whose network backend knows the pins, behind an httpx transport of our own.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import certifi
import httpcore
import httpx

from .config import Settings
from .errors import URLNotAllowedError

if TYPE_CHECKING:
    from .download import Resolver

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
# httpx's default limits (httpx.AsyncHTTPTransport's pool).
_MAX_CONNECTIONS = 100
_MAX_KEEPALIVE_CONNECTIONS = 20
_KEEPALIVE_EXPIRY = 5.0


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
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
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


# httpcore's errors as httpx raises them; the most specific class of an error is found first
# in its MRO, so a ConnectTimeout becomes httpx.ConnectTimeout, not TimeoutException.
_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.ProtocolError: httpx.ProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
}


@contextlib.contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    """Raise httpcore's errors as the httpx errors of *request*."""
    try:
        yield
    except Exception as error:
        for kind in type(error).__mro__:
            if kind in _ERRORS:
                raise _ERRORS[kind](str(error), request=request) from error
        raise


@runtime_checkable
class _Closable(Protocol):
    async def aclose(self) -> None: ...


class _ResponseStream(httpx.AsyncByteStream):
    """An httpcore response body as an httpx stream, its errors mapped."""

    def __init__(self, stream: AsyncIterable[bytes], request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        if isinstance(self._stream, _Closable):
            await self._stream.aclose()


class PoolTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore connection pool, mapped as httpx's own maps it.

    httpx's transport builds its pool itself and offers no way to give it a network backend;
    this one takes any pool, built with public httpcore arguments. Requests keep their
    streamed bodies and their timeouts (``request.extensions``); httpcore's errors become
    httpx's; closing the transport closes the pool.

    Example:
        >>> transport = PoolTransport(httpcore.AsyncConnectionPool(http1=True, http2=False))
        >>> client = httpx.AsyncClient(transport=transport)
    """

    def __init__(self, pool: httpcore.AsyncConnectionPool) -> None:
        self._connections = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request* through the pool; the response body streams from the connection."""
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("PoolTransport serves httpx.AsyncClient, which streams asynchronously")
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors(request):
            response = await self._connections.handle_async_request(core_request)
        if not isinstance(response.stream, AsyncIterable):  # pragma: no cover - async pools
            raise TypeError("an async httpcore pool answered with a sync body")
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream, request),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close the pool and its connections."""
        await self._connections.aclose()


class PinnedHosts:
    """Checks download URLs and remembers, per host, the addresses a connection may use."""

    def __init__(self, settings: Settings, resolver: Resolver) -> None:
        self._settings = settings
        self._resolver = resolver
        self._pins: dict[str, list[str]] = {}

    def transport(
        self, network_backend: httpcore.AsyncNetworkBackend | None = None
    ) -> PoolTransport:
        """An httpx transport that connects each host only to the addresses pinned here.

        Like ``httpx.AsyncHTTPTransport(trust_env=False)``: HTTP/1.1, certificates verified
        against certifi's roots, httpx's default limits, no proxy (a proxy would resolve
        the name itself, after our check).

        Args:
            network_backend: opens the TCP connections to the pinned addresses (default:
                httpcore's anyio backend, for asyncio and trio).
        """
        pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(cafile=certifi.where()),
            max_connections=_MAX_CONNECTIONS,
            max_keepalive_connections=_MAX_KEEPALIVE_CONNECTIONS,
            keepalive_expiry=_KEEPALIVE_EXPIRY,
            http1=True,
            http2=False,
            network_backend=_PinnedBackend(network_backend or httpcore.AnyIOBackend(), self._pins),
        )
        return PoolTransport(pool)

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
