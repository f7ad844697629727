"""``ReplicateAudio``: what an app configures once: settings, store, processors, dispatcher."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import attrs
from replicate.client import Client

from .background import BackgroundWork
from .config import ReplicateAudioConfig, Settings
from .dispatch import Dispatcher, InProcessDispatcher
from .download import Downloader
from .errors import JobNotFoundError, StorageError, WebhookVerificationError
from .jobs import Job, JobStatus
from .metrics import Metrics, guarded
from .pipeline import DEFAULT_LEASE, process_job, record_prediction, replay
from .predictions import (
    DEFAULT_RETRY,
    RetryPolicy,
    acreate_webhook_prediction,
    client_for,
    create_webhook_prediction,
)
from .processors import AudioPostProcessor
from .storage import Store, StoredAudio, call, open_store
from .webhooks import is_prediction_id, verify_webhook

__all__ = ["ReplicateAudio", "WebhookOutcome"]

logger = logging.getLogger("replicate_audio")

# Job states in which a delivery leaves work for the dispatcher.
_DISPATCH = frozenset({JobStatus.RECEIVED, JobStatus.FAILED, JobStatus.CANCELED})


@attrs.frozen
class WebhookOutcome:
    """What :meth:`ReplicateAudio.handle_webhook` decided: the status code and a JSON body."""

    status_code: int
    body: dict[str, Any]

    @classmethod
    def refuse(cls, status_code: int, detail: str) -> WebhookOutcome:
        """A 4xx (or 503) whose body says why."""
        return cls(status_code, {"detail": detail})


class ReplicateAudio:
    """One object per app: generate audio, take webhooks, read jobs and audio back.

    Args:
        settings: defaults to :meth:`Settings.from_env`.
        store: job, audio and log storage; defaults to ``REPLICATE_AUDIO_DATABASE``
            (a SQLite file, or a SQLAlchemy URL).
        processors: content type -> processor; defaults to the global registry
            (``sound_effect``, ``background_music`` and whatever was registered).
        dispatcher: defaults to an :class:`InProcessDispatcher`.
        downloader: defaults to a :class:`Downloader` over *settings*.
        lease: seconds before a job left in ``processing`` may be taken over.
        sweep_interval: how often unfinished jobs are looked for (and lost webhooks
            reconciled); 0 turns the sweep off.
        reconcile_after: seconds without news after which a job's prediction is fetched.
        metrics: told about predictions, webhook answers and finished jobs, e.g. a
            :class:`~replicate_audio.metrics.PrometheusMetrics`.

    Example:
        >>> audio = ReplicateAudio()  # doctest: +SKIP
        >>> async with audio:  # doctest: +SKIP
        ...     job = await audio.generate("sound_effect", 42, config)
    """

    def __init__(
        self,
        settings: Settings | None = None,
        store: Store | None = None,
        processors: Mapping[str, AudioPostProcessor] | None = None,
        dispatcher: Dispatcher | None = None,
        *,
        downloader: Downloader | None = None,
        client: Client | None = None,
        lease: float = DEFAULT_LEASE,
        sweep_interval: float = 30.0,
        reconcile_after: float = 120.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.store: Store = store if store is not None else open_store(self.settings.database)
        self.processors = dict(processors) if processors is not None else None
        self.dispatcher: Dispatcher = dispatcher or InProcessDispatcher()
        self._owns_downloader = downloader is None
        self.downloader = downloader or Downloader(self.settings)
        self.client = client
        self.lease = lease
        self.metrics = guarded(metrics)
        self._background = BackgroundWork(
            self, sweep_interval=sweep_interval, reconcile_after=reconcile_after
        )

    # -- asking for audio ---------------------------------------------------------------

    @property
    def content_types(self) -> tuple[str, ...]:
        """The content types this app accepts."""
        if self.processors is not None:
            return tuple(sorted(self.processors))
        from .processors import registered_content_types

        return registered_content_types()

    def replicate_client(self) -> Client:
        """The ``replicate.Client`` this app creates predictions with."""
        return self.client or client_for(self.settings)

    def _creation_options(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "client": self.replicate_client(),
            "store": self.store,
            "content_types": self.content_types,
        }

    async def generate(
        self,
        content_type: str,
        content_id: str | int,
        config: ReplicateAudioConfig,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> Job:
        """Create a prediction and record its job; returns at once.

        *retry* says how 429s and 5xx from Replicate are retried.

        Raises:
            UnknownContentTypeError, InvalidContentIdError, PredictionError: as
                :func:`acreate_webhook_prediction` does.
        """
        with self._counting_prediction(content_type):
            return await acreate_webhook_prediction(
                content_type, content_id, config, retry=retry, **self._creation_options()
            )

    def generate_sync(
        self,
        content_type: str,
        content_id: str | int,
        config: ReplicateAudioConfig,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> Job:
        """:meth:`generate` for synchronous code (Flask views, scripts)."""
        with self._counting_prediction(content_type):
            return create_webhook_prediction(
                content_type, content_id, config, retry=retry, **self._creation_options()
            )

    def _label(self, content_type: str) -> str:
        """*content_type* as a metrics label: ``unknown`` unless served, so that callers
        cannot grow the label set."""
        return content_type if content_type in self.content_types else "unknown"

    @contextmanager
    def _counting_prediction(self, content_type: str) -> Iterator[None]:
        created = False
        try:
            yield
            created = True
        finally:
            if self.metrics is not None:
                self.metrics.prediction_created(self._label(content_type), ok=created)

    # -- receiving webhooks -------------------------------------------------------------

    async def handle_webhook(
        self, content_type: str, content_id: str, headers: Mapping[str, str], body: bytes
    ) -> WebhookOutcome:
        """Verify a delivery, record it once, hand its job to the dispatcher, and say how
        to answer. Processing never runs here.

        Status codes: 200 recorded (or a duplicate); 401 bad signature or timestamp;
        400 a body that is not a prediction; 404 unknown content type, or no job of ours
        matches; 413 body too large; 503 our store is down (so Replicate retries).
        """
        if len(body) > self.settings.max_webhook_bytes:
            return self.oversized_webhook(content_type)
        try:
            outcome = await self._handle_webhook(content_type, content_id, headers, body)
        except Exception:
            self._count_webhook(content_type, 500)
            raise
        self._count_webhook(content_type, outcome.status_code)
        return outcome

    def oversized_webhook(self, content_type: str) -> WebhookOutcome:
        """The 413 for a delivery larger than ``max_webhook_bytes``: what adapters answer when
        they stop reading a body at the limit (counted like every other answer)."""
        self._count_webhook(content_type, 413)
        limit = self.settings.max_webhook_bytes
        return WebhookOutcome.refuse(413, f"the body is larger than {limit} bytes")

    def _count_webhook(self, content_type: str, status_code: int) -> None:
        if self.metrics is not None:
            self.metrics.webhook_answered(self._label(content_type), status_code)

    async def _handle_webhook(
        self, content_type: str, content_id: str, headers: Mapping[str, str], body: bytes
    ) -> WebhookOutcome:
        if content_type not in self.content_types:
            return WebhookOutcome.refuse(404, f"unknown content type {content_type!r}")
        try:
            event = verify_webhook(
                headers,
                body,
                self.settings.webhook_secrets,
                tolerance=self.settings.webhook_tolerance,
            )
        except WebhookVerificationError as error:
            return WebhookOutcome.refuse(error.status_code, str(error))
        prediction = event.prediction
        try:
            job: Job | None = await call(self.store.get_job, prediction.id)
            if job is None or (job.content_type, job.content_id) != (content_type, content_id):
                detail = f"no {content_type} {content_id!r} job for prediction {prediction.id!r}"
                return WebhookOutcome.refuse(404, detail)
            recorded = await record_prediction(
                self.store, event.webhook_id, prediction, self.metrics
            )
        except StorageError as error:
            logger.error("could not record webhook %s: %s", event.webhook_id, error)
            return WebhookOutcome.refuse(503, "storage is unavailable; try again")
        if recorded.changed and recorded.job.status in _DISPATCH:
            await self.dispatcher.submit(prediction.id)
        return WebhookOutcome(
            200,
            {
                "job": prediction.id,
                "status": recorded.job.status.value,
                "duplicate": recorded.duplicate,
            },
        )

    # -- reading back and running again --------------------------------------------------

    async def get_job(self, job_id: str) -> Job:
        """The job with this id (the prediction id).

        Raises:
            JobNotFoundError: there is none.
        """
        if not is_prediction_id(job_id):  # never handed to the store: some refuse such ids
            raise JobNotFoundError(job_id)
        job: Job | None = await call(self.store.get_job, job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

    async def get_audio(self, content_type: str, content_id: str) -> StoredAudio | None:
        """The stored audio for this content, or None while there is none."""
        audio: StoredAudio | None = await call(self.store.get_audio, content_type, content_id)
        return audio

    async def process(self, job_id: str) -> Job:
        """Process one job now, in this task (what the dispatcher runs)."""
        return await process_job(
            job_id,
            store=self.store,
            downloader=self.downloader,
            processors=self.processors,
            lease=self.lease,
            metrics=self.metrics,
        )

    async def replay(self, job_id: str) -> Job:
        """Run a ``dead`` job again; other jobs are returned unchanged.

        Raises:
            JobNotFoundError: there is no job with this id.
        """
        return await replay(
            job_id,
            store=self.store,
            downloader=self.downloader,
            processors=self.processors,
            metrics=self.metrics,
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> ReplicateAudio:
        await self._background.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._background.stop()
        if self._owns_downloader:
            # Its connections belong to this event loop; a later start gets a fresh one.
            await self.downloader.aclose()
            self.downloader = Downloader(self.settings)

    async def start(self) -> None:
        """Start the dispatcher and the sweep; unfinished jobs are picked up at once.

        Call :meth:`stop` from the same task (as a lifespan does), or use ``async with``.
        """
        await self.__aenter__()

    async def stop(self) -> None:
        """Drain the dispatcher (unfinished jobs stay recoverable) and close the downloader."""
        await self.__aexit__(None, None, None)
