"""The apps that the HTTP intake benchmark serves in processes of their own: a bare endpoint that
only reads the body, and the library's adapter on a store, for FastAPI and for Flask.

uvicorn --app-dir benchmarks --factory intake_apps:fastapi_app
gunicorn --chdir benchmarks 'intake_apps:flask_app()'

The store and the signing secret come from the environment (``StoreSpec.environ``), so that the
benchmark, which makes the pending jobs (in ``fresh_stores``), and the server, which takes their
deliveries, open the same database.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import attrs
import sqlalchemy as sa

from replicate_audio import Settings
from replicate_audio.app import ReplicateAudio
from replicate_audio.storage import SQLAlchemyStore, SQLiteStore, Store

PREFIX = "/api"
#: Where the bare endpoints listen: the adapters' webhook route, so that routing costs the same.
WEBHOOK_ROUTE = "/replicate-webhook/{content_type}/{content_id}"
READY = "/ready"  # answered once the app has started, for the benchmark to wait on
# The servers use an async driver (asyncpg); the benchmark itself makes jobs with psycopg.
POSTGRES = os.environ.get("BENCHMARK_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@attrs.frozen
class StoreSpec:
    """Which database a store opens: a SQLite file, or a SQLAlchemy URL and a table prefix."""

    url: str
    table_prefix: str = ""

    @property
    def is_sqlite(self) -> bool:
        """True for a SQLite file (``sqlite:///path``)."""
        return self.url.startswith("sqlite:///")

    def open(self, *, blocking_driver: bool = False) -> Store:
        """Open the store (the caller closes it); *blocking_driver* swaps an async
        PostgreSQL driver for psycopg's sync one, for use across several event loops."""
        if self.is_sqlite:
            return SQLiteStore(self.url.removeprefix("sqlite:///"))
        url = sa.engine.make_url(self.url)
        if blocking_driver:
            url = url.set(drivername="postgresql+psycopg")
        return SQLAlchemyStore(
            url.render_as_string(hide_password=False), table_prefix=self.table_prefix
        )

    def environ(self, secret: str) -> dict[str, str]:
        """The environment variables a server reads this spec and *secret* from."""
        return {
            "BENCHMARK_STORE": self.url,
            "BENCHMARK_TABLE_PREFIX": self.table_prefix,
            "BENCHMARK_SECRET": secret,
        }

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> tuple[StoreSpec, str]:
        """The spec and the secret that :meth:`environ` wrote."""
        spec = cls(environ["BENCHMARK_STORE"], environ.get("BENCHMARK_TABLE_PREFIX", ""))
        return spec, environ["BENCHMARK_SECRET"]


@contextmanager
def fresh_stores(
    kinds: Sequence[str], folder: Path, notes: list[str]
) -> Iterator[dict[str, tuple[StoreSpec, Store]]]:
    """Open a fresh store of each kind; PostgreSQL tables get a prefix of their own, dropped
    afterwards. A kind that cannot be opened is left out, with a note."""
    specs, opened = {}, {}
    prefix = f"bench_{secrets.token_hex(4)}_"
    if "sqlite" in kinds:
        specs["sqlite"] = StoreSpec(f"sqlite:///{folder / 'intake.sqlite3'}")
    if "postgres" in kinds:
        specs["postgres"] = StoreSpec(POSTGRES, table_prefix=prefix)
    try:
        for kind, spec in specs.items():
            try:
                opened[kind] = (spec, spec.open(blocking_driver=True))
            except Exception as error:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
                notes.append(f"{kind} skipped: `{spec.url}` could not be opened ({reason}).")
        yield opened
    finally:
        for _, store in opened.values():
            store.close()
        if "postgres" in specs:
            try:
                _drop_tables(POSTGRES, prefix)
            except sa.exc.OperationalError:
                if "postgres" in opened:
                    raise


def _drop_tables(url: str, prefix: str) -> None:
    """Drop every table whose name starts with *prefix*, whatever the store made."""
    engine = sa.create_engine(sa.engine.make_url(url).set(drivername="postgresql+psycopg"))
    query = "SELECT tablename FROM pg_tables WHERE left(tablename, length(:p)) = :p"
    try:
        with engine.begin() as connection:
            for name in connection.execute(sa.text(query), {"p": prefix}).scalars().all():
                connection.execute(sa.text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
    finally:
        engine.dispose()


class NullDispatcher:
    """Takes recorded jobs and drops them: intake is measured, processing is not."""

    @asynccontextmanager
    async def running(self, *_: object) -> AsyncIterator[None]:
        yield

    async def submit(self, *_: object) -> None:
        pass


def _audio() -> ReplicateAudio:
    spec, secret = StoreSpec.from_environ(os.environ)
    settings = Settings(webhook_secrets=(secret,), webhook_prefix=PREFIX)
    return ReplicateAudio(settings, spec.open(), dispatcher=NullDispatcher(), sweep_interval=0)


def bare_starlette() -> Any:
    """A Starlette app whose webhook route reads the body and answers 200, nothing more."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    async def receive(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"received": True})

    async def ready(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ready")

    return Starlette(
        routes=[
            Route(PREFIX + WEBHOOK_ROUTE, receive, methods=["POST"]),
            Route(READY, ready),
        ]
    )


def bare_fastapi() -> Any:
    """A FastAPI app whose router has the webhook route, reading the body and answering 200:
    what FastAPI itself costs, with nothing of the library."""
    from fastapi import APIRouter, FastAPI
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    async def receive(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"received": True})

    router = APIRouter()
    router.add_route(WEBHOOK_ROUTE, receive, methods=["POST"])
    app = FastAPI()
    app.include_router(router, prefix=PREFIX)
    app.get(READY)(lambda: "ready")
    return app


def fastapi_app() -> Any:
    """The FastAPI adapter's router on the store the environment names."""
    from fastapi import FastAPI

    from replicate_audio.adapters.fastapi import create_router

    app = FastAPI()
    app.include_router(create_router(_audio()), prefix=PREFIX)
    app.get(READY)(lambda: "ready")
    return app


def _flask_route() -> str:
    return WEBHOOK_ROUTE.replace("{", "<").replace("}", ">")


def bare_flask() -> Any:
    """A Flask app whose webhook view reads the body and answers 200, nothing more."""
    from flask import Flask, request

    app = Flask("bare")

    @app.post(PREFIX + _flask_route())
    def receive(content_type: str, content_id: str) -> dict[str, bool]:
        request.get_data()
        return {"received": True}

    app.get(READY)(lambda: "ready")
    return app


def flask_app() -> Any:
    """The Flask extension on the store the environment names."""
    from flask import Flask

    from replicate_audio.adapters.flask import init_app

    app = Flask("adapter")
    init_app(app, _audio(), url_prefix=PREFIX)
    app.get(READY)(lambda: "ready")
    return app
