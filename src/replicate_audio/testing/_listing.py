"""The simulator's ``GET /v1/predictions``: newest first, a page at a time, Replicate's cursors."""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode

from ._predictions import Problem, SimulatedPrediction

#: "It will return 100 records per page." (Replicate's API reference, predictions.list)
PAGE_SIZE = 100
#: The fields the API reference shows for a listed prediction: no ``logs``, no ``webhook``.
LIST_FIELDS = (
    "id",
    "model",
    "version",
    "input",
    "output",
    "error",
    "status",
    "source",
    "data_removed",
    "created_at",
    "started_at",
    "completed_at",
    "urls",
    "metrics",
)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_MICROSECOND = datetime.timedelta(microseconds=1)


def list_page(
    predictions: Iterable[SimulatedPrediction], *, query: str, base_url: str, page_size: int
) -> dict[str, Any]:
    """One page of *predictions* as ``GET /v1/predictions?{query}`` answers it.

    The filters are the documented ``created_after`` (at or after), ``created_before``
    (strictly before) and ``source``; ``next`` and ``previous`` are the same URL with its
    ``cursor`` replaced, so a filter holds from page to page.

    Raises:
        Problem: a filter is not an ISO 8601 date-time (400), or the cursor is not one this
            simulator made (404 ``Invalid cursor``).
    """
    params = parse_qsl(query, keep_blank_values=True)
    values = dict(params)  # the last value of a repeated parameter wins
    after = _moment(values, "created_after")
    before = _moment(values, "created_before")
    source = values.get("source")
    reverse, position = _decode_cursor(values.get("cursor", ""))
    newest_first = sorted(
        (
            p
            for p in predictions
            if (after is None or _micros(p) >= after)
            and (before is None or _micros(p) < before)
            and source in (None, "api")  # every simulated prediction comes from the API
        ),
        key=_micros,
        reverse=True,
    )
    if position is None:
        rows, has_previous = newest_first, False
        page, has_next = rows[:page_size], len(rows) > page_size
    elif not reverse:
        rows = [p for p in newest_first if _micros(p) < position]
        page, has_next, has_previous = rows[:page_size], len(rows) > page_size, True
    else:  # back towards newer predictions: the page just above the cursor
        rows = [p for p in reversed(newest_first) if _micros(p) > position]
        page, has_previous, has_next = rows[:page_size][::-1], len(rows) > page_size, True
    others = [(key, value) for key, value in params if key != "cursor"]

    def link(reverse: bool, at: int | None) -> str:
        cursor = _encode_cursor(reverse=reverse, position=position if at is None else at)
        return f"{base_url}/v1/predictions?{urlencode([*others, ('cursor', cursor)])}"

    return {
        "previous": link(True, _micros(page[0]) if page else None) if has_previous else None,
        "next": link(False, _micros(page[-1]) if page else None) if has_next else None,
        "results": [
            {key: shown[key] for key in LIST_FIELDS}
            for shown in (p.to_json(base_url) for p in page)
        ],
    }


def _micros(prediction: SimulatedPrediction) -> int:
    return round(prediction.created_at * 1_000_000)


def _parse_moment(text: str) -> int:
    """Microseconds since the epoch of an ISO 8601 date-time (UTC when it names no zone)."""
    if text.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not read "Z"
        text = text[:-1] + "+00:00"
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return (moment - _EPOCH) // _MICROSECOND


def _moment(values: dict[str, str], name: str) -> int | None:
    text = values.get(name)
    if text is None:
        return None
    try:
        return _parse_moment(text)
    except ValueError:
        detail = f"{name}: {text!r} is not an ISO 8601 date-time"
        raise Problem(400, "Bad request", detail) from None


def _encode_cursor(*, reverse: bool, position: int | None) -> str:
    """A cursor in the form Replicate's carry: base64 of ``r=1&p=<created_at>``.

    ``p`` is the creation time of the page's edge, written as Python writes a datetime
    (``2023-11-15 05:03:47.203903+00:00``), as in Replicate's own cursors.
    """
    tokens = {"r": "1"} if reverse else {}
    if position is not None:
        tokens["p"] = str(_EPOCH + position * _MICROSECOND)
    return base64.b64encode(urlencode(tokens).encode("ascii")).decode("ascii")


def _decode_cursor(encoded: str) -> tuple[bool, int | None]:
    """``(reverse, position)`` of a cursor; an empty one is the first page."""
    if not encoded:
        return False, None
    try:
        text = base64.b64decode(encoded.encode("ascii"), validate=True).decode("ascii")
        tokens = parse_qs(text, keep_blank_values=True)
        reverse = tokens.get("r", ["0"])[0] == "1"
        position = tokens.get("p", [""])[0]
        return reverse, _parse_moment(position) if position else None
    except (ValueError, binascii.Error):  # UnicodeError is a ValueError
        raise Problem(404, "Not found", "Invalid cursor") from None
