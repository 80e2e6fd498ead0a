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
from scaler.worker.pipe import PipeChannel, _bytearray_view, _bytes_filled_in_place, new_bytes


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
    # Read-only either way: a new ``bytes`` read in place (CPython), or a read-only view of a bytearray.
    for content in received.objects:
        assert type(content.data) is bytes or (isinstance(content.data, memoryview) and content.data.readonly)
    if new_bytes is _bytes_filled_in_place:
        assert all(type(content.data) is bytes for content in received.objects)
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


@pytest.mark.timeout(30)
def test_a_burst_of_small_frames_is_read_at_once_and_every_frame_comes_out(
    ends: tuple[PipeChannel, PipeChannel],
) -> None:
    agent, processor = ends
    beats = [ClientHeartbeat(float(index)) for index in range(2000)]  # far more than one read takes
    big = TaskResult(b"t" * 16, TaskStatus.SUCCESS, os.urandom(3 * OUT_OF_BAND_BYTES), 0)
    for beat in beats[:1000]:
        processor.send((beat,))
    processor.send((big,))  # a big payload in the middle: part of it may already sit in the inbox
    for beat in beats[1000:]:
        processor.send((beat,))
    received = []
    while len(received) < len(beats) + 1:
        assert agent.poll()
        received += agent.receive()
    assert received == [*beats[:1000], big, *beats[1000:]]
    assert not agent.poll()


@pytest.mark.timeout(30)
def test_a_closed_end_reads_as_eof(ends: tuple[PipeChannel, PipeChannel]) -> None:
    agent, processor = ends
    processor.send((ClientHeartbeat(1.0),))
    processor.close()
    assert agent.poll() and agent.receive() == [ClientHeartbeat(1.0)]
    with pytest.raises(EOFError):
        agent.poll()


@pytest.mark.parametrize("make", [_bytes_filled_in_place, _bytearray_view])
@pytest.mark.parametrize("size", [0, 1, 2, 16, OUT_OF_BAND_BYTES + 3])
def test_a_payload_buffer_filled_through_its_view_holds_what_was_written(make, size: int) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(size)
    result, view = make(size)
    view[:] = data
    view.release()
    assert bytes(result) == data
    assert type(result) is bytes or (isinstance(result, memoryview) and result.readonly)
    assert bytes(0) == b"", "the shared empty bytes object is untouched"


def test_payloads_of_many_sizes_leave_nothing_behind() -> None:
    # Each payload size must not leave a cached object behind (a ctypes array type per length did).
    import tracemalloc

    new_bytes(OUT_OF_BAND_BYTES)[1].release()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for size in range(OUT_OF_BAND_BYTES, OUT_OF_BAND_BYTES + 2000):
            created, view = new_bytes(size)
            view.release()
            del created
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes stayed behind after 2,000 payload sizes"
