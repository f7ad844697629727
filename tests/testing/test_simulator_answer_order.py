"""When webhooks leave relative to the create's answer: after it, or before it (early_webhooks)."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from recording_receiver import Received, Receiver

from replicate_audio.testing import Faults, ReplicateSimulator

MODEL = "stability-ai/stable-audio-2.5"
EVENTS = ["start", "logs", "output", "completed"]
# What those four give for a run this short: its logs fall within 500 ms of the start
# webhook (throttled), and a single file comes with completed (no output event).
SENT = ["start", "completed"]


@contextmanager
def connected(sim: ReplicateSimulator) -> Iterator[socket.socket]:
    """A bare socket to the simulator, for creates whose answer the test reads itself."""
    host, port = sim.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        yield sock


def send_create(sim: ReplicateSimulator, sock: socket.socket, body: dict[str, object]) -> None:
    """Send a create on *sock*, leaving its answer unread."""
    payload = json.dumps(body).encode()
    head = (
        f"POST /v1/models/{MODEL}/predictions HTTP/1.1\r\n"
        f"Host: {sim.url.removeprefix('http://')}\r\n"
        f"Authorization: Bearer {sim.api_token}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    sock.sendall(head.encode() + payload)


def waiting_answer(sock: socket.socket) -> bytes | None:
    """The whole answer if it is waiting in *sock* now, ``None`` if none of it is there yet.

    On loopback the bytes the server has written are in the client's socket at once, so
    this says whether the simulator had written its answer by the moment it is called.
    """
    # select, not MSG_DONTWAIT: a socket with a timeout waits inside recv whatever the flags.
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return None
    data = sock.recv(1 << 20, socket.MSG_PEEK)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    assert len(body) == length, "only part of the answer had been written"
    return data


def read_answer(sock: socket.socket) -> tuple[int, dict[str, object]]:
    """Read the create's answer off *sock*: its status and JSON body."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        data += sock.recv(1 << 16) or b"!"  # "!": the simulator closed the connection
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    rest = bytearray(body)
    while len(rest) < length:
        chunk = sock.recv(1 << 20)
        assert chunk, "the simulator closed the connection"
        rest += chunk
    return int(head.split(b" ", 2)[1]), json.loads(bytes(rest))


def test_every_webhook_leaves_after_the_create_has_answered(
    sim: ReplicateSimulator, receiver: Receiver
) -> None:
    """Even when the prediction finishes before its create has answered, its webhooks
    (start, then completed, in that order) leave only after the answer."""
    sim.add_model(MODEL, run_time=0.001)  # likely to end before its create has answered
    body = {"input": {"duration": 1}, "webhook": f"{receiver.url}/hook"}
    with connected(sim) as sock:
        seen: list[bytes | None] = []
        receiver.on_post = lambda received: seen.append(waiting_answer(sock))
        send_create(sim, sock, {**body, "webhook_events_filter": EVENTS})
        sim.wait_until(lambda: sim.creates)  # booked: its webhooks are queued
        sim.wait_idle()  # and all sent, the answer still unread
        status, answer = read_answer(sock)
    assert (status, answer["status"]) == (201, "starting")
    assert [d.event for d in sim.deliveries] == SENT
    assert len(seen) == 2
    assert None not in seen  # the whole answer was written before each one arrived


def test_no_webhook_leaves_while_the_create_is_still_answering(
    sim: ReplicateSimulator, receiver: Receiver
) -> None:
    """While a create's answer is still being written (its client has not read it), its
    start webhook waits, though a later prediction has run and sent its completed webhook;
    the start follows the answer."""
    big = "x" * (8 << 20)  # echoed in the answer: more than the two sockets can buffer
    with connected(sim) as sock:
        send_create(
            sim,
            sock,
            {
                "input": {"duration": 1, "prompt": big},
                "webhook": f"{receiver.url}/unanswered",
                "webhook_events_filter": ["start"],
            },
        )
        sim.wait_until(lambda: sim.creates)  # booked, its start queued; answer being written
        sim.client().predictions.create(
            model=MODEL,
            input={"duration": 1},
            webhook=f"{receiver.url}/answered",
            webhook_events_filter=["completed"],  # a whole run time after the first create
        )
        sim.wait_until(receiver.snapshot)
        assert [r.path for r in receiver.snapshot()] == ["/answered"]
        status, answer = read_answer(sock)
    assert (status, answer["status"]) == (201, "starting")
    sim.wait_until(lambda: len(receiver.snapshot()) == 2)
    assert [r.path for r in receiver.snapshot()] == ["/answered", "/unanswered"]


def test_early_webhooks_arrive_before_the_create_answers(
    sim: ReplicateSimulator, receiver: Receiver
) -> None:
    """early_webhooks: start..completed arrive, the output already downloadable, while the
    create has not answered; then it answers 'starting', and GET shows 'succeeded'."""
    sim.queue_faults(Faults(early_webhooks=True))
    downloads: list[int] = []
    body = {"input": {"duration": 1}, "webhook": f"{receiver.url}/hook"}
    with connected(sim) as sock:
        seen: list[bytes | None] = []

        def on_post(received: Received) -> None:
            seen.append(waiting_answer(sock))
            prediction = json.loads(received.body)
            if prediction["status"] == "succeeded":
                downloads.append(httpx.get(prediction["output"]).status_code)

        receiver.on_post = on_post
        send_create(sim, sock, {**body, "webhook_events_filter": EVENTS})
        status, answer = read_answer(sock)
    assert [d.event for d in sim.deliveries] == SENT  # all attempted before the answer
    assert seen == [None] * 2  # not a byte of the answer had been written
    assert downloads == [200]
    assert (status, answer["status"]) == (201, "starting")
    assert sim.get_prediction(str(answer["id"]))["status"] == "succeeded"


def test_early_completed_webhook_that_fails_is_retried_after_the_answer(
    sim: ReplicateSimulator, receiver: Receiver
) -> None:
    """The create answers once the first attempt of 'completed' has failed; the retries
    follow as usual. Through the real client: it hears 'starting' after 'succeeded' was sent."""
    sim.queue_faults(Faults(early_webhooks=True))
    receiver.statuses = [500]
    prediction = sim.client().predictions.create(
        model=MODEL,
        input={"duration": 1},
        webhook=f"{receiver.url}/hook",
        webhook_events_filter=["completed"],
    )
    assert prediction.status == "starting"
    first = receiver.snapshot()[0]  # already there when the create returned
    assert json.loads(first.body)["status"] == "succeeded"
    sim.wait_idle()
    assert [(d.attempt, d.status_code) for d in sim.deliveries] == [(1, 500), (2, 200)]


@pytest.mark.parametrize(
    ("faults", "status"),
    [
        (Faults(early_webhooks=True), "succeeded"),
        (Faults(early_webhooks=True, fail_with="CUDA out of memory"), "failed"),
    ],
)
def test_early_webhooks_without_a_webhook_still_finish_before_the_answer(
    sim: ReplicateSimulator, faults: Faults, status: str
) -> None:
    """With no webhook to send, the prediction has still finished when the create returns."""
    sim.queue_faults(faults)
    prediction = sim.client().predictions.create(model=MODEL, input={"duration": 1})
    assert prediction.status == "starting"
    assert sim.get_prediction(prediction.id)["status"] == status


def test_early_webhooks_wait_out_a_dropped_or_filtered_completed(
    sim: ReplicateSimulator, receiver: Receiver
) -> None:
    """A completed webhook that will never be sent (dropped, or filtered out) does not hold
    the create's answer."""
    client = sim.client()
    sim.queue_faults(Faults(early_webhooks=True, drop_ratio=1.0))
    dropped = client.predictions.create(
        model=MODEL, input={"duration": 1}, webhook=f"{receiver.url}/hook"
    )
    sim.queue_faults(Faults(early_webhooks=True))
    filtered = client.predictions.create(
        model=MODEL,
        input={"duration": 1},
        webhook=f"{receiver.url}/hook",
        webhook_events_filter=["start"],
    )
    for prediction in (dropped, filtered):
        assert sim.get_prediction(prediction.id)["status"] == "succeeded"
    sim.wait_idle()
    assert [json.loads(r.body)["status"] for r in receiver.snapshot()] == ["starting"]
