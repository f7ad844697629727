"""Exactly-once under races: threads sharing a store, and separate processes sharing a database."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import pytest

from replicate_audio.jobs import Job, JobStatus
from replicate_audio.storage import Delivery, RecordedEvent, SQLiteStore, SyncStore
from replicate_audio.storage.sqlalchemy import SQLAlchemyStore

T = TypeVar("T")
RACERS = 5
SUCCEEDED = {"id": "p1", "status": "succeeded", "output": "https://replicate.delivery/a.wav"}


def race(count: int, action: Callable[[int], T]) -> list[T]:
    """Run *action* in *count* threads released at the same moment."""
    barrier = threading.Barrier(count)

    def start(number: int) -> T:
        barrier.wait(timeout=10)
        return action(number)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(start, range(count)))


def pending_job(job_id: str = "j1", prediction_id: str | None = "p1") -> Job:
    status = JobStatus.PENDING if prediction_id else JobStatus.CREATING
    return Job(
        id=job_id,
        prediction_id=prediction_id,
        status=status,
        content_type="sound_effect",
        content_id="7",
    )


def succeeded(webhook_id: str) -> Delivery:
    return Delivery(webhook_id=webhook_id, prediction=SUCCEEDED)


def received_job(store: SyncStore) -> None:
    store.create_job(pending_job())
    store.record_delivery(succeeded("w-setup"))


def test_same_delivery_from_many_threads_changes_once(store: SyncStore) -> None:
    """Five threads recording one delivery: one changes the job, four see a duplicate."""
    store.create_job(pending_job())
    results: list[RecordedEvent] = race(RACERS, lambda _: store.record_delivery(succeeded("w1")))
    assert sum(result.changed for result in results) == 1
    assert sum(result.duplicate for result in results) == RACERS - 1
    assert store.get_job("j1").status is JobStatus.RECEIVED  # type: ignore[union-attr]


def test_different_deliveries_of_one_outcome_change_once(store: SyncStore) -> None:
    """Five distinct webhook ids all saying 'succeeded': exactly one moves the job."""
    store.create_job(pending_job())
    results: list[RecordedEvent] = race(
        RACERS, lambda number: store.record_delivery(succeeded(f"w{number}"))
    )
    assert sum(result.changed for result in results) == 1
    assert not any(result.duplicate for result in results)


def test_early_delivery_racing_the_create_answer_ends_received(store: SyncStore) -> None:
    """A 'succeeded' delivery and the create's answer racing for a creating job: whichever
    commits first, the job ends received with the one prediction id (20 rounds)."""
    for round_number in range(20):
        job_id = f"j{round_number}"
        store.create_job(pending_job(job_id, prediction_id=None))
        prediction = {**SUCCEEDED, "id": f"p{round_number}"}
        early = Delivery(webhook_id=f"w{round_number}", prediction=prediction, job_id=job_id)
        answer = {"id": f"p{round_number}", "status": "starting"}
        results = race(
            2,
            lambda number, early=early, answer=answer, job_id=job_id: (
                store.record_delivery(early).changed
                if number
                else store.attach_prediction(job_id, answer) is not None
            ),
        )
        assert results == [True, True]
        final = store.get_job(f"p{round_number}")
        assert final is not None
        assert (final.id, final.status) == (job_id, JobStatus.RECEIVED)


def test_claim_race_between_threads_has_one_winner(store: SyncStore) -> None:
    """Five threads claiming one received job: exactly one gets it."""
    received_job(store)
    claims = race(RACERS, lambda _: store.claim_job("j1", stale_after=60))
    assert sum(claim is not None for claim in claims) == 1
    assert store.get_job("j1").attempts == 1  # type: ignore[union-attr]


def open_target(target: tuple[str, ...]) -> SQLiteStore | SQLAlchemyStore:
    """Open the store a child process races on: ("sqlite", path) or ("sqlalchemy", url, prefix)."""
    if target[0] == "sqlite":
        return SQLiteStore(target[1])
    return SQLAlchemyStore(target[1], table_prefix=target[2])


async def claim_once(target: tuple[str, ...], barrier: Any) -> bool:
    """Open the store, wait for the other processes, claim, close."""
    store = open_target(target)
    try:
        await anyio.to_thread.run_sync(barrier.wait, 30)
        return await store.claim_job("j1", stale_after=60) is not None
    finally:
        if isinstance(store, SQLAlchemyStore):
            await store.aclose()
        else:
            store.close()


def claim_in_child(target: tuple[str, ...], barrier: Any, results: Any) -> None:
    """Child process body: claim once in an event loop of its own, and report."""
    try:
        results.put(anyio.run(claim_once, target, barrier))
    except BaseException as error:  # report, so the parent fails with the reason
        results.put(repr(error))


@pytest.fixture(
    params=[
        "sqlite",
        "sqlalchemy-sqlite",
        pytest.param("sqlalchemy-postgres", marks=pytest.mark.postgres),
        pytest.param("sqlalchemy-asyncpg", marks=pytest.mark.postgres),
    ]
)
def shared_target(
    request: pytest.FixtureRequest, open_store: Callable[[str], SyncStore]
) -> tuple[str, ...]:
    """A database several processes can open, holding one received job."""
    store = open_store(request.param)
    received_job(store)
    if isinstance(store.store, SQLiteStore):
        return ("sqlite", str(store.store.path))
    assert isinstance(store.store, SQLAlchemyStore)
    engine = store.store.engine or store.store.async_engine
    assert engine is not None
    return (
        "sqlalchemy",
        engine.url.render_as_string(hide_password=False),
        store.store.table_prefix,
    )


def test_claim_race_between_processes_has_one_winner(shared_target: tuple[str, ...]) -> None:
    """Processes (spawned, each with its own store) racing claim_job: exactly one wins."""
    context = multiprocessing.get_context("spawn")
    racers = 3
    barrier, results = context.Barrier(racers), context.Queue()
    processes = [
        context.Process(target=claim_in_child, args=(shared_target, barrier, results))
        for _ in range(racers)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert sorted(outcomes, key=str) == [False] * (racers - 1) + [True]
