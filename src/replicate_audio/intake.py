"""One delivery in: verify it, record it in one atomic store call within a time budget, and
hand its job to the dispatcher. Webhooks, the reconciler and direct calls all come here."""

from __future__ import annotations

import asyncio
import logging
import math
import sys
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, TypeVar

import anyio
import attrs

from .config import Settings
from .dispatch import Dispatcher
from .errors import StorageError, WebhookVerificationError
from .jobs import DISPATCHED, PREDICTION_STATUSES
from .metrics import Metrics, count_final_event
from .storage import Delivery, DeliveryOutcome, JobStore, RecordedEvent
from .webhooks import is_prediction_id, verify_webhook

__all__ = ["Intake", "WebhookOutcome", "needs_work", "record"]

logger = logging.getLogger("replicate_audio")

T = TypeVar("T")

#: The detail of every 503: the store could not answer in time; ask again.
UNAVAILABLE = "storage is unavailable; try again"


@attrs.frozen
class WebhookOutcome:
    """What :meth:`ReplicateAudio.handle_webhook` decided: the status code and a JSON body."""

    status_code: int
    body: dict[str, Any]

    @classmethod
    def refuse(cls, status_code: int, detail: str) -> WebhookOutcome:
        """A 4xx (or 503) whose body says why."""
        return cls(status_code, {"detail": detail})


async def record(
    store: JobStore,
    delivery: Delivery,
    *,
    metrics: Metrics | None = None,
    budget: float = math.inf,
) -> RecordedEvent:
    """Record *delivery* in one atomic store call, and count a job it ends on Replicate's
    side (failed, canceled, aborted).

    Raises:
        StorageError: the store is down, or could not commit within *budget* seconds.

    Example:
        >>> import anyio
        >>> from replicate_audio.storage import MemoryStore
        >>> delivery = Delivery(webhook_id="msg_1", prediction={"id": "p1", "status": "starting"})
        >>> anyio.run(record, MemoryStore(), delivery).outcome
        <DeliveryOutcome.NOT_OURS: 'not_ours'>
    """
    try:
        recorded = await _within(budget, store.record_delivery(delivery))
    except TimeoutError:
        raise StorageError(f"the delivery was not recorded within {budget:g} s") from None
    count_final_event(recorded, metrics)
    status = delivery.prediction.get("status")
    if recorded.outcome is DeliveryOutcome.RECORDED and status not in PREDICTION_STATUSES:
        logger.warning(
            "prediction %s has status %r, which this version does not know; recorded, and "
            "left for the reconciler",
            delivery.prediction_id, status,
        )  # fmt: skip
    return recorded


async def _within(budget: float, call: Awaitable[T]) -> T:
    """Await *call*, raising TimeoutError after *budget* seconds.

    On asyncio (3.11+) this is ``asyncio.timeout``: anyio's ``fail_after`` asks which event
    loop runs at every use, which cost a tenth of the intake's time under load.
    """
    if budget == math.inf:
        return await call
    if sys.version_info >= (3, 11):
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio): anyio's scope below
            pass
        else:
            async with asyncio.timeout(budget):
                return await call
    with anyio.fail_after(budget):
        return await call


def needs_work(recorded: RecordedEvent) -> bool:
    """Whether the dispatcher has work from this delivery: audio to process, or an end of
    the job on Replicate's side to log."""
    return recorded.changed and recorded.job is not None and recorded.job.status in DISPATCHED


class Intake:
    """The webhook route's work, framework-free: what the adapters call.

    Args:
        settings: secrets, tolerance, size limit and the time budget.
        store: where deliveries are recorded.
        dispatcher: takes the jobs that have work.
        content_types: tells which content types the app serves (called per delivery, so
            that processors registered later count).
        metrics: counts answers by status code.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: JobStore,
        dispatcher: Dispatcher,
        content_types: Callable[[], Collection[str]],
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.dispatcher = dispatcher
        self._content_types = content_types
        self.metrics = metrics

    async def take(self, delivery: Delivery) -> RecordedEvent:
        """Record *delivery* within the time budget and dispatch its job if it has work."""
        recorded = await record(
            self.store, delivery, metrics=self.metrics, budget=self.settings.intake_timeout
        )
        if needs_work(recorded):
            assert recorded.job is not None
            await self.dispatcher.submit(recorded.job.id)
        return recorded

    async def take_fetched(
        self, job_id: str, prediction: dict[str, Any], *, source: str
    ) -> RecordedEvent:
        """Record a prediction read from Replicate (a cancel's answer, a reconciliation, a
        poll) for *job_id*, as its webhook would have been: once per status, under the id
        ``{source}:{prediction id}:{status}``."""
        webhook_id = f"{source}:{prediction.get('id')}:{prediction.get('status')}"
        return await self.take(
            Delivery(webhook_id=webhook_id, prediction=prediction, job_id=job_id)
        )

    async def handle_webhook(
        self,
        content_type: str,
        content_id: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        job_id: str | None = None,
    ) -> WebhookOutcome:
        """Verify, record once, dispatch, and say how to answer; see the facade's method."""
        if len(body) > self.settings.max_webhook_bytes:
            return self.oversized(content_type)
        try:
            outcome = await self._handle(content_type, content_id, headers, body, job_id)
        except Exception:
            self._count(content_type, 500)
            raise
        self._count(content_type, outcome.status_code)
        return outcome

    def oversized(self, content_type: str) -> WebhookOutcome:
        """The 413 for a delivery larger than ``max_webhook_bytes``."""
        self._count(content_type, 413)
        limit = self.settings.max_webhook_bytes
        return WebhookOutcome.refuse(413, f"the body is larger than {limit} bytes")

    def label(self, content_type: str) -> str:
        """*content_type* as a metrics label: ``unknown`` unless served."""
        return content_type if content_type in self._content_types() else "unknown"

    def _count(self, content_type: str, status_code: int) -> None:
        if self.metrics is not None:
            self.metrics.webhook_answered(self.label(content_type), status_code)

    async def _handle(
        self,
        content_type: str,
        content_id: str,
        headers: Mapping[str, str],
        body: bytes,
        job_id: str | None,
    ) -> WebhookOutcome:
        if content_type not in self._content_types():
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
        if job_id is not None and not is_prediction_id(job_id):
            return WebhookOutcome.refuse(404, f"no job {job_id!r}")
        delivery = Delivery(
            webhook_id=event.webhook_id,
            prediction=prediction.raw,
            job_id=job_id,
            content_type=content_type,
            content_id=content_id,
        )
        try:
            recorded = await self.take(delivery)
        except StorageError as error:
            logger.error("could not record webhook %s: %s", event.webhook_id, error)
            return WebhookOutcome.refuse(503, UNAVAILABLE)
        if recorded.job is None:
            detail = f"no {content_type} {content_id!r} job for prediction {prediction.id!r}"
            return WebhookOutcome.refuse(404, detail)
        return WebhookOutcome(
            200,
            {
                "job": recorded.job.id,
                "prediction": prediction.id,
                "status": recorded.job.status.value,
                "duplicate": recorded.duplicate,
            },
        )
