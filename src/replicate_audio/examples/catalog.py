"""The example app's own data: sound effects and texts in SQLite, with audio kept as base64
columns as the original app kept them, and the processors that write those columns."""

from __future__ import annotations

import base64
import sqlite3
import threading
from pathlib import Path
from typing import Any, ClassVar

import anyio.to_thread

from replicate_audio import (
    BackgroundMusicProcessor,
    Job,
    ProcessingContext,
    ReplicateAudioConfig,
    SoundEffectProcessor,
)
from replicate_audio.processors import AudioPostProcessor, StoreProcessor
from replicate_audio.storage import AudioInfo

SOUND_EFFECT_MODEL = "stability-ai/stable-audio-2.5"
MUSIC_VERSION = "meta/musicgen:671ac645ce5e552cc63a54a2bbff63fcf798043055d2dac5fc9e36a837eedcfb"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sound_effects (
    id INTEGER PRIMARY KEY, prompt TEXT NOT NULL, duration REAL NOT NULL,
    job_id TEXT, audio_format TEXT, audio_data_b64 TEXT);
CREATE TABLE IF NOT EXISTS texts (
    id INTEGER PRIMARY KEY, content TEXT NOT NULL,
    job_id TEXT, background_music_format TEXT, background_music_audio_b64 TEXT);
"""


def sound_effect_config(prompt: str, duration: float) -> ReplicateAudioConfig:
    """What the app asks Replicate for a sound effect: a little longer, trimmed to fit."""
    return ReplicateAudioConfig(
        model=SOUND_EFFECT_MODEL,
        input={"prompt": prompt, "duration": duration + 1, "output_format": "mp3"},
        duration=duration,
    )


def background_music_config(prompt: str, duration: float) -> ReplicateAudioConfig:
    """What the app asks Replicate for background music: kept whole."""
    return ReplicateAudioConfig(
        version=MUSIC_VERSION,
        input={"prompt": prompt, "duration": duration, "output_format": "mp3"},
    )


class Catalog:
    """The app's tables (the original's ``crud`` module), safe across threads."""

    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(_SCHEMA)

    def _run(self, sql: str, *args: Any) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def add_sound_effect(self, prompt: str, duration: float) -> int:
        """A new sound effect row, without audio yet."""
        cursor = self._run(
            "INSERT INTO sound_effects (prompt, duration) VALUES (?, ?)", prompt, duration
        )
        return int(cursor.lastrowid or 0)

    def add_text(self, content: str) -> int:
        """A new text row."""
        return int(self._run("INSERT INTO texts (content) VALUES (?)", content).lastrowid or 0)

    def set_job(self, table: str, row_id: int, job_id: str) -> None:
        """Remember which job makes this row's audio."""
        sql = f"UPDATE {_table(table)} SET job_id = ? WHERE id = ?"  # noqa: S608 - fixed names
        self._run(sql, job_id, row_id)

    def get(self, table: str, row_id: int) -> dict[str, Any] | None:
        """One row as a dict, or None."""
        sql = f"SELECT * FROM {_table(table)} WHERE id = ?"  # noqa: S608 - fixed names
        row = self._run(sql, row_id).fetchone()
        return dict(row) if row else None

    def update_sound_effect_audio(self, effect_id: int, audio_format: str, b64: str) -> None:
        """Keep a sound effect's audio (the original ``crud.update_sound_effect_audio``)."""
        self._run(
            "UPDATE sound_effects SET audio_format = ?, audio_data_b64 = ? WHERE id = ?",
            audio_format,
            b64,
            effect_id,
        )

    def update_text_background_music_audio(self, text_id: int, audio_format: str, b64: str) -> None:
        """Keep a text's background music."""
        self._run(
            "UPDATE texts SET background_music_format = ?, background_music_audio_b64 = ? "
            "WHERE id = ?",
            audio_format,
            b64,
            text_id,
        )

    def store_audio_file(self, table: str, job: Job, info: AudioInfo, path: Path) -> None:
        """Write the audio file at *path* into the row's base64 column."""
        b64 = base64.b64encode(path.read_bytes()).decode("ascii")
        if table == "sound_effects":
            self.update_sound_effect_audio(int(job.content_id), info.format, b64)
        else:
            self.update_text_background_music_audio(int(job.content_id), info.format, b64)


def _table(name: str) -> str:
    # Table names cannot be bound as parameters; only these two may reach the SQL.
    if name not in ("sound_effects", "texts"):
        raise ValueError(f"no table {name!r}")
    return name


class _WritesCatalog(StoreProcessor):
    """Stores as the library does, then also writes the row's base64 column in the catalog."""

    table: ClassVar[str]

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def store_audio(
        self, job: Job, path: Path, info: AudioInfo, context: ProcessingContext
    ) -> None:
        if not await self.save(job, path, info, context):
            return  # a newer job's audio for this row is kept
        # Reading, encoding and writing block, so they run on a worker thread.
        await anyio.to_thread.run_sync(self.catalog.store_audio_file, self.table, job, info, path)


class CatalogSoundEffects(_WritesCatalog, SoundEffectProcessor):
    """Trims as the library does and fills ``sound_effects.audio_data_b64``."""

    table = "sound_effects"


class CatalogBackgroundMusic(_WritesCatalog, BackgroundMusicProcessor):
    """Keeps the music whole and fills ``texts.background_music_audio_b64``."""

    table = "texts"


def catalog_processors(catalog: Catalog) -> dict[str, AudioPostProcessor]:
    """The processors of the example app, by content type."""
    return {
        "sound_effect": CatalogSoundEffects(catalog),
        "background_music": CatalogBackgroundMusic(catalog),
    }
