"""The post-processor template: trim the downloaded audio, store it, log the outcome."""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import anyio.to_thread
import attrs

from ..jobs import Job, JobStatus
from ..outputs import OutputFile, primary_output
from ..storage import AudioInfo, AudioStore, LogEntry, ResultLog

__all__ = ["AudioPostProcessor", "Hook", "ProcessingContext", "run_hook"]

#: What :meth:`AudioPostProcessor.store_audio` and :meth:`~AudioPostProcessor.log_result`
#: return: None from a plain method, an awaitable from an ``async def`` one.
Hook = Awaitable[object] | None


async def run_hook(hook: Callable[..., Hook], /, *args: Any) -> None:
    """Call a processor's hook: an ``async def`` one on the event loop, a plain one on a
    worker thread (it may block on the app's own database), awaiting what it returns."""
    if inspect.iscoroutinefunction(hook):
        await hook(*args)
        return
    result = await anyio.to_thread.run_sync(functools.partial(hook, *args))
    if inspect.isawaitable(result):
        await result


@attrs.define
class ProcessingContext:
    """What a processor may use while it works: the stores, a private scratch folder, and
    the output file at hand among all the prediction's files."""

    audio_store: AudioStore
    result_log: ResultLog
    work_dir: Path
    #: Set by a store step that kept a newer job's audio instead of this job's.
    superseded: bool = False
    #: The output file being processed (its name: ``output``, a list index, a dict key).
    output: OutputFile | None = None
    #: Every file of the prediction's output, in order, each with its name.
    outputs: tuple[OutputFile, ...] = ()
    #: The name the file is stored under: None for the content's one audio.
    name: str | None = None


class AudioPostProcessor(abc.ABC):
    """Turns a downloaded prediction output into stored audio.

    :meth:`process_and_store` is the template: :meth:`trim_audio`, then :meth:`store_audio`,
    then :meth:`log_result`. Subclass and override :meth:`store_audio` and :meth:`log_result`
    (plain or ``async def``: both type-check, since the hooks return :data:`Hook`) to write
    into your own tables. A plain override runs on a worker thread.

    Example:
        >>> class VoiceoverProcessor(AudioPostProcessor):
        ...     content_type = "voiceover"
        ...     def store_audio(self, job, path, info, context):
        ...         my_crud.update_voiceover_audio(job.content_id, path.read_bytes())
        ...     def log_result(self, job, entry, context):
        ...         print(entry.message)
    """

    #: The content type this processor serves, as it appears in webhook URLs.
    content_type: ClassVar[str]
    #: Output format ("mp3", "wav", ...); None keeps the format Replicate produced.
    output_format: str | None = None
    #: Length of the fade-out applied when trimming, in seconds.
    fade_out: float = 0.05

    def select_outputs(self, files: Sequence[OutputFile], job: Job) -> Sequence[OutputFile]:
        """The output files to process: the primary audio by default (the file that
        ``ReplicateAudioConfig(output=...)`` names, else the first audio file). None
        selected ends the job ``dead``, saying what the output holds."""
        primary = primary_output(files, job.config.output if job.config else None)
        return [primary] if primary is not None else []

    def stored_name(self, file: OutputFile, job: Job) -> str | None:
        """The name *file* is stored under: None, the content's one audio, by default."""
        return None

    def target_duration(self, job: Job) -> float | None:
        """How long the stored audio should be: the config's ``duration`` by default."""
        return job.config.duration if job.config else None

    def trim_audio(self, source: Path, dest: Path, job: Job) -> AudioInfo:
        """Cut *source* to :meth:`target_duration` with a short fade-out, into *dest*.

        Runs on a worker thread. With no target duration the audio is only re-encoded
        when :attr:`output_format` asks for another format.
        """
        from .. import audio

        duration = self.target_duration(job)
        info = audio.probe(source)
        if duration is None and self.output_format in (None, info.format):
            return info
        return audio.trim(
            source, dest, duration=duration, fade_out=self.fade_out, format=self.output_format
        )

    @abc.abstractmethod
    def store_audio(
        self, job: Job, path: Path, info: AudioInfo, context: ProcessingContext
    ) -> Hook:
        """Keep the processed audio at *path* (plain or ``async def``).

        Of two jobs for one piece of content the newer one's audio must stay: a store that
        keeps one row per content should not replace audio of a job newer than *job*
        (:meth:`Job.is_newer_than`), as the built-in stores do not.
        """

    @abc.abstractmethod
    def log_result(self, job: Job, entry: LogEntry, context: ProcessingContext) -> Hook:
        """Record the outcome of *job*: completed, failed, canceled, aborted or dead."""

    async def process_and_store(
        self, job: Job, source: Path, context: ProcessingContext
    ) -> AudioInfo:
        """Trim, store and log one downloaded output; the steps run off the event loop.

        Returns:
            What was stored.
        """
        info = await self.process_file(job, source, context)
        await self.log_stored(job, [(context.name, info)], context)
        return info

    async def process_file(self, job: Job, source: Path, context: ProcessingContext) -> AudioInfo:
        """Trim and store one downloaded output file (of several, for stems); no log."""
        dest = context.work_dir / f"processed.{self.output_format or _suffix(source)}"
        trim = functools.partial(self.trim_audio, source, dest, job)
        info = await anyio.to_thread.run_sync(trim)
        stored = dest if dest.exists() else source
        await run_hook(self.store_audio, job, stored, info, context)
        return info

    async def log_stored(
        self,
        job: Job,
        stored: Sequence[tuple[str | None, AudioInfo]],
        context: ProcessingContext,
    ) -> None:
        """Log one ``completed`` entry for the file or files stored for *job*."""
        described = [
            f"{'' if name is None else f'{name}: '}{info.duration:.2f}s of {info.format} "
            f"({info.size} bytes)"
            for name, info in stored
        ]
        if len(described) == 1:
            message = f"stored {described[0]}"
        else:
            message = f"stored {len(described)} files: {'; '.join(described)}"
        if context.superseded:
            message += "; a newer job's audio for this content was kept instead"
        entry = LogEntry(
            job_id=job.id,
            content_type=job.content_type,
            content_id=job.content_id,
            status=JobStatus.COMPLETED,
            message=message,
            duration=max(info.duration for _, info in stored),
            size=sum(info.size for _, info in stored),
        )
        await run_hook(self.log_result, job, entry, context)


def _suffix(path: Path) -> str:
    return path.suffix.lstrip(".") or "bin"
