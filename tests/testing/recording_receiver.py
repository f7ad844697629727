"""A tiny webhook receiver for the simulator tests: a stdlib server on 127.0.0.1 that records."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs


@attrs.frozen
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes


class Receiver(ThreadingHTTPServer):
    """Records every POST; answers with the next status of ``statuses`` (then ``default``).

    ``on_post``, when set, runs with each request before it is answered.
    """

    daemon_threads = True
    request_queue_size = 512

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.statuses: list[int] = []
        self.default = 200
        self.location: str | None = None
        self.on_post: Callable[[Received], None] | None = None
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def bodies(self) -> list[bytes]:
        with self.lock:
            return [r.body for r in self.received]

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)


class _ReceiverHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        if self.server.on_post is not None:
            self.server.on_post(received)
        with self.server.lock:
            self.server.received.append(received)
            status = self.server.statuses.pop(0) if self.server.statuses else self.server.default
        self.send_response(status)
        if 300 <= status < 400 and self.server.location:
            self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()
