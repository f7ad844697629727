"""Fetch a prediction's output: allow-listed, address-checked, size-capped, streamed, retried.

Every URL and redirect hop is checked before connecting, and connected to the checked address.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import anyio
import httpcore
import httpx

from ._pinning import PinnedHosts
from .config import Settings
from .errors import DownloadError, DownloadTooLargeError, OutputExpiredError, URLNotAllowedError
from .outputs import decode_data_uri
from .retries import RetryDecision, RetryPolicy, parse_retry_after, retrying

__all__ = ["Downloader", "Resolver", "SystemResolver"]

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SNIFF_BYTES = 64 * 1024  # error and JSON bodies are read at most this far


class _Transient(Exception):
    """One try failed in a way a later try may not (a 5xx, a timeout, a cut connection)."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _retry_transient(error: Exception) -> RetryDecision:
    if not isinstance(error, _Transient):
        return False  # refused, too large, expired, 4xx: final
    return True if error.retry_after is None else error.retry_after


class Resolver(Protocol):
    """Turns a host name into the IP addresses a connection may use.

    Example:
        >>> class Fixed:
        ...     async def resolve(self, host: str, port: int) -> list[str]:
        ...         return ["151.101.1.1"]
    """

    async def resolve(self, host: str, port: int) -> list[str]:
        """Return the addresses of *host* as strings; raise OSError when it has none."""
        ...


class SystemResolver:
    """The operating system's resolver, through ``anyio.getaddrinfo``.

    Example:
        >>> addresses = anyio.run(SystemResolver().resolve, "localhost", 80)  # doctest: +SKIP
    """

    async def resolve(self, host: str, port: int) -> list[str]:
        """Return the distinct addresses of *host*, in the order the system gives them."""
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except UnicodeError as error:  # IDNA refuses the name: it cannot exist
            raise socket.gaierror(f"{host!r} is not a valid host name: {error}") from None
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


class Downloader:
    """Downloads prediction outputs through one shared HTTP client.

    The API token (``Bearer``) is sent whenever it is set, and only to URLs and redirect
    hops that passed the allow-list; a hop that fails the check is refused, never sent.

    Args:
        settings: allow-list, private-address switch, size cap and API token.
        transport: an httpx transport (tests); the default one is pinned to checked addresses.
            A transport given here skips the pinning (the allow-list still applies).
        resolver: turns host names into addresses for the check (default: the system's).
        network_backend: opens the default transport's TCP connections, to the checked
            addresses only (default: httpcore's anyio backend); tests pass one that records.
        attempts: tries per download, the first included.
        backoff: the ceiling of the first wait between tries, in seconds; it doubles per try
            and the wait is drawn from its upper half (:class:`RetryPolicy` ``base_delay``).
        max_backoff: the longest wait between tries (also caps ``Retry-After``).
        timeout: httpx timeout for connecting and for each read.
        temp_dir: where downloads are written (default: the system temp dir).

    Raises:
        ConfigurationError: a negative (or NaN) ``backoff`` or ``max_backoff``.

    Example:
        >>> async def main() -> None:  # doctest: +SKIP
        ...     async with Downloader(Settings()) as downloader:
        ...         async with downloader.fetch("https://replicate.delivery/x/out.wav") as path:
        ...             print(path.stat().st_size)
    """

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        timeout: float | httpx.Timeout = 30.0,
        temp_dir: Path | None = None,
    ) -> None:
        self._settings = settings
        self._hosts = PinnedHosts(settings, resolver or SystemResolver())
        self._retry = RetryPolicy(
            attempts=max(1, attempts), base_delay=backoff, max_delay=max_backoff
        )
        self._temp_dir = temp_dir
        self._client = httpx.AsyncClient(
            transport=transport or self._hosts.transport(network_backend),
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        """Close the shared HTTP client and its connections."""
        await self._client.aclose()

    async def __aenter__(self) -> Downloader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @contextlib.asynccontextmanager
    async def fetch(self, url: str) -> AsyncIterator[Path]:
        """Download *url* and yield the file's path; the file is removed on leaving.

        Example:
            >>> async with downloader.fetch(url) as path:  # doctest: +SKIP
            ...     data = path.read_bytes()
        """
        path = await self.download(url)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    async def download(self, url: str) -> Path:
        """Download *url* into a new temp file, which the caller owns and must remove.

        A ``data:`` URI is decoded instead (within ``max_audio_bytes``), never fetched.

        Raises:
            URLNotAllowedError: the scheme, host or an address of the URL or a hop is refused.
            DownloadTooLargeError: the body is larger than ``settings.max_audio_bytes``.
            OutputExpiredError: 410 Gone, or a ``data_removed`` body.
            DownloadError: any other failure; ``retryable`` says whether to try later.

        Example:
            >>> path = await downloader.download(url)  # doctest: +SKIP
            >>> path.unlink()  # doctest: +SKIP
        """
        fd, name = tempfile.mkstemp(prefix="replicate-audio-", dir=self._temp_dir)
        os.close(fd)
        path = Path(name)
        if url.startswith("data:"):  # sync mode's outputs: decoded in place, never fetched
            try:
                data = decode_data_uri(url, limit=self._settings.max_audio_bytes)
                await anyio.to_thread.run_sync(path.write_bytes, data)
            except BaseException:
                path.unlink(missing_ok=True)  # noqa: ASYNC240
                raise
            return path
        try:
            tries = 0
            try:
                async for attempt in retrying(self._retry, on=_retry_transient):
                    with attempt:
                        tries = attempt.num
                        await self._attempt(url, path)
            except _Transient as failure:
                attempts = "1 attempt" if tries == 1 else f"{tries} attempts"
                raise DownloadError(
                    f"could not download {url} after {attempts}: {failure}",
                    url=url,
                    retryable=True,
                ) from failure.__cause__
        except BaseException:
            # Synchronous on purpose: this also runs when the task is being cancelled.
            path.unlink(missing_ok=True)  # noqa: ASYNC240
            raise
        return path

    async def _attempt(self, url: str, path: Path) -> None:
        """Try once, following redirects; raise _Transient for a failure worth retrying."""
        current = url
        headers: dict[str, str] = {}
        if self._settings.api_token:
            headers["Authorization"] = f"Bearer {self._settings.api_token}"
        for _ in range(MAX_REDIRECTS + 1):
            try:
                target = await self._hosts.check(current)
            except OSError as error:
                raise _Transient(f"could not resolve {current}: {error}") from error
            try:
                request = self._client.build_request("GET", target, headers=headers)
                response = await self._client.send(request, stream=True)
            except httpx.TimeoutException as error:
                raise _Transient(f"timed out ({type(error).__name__})") from error
            except httpx.TransportError as error:
                raise _Transient(f"connection failed: {error!r}") from error
            try:
                location = response.headers.get("location")
                if response.status_code not in _REDIRECTS or not location:
                    await self._receive(response, url, path)
                    return
                try:
                    current = str(response.url.join(location))
                except (httpx.InvalidURL, ValueError):
                    raise URLNotAllowedError(
                        f"{url} redirected to an invalid URL {location!r}", url=url
                    ) from None
            finally:
                await response.aclose()
        raise DownloadError(
            f"{url} redirected more than {MAX_REDIRECTS} times", url=url, retryable=False
        )

    async def _receive(self, response: httpx.Response, url: str, path: Path) -> None:
        status = response.status_code
        if status == 429 or status >= 500:
            # Retry-After is defined for 429 (RFC 6585) and 503 (RFC 9110).
            header = response.headers.get("retry-after") if status in (429, 503) else None
            raise _Transient(f"HTTP {status}", retry_after=parse_retry_after(header))
        if status >= 400:
            body = await _head(response)
            if status == 410 or b"data_removed" in body:
                raise OutputExpiredError(
                    f"the output at {url} has expired (HTTP {status})", url=url
                )
            detail = body[:200].decode("utf-8", "replace")
            raise DownloadError(f"HTTP {status} for {url}: {detail}", url=url, retryable=False)
        if status >= 300 or status < 200:
            raise DownloadError(f"unexpected HTTP {status} for {url}", url=url, retryable=False)
        cap = self._settings.max_audio_bytes
        declared = _content_length(response)
        if declared is not None and declared > cap:
            raise DownloadTooLargeError(
                f"{url} is {declared} bytes, more than the limit of {cap}", url=url
            )
        received = 0
        try:
            async with await anyio.open_file(path, "wb") as file:
                async for chunk in response.aiter_bytes():
                    received += len(chunk)
                    if received > cap:
                        raise DownloadTooLargeError(
                            f"{url} is more than the limit of {cap} bytes", url=url
                        )
                    await file.write(chunk)
        except httpx.TimeoutException as error:
            raise _Transient(f"timed out reading the body ({type(error).__name__})") from error
        except httpx.TransportError as error:
            raise _Transient(f"body truncated after {received} bytes: {error!r}") from error
        if declared is not None and received < declared:
            raise _Transient(f"body truncated: {received} of {declared} bytes")
        content_type = response.headers.get("content-type", "")
        textual = "json" in content_type or "text" in content_type
        if (
            textual
            and received <= _SNIFF_BYTES
            and b"data_removed" in await anyio.Path(path).read_bytes()
        ):
            raise OutputExpiredError(f"the output at {url} has expired (data_removed)", url=url)


async def _head(response: httpx.Response) -> bytes:
    """The first bytes of a body (an error page), or what arrived before the connection broke."""
    body = b""
    with contextlib.suppress(httpx.TransportError):
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= _SNIFF_BYTES:
                break
    return body[:_SNIFF_BYTES]


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "").strip()
    return int(value) if value.isdigit() else None
