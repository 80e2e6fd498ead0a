"""``worker/pipe.py``: batches with big payloads cross the agent-processor pipe identical, bad sizes raise."""

from __future__ import annotations

import collections.abc
import os
from multiprocessing import Pipe

import msgpack
import pytest

from scaler.errors import ProtocolError
from scaler.protocol.buffers import OUT_OF_BAND_BYTES
from scaler.protocol.codec import encode
from scaler.protocol.messages import (
    ClientHeartbeat,
    ObjectContent,
    Task,
    TaskResult,
    TaskStatus,
)
from scaler.worker.pipe import PipeChannel


@pytest.fixture
def ends() -> collections.abc.Iterator[tuple[PipeChannel, PipeChannel]]:
    left, right = Pipe(duplex=True)
    agent, processor = PipeChannel(left), PipeChannel(right)
    yield agent, processor
    agent.close()
    processor.close()


@pytest.mark.timeout(30)
def test_big_payloads_cross_both_ways_identical(ends: tuple[PipeChannel, PipeChannel]) -> None:
    agent, processor = ends
    objects = [ObjectContent(bytes([i]) * 16, os.urandom(OUT_OF_BAND_BYTES + i * 1000)) for i in range(3)]
    task = Task(b"t" * 16, b"f" * 16, b"x" * 10, [], 0, objects=objects)
    agent.send((task,))
    agent.send((ClientHeartbeat(1.0),))  # a small batch after a big one: the stream stays in step
    assert processor.poll()
    (received,) = processor.receive()
    assert received == task
    assert all(isinstance(content.data, memoryview) and content.data.readonly for content in received.objects)
    assert processor.receive() == [ClientHeartbeat(1.0)]
    result = TaskResult(b"t" * 16, TaskStatus.SUCCESS, received.objects[1].data, 0)
    processor.send((result,))
    (back,) = agent.receive()
    assert bytes(back.payload) == bytes(objects[1].data)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "sizes",
    [
        pytest.param(msgpack.packb([]), id="no-sizes"),
        pytest.param(msgpack.packb([10]), id="under-the-out-of-band-size"),
        pytest.param(msgpack.packb([1 << 40]), id="past-the-frame-limit"),
        pytest.param(msgpack.packb([200 << 20, 200 << 20]), id="together-past-the-frame-limit"),
        pytest.param(msgpack.packb(["x"]), id="not-an-int"),
        pytest.param(b"\xc1", id="not-msgpack"),
    ],
)
def test_bad_payload_sizes_raise_protocol_error_before_reading(
    ends: tuple[PipeChannel, PipeChannel], sizes: bytes
) -> None:
    agent, processor = ends
    for frame in (b"", encode([ClientHeartbeat(1.0)]), msgpack.packb([0]), sizes):
        agent.connection.send_bytes(frame)
    with pytest.raises(ProtocolError):
        processor.receive()
