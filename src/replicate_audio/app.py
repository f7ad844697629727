"""``ReplicateAudio``: what an app configures once: settings, store, processors, dispatcher."""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import attrs
from replicate.client import Client

from .config import ReplicateAudioConfig, Settings
from .dispatch import Dispatcher, InProcessDispatcher
from .download import Downloader
from .errors import ConfigurationError, JobNotFoundError, PredictionError
from .intake import Intake, WebhookOutcome
from .jobs import WAITING, Job, JobStatus
from .metrics import Metrics, guarded
from .pipeline import process_job, replay
from .predictions import (
    DEFAULT_RETRY,
    RetryPolicy,
    acreate_webhook_prediction,
    client_for,
    create_webhook_prediction,
    send_create,
)
from .processors import AudioPostProcessor, _registered_keys, registered_content_types
from .recovery import BackgroundWork, Reconciled
from .replicate_api import PredictionsAPI
from .storage import (
    BlockingStore,
    Store,
    StoredAudio,
    SyncStore,
    as_store,
    open_store,
)
from .webhooks import is_prediction_id

__all__ = ["ReplicateAudio", "WebhookOutcome"]

logger = logging.getLogger("replicate_audio")

# What a job's error may carry that only an authorized caller should see (an output URL).
_URL = re.compile(r"(?:https?|data):[^\s'\"]+")


class ReplicateAudio:
    """One object per app: generate audio, take webhooks, read jobs and audio back.

    Args:
        settings: defaults to :meth:`Settings.from_env`.
        store: job, audio and log storage, async or blocking (a blocking one is wrapped
            once, here); defaults to the store of ``REPLICATE_AUDIO_DATABASE`` (a SQLite
            file, ``replicate-audio.sqlite3`` unless set, or a SQLAlchemy URL), opened here.
        processors: content type -> processor; defaults to the global registry
            (``sound_effect``, ``background_music`` and whatever was registered).
        dispatcher: defaults to an :class:`InProcessDispatcher`.
        downloader: defaults to a :class:`Downloader` over *settings*.
        lease: seconds a worker's claim on a job lasts unrenewed (renewed every third of
            it while the job is worked on), after which the job may be taken over; default
            ``settings.lease`` (``REPLICATE_AUDIO_LEASE``, 30 s).
        sweep_interval: how often unfinished jobs are looked for (and lost webhooks
            reconciled); 0 turns the sweep off; default ``settings.sweep_interval``
            (``REPLICATE_AUDIO_SWEEP_INTERVAL``, 15 s).
        reconcile_after: seconds without news after which a job's prediction is fetched;
            default ``settings.reconcile_after`` (``REPLICATE_AUDIO_RECONCILE_AFTER``, 120 s).
        metrics: told about predictions, webhook answers and finished jobs, e.g. a
            :class:`~replicate_audio.metrics.PrometheusMetrics`.
        mode: ``webhooks`` or ``polling`` (no webhook: one poller follows every unfinished
            job, within ``settings.poll_reads_per_minute``); default ``settings.mode``
            (``REPLICATE_AUDIO_MODE``, ``webhooks``).

    Example:
        >>> from replicate_audio.storage import MemoryStore
        >>> audio = ReplicateAudio(Settings(), store=MemoryStore())
        >>> audio.content_types
        ('background_music', 'sound_effect')
    """

    def __init__(
        self,
        settings: Settings | None = None,
        store: Store | BlockingStore | None = None,
        processors: Mapping[str, AudioPostProcessor] | None = None,
        dispatcher: Dispatcher | None = None,
        *,
        downloader: Downloader | None = None,
        client: Client | None = None,
        lease: float | None = None,
        sweep_interval: float | None = None,
        reconcile_after: float | None = None,
        metrics: Metrics | None = None,
        mode: str | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        if mode is not None:
            self.settings = attrs.evolve(self.settings, mode=mode)
        self.store: Store = as_store(
            store if store is not None else open_store(self.settings.database)
        )
        self.processors = dict(processors) if processors is not None else None
        self.dispatcher: Dispatcher = dispatcher or InProcessDispatcher()
        self._owns_downloader = downloader is None
        self.downloader = downloader or Downloader(self.settings)
        self.client = client
        self.lease = self.settings.lease if lease is None else lease
        self.metrics = guarded(metrics)
        self.intake = Intake(
            settings=self.settings,
            store=self.store,
            dispatcher=self.dispatcher,
            content_types=self._served,
            metrics=self.metrics,
        )
        self._background = BackgroundWork(
            self,
            sweep_interval=self.settings.sweep_interval
            if sweep_interval is None
            else sweep_interval,
            reconcile_after=(
                self.settings.reconcile_after if reconcile_after is None else reconcile_after
            ),
        )
        self._sync_lock = threading.Lock()
        self._sync_store: SyncStore | None = None

    # -- asking for audio ---------------------------------------------------------------

    @property
    def content_types(self) -> tuple[str, ...]:
        """The content types this app accepts."""
        if self.processors is not None:
            return tuple(sorted(self.processors))
        return registered_content_types()

    def _served(self) -> Collection[str]:
        """The content types this app accepts, for a membership test per delivery: the
        processors' own keys, not a sorted copy."""
        if self.processors is not None:
            return self.processors.keys()
        return _registered_keys()

    def replicate_client(self) -> Client:
        """The ``replicate.Client`` this app creates predictions with."""
        return self.client or client_for(self.settings)

    async def generate(
        self,
        content_type: str,
        content_id: str | int,
        config: ReplicateAudioConfig,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> Job:
        """Record a job, then create its prediction; returns at once (see
        :func:`acreate_webhook_prediction`). *retry* says how 429s and 5xx are retried.

        Raises:
            UnknownContentTypeError, InvalidContentIdError, PredictionError: as
                :func:`acreate_webhook_prediction` does.
        """
        with self._counting_prediction(content_type):
            return await acreate_webhook_prediction(
                content_type, content_id, config, settings=self.settings,
                client=self.replicate_client(), store=self.store, retry=retry,
                content_types=self.content_types,
            )  # fmt: skip

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
                content_type, content_id, config, settings=self.settings,
                client=self.replicate_client(), store=self.blocking_store(), retry=retry,
                content_types=self.content_types,
            )  # fmt: skip

    async def send_create(self, job: Job, *, retry: RetryPolicy = DEFAULT_RETRY) -> Job:
        """Create the prediction of a recorded ``creating`` job (what the sweep does for
        a job whose create never reached Replicate)."""
        with self._counting_prediction(job.content_type):
            return await send_create(
                job, store=self.store, settings=self.settings,
                client=self.replicate_client(), retry=retry,
            )  # fmt: skip

    def blocking_store(self) -> SyncStore:
        """This app's store through blocking methods, for code with no event loop; one
        loop thread serves every call (see :class:`~replicate_audio.storage.SyncStore`)."""
        with self._sync_lock:
            if self._sync_store is None:
                self._sync_store = SyncStore(self.store)
            return self._sync_store

    @contextmanager
    def _counting_prediction(self, content_type: str) -> Iterator[None]:
        created = False
        try:
            yield
            created = True
        finally:
            if self.metrics is not None:
                self.metrics.prediction_created(self.intake.label(content_type), ok=created)

    # -- receiving webhooks -------------------------------------------------------------

    async def handle_webhook(
        self,
        content_type: str,
        content_id: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        job_id: str | None = None,
    ) -> WebhookOutcome:
        """Verify a delivery, record it once, hand its job to the dispatcher, and say how
        to answer. Processing never runs here. *job_id* is the URL's ``job`` parameter.

        Status codes: 200 recorded (or a duplicate); 401 bad signature or timestamp;
        400 a body that is not a prediction; 404 unknown content type, or no job of ours
        matches; 413 body too large; 503 our store is down or could not commit within
        ``intake_timeout`` (so Replicate retries).
        """
        return await self.intake.handle_webhook(
            content_type, content_id, headers, body, job_id=job_id
        )

    def oversized_webhook(self, content_type: str) -> WebhookOutcome:
        """The 413 for a delivery larger than ``max_webhook_bytes``: what adapters answer when
        they stop reading a body at the limit (counted like every other answer)."""
        return self.intake.oversized(content_type)

    # -- reading back and running again --------------------------------------------------

    async def get_job(self, job_id: str) -> Job:
        """The job with this id, or whose prediction has this id.

        Raises:
            JobNotFoundError: there is none.
        """
        if not is_prediction_id(job_id):  # never handed to the store: some refuse such ids
            raise JobNotFoundError(job_id)
        job = await self.store.get_job(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

    async def get_audio(
        self, content_type: str, content_id: str, name: str | None = None
    ) -> StoredAudio | None:
        """The stored audio for this content (the newest job's), or None while there is none;
        with *name*, that named file (a stem, stored by
        :class:`~replicate_audio.processors.StemsProcessor`)."""
        if name is None:
            return await self.store.get_audio(content_type, content_id)
        return await self.store.get_audio(content_type, content_id, name)

    async def job_view(self, job: Job, *, full: bool) -> dict[str, Any]:
        """A job as the read routes show it: status, timestamps, error and, once completed,
        the stored audio's format, duration and size. *full* (an authorized caller) adds
        the job's config, prompt and input included; without it the config is left out and
        URLs in the error are masked.
        """
        view = job.to_dict()
        view["audio"] = None
        if job.status is JobStatus.COMPLETED:
            stored = await self.store.get_audio(job.content_type, job.content_id)
            if stored is not None and stored.job_id == job.id:
                view["audio"] = {
                    "format": stored.format,
                    "duration": stored.duration,
                    "size": stored.size,
                }
        if not full:
            view["config"] = None
            if job.error:
                view["error"] = _URL.sub("<url>", job.error)
        return view

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
            JobNotFoundError: there is no job with this id (or prediction id).
        """
        return await replay(
            job_id,
            store=self.store,
            downloader=self.downloader,
            processors=self.processors,
            metrics=self.metrics,
        )

    async def cancel(self, job_id: str) -> Job:
        """Cancel the job's prediction on Replicate. The job ends ``canceled`` once, whether
        the cancel's answer or the webhook that follows it is recorded first (both go
        through the same intake); a job already finished is returned as it is.

        Raises:
            JobNotFoundError: there is no job with this id (or prediction id).
            PredictionError: the job's create has not answered yet (no prediction to
                cancel; try again), or Replicate refused.
        """
        job = await self.get_job(job_id)
        if job.is_terminal or job.status not in WAITING:
            return job
        if job.prediction_id is None:
            raise PredictionError(f"job {job.id} has no prediction yet; cancel it once created")
        async with PredictionsAPI(self.settings) as api:
            answer = await api.cancel(job.prediction_id)
        recorded = await self.intake.take_fetched(job.id, answer, source="cancel")
        return recorded.job or await self.get_job(job.id)

    def cancel_sync(self, job_id: str) -> Job:
        """:meth:`cancel` for code with no event loop (on the loop thread of
        :meth:`blocking_store`, where this app's store connections live)."""
        job: Job = self.blocking_store().run(self.cancel, job_id)
        return job

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

    async def reconcile(
        self, *, older_than: float = 0.0, dry_run: bool = False
    ) -> list[Reconciled]:
        """Reconcile now: ask Replicate about every unfinished job with no news for
        *older_than* seconds (0: all of them) and record each prediction that has ended, as
        its webhook would have been; with *dry_run*, only say what would be done.

        Returns:
            One entry per job looked at: Replicate's status, whether the job moved, and why.
        """
        return await self._background.reconcile(older_than=older_than, dry_run=dry_run)

    def set_recovery(
        self,
        *,
        lease: float | None = None,
        sweep_interval: float | None = None,
        reconcile_after: float | None = None,
    ) -> None:
        """Change the recovery knobs before :meth:`start` (what ``replicate-audio worker``'s
        options do to an app given with ``--app``); None leaves one as it is."""
        for name, value in (
            ("lease", lease),
            ("sweep_interval", sweep_interval),
            ("reconcile_after", reconcile_after),
        ):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ConfigurationError(name, f"must be a number of seconds, not {value!r}")
        if lease is not None:
            self.lease = lease
        if sweep_interval is not None:
            self._background.sweep_interval = sweep_interval
        if reconcile_after is not None:
            self._background.reconcile_after = reconcile_after

    @property
    def background(self) -> BackgroundWork:
        """The sweep: ``resolve_unsent()``, ``requeue()`` and ``reconcile()`` run on demand."""
        return self._background
