"""A stdlib HTTP server on 127.0.0.1 that hands webhook deliveries to a running ReplicateAudio."""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from replicate_audio.app import ReplicateAudio
from replicate_audio.jobs import Job

_ROUTE = re.compile(r"/api/replicate-webhook/([^/]+)/([^/?]+)(?:\?job=([^&]+))?")


class WebhookReceiver:
    """A stdlib HTTP server on 127.0.0.1 that hands deliveries to a running ReplicateAudio.

    It keeps the core's tests free of any web framework; the adapters have their own tests.
    """

    def __init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                match = _ROUTE.fullmatch(self.path)
                if match is None:
                    status, answer = 404, {"detail": "no route"}
                else:
                    content_type, content_id, job_id = match.groups()
                    handle = functools.partial(receiver.audio.handle_webhook, job_id=job_id)
                    outcome = receiver.call(
                        handle, content_type, content_id, dict(self.headers), body
                    )
                    status, answer = outcome.status_code, outcome.body
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.audio: ReplicateAudio
        self.portal: BlockingPortal
        self._stack = ExitStack()

    def serve(self, audio: ReplicateAudio) -> WebhookReceiver:
        """Start *audio* on a loop thread, then start answering deliveries."""
        self.audio = audio
        self.portal = self._stack.enter_context(start_blocking_portal())
        self._stack.enter_context(self.portal.wrap_async_context_manager(audio))
        thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        return self

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run an async function on the facade's loop and wait for its result."""
        return self.portal.call(function, *args)

    def wait_for(self, job_id: str, *, timeout: float = 15.0) -> Job:
        """Wait until the job is terminal and return it."""
        deadline = time.monotonic() + timeout
        while True:
            job: Job = self.call(self.audio.get_job, job_id)
            if job.is_terminal:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout} s")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._stack.close()
