"""Scenario 1: how long an app endpoint keeps its user waiting, webhook (this library) vs the
old way (create, poll every 0.5 s, download), both on the example FastAPI app and a simulator."""

from __future__ import annotations

import base64
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import httpx
from measure import Section, Summary, duration, markdown_table, ratio
from replicate.client import Client
from serving import in_child

from replicate_audio import Settings
from replicate_audio.app import ReplicateAudio
from replicate_audio.audio import trim
from replicate_audio.examples.catalog import Catalog, catalog_processors, sound_effect_config
from replicate_audio.examples.fastapi_app import SoundEffectIn, create_app
from replicate_audio.storage import SQLiteStore
from replicate_audio.testing import ReplicateSimulator

# Seconds the simulated model takes: halfway between two polls, the old way's average case.
RUN_TIME = 2.25
POLL_INTERVAL = 0.5
USERS = 5  # requests in flight at once
SECONDS = 5.0  # length of each sound effect asked for
DONE = ("completed", "failed", "canceled", "dead")


def add_polling_route(app: Any, catalog: Catalog, client: Client) -> None:
    """``POST /old/sound-effects``: what the app did before this library, in one request."""
    downloads = httpx.Client(timeout=30)

    @app.post("/old/sound-effects", status_code=201)
    def create_by_polling(body: SoundEffectIn) -> dict[str, Any]:
        effect_id = catalog.add_sound_effect(body.prompt, body.duration)
        config = sound_effect_config(body.prompt, body.duration)
        prediction = client.predictions.create(model=config.model, input=config.input)
        while prediction.status not in ("succeeded", "failed", "canceled"):
            time.sleep(POLL_INTERVAL)
            prediction.reload()
        output = prediction.output if isinstance(prediction.output, str) else prediction.output[0]
        with tempfile.TemporaryDirectory() as folder:
            source, trimmed = Path(folder, "source.mp3"), Path(folder, "trimmed.mp3")
            source.write_bytes(downloads.get(output).raise_for_status().content)
            info = trim(source, trimmed, duration=body.duration)
            b64 = base64.b64encode(trimmed.read_bytes()).decode("ascii")
            catalog.update_sound_effect_audio(effect_id, info.format, b64)
        return {"id": effect_id, "status": prediction.status}


def by_webhook(client: httpx.Client, n: int) -> tuple[float, float]:
    """Ask through ``generate``; returns (seconds to the answer, seconds until the audio is stored).

    The job turns ``completed`` right after its audio is stored, and its ``updated_at`` says
    when; reading that, rather than timing a fast poll, keeps the watching off the clock.
    """
    began, start = time.time(), time.perf_counter()
    answer = client.post("/api/sound-effects", json={"prompt": f"boom {n}", "duration": SECONDS})
    answered = time.perf_counter() - start
    answer.raise_for_status()
    path = f"/api/replicate-audio/jobs/{answer.json()['job_id']}"
    while (job := client.get(path).json())["status"] not in DONE:
        time.sleep(0.1)
    if job["status"] != "completed":
        raise RuntimeError(f"{path} ended {job['status']}: {job['error']}")
    return answered, datetime.fromisoformat(job["updated_at"]).timestamp() - began


def by_polling(client: httpx.Client, n: int) -> tuple[float, float]:
    """Ask the old way; the answer comes once the audio is stored, so both times are one."""
    start = time.perf_counter()
    answer = client.post("/old/sound-effects", json={"prompt": f"boom {n}", "duration": SECONDS})
    answer.raise_for_status()
    elapsed = time.perf_counter() - start
    return elapsed, elapsed


def _timed(
    ask: Callable[[httpx.Client, int], tuple[float, float]], url: str, count: int
) -> list[tuple[float, float]]:
    with httpx.Client(base_url=url, timeout=60) as client, ThreadPoolExecutor(USERS) as users:
        return list(users.map(lambda n: ask(client, n), range(count)))


def example_app(url: str, settings: Settings, folder: Path) -> Any:
    """The example FastAPI app with the old endpoint beside it, as the child process serves it."""
    catalog = Catalog(folder / "catalog.sqlite3")
    audio = ReplicateAudio(
        attrs.evolve(settings, base_url=url),
        SQLiteStore(folder / "jobs.sqlite3"),
        processors=catalog_processors(catalog),
        sweep_interval=0,
    )
    app = create_app(catalog, audio)
    client = Client(api_token=settings.api_token, base_url=settings.api_base_url)
    add_polling_route(app, catalog, client)
    return app


def run(*, quick: bool, folder: Path) -> Section:
    """Serve the example app against a simulator and time both ways with the same users."""
    count = 10 if quick else 20
    with (
        ReplicateSimulator(run_time=RUN_TIME) as sim,
        in_child("fastapi", example_app, sim.settings(), folder) as url,
    ):
        results = {
            "Webhook: `ReplicateAudio.generate`": _timed(by_webhook, url, count),
            f"Polling every {POLL_INTERVAL:g} s, then download": _timed(by_polling, url, count),
        }
    return _section(results, count)


def _section(results: dict[str, list[tuple[float, float]]], count: int) -> Section:
    answers = {name: Summary.of([a for a, _ in pairs]) for name, pairs in results.items()}
    stored = {name: Summary.of([s for _, s in pairs]) for name, pairs in results.items()}
    slowest = max(summary.median for summary in answers.values())
    rows = [
        [
            name,
            answers[name].count,
            duration(answers[name].median),
            duration(answers[name].p95),
            ratio(slowest, answers[name].median),
            duration(stored[name].median),
            duration(stored[name].p95),
        ]
        for name in results
    ]
    headers = [
        "Endpoint",
        "Requests",
        "Answer p50",
        "Answer p95",
        "Answers faster by",
        "Audio stored p50",
        "Audio stored p95",
    ]
    method = (
        f"The example FastAPI app on uvicorn (in a process of its own), a `ReplicateSimulator` "
        f"whose model takes {RUN_TIME:g} s, and {USERS} users at a time asking for {SECONDS:g} s "
        f"sound effects, {count} requests each way. The webhook endpoint answers as soon as the "
        f"prediction is created and its job recorded; the audio arrives by webhook and is "
        f"downloaded, trimmed and stored in the background (its job's `updated_at` says when). "
        f"The old endpoint creates the prediction with the `replicate` client, polls it every "
        f"{POLL_INTERVAL:g} s, downloads, trims and stores before it answers."
    )
    notes = (
        "Answers faster by: the old endpoint's median answer time divided by this one's.",
        "Audio stored: from the request until the audio is in the app's table. The webhook path "
        "is not slower end to end: it never waits for the next poll.",
    )
    return Section(
        "Trigger latency: webhook vs polling", method, markdown_table(headers, rows), notes
    )
