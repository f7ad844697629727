"""Serve an ASGI app (uvicorn) or a WSGI app (threaded werkzeug) on 127.0.0.1, in a thread of
this process or in a child process of its own, as the example apps are served in the tests."""

from __future__ import annotations

import multiprocessing
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from replicate_audio.testing.servers import listen, serve_asgi, serve_wsgi, url_of

FRAMEWORKS = ("fastapi", "flask")


@contextmanager
def in_thread(framework: str, app: Any, sock: socket.socket | None = None) -> Iterator[str]:
    """Serve *app* (FastAPI or Flask, as *framework* says) on a thread, on *sock* or a new
    socket (closed afterwards either way); yields its base URL."""
    sock = sock or listen()
    url = url_of(sock)
    serve = {"fastapi": serve_asgi, "flask": serve_wsgi}[framework]
    try:
        with serve(app, sock):
            yield url
    finally:
        sock.close()


def _serve_forever(
    framework: str, factory: Callable[..., Any], args: tuple[Any, ...], urls: Any
) -> None:
    sock = listen()
    with in_thread(framework, factory(url_of(sock), *args), sock) as url:
        urls.put(url)
        threading.Event().wait()  # until the parent terminates this process


@contextmanager
def in_child(framework: str, factory: Callable[..., Any], *args: Any) -> Iterator[str]:
    """Serve ``factory(url, *args)`` from a child process, so that the app does not share an
    interpreter lock with the load generator (or the simulator); yields the app's base URL.
    *factory* must be importable; it is given the URL the app will be served at."""
    context = multiprocessing.get_context("spawn")
    urls = context.Queue()
    child = context.Process(target=_serve_forever, args=(framework, factory, args, urls))
    child.start()
    try:
        yield urls.get(timeout=60)
    finally:
        child.terminate()
        child.join(timeout=20)
