"""What the library counts as it works, and Prometheus collectors for it (``[metrics]``).

``ReplicateAudio(metrics=PrometheusMetrics())`` counts predictions, webhook answers and
finished jobs; anything implementing :class:`Metrics` (StatsD, OpenTelemetry) plugs in the same
way. Each event is reported by the process that caused it, once: a job is counted as finished
by the worker whose move to the final status won, however many deliveries and workers saw it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .jobs import Job

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .storage import RecordedEvent

__all__ = ["Metrics", "PrometheusMetrics", "guarded"]

logger = logging.getLogger("replicate_audio")

#: Histogram buckets, in seconds: post-processing takes tenths of a second, generation minutes.
PROCESSING_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
JOB_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

# The collectors registered on each registry.
_LOCK = threading.Lock()
_REGISTERED: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)


@runtime_checkable
class Metrics(Protocol):
    """Told about what happens, on the event loop or a request's thread: keep it quick. What
    it raises is logged and swallowed (see :func:`guarded`); the work goes on."""

    def prediction_created(self, content_type: str, *, ok: bool) -> None:
        """A prediction was asked for.

        Args:
            content_type: the content type, or ``"unknown"`` for one the app does not serve.
            ok: created and recorded; False when Replicate or our own checks refused.
        """

    def webhook_answered(self, content_type: str, status_code: int) -> None:
        """A delivery was answered.

        Args:
            content_type: from the route, or ``"unknown"`` for one the app does not serve.
            status_code: what it was answered (500 when handling it raised).
        """

    def job_finished(self, job: Job, *, processing_seconds: float | None) -> None:
        """A job reached a final status by this process's hand, once per time it finishes
        (a replayed job finishes again).

        Args:
            job: the job as it was stored with its final status (completed, dead, failed,
                canceled).
            processing_seconds: from this worker's claim to the final status, for completed
                and dead jobs; None for failed and canceled ones, which no worker ran.
        """


def guarded(metrics: Metrics | None) -> Metrics | None:
    """*metrics* with each call's exception logged instead of raised: counting must never
    fail a request or a job."""
    if metrics is None or isinstance(metrics, _Guarded):
        return metrics
    return _Guarded(metrics)


class _Guarded:
    def __init__(self, inner: Metrics) -> None:
        self.inner = inner

    def prediction_created(self, content_type: str, *, ok: bool) -> None:
        self._call("prediction_created", content_type, ok=ok)

    def webhook_answered(self, content_type: str, status_code: int) -> None:
        self._call("webhook_answered", content_type, status_code)

    def job_finished(self, job: Job, *, processing_seconds: float | None) -> None:
        self._call("job_finished", job, processing_seconds=processing_seconds)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> None:
        try:
            getattr(self.inner, name)(*args, **kwargs)
        except Exception:
            logger.exception("metrics %r failed in %s; the work goes on", self.inner, name)


class FinishReporter:
    """Reports the jobs one claim finishes to (guarded) *metrics*, with the seconds since the
    claim."""

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics
        self.started = time.monotonic()

    def finished(self, job: Job) -> None:
        if self.metrics is not None:
            seconds = time.monotonic() - self.started
            self.metrics.job_finished(job, processing_seconds=seconds)


def count_final_event(recorded: RecordedEvent, metrics: Metrics | None) -> None:
    """Report to (guarded) *metrics* a job that this recorded delivery moved to ``failed``,
    ``canceled`` or ``aborted`` (jobs that complete or die are reported by the worker that
    finished them)."""
    job = recorded.job
    if metrics is not None and recorded.changed and job is not None and job.is_terminal:
        metrics.job_finished(job, processing_seconds=None)


class PrometheusMetrics:
    """:class:`Metrics` as Prometheus collectors, registered once per *registry*.

    Args:
        registry: where the collectors live; defaults to ``prometheus_client.REGISTRY``, which
            ``make_asgi_app()`` and ``make_wsgi_app()`` serve. Building a second
            ``PrometheusMetrics`` on the same registry reuses the first one's collectors.

    Collectors: ``replicate_audio_predictions_total{content_type,result}``,
    ``replicate_audio_webhooks_total{content_type,code}``,
    ``replicate_audio_jobs_finished_total{content_type,status}``,
    ``replicate_audio_processing_seconds{content_type}`` (download to stored) and
    ``replicate_audio_job_seconds{content_type,status}`` (asked for to finished).

    Example:
        >>> from prometheus_client import CollectorRegistry
        >>> registry = CollectorRegistry()
        >>> PrometheusMetrics(registry).webhook_answered("sound_effect", 200)
        >>> labels = {"content_type": "sound_effect", "code": "200"}
        >>> registry.get_sample_value("replicate_audio_webhooks_total", labels)
        1.0
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        try:
            import prometheus_client
        except ImportError as error:  # pragma: no cover - depends on the installed extras
            raise ImportError(
                "PrometheusMetrics needs prometheus-client: install replicate-audio[metrics]"
            ) from error
        registry = registry if registry is not None else prometheus_client.REGISTRY
        with _LOCK:
            collectors = _REGISTERED.get(registry)
            if collectors is None:
                collectors = _REGISTERED[registry] = _register(prometheus_client, registry)
        self.registry = registry
        self.predictions = collectors["predictions"]
        self.webhooks = collectors["webhooks"]
        self.jobs_finished = collectors["jobs_finished"]
        self.processing_seconds = collectors["processing_seconds"]
        self.job_seconds = collectors["job_seconds"]

    def prediction_created(self, content_type: str, *, ok: bool) -> None:
        self.predictions.labels(content_type, "created" if ok else "error").inc()

    def webhook_answered(self, content_type: str, status_code: int) -> None:
        self.webhooks.labels(content_type, str(status_code)).inc()

    def job_finished(self, job: Job, *, processing_seconds: float | None) -> None:
        status = job.status.value
        self.jobs_finished.labels(job.content_type, status).inc()
        elapsed = (job.updated_at - job.created_at).total_seconds()
        self.job_seconds.labels(job.content_type, status).observe(max(elapsed, 0.0))
        if processing_seconds is not None:
            self.processing_seconds.labels(job.content_type).observe(processing_seconds)


def _register(prometheus_client: Any, registry: CollectorRegistry) -> dict[str, Any]:
    counter, histogram = prometheus_client.Counter, prometheus_client.Histogram
    return {
        "predictions": counter(
            "replicate_audio_predictions",
            "Predictions asked for, by content type and result (created or error).",
            ["content_type", "result"],
            registry=registry,
        ),
        "webhooks": counter(
            "replicate_audio_webhooks",
            "Webhook deliveries answered, by content type and status code.",
            ["content_type", "code"],
            registry=registry,
        ),
        "jobs_finished": counter(
            "replicate_audio_jobs_finished",
            "Jobs that reached a final status, by content type and status.",
            ["content_type", "status"],
            registry=registry,
        ),
        "processing_seconds": histogram(
            "replicate_audio_processing_seconds",
            "Seconds from a worker's claim to the audio stored (or the job dead).",
            ["content_type"],
            buckets=PROCESSING_BUCKETS,
            registry=registry,
        ),
        "job_seconds": histogram(
            "replicate_audio_job_seconds",
            "Seconds from asking for the audio to the job's final status.",
            ["content_type", "status"],
            buckets=JOB_BUCKETS,
            registry=registry,
        ),
    }
