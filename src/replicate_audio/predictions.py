"""Create Replicate predictions that report back by webhook, with retries on 429 and 5xx."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import threading
import weakref
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from replicate.client import Client
from replicate.exceptions import ReplicateError

from .config import ReplicateAudioConfig, Settings
from .errors import InvalidContentIdError, PredictionError, UnknownContentTypeError
from .jobs import Job, JobStatus, new_job_id
from .retries import RetryDecision, RetryPolicy, parse_retry_after, retrying
from .storage import BlockingStore, Store, SyncStore, open_store
from .storage.adapters import is_async_store

if TYPE_CHECKING:
    from replicate.prediction import Prediction as ReplicatePrediction

__all__ = [
    "RetryPolicy",
    "acreate_webhook_prediction",
    "create_webhook_prediction",
    "send_create",
]

logger = logging.getLogger("replicate_audio")

_CONTENT_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_CONTENT_TYPE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
# 5xx answers a retry cannot change (the method or HTTP version itself is refused).
_FINAL_5XX = frozenset({501, 505})

# The Retry-After of the last response seen by this task or thread; set by a response hook
# on the clients we build, because replicate's errors do not keep the response headers.
_retry_after: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "replicate_audio_retry_after", default=None
)

# The Cancel-After header of the create being sent by this task or thread: the replicate
# client takes no extra headers, so a request hook on the clients we build adds it.
_cancel_after: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "replicate_audio_cancel_after", default=None
)

T = TypeVar("T")


DEFAULT_RETRY = RetryPolicy()


class _Done:
    """An awaitable that is already finished."""

    def __await__(self) -> Any:
        return iter(())


def _record_retry_after(response: httpx.Response) -> _Done:
    # One hook serves both clients: the sync client ignores the return value, the async
    # one awaits it. The context variable is set in the caller's own task or thread.
    _retry_after.set(parse_retry_after(response.headers.get("retry-after")))
    return _Done()


def _add_cancel_after(request: httpx.Request) -> _Done:
    deadline = _cancel_after.get()
    if deadline is not None and request.method == "POST":
        request.headers["Cancel-After"] = deadline
    return _Done()


@contextmanager
def _deadline(job: Job) -> Iterator[None]:
    """Send the job's deadline as ``Cancel-After`` with the creates made inside."""
    token = _cancel_after.set(job.config.cancel_after if job.config else None)
    try:
        yield
    finally:
        _cancel_after.reset(token)


# One client per token and API URL, and per event loop: a client's async connections
# belong to the loop that opened them, and a script may run several loops one after another.
_clients: weakref.WeakKeyDictionary[object, dict[tuple[str | None, str], Client]] = (
    weakref.WeakKeyDictionary()
)
_clients_lock = threading.Lock()


class _NoLoop:
    """Stands for "no running event loop" as a weak-referenceable key."""


_NO_LOOP = _NoLoop()


def _current_loop() -> object:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return _NO_LOOP


def client_for(settings: Settings) -> Client:
    """The shared ``Client`` for these settings' token and API URL, in this event loop.

    Example:
        >>> client_for(Settings()) is client_for(Settings())
        True
    """
    key = (settings.api_token, settings.api_base_url)
    with _clients_lock:
        try:
            clients = _clients.setdefault(_current_loop(), {})
        except TypeError:  # a loop that cannot be weakly referenced: do not cache
            clients = {}
        if key not in clients:
            # Without a token the replicate client would read REPLICATE_API_TOKEN by itself;
            # Settings is the one place configuration comes from, so pass it explicitly.
            clients[key] = Client(
                api_token=settings.api_token or "",
                base_url=settings.api_base_url,
                event_hooks={"request": [_add_cancel_after], "response": [_record_retry_after]},
            )
        return clients[key]


def check_content(content_type: str, content_id: str, known: Collection[str]) -> None:
    """Refuse a content type that is not registered, or a content id that is not URL-safe.

    Raises:
        UnknownContentTypeError: *content_type* is not in *known*.
        InvalidContentIdError: *content_id* is not 1-128 of ``A-Za-z0-9._~-``.
    """
    if not isinstance(content_type, str) or content_type not in known:
        raise UnknownContentTypeError(str(content_type), tuple(sorted(known)))
    # "." and ".." would be removed from the webhook URL as dot segments by some clients.
    if (
        not isinstance(content_id, str)
        or not _CONTENT_ID.fullmatch(content_id)
        or content_id in (".", "..")
    ):
        raise InvalidContentIdError(
            f"content id {content_id!r} must be 1-128 characters of letters, digits and -._~"
        )


def _request(config: ReplicateAudioConfig, webhook: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"input": dict(config.input)}
    if webhook is not None:  # None: polling mode, the prediction reports to nobody
        params["webhook"] = webhook
        params["webhook_events_filter"] = list(config.webhook_events_filter)
    return params | config.target


def _error(error: ReplicateError | httpx.TransportError) -> PredictionError:
    if isinstance(error, httpx.TransportError):
        return PredictionError(f"could not reach Replicate: {error!r}")
    detail = error.detail or error.title
    return PredictionError(
        f"Replicate refused the prediction ({error.status}): {detail}",
        status=error.status,
        detail=error.detail,
    )


def _retryable(error: Exception) -> bool:
    if isinstance(error, ReplicateError):
        status = error.status or 0
        return status == 429 or (500 <= status <= 599 and status not in _FINAL_5XX)
    # Only a connection that never opened is safe to retry: the POST was not sent.
    return isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)


def _should_retry(error: Exception) -> RetryDecision:
    """Retry 429, 5xx but 501 and 505, and connections that never opened, waiting the
    ``Retry-After`` of the failed answer when it had one."""
    if not _retryable(error):
        return False
    waited = _retry_after.get()
    return True if waited is None else waited


def prediction_dict(prediction: Any) -> dict[str, Any]:
    """A ``replicate`` prediction object as the plain dict Replicate's JSON was."""
    data: dict[str, Any] = prediction.dict()  # replicate's models are pydantic v1 style
    return data


def _prepare(
    content_type: str,
    content_id: str | int,
    config: ReplicateAudioConfig,
    settings: Settings | None,
    content_types: Collection[str] | None,
) -> tuple[Job, Settings]:
    """Check the request and mint its job (not yet recorded)."""
    if content_types is None:
        from .processors import registered_content_types

        content_types = registered_content_types()
    content_id = str(content_id) if isinstance(content_id, int) else content_id
    check_content(content_type, content_id, content_types)
    job = Job(id=new_job_id(), content_type=content_type, content_id=content_id, config=config)
    return job, settings or Settings.from_env()


def _params(job: Job, settings: Settings) -> dict[str, Any]:
    if job.config is None:
        raise PredictionError(f"job {job.id} has no config to create its prediction from")
    if settings.mode == "polling":
        return _request(job.config, None)
    return _request(job.config, settings.webhook_url(job.content_type, job.content_id, job.id))


def _ambiguous(error: Exception) -> bool:
    """Whether the create may have reached Replicate although no answer came back."""
    return isinstance(error, httpx.TransportError) and not _retryable(error)


def _no_answer(job: Job, error: Exception) -> None:
    logger.warning("job %s: no answer to its create (%r); the sweep will find out", job.id, error)


def _refused(job: Job, error: PredictionError) -> str:
    logger.warning("job %s: the prediction could not be created: %s", job.id, error)
    return f"the prediction could not be created: {error}"


async def send_create(
    job: Job,
    *,
    store: Store,
    settings: Settings,
    client: Client | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> Job:
    """Create the prediction of a recorded ``creating`` job, and attach its id to the job.

    What :func:`acreate_webhook_prediction` does once the job is recorded, and what the
    sweep does for a job whose create never reached Replicate.

    Returns:
        The job, ``pending`` (or further, if a delivery outran the answer); still
        ``creating`` if the request was sent but no answer came back (the sweep finds out).

    Raises:
        PredictionError: Replicate refused, or kept failing; the job is marked ``failed``.
    """
    params = _params(job, settings)
    client = client or client_for(settings)
    create: Callable[..., Awaitable[ReplicatePrediction]] = client.predictions.async_create
    try:
        async for attempt in retrying(retry, on=_should_retry):
            with attempt, _deadline(job):
                _retry_after.set(None)
                prediction = await create(**params)
    except (ReplicateError, httpx.TransportError) as error:
        if _ambiguous(error):
            _no_answer(job, error)
            return job
        failure = _error(error)
        await store.transition(
            job.id,
            expected=[JobStatus.CREATING],
            new=JobStatus.FAILED,
            error=_refused(job, failure),
        )
        raise failure from error
    attached = await store.attach_prediction(job.id, prediction_dict(prediction))
    return attached or job


def _send_create_sync(
    job: Job,
    *,
    store: SyncStore | BlockingStore,
    settings: Settings,
    client: Client | None,
    retry: RetryPolicy,
) -> Job:
    """:func:`send_create` for code with no event loop, with the blocking client."""
    params = _params(job, settings)
    client = client or client_for(settings)
    try:
        for attempt in retrying(retry, on=_should_retry):
            with attempt, _deadline(job):
                _retry_after.set(None)
                prediction = client.predictions.create(**params)
    except (ReplicateError, httpx.TransportError) as error:
        if _ambiguous(error):
            _no_answer(job, error)
            return job
        failure = _error(error)
        store.transition(
            job.id,
            expected=[JobStatus.CREATING],
            new=JobStatus.FAILED,
            error=_refused(job, failure),
        )
        raise failure from error
    attached = store.attach_prediction(job.id, prediction_dict(prediction))
    return attached or job


def create_webhook_prediction(
    content_type: str,
    content_id: str | int,
    config: ReplicateAudioConfig,
    *,
    settings: Settings | None = None,
    client: Client | None = None,
    store: Store | BlockingStore | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    content_types: Collection[str] | None = None,
) -> Job:
    """Ask Replicate for audio and return at once; the result arrives by webhook.

    The job is recorded first, under an id of the library's own; then the prediction is
    created with the webhook URL
    ``{BASE_URL}{prefix}/replicate-webhook/{content_type}/{content_id}?job={job id}``, and
    its id attached to the job. A delivery that outruns the create's answer still finds
    its job, and a process that dies in between leaves a job the sweep resolves.

    Args:
        content_type: a registered content type (``sound_effect``, ``background_music``, ...).
        content_id: the id of the row the audio belongs to; URL-safe.
        config: the model or version, its input and the target duration.
        settings: defaults to :meth:`Settings.from_env`.
        client: a ``replicate.Client``; by default one shared client built from *settings*.
        store: where the job is recorded (async or blocking); by default the store of
            ``REPLICATE_AUDIO_DATABASE`` (``replicate-audio.sqlite3`` unless it is set),
            opened for this call and closed after it.
        retry: how 429 and 5xx answers are retried.
        content_types: the known content types (default: the registered processors).

    Returns:
        The recorded job: ``pending`` with its ``prediction_id``, or still ``creating``
        when the request went out but no answer came back.

    Raises:
        UnknownContentTypeError, InvalidContentIdError: before any request.
        PredictionError: Replicate refused (401, 402, 404, 422 ...) or kept failing; the
            job is recorded as ``failed`` with the reason.
        StorageError: the job could not be recorded; nothing was sent.

    Example:
        >>> job = create_webhook_prediction(  # doctest: +SKIP
        ...     "sound_effect", 42,
        ...     ReplicateAudioConfig(model="stability-ai/stable-audio-2.5",
        ...                          input={"prompt": "thunder", "duration": 5}, duration=4.0))
    """
    job, settings = _prepare(content_type, content_id, config, settings, content_types)
    with _blocking_store(store, settings) as blocking:
        recorded = blocking.create_job(job)
        return _send_create_sync(
            recorded, store=blocking, settings=settings, client=client, retry=retry
        )


@contextmanager
def _blocking_store(
    store: Store | BlockingStore | None, settings: Settings
) -> Iterator[SyncStore | BlockingStore]:
    """*store* as blocking methods: itself if blocking, else behind a :class:`SyncStore`
    (opened from the settings, and closed after, when none is given)."""
    if store is not None and not is_async_store(store):
        yield store  # type: ignore[misc]
        return
    opened = open_store(settings.database) if store is None else None
    target: Store = opened or store  # type: ignore[assignment]
    try:
        with SyncStore(target) as blocking:
            yield blocking
    finally:
        if opened is not None:
            opened.close()  # type: ignore[attr-defined]


async def acreate_webhook_prediction(
    content_type: str,
    content_id: str | int,
    config: ReplicateAudioConfig,
    *,
    settings: Settings | None = None,
    client: Client | None = None,
    store: Store | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    content_types: Collection[str] | None = None,
) -> Job:
    """The async form of :func:`create_webhook_prediction`, with the same arguments.

    Example:
        >>> job = await acreate_webhook_prediction("background_music", 7, config)  # doctest: +SKIP
    """
    job, settings = _prepare(content_type, content_id, config, settings, content_types)
    opened = open_store(settings.database) if store is None else None
    target: Store = opened or store  # type: ignore[assignment]
    try:
        recorded = await target.create_job(job)
        return await send_create(
            recorded, store=target, settings=settings, client=client, retry=retry
        )
    finally:
        if opened is not None:
            opened.close()  # type: ignore[attr-defined]
