"""GET /v1/predictions: newest first, 100 a page, cursor links and filters, as Replicate's."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
import replicate
from hypothesis import given, settings
from hypothesis import strategies as st
from replicate.exceptions import ReplicateError

from replicate_audio.errors import ConfigurationError
from replicate_audio.testing import ReplicateSimulator

MODEL = "stability-ai/stable-audio-2.5"
LISTED = {
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
}


def _create(sim: ReplicateSimulator, count: int) -> list[str]:
    """Create *count* predictions; their ids, oldest first."""
    client = sim.client()
    return [client.predictions.create(model=MODEL, input={"n": n}).id for n in range(count)]


def _get(sim: ReplicateSimulator, url: str, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {sim.api_token}"}
    return httpx.get(url, params=params or None, headers=headers)


def _walk(sim: ReplicateSimulator, url: str, key: str = "next") -> Iterator[dict[str, object]]:
    """Every page from *url* on, following *key* (``next`` or ``previous``)."""
    next_url: object = url
    while next_url is not None:
        response = _get(sim, str(next_url))
        assert response.status_code == 200, response.text
        page = response.json()
        yield page
        next_url = page[key]


def _results(page: dict[str, object]) -> list[dict[str, object]]:
    results = page["results"]
    assert isinstance(results, list)
    return results


def _ids(page: dict[str, object]) -> list[str]:
    return [str(result["id"]) for result in _results(page)]


def _stamps(sim: ReplicateSimulator) -> dict[str, str]:
    """Every prediction's created_at, as the list shows it."""
    return {
        str(result["id"]): str(result["created_at"])
        for page in _walk(sim, f"{sim.url}/v1/predictions")
        for result in _results(page)
    }


def test_the_real_client_pages_newest_first_by_the_next_cursor(sim: ReplicateSimulator) -> None:
    """predictions.list() and list(cursor=page.next) walk every prediction once, newest first."""
    sim.page_size = 3
    created = _create(sim, 7)
    client = sim.client()
    first = client.predictions.list()
    assert first.previous is None
    assert first.next is not None
    assert first.next.startswith(f"{sim.url}/v1/predictions?cursor=")
    second = client.predictions.list(cursor=first.next)
    third = client.predictions.list(cursor=second.next)
    assert third.next is None
    seen = [p.id for page in (first, second, third) for p in page]
    assert seen == created[::-1]
    assert [len(page) for page in (first, second, third)] == [3, 3, 1]
    assert client.predictions.list(cursor=second.previous).results == first.results
    assert [p.id for page in replicate.paginate(client.predictions.list) for p in page] == seen


def test_async_list_and_async_paginate_walk_the_same_pages(sim: ReplicateSimulator) -> None:
    """async_list() and replicate.async_paginate() see what the sync client sees."""
    sim.page_size = 2
    created = _create(sim, 5)
    client = sim.client()

    async def main() -> tuple[list[str], list[str]]:
        first = await client.predictions.async_list()
        assert first.next is not None
        second = await client.predictions.async_list(cursor=first.next)
        walked = [
            p.id
            async for page in replicate.async_paginate(client.predictions.async_list)
            for p in page
        ]
        return [p.id for p in (*first, *second)], walked

    two_pages, walked = anyio.run(main)
    assert two_pages == created[::-1][:4]
    assert walked == created[::-1]


def test_a_page_holds_100_predictions_as_on_replicate() -> None:
    """The default page size is Replicate's documented 100."""
    with ReplicateSimulator(run_time=0.05) as sim:
        created = _create(sim, 101)
        client = sim.client()
        first = client.predictions.list()
        assert len(first) == 100
        assert first.next is not None
        last = client.predictions.list(cursor=first.next)
        assert [p.id for p in last] == created[:1]
        assert last.next is None


def test_listed_predictions_show_the_documented_fields(
    sim: ReplicateSimulator,
) -> None:
    """Each result has the fields of the API reference's example (input and output, but no
    logs and no webhook); the cursor is base64 of 'p=<created_at>', as Replicate's are."""
    sim.page_size = 1
    prediction = sim.client().predictions.create(
        model=MODEL, input={"prompt": "rain", "duration": 1}, webhook="http://127.0.0.1:9/hook"
    )
    _create(sim, 1)
    sim.wait_for_prediction(prediction.id)
    page = _get(sim, f"{sim.url}/v1/predictions").json()
    assert set(page) == {"previous", "next", "results"}
    (newest,) = page["results"]
    cursor = parse_qs(urlsplit(page["next"]).query)["cursor"][0]
    decoded = parse_qs(base64.b64decode(cursor).decode("ascii"))
    assert list(decoded) == ["p"]
    page = _get(sim, page["next"]).json()
    (listed,) = page["results"]
    assert set(listed) == LISTED
    assert listed == {
        key: value for key, value in sim.get_prediction(prediction.id).items() if key in LISTED
    }
    assert listed["input"] == {"prompt": "rain", "duration": 1}
    assert str(listed["output"]).endswith(".mp3")
    assert (listed["source"], listed["status"]) == ("api", "succeeded")
    assert newest["created_at"] > listed["created_at"]


def test_cursors_hold_their_place_while_new_predictions_arrive(sim: ReplicateSimulator) -> None:
    """A next cursor points at a place, not an offset: creates after it shift nothing."""
    sim.page_size = 2
    created = _create(sim, 4)
    first = sim.client().predictions.list()
    _create(sim, 3)
    second = sim.client().predictions.list(cursor=first.next)
    assert [p.id for p in second] == created[1::-1]


def test_created_after_and_before_filter_and_hold_across_pages(sim: ReplicateSimulator) -> None:
    """created_after is inclusive, created_before exclusive; next links keep both filters."""
    sim.page_size = 2
    created = _create(sim, 6)
    stamps = _stamps(sim)
    window = {"created_after": stamps[created[1]], "created_before": stamps[created[5]]}
    url = str(httpx.URL(f"{sim.url}/v1/predictions", params=window))
    pages = list(_walk(sim, url))
    assert [_ids(page) for page in pages] == [created[4:2:-1], created[2:0:-1]]
    assert all("created_after=" in str(page["next"]) for page in pages[:-1])
    back = list(_walk(sim, str(pages[-1]["previous"]), key="previous"))
    assert [_ids(page) for page in back] == [created[4:2:-1]]


def test_source_filter_keeps_api_predictions_only(sim: ReplicateSimulator) -> None:
    """source=web (the one value documented) lists none of the simulator's API predictions."""
    created = _create(sim, 2)
    assert _get(sim, f"{sim.url}/v1/predictions", source="web").json()["results"] == []
    assert _ids(_get(sim, f"{sim.url}/v1/predictions", source="api").json()) == created[::-1]


@pytest.mark.parametrize(
    ("params", "status", "detail"),
    [
        ({"created_after": "yesterday"}, 400, "created_after"),
        ({"created_before": "2024-13-01T00:00:00Z"}, 400, "created_before"),
        ({"cursor": "not a cursor!"}, 404, "Invalid cursor"),
        ({"cursor": base64.b64encode(b"p=never").decode()}, 404, "Invalid cursor"),
    ],
)
def test_bad_filters_and_cursors_answer_problem_details(
    sim: ReplicateSimulator, params: dict[str, str], status: int, detail: str
) -> None:
    """A date-time that is not ISO 8601 is a 400, a cursor the simulator did not make a 404."""
    response = _get(sim, f"{sim.url}/v1/predictions", **params)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert detail in response.json()["detail"]


def test_the_list_needs_the_token(sim: ReplicateSimulator) -> None:
    """Like every /v1 route, the list answers 401 without the bearer token."""
    assert httpx.get(f"{sim.url}/v1/predictions").status_code == 401
    with pytest.raises(ReplicateError) as raised:
        replicate.Client(api_token="r8_wrong", base_url=sim.url).predictions.list()
    assert raised.value.status == 401


@pytest.mark.parametrize("page_size", [0, -1, 1.5, True])
def test_page_size_must_be_a_whole_number_from_one(page_size: object) -> None:
    """page_size takes a whole number >= 1, and names itself otherwise."""
    with pytest.raises(ConfigurationError, match="page_size"):
        ReplicateSimulator(page_size=page_size)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def listed() -> Iterator[tuple[ReplicateSimulator, list[str], dict[str, str]]]:
    """One simulator holding 13 predictions: it, their ids oldest first, their created_at."""
    with ReplicateSimulator(run_time=0.05) as sim:
        created = _create(sim, 13)
        yield sim, created, _stamps(sim)


@settings(max_examples=40, deadline=None)
@given(
    page_size=st.integers(1, 15),
    low=st.none() | st.integers(0, 12),
    high=st.none() | st.integers(0, 12),
)
def test_walking_next_then_previous_sees_each_listed_prediction_once(
    listed: tuple[ReplicateSimulator, list[str], dict[str, str]],
    page_size: int,
    low: int | None,
    high: int | None,
) -> None:
    """For any page size and created_after/created_before window, the next links visit each
    prediction in the window exactly once, newest first, and the previous links walk back
    over the same pages."""
    sim, created, stamps = listed
    sim.page_size = page_size
    params = {}
    if low is not None:
        params["created_after"] = stamps[created[low]]
    if high is not None:
        params["created_before"] = stamps[created[high]]
    url = str(httpx.URL(f"{sim.url}/v1/predictions", params=params))
    pages = list(_walk(sim, url))
    assert [i for page in pages for i in _ids(page)] == created[low:high][::-1]
    assert [len(_ids(page)) for page in pages[:-1]] == [page_size] * (len(pages) - 1)
    assert len(_ids(pages[-1])) <= page_size
    assert pages[0]["previous"] is None
    if len(pages) > 1:
        back = list(_walk(sim, str(pages[-1]["previous"]), key="previous"))
        assert [_ids(page) for page in back] == [_ids(page) for page in pages[-2::-1]]
