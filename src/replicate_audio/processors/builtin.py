"""The processors the library ships: sound effects (trimmed), background music, and stems
(every file of a multi-file output, each under its name)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..jobs import Job
from ..outputs import OutputFile
from ..storage import AudioInfo, LogEntry
from .base import AudioPostProcessor, Hook, ProcessingContext

__all__ = ["BackgroundMusicProcessor", "SoundEffectProcessor", "StemsProcessor", "StoreProcessor"]


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
        store = context.audio_store
        if context.name is None:  # a store written before named files takes no name
            saved = await store.save_audio(job=job, source=path, info=info)
        else:
            saved = await store.save_audio(job=job, source=path, info=info, name=context.name)
        context.superseded = context.superseded or not saved
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


class StemsProcessor(StoreProcessor):
    """Every audio file of a multi-file output, each stored under its output name: the
    stems of a stem-separation model (``vocals``, ``drums``, ``bass``, ``other``), or the
    index of each file of a list. Never trimmed. Not registered by default: register it
    for the content type that asks a stems model.

    Read them back with ``get_audio(content_type, content_id, name="vocals")``.

    Example:
        >>> from replicate_audio.outputs import output_files
        >>> files = output_files({"vocals": "https://x/v.wav", "drums": "https://x/d.wav"})
        >>> tuple(file.name for file in StemsProcessor().select_outputs(files, job=None))
        ('vocals', 'drums')
    """

    content_type = "stems"

    def select_outputs(self, files: Sequence[OutputFile], job: Job) -> Sequence[OutputFile]:
        """Every file that looks like audio (every file, when none does)."""
        audio = [file for file in files if file.is_audio]
        return audio or list(files)

    def stored_name(self, file: OutputFile, job: Job) -> str | None:
        """The file's output name: the dict key, or the list index."""
        return file.name

    def target_duration(self, job: Job) -> float | None:
        """Stems are kept whole."""
        return None
