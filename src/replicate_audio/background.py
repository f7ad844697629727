"""The app's background work: the dispatcher, recovery at start, and a periodic sweep that
re-queues unfinished jobs and asks Replicate about predictions whose webhooks never came."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from .jobs import JobStatus, utcnow
from .pipeline import record_prediction
from .predictions import prediction_dict
from .storage import call
from .webhooks import Prediction

if TYPE_CHECKING:
    from .app import ReplicateAudio

__all__ = ["BackgroundWork"]

logger = logging.getLogger("replicate_audio")

_DISPATCH = (JobStatus.RECEIVED, JobStatus.FAILED, JobStatus.CANCELED)
# How many jobs one requeue or reconcile pass looks at; the next sweep takes the rest.
_BATCH = 10_000


class BackgroundWork:
    """Runs for as long as the app does; started and stopped by :class:`ReplicateAudio`."""

    def __init__(
        self, audio: ReplicateAudio, *, sweep_interval: float, reconcile_after: float
    ) -> None:
        self.audio = audio
        self.sweep_interval = sweep_interval
        self.reconcile_after = reconcile_after
        self._stack: AsyncExitStack | None = None
        self._group: TaskGroup | None = None

    async def start(self) -> None:
        """Start the dispatcher, queue every unfinished job, and start the sweep."""
        if self._stack is not None:
            raise RuntimeError("ReplicateAudio is already started")
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            await stack.enter_async_context(self.audio.dispatcher.running(self.audio.process))
            self._group = await stack.enter_async_context(anyio.create_task_group())
            await self.requeue(stale_only=False)
            if self.sweep_interval > 0:
                self._group.start_soon(self._sweep_forever)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def stop(self) -> None:
        """Stop the sweep, then let the dispatcher drain."""
        if self._stack is None:
            return
        if self._group is not None:
            self._group.cancel_scope.cancel()
        stack, self._stack, self._group = self._stack, None, None
        await stack.aclose()

    async def requeue(self, *, stale_only: bool = True) -> int:
        """Hand unfinished jobs to the dispatcher again; returns how many.

        ``received`` jobs are always due (at start-up, or when *stale_only* is false); when
        *stale_only*, only those waiting longer than a sweep interval. ``processing`` jobs
        are due once their lease has run out (their worker died).
        """
        store, now = self.audio.store, utcnow()
        waited = timedelta(seconds=self.sweep_interval if stale_only else 0)
        received = await call(
            store.list_jobs,
            statuses=[JobStatus.RECEIVED],
            updated_before=now - waited,
            limit=_BATCH,
        )
        abandoned = await call(
            store.list_jobs,
            statuses=[JobStatus.PROCESSING],
            updated_before=now - timedelta(seconds=self.audio.lease),
            limit=_BATCH,
        )
        for job in [*received, *abandoned]:
            await self.audio.dispatcher.submit(job.id)
        return len(received) + len(abandoned)

    async def reconcile(self) -> int:
        """Ask Replicate about jobs with no news for ``reconcile_after`` seconds.

        A finished prediction takes the same path as its webhook would have (recorded once,
        under the id ``reconcile:{prediction}:{status}``). Returns how many jobs moved.
        """
        store = self.audio.store
        before = utcnow() - timedelta(seconds=self.reconcile_after)
        jobs = await call(
            store.list_jobs,
            statuses=[JobStatus.PENDING, JobStatus.RUNNING],
            updated_before=before,
            limit=_BATCH,
        )
        client, moved = self.audio.replicate_client(), 0
        for job in jobs:
            try:
                fetched = await client.predictions.async_get(job.id)
                prediction = Prediction.from_dict(prediction_dict(fetched))
            except Exception as error:  # one unreachable prediction must not stop the sweep
                logger.warning("could not reconcile job %s: %s", job.id, error)
                continue
            if not prediction.is_terminal:
                continue
            event_id = f"reconcile:{prediction.id}:{prediction.status}"
            recorded = await record_prediction(store, event_id, prediction, self.audio.metrics)
            if recorded.changed and recorded.job.status in _DISPATCH:
                logger.info("job %s reconciled: its webhook never came", job.id)
                await self.audio.dispatcher.submit(job.id)
                moved += 1
        return moved

    async def _sweep_forever(self) -> None:
        while True:
            await anyio.sleep(self.sweep_interval)
            try:
                await self.requeue()
                await self.reconcile()
            except Exception:  # the sweep must outlive a passing store outage
                logger.exception("the background sweep failed; trying again later")
