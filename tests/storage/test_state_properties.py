"""Property: whatever deliveries arrive, in whatever order, a job never moves backwards."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replicate_audio.jobs import Job, JobStatus
from replicate_audio.storage import Delivery, SyncStore

RANK = {
    JobStatus.CREATING: 0,
    JobStatus.PENDING: 1,
    JobStatus.RUNNING: 2,
    JobStatus.RECEIVED: 3,
    JobStatus.PROCESSING: 4,
    JobStatus.COMPLETED: 5,
    JobStatus.FAILED: 5,
    JobStatus.CANCELED: 5,
    JobStatus.ABORTED: 5,
    JobStatus.DEAD: 5,
}
# Replicate's statuses, and one it may add some day (recorded, moving nothing).
PREDICTION_STATUSES = [
    "starting",
    "processing",
    "succeeded",
    "failed",
    "canceled",
    "aborted",
    "queued_somewhere",
]

# A delivery is (prediction status, delivery number, whether its URL names the job); the
# same triple twice is a redelivery. "attach" is the create answering; "claim" and
# "complete" are what a worker does once the job is received.
actions = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(PREDICTION_STATUSES), st.integers(0, 2), st.booleans()),
        st.sampled_from(["attach", "claim", "complete"]),
    ),
    max_size=12,
)


def apply(store: SyncStore, job_id: str, action: tuple[str, int, bool] | str) -> None:
    prediction_id = f"{job_id}-prediction"
    if isinstance(action, tuple):
        status, number, by_job_id = action
        store.record_delivery(
            Delivery(
                webhook_id=f"{job_id}-{status}-{number}",
                prediction={"id": prediction_id, "status": status},
                job_id=job_id if by_job_id else None,
            )
        )
    elif action == "attach":
        store.attach_prediction(job_id, {"id": prediction_id, "status": "starting"})
    elif action == "claim":
        store.claim_job(job_id, stale_after=3600)
    else:
        store.transition(job_id, expected={JobStatus.PROCESSING}, new=JobStatus.COMPLETED)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_deliveries_never_move_a_job_backwards(
    kind: str, open_store: Callable[[str], SyncStore]
) -> None:
    """Any sequence of statuses, repeated and reordered, before or after the create's
    answer, only moves a job forward, never out of a terminal state."""
    store = open_store(kind)
    job_ids = (f"job{number}" for number in itertools.count())

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(actions)
    def check(sequence: list[tuple[str, int, bool] | str]) -> None:
        job_id = next(job_ids)
        status = store.create_job(Job(id=job_id, content_type="sfx", content_id="1")).status
        for action in sequence:
            apply(store, job_id, action)
            job = store.get_job(job_id)
            assert job is not None
            assert RANK[job.status] >= RANK[status], f"{status} -> {job.status} on {action}"
            if status.is_terminal:
                assert job.status is status
            assert job.prediction_id in (None, f"{job_id}-prediction")
            status = job.status

    check()


# A worker's action: take the job (over), or a fenced move by the holder of the n-th claim.
MOVES = [JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.DEAD, JobStatus.RECEIVED]
claims = st.lists(
    st.one_of(st.just("claim"), st.tuples(st.integers(0, 3), st.sampled_from(MOVES))),
    max_size=15,
)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_only_the_latest_claim_moves_a_job(
    kind: str, open_store: Callable[[str], SyncStore]
) -> None:
    """Whatever workers claim and take over, a fenced move wins exactly when its claim is the
    latest and the job is still processing; attempts count the claims that won."""
    store = open_store(kind)
    job_ids = (f"fenced{number}" for number in itertools.count())

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(claims)
    def check(sequence: list[str | tuple[int, JobStatus]]) -> None:
        job_id = next(job_ids)
        store.create_job(Job(id=job_id, content_type="sfx", content_id="1"))
        succeeded = {"id": f"{job_id}-prediction", "status": "succeeded"}
        store.record_delivery(
            Delivery(webhook_id=f"{job_id}-done", prediction=succeeded, job_id=job_id)
        )
        holders: list[int] = []  # the attempt each winning claim got
        for action in sequence:
            before = store.get_job(job_id)
            assert before is not None
            if action == "claim":
                claimed = store.claim_job(job_id, stale_after=0)
                if claimed is not None:
                    holders.append(claimed.attempts)
                elif before.status is JobStatus.RECEIVED:
                    raise AssertionError("a received job could not be claimed")
                continue
            assert isinstance(action, tuple)
            index, new = action
            if index >= len(holders):
                continue
            moved = store.transition(
                job_id, expected={JobStatus.PROCESSING}, new=new, attempt=holders[index]
            )
            latest = holders[index] == before.attempts
            assert (moved is not None) == (before.status is JobStatus.PROCESSING and latest)
        job = store.get_job(job_id)
        assert job is not None
        assert job.attempts == len(holders)

    check()
