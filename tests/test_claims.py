"""A worker's claim: every move fenced by its attempt, renewed while it works, and work
stopped once another worker took the job over."""

from __future__ import annotations

import anyio
import pytest

from replicate_audio._claims import keep_claim, move
from replicate_audio.jobs import Job, JobStatus
from replicate_audio.storage import Delivery, MemoryStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def claimed_job(store: MemoryStore) -> Job:
    job = await store.create_job(Job(id="j1", content_type="sound_effect", content_id="1"))
    prediction = {"id": "p1", "status": "succeeded", "output": "https://x/a.mp3"}
    await store.record_delivery(Delivery(webhook_id="m1", prediction=prediction, job_id=job.id))
    claimed = await store.claim_job(job.id, stale_after=300)
    assert claimed is not None
    return claimed


@pytest.mark.anyio
async def test_move_succeeds_while_the_claim_is_ours() -> None:
    """The worker holding the claim can complete its job."""
    store = MemoryStore()
    claimed = await claimed_job(store)
    done = await move(store, claimed, JobStatus.COMPLETED)
    assert done is not None
    assert done.status is JobStatus.COMPLETED


@pytest.mark.anyio
async def test_move_is_fenced_once_another_worker_took_the_job_over() -> None:
    """After a takeover (attempts moved on) the first worker can no longer move the job."""
    store = MemoryStore()
    first = await claimed_job(store)
    second = await store.claim_job(first.id, stale_after=0)  # its lease ran out
    assert second is not None
    assert second.attempts == first.attempts + 1
    assert await move(store, first, JobStatus.COMPLETED) is None
    assert await move(store, first, JobStatus.DEAD, "stalled") is None
    job = await store.get_job(first.id)
    assert job is not None
    assert (job.status, job.attempts) == (JobStatus.PROCESSING, second.attempts)


@pytest.mark.anyio
async def test_keep_claim_renews_until_the_work_is_done() -> None:
    """Each renewal moves updated_at forward, so no sweep sees the job as abandoned."""
    store = MemoryStore()
    claimed = await claimed_job(store)
    seen = [claimed.updated_at]
    async with anyio.create_task_group() as group:
        group.start_soon(keep_claim, store, claimed, 0.03, group.cancel_scope)
        with anyio.fail_after(5):
            while len(seen) < 3:  # wait for two renewals, however long they take
                await anyio.sleep(0.005)
                job = await store.get_job(claimed.id)
                assert job is not None
                if job.updated_at != seen[-1]:
                    seen.append(job.updated_at)
        group.cancel_scope.cancel()
    assert seen == sorted(seen)
    assert len(set(seen)) == 3


@pytest.mark.anyio
async def test_keep_claim_stops_the_work_once_taken_over() -> None:
    """The renewal that finds the job taken over cancels the work it guards."""
    store = MemoryStore()
    claimed = await claimed_job(store)
    await store.claim_job(claimed.id, stale_after=0)  # another worker took it over
    with anyio.fail_after(5):
        with anyio.CancelScope() as work:
            await keep_claim(store, claimed, 0.03, work)
            await anyio.sleep_forever()  # reached only if keep_claim returns without cancel
    assert work.cancel_called
