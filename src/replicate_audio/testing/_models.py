"""The simulator's models, versions and deployments as Replicate's API shows them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._predictions import NOT_FOUND, Problem
from .faults import ModelSpec

#: The cog version the simulated versions say they were built with.
COG_VERSION = "0.9.4"
#: When every simulated version was "pushed".
VERSION_CREATED_AT = "2024-01-01T00:00:00.000000Z"

_FILE: dict[str, Any] = {"type": "string", "format": "uri"}


def output_schema(spec: ModelSpec) -> dict[str, Any]:
    """The ``Output`` schema of *spec*: a file, a list of files, or named files."""
    if spec.output_as_list:
        # No "x-cog-array-type": "iterator": replicate.run returns the list, not a generator.
        return {"type": "array", "items": dict(_FILE), "title": "Output"}
    return {**_FILE, "title": "Output"}


def openapi_schema(spec: ModelSpec) -> dict[str, Any]:
    """A cog-style OpenAPI document for *spec* (the parts clients read: Input and Output)."""
    properties = {
        "prompt": {"type": "string", "title": "Prompt", "x-order": 0},
        "duration": {"type": "number", "title": "Duration", "x-order": 1},
        "output_format": {
            "type": "string",
            "enum": ["mp3", "wav"],
            "title": "Output Format",
            "default": spec.output_format,
            "x-order": 2,
        },
    }
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {},
        "components": {
            "schemas": {
                "Input": {"type": "object", "title": "Input", "properties": properties},
                "Output": output_schema(spec),
            }
        },
    }


def version_json(spec: ModelSpec) -> dict[str, Any]:
    """A version object (``GET /v1/models/{owner}/{name}/versions/{id}``)."""
    return {
        "id": spec.version,
        "created_at": VERSION_CREATED_AT,
        "cog_version": COG_VERSION,
        "openapi_schema": openapi_schema(spec),
    }


def model_json(spec: ModelSpec, *, run_count: int) -> dict[str, Any]:
    """A model object (``GET /v1/models/{owner}/{name}``), its latest version included."""
    owner, _, name = spec.name.partition("/")
    return {
        "url": f"https://replicate.com/{spec.name}",
        "owner": owner,
        "name": name,
        "description": f"{spec.name}, as simulated by replicate-audio",
        "visibility": "public",
        "github_url": None,
        "paper_url": None,
        "license_url": None,
        "run_count": run_count,
        "cover_image_url": None,
        "default_example": None,
        "latest_version": version_json(spec) if spec.version else None,
    }


def find_model(models: Mapping[str, ModelSpec], name: str) -> ModelSpec:
    """The model called *name*, or a 404 problem."""
    spec = models.get(name)
    if spec is None:
        raise Problem(404, *NOT_FOUND)
    return spec


def versions_page(spec: ModelSpec) -> dict[str, Any]:
    """``GET /v1/models/{owner}/{name}/versions``: one page, newest first (one version here)."""
    results = [version_json(spec)] if spec.version else []
    return {"next": None, "previous": None, "results": results}


def find_version(spec: ModelSpec, version_id: str) -> dict[str, Any]:
    """The version *version_id* of *spec*, or a 404 problem."""
    if spec.version is None or spec.version != version_id:
        raise Problem(404, *NOT_FOUND)
    return version_json(spec)
