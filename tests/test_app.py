"""The ReplicateAudio facade on its own: outcomes of handle_webhook, and its dispatcher."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from replicate_audio import Job, JobStatus, Settings, StorageError, WebhookOutcome
from replicate_audio.app import ReplicateAudio
from replicate_audio.dispatch import InProcessDispatcher
from replicate_audio.storage import Delivery, MemoryStore, RecordedEvent
from replicate_audio.testing import generate_secret, sign_webhook

SECRET = generate_secret()
PREDICTION = {"id": "p1", "status": "processing", "output": None}


class BrokenStore(MemoryStore):
    """A store whose database has gone away."""

    async def record_delivery(self, delivery: Delivery) -> RecordedEvent:
        raise StorageError("connection refused")


class StuckStore(MemoryStore):
    """A store whose database takes any delivery's lock and never lets go."""

    async def record_delivery(self, delivery: Delivery) -> RecordedEvent:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


def facade(store: MemoryStore, **settings: Any) -> ReplicateAudio:
    return ReplicateAudio(Settings(webhook_secrets=(SECRET,), **settings), store, sweep_interval=0)


def recorded(store: MemoryStore, job: Job) -> MemoryStore:
    """*store* with *job* recorded in it."""
    anyio.run(store.create_job, job)
    return store


def get(store: MemoryStore, job_id: str) -> Job:
    job = anyio.run(store.get_job, job_id)
    assert job is not None, job_id
    return job


def deliver(
    audio: ReplicateAudio,
    body: bytes,
    content: tuple[str, str] = ("sound_effect", "1"),
    *,
    job_id: str | None = None,
    webhook_id: str | None = None,
) -> WebhookOutcome:
    async def main() -> WebhookOutcome:
        async with audio:
            headers = sign_webhook(body, SECRET, webhook_id=webhook_id)
            return await audio.handle_webhook(*content, headers, body, job_id=job_id)

    return anyio.run(main)


#: A job whose create answered: it has its prediction id.
CREATED = Job(
    id="j1",
    content_type="sound_effect",
    content_id="1",
    status=JobStatus.PENDING,
    prediction_id="p1",
)


def test_storage_down_answers_503() -> None:
    """When our own store is down the webhook answers 503, so Replicate retries later."""
    store = recorded(BrokenStore(), CREATED)
    outcome = deliver(facade(store), json.dumps(PREDICTION).encode(), job_id="j1")
    assert outcome.status_code == 503
    assert "storage" in outcome.body["detail"]


def test_a_delivery_not_committed_within_the_intake_timeout_answers_503() -> None:
    """A store that cannot commit a delivery within REPLICATE_AUDIO_INTAKE_TIMEOUT is left
    behind: the delivery is answered 503 (Replicate retries it) instead of hanging."""
    store = recorded(StuckStore(), CREATED)
    audio = facade(store, intake_timeout=0.05)
    outcome = deliver(audio, json.dumps(PREDICTION).encode(), job_id="j1")
    assert outcome.status_code == 503
    assert "storage" in outcome.body["detail"]


def test_oversized_body_is_refused_before_verifying() -> None:
    """A body over REPLICATE_AUDIO_MAX_WEBHOOK_BYTES is a 413, whatever it contains."""
    outcome = deliver(facade(MemoryStore(), max_webhook_bytes=10), b"x" * 11)
    assert (outcome.status_code, outcome.body["detail"]) == (
        413,
        "the body is larger than 10 bytes",
    )


@pytest.mark.parametrize("job_id", ["j1", None], ids=["by-job-id", "by-prediction-id"])
def test_running_event_moves_job_without_dispatching(job_id: str | None) -> None:
    """A 'processing' delivery moves the job to running and queues nothing; the job is found
    by the URL's job id or, without one, by its prediction id."""
    store = recorded(MemoryStore(), CREATED)
    outcome = deliver(facade(store), json.dumps(PREDICTION).encode(), job_id=job_id)
    assert outcome.status_code == 200
    assert outcome.body == {
        "job": "j1",
        "prediction": "p1",
        "status": "running",
        "duplicate": False,
    }
    assert get(store, "j1").status is JobStatus.RUNNING


def test_a_delivery_that_outran_its_create_finds_the_job_by_its_id() -> None:
    """A delivery for a job still creating (its create has not answered) is matched by the
    URL's job id and attaches the prediction id to the job."""
    store = recorded(MemoryStore(), Job(id="j1", content_type="sound_effect", content_id="1"))
    outcome = deliver(facade(store), json.dumps(PREDICTION).encode(), job_id="j1")
    assert outcome.status_code == 200
    assert outcome.body == {
        "job": "j1",
        "prediction": "p1",
        "status": "running",
        "duplicate": False,
    }
    job = get(store, "p1")
    assert (job.id, job.prediction_id, job.status) == ("j1", "p1", JobStatus.RUNNING)


@pytest.mark.parametrize(
    ("content", "job_id"),
    [
        (("sound_effect", "2"), "j1"),  # the job is of other content
        (("background_music", "1"), "j1"),
        (("sound_effect", "1"), "nope"),  # no such job
        (("sound_effect", "1"), "j1 2"),  # never a job id
    ],
    ids=["other-content-id", "other-content-type", "unknown-job", "malformed-job-id"],
)
def test_a_delivery_that_is_not_ours_answers_404(content: tuple[str, str], job_id: str) -> None:
    """A delivery naming a job that does not exist, or one of other content, is a 404 and
    changes nothing."""
    store = recorded(MemoryStore(), CREATED)
    outcome = deliver(facade(store), json.dumps(PREDICTION).encode(), content, job_id=job_id)
    assert outcome.status_code == 404
    assert outcome.body["detail"]
    assert get(store, "j1") == CREATED


def test_a_delivery_for_another_prediction_is_not_ours() -> None:
    """A delivery whose prediction is not the one the job was created with is a 404, even
    with the job's own id in its URL."""
    store = recorded(MemoryStore(), CREATED)
    other = json.dumps(PREDICTION | {"id": "p2"}).encode()
    outcome = deliver(facade(store), other, job_id="j1")
    assert outcome.status_code == 404
    assert get(store, "j1") == CREATED


def test_an_unknown_status_is_recorded_and_answered_200() -> None:
    """A status Replicate may add later is answered 200 and recorded once (a redelivery is a
    duplicate), and leaves the job as it is."""
    store = recorded(MemoryStore(), CREATED)
    audio = facade(store)
    body = json.dumps(PREDICTION | {"status": "paused_for_review"}).encode()
    first = deliver(audio, body, job_id="j1", webhook_id="msg_new")
    again = deliver(audio, body, job_id="j1", webhook_id="msg_new")
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.body == {"job": "j1", "prediction": "p1", "status": "pending", "duplicate": False}
    assert again.body["duplicate"] is True
    assert get(store, "j1").status is JobStatus.PENDING


def test_dispatcher_refuses_work_when_stopped() -> None:
    """Submitting to a dispatcher that is not running is an error, not a silent loss."""
    with pytest.raises(RuntimeError, match="not running"):
        anyio.run(InProcessDispatcher().submit, "p1")


def test_dispatcher_drains_queued_jobs_on_stop() -> None:
    """Jobs queued before stop still run, within the drain timeout."""
    ran: list[str] = []

    async def runner(job_id: str) -> None:
        await anyio.sleep(0.01)
        ran.append(job_id)

    async def main() -> None:
        dispatcher = InProcessDispatcher(concurrency=2, drain_timeout=5)
        async with dispatcher.running(runner):
            for n in range(6):
                await dispatcher.submit(f"job{n}")
            await dispatcher.submit("job0")  # still queued: not queued twice

    anyio.run(main)
    assert sorted(ran) == [f"job{n}" for n in range(6)]


def test_one_failing_job_does_not_stop_the_pool() -> None:
    """A runner that raises for one job leaves the others running."""
    ran: list[str] = []

    async def runner(job_id: str) -> None:
        if job_id == "bad":
            raise ValueError("boom")
        ran.append(job_id)

    async def main() -> None:
        dispatcher = InProcessDispatcher(concurrency=1)
        async with dispatcher.running(runner):
            for job_id in ("bad", "good"):
                await dispatcher.submit(job_id)

    anyio.run(main)
    assert ran == ["good"]


def test_restarted_dispatcher_takes_jobs_left_queued() -> None:
    """Ids still queued when a run stopped are accepted again by the next run."""
    ran: list[str] = []

    async def slow(job_id: str) -> None:
        await anyio.sleep(1)

    async def quick(job_id: str) -> None:
        ran.append(job_id)

    async def main() -> None:
        dispatcher = InProcessDispatcher(concurrency=1, drain_timeout=0.05)
        async with dispatcher.running(slow):
            for job_id in ("a", "b"):
                await dispatcher.submit(job_id)
        async with dispatcher.running(quick):
            await dispatcher.submit("b")

    anyio.run(main)
    assert ran == ["b"]


def test_router_included_twice_starts_once() -> None:
    """Mounting the router at two prefixes (a prefix migration) starts the facade once."""
    import httpx
    from fastapi import FastAPI

    from replicate_audio.adapters.fastapi import create_router

    audio = facade(MemoryStore())
    router = create_router(audio, public=True)
    app = FastAPI()
    app.include_router(router, prefix="/api")
    app.include_router(router, prefix="/legacy")

    async def main() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://app") as client,
        ):
            return [
                (await client.get(f"{prefix}/replicate-audio/jobs/nope")).status_code
                for prefix in ("/api", "/legacy")
            ]

    assert anyio.run(main) == [404, 404]


def test_flask_unknown_route_under_prefix_is_json() -> None:
    """A 404 under the library's routes is JSON; the app's other 404s stay its own."""
    from flask import Flask

    from replicate_audio.adapters.flask import init_app

    app = Flask(__name__)
    init_app(app, facade(MemoryStore()), public=True)
    client = app.test_client()
    ours = client.post("/api/replicate-webhook/sound_effect/1/extra")
    assert ours.status_code == 404
    assert ours.get_json()["detail"]
    theirs = client.get("/elsewhere")
    assert theirs.status_code == 404
    assert theirs.get_json(silent=True) is None
