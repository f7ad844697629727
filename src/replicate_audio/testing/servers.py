"""Serve an app on a loopback socket from a thread: uvicorn for ASGI, threaded werkzeug for
WSGI. What the demo, the test suite and the benchmarks use; handy in users' tests too."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["listen", "serve_asgi", "serve_wsgi", "url_of"]


def listen(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket (port 0: a free one), to know the URL before the app exists.

    Example:
        >>> sock = listen()
        >>> url_of(sock).startswith("http://127.0.0.1:")
        True
        >>> sock.close()
    """
    # IPPROTO_TCP, not 0: asyncio turns on TCP_NODELAY only for sockets that say so, and
    # without it every uvicorn answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    return sock


def url_of(sock: socket.socket) -> str:
    """The base URL of a listening socket."""
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


@contextmanager
def serve_asgi(app: Any, sock: socket.socket) -> Iterator[str]:
    """Serve an ASGI app with uvicorn (lifespan on) until the block exits; yields its URL.

    Raises:
        RuntimeError: uvicorn did not start (its own log says why).

    Example:
        >>> with serve_asgi(app, listen()) as url:  # doctest: +SKIP
        ...     httpx.get(f"{url}/api/replicate-audio/jobs/x").status_code
        404
    """
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@contextmanager
def serve_wsgi(app: Any, sock: socket.socket) -> Iterator[str]:
    """Serve a WSGI app with werkzeug, a thread per request, until the block exits.

    Example:
        >>> with serve_wsgi(flask_app, listen()) as url:  # doctest: +SKIP
        ...     ...
    """
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    host, port = sock.getsockname()[:2]
    server = make_server(host, port, app, threaded=True, fd=sock.fileno())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield url_of(sock)
    finally:
        server.shutdown()
        thread.join(timeout=20)
