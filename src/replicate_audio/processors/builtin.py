"""The two processors the library ships: sound effects (trimmed) and background music."""

from __future__ import annotations

from pathlib import Path

from ..jobs import Job
from ..storage import AudioInfo, LogEntry, call
from .base import AudioPostProcessor, ProcessingContext

__all__ = ["BackgroundMusicProcessor", "SoundEffectProcessor", "StoreProcessor"]


class StoreProcessor(AudioPostProcessor):
    """Stores through the configured audio store and logs through the result log."""

    async def store_audio(
        self, job: Job, path: Path, info: AudioInfo, context: ProcessingContext
    ) -> None:
        """Save the audio for ``(job.content_type, job.content_id)`` in the audio store."""
        await call(
            context.audio_store.save_audio,
            content_type=job.content_type,
            content_id=job.content_id,
            job_id=job.id,
            source=path,
            info=info,
        )

    async def log_result(self, job: Job, entry: LogEntry, context: ProcessingContext) -> None:
        """Append *entry* to the result log."""
        await call(context.result_log.log_result, entry)


class SoundEffectProcessor(StoreProcessor):
    """Sound effects: trimmed to the requested ``duration`` with a 50 ms fade-out.

    Example:
        >>> SoundEffectProcessor.content_type
        'sound_effect'
    """

    content_type = "sound_effect"


class BackgroundMusicProcessor(StoreProcessor):
    """Background music: stored as generated, never trimmed.

    Example:
        >>> BackgroundMusicProcessor().target_duration(job=None)  # doctest: +SKIP
    """

    content_type = "background_music"

    def target_duration(self, job: Job) -> float | None:
        """Music is kept whole: there is nothing to trim."""
        return None
