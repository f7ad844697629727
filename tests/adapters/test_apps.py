"""The example apps on real servers (uvicorn for FastAPI, threaded werkzeug for Flask) against the
simulator: parallel requests, duplicate and reordered deliveries, every status code, restarts."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatchers import HeldDispatcher
from example_requests import request_audio, wait_terminal
from replicate_audio import JobStatus
from replicate_audio.app import ReplicateAudio
from replicate_audio.download import Downloader
from replicate_audio.examples.catalog import (
    SOUND_EFFECT_MODEL,
    Catalog,
    catalog_processors,
    sound_effect_config,
)
from replicate_audio.jobs import PREDICTION_STATUSES, Job, new_job_id
from replicate_audio.storage import SQLiteStore, SyncStore
from replicate_audio.testing import Faults, ReplicateSimulator, sign_webhook
from replicate_audio.testing.servers import listen, serve_asgi, serve_wsgi

Serve = Callable[[Catalog, ReplicateAudio, socket.socket], AbstractContextManager[None]]


@contextmanager
def serve_fastapi(catalog: Catalog, audio: ReplicateAudio, sock: socket.socket) -> Iterator[None]:
    from replicate_audio.examples.fastapi_app import create_app

    with serve_asgi(create_app(catalog, audio), sock):
        yield


@contextmanager
def serve_flask(catalog: Catalog, audio: ReplicateAudio, sock: socket.socket) -> Iterator[None]:
    from replicate_audio.examples.flask_app import create_app

    app = create_app(catalog, audio)
    try:
        with serve_wsgi(app, sock):
            yield
    finally:
        app.extensions["replicate_audio"].close()


@pytest.fixture(params=["fastapi", "flask"])
def serve(request: pytest.FixtureRequest) -> Serve:
    return {"fastapi": serve_fastapi, "flask": serve_flask}[request.param]


class Deployment:
    """The example app with its catalog and job store in one folder, servable again and again."""

    def __init__(self, simulator: ReplicateSimulator, folder: Path, serve: Serve) -> None:
        self.simulator, self.folder, self._serve = simulator, folder, serve
        self.sock = listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.settings = simulator.settings(base_url=self.url)
        self.catalog = Catalog(folder / "app.sqlite3")
        self.store = SQLiteStore(folder / "jobs.sqlite3")
        #: The same store, from the test's own (blocking) code.
        self.jobs = SyncStore(self.store)

    @contextmanager
    def running(self, **options: Any) -> Iterator[httpx.Client]:
        sock = self.sock.dup()  # each run serves on the same port
        audio = ReplicateAudio(
            self.settings,
            self.store,
            processors=catalog_processors(self.catalog),
            downloader=Downloader(self.settings, backoff=0.01, max_backoff=0.05),
            sweep_interval=0,
            **options,
        )
        with self._serve(self.catalog, audio, sock), httpx.Client(base_url=self.url) as client:
            yield client


@pytest.fixture
def deployment(simulator: ReplicateSimulator, tmp_path: Path, serve: Serve) -> Iterator[Deployment]:
    deployed = Deployment(simulator, tmp_path, serve)
    yield deployed
    deployed.jobs.close()
    deployed.store.close()
    deployed.sock.close()


def test_twenty_parallel_requests_stored_exactly_once(deployment: Deployment) -> None:
    """10 sound effects and 10 music tracks at once, every webhook thrice and reordered: each
    piece of audio is downloaded and stored exactly once."""
    sim = deployment.simulator
    sim.faults = Faults(duplicates=3, out_of_order=True)
    with deployment.running() as client:
        paths = request_audio(client, effects=10, tracks=10)
        rows = [wait_terminal(client, path) for path in paths]
    assert [row["status"] for row in rows] == ["completed"] * 20
    assert all(row.get("audio_data_b64") or row.get("background_music_audio_b64") for row in rows)
    sim.wait_idle()
    job_ids = {row["job_id"] for row in rows}
    assert len(job_ids) == 20
    for job_id in job_ids:
        job = deployment.jobs.get_job(job_id)
        assert job is not None
        assert job.prediction_id is not None
        downloads = [d for d in sim.downloads if d.prediction_id == job.prediction_id]
        assert len(downloads) == 1, job_id
        assert [e.status for e in deployment.jobs.list_logs(job_id)] == [JobStatus.COMPLETED]
        copies = [d for d in sim.deliveries if d.prediction_id == job.prediction_id and d.ok]
        assert len(copies) >= 6


def signed_post(client: httpx.Client, path: str, body: bytes, secret: str) -> httpx.Response:
    return client.post(path, content=body, headers=sign_webhook(body, secret))


def ask_for_effect(deployment: Deployment, client: httpx.Client) -> tuple[int, str, str]:
    """One sound effect through the app: its id, its job's id and the webhook route the
    library gave Replicate for it (path and query)."""
    answer = client.post("/api/sound-effects", json={"prompt": "x", "duration": 1})
    assert answer.status_code == 202, answer.text
    effect_id, job_id = answer.json()["id"], answer.json()["job_id"]
    webhook = deployment.simulator.creates[-1].body["webhook"]
    assert webhook.startswith(deployment.url), webhook
    route = webhook.removeprefix(deployment.url)
    assert route == f"/api/replicate-webhook/sound_effect/{effect_id}?job={job_id}"
    return effect_id, job_id, route


def prediction_of(client: httpx.Client, job_id: str) -> str:
    """The prediction id of a job, as the jobs route shows it."""
    prediction_id: str = client.get(f"/api/replicate-audio/jobs/{job_id}").json()["prediction_id"]
    assert prediction_id, job_id
    return prediction_id


def test_every_status_code(deployment: Deployment) -> None:
    """Each refusal answers its status with a JSON reason, and nothing is stored for it."""
    sim = deployment.simulator
    sim.faults = Faults(drop_ratio=1.0)  # we deliver by hand
    with deployment.running() as client:
        effect_id, job_id, route = ask_for_effect(deployment, client)
        prediction_id = prediction_of(client, job_id)
        prediction = sim.wait_for_prediction(prediction_id)
        body = json.dumps(prediction).encode()
        bare = f"/api/replicate-webhook/sound_effect/{effect_id}"  # a URL without ?job=
        secret = sim.secret
        stale = sign_webhook(body, secret, timestamp=int(time.time()) - 3600)
        other = json.dumps(prediction | {"id": "someoneelse"}).encode()
        control = json.dumps(prediction | {"id": "p\x00"}).encode()
        nan = body.replace(b'"status"', b'"nan": NaN, "status"', 1)
        cases = [
            (401, client.post(route, content=body)),
            (401, client.post(route, content=body, headers=sign_webhook(body, "whsec_AAAA"))),
            (401, client.post(route, content=body, headers=stale)),
            (401, client.post(route, content=body + b" ", headers=sign_webhook(body, secret))),
            (400, signed_post(client, route, b"{not json", secret)),
            (400, signed_post(client, route, b'{"hello": "world"}', secret)),
            (400, signed_post(client, route, control, secret)),
            (400, signed_post(client, route, nan, secret)),
            (404, signed_post(client, "/api/replicate-webhook/voiceover/1", body, secret)),
            (404, signed_post(client, route, other, secret)),
            (404, signed_post(client, bare, other, secret)),
            (404, signed_post(client, "/api/replicate-webhook/sound_effect/999", body, secret)),
            (404, signed_post(client, "/api/replicate-webhook/background_music/1", body, secret)),
            (404, signed_post(client, f"{bare}?job=%00", body, secret)),
            (413, signed_post(client, route, b" " * (10 * 1024 * 1024 + 1), secret)),
            (405, client.get(route)),
            (405, client.put(route, content=body)),
            (404, client.get("/api/replicate-audio/jobs/nope")),
            (404, client.get("/api/replicate-audio/jobs/%00")),
            (404, client.get("/api/replicate-audio/jobs/a%20b")),
        ]
        for expected, response in cases:
            assert response.status_code == expected, (expected, response.text)
            assert response.json()["detail"]
        assert client.get(f"/api/sound-effects/{effect_id}").json()["status"] == "pending"
        assert deployment.jobs.get_audio("sound_effect", str(effect_id)) is None
        assert sim.downloads == []

        once = sign_webhook(body, secret, webhook_id="msg_one")
        first = client.post(route, content=body, headers=once)
        again = client.post(route, content=body, headers=once)
        assert (first.status_code, first.json()) == (
            200,
            {"job": job_id, "prediction": prediction_id, "status": "received", "duplicate": False},
        )
        assert again.status_code == 200
        assert again.json()["duplicate"] is True
        assert (again.json()["job"], again.json()["prediction"]) == (job_id, prediction_id)
        row = wait_terminal(client, f"/api/sound-effects/{effect_id}")
        assert row["status"] == "completed"
        job = client.get(f"/api/replicate-audio/jobs/{job_id}").json()
        shown = ("id", "prediction_id", "status", "content_type", "content_id", "error")
        assert {k: job[k] for k in shown} == {
            "id": job_id,
            "prediction_id": prediction_id,
            "status": "completed",
            "content_type": "sound_effect",
            "content_id": str(effect_id),
            "error": None,
        }
        assert job["created_at"] <= job["updated_at"]
    assert len(sim.downloads) == 1


def test_storage_down_answers_503(deployment: Deployment) -> None:
    """With the job store gone, a delivery is answered 503 (Replicate retries it later) with
    a JSON reason, on both adapters."""
    sim = deployment.simulator
    sim.faults = Faults(drop_ratio=1.0)  # we deliver by hand
    with deployment.running() as client:
        _, job_id, route = ask_for_effect(deployment, client)
        body = json.dumps(sim.wait_for_prediction(prediction_of(client, job_id))).encode()
        deployment.store.close()
        response = signed_post(client, route, body, sim.secret)
    assert response.status_code == 503, response.text
    assert response.json()["detail"] == "storage is unavailable; try again"


def test_a_delivery_for_a_job_still_creating_attaches_its_prediction(
    deployment: Deployment,
) -> None:
    """A succeeded delivery for a job recorded but whose create never answered (so it has no
    prediction id) is found by ``?job=``: answered 200, the prediction id is attached, and
    the job completes with its audio stored once."""
    sim = deployment.simulator
    config = sound_effect_config("door", 1.0)
    effect_id = deployment.catalog.add_sound_effect("door", 1.0)
    job = deployment.jobs.create_job(
        Job(id=new_job_id(), content_type="sound_effect", content_id=str(effect_id), config=config)
    )
    assert (job.status, job.prediction_id) == (JobStatus.CREATING, None)
    deployment.catalog.set_job("sound_effects", effect_id, job.id)
    created = sim.client().predictions.create(model=SOUND_EFFECT_MODEL, input=config.input)
    prediction = sim.wait_for_prediction(created.id)
    assert prediction["status"] == "succeeded"
    body = json.dumps(prediction).encode()
    route = f"/api/replicate-webhook/sound_effect/{effect_id}?job={job.id}"
    with deployment.running() as client:
        answer = signed_post(client, route, body, sim.secret)
        assert (answer.status_code, answer.json()) == (
            200,
            {"job": job.id, "prediction": created.id, "status": "received", "duplicate": False},
        )
        row = wait_terminal(client, f"/api/sound-effects/{effect_id}")
        by_job = client.get(f"/api/replicate-audio/jobs/{job.id}")
        by_prediction = client.get(f"/api/replicate-audio/jobs/{created.id}")
    assert row["status"] == "completed"
    assert row["audio_data_b64"]
    assert by_job.status_code == by_prediction.status_code == 200
    assert by_job.json() == by_prediction.json()
    assert (by_job.json()["id"], by_job.json()["prediction_id"]) == (job.id, created.id)
    assert by_job.json()["status"] == "completed"
    assert [d.prediction_id for d in sim.downloads] == [created.id]
    assert [e.status for e in deployment.jobs.list_logs(job.id)] == [JobStatus.COMPLETED]
    stored = deployment.jobs.get_audio("sound_effect", str(effect_id))
    assert stored is not None
    assert stored.job_id == job.id


def test_the_job_parameter_must_name_a_job_of_this_content(deployment: Deployment) -> None:
    """``?job=`` naming no job, or a job of other content, is answered 404 and nothing is
    recorded (not even the webhook id); the jobs route shows a job by job or prediction id."""
    sim = deployment.simulator
    sim.faults = Faults(drop_ratio=1.0)  # we deliver by hand
    with deployment.running() as client:
        effect_id, job_id, route = ask_for_effect(deployment, client)
        other_effect, other_job, _ = ask_for_effect(deployment, client)
        prediction_id = prediction_of(client, job_id)
        body = json.dumps(sim.wait_for_prediction(prediction_id)).encode()
        headers = sign_webhook(body, sim.secret, webhook_id="msg_refused_first")
        hook = "/api/replicate-webhook"
        refused = {
            "unknown job": f"{hook}/sound_effect/{effect_id}?job={new_job_id()}",
            "job of another effect": f"{hook}/sound_effect/{effect_id}?job={other_job}",
            "another effect's URL": f"{hook}/sound_effect/{other_effect}?job={job_id}",
            "another content type": f"{hook}/background_music/{effect_id}?job={job_id}",
        }
        for case, path in refused.items():
            answer = client.post(path, content=body, headers=headers)
            assert answer.status_code == 404, (case, answer.text)
            assert answer.json()["detail"], case
        for effect, job in ((effect_id, job_id), (other_effect, other_job)):
            assert client.get(f"/api/sound-effects/{effect}").json()["status"] == "pending"
            assert client.get(f"/api/replicate-audio/jobs/{job}").json()["status"] == "pending"
        by_job = client.get(f"/api/replicate-audio/jobs/{job_id}")
        by_prediction = client.get(f"/api/replicate-audio/jobs/{prediction_id}")
        assert by_job.status_code == by_prediction.status_code == 200
        assert by_job.json() == by_prediction.json()
        assert (by_job.json()["id"], by_job.json()["prediction_id"]) == (job_id, prediction_id)
        assert sim.downloads == []

        accepted = client.post(route, content=body, headers=headers)
        assert accepted.status_code == 200, accepted.text
        assert (accepted.json()["job"], accepted.json()["duplicate"]) == (job_id, False)
        row = wait_terminal(client, f"/api/sound-effects/{effect_id}")
        assert client.get(f"/api/sound-effects/{other_effect}").json()["status"] == "pending"
    assert row["status"] == "completed"
    assert [d.prediction_id for d in sim.downloads] == [prediction_id]


def test_jobs_route_answers_503_when_storage_is_down(deployment: Deployment) -> None:
    """With the job store gone, reading a job is answered 503 with a JSON reason, as a
    delivery is, not a bare 500, on both adapters."""
    with deployment.running() as client:
        _, job_id, _ = ask_for_effect(deployment, client)
        deployment.store.close()
        response = client.get(f"/api/replicate-audio/jobs/{job_id}")
    assert response.status_code == 503, response.text
    assert response.json()["detail"] == "storage is unavailable; try again"


def test_restart_between_receipt_and_processing(deployment: Deployment) -> None:
    """A job whose webhook was recorded but never processed completes after a restart."""
    sim = deployment.simulator
    held = HeldDispatcher()
    with deployment.running(dispatcher=held) as client:
        answer = client.post("/api/sound-effects", json={"prompt": "x", "duration": 1})
        effect_id, job_id = answer.json()["id"], answer.json()["job_id"]
        sim.wait_until(lambda: job_id in held.held)
        assert client.get(f"/api/sound-effects/{effect_id}").json()["status"] == "received"
    assert sim.downloads == []
    with deployment.running() as client:
        row = wait_terminal(client, f"/api/sound-effects/{effect_id}")
    assert row["status"] == "completed"
    assert len(sim.downloads) == 1


class HookedCatalog(Catalog):
    """A catalog that runs a hook once, right after it reads a row."""

    after_read: Callable[[], None] | None = None

    def get(self, table: str, row_id: int) -> dict[str, Any] | None:
        row = super().get(table, row_id)
        hook, self.after_read = self.after_read, None
        if hook is not None:
            hook()
        return row


def test_a_completed_status_comes_with_its_audio(deployment: Deployment) -> None:
    """A job completes between the app reading a row and reading its job's status: the answer
    says completed and carries the audio, because the row is read again after the status."""
    sim = deployment.simulator
    catalog = deployment.catalog = HookedCatalog(deployment.folder / "app.sqlite3")
    held = HeldDispatcher()

    def complete(job_id: str) -> None:
        """The real pipeline, from another thread with its own event loop (the FastAPI view
        calls the catalog inside the server's loop)."""

        async def process() -> None:
            processors = catalog_processors(catalog)
            worker = ReplicateAudio(deployment.settings, deployment.store, processors)
            try:
                assert (await worker.process(job_id)).status is JobStatus.COMPLETED
            finally:
                await worker.downloader.aclose()

        thread = threading.Thread(target=asyncio.run, args=(process(),))
        thread.start()
        thread.join()

    with deployment.running(dispatcher=held) as client:
        answer = client.post("/api/sound-effects", json={"prompt": "x", "duration": 1})
        effect_id, job_id = answer.json()["id"], answer.json()["job_id"]
        sim.wait_until(lambda: job_id in held.held)
        catalog.after_read = lambda: complete(job_id)
        row = client.get(f"/api/sound-effects/{effect_id}").json()
    assert catalog.after_read is None
    assert row["status"] == "completed"
    assert row["audio_data_b64"]
    assert len(sim.downloads) == 1


def test_openapi_lists_the_routes() -> None:
    """The FastAPI router's routes appear in the app's OpenAPI with their schemas."""
    from fastapi import FastAPI

    from replicate_audio import Settings
    from replicate_audio.adapters.fastapi import create_router
    from replicate_audio.storage import MemoryStore

    app = FastAPI()
    audio = ReplicateAudio(Settings(), MemoryStore(), sweep_interval=0)
    app.include_router(create_router(audio, public=True), prefix="/api")
    schema = app.openapi()
    hook = schema["paths"]["/api/replicate-webhook/{content_type}/{content_id}"]["post"]
    assert set(hook["responses"]) >= {"200", "400", "401", "404", "413"}
    assert hook["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "id",
        "status",
    ]
    jobs = schema["paths"]["/api/replicate-audio/jobs/{job_id}"]["get"]
    assert "JobOut" in json.dumps(jobs["responses"]["200"])


def test_openapi_lists_every_prediction_status() -> None:
    """The FastAPI webhook's request schema enumerates every prediction status the library
    knows (aborted included), and documents the ``job`` query parameter."""
    from fastapi import FastAPI

    from replicate_audio import Settings
    from replicate_audio.adapters.fastapi import create_router
    from replicate_audio.storage import MemoryStore

    app = FastAPI()
    audio = ReplicateAudio(Settings(), MemoryStore(), sweep_interval=0)
    app.include_router(create_router(audio, public=True), prefix="/api")
    hook = app.openapi()["paths"]["/api/replicate-webhook/{content_type}/{content_id}"]["post"]
    schema = hook["requestBody"]["content"]["application/json"]["schema"]
    statuses = schema["properties"]["status"]["enum"]
    assert sorted(statuses) == sorted(PREDICTION_STATUSES)
    assert "aborted" in statuses
    (job,) = [p for p in hook["parameters"] if p["name"] == "job"]
    assert (job["in"], job.get("required", False)) == ("query", False)
