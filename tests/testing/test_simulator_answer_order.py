"""When webhooks leave relative to the create's answer: only after it."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from recording_receiver import Receiver

from replicate_audio.testing import ReplicateSimulator

MODEL = "stability-ai/stable-audio-2.5"
EVENTS = ["start", "logs", "output", "completed"]


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
    (start, logs, output, completed, in that order) leave only after the answer."""
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
    assert [d.event for d in sim.deliveries] == EVENTS
    assert len(seen) == 4
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
