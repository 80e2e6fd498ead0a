"""The shared transport (``scaler/io/transport.py``) on real loopback sockets.

A ``RouterTransport`` and ``DealerTransport`` talk to each other: batches leave as one frame per
peer, bad frames are yielded as their error and counted, a closed connection names its peer, and
the two timers (``Ticker``, ``Waker``) behave as the shells expect.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from scaler.errors import ProtocolError, ProtocolVersionError
from scaler.io.sockets import free_tcp_address
from scaler.io.transport import DealerTransport, RouterTransport, Ticker, Waker
from scaler.protocol.messages import ClientHeartbeat, Message, TaskCancel

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def router() -> Iterator[RouterTransport]:
    transport = RouterTransport(free_tcp_address(), name="test-router")
    yield transport
    transport.close()


def _address(router: RouterTransport) -> str:
    return router.socket.getsockopt_string(zmq.LAST_ENDPOINT)


def _until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _frames_from(transport: RouterTransport) -> list[tuple[bytes, list[Message] | ProtocolError]]:
    transport.poll(100)
    return list(transport.receive())


def test_a_batch_travels_as_one_frame_each_way(router: RouterTransport) -> None:
    dealer = DealerTransport(_address(router), b"dealer-1", name="test-dealer")
    try:
        batch: list[Message] = [TaskCancel(bytes([i]) * 16) for i in range(50)]
        dealer.send(batch)
        frames = _until(lambda: _frames_from(router), "the dealer's frame")
        assert frames == [(b"dealer-1", batch)]
        router.send_batches({b"dealer-1": [ClientHeartbeat(1.0), ClientHeartbeat(2.0)]})

        def read() -> list[list[Message] | ProtocolError]:
            dealer.poll(100)
            return list(dealer.receive())

        assert _until(read, "the router's frame") == [[ClientHeartbeat(1.0), ClientHeartbeat(2.0)]]
    finally:
        dealer.close()


def test_bad_frames_are_yielded_as_errors_and_counted(router: RouterTransport) -> None:
    context: zmq.Context[Any] = zmq.Context()
    raw = context.socket(zmq.DEALER)
    raw.setsockopt(zmq.IDENTITY, b"raw")
    raw.connect(_address(router))
    try:
        raw.send(os.urandom(64))
        raw.send_multipart([b"one", b"two"])  # a message of the wrong frame count: dropped, not yielded
        frames: list[tuple[bytes, list[Message] | ProtocolError]] = []

        def read() -> bool:
            frames.extend(_frames_from(router))
            return router.bad_frames == 2

        _until(read, "both bad frames")
        assert len(frames) == 1 and frames[0][0] == b"raw"
        assert isinstance(frames[0][1], ProtocolError) and not isinstance(frames[0][1], ProtocolVersionError)
        assert router.statistics() == {"bad_frames": 2}
    finally:
        raw.close(linger=0)
        context.term()


def test_a_closed_connection_names_the_peer_that_spoke_on_it(router: RouterTransport) -> None:
    closed: list[bytes] = []
    heard: list[tuple[bytes, list[Message] | ProtocolError]] = []

    def turn() -> bool:  # as the scheduler's loop does it: the monitor before the frames
        router.poll(100)
        closed.extend(router.closed_peers())
        heard.extend(router.receive())
        return bool(closed or heard)

    dealer = DealerTransport(_address(router), b"leaver", name="test-dealer")
    dealer.send([ClientHeartbeat(1.0)])
    _until(turn, "the leaver's frame")
    assert closed == []
    dealer.close()
    _until(lambda: turn() and closed, "the closed connection")
    assert closed == [b"leaver"]


def test_a_ticker_bounds_the_wait_and_fires_once_per_interval() -> None:
    ticker = Ticker(0.25, first_at=10.0)
    assert ticker.wait_ms(9.5) == 500
    assert not ticker.due(9.99)
    assert ticker.due(10.0)
    assert ticker.wait_ms(10.0) == 250
    assert not ticker.due(10.125)
    assert ticker.due(10.5) and ticker.next_at == 10.75


def test_a_waker_wakes_a_poll_once_per_pending_wake_up() -> None:
    waker = Waker()
    poller = zmq.Poller()
    poller.register(waker.fd, zmq.POLLIN)
    assert poller.poll(0) == []
    for _ in range(8):
        waker.wake()
    assert poller.poll(0) == [(waker.fd, zmq.POLLIN)]
    assert len(os.read(waker.fd, 100)) == 1, "eight wake-ups, one byte: the later ones saw one pending"
    waker.clear()
    assert poller.poll(0) == []
    waker.wake()
    waker.clear()
    assert poller.poll(0) == []
    waker.wake()
    assert poller.poll(0) == [(waker.fd, zmq.POLLIN)]
