"""Polling mode: follow every unfinished job by reading Replicate, for apps that webhooks
cannot reach. One poller per app, within a budget of reads per minute, feeding the intake.

Each pass reads ``GET /v1/predictions`` (100 predictions a page, newest first) back to the
oldest unfinished job, so one request covers many jobs; a job the pages did not reach is
read by ``GET /v1/predictions/{id}``. What changed goes through the same intake call as a
webhook (``poll:{prediction}:{status}``), so the guarantees and the processing are the same.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import anyio

from .errors import PredictionError
from .jobs import Job, JobStatus
from .replicate_api import CLOCK_SKEW, PredictionsAPI, created_at
from .storage._records import as_utc

if TYPE_CHECKING:
    from .app import ReplicateAudio

__all__ = ["Poller"]

logger = logging.getLogger("replicate_audio")

# The most pages one pass reads before it reads the jobs left one by one.
_MAX_PAGES = 10
# How long to wait after Replicate answered 429.
_THROTTLED = 30.0
# How many jobs one pass looks at; the next pass takes the rest.
_BATCH = 10_000


class Poller:
    """Reads Replicate for the app's unfinished jobs, at most ``reads_per_minute``.

    Args:
        audio: the app; its store lists the jobs, its intake takes what changed.
        interval: the shortest pause between passes, in seconds.
        reads_per_minute: the budget of requests to Replicate; a pass that needed more
            requests waits longer before the next.
    """

    def __init__(self, audio: ReplicateAudio, *, interval: float, reads_per_minute: int) -> None:
        self.audio = audio
        self.interval = interval
        self.reads_per_minute = reads_per_minute
        #: Requests sent to Replicate so far (pages and single reads).
        self.reads = 0

    async def run_forever(self) -> None:
        """Poll until cancelled; a failing pass is logged and retried after a pause."""
        async with PredictionsAPI(self.audio.settings) as reader:
            while True:
                started, before = time.monotonic(), self.reads
                pause = self.interval
                try:
                    await self.poll(reader)
                except PredictionError as error:
                    if error.status == 429:
                        pause = max(pause, _THROTTLED)
                    logger.warning("polling Replicate failed (%s); trying again", error)
                except Exception:
                    logger.exception("polling failed; trying again later")
                # Spread the reads so that no minute holds more than the budget.
                spent = (self.reads - before) * 60.0 / self.reads_per_minute
                await anyio.sleep(max(pause, spent - (time.monotonic() - started)))

    async def poll(self, reader: PredictionsAPI) -> int:
        """One pass over the unfinished jobs; returns how many moved."""
        jobs = await self.audio.store.list_jobs(
            statuses=[JobStatus.PENDING, JobStatus.RUNNING], limit=_BATCH
        )
        waiting = {job.prediction_id: job for job in jobs if job.prediction_id is not None}
        if not waiting:
            return 0
        oldest = min(as_utc(job.created_at) for job in waiting.values()) - CLOCK_SKEW
        moved = 0
        pages = reader.recent(max_pages=_MAX_PAGES, on_page=self._count)
        async for prediction in pages:
            job = waiting.pop(str(prediction.get("id")), None)
            if job is not None:
                moved += await self._take(job, prediction)
            created = created_at(prediction)
            if not waiting or (created is not None and created < oldest):
                break
        # Beyond the pages read (an account busy with other work): one GET each, as many as
        # a tenth of a minute's budget allows; the next passes take the rest.
        for job in list(waiting.values())[: max(1, self.reads_per_minute // 10)]:
            assert job.prediction_id is not None
            self.reads += 1
            moved += await self._take(job, await reader.get(job.prediction_id))
        return moved

    def _count(self) -> None:
        self.reads += 1

    async def _take(self, job: Job, prediction: dict[str, Any]) -> int:
        """Record *prediction* for *job* if its status is news; 1 if the job moved."""
        status = prediction.get("status")
        known = (job.prediction or {}).get("status")
        if not isinstance(status, str) or status == known:
            return 0
        recorded = await self.audio.intake.take_fetched(job.id, prediction, source="poll")
        return int(recorded.changed)
