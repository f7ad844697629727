"""The two processors the library ships: sound effects (trimmed) and background music."""

from __future__ import annotations

from pathlib import Path

from ..jobs import Job
from ..storage import AudioInfo, LogEntry
from .base import AudioPostProcessor, Hook, ProcessingContext

__all__ = ["BackgroundMusicProcessor", "SoundEffectProcessor", "StoreProcessor"]


class StoreProcessor(AudioPostProcessor):
    """Stores through the configured audio store and logs through the result log."""

    def store_audio(
        self, job: Job, path: Path, info: AudioInfo, context: ProcessingContext
    ) -> Hook:
        """Save the audio for ``(job.content_type, job.content_id)`` in the audio store,
        unless a newer job's audio for it is there already."""
        return self.save(job, path, info, context)

    async def save(self, job: Job, path: Path, info: AudioInfo, context: ProcessingContext) -> bool:
        """What :meth:`store_audio` does, to await from an override that does more.

        Returns:
            Whether *job*'s audio was stored (False: a newer job's is kept).
        """
        saved = await context.audio_store.save_audio(job=job, source=path, info=info)
        context.superseded = not saved
        return saved

    def log_result(self, job: Job, entry: LogEntry, context: ProcessingContext) -> Hook:
        """Append *entry* to the result log."""
        return context.result_log.log_result(entry)


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
