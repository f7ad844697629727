"""Made with replicate-audio at schema version 1 (commit 27ef352), for the migration test."""
import pathlib, wave, struct, shutil
from replicate_audio.jobs import Job, JobStatus
from replicate_audio.config import ReplicateAudioConfig
from replicate_audio.storage import SQLiteStore, AudioInfo
out = pathlib.Path("tests/storage/data")
import sys
URL = sys.argv[1] if len(sys.argv) > 1 else None
db = out / "schema-v1.sqlite3"
for p in (() if URL else (db, pathlib.Path(f"{db}.audio"))):
    if p.is_dir(): shutil.rmtree(p)
    elif p.exists(): p.unlink()
from replicate_audio.storage.sqlalchemy import SQLAlchemyStore
store = SQLAlchemyStore(URL, table_prefix="v1fixture_") if URL else SQLiteStore(db)
cfg = ReplicateAudioConfig(model="stability-ai/stable-audio-2.5", input={"prompt": "rain", "duration": 2}, duration=1.0)
store.create_job(Job(id="pendingpredictionid0000001", content_type="sound_effect", content_id="1", config=cfg))
store.create_job(Job(id="runningpredictionid0000002", content_type="sound_effect", content_id="2", config=cfg))
store.record_event("msg_run", "runningpredictionid0000002", {"id": "runningpredictionid0000002", "status": "processing"})
store.create_job(Job(id="donepredictionid0000000003", content_type="background_music", content_id="3", config=cfg))
store.record_event("msg_done", "donepredictionid0000000003", {"id": "donepredictionid0000000003", "status": "succeeded", "output": "https://replicate.delivery/x/out.wav"})
store.claim_job("donepredictionid0000000003", stale_after=300)
wav = pathlib.Path("/tmp/v1.wav")
with wave.open(str(wav), "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
    w.writeframes(struct.pack("<800h", *([1000, -1000] * 400)))
store.save_audio(content_type="background_music", content_id="3", job_id="donepredictionid0000000003", source=wav, info=AudioInfo("wav", 0.1, wav.stat().st_size, 8000, 1))
from replicate_audio.storage import LogEntry
store.log_result(LogEntry(job_id="donepredictionid0000000003", content_type="background_music", content_id="3", status=JobStatus.COMPLETED, message="stored"))
store.transition("donepredictionid0000000003", expected=[JobStatus.PROCESSING], new=JobStatus.COMPLETED)
store.close()
