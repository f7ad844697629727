"""The example app on Flask: the same routes as the FastAPI one, from synchronous views.

Run it with ``flask --app replicate_audio.examples.flask_app:create_app run``.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, abort, jsonify, request
from flask.typing import ResponseReturnValue

from replicate_audio import JobNotFoundError
from replicate_audio.adapters.flask import init_app
from replicate_audio.app import ReplicateAudio
from replicate_audio.examples.catalog import (
    Catalog,
    background_music_config,
    catalog_processors,
    sound_effect_config,
)


def _number(body: dict[str, Any], key: str, default: float, limit: float) -> float:
    value = body.get(key, default)
    if not isinstance(value, int | float) or not 0 < value <= limit:
        abort(422, f"{key} must be a number in (0, {limit}]")
    return float(value)


def _text(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not value.strip():
        abort(422, f"{key} must be a non-empty string")
    return value


def create_app(
    catalog: Catalog | None = None, audio: ReplicateAudio | None = None, **options: Any
) -> Flask:
    """The app, with its own catalog and a :class:`ReplicateAudio` writing into it."""
    catalog = catalog or Catalog(os.environ.get("EXAMPLE_APP_DATABASE", "example-app.sqlite3"))
    audio = audio or ReplicateAudio(processors=catalog_processors(catalog), **options)
    app = Flask(__name__)
    # The example has no users, so its job route is public (no config shown); a real app
    # passes authorize= to show its users their own jobs.
    extension = init_app(app, audio, url_prefix="/api", public=True)

    def status(job_id: str | None) -> dict[str, Any]:
        if job_id is None:
            return {"status": "not requested", "error": None}
        try:
            job = extension.call(audio.get_job, job_id)
        except JobNotFoundError:
            return {"status": "unknown", "error": None}
        return {"status": job.status.value, "error": job.error}

    def show(table: str, row_id: int, what: str) -> ResponseReturnValue:
        row = catalog.get(table, row_id) or abort(404, f"no {what} {row_id}")
        state = status(row["job_id"])
        # Read the row again: audio is stored before its job completes, so this read holds
        # everything the status promises (the first read may predate both).
        return jsonify({**(catalog.get(table, row_id) or row), **state})

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            abort(400, "the body must be a JSON object")
        return data

    @app.post("/api/sound-effects")
    def create_sound_effect() -> ResponseReturnValue:
        data = body()
        prompt, duration = _text(data, "prompt"), _number(data, "duration", 3.0, 30)
        effect_id = catalog.add_sound_effect(prompt, duration)
        job = extension.call(
            audio.generate, "sound_effect", effect_id, sound_effect_config(prompt, duration)
        )
        catalog.set_job("sound_effects", effect_id, job.id)
        return jsonify({"id": effect_id, "job_id": job.id, "status": job.status.value}), 202

    @app.get("/api/sound-effects/<int:effect_id>")
    def get_sound_effect(effect_id: int) -> ResponseReturnValue:
        return show("sound_effects", effect_id, "sound effect")

    @app.post("/api/texts")
    def create_text() -> ResponseReturnValue:
        return jsonify({"id": catalog.add_text(_text(body(), "content"))}), 201

    @app.post("/api/texts/<int:text_id>/background-music")
    def create_background_music(text_id: int) -> ResponseReturnValue:
        if catalog.get("texts", text_id) is None:
            abort(404, f"no text {text_id}")
        data = request.get_json(silent=True) or {}
        prompt = _text(data, "prompt", "calm ambient background music")
        config = background_music_config(prompt, _number(data, "duration", 8.0, 120))
        job = extension.call(audio.generate, "background_music", text_id, config)
        catalog.set_job("texts", text_id, job.id)
        return jsonify({"id": text_id, "job_id": job.id, "status": job.status.value}), 202

    @app.get("/api/texts/<int:text_id>")
    def get_text(text_id: int) -> ResponseReturnValue:
        return show("texts", text_id, "text")

    return app
