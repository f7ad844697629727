"""How the schema-version-1 test data was made, for the migration test (test_migration.py).

It runs against replicate-audio at schema version 1 (commit 27ef352), not the current code,
from the repository root:

    python tests/storage/data/make_schema_v1.py             # schema-v1.sqlite3 (+ .audio/)
    python tests/storage/data/make_schema_v1.py <PG URL>    # then pg_dump the v1fixture_ tables
                                                            # into schema-v1.postgresql.sql
"""

from __future__ import annotations

import shutil
import struct
import sys
import tempfile
import wave
from pathlib import Path

from replicate_audio.config import ReplicateAudioConfig
from replicate_audio.jobs import Job, JobStatus
from replicate_audio.storage import AudioInfo, LogEntry, SQLiteStore

OUT = Path("tests/storage/data")
DATABASE = OUT / "schema-v1.sqlite3"
CONFIG = ReplicateAudioConfig(
    model="stability-ai/stable-audio-2.5", input={"prompt": "rain", "duration": 2}, duration=1.0
)
PENDING, RUNNING, DONE = (
    "pendingpredictionid0000001",
    "runningpredictionid0000002",
    "donepredictionid0000000003",
)


def open_v1_store(url: str | None):
    """A fresh SQLite file, or SQLAlchemyStore tables prefixed ``v1fixture_`` at *url*."""
    if url is not None:
        from replicate_audio.storage.sqlalchemy import SQLAlchemyStore

        return SQLAlchemyStore(url, table_prefix="v1fixture_")
    for old in (DATABASE, Path(f"{DATABASE}.audio")):
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    return SQLiteStore(DATABASE)


def write_wav(path: Path) -> None:
    """0.1 s of a square wave: mono, 16-bit, 8 kHz."""
    with wave.open(str(path), "wb") as output:
        output.setnchannels(1)
        output.setsampwidth(2)
        output.setframerate(8000)
        output.writeframes(struct.pack("<800h", *([1000, -1000] * 400)))


def main(url: str | None) -> None:
    """One pending job, one running, and one completed with its audio and log entry."""
    store = open_v1_store(url)
    # Version 1: a job's id is its prediction's, and the store methods are blocking.
    store.create_job(Job(id=PENDING, content_type="sound_effect", content_id="1", config=CONFIG))
    store.create_job(Job(id=RUNNING, content_type="sound_effect", content_id="2", config=CONFIG))
    store.record_event("msg_run", RUNNING, {"id": RUNNING, "status": "processing"})
    store.create_job(Job(id=DONE, content_type="background_music", content_id="3", config=CONFIG))
    output = "https://replicate.delivery/x/out.wav"
    store.record_event("msg_done", DONE, {"id": DONE, "status": "succeeded", "output": output})
    store.claim_job(DONE, stale_after=300)
    with tempfile.TemporaryDirectory() as scratch:
        wav = Path(scratch) / "v1.wav"
        write_wav(wav)
        info = AudioInfo("wav", 0.1, wav.stat().st_size, 8000, 1)
        store.save_audio(
            content_type="background_music", content_id="3", job_id=DONE, source=wav, info=info
        )
    store.log_result(
        LogEntry(job_id=DONE, content_type="background_music", content_id="3",
                 status=JobStatus.COMPLETED, message="stored")
    )  # fmt: skip
    store.transition(DONE, expected=[JobStatus.PROCESSING], new=JobStatus.COMPLETED)
    store.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
