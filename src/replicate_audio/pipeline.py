"""From a recorded prediction to stored audio, exactly once: claim, download, process, complete."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread

from ._claims import ClaimLost, keep_claim, move
from .config import DEFAULT_LEASE
from .download import Downloader
from .errors import JobNotFoundError, OutputExpiredError, ReplicateAudioError, StorageError
from .intake import record
from .jobs import Job, JobStatus
from .metrics import FinishReporter, Metrics, guarded
from .outputs import OutputFile, output_files
from .processors import (
    AudioPostProcessor,
    ProcessingContext,
    get_processor,
    register_processor,
)
from .processors.base import run_hook
from .storage import AudioInfo, Delivery, LogEntry, Store
from .webhooks import Prediction, is_prediction_id

__all__ = [
    "DEFAULT_LEASE",
    "get_processor",
    "process_job",
    "process_webhook_result",
    "register_processor",
    "replay",
]

logger = logging.getLogger("replicate_audio")

#: Why a job whose output Replicate removed (about an hour after it finished) is dead.
EXPIRED = "output expired before it was downloaded"


async def _log(
    processor: AudioPostProcessor, job: Job, status: JobStatus, message: str, store: Store
) -> None:
    entry = LogEntry(
        job_id=job.id,
        content_type=job.content_type,
        content_id=job.content_id,
        status=status,
        message=message,
    )
    with tempfile.TemporaryDirectory(prefix="replicate-audio-") as work:
        await run_hook(
            processor.log_result, job, entry, ProcessingContext(store, store, Path(work))
        )


async def _current(store: Store, job_id: str) -> Job:
    job = await store.get_job(job_id)
    if job is None:
        raise JobNotFoundError(job_id)
    return job


async def _give_up(
    job: Job, reason: str, processor: AudioPostProcessor, store: Store, reporter: FinishReporter
) -> Job:
    """Park a job as dead with its reason; everything needed to replay it stays on the job."""
    dead = await move(store, job, JobStatus.DEAD, reason)
    if dead is None:
        return await _current(store, job.id)
    logger.warning("job %s is dead: %s", job.id, reason)
    reporter.finished(dead)
    await _log(processor, dead, JobStatus.DEAD, reason, store)
    return dead


async def _process(
    job: Job,
    *,
    selected: Sequence[OutputFile],
    outputs: tuple[OutputFile, ...],
    processor: AudioPostProcessor,
    store: Store,
    downloader: Downloader,
    work: Path,
    lease: float,
) -> AudioInfo:
    """Download and process each selected file while renewing the claim on *job*; returns
    what was stored of the first."""
    # Stays ClaimLost when the renewal cancels the work before it finishes.
    outcome: AudioInfo | Exception = ClaimLost(job.id)
    async with anyio.create_task_group() as group:
        group.start_soon(keep_claim, store, job, lease, group.cancel_scope)
        try:
            outcome = await _process_files(
                job,
                selected=selected,
                outputs=outputs,
                processor=processor,
                store=store,
                downloader=downloader,
                work=work,
            )
        except Exception as error:  # raised below, outside the group, so it is not wrapped
            outcome = error
        group.cancel_scope.cancel()
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


async def _process_files(
    job: Job,
    *,
    selected: Sequence[OutputFile],
    outputs: tuple[OutputFile, ...],
    processor: AudioPostProcessor,
    store: Store,
    downloader: Downloader,
    work: Path,
) -> AudioInfo:
    """One file: the processor's whole template. Several: each trimmed and stored, then
    one log entry for them all."""
    stored: list[tuple[str | None, AudioInfo]] = []
    superseded = False
    for index, output in enumerate(selected):
        folder = work / str(index)
        await anyio.to_thread.run_sync(folder.mkdir)
        context = ProcessingContext(
            audio_store=store,
            result_log=store,
            work_dir=folder,
            output=output,
            outputs=outputs,
            name=processor.stored_name(output, job),
        )
        async with downloader.fetch(output.url) as source:
            if len(selected) == 1:
                return await processor.process_and_store(job, source, context)
            stored.append((context.name, await processor.process_file(job, source, context)))
        superseded = superseded or context.superseded
    context.superseded = superseded
    await processor.log_stored(job, stored, context)
    return stored[0][1]


async def _run(
    job: Job,
    *,
    processor: AudioPostProcessor,
    store: Store,
    downloader: Downloader,
    lease: float,
    reporter: FinishReporter,
) -> Job:
    prediction = job.prediction or {}
    files = output_files(prediction.get("output"))
    wanted = job.config.output if job.config else None
    selected = processor.select_outputs(files, job)
    if not selected:
        if prediction.get("data_removed") or prediction.get("output") is None:
            reason = EXPIRED
        elif wanted is not None:
            names = ", ".join(file.name for file in files)
            reason = f"the prediction has no output {wanted!r} (it has {names})"
        else:
            reason = "the prediction succeeded without an output URL"
        return await _give_up(job, reason, processor, store, reporter)
    work = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp, "", "replicate-audio-"))
    try:
        info = await _process(
            job,
            selected=selected,
            outputs=files,
            processor=processor,
            store=store,
            downloader=downloader,
            work=work,
            lease=lease,
        )
    except ClaimLost:
        logger.warning("job %s was taken over by another worker; this one stops", job.id)
        return await _current(store, job.id)
    except StorageError:
        # Our own store is down: hand the job back so a later try can finish it.
        await move(store, job, JobStatus.RECEIVED)
        raise
    except OutputExpiredError:
        return await _give_up(job, EXPIRED, processor, store, reporter)
    except ReplicateAudioError as error:
        return await _give_up(job, f"{type(error).__name__}: {error}", processor, store, reporter)
    except Exception as error:  # a user's processor failed; keep the job replayable
        logger.exception("processor %r failed on job %s", processor, job.id)
        return await _give_up(job, f"{type(error).__name__}: {error}", processor, store, reporter)
    finally:
        # Shielded: a job cancelled at shutdown still removes its scratch folder.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(shutil.rmtree, work, True)
    done = await move(store, job, JobStatus.COMPLETED)
    if done is None:
        logger.warning("job %s was taken over by another worker before it completed", job.id)
        return await _current(store, job.id)
    logger.info("job %s stored %.2fs of %s", job.id, info.duration, info.format)
    reporter.finished(done)
    return done


async def process_job(
    job_id: str,
    *,
    store: Store,
    downloader: Downloader,
    processors: Mapping[str, AudioPostProcessor] | None = None,
    lease: float = DEFAULT_LEASE,
    metrics: Metrics | None = None,
) -> Job:
    """Do whatever a recorded job still needs, at most once however often it is called.

    A ``received`` job is claimed (compare-and-set), its output downloaded, post-processed by
    its content type's processor, stored and logged, then marked ``completed``; download or
    processing failures park it as ``dead`` with the reason. A ``failed``, ``canceled`` or
    ``aborted`` job is logged once. Any other job is returned as it is.

    Returns:
        The job as it is afterwards.

    Raises:
        JobNotFoundError: no job has this id.
        StorageError: the store is down (the job is left to be tried again).

    Example:
        >>> job = await process_job(job.id, store=store, downloader=downloader)  # doctest: +SKIP
    """
    metrics = guarded(metrics)
    job = await _current(store, job_id)
    processor = get_processor(job.content_type, processors)
    if job.status in (JobStatus.FAILED, JobStatus.CANCELED, JobStatus.ABORTED):
        reason = job.error or (job.prediction or {}).get("error") or job.status.value
        await _log(processor, job, job.status, str(reason), store)
        return job
    if job.status not in (JobStatus.RECEIVED, JobStatus.PROCESSING):
        return job
    claimed = await store.claim_job(job.id, stale_after=lease)
    if claimed is None:  # another worker has it, or it finished meanwhile
        return await _current(store, job.id)
    return await _run(
        claimed,
        processor=processor,
        store=store,
        downloader=downloader,
        lease=lease,
        reporter=FinishReporter(metrics),
    )


async def process_webhook_result(
    content_type: str,
    content_id: str,
    prediction: Prediction | Mapping[str, Any],
    *,
    store: Store,
    downloader: Downloader,
    processors: Mapping[str, AudioPostProcessor] | None = None,
    webhook_id: str | None = None,
    job_id: str | None = None,
    metrics: Metrics | None = None,
) -> Job:
    """Record a prediction for its job and process it at once, in this task: what a
    delivery leads to, for scripts and workers that run without a dispatcher.

    The job is found by *job_id* (the webhook URL's ``job`` parameter) or, without it, by
    the prediction id. The event is recorded once per *webhook_id* (by default one per
    prediction and status), through the same atomic store call as a webhook.

    Raises:
        JobNotFoundError: no job of this content matches.
        InvalidPayloadError: *prediction* is not a prediction.

    Example:
        >>> await process_webhook_result("sound_effect", "42", payload, store=store,
        ...                              downloader=downloader)  # doctest: +SKIP
    """
    if not isinstance(prediction, Prediction):
        prediction = Prediction.from_dict(dict(prediction))
    metrics = guarded(metrics)
    delivery = Delivery(
        webhook_id=webhook_id or f"direct:{prediction.id}:{prediction.status}",
        prediction=prediction.raw or {"id": prediction.id, "status": prediction.status},
        job_id=job_id,
        content_type=content_type,
        content_id=content_id,
    )
    recorded = await record(store, delivery, metrics=metrics)
    if recorded.job is None:
        raise JobNotFoundError(job_id or prediction.id)
    return await process_job(
        recorded.job.id,
        store=store,
        downloader=downloader,
        processors=processors,
        metrics=metrics,
    )


async def replay(
    job_id: str,
    *,
    store: Store,
    downloader: Downloader,
    processors: Mapping[str, AudioPostProcessor] | None = None,
    metrics: Metrics | None = None,
) -> Job:
    """Run a ``dead`` job again from its recorded prediction; *job_id* may also be the
    job's prediction id.

    Jobs in any other state are returned unchanged: failed and canceled predictions are
    never retried, and live jobs are already on their way.

    Raises:
        JobNotFoundError: no job has this id.

    Example:
        >>> job = await replay("ZGl4Z9Xq3v2mTq0rKc1aBw", store=store,
        ...                    downloader=downloader)  # doctest: +SKIP
    """
    if not is_prediction_id(job_id):  # never handed to the store: some refuse such ids
        raise JobNotFoundError(job_id)
    job = await _current(store, job_id)  # by job id or prediction id
    revived = await store.transition(
        job.id, expected=[JobStatus.DEAD], new=JobStatus.RECEIVED, error=None
    )
    if revived is None:
        return await _current(store, job.id)
    return await process_job(
        job.id, store=store, downloader=downloader, processors=processors, metrics=metrics
    )
