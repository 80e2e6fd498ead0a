"""A raw zmq peer that sends garbage must not disturb the scheduler or other clients."""

from __future__ import annotations

import os

import msgpack
import pytest
import zmq

from scaler import Client, DisconnectedError, SchedulerClusterCombo
from scaler.protocol import codec
from scaler.protocol.codec import encode_one
from scaler.protocol.messages import ClientHeartbeat
from scaler.protocol.version import PROTOCOL_VERSION
from tests.integration import tasks


def test_garbage_frames_are_dropped_and_everyone_else_is_served(combo: SchedulerClusterCombo, client: Client) -> None:
    running = [client.submit(tasks.sleep_return, 0.5, i) for i in range(4)]
    context = zmq.Context()
    raw = context.socket(zmq.DEALER)
    raw.connect(combo.get_address())
    valid = encode_one(ClientHeartbeat(1.0))
    frames = (
        [
            b"",
            b"\xc1",
            os.urandom(64),
            os.urandom(4096),
            msgpack.packb([PROTOCOL_VERSION + 1, [5, 1.0]]),
            msgpack.packb([PROTOCOL_VERSION, [999]]),
            msgpack.packb([PROTOCOL_VERSION, [1, "not bytes"]]),
            msgpack.packb({"a": 1}),
            b"\xdd\xff\xff\xff\xff",  # an array claiming 4 billion items
            b"\x91" * 100_000,  # nesting far deeper than any message
        ]
        + [valid[:cut] for cut in range(1, len(valid))]
    )
    for frame in frames:
        raw.send(frame)
    raw.send_multipart([b"two", b"parts"])
    raw.close(linger=1000)
    context.term()
    assert [future.result(timeout=30) for future in running] == [0, 1, 2, 3]
    with Client(address=combo.get_address(), timeout_seconds=10) as fresh:
        assert fresh.submit(round, 3.14).result(timeout=5) == 3


def test_a_client_of_another_protocol_version_gets_an_error_naming_both(
    combo: SchedulerClusterCombo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codec, "PROTOCOL_VERSION", PROTOCOL_VERSION + 98)
    with pytest.raises(DisconnectedError) as caught:
        Client(address=combo.get_address(), timeout_seconds=5)
    assert f"version {PROTOCOL_VERSION}" in str(caught.value)
    assert f"version {PROTOCOL_VERSION + 98}" in str(caught.value)
