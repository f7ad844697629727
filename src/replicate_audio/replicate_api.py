"""Reading (and canceling) predictions on Replicate as the JSON it sends, not through a client
model that may lag the API (a status added later, such as ``aborted``, must not break a read)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx

from .config import Settings
from .errors import PredictionError
from .storage._records import as_utc

__all__ = ["CLOCK_SKEW", "PredictionsAPI", "created_at"]

#: How far a prediction's ``created_at`` may be before its job's (the clocks differ).
CLOCK_SKEW = timedelta(seconds=30)


def created_at(prediction: dict[str, Any]) -> datetime | None:
    """A prediction's ``created_at`` as an aware datetime; None when missing or malformed.

    Example:
        >>> created_at({"created_at": "2026-11-24T17:11:02.118Z"}).isoformat()
        '2026-11-24T17:11:02.118000+00:00'
    """
    value = prediction.get("created_at")
    if not isinstance(value, str):
        return None
    try:
        return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


class PredictionsAPI:
    """``GET /v1/predictions/{id}``, the ``GET /v1/predictions`` listing (newest first,
    cursor-paginated) and ``POST /v1/predictions/{id}/cancel``, with the app's token.

    Example:
        >>> async with PredictionsAPI(settings) as reader:  # doctest: +SKIP
        ...     prediction = await reader.get("ufawqhfynnddngldkgtslldrkq")
    """

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None):
        headers = {"Authorization": f"Bearer {settings.api_token or ''}"}
        self._http = httpx.AsyncClient(
            base_url=settings.api_base_url,
            headers=headers,
            timeout=httpx.Timeout(10.0, connect=5.0),
            transport=transport,
            trust_env=False,
        )

    async def __aenter__(self) -> PredictionsAPI:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _json(
        self, url: str, params: dict[str, str] | None = None, *, method: str = "GET"
    ) -> Any:
        try:
            response = await self._http.request(method, url, params=params)
        except httpx.HTTPError as error:
            raise PredictionError(f"could not reach Replicate: {error!r}") from error
        if response.status_code != 200:
            raise PredictionError(
                f"Replicate answered {response.status_code} to {method} {url}: "
                f"{response.text[:200]}",
                status=response.status_code,
            )
        try:
            return response.json()
        except json.JSONDecodeError as error:
            raise PredictionError(f"Replicate's answer to GET {url} is not JSON") from error

    async def get(self, prediction_id: str) -> dict[str, Any]:
        """The prediction, as Replicate's JSON.

        Raises:
            PredictionError: Replicate could not be reached or refused (404 included).
        """
        data = await self._json(f"/v1/predictions/{prediction_id}")
        if not isinstance(data, dict):
            raise PredictionError(f"prediction {prediction_id}: the answer is not an object")
        return data

    async def cancel(self, prediction_id: str) -> dict[str, Any]:
        """Ask Replicate to cancel the prediction; its answer, as JSON.

        Raises:
            PredictionError: Replicate could not be reached or refused.
        """
        data = await self._json(f"/v1/predictions/{prediction_id}/cancel", method="POST")
        if not isinstance(data, dict):
            raise PredictionError(f"prediction {prediction_id}: the answer is not an object")
        return data

    async def webhook_secret(self) -> str:
        """The account's webhook signing secret (``GET /v1/webhooks/default/secret``).

        Raises:
            PredictionError: Replicate could not be reached, or refused (a bad token: 401).
        """
        data = await self._json("/v1/webhooks/default/secret")
        key = data.get("key") if isinstance(data, dict) else None
        if not isinstance(key, str) or not key:
            raise PredictionError("Replicate's answer has no signing secret ('key')")
        return key

    async def recent(
        self, *, max_pages: int = 10, on_page: Callable[[], object] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The account's predictions, newest first, following ``next`` for at most
        *max_pages* pages; stop iterating to stop reading. *on_page* is called for each
        page requested (to count reads)."""
        cursor: str | None = None
        for _ in range(max_pages):
            if on_page is not None:
                on_page()
            # Only the cursor is taken from ``next``: the token goes to the configured API only.
            page = await self._json("/v1/predictions", {"cursor": cursor} if cursor else None)
            results = page.get("results") if isinstance(page, dict) else None
            if not isinstance(results, list):
                raise PredictionError("the prediction listing has no 'results' list")
            for item in results:
                if isinstance(item, dict):
                    yield item
            following = page.get("next")
            if not isinstance(following, str) or not following:
                return
            cursor = httpx.URL(following).params.get("cursor")
            if not cursor:
                return
