"""A web process for the crash tests: FastAPI on uvicorn over a SQLite file, with a route that
asks for one sound effect. Settings come from the environment (the simulator's)."""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI

from replicate_audio import ReplicateAudio, ReplicateAudioConfig, Settings
from replicate_audio.adapters.fastapi import create_router
from replicate_audio.storage import SQLiteStore

EFFECT = ReplicateAudioConfig(
    model="stability-ai/stable-audio-2.5",
    input={"prompt": "glass breaking", "duration": 2},
    duration=1.0,
)


def main() -> None:
    audio = ReplicateAudio(
        Settings.from_env(),
        SQLiteStore(os.environ["CRASH_DATABASE"]),
        sweep_interval=0.2,
        reconcile_after=1.0,
    )
    app = FastAPI()
    app.include_router(create_router(audio, public=True), prefix="/api")

    @app.post("/effects/{effect_id}")
    async def make_effect(effect_id: str) -> dict[str, str]:
        job = await audio.generate("sound_effect", effect_id, EFFECT)
        return {"job": job.id}

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["CRASH_PORT"]), log_level="warning")


if __name__ == "__main__":
    main()
