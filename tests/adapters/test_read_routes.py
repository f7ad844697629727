"""The read routes (the job route) are mounted only behind the app's authorize check or as
explicitly public; a public caller never sees the config (the prompt) or URLs in errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import HTTPException, Request

from replicate_audio import JobStatus, ReplicateAudio, ReplicateAudioConfig, Settings
from replicate_audio.audio import synthesize
from replicate_audio.errors import ReadRoutesNotMounted
from replicate_audio.jobs import Job, new_job_id
from replicate_audio.storage import MemoryStore

CONFIG = ReplicateAudioConfig(
    model="stability-ai/stable-audio-2.5", input={"prompt": "my secret prompt", "duration": 1}
)
TOKEN = "let-me-in"


@pytest.fixture
def audio(tmp_path: Path) -> ReplicateAudio:
    """A facade on a memory store with a completed job (its audio stored) and a dead one
    whose error names an output URL."""
    store = MemoryStore()
    done = Job(
        id="done-job", prediction_id="p-done", content_type="sound_effect", content_id="1",
        status=JobStatus.COMPLETED, config=CONFIG,
    )  # fmt: skip
    dead = Job(
        id=new_job_id(), prediction_id="p-dead", content_type="sound_effect", content_id="2",
        status=JobStatus.DEAD, config=CONFIG,
        error="DownloadError: 404 from https://replicate.delivery/xezq/abc/out.mp3",
    )  # fmt: skip
    wav = tmp_path / "a.wav"
    info = synthesize(wav, duration=0.5, format="wav")

    async def fill() -> None:
        for job in (done, dead):
            await store.create_job(job)
        assert await store.save_audio(job=done, source=wav, info=info)

    anyio.run(fill)
    return ReplicateAudio(Settings(), store, sweep_interval=0)


def fastapi_get(router_options: dict[str, Any], audio: ReplicateAudio, path: str, **kw: Any):
    from fastapi import FastAPI

    from replicate_audio.adapters.fastapi import create_router

    app = FastAPI()
    app.include_router(create_router(audio, **router_options), prefix="/api")

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.get(path, **kw)

    return anyio.run(main)


def check(request: Request) -> None:
    """The app's own check, as a FastAPI dependency."""
    if request.headers.get("authorization") != f"Bearer {TOKEN}":
        raise HTTPException(401, "who are you?")


def test_fastapi_mounts_no_read_route_unless_told(audio: ReplicateAudio) -> None:
    """Without authorize or public the job route is not there (404), a warning says how to
    mount it, and the webhook route is still served."""
    with pytest.warns(ReadRoutesNotMounted, match="authorize="):
        answer = fastapi_get({}, audio, "/api/replicate-audio/jobs/done-job")
    assert answer.status_code == 404
    with pytest.warns(ReadRoutesNotMounted):
        hook = fastapi_get({}, audio, "/api/replicate-webhook/sound_effect/1")
    assert hook.status_code == 405  # there, but only for POST


def test_fastapi_authorize_guards_and_shows_everything(audio: ReplicateAudio) -> None:
    """Behind authorize the route refuses whom the dependency refuses; an authorized caller
    sees the config (the prompt) and the stored audio's metadata."""
    refused = fastapi_get({"authorize": check}, audio, "/api/replicate-audio/jobs/done-job")
    assert refused.status_code == 401
    shown = fastapi_get(
        {"authorize": check}, audio, "/api/replicate-audio/jobs/p-done",
        headers={"authorization": f"Bearer {TOKEN}"},
    )  # fmt: skip
    assert shown.status_code == 200
    job = shown.json()
    assert job["config"]["input"]["prompt"] == "my secret prompt"
    assert (job["id"], job["status"]) == ("done-job", "completed")
    assert job["audio"]["format"] == "wav"
    assert job["audio"]["duration"] == pytest.approx(0.5, abs=0.01)


def test_fastapi_public_hides_the_prompt_and_urls(audio: ReplicateAudio) -> None:
    """public=True serves anyone: no config, URLs in the error masked."""
    dead = anyio.run(audio.get_job, "p-dead")
    answer = fastapi_get({"public": True}, audio, f"/api/replicate-audio/jobs/{dead.id}")
    assert answer.status_code == 200
    job = answer.json()
    assert job["config"] is None
    assert "my secret prompt" not in answer.text
    assert job["error"] == "DownloadError: 404 from <url>"
    assert job["audio"] is None


def flask_app(audio: ReplicateAudio, **options: Any):
    from flask import Flask

    from replicate_audio.adapters.flask import init_app

    app = Flask(__name__)
    init_app(app, audio, **options)
    return app.test_client()


def test_flask_mounts_no_read_route_unless_told(audio: ReplicateAudio) -> None:
    """Flask, like FastAPI: no read route without authorize or public, with a warning."""
    with pytest.warns(ReadRoutesNotMounted, match="public=True"):
        client = flask_app(audio)
    assert client.get("/api/replicate-audio/jobs/done-job").status_code == 404
    assert client.get("/api/replicate-webhook/sound_effect/1").status_code == 405


def test_flask_authorize_sees_the_request_and_the_job(audio: ReplicateAudio) -> None:
    """authorize(request, job) decides per job: falsy is 403; truthy shows everything."""
    seen: list[str] = []

    def mine(request: Any, job: Job) -> bool:
        seen.append(job.id)
        return request.headers.get("authorization") == f"Bearer {TOKEN}"

    client = flask_app(audio, authorize=mine)
    refused = client.get("/api/replicate-audio/jobs/done-job")
    assert refused.status_code == 403
    assert "my secret prompt" not in refused.get_data(as_text=True)
    shown = client.get(
        "/api/replicate-audio/jobs/p-done", headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert shown.status_code == 200
    assert shown.get_json()["config"]["input"]["prompt"] == "my secret prompt"
    assert seen == ["done-job", "done-job"]
    assert client.get("/api/replicate-audio/jobs/nope").status_code == 404


def test_flask_public_hides_the_prompt(audio: ReplicateAudio) -> None:
    """public=True on Flask: anyone reads the job, without its config."""
    client = flask_app(audio, public=True)
    job = client.get("/api/replicate-audio/jobs/done-job").get_json()
    assert job["config"] is None
    assert job["audio"]["size"] > 0
