"""StatusFeed against a plain PUB socket: what it decodes, what it skips, and how it tells silence."""

from __future__ import annotations

import time

import pytest
import zmq

from scaler.monitor.feed import StatusFeed, monitor_address_for
from scaler.protocol.codec import encode
from scaler.protocol.messages import ClientHeartbeat, StatusEvents

pytestmark = pytest.mark.timeout(30)


def test_monitor_address_is_the_scheduler_port_plus_two() -> None:
    assert monitor_address_for("tcp://127.0.0.1:8516") == "tcp://127.0.0.1:8518"
    with pytest.raises(ValueError, match="give the monitor address"):
        monitor_address_for("ipc:///tmp/scheduler")


def test_feed_decodes_status_messages_and_skips_the_rest() -> None:
    context: zmq.Context = zmq.Context()
    publisher = context.socket(zmq.PUB)
    port = publisher.bind_to_random_port("tcp://127.0.0.1")
    feed = StatusFeed(f"tcp://127.0.0.1:{port}", context=context)
    try:
        events = StatusEvents(1.0, 2.0, [], [], 0)
        received: list[object] = []
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:  # a SUB misses what is sent before it joins
            publisher.send(b"\xc1 not msgpack")
            publisher.send(encode([ClientHeartbeat(1.0), events]))
            received = feed.receive(0.05)
        assert received and all(message == events for message in received)
        assert feed.heard_any and feed.silent_for() < 5
    finally:
        feed.close()
        publisher.close(linger=0)
        context.term()
