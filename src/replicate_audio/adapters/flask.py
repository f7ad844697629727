"""Flask integration: ``init_app(app, audio)`` mounts the routes; the background work runs on a
thread the extension owns (one per process), never on a request's thread.

    app = Flask(__name__)
    init_app(app, ReplicateAudio())
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from typing import Any, TypeVar

try:
    from flask import Blueprint, Flask, Request, Response, current_app, jsonify, request
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "replicate_audio.adapters.flask needs Flask: install replicate-audio[flask]"
    ) from error

from anyio.from_thread import BlockingPortal, start_blocking_portal
from werkzeug.exceptions import MethodNotAllowed, NotFound

from ..app import ReplicateAudio, WebhookOutcome
from ..config import JOB_ROUTE, WEBHOOK_ROUTE
from ..errors import JobNotFoundError, ReadRoutesNotMounted, StorageError
from ..intake import UNAVAILABLE
from ..jobs import Job

__all__ = ["ReadRoutesNotMounted", "ReplicateAudioExtension", "init_app"]

T = TypeVar("T")


class ReplicateAudioExtension:
    """What ``app.extensions["replicate_audio"]`` holds: the facade and its event loop thread.

    The loop starts on first use in each process (so it survives a forking server such as
    gunicorn with ``--preload``) and stops when :meth:`close` is called, before the process
    forks, or when it exits.
    """

    def __init__(
        self, audio: ReplicateAudio, *, authorize: Callable[[Request, Job], bool] | None = None
    ) -> None:
        self.audio = audio
        #: Who may read jobs (``init_app``'s *authorize*); None: anyone, where mounted.
        self.authorize = authorize
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._audio_cm: AbstractContextManager[ReplicateAudio] | None = None
        if hasattr(os, "register_at_fork"):
            # A child gets no copy of the loop thread, only state tied to it (finalising it
            # there waits forever on the missing loop): stop it first, so that parent and
            # child each start afresh on their next use.
            reference = weakref.ref(self)
            os.register_at_fork(before=lambda: _close_if_alive(reference))

    def portal(self) -> BlockingPortal:
        """The running loop of this process, started (with the facade) on first use."""
        with self._lock:
            if self._portal is None or self._pid != os.getpid():
                self._portal_cm = start_blocking_portal()
                self._portal = self._portal_cm.__enter__()
                self._audio_cm = self._portal.wrap_async_context_manager(self.audio)
                self._audio_cm.__enter__()
                self._pid = os.getpid()
                atexit.register(self.close)
            return self._portal

    def call(self, function: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """Run an async function of the facade on the extension's loop, and wait for it."""
        result: T = self.portal().call(function, *args)
        return result

    def close(self) -> None:
        """Drain the background work and stop the loop thread."""
        with self._lock:
            if self._portal is None or self._pid != os.getpid():
                return
            audio_cm, portal_cm = self._audio_cm, self._portal_cm
            self._portal = self._portal_cm = self._audio_cm = None
        if audio_cm is not None:
            audio_cm.__exit__(None, None, None)
        if portal_cm is not None:
            portal_cm.__exit__(None, None, None)


def _close_if_alive(reference: weakref.ref[ReplicateAudioExtension]) -> None:
    # Servers fork from their main thread (gunicorn --preload). A fork from one of our own
    # worker threads must not wait here for the loop that is waiting on that very thread.
    extension = reference()
    if extension is not None and threading.current_thread() is threading.main_thread():
        extension.close()


def _answer(outcome: WebhookOutcome) -> tuple[Response, int]:
    return jsonify(outcome.body), outcome.status_code


def _extension() -> ReplicateAudioExtension:
    extension: ReplicateAudioExtension = current_app.extensions["replicate_audio"]
    return extension


def _read_body(limit: int) -> bytes | None:
    """The raw body, or None once it is larger than *limit* (checked before parsing)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = request.stream.read(limit + 1)
    return None if len(body) > limit else body


def _flask_rule(route: str) -> str:
    """``/a/{name}`` as Flask writes it: ``/a/<name>``."""
    return route.replace("{", "<").replace("}", ">")


def _route_root(route: str) -> str:
    """The fixed part of a route, up to its first parameter."""
    return route.partition("{")[0]


def replicate_webhook(content_type: str, content_id: str) -> tuple[Response, int]:
    """Take one Replicate delivery: verify, record, queue; never process here."""
    extension = _extension()
    limit = extension.audio.settings.max_webhook_bytes
    body = _read_body(limit)
    if body is None:
        return _answer(extension.audio.oversized_webhook(content_type))
    headers = dict(request.headers.items())
    job_id = request.args.get("job")
    handle = functools.partial(extension.audio.handle_webhook, job_id=job_id)
    outcome = extension.call(handle, content_type, content_id, headers, body)
    return _answer(outcome)


def replicate_audio_job(job_id: str) -> tuple[Response, int]:
    """Show one job as JSON, to whom the app's ``authorize`` lets see it (or to anyone)."""
    extension = _extension()
    authorize = extension.authorize
    try:
        job = extension.call(extension.audio.get_job, job_id)
        if authorize is not None and not authorize(request, job):
            return _answer(WebhookOutcome.refuse(403, "not allowed to read this job"))
        view = functools.partial(extension.audio.job_view, full=authorize is not None)
        shown = extension.call(view, job)
    except JobNotFoundError as error:
        return _answer(WebhookOutcome.refuse(404, str(error)))
    except StorageError:
        return _answer(WebhookOutcome.refuse(503, UNAVAILABLE))
    return jsonify(shown), 200


def init_app(
    app: Flask,
    audio: ReplicateAudio,
    url_prefix: str = "/api",
    *,
    authorize: Callable[[Request, Job], bool] | None = None,
    public: bool = False,
) -> ReplicateAudioExtension:
    """Mount the webhook route (and the read routes, if allowed) under *url_prefix* and keep
    *audio* in ``app.extensions["replicate_audio"]``.

    Args:
        app: the Flask app.
        audio: the app's facade.
        url_prefix: where the routes go.
        authorize: called with the request and the job before a read route answers;
            falsy refuses (403). An authorized caller sees the whole job, its config (prompt
            and input) included.
        public: mount the read routes for anyone; they leave out the config and mask URLs
            in errors. Without *authorize* or *public* the read routes are not mounted, and
            a warning says how to mount them. The webhook route is always mounted: its
            signature is its auth.

    Example:
        >>> from replicate_audio.storage import MemoryStore
        >>> app = Flask(__name__)
        >>> extension = init_app(app, ReplicateAudio(store=MemoryStore()), public=True)
        >>> sorted(rule.rule for rule in app.url_map.iter_rules() if "replicate" in rule.rule)
        ['/api/replicate-audio/jobs/<job_id>', '/api/replicate-webhook/<content_type>/<content_id>']
    """
    extension = ReplicateAudioExtension(audio, authorize=authorize)
    app.extensions["replicate_audio"] = extension
    blueprint = Blueprint("replicate_audio", __name__)
    blueprint.add_url_rule(
        _flask_rule(WEBHOOK_ROUTE), view_func=replicate_webhook, methods=["POST"]
    )
    routes = [WEBHOOK_ROUTE]
    if authorize is not None or public:
        blueprint.add_url_rule(_flask_rule(JOB_ROUTE), view_func=replicate_audio_job)
        routes.append(JOB_ROUTE)
    else:
        warnings.warn(
            "the replicate-audio read routes (GET .../replicate-audio/jobs/<job_id>) are not "
            "mounted: pass init_app(app, audio, authorize=your_check) to serve them to your "
            "users, or public=True to serve them to anyone",
            ReadRoutesNotMounted,
            stacklevel=2,
        )
    app.register_blueprint(blueprint, url_prefix=url_prefix)
    ours = tuple(f"{url_prefix}{_route_root(route)}" for route in routes)

    def method_not_allowed(error: MethodNotAllowed) -> Any:
        # Only our routes answer in JSON; the rest of the app keeps its own error pages.
        if not request.path.startswith(ours):
            return error
        response = jsonify({"detail": f"{request.method} is not allowed here"})
        response.headers["Allow"] = ", ".join(error.valid_methods or ())
        return response, 405

    def not_found(error: NotFound) -> Any:
        if not request.path.startswith(ours):
            return error
        return jsonify({"detail": f"no route for {request.path}"}), 404

    app.register_error_handler(MethodNotAllowed, method_not_allowed)
    app.register_error_handler(NotFound, not_found)
    return extension
