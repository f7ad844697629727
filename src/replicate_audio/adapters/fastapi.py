"""FastAPI integration: one ``APIRouter`` with the webhook and job routes, and a lifespan.

app = FastAPI()
app.include_router(create_router(audio), prefix="/api")
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

try:
    from fastapi import APIRouter, Depends, FastAPI, Request
    from fastapi.responses import Response
    from pydantic import BaseModel
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "replicate_audio.adapters.fastapi needs FastAPI: install replicate-audio[fastapi]"
    ) from error

from ..app import ReplicateAudio, WebhookOutcome
from ..config import JOB_ROUTE, WEBHOOK_ROUTE
from ..errors import JobNotFoundError, ReadRoutesNotMounted, StorageError
from ..intake import UNAVAILABLE
from ..jobs import PREDICTION_STATUSES

__all__ = ["AudioDep", "ReadRoutesNotMounted", "create_router", "get_audio"]


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str


class WebhookAccepted(BaseModel):
    """A delivery was recorded (or was a duplicate of one that was)."""

    job: str
    prediction: str
    status: str
    duplicate: bool


class AudioOut(BaseModel):
    """The stored audio of a completed job."""

    format: str
    duration: float
    size: int


class JobOut(BaseModel):
    """A job as the jobs route shows it; ``config`` (the prompt and input) only to an
    authorized caller."""

    id: str
    prediction_id: str | None
    content_type: str
    content_id: str
    status: str
    attempts: int
    error: str | None
    config: dict[str, Any] | None = None
    created_at: str
    updated_at: str
    audio: AudioOut | None = None


_PREDICTION_BODY = {
    "required": True,
    "description": "The prediction, exactly as Replicate signed it (Standard Webhooks).",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["id", "status"],
                "properties": {
                    "id": {"type": "string"},
                    "status": {
                        "type": "string",
                        "enum": sorted(PREDICTION_STATUSES),
                    },
                    "output": {},
                    "error": {"type": ["string", "null"]},
                },
            }
        }
    },
}


def _parameter(name: str, where: str, description: str) -> dict[str, Any]:
    required = where == "path"
    schema = {"type": "string"}
    return {"name": name, "in": where, "required": required, "schema": schema,
            "description": description}  # fmt: skip


_WEBHOOK_PARAMETERS = [
    _parameter("content_type", "path", "A content type this app serves."),
    _parameter("content_id", "path", "The id of the row the audio belongs to."),
    _parameter("job", "query", "The job's id, as the library put it in the webhook URL."),
]


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The raw body, or None once it is larger than *limit* (checked before parsing)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def get_audio(request: Request) -> ReplicateAudio:
    """The app's :class:`ReplicateAudio`, as a dependency."""
    audio: ReplicateAudio = request.app.state.replicate_audio
    return audio


#: ``audio: AudioDep`` in a route's parameters gives the app's ReplicateAudio.
AudioDep = Annotated[ReplicateAudio, Depends(get_audio)]


def _answer(outcome: WebhookOutcome) -> Response:
    # json.dumps with its defaults reuses one encoder; JSONResponse builds one per answer.
    body = json.dumps(outcome.body).encode()
    return Response(body, status_code=outcome.status_code, media_type="application/json")


def create_router(
    audio: ReplicateAudio,
    *,
    authorize: Callable[..., Any] | None = None,
    public: bool = False,
) -> APIRouter:
    """The routes, and a lifespan that starts and stops *audio* with the app.

    ``POST /replicate-webhook/{content_type}/{content_id}?job={job_id}`` takes Replicate's
    deliveries (open to all: its signature is its auth). ``GET /replicate-audio/jobs/{job_id}``
    shows a job (by job or prediction id), and is mounted only behind *authorize* or with
    *public*: without either a warning says how to mount it.

    Args:
        audio: the app's facade.
        authorize: a FastAPI dependency (``Depends``-able callable) guarding the read routes:
            it raises (``HTTPException(401)``, say) to refuse. An authorized caller sees the
            whole job, its config (prompt and input) included.
        public: mount the read routes for anyone; they leave out the config and mask URLs
            in errors.

    Example:
        >>> from replicate_audio.storage import MemoryStore
        >>> router = create_router(ReplicateAudio(store=MemoryStore()), public=True)
        >>> [route.path for route in router.routes][-1]
        '/replicate-audio/jobs/{job_id}'
    """

    running = False

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The router may be included more than once (at an old and a new prefix, say):
        # each inclusion brings this lifespan, but the facade starts once.
        nonlocal running
        app.state.replicate_audio = audio
        if running:
            yield
            return
        running = True
        try:
            async with audio:
                yield
        finally:
            running = False

    router = APIRouter(lifespan=lifespan, tags=["replicate-audio"])
    refusals: dict[int | str, dict[str, Any]] = {
        code: {"model": Problem, "description": text}
        for code, text in {
            400: "The body is not JSON, or not a prediction.",
            401: "Missing or invalid signature, or a stale timestamp.",
            404: "Unknown content type, or no job matches.",
            413: "The body is too large.",
            503: "Storage is down; Replicate will retry.",
        }.items()
    }

    async def replicate_webhook(request: Request) -> Response:
        content_type = request.path_params["content_type"]
        content_id = request.path_params["content_id"]
        body = await _read_body(request, audio.settings.max_webhook_bytes)
        if body is None:
            return _answer(audio.oversized_webhook(content_type))
        outcome = await audio.handle_webhook(
            content_type, content_id, request.headers, body, job_id=request.query_params.get("job")
        )
        return _answer(outcome)

    # The webhook is served by a plain Starlette route: FastAPI's per-request machinery
    # (parameter solving, its exit stack) cost a third of the intake's time under load.
    # The APIRoute after it has the same path and method, so it is never reached: it is
    # there to document the route in the OpenAPI schema.
    router.add_route(WEBHOOK_ROUTE, replicate_webhook, methods=["POST"], include_in_schema=False)

    @router.post(
        WEBHOOK_ROUTE,
        response_model=WebhookAccepted,
        responses=refusals,
        openapi_extra={"requestBody": _PREDICTION_BODY, "parameters": _WEBHOOK_PARAMETERS},
        summary="Receive a Replicate webhook",
        operation_id="replicate_webhook",
    )
    async def replicate_webhook_documented(request: Request) -> Response:  # pragma: no cover
        return await replicate_webhook(request)

    if authorize is None and not public:
        warnings.warn(
            "the replicate-audio read routes (GET .../replicate-audio/jobs/{job_id}) are not "
            "mounted: pass create_router(audio, authorize=your_dependency) to serve them to "
            "your users, or public=True to serve them to anyone",
            ReadRoutesNotMounted,
            stacklevel=2,
        )
        return router
    full = authorize is not None
    guard = [Depends(authorize)] if authorize is not None else []

    @router.get(
        JOB_ROUTE,
        response_model=JobOut,
        responses={404: {"model": Problem, "description": "No job has this id."}},
        summary="Show a job",
        dependencies=guard,
    )
    async def replicate_audio_job(job_id: str) -> Any:
        try:
            return await audio.job_view(await audio.get_job(job_id), full=full)
        except JobNotFoundError as error:
            return _answer(WebhookOutcome.refuse(404, str(error)))
        except StorageError:
            return _answer(WebhookOutcome.refuse(503, UNAVAILABLE))

    return router
