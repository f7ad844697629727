"""The app's background work: the dispatcher, recovery at start, and a periodic sweep that
resolves jobs whose create never answered, re-queues unfinished jobs, and asks Replicate
about predictions whose webhooks never came."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import attrs
from anyio.abc import TaskGroup

from .errors import PredictionError
from .jobs import TERMINAL_PREDICTION_STATUSES, Job, JobStatus, utcnow
from .polling import Poller
from .replicate_api import CLOCK_SKEW, PredictionsAPI, created_at
from .storage._records import as_utc

if TYPE_CHECKING:
    from .app import ReplicateAudio

__all__ = ["BackgroundWork", "Reconciled", "matches_job"]

logger = logging.getLogger("replicate_audio")

# How many jobs one pass looks at; the next sweep takes the rest.
_BATCH = 10_000


def matches_job(prediction: dict[str, Any], job: Job, *, window: timedelta) -> bool:
    """Whether a listed *prediction* is the one *job*'s create made.

    By the webhook URL, which carries the job id, where the listing shows it; otherwise by
    model or version, input, and a creation time from the job's to *window* after it.

    Example:
        >>> job = Job(id="j1", content_type="sound_effect", content_id="7")
        >>> matches_job({"webhook": "https://app/api/x?job=j1"}, job, window=timedelta(0))
        True
    """
    webhook = prediction.get("webhook")
    if isinstance(webhook, str) and webhook:
        return webhook.endswith(f"?job={job.id}") or f"?job={job.id}&" in webhook
    config = job.config
    created = created_at(prediction)
    if config is None or created is None:
        return False
    start = as_utc(job.created_at) - CLOCK_SKEW
    if not start <= created <= as_utc(job.created_at) + window:
        return False
    if "input" in prediction and prediction["input"] != config.input:
        return False
    target = config.target
    if "model" in target:
        return prediction.get("model") == target["model"]
    if "version" in target:
        return target["version"].rpartition(":")[2] == prediction.get("version")
    return True  # a deployment: its model may change under it; input and time decide


@attrs.frozen
class Reconciled:
    """One job a reconciliation looked at: its prediction's status on Replicate (None: it
    could not be fetched), whether the job moved, and what was done."""

    job: Job
    prediction_status: str | None
    moved: bool
    detail: str


class BackgroundWork:
    """Runs for as long as the app does; started and stopped by :class:`ReplicateAudio`."""

    def __init__(
        self, audio: ReplicateAudio, *, sweep_interval: float, reconcile_after: float
    ) -> None:
        self.audio = audio
        self.sweep_interval = sweep_interval
        self.reconcile_after = reconcile_after
        settings = audio.settings
        #: Polling mode's poller (None in webhook mode); it does the reconciler's work.
        self.poller = (
            Poller(
                audio,
                interval=settings.poll_interval,
                reads_per_minute=settings.poll_reads_per_minute,
            )
            if settings.mode == "polling"
            else None
        )
        self._stack: AsyncExitStack | None = None
        self._group: TaskGroup | None = None

    async def start(self) -> None:
        """Start the dispatcher, resolve and queue every unfinished job, start the sweep."""
        if self._stack is not None:
            raise RuntimeError("ReplicateAudio is already started")
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            await stack.enter_async_context(self.audio.dispatcher.running(self.audio.process))
            self._group = await stack.enter_async_context(anyio.create_task_group())
            await self.requeue(stale_only=False)
            self._group.start_soon(self._resolve_quietly)
            if self.sweep_interval > 0:
                self._group.start_soon(self._sweep_forever)
            if self.poller is not None:
                self._group.start_soon(self.poller.run_forever)
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
        received = await store.list_jobs(
            statuses=[JobStatus.RECEIVED], updated_before=now - waited, limit=_BATCH
        )
        abandoned = await store.list_jobs(
            statuses=[JobStatus.PROCESSING],
            updated_before=now - timedelta(seconds=self.audio.lease),
            limit=_BATCH,
        )
        for job in [*received, *abandoned]:
            await self.audio.dispatcher.submit(job.id)
        return len(received) + len(abandoned)

    async def resolve_unsent(self) -> int:
        """Settle jobs still ``creating`` after ``create_timeout`` (their process died before,
        during or after the create): find their prediction in Replicate's listing and follow
        it, or else create it once (or fail the job), as ``unsent_creates`` says.

        Returns how many jobs were settled.
        """
        settings, store = self.audio.settings, self.audio.store
        timeout = timedelta(seconds=settings.create_timeout)
        waiting = await store.list_jobs(
            statuses=[JobStatus.CREATING], updated_before=utcnow() - timeout, limit=_BATCH
        )
        if not waiting:
            return 0
        found = await self._find_predictions(waiting, window=timeout * 2)
        settled = 0
        for job in waiting:
            prediction = found.get(job.id)
            if prediction is not None:
                settled += await self._follow(job, prediction)
            elif settings.unsent_creates == "create":
                settled += await self._create_again(job)
            else:
                reason = "its create never reached Replicate (REPLICATE_AUDIO_UNSENT_CREATES=fail)"
                failed = await store.transition(
                    job.id, expected=[JobStatus.CREATING], new=JobStatus.FAILED, error=reason
                )
                if failed is not None:
                    logger.warning("job %s failed: %s", job.id, reason)
                    await self.audio.dispatcher.submit(job.id)  # logged like any failure
                    settled += 1
        return settled

    async def _find_predictions(
        self, jobs: Sequence[Job], *, window: timedelta
    ) -> dict[str, dict[str, Any]]:
        """Each job's prediction from the listing, read back until older than every job."""
        oldest = min(as_utc(job.created_at) for job in jobs) - CLOCK_SKEW
        unmatched, found = list(jobs), {}
        async with PredictionsAPI(self.audio.settings) as reader:
            async for prediction in reader.recent():
                created = created_at(prediction)
                if created is not None and created < oldest:
                    break
                for job in unmatched:
                    if matches_job(prediction, job, window=window) and not await self._taken(
                        prediction, job
                    ):
                        found[job.id] = prediction
                        unmatched.remove(job)
                        break
                if not unmatched:
                    break
        return found

    async def _taken(self, prediction: dict[str, Any], job: Job) -> bool:
        """Whether another job already has this prediction."""
        owner = await self.audio.store.get_job(str(prediction.get("id", "")))
        return owner is not None and owner.id != job.id

    async def _follow(self, job: Job, prediction: dict[str, Any]) -> int:
        attached = await self.audio.store.attach_prediction(job.id, prediction)
        if attached is None:
            return 0
        logger.info("job %s: found its prediction %s on Replicate", job.id, attached.prediction_id)
        if prediction.get("status") in TERMINAL_PREDICTION_STATUSES:
            await self._take_fetched(attached, prediction)
        return 1

    async def _create_again(self, job: Job) -> int:
        # Bumps updated_at under compare-and-set: one sweep sends it, and the next one
        # waits another create_timeout before looking again.
        claimed = await self.audio.store.transition(
            job.id, expected=[JobStatus.CREATING], new=JobStatus.CREATING
        )
        if claimed is None:
            return 0
        logger.warning("job %s: its create never reached Replicate; creating it now", job.id)
        with contextlib.suppress(PredictionError):  # refused: marked failed with the reason
            await self.audio.send_create(claimed)
        return 1

    async def reconcile(
        self, *, older_than: float | None = None, dry_run: bool = False
    ) -> list[Reconciled]:
        """Ask Replicate about jobs with no news for *older_than* seconds (default
        ``reconcile_after``).

        A finished prediction takes the same path as its webhook would have (recorded once,
        under the id ``reconcile:{prediction}:{status}``); with *dry_run* nothing is
        recorded, and each entry says what would be. Returns one entry per job looked at.
        """
        store = self.audio.store
        after = self.reconcile_after if older_than is None else older_than
        jobs = await store.list_jobs(
            statuses=[JobStatus.PENDING, JobStatus.RUNNING],
            updated_before=utcnow() - timedelta(seconds=after),
            limit=_BATCH,
        )
        found: list[Reconciled] = []
        async with PredictionsAPI(self.audio.settings) as reader:
            for job in jobs:
                if job.prediction_id is None:
                    continue
                try:
                    prediction = await reader.get(job.prediction_id)
                except PredictionError as error:  # one unreachable prediction must not stop it
                    logger.warning("could not reconcile job %s: %s", job.id, error)
                    found.append(Reconciled(job, None, False, f"not fetched: {error}"))
                    continue
                status = prediction.get("status")
                status = status if isinstance(status, str) else None
                if status not in TERMINAL_PREDICTION_STATUSES:
                    found.append(Reconciled(job, status, False, "still running on Replicate"))
                elif dry_run:
                    found.append(Reconciled(job, status, False, "would record its end"))
                else:
                    moved = await self._take_fetched(job, prediction)
                    detail = "recorded its end" if moved else "already recorded"
                    found.append(Reconciled(job, status, bool(moved), detail))
        return found

    async def _reconcile_due(self) -> int:
        return sum(entry.moved for entry in await self.reconcile())

    async def _take_fetched(self, job: Job, prediction: dict[str, Any]) -> int:
        recorded = await self.audio.intake.take_fetched(job.id, prediction, source="reconcile")
        if recorded.changed:
            logger.info("job %s reconciled: its webhook never came", job.id)
            return 1
        return 0

    async def _resolve_quietly(self) -> None:
        await _quietly(self.resolve_unsent)

    async def _sweep_forever(self) -> None:
        while True:
            await anyio.sleep(self.sweep_interval)
            steps = [self.resolve_unsent, self.requeue]
            if self.poller is None:  # polling reads every unfinished job already
                steps.append(self._reconcile_due)
            for step in steps:
                await _quietly(step)


async def _quietly(step: Callable[[], Awaitable[int]]) -> None:
    """Run one sweep step; it must outlive a passing store or network outage."""
    try:
        await step()
    except Exception:
        logger.exception("the background sweep failed; trying again later")
