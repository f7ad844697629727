"""Every output shape: a URL, lists, dicts of named files (stems), nesting, data: URIs; the
primary audio picked from them; and an output Replicate already removed."""

from __future__ import annotations

import base64
from pathlib import Path

import anyio
import pytest

from replicate_audio import JobStatus, ReplicateAudioConfig, Settings, StemsProcessor
from replicate_audio.audio import probe, synthesize
from replicate_audio.download import Downloader
from replicate_audio.errors import DownloadError, DownloadTooLargeError
from replicate_audio.jobs import Job
from replicate_audio.outputs import OutputFile, decode_data_uri, output_files, primary_output
from replicate_audio.pipeline import EXPIRED, process_webhook_result
from replicate_audio.storage import MemoryStore

URL = "https://replicate.delivery/x"


def test_every_shape_flattens_to_named_files() -> None:
    """A string is "output"; list items are named by index, dict items by key, nested ones
    joined by "/"; non-string leaves (numbers, None) are not files."""
    assert output_files(f"{URL}/a.mp3") == (OutputFile("output", f"{URL}/a.mp3"),)
    assert output_files(None) == output_files("") == output_files(7) == ()
    shaped = {"vocals": f"{URL}/v.wav", "parts": [f"{URL}/p0.wav", None, {"hi": f"{URL}/h"}]}
    assert [(f.name, f.url) for f in output_files(shaped)] == [
        ("vocals", f"{URL}/v.wav"),
        ("parts/0", f"{URL}/p0.wav"),
        ("parts/2/hi", f"{URL}/h"),
    ]


def test_the_primary_is_the_one_asked_for_else_the_first_audio() -> None:
    """output= names a key or an index; without it the first audio-looking file wins."""
    files = output_files([f"{URL}/cover.png", f"{URL}/song.mp3", "data:audio/wav;base64,AA=="])
    assert primary_output(files) == files[1]
    assert primary_output(files, 2) == files[2]
    assert primary_output(files, "9") is None
    assert primary_output(output_files([f"{URL}/blob"])) == OutputFile("0", f"{URL}/blob")
    assert primary_output(()) is None


def test_data_uris_decode_within_the_limit() -> None:
    """base64 and percent-encoded data: URIs decode; too large or malformed ones are refused
    for good (never retried)."""
    assert decode_data_uri("data:audio/wav;base64,UklGRg==", limit=4) == b"RIFF"
    assert decode_data_uri("data:,RI%46F", limit=4) == b"RIFF"
    with pytest.raises(DownloadTooLargeError):
        decode_data_uri("data:audio/wav;base64,UklGRg==", limit=3)
    with pytest.raises(DownloadTooLargeError):
        decode_data_uri("data:audio/wav;base64," + "A" * 4000, limit=100)
    for broken in ("data:audio/wav;base64,U!==", "https://x/a.wav", "data:nocomma"):
        with pytest.raises(DownloadError) as refused:
            decode_data_uri(broken, limit=100)
        assert not refused.value.retryable


def data_uri(path: Path, media: str = "audio/wav") -> str:
    return f"data:{media};base64,{base64.b64encode(path.read_bytes()).decode()}"


def run(job: Job, prediction: dict[str, object]) -> tuple[Job, MemoryStore]:
    store = MemoryStore()

    async def main() -> Job:
        await store.create_job(job)
        async with Downloader(Settings()) as downloader:
            return await process_webhook_result(
                job.content_type, job.content_id, prediction, store=store,
                downloader=downloader, job_id=job.id,
            )  # fmt: skip

    return anyio.run(main), store


@pytest.mark.parametrize(
    ("output", "wanted", "seconds"),
    [
        ("one", None, 1.0),
        ("list", None, 1.0),
        ("stems", "drums", 2.0),
        ("stems", None, 1.0),
        ("nested", "mix/1", 2.0),
    ],
)
def test_data_uri_outputs_are_stored_without_a_request(
    tmp_path: Path, output: str, wanted: str | None, seconds: float
) -> None:
    """Sync-mode outputs (data: URIs) of every shape are decoded and stored: the named file,
    or the first audio file; decoded and measured."""
    one, two = tmp_path / "one.wav", tmp_path / "two.wav"
    synthesize(one, duration=1.0, format="wav")
    synthesize(two, duration=2.0, format="wav")
    shapes = {
        "one": data_uri(one),
        "list": [f"{URL}/cover.png", data_uri(one)],
        "stems": {"vocals": data_uri(one), "drums": data_uri(two)},
        "nested": {"mix": [data_uri(one), data_uri(two)]},
    }
    config = ReplicateAudioConfig(model="a/b", output=wanted)
    job = Job(id="j1", content_type="background_music", content_id="7", config=config)
    prediction = {"id": "p1", "status": "succeeded", "output": shapes[output]}
    done, store = run(job, prediction)
    assert done.status is JobStatus.COMPLETED, done.error
    stored = anyio.run(store.get_audio, "background_music", "7")
    assert stored is not None
    kept = tmp_path / "kept.wav"
    kept.write_bytes(stored.data)
    assert probe(kept, exact=True).duration == pytest.approx(seconds, abs=0.01)


def test_an_output_not_there_names_what_there_is() -> None:
    """output= naming a file the prediction does not have parks the job dead, saying which
    files it has."""
    config = ReplicateAudioConfig(model="a/b", output="bass")
    job = Job(id="j1", content_type="background_music", content_id="7", config=config)
    prediction = {"id": "p1", "status": "succeeded", "output": {"vocals": f"{URL}/v.wav"}}
    done, _ = run(job, prediction)
    assert done.status is JobStatus.DEAD
    assert done.error == "the prediction has no output 'bass' (it has vocals)"


def test_a_removed_output_is_dead_as_expired() -> None:
    """A succeeded prediction whose output Replicate removed (data_removed, output null)
    ends dead with the expiry reason, and is logged once."""
    job = Job(id="j1", content_type="sound_effect", content_id="7")
    prediction = {"id": "p1", "status": "succeeded", "output": None, "data_removed": True}
    done, store = run(job, prediction)
    assert (done.status, done.error) == (JobStatus.DEAD, EXPIRED)
    logs = anyio.run(store.list_logs, "j1")
    assert [(entry.status, entry.message) for entry in logs] == [(JobStatus.DEAD, EXPIRED)]


def test_stems_are_each_stored_under_their_name(tmp_path: Path) -> None:
    """StemsProcessor stores every audio file of a dict output under its key, whole, and
    logs one completed entry naming them all; the content's one audio stays unset."""
    lengths = {"vocals": 1.0, "drums": 2.0, "bass": 0.5}
    stems = {}
    for name, seconds in lengths.items():
        path = tmp_path / f"{name}.wav"
        synthesize(path, duration=seconds, format="wav")
        stems[name] = data_uri(path)
    stems["cover"] = f"{URL}/cover.png"  # not audio: left alone
    job = Job(id="j1", content_type="stems", content_id="7")
    prediction = {"id": "p1", "status": "succeeded", "output": stems}
    store = MemoryStore()

    async def main() -> Job:
        await store.create_job(job)
        async with Downloader(Settings()) as downloader:
            return await process_webhook_result(
                "stems", "7", prediction, store=store, downloader=downloader, job_id=job.id,
                processors={"stems": StemsProcessor()},
            )  # fmt: skip

    done = anyio.run(main)
    assert done.status is JobStatus.COMPLETED, done.error
    for name, seconds in lengths.items():
        stored = anyio.run(store.get_audio, "stems", "7", name)
        assert stored is not None
        assert (stored.name, stored.job_id) == (name, "j1")
        kept = tmp_path / f"kept-{name}.wav"
        kept.write_bytes(stored.data)
        assert probe(kept, exact=True).duration == pytest.approx(seconds, abs=0.01)
    assert anyio.run(store.get_audio, "stems", "7") is None
    assert anyio.run(store.get_audio, "stems", "7", "cover") is None
    (entry,) = anyio.run(store.list_logs, "j1")
    assert entry.message.startswith("stored 3 files: vocals: 1.00s of wav")
    assert entry.duration == pytest.approx(2.0, abs=0.01)


def test_the_clients_file_outputs_are_files() -> None:
    """What the replicate client returns (FileOutput objects, with a url) flattens like
    the JSON Replicate sends."""
    from replicate import Client
    from replicate.helpers import FileOutput

    client = Client(api_token="r8_unused")  # FileOutput reads through it; never done here

    made = {
        "vocals": FileOutput(f"{URL}/v.wav", client),
        "all": [FileOutput(f"{URL}/a.mp3", client)],
    }
    assert output_files(made) == (
        OutputFile("vocals", f"{URL}/v.wav"),
        OutputFile("all/0", f"{URL}/a.mp3"),
    )
