"""Exactly-once under races: threads sharing a store, and separate processes sharing a database."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from replicate_audio.jobs import Job, JobStatus
from replicate_audio.storage.memory import MemoryStore
from replicate_audio.storage.protocols import RecordedEvent
from replicate_audio.storage.sqlalchemy import SQLAlchemyStore
from replicate_audio.storage.sqlite import SQLiteStore

AnyStore = MemoryStore | SQLiteStore | SQLAlchemyStore

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


def received_job(store: AnyStore) -> None:
    store.create_job(Job(id="p1", content_type="sound_effect", content_id="7"))
    store.record_event("w-setup", "p1", SUCCEEDED)


def test_same_delivery_from_many_threads_changes_once(store: AnyStore) -> None:
    """Five threads recording one delivery: one changes the job, four see a duplicate."""
    store.create_job(Job(id="p1", content_type="sound_effect", content_id="7"))
    results: list[RecordedEvent] = race(RACERS, lambda _: store.record_event("w1", "p1", SUCCEEDED))
    assert sum(result.changed for result in results) == 1
    assert sum(result.duplicate for result in results) == RACERS - 1
    assert store.get_job("p1").status is JobStatus.RECEIVED  # type: ignore[union-attr]


def test_different_deliveries_of_one_outcome_change_once(store: AnyStore) -> None:
    """Five distinct webhook ids all saying 'succeeded': exactly one moves the job."""
    store.create_job(Job(id="p1", content_type="sound_effect", content_id="7"))
    results: list[RecordedEvent] = race(
        RACERS, lambda number: store.record_event(f"w{number}", "p1", SUCCEEDED)
    )
    assert sum(result.changed for result in results) == 1
    assert not any(result.duplicate for result in results)


def test_claim_race_between_threads_has_one_winner(store: AnyStore) -> None:
    """Five threads claiming one received job: exactly one gets it."""
    received_job(store)
    claims = race(RACERS, lambda _: store.claim_job("p1", stale_after=60))
    assert sum(claim is not None for claim in claims) == 1
    assert store.get_job("p1").attempts == 1  # type: ignore[union-attr]


def open_target(target: tuple[str, ...]) -> SQLiteStore | SQLAlchemyStore:
    """Open the store a child process races on: ("sqlite", path) or ("sqlalchemy", url, prefix)."""
    if target[0] == "sqlite":
        return SQLiteStore(target[1])
    return SQLAlchemyStore(target[1], table_prefix=target[2])


def claim_in_child(target: tuple[str, ...], barrier: Any, results: Any) -> None:
    """Child process body: open the store, wait for the others, claim, report."""
    store = open_target(target)
    try:
        barrier.wait(timeout=30)
        claimed = store.claim_job("p1", stale_after=60)
        results.put(claimed is not None)
    except BaseException as error:  # report, so the parent fails with the reason
        results.put(repr(error))
    finally:
        store.close()


@pytest.fixture(
    params=[
        "sqlite",
        "sqlalchemy-sqlite",
        pytest.param("sqlalchemy-postgres", marks=pytest.mark.postgres),
    ]
)
def shared_target(
    request: pytest.FixtureRequest, open_store: Callable[[str], AnyStore]
) -> tuple[str, ...]:
    """A database several processes can open, holding one received job."""
    store = open_store(request.param)
    received_job(store)
    if isinstance(store, SQLiteStore):
        return ("sqlite", str(store.path))
    assert isinstance(store, SQLAlchemyStore)
    return (
        "sqlalchemy",
        store.engine.url.render_as_string(hide_password=False),
        store.table_prefix,
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
