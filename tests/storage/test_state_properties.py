"""Property: whatever deliveries arrive, in whatever order, a job never moves backwards."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replicate_audio.jobs import Job, JobStatus
from replicate_audio.storage.memory import MemoryStore
from replicate_audio.storage.sqlalchemy import SQLAlchemyStore
from replicate_audio.storage.sqlite import SQLiteStore

AnyStore = MemoryStore | SQLiteStore | SQLAlchemyStore

RANK = {
    JobStatus.PENDING: 0,
    JobStatus.RUNNING: 1,
    JobStatus.RECEIVED: 2,
    JobStatus.PROCESSING: 3,
    JobStatus.COMPLETED: 4,
    JobStatus.FAILED: 4,
    JobStatus.CANCELED: 4,
    JobStatus.DEAD: 4,
}
PREDICTION_STATUSES = ["starting", "processing", "succeeded", "failed", "canceled"]

# A delivery is (prediction status, delivery number); the same pair twice is a redelivery.
# "claim" and "complete" are what a worker does once the job is received.
actions = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(PREDICTION_STATUSES), st.integers(0, 2)),
        st.sampled_from(["claim", "complete"]),
    ),
    max_size=12,
)


def apply(store: AnyStore, job_id: str, action: tuple[str, int] | str) -> None:
    if isinstance(action, tuple):
        status, number = action
        webhook_id = f"{job_id}-{status}-{number}"
        store.record_event(webhook_id, job_id, {"id": job_id, "status": status})
    elif action == "claim":
        store.claim_job(job_id, stale_after=3600)
    else:
        store.transition(job_id, expected={JobStatus.PROCESSING}, new=JobStatus.COMPLETED)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_deliveries_never_move_a_job_backwards(
    kind: str, open_store: Callable[[str], AnyStore]
) -> None:
    """Any sequence of statuses, repeated and reordered, only moves a job forward, never
    out of a terminal state."""
    store = open_store(kind)
    job_ids = (f"job{number}" for number in itertools.count())

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(actions)
    def check(sequence: list[tuple[str, int] | str]) -> None:
        job_id = next(job_ids)
        status = store.create_job(Job(id=job_id, content_type="sfx", content_id="1")).status
        for action in sequence:
            apply(store, job_id, action)
            job = store.get_job(job_id)
            assert job is not None
            assert RANK[job.status] >= RANK[status], f"{status} -> {job.status} on {action}"
            if status.is_terminal:
                assert job.status is status
            status = job.status

    check()
