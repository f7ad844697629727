"""Post-processors on their own: how hooks run, the registry lookups, the newest-job rule in
the built-in store step, and that both documented override styles type-check."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Awaitable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from replicate_audio import (
    BackgroundMusicProcessor,
    Job,
    JobStatus,
    ProcessingContext,
    ReplicateAudioConfig,
    SoundEffectProcessor,
    UnknownContentTypeError,
    get_processor,
)
from replicate_audio.audio import probe, synthesize
from replicate_audio.processors import AudioPostProcessor, default_processors
from replicate_audio.processors.base import run_hook
from replicate_audio.storage import AudioInfo, LogEntry, MemoryStore

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_a_plain_hook_runs_on_a_worker_thread() -> None:
    """A plain (blocking) hook runs on a worker thread, not the event loop's, with the
    arguments it was given."""
    seen: dict[str, object] = {}

    def hook(job_id: str, *, unused: None = None) -> None:
        seen["thread"] = threading.get_ident()
        seen["job_id"] = job_id

    async def main() -> None:
        seen["loop"] = threading.get_ident()
        await run_hook(hook, "j1")

    anyio.run(main)
    assert seen["job_id"] == "j1"
    assert seen["thread"] != seen["loop"]


def test_a_blocking_hook_leaves_the_event_loop_free() -> None:
    """While a plain hook blocks, the event loop goes on: here the hook waits for an event that
    only a task on the loop sets, which could never happen if the hook held the loop."""
    released = threading.Event()

    def hook() -> None:
        assert released.wait(timeout=10), "the event loop was blocked by the hook"

    async def release() -> None:
        released.set()

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(run_hook, hook)
            group.start_soon(release)

    anyio.run(main)
    assert released.is_set()


def test_an_async_hook_is_awaited_on_the_event_loop() -> None:
    """An ``async def`` hook is awaited to its end, on the event loop's own thread."""
    seen: dict[str, object] = {}

    async def hook(entry: str) -> None:
        await anyio.lowlevel.checkpoint()
        seen["thread"] = threading.get_ident()
        seen["entry"] = entry

    async def main() -> None:
        seen["loop"] = threading.get_ident()
        await run_hook(hook, "logged")

    anyio.run(main)
    assert (seen["entry"], seen["thread"]) == ("logged", seen["loop"])


def test_an_awaitable_returned_by_a_plain_hook_is_awaited() -> None:
    """A plain hook may return an awaitable (``return super().store_audio(...)`` from a plain
    override of a built-in processor): it is awaited, on the event loop."""
    seen: dict[str, object] = {}

    async def save() -> None:
        seen["saved_on"] = threading.get_ident()

    def hook() -> Awaitable[None]:
        seen["called_on"] = threading.get_ident()
        return save()

    async def main() -> None:
        seen["loop"] = threading.get_ident()
        await run_hook(hook)

    anyio.run(main)
    assert seen["saved_on"] == seen["loop"] != seen["called_on"]


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_what_a_hook_raises_reaches_the_caller(kind: str) -> None:
    """An exception from a hook, plain or async, propagates unchanged to the pipeline."""

    def plain() -> None:
        raise LookupError("no such row")

    async def asynchronous() -> None:
        raise LookupError("no such row")

    with pytest.raises(LookupError, match="no such row"):
        anyio.run(run_hook, plain if kind == "plain" else asynchronous)


class Voiceover(SoundEffectProcessor):
    content_type = "voiceover"


def test_get_processor_reads_an_explicit_mapping() -> None:
    """With a mapping, get_processor looks there only: its processor is returned, and a type
    the global registry knows but the mapping does not is unknown, naming the mapping's."""
    voiceover = Voiceover()
    table: dict[str, AudioPostProcessor] = {"voiceover": voiceover}
    assert get_processor("voiceover", table) is voiceover
    with pytest.raises(UnknownContentTypeError, match=r"registered: voiceover\)") as raised:
        get_processor("sound_effect", table)
    assert raised.value.content_type == "sound_effect"
    with pytest.raises(UnknownContentTypeError, match=r"'sound_effect'$"):
        get_processor("sound_effect", {})


def test_the_global_registry_serves_the_built_in_types() -> None:
    """Without a mapping, sound effects and background music have their built-in processors."""
    assert isinstance(get_processor("sound_effect"), SoundEffectProcessor)
    assert isinstance(get_processor("background_music"), BackgroundMusicProcessor)
    with pytest.raises(UnknownContentTypeError, match="background_music, sound_effect"):
        get_processor("no_such_type")


def test_default_processors_are_fresh_each_time() -> None:
    """default_processors() builds a new mapping of new processors, so one app's changes never
    reach another's (or the global registry)."""
    first, second = default_processors(), default_processors()
    assert sorted(first) == ["background_music", "sound_effect"]
    assert first is not second
    assert all(first[name] is not second[name] for name in first)
    first["voiceover"] = Voiceover()
    assert "voiceover" not in default_processors()
    with pytest.raises(UnknownContentTypeError):
        get_processor("voiceover")


def test_a_processing_context_starts_not_superseded_and_is_mutable() -> None:
    """A store step reports a superseded save on the context it was given."""
    store = MemoryStore()
    context = ProcessingContext(audio_store=store, result_log=store, work_dir=Path("."))
    assert context.superseded is False
    context.superseded = True
    assert context.superseded is True


def effect_job(job_id: str, seconds: float, duration: float | None = 0.5) -> Job:
    config = ReplicateAudioConfig(model="a/b", input={}, duration=duration)
    return Job(
        id=job_id,
        content_type="sound_effect",
        content_id="7",
        status=JobStatus.PROCESSING,
        config=config,
        created_at=T0 + timedelta(seconds=seconds),
    )


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    """One second of generated audio, as a downloaded output would be."""
    path = tmp_path / "downloaded.wav"
    synthesize(path, duration=1.0, format="wav", channels=1, sample_rate=8000)
    return path


def process(processor: AudioPostProcessor, job: Job, source: Path, store: MemoryStore, work: Path):
    work.mkdir(exist_ok=True)
    context = ProcessingContext(audio_store=store, result_log=store, work_dir=work)
    info = anyio.run(processor.process_and_store, job, source, context)
    return info, context


def test_the_built_in_store_step_keeps_the_newer_jobs_audio(tone: Path, tmp_path: Path) -> None:
    """Stored after a newer job of the same content, an older job's audio is not kept: its
    context is marked superseded and its log line says so; the newer one's stays."""
    store = MemoryStore()
    processor = SoundEffectProcessor()
    older, newer = effect_job("a", 0), effect_job("b", 1)
    _, newer_context = process(processor, newer, tone, store, tmp_path / "newer")
    info, older_context = process(processor, older, tone, store, tmp_path / "older")
    assert (newer_context.superseded, older_context.superseded) == (False, True)
    stored = anyio.run(store.get_audio, "sound_effect", "7")
    assert stored is not None
    assert stored.job_id == "b"
    ((older_entry,), (newer_entry,)) = (anyio.run(store.list_logs, job_id) for job_id in "ab")
    assert older_entry.status is JobStatus.COMPLETED
    assert older_entry.message.endswith("; a newer job's audio for this content was kept instead")
    assert "newer job" not in newer_entry.message
    assert (older_entry.duration, older_entry.size) == (info.duration, info.size)


def test_a_newer_job_replaces_an_older_ones_audio(tone: Path, tmp_path: Path) -> None:
    """Stored after an older job of the same content, a newer job's audio replaces it."""
    store = MemoryStore()
    processor = SoundEffectProcessor()
    _, first = process(processor, effect_job("a", 0), tone, store, tmp_path / "older")
    _, second = process(processor, effect_job("b", 1), tone, store, tmp_path / "newer")
    assert (first.superseded, second.superseded) == (False, False)
    stored = anyio.run(store.get_audio, "sound_effect", "7")
    assert stored is not None
    assert stored.job_id == "b"


def test_sound_effects_are_trimmed_and_music_is_kept_whole(tone: Path, tmp_path: Path) -> None:
    """The sound effect processor trims to the config's duration; background music keeps the
    whole output (and is not re-encoded when no format is asked for)."""
    store = MemoryStore()
    effect, _ = process(SoundEffectProcessor(), effect_job("a", 0), tone, store, tmp_path / "fx")
    assert effect.duration == pytest.approx(0.5, abs=1 / 8000)
    music_job = effect_job("m", 0)
    music, _ = process(BackgroundMusicProcessor(), music_job, tone, store, tmp_path / "music")
    assert music == probe(tone)


class RecordingAsync(SoundEffectProcessor):
    """A processor whose hooks are ``async def``, awaiting the built-in save."""

    def __init__(self) -> None:
        self.saved: list[bool] = []
        self.logged: list[LogEntry] = []

    async def store_audio(
        self, job: Job, path: Path, info: AudioInfo, context: ProcessingContext
    ) -> None:
        self.saved.append(await self.save(job, path, info, context))

    async def log_result(self, job: Job, entry: LogEntry, context: ProcessingContext) -> None:
        self.logged.append(entry)


def test_async_overrides_run_in_the_template(tone: Path, tmp_path: Path) -> None:
    """process_and_store awaits ``async def`` store and log hooks, in that order, with the
    result of the built-in save."""
    processor, store = RecordingAsync(), MemoryStore()
    process(processor, effect_job("b", 1), tone, store, tmp_path / "newer")
    process(processor, effect_job("a", 0), tone, store, tmp_path / "older")
    assert processor.saved == [True, False]
    assert [entry.job_id for entry in processor.logged] == ["b", "a"]
    assert anyio.run(store.list_logs) == []  # the overrides logged into their own list


OVERRIDES = """
from __future__ import annotations

from pathlib import Path

from replicate_audio import Job, ProcessingContext, SoundEffectProcessor
from replicate_audio.storage import AudioInfo, LogEntry


class PlainEffects(SoundEffectProcessor):
    def store_audio(
        self, job: Job, path: Path, info: AudioInfo, context: ProcessingContext
    ) -> None:
        print(job.content_id, len(path.read_bytes()), info.duration)

    def log_result(self, job: Job, entry: LogEntry, context: ProcessingContext) -> None:
        print(entry.message)


class AsyncEffects(SoundEffectProcessor):
    async def store_audio(
        self, job: Job, path: Path, info: AudioInfo, context: ProcessingContext
    ) -> None:
        if not await self.save(job, path, info, context):
            print("a newer job's audio is kept")

    async def log_result(self, job: Job, entry: LogEntry, context: ProcessingContext) -> None:
        await context.result_log.log_result(entry)
"""

#: An override that returns something a hook must not: mypy has to say so.
WRONG = """
from pathlib import Path

from replicate_audio import Job, ProcessingContext, SoundEffectProcessor
from replicate_audio.storage import AudioInfo


class WrongEffects(SoundEffectProcessor):
    def store_audio(
        self, job: Job, path: Path, info: AudioInfo, context: ProcessingContext
    ) -> str:
        return "stored"
"""


def mypy_strict(module: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), str(module)],
        capture_output=True,
        text=True,
        cwd=module.parent,
        timeout=300,
        check=False,
    )


def test_plain_and_async_overrides_type_check_under_mypy_strict(tmp_path: Path) -> None:
    """The documented overrides, a plain ``def store_audio(...) -> None`` and an ``async def``
    one, pass ``mypy --strict``; an override returning a value a hook must not is refused."""
    pytest.importorskip(
        "mypy", reason="mypy is not installed (pip install replicate-audio[typing])"
    )
    good, wrong = tmp_path / "my_processors.py", tmp_path / "wrong_processors.py"
    good.write_text(textwrap.dedent(OVERRIDES))
    wrong.write_text(textwrap.dedent(WRONG))
    checked = mypy_strict(good, tmp_path / "cache")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Success: no issues found in 1 source file" in checked.stdout
    refused = mypy_strict(wrong, tmp_path / "cache")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert 'Return type "str" of "store_audio" incompatible' in refused.stdout
