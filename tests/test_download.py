"""Tests for the streamed, size-capped, allow-listed downloader (loopback and fake network only)."""

from __future__ import annotations

import ast
import collections
import contextlib
import datetime
import importlib.util
import inspect
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, cast
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx
import pytest
import stamina
from hypothesis import given, settings
from hypothesis import strategies as st
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

from replicate_audio import _pinning, download, retries
from replicate_audio._pinning import PoolTransport
from replicate_audio.config import AllowedOrigin, Settings
from replicate_audio.download import Downloader
from replicate_audio.errors import (
    DownloadError,
    DownloadTooLargeError,
    OutputExpiredError,
    URLNotAllowedError,
)

OK_BODY = bytes(range(256)) * 20  # 5120 bytes
CAP = 4096 * 2
TOKEN = "r8_test_token"
# Global unicast addresses handed out by the fake resolver; nothing is ever sent to them.
PUBLIC = "151.101.0.1"
PUBLIC_V6 = "2a04:4e42::1"

BACKENDS = ["asyncio", *(["trio"] if importlib.util.find_spec("trio") else [])]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every async test under each installed anyio backend."""
    return str(request.param)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    counts: ClassVar[collections.Counter[str]] = collections.Counter()
    lock: ClassVar[threading.Lock] = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        """Serve the fault-injection routes; ``{route}/{test id}/{arg}``."""
        path = urlsplit(self.path).path
        route, *args = path.strip("/").split("/")
        with self.lock:
            self.counts[path] += 1
            seen = self.counts[path]
        try:
            self._route(route, args, seen)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_POST(self) -> None:
        """Echo the request body, to show a request's body reaches the server."""
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._send(200, body)

    def _route(self, route: str, args: list[str], seen: int) -> None:
        if route == "flaky" and seen <= 2:
            self._send(503, b"busy", Retry_After="0")
        elif route == "limited" and seen == 1:
            self._send(429, b"slow down", Retry_After="30")
        elif route == "dated" and seen == 1:
            later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)
            self._send(503, b"back in a minute", Retry_After=format_datetime(later, usegmt=True))
        elif route == "error":
            self._send(500, b"boom")
        elif route == "truncated" and seen <= int(args[1]):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 100)
            self.close_connection = True
        elif route == "slow" and seen == 1:
            time.sleep(1.0)
            self._send(200, OK_BODY)
        elif route == "missing":
            self._send(404, b'{"detail": "Not found."}', Content_Type="application/json")
        elif route == "gone":
            self._send(410, b"gone")
        elif route == "removed":
            body = json.dumps({"detail": "data_removed"}).encode()
            self._send(200, body, Content_Type="application/json")
        elif route == "redirect" and int(args[0]) > 0:
            self._send(302, Location=f"/redirect/{int(args[0]) - 1}")
        elif route == "away":
            port = cast(ThreadingHTTPServer, self.server).server_port
            self._send(302, Location=f"http://127.0.0.2:{port}/ok")
        elif route == "big":
            self.send_response(200)
            self.send_header("Content-Length", str(CAP + 1))
            self.end_headers()
            self.wfile.write(b"x" * (CAP + 1))
        elif route == "chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(CAP // 1000 + 2):
                self.wfile.write(b"3e8\r\n" + b"y" * 1000 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._send(200, OK_BODY, Content_Type="audio/wav")


@contextlib.contextmanager
def _serve(host: str) -> Iterator[str]:
    server = ThreadingHTTPServer((host, 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving the fault-injection routes."""
    with _serve("127.0.0.1") as url:
        yield url


@pytest.fixture
def temp_dir(tmp_path: Path) -> Path:
    """A per-test directory for downloads, so that leftovers are visible."""
    directory = tmp_path / "downloads"
    directory.mkdir()
    return directory


class RecordingResolver:
    """Answers from a fixed table and records every lookup; unknown names fail."""

    def __init__(self, table: dict[str, list[str]] | None = None, default: str | None = None):
        self.table = table or {}
        self.default = default
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        """Look *host* up in the table, never on the network."""
        self.lookups.append(host)
        if host in self.table:
            return self.table[host]
        if self.default is not None:
            return [self.default]
        raise socket.gaierror(f"{host} is not in the test resolver")


class LoopbackOnly(httpcore.AsyncNetworkBackend):
    """Records every TCP connection asked for; opens it only to a loopback IP, refuses others.

    A host name is refused too: the pinned transport must hand over the checked address.
    """

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Open a connection to a loopback address; refuse anything else."""
        self.connects.append((host, port))
        try:
            allowed = ipaddress.ip_address(host).is_loopback
        except ValueError:
            allowed = False
        if not allowed:
            raise httpcore.ConnectError(f"the test network refuses {host}:{port}")
        return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)

    async def sleep(self, seconds: float) -> None:
        """Sleep on the running event loop."""
        await self._inner.sleep(seconds)


class RecordingTransport(httpx.MockTransport):
    """Records every request; refuses it unless given a responder."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response] | None = None):
        self.requests: list[httpx.Request] = []
        self.respond = respond
        super().__init__(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.respond is None:
            raise httpx.ConnectError("refused by the test transport", request=request)
        return self.respond(request)


def loopback(origin: str, temp_dir: Path, **kwargs: Any) -> Downloader:
    """A downloader allowed to reach the loopback test server, with tiny backoffs, over the
    real pinned transport on a network that opens loopback connections only."""
    options: dict[str, Any] = {"attempts": 3, "backoff": 0.01, "max_backoff": 0.05}
    options.setdefault("network_backend", LoopbackOnly())
    options.update(kwargs)
    settings = Settings(
        allowed_output_hosts=(AllowedOrigin.parse(origin),),
        allow_private_output_hosts=True,
        max_audio_bytes=CAP,
    )
    return Downloader(settings, resolver=RecordingResolver(), temp_dir=temp_dir, **options)


def assert_empty(directory: Path) -> None:
    """No temp file was left behind."""
    assert list(directory.iterdir()) == []


def unique() -> str:
    """A fresh id, so that per-path request counters start at zero."""
    return uuid.uuid4().hex


# --- loopback server: happy and fault paths -------------------------------------------------


@pytest.mark.anyio
async def test_downloads_file_into_owned_temp_file(origin: str, temp_dir: Path) -> None:
    """A 200 is streamed to a replicate-audio-* file in temp_dir that the caller owns."""
    network = LoopbackOnly()
    async with loopback(origin, temp_dir, network_backend=network) as downloader:
        path = await downloader.download(f"{origin}/ok")
    assert path.parent == temp_dir
    assert path.name.startswith("replicate-audio-")
    assert path.read_bytes() == OK_BODY
    path.unlink()
    assert network.connects == [("127.0.0.1", urlsplit(origin).port)]


@pytest.mark.anyio
async def test_fetch_removes_file_on_exit_and_on_error(origin: str, temp_dir: Path) -> None:
    """fetch() yields the file and removes it when the block ends, even by an exception."""
    async with loopback(origin, temp_dir) as downloader:
        async with downloader.fetch(f"{origin}/ok") as path:
            assert path.read_bytes() == OK_BODY
        assert_empty(temp_dir)
        with pytest.raises(RuntimeError):
            async with downloader.fetch(f"{origin}/ok"):
                raise RuntimeError("caller failed")
    assert_empty(temp_dir)


@pytest.mark.anyio
@pytest.mark.parametrize("route", ["flaky", "truncated/{id}/2", "slow", "limited"])
async def test_transient_failures_are_retried(origin: str, temp_dir: Path, route: str) -> None:
    """503s, a truncated body, a read timeout and a 429 are retried until the body arrives."""
    url = f"{origin}/{route.format(id=unique())}/{unique()}"
    started = time.monotonic()
    downloader = loopback(origin, temp_dir, timeout=0.3)
    async with downloader, downloader.fetch(url) as path:
        assert path.read_bytes() == OK_BODY
    # The 429's Retry-After of 30 s is capped at max_backoff.
    assert time.monotonic() - started < 2.0
    assert_empty(temp_dir)


@pytest.fixture
def waits() -> Iterator[list[float]]:
    """The waits between tries, as stamina schedules them (through its public retry hooks)."""
    recorded: list[float] = []

    def record(details: RetryDetails) -> None:
        recorded.append(details.wait_for)

    set_on_retry_hooks([record])
    try:
        yield recorded
    finally:
        set_on_retry_hooks(None)


@pytest.mark.anyio
@pytest.mark.parametrize(("route", "wait"), [("limited", 0.05), ("dated", 0.05), ("flaky", 0.0)])
async def test_retry_after_is_waited_up_to_max_backoff(
    origin: str, temp_dir: Path, waits: list[float], route: str, wait: float
) -> None:
    """Retry-After (seconds or an HTTP-date) replaces the backoff, capped at max_backoff."""
    downloader = loopback(origin, temp_dir, backoff=0.02, max_backoff=0.05)
    async with downloader, downloader.fetch(f"{origin}/{route}/{unique()}") as path:
        assert path.read_bytes() == OK_BODY
    assert waits[0] == wait


@pytest.mark.anyio
async def test_backoff_without_retry_after_is_the_policys(
    origin: str, temp_dir: Path, waits: list[float]
) -> None:
    """Without Retry-After the waits follow the policy: the upper half of a doubling ceiling."""
    downloader = loopback(origin, temp_dir, attempts=3, backoff=0.01, max_backoff=0.015)
    async with downloader:
        with pytest.raises(DownloadError, match="after 3 attempts: HTTP 500"):
            await downloader.download(f"{origin}/error/{unique()}")
    assert len(waits) == 2
    assert 0.005 <= waits[0] <= 0.01
    assert 0.0075 <= waits[1] <= 0.015  # the ceiling 0.02 capped at max_backoff


@pytest.mark.anyio
async def test_stamina_testing_switch_sets_the_tries(origin: str, temp_dir: Path) -> None:
    """stamina.set_testing, stamina's public switch for tests, governs downloads too."""
    url = f"{origin}/error/{unique()}"
    with stamina.set_testing(True, attempts=2):
        async with loopback(origin, temp_dir, attempts=5, backoff=10.0) as downloader:
            with pytest.raises(DownloadError, match="after 2 attempts"):
                await downloader.download(url)
    assert _Handler.counts[urlsplit(url).path] == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("route", "reason"), [("error", "HTTP 500"), ("truncated/{id}/99", "truncated")]
)
async def test_gives_up_after_the_last_attempt(
    origin: str, temp_dir: Path, route: str, reason: str
) -> None:
    """Persistent 500s or truncation end in a retryable error naming URL, tries and reason."""
    url = f"{origin}/{route.format(id=unique())}"
    async with loopback(origin, temp_dir) as downloader:
        with pytest.raises(DownloadError) as caught:
            await downloader.download(url)
    assert type(caught.value) is DownloadError
    assert caught.value.retryable
    assert url in str(caught.value)
    assert "3 attempts" in str(caught.value)
    assert reason in str(caught.value)
    assert_empty(temp_dir)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("route", "error"),
    [
        ("missing", DownloadError),
        ("gone", OutputExpiredError),
        ("removed", OutputExpiredError),
        ("big", DownloadTooLargeError),
        ("chunked", DownloadTooLargeError),
        ("redirect/6", DownloadError),
        ("away", URLNotAllowedError),
    ],
)
async def test_permanent_failures_are_not_retried(
    origin: str, temp_dir: Path, route: str, error: type[DownloadError]
) -> None:
    """404, 410, data_removed, oversize, too many redirects and a refused hop fail at once."""
    path = f"/{route}/{unique()}" if route != "redirect/6" else f"/{route}"
    async with loopback(origin, temp_dir) as downloader:
        with pytest.raises(error) as caught:
            await downloader.download(origin + path)
    assert type(caught.value) is error
    assert not caught.value.retryable
    assert _Handler.counts[path] == 1
    assert_empty(temp_dir)


@pytest.mark.anyio
async def test_refused_redirect_names_the_host(origin: str, temp_dir: Path) -> None:
    """A redirect off the allow-list is refused with the hop's host in the message."""
    async with loopback(origin, temp_dir) as downloader:
        with pytest.raises(URLNotAllowedError, match=r"127\.0\.0\.2"):
            await downloader.download(f"{origin}/away/{unique()}")


@pytest.mark.anyio
async def test_follows_redirects_inside_the_allow_list(origin: str, temp_dir: Path) -> None:
    """A chain of five redirects on an allowed origin is followed to the file."""
    downloader = loopback(origin, temp_dir)
    async with downloader, downloader.fetch(f"{origin}/redirect/5") as path:
        assert path.read_bytes() == OK_BODY


@pytest.mark.anyio
async def test_connects_to_the_checked_address(temp_dir: Path) -> None:
    """The default transport connects to the address the resolver vouched for, not a new lookup."""
    with contextlib.ExitStack() as stack:
        try:
            port = urlsplit(stack.enter_context(_serve("127.0.0.2"))).port
        except OSError:
            pytest.skip("127.0.0.2 is not available on this machine")
        resolver, network = await _fetch_pinned(port, temp_dir)
    assert resolver.lookups == ["localhost"]
    assert network.connects == [("127.0.0.2", port)]


async def _fetch_pinned(port: int | None, temp_dir: Path) -> tuple[RecordingResolver, LoopbackOnly]:
    """Fetch /ok from http://localhost:{port} with localhost pinned to 127.0.0.2."""
    settings = Settings(
        allowed_output_hosts=(AllowedOrigin.parse(f"http://localhost:{port}"),),
        allow_private_output_hosts=True,
    )
    resolver, network = RecordingResolver({"localhost": ["127.0.0.2"]}), LoopbackOnly()
    downloader = Downloader(
        settings, resolver=resolver, network_backend=network, temp_dir=temp_dir, attempts=1
    )
    async with downloader, downloader.fetch(f"http://localhost:{port}/ok") as path:
        assert path.read_bytes() == OK_BODY
    return resolver, network


@pytest.mark.anyio
async def test_production_connects_only_to_checked_public_addresses(temp_dir: Path) -> None:
    """With the default allow-list every connection asked for goes to a checked address on
    443, each address in turn and never a name, and the test network refuses them all."""
    resolver = RecordingResolver({"replicate.delivery": [PUBLIC, PUBLIC_V6]})
    network = LoopbackOnly()
    downloader = Downloader(
        Settings(api_token=TOKEN),
        resolver=resolver,
        network_backend=network,
        temp_dir=temp_dir,
        attempts=2,
        backoff=0.0,
    )
    async with downloader:
        with pytest.raises(DownloadError, match="connection failed"):
            await downloader.download("https://replicate.delivery/out.wav")
    assert network.connects == [(PUBLIC, 443), (PUBLIC_V6, 443)] * 2
    assert resolver.lookups == ["replicate.delivery"] * 2  # the checks; connecting looks nothing up
    assert_empty(temp_dir)


@pytest.mark.anyio
@pytest.mark.parametrize("addresses", [["127.0.0.1"], ["10.1.2.3"], [PUBLIC, "169.254.169.254"]])
async def test_refused_addresses_are_never_connected(addresses: list[str], temp_dir: Path) -> None:
    """A name refused for its addresses opens no connection, even one the network would allow."""
    resolver = RecordingResolver({"files.replicate.delivery": addresses})
    network = LoopbackOnly()
    downloader = Downloader(
        Settings(), resolver=resolver, network_backend=network, temp_dir=temp_dir
    )
    async with downloader:
        with pytest.raises(URLNotAllowedError):
            await downloader.download("https://files.replicate.delivery/out.wav")
    assert network.connects == []


@pytest.fixture(scope="module")
def self_signed_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate (made by openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.anyio
async def test_certificates_are_verified(self_signed_origin: str, temp_dir: Path) -> None:
    """The pinned transport verifies certificates: a self-signed one is refused, not read."""
    path = f"/ok/{unique()}"
    async with loopback(self_signed_origin, temp_dir, attempts=1) as downloader:
        with pytest.raises(DownloadError, match="CERTIFICATE_VERIFY_FAILED"):
            await downloader.download(self_signed_origin + path)
    assert _Handler.counts[path] == 0


# --- the transport: public httpx and httpcore API only ---------------------------------------


@pytest.mark.anyio
async def test_pool_transport_serves_a_stock_httpcore_pool(origin: str) -> None:
    """PoolTransport works over a stock httpcore pool: bodies both ways, streaming, HTTP/1.1."""
    pool = httpcore.AsyncConnectionPool()
    async with httpx.AsyncClient(transport=PoolTransport(pool)) as client:
        response = await client.get(f"{origin}/ok")
        assert (response.status_code, response.content) == (200, OK_BODY)
        assert response.http_version == "HTTP/1.1"
        echoed = await client.post(f"{origin}/echo", content=b"a request body")
        assert echoed.content == b"a request body"
        async with client.stream("GET", f"{origin}/ok") as streamed:
            assert b"".join([chunk async for chunk in streamed.aiter_bytes(100)]) == OK_BODY
        assert pool.connections  # kept alive in the pool ...
    assert pool.connections == []  # ... until the client closes the transport


@pytest.mark.anyio
async def test_pool_transport_raises_httpx_errors(origin: str) -> None:
    """httpcore's errors arrive as httpx's, with the request; timeouts come from the request."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}/"
    async with httpx.AsyncClient(transport=PoolTransport(httpcore.AsyncConnectionPool())) as client:
        with pytest.raises(httpx.ConnectError) as connect:
            await client.get(refused)
        assert str(connect.value.request.url) == refused
        with pytest.raises(httpx.ReadTimeout) as timeout:
            await client.get(f"{origin}/slow/{unique()}", timeout=0.2)
        assert timeout.value.request.url.path.startswith("/slow/")
        async with client.stream("GET", f"{origin}/truncated/{unique()}/9") as truncated:
            with pytest.raises(httpx.RemoteProtocolError):
                await truncated.aread()


MODULES = [_pinning, download, retries]


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_no_private_attribute_of_another_object_is_touched(module: ModuleType) -> None:
    """The network code reads and sets only its own private attributes (self._...), none of
    httpx's or httpcore's (such as a transport's _pool)."""
    source = inspect.getsource(module)
    foreign = [
        ast.unparse(node)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert foreign == []
    assert "._pool" not in source
    assert "_network_backend" not in source


# --- production settings: refusals before any connection -----------------------------------


def production(transport: httpx.AsyncBaseTransport, resolver: Any, temp_dir: Path) -> Downloader:
    """The default allow-list (replicate.delivery, https only), no private addresses, a token."""
    return Downloader(
        Settings(api_token=TOKEN), transport=transport, resolver=resolver, temp_dir=temp_dir
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://replicate.delivery/out.wav", "replicate.delivery"),
        ("https://evil.example.com/out.wav", "evil.example.com"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("https://10.0.0.5/", "10.0.0.5"),
        ("https://[::1]/", "::1"),
        ("https://replicate.delivery.evil.example.com/", "replicate.delivery.evil.example.com"),
        ("not a url", ""),
        ("https://[::1/", ""),
        ("https://x..replicate.delivery/", "x..replicate.delivery"),
        ("https://a b.replicate.delivery/", "a%20b.replicate.delivery"),
    ],
)
async def test_refuses_hosts_off_the_allow_list(url: str, named: str, temp_dir: Path) -> None:
    """Off-list schemes, hosts, ports and garbage are refused without a lookup or a request."""
    transport, resolver = RecordingTransport(), RecordingResolver(default=PUBLIC)
    async with production(transport, resolver, temp_dir) as downloader:
        with pytest.raises(URLNotAllowedError) as caught:
            await downloader.download(url)
    assert named in str(caught.value)
    assert transport.requests == []
    assert resolver.lookups == []
    assert_empty(temp_dir)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "addresses",
    [
        ["10.1.2.3"],
        ["169.254.169.254"],
        ["127.0.0.1"],
        ["::ffff:10.0.0.1"],
        ["fe80::1"],
        ["0.0.0.0"],
        ["224.0.0.1"],
        ["100.64.0.1"],
        ["203.0.113.10"],
        [PUBLIC, "192.168.1.1"],
        ["not-an-address"],
    ],
)
async def test_refuses_allowed_names_with_non_public_addresses(
    addresses: list[str], temp_dir: Path
) -> None:
    """An allowed name is refused if ANY address is not public unicast; nothing is sent."""
    transport = RecordingTransport()
    resolver = RecordingResolver({"files.replicate.delivery": addresses})
    async with production(transport, resolver, temp_dir) as downloader:
        with pytest.raises(URLNotAllowedError) as caught:
            await downloader.download("https://files.replicate.delivery/out.wav")
    assert "files.replicate.delivery" in str(caught.value)
    assert addresses[-1] in str(caught.value)
    assert transport.requests == []
    assert_empty(temp_dir)


@pytest.mark.anyio
async def test_allow_listed_ip_literal_is_still_checked(temp_dir: Path) -> None:
    """An allow-listed private IP literal is refused unless private hosts are allowed."""
    transport = RecordingTransport()
    settings = Settings(allowed_output_hosts=(AllowedOrigin.parse("https://169.254.169.254"),))
    async with Downloader(settings, transport=transport, temp_dir=temp_dir) as downloader:
        with pytest.raises(URLNotAllowedError, match=r"169\.254\.169\.254"):
            await downloader.download("https://169.254.169.254/latest/meta-data")
    assert transport.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "location",
    ["http://169.254.169.254/latest/meta-data", "https://metadata.replicate.delivery/"],
)
async def test_redirect_to_metadata_is_refused_before_following(
    location: str, temp_dir: Path
) -> None:
    """A redirect from an allowed public host to the metadata service is never followed."""
    transport = RecordingTransport(lambda _: httpx.Response(302, headers={"Location": location}))
    resolver = RecordingResolver(
        {"replicate.delivery": [PUBLIC], "metadata.replicate.delivery": ["169.254.169.254"]}
    )
    async with production(transport, resolver, temp_dir) as downloader:
        with pytest.raises(URLNotAllowedError):
            await downloader.download("https://replicate.delivery/out.wav")
    assert [str(request.url) for request in transport.requests] == [
        "https://replicate.delivery/out.wav"
    ]
    assert_empty(temp_dir)


@pytest.mark.anyio
@pytest.mark.parametrize("token", [TOKEN, None])
async def test_public_allowed_host_is_fetched_with_token(token: str | None, temp_dir: Path) -> None:
    """A public, allowed host reaches the transport, with a Bearer token only when one is set."""
    transport = RecordingTransport(lambda _: httpx.Response(200, content=OK_BODY))
    resolver = RecordingResolver({"replicate.delivery": [PUBLIC]})
    settings = Settings(api_token=token)
    downloader = Downloader(settings, transport=transport, resolver=resolver, temp_dir=temp_dir)
    async with downloader, downloader.fetch("https://replicate.delivery/x/out.wav") as path:
        assert path.read_bytes() == OK_BODY
    (request,) = transport.requests
    assert request.headers.get("Authorization") == (f"Bearer {token}" if token else None)


@pytest.mark.anyio
async def test_connection_errors_are_retried_then_reported(temp_dir: Path) -> None:
    """Connection failures are retried; the final error names the URL, the tries and the reason."""
    transport, resolver = RecordingTransport(), RecordingResolver(default=PUBLIC)
    downloader = Downloader(
        Settings(), transport=transport, resolver=resolver, temp_dir=temp_dir, backoff=0.001
    )
    async with downloader:
        with pytest.raises(DownloadError, match=r"after 4 attempts: connection failed") as caught:
            await downloader.download("https://replicate.delivery/out.wav")
    assert caught.value.retryable
    assert caught.value.url == "https://replicate.delivery/out.wav"
    assert len(transport.requests) == 4
    assert_empty(temp_dir)


URLS = st.one_of(
    st.text(),
    st.builds(
        "{}{}{}".format,
        st.sampled_from(["https://", "http://", "ftp://", "//", "https:", "", "HTTPS://"]),
        st.one_of(
            st.sampled_from(
                ["replicate.delivery", "a.replicate.delivery", "[::1]", "169.254.169.254", "["]
            ),
            st.text(max_size=20),
        ),
        st.text(max_size=30),
    ),
)


@settings(max_examples=300, deadline=None)
@given(url=URLS)
def test_arbitrary_urls_only_raise_download_errors(url: str) -> None:
    """Any text as a URL raises only DownloadErrors, reaches only allowed hosts, leaks no file."""
    transport, resolver = RecordingTransport(), RecordingResolver(default=PUBLIC)
    with tempfile.TemporaryDirectory() as directory:

        async def attempt() -> None:
            async with Downloader(
                Settings(),
                transport=transport,
                resolver=resolver,
                attempts=1,
                temp_dir=Path(directory),
            ) as downloader:
                await downloader.download(url)

        with pytest.raises(DownloadError):
            anyio.run(attempt)
        assert_empty(Path(directory))
    for request in transport.requests:
        assert request.url.scheme == "https"
        assert request.url.host.rstrip(".").endswith("replicate.delivery")
