"""The example app on FastAPI: ask for sound effects and background music, answer at once.

Run it with ``uvicorn replicate_audio.examples.fastapi_app:create_app --factory``.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from replicate_audio import JobNotFoundError
from replicate_audio.adapters.fastapi import create_router
from replicate_audio.app import ReplicateAudio
from replicate_audio.examples.catalog import (
    Catalog,
    background_music_config,
    catalog_processors,
    sound_effect_config,
)


class SoundEffectIn(BaseModel):
    prompt: str = Field(min_length=1, max_length=500)
    duration: float = Field(default=3.0, gt=0, le=30)


class MusicIn(BaseModel):
    prompt: str = Field(default="calm ambient background music", min_length=1, max_length=500)
    duration: float = Field(default=8.0, gt=0, le=120)


class TextIn(BaseModel):
    content: str = Field(min_length=1)


def create_app(
    catalog: Catalog | None = None, audio: ReplicateAudio | None = None, **options: Any
) -> FastAPI:
    """The app, with its own catalog and a :class:`ReplicateAudio` writing into it.

    *options* go to :class:`ReplicateAudio` when it is built here.
    """
    catalog = catalog or Catalog(os.environ.get("EXAMPLE_APP_DATABASE", "example-app.sqlite3"))
    audio = audio or ReplicateAudio(processors=catalog_processors(catalog), **options)
    app = FastAPI(title="replicate-audio example")
    # The example has no users, so its job route is public (no config shown); a real app
    # passes authorize= to show its users their own jobs.
    app.include_router(create_router(audio, public=True), prefix="/api")

    async def status(job_id: str | None) -> dict[str, Any]:
        if job_id is None:
            return {"status": "not requested", "error": None}
        try:
            job = await audio.get_job(job_id)
        except JobNotFoundError:
            return {"status": "unknown", "error": None}
        return {"status": job.status.value, "error": job.error}

    async def show(table: str, row_id: int, what: str) -> dict[str, Any]:
        row = catalog.get(table, row_id)
        if row is None:
            raise HTTPException(404, f"no {what} {row_id}")
        state = await status(row["job_id"])
        # Read the row again: audio is stored before its job completes, so this read holds
        # everything the status promises (the first read may predate both).
        return {**(catalog.get(table, row_id) or row), **state}

    @app.post("/api/sound-effects", status_code=202)
    async def create_sound_effect(body: SoundEffectIn) -> dict[str, Any]:
        effect_id = catalog.add_sound_effect(body.prompt, body.duration)
        job = await audio.generate(
            "sound_effect", effect_id, sound_effect_config(body.prompt, body.duration)
        )
        catalog.set_job("sound_effects", effect_id, job.id)
        return {"id": effect_id, "job_id": job.id, "status": job.status.value}

    @app.get("/api/sound-effects/{effect_id}")
    async def get_sound_effect(effect_id: int) -> dict[str, Any]:
        return await show("sound_effects", effect_id, "sound effect")

    @app.post("/api/texts", status_code=201)
    async def create_text(body: TextIn) -> dict[str, Any]:
        return {"id": catalog.add_text(body.content)}

    @app.post("/api/texts/{text_id}/background-music", status_code=202)
    async def create_background_music(text_id: int, body: MusicIn) -> dict[str, Any]:
        if catalog.get("texts", text_id) is None:
            raise HTTPException(404, f"no text {text_id}")
        config = background_music_config(body.prompt, body.duration)
        job = await audio.generate("background_music", text_id, config)
        catalog.set_job("texts", text_id, job.id)
        return {"id": text_id, "job_id": job.id, "status": job.status.value}

    @app.get("/api/texts/{text_id}")
    async def get_text(text_id: int) -> dict[str, Any]:
        return await show("texts", text_id, "text")

    return app
