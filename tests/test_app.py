"""The ReplicateAudio facade on its own: outcomes of handle_webhook, and its dispatcher."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from replicate_audio import Job, JobStatus, Settings, StorageError
from replicate_audio.app import ReplicateAudio
from replicate_audio.dispatch import InProcessDispatcher
from replicate_audio.storage import MemoryStore, RecordedEvent
from replicate_audio.testing import generate_secret, sign_webhook

SECRET = generate_secret()
PREDICTION = {"id": "p1", "status": "processing", "output": None}


class BrokenStore(MemoryStore):
    """A store whose database has gone away."""

    def record_event(
        self, webhook_id: str, job_id: str, prediction: dict[str, Any]
    ) -> RecordedEvent:
        raise StorageError("connection refused")


def facade(store: MemoryStore, **settings: Any) -> ReplicateAudio:
    return ReplicateAudio(Settings(webhook_secrets=(SECRET,), **settings), store, sweep_interval=0)


def deliver(audio: ReplicateAudio, body: bytes, content: tuple[str, str] = ("sound_effect", "1")):
    async def main() -> Any:
        async with audio:
            return await audio.handle_webhook(*content, sign_webhook(body, SECRET), body)

    return anyio.run(main)


def test_storage_down_answers_503() -> None:
    """When our own store is down the webhook answers 503, so Replicate retries later."""
    store = BrokenStore()
    store.create_job(Job(id="p1", content_type="sound_effect", content_id="1"))
    outcome = deliver(facade(store), json.dumps(PREDICTION).encode())
    assert outcome.status_code == 503
    assert "storage" in outcome.body["detail"]


def test_oversized_body_is_refused_before_verifying() -> None:
    """A body over REPLICATE_AUDIO_MAX_WEBHOOK_BYTES is a 413, whatever it contains."""
    outcome = deliver(facade(MemoryStore(), max_webhook_bytes=10), b"x" * 11)
    assert (outcome.status_code, outcome.body["detail"]) == (
        413,
        "the body is larger than 10 bytes",
    )


def test_running_event_moves_job_without_dispatching() -> None:
    """A 'processing' delivery moves the job to running and queues nothing."""
    store = MemoryStore()
    store.create_job(Job(id="p1", content_type="sound_effect", content_id="1"))
    outcome = deliver(facade(store), json.dumps(PREDICTION).encode())
    assert outcome.status_code == 200
    assert outcome.body == {"job": "p1", "status": "running", "duplicate": False}
    job = store.get_job("p1")
    assert job is not None
    assert job.status is JobStatus.RUNNING


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
    router = create_router(audio)
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
    init_app(app, facade(MemoryStore()))
    client = app.test_client()
    ours = client.post("/api/replicate-webhook/sound_effect/1/extra")
    assert ours.status_code == 404
    assert ours.get_json()["detail"]
    theirs = client.get("/elsewhere")
    assert theirs.status_code == 404
    assert theirs.get_json(silent=True) is None
