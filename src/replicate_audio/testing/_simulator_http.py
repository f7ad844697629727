"""The simulator's HTTP side: Replicate's API routes and the output files, on the stdlib server."""

from __future__ import annotations

import hmac
import json
import re
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, BinaryIO

from ._models import find_model, find_version, versions_page
from ._predictions import NOT_FOUND, UNAUTHENTICATED, Problem

if TYPE_CHECKING:
    from .simulator import ReplicateSimulator

_MAX_BODY = 10 * 1024 * 1024
_CHUNK = 64 * 1024
_MODEL_PREDICTIONS = re.compile(r"/v1/models/([^/]+/[^/]+)/predictions")
_DEPLOYMENT_PREDICTIONS = re.compile(r"/v1/deployments/([^/]+/[^/]+)/predictions")
_MODEL = re.compile(r"/v1/models/([^/]+/[^/]+)")
_VERSIONS = re.compile(r"/v1/models/([^/]+/[^/]+)/versions")
_VERSION = re.compile(r"/v1/models/([^/]+/[^/]+)/versions/([^/]+)")
_PREDICTION = re.compile(r"/v1/predictions/([a-z0-9]+)")
_CANCEL = re.compile(r"/v1/predictions/([a-z0-9]+)/cancel")
_FILE = re.compile(r"/files/([a-z0-9]+)/([\w.-]+)")
_CONTENT_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav"}


def is_create(method: str, path: str) -> bool:
    """Whether the request creates a prediction (by version, model or deployment).

    Example:
        >>> is_create("POST", "/v1/models/meta/musicgen/predictions")
        True
        >>> is_create("GET", "/v1/predictions")
        False
    """
    return method == "POST" and bool(
        path == "/v1/predictions"
        or _MODEL_PREDICTIONS.fullmatch(path)
        or _DEPLOYMENT_PREDICTIONS.fullmatch(path)
    )


class SimulatorServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its simulator; loopback, deep backlog, daemon threads."""

    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: ReplicateSimulator) -> None:
        self.simulator = simulator
        super().__init__(address, SimulatorHandler)


class SimulatorHandler(BaseHTTPRequestHandler):
    """Routes one request to the simulator; every API answer is JSON shaped like Replicate's."""

    protocol_version = "HTTP/1.1"
    # Answers are written in a few small pieces; with Nagle on, each keep-alive exchange
    # would wait for a delayed ACK.
    disable_nagle_algorithm = True
    server_version = "replicate-audio-simulator"
    timeout = 30  # an idle keep-alive connection is closed after this many seconds
    server: SimulatorServer

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet; tests read ``sim.creates``, ``sim.deliveries`` and ``sim.downloads``."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path, _, query = self.path.partition("?")
        try:
            body = self._read_body()
            if (match := _FILE.fullmatch(path)) and method == "GET":
                self._serve_file(match.group(1), match.group(2))
                return
            self._check_token()
            self._route(method, path, query, body)
        except Problem as problem:
            self._json(problem.status, problem.body(), headers=problem.headers, problem_json=True)
        except (TimeoutError, ConnectionError):
            self.close_connection = True

    def _route(self, method: str, path: str, query: str, body: bytes) -> None:
        sim = self.server.simulator
        if not is_create(method, path):
            sim._limits.check_read()  # creates are counted (and recorded) by the desk
        if method == "POST" and path == "/v1/predictions":
            self._create(body, None)
        elif method == "GET" and path == "/v1/predictions":
            self._json(200, sim._list(query))
        elif method == "POST" and (match := _MODEL_PREDICTIONS.fullmatch(path)):
            self._create(body, match.group(1))
        elif method == "POST" and (match := _DEPLOYMENT_PREDICTIONS.fullmatch(path)):
            self._create(body, None, deployment=match.group(1))
        elif method == "GET" and (match := _MODEL.fullmatch(path)):
            self._json(200, sim._model(match.group(1)))
        elif method == "GET" and (match := _VERSIONS.fullmatch(path)):
            self._json(200, versions_page(find_model(sim._models, match.group(1))))
        elif method == "GET" and (match := _VERSION.fullmatch(path)):
            spec = find_model(sim._models, match.group(1))
            self._json(200, find_version(spec, match.group(2)))
        elif method == "POST" and (match := _CANCEL.fullmatch(path)):
            self._json(200, sim._cancel(match.group(1)))
        elif method == "GET" and (match := _PREDICTION.fullmatch(path)):
            self._json(200, sim._json(match.group(1)))
        elif method == "GET" and path == "/v1/webhooks/default/secret":
            self._json(200, {"key": sim.secret})
        else:
            raise Problem(404, *NOT_FOUND)

    def _create(self, raw: bytes, model: str | None, *, deployment: str | None = None) -> None:
        sim = self.server.simulator
        try:
            body: Any = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        answer = sim._desk.create(self.path, body, dict(self.headers.items()), model, deployment)
        with sim._desk.answering(answer) as final:
            self._json(
                final.status,
                final.body,
                headers=final.headers,
                problem_json=final.status >= 400,
            )

    def _check_token(self) -> None:
        value = self.headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        expected = self.server.simulator.api_token
        if scheme.lower() not in ("bearer", "token") or not hmac.compare_digest(
            token.strip().encode(), expected.encode()
        ):
            raise Problem(401, *UNAUTHENTICATED)

    def _read_body(self) -> bytes:
        length = self.headers.get("content-length", "0").strip() or "0"
        if not length.isdigit() or int(length) > _MAX_BODY:
            self.close_connection = True
            raise Problem(
                413, "Request too large", "The body is missing a valid length or too big."
            )
        return self.rfile.read(int(length))

    def _json(
        self,
        status: int,
        payload: Any,
        *,
        headers: dict[str, str] | None = None,
        problem_json: bool = False,
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        kind = "application/problem+json" if problem_json else "application/json"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _serve_file(self, prediction_id: str, name: str) -> None:
        sim = self.server.simulator
        plan = sim._plan_download(prediction_id, name, self.path)
        if plan.status != 200 or plan.file is None:
            self._json(plan.status, plan.body or {}, problem_json=True)
            return
        size = plan.file.stat().st_size
        self.send_response(200)
        self.send_header(
            "Content-Type", _CONTENT_TYPES.get(plan.format, "application/octet-stream")
        )
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with plan.file.open("rb") as file:
            if plan.fault == "truncated":
                self._copy(file, size // 2)
                self.wfile.flush()
                self.close_connection = True
                # Close at once: the client must see a short body, not a pause.
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if plan.fault == "slow":
                self._copy(file, 1024)
                self.wfile.flush()
                sim._stopping.wait(plan.stall)
            self._copy(file, size)

    def _copy(self, file: BinaryIO, limit: int) -> None:
        """Send up to *limit* bytes from *file* in chunks, so big outputs never sit in memory."""
        while limit > 0 and (chunk := file.read(min(_CHUNK, limit))):
            self.wfile.write(chunk)
            limit -= len(chunk)
