"""The default serializer's out-of-band path: big buffers leave as ``Segments`` without a copy, and come back.

Behaviour only: values round trip (through the wire's encoder and decoder too), big buffers are
the caller's own memory (not copies), writable values stay writable and never alias what was
received, a user's serializer still gets ``bytes``, and hostile segmented layouts raise
``ProtocolError``.
"""

from __future__ import annotations

import contextlib
import pickle
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.client.serializer import DefaultSerializer, Serializer, deserialize_payload
from scaler.errors import ProtocolError
from scaler.protocol.buffers import decode_parts, encode_parts
from scaler.protocol.content_id import content_id
from scaler.protocol.messages import (
    ArgumentKind,
    ObjectContent,
    ObjectInstruction,
    ObjectInstructionType,
    Task,
    TaskArgument,
    TaskResult,
    TaskStatus,
)
from scaler.protocol.segments import OUT_OF_BAND_BYTES, Segments

SERIALIZER = DefaultSerializer()
BIG = OUT_OF_BAND_BYTES


def _numpy() -> Any:
    return pytest.importorskip("numpy")


def _big(seed: int, size: int = 3 * BIG + 5) -> bytes:
    return bytes([seed % 256]) * (size - 8) + seed.to_bytes(8, "little")


def _received(payload: bytes | Segments) -> bytes | Segments:
    """``payload`` as a receiver holds it: read-only views over memory of its own (like zmq frames)."""
    if type(payload) is not Segments:
        return payload
    return Segments(bytes(payload.head), [memoryview(bytes(buffer)).toreadonly() for buffer in payload.buffers])


def _wire(payload: bytes | Segments) -> Any:
    """``payload`` sent as an object's content through the wire's encoder and decoder."""
    message = ObjectInstruction(ObjectInstructionType.CREATE, [b"o" * 16], [payload])  # type: ignore[list-item]
    (parts,) = encode_parts([message])
    received = [bytes(part) for part in parts]  # what the far side owns
    (decoded,) = decode_parts([received[0], received[1], *(memoryview(part) for part in received[2:])])
    return decoded.payloads[0]


def test_small_values_stay_one_plain_pickle() -> None:
    for value in (1, "text", b"small", bytearray(b"small"), [1, 2, 3], {"a": b"x" * 100}, memoryview(b"abc")):
        payload = SERIALIZER.serialize(value)
        assert type(payload) is bytes
        result = SERIALIZER.deserialize(payload)
        assert (result.tobytes() if isinstance(result, memoryview) else result) == (
            value.tobytes() if isinstance(value, memoryview) else value
        )


def test_big_bytes_travel_as_the_callers_own_object_and_come_back_equal() -> None:
    data = _big(1)
    payload = SERIALIZER.serialize(data)
    assert type(payload) is Segments
    assert payload.buffers[0] is data, "no copy on the sending side"
    assert len(payload.head) < 64
    for received in (payload, _received(payload), _wire(payload)):
        result = SERIALIZER.deserialize(received)
        assert type(result) is bytes and result == data
    # A receiver that holds the buffer as ``bytes`` gets that very object: no copy.
    assert SERIALIZER.deserialize(Segments(bytes(payload.head), [data])) is data


def test_big_bytearray_comes_back_writable_and_not_aliasing_the_received_buffer() -> None:
    data = bytearray(_big(2))
    payload = SERIALIZER.serialize(data)
    assert type(payload) is Segments and len(payload.head) < 64
    received = _received(payload)
    result = SERIALIZER.deserialize(received)
    assert type(result) is bytearray and result == data
    result[0] ^= 0xFF
    assert SERIALIZER.deserialize(received) == data, "the received buffer is unchanged"


@pytest.mark.parametrize("writable", [True, False])
def test_big_memoryviews_keep_format_shape_and_writability(writable: bool) -> None:
    numpy = _numpy()
    array = numpy.arange(BIG, dtype=numpy.float64).reshape(-1, 16)
    array.flags.writeable = writable
    view = memoryview(array)
    payload = SERIALIZER.serialize(view)
    assert type(payload) is Segments
    for received in (_received(payload), _wire(payload)):
        result = SERIALIZER.deserialize(received)
        assert type(result) is memoryview
        assert (result.format, result.shape, result.readonly) == (view.format, view.shape, view.readonly)
        assert result.tobytes() == view.tobytes()


def test_a_writable_value_changed_after_serialize_arrives_as_it_was_then() -> None:
    # The client's agent thread sends later: what the task gets (and the content id) must not move.
    numpy = _numpy()
    array = numpy.zeros(BIG, dtype=numpy.uint8)
    data = bytearray(BIG)
    nested = [numpy.zeros(BIG, dtype=numpy.uint8), bytearray(BIG)]
    payloads = [SERIALIZER.serialize(value) for value in (array, data, nested)]
    ids = [content_id(payload) for payload in payloads]
    array += 1
    data[0] = 1
    nested[0] += 1
    nested[1][0] = 1
    assert [content_id(payload) for payload in payloads] == ids
    back_array, back_data, back_nested = (SERIALIZER.deserialize(_received(payload)) for payload in payloads)
    assert not back_array.any() and not any(back_data)
    assert not back_nested[0].any() and not any(back_nested[1])


def test_a_strided_memoryview_pickles_in_band() -> None:
    data = _big(3)
    view = memoryview(data)[::2]
    result = SERIALIZER.deserialize(SERIALIZER.serialize(view))
    assert result.tobytes() == view.tobytes()


@pytest.mark.parametrize("writable", [True, False])
def test_big_numpy_arrays_round_trip_out_of_band_and_writable_as_they_were(writable: bool) -> None:
    numpy = _numpy()
    array = numpy.random.default_rng(1).standard_normal((300, 200))
    array.flags.writeable = writable
    payload = SERIALIZER.serialize(array)
    assert type(payload) is Segments and len(payload.head) < 1024
    # A read-only array is sent from its own memory; a writable one from a snapshot (see below).
    shares = numpy.shares_memory(numpy.frombuffer(payload.buffers[0], dtype=array.dtype), array)
    assert shares is not writable
    received = _received(payload)
    result = SERIALIZER.deserialize(received)
    assert result.dtype == array.dtype and result.shape == array.shape and (result == array).all()
    assert result.flags.writeable == writable
    if writable:
        result += 1  # a task may change its argument; the buffer it came in stays as it was
        assert (SERIALIZER.deserialize(received) == array).all()


def test_nested_objects_with_several_buffers_round_trip() -> None:
    numpy = _numpy()
    value = {
        "bytes": _big(4),
        "list": [_big(5), bytearray(_big(6)), numpy.ones((200, 300)), 7],
        "tuple": (numpy.arange(BIG, dtype=numpy.int32), "text"),
        "small": b"tiny",
    }
    payload = SERIALIZER.serialize(value)
    assert type(payload) is Segments
    assert len(payload.buffers) == 5
    assert len(payload.head) < 4096, "every big buffer is out of the pickle"
    for received in (_received(payload), _wire(payload)):
        result = SERIALIZER.deserialize(received)
        assert result["bytes"] == value["bytes"] and result["small"] == b"tiny"
        assert result["list"][0] == value["list"][0] and result["list"][1] == value["list"][1]
        assert (result["list"][2] == 1).all() and result["list"][3] == 7
        assert (result["tuple"][0] == value["tuple"][0]).all() and result["tuple"][1] == "text"


def test_segments_travel_in_results_and_task_objects_and_keep_their_content_id() -> None:
    payload = SERIALIZER.serialize((_big(7), _big(8)))
    assert type(payload) is Segments
    task = Task(b"t" * 16, b"f" * 16, b"", [TaskArgument("", ArgumentKind.OBJECT, b"o" * 16)], 0)
    task.objects = [ObjectContent(b"o" * 16, payload)]  # type: ignore[arg-type]
    result = TaskResult(b"r" * 16, TaskStatus.SUCCESS, payload, 0)  # type: ignore[arg-type]
    (parts,) = encode_parts([task, result])
    assert sum(len(part) for part in parts[:2]) < 1024, "the buffers are frames of their own"
    decoded_task, decoded_result = decode_parts(parts)
    for received in (decoded_task.objects[0].data, decoded_result.payload):
        assert type(received) is Segments
        assert content_id(received) == content_id(payload)
        assert SERIALIZER.deserialize(received) == (_big(7), _big(8))


def test_content_ids_tell_segments_apart_from_plain_bytes_and_other_splits() -> None:
    head, rest = b"h" * 10, b"x" * BIG
    ids = {
        content_id(Segments(head, [rest])),
        content_id(Segments(head + rest[:1], [rest[1:]])),
        content_id(head + rest),
    }
    assert len(ids) == 3


class _BytesSerializer(Serializer):
    """A user serializer written for ``bytes``."""

    def serialize(self, obj: Any) -> bytes:
        return b"U" + pickle.dumps(obj)

    def deserialize(self, payload: bytes) -> Any:
        assert type(payload) is bytes
        return pickle.loads(payload[1:])


def test_a_user_serializer_still_makes_and_gets_plain_bytes() -> None:
    serializer = _BytesSerializer()
    payload = serializer.serialize(_big(9))
    assert type(payload) is bytes
    assert deserialize_payload(serializer, _wire(payload)) == _big(9)


def test_a_head_that_does_not_match_its_buffers_raises_an_unpickling_error() -> None:
    payload = SERIALIZER.serialize(_big(10))
    assert type(payload) is Segments
    with pytest.raises(pickle.UnpicklingError):
        SERIALIZER.deserialize(Segments(b"", payload.buffers))
    with pytest.raises(pickle.UnpicklingError):
        SERIALIZER.deserialize(Segments(b"?" + bytes(payload.head[1:]), payload.buffers))


def _segmented_parts() -> list[Any]:
    payload = SERIALIZER.serialize((_big(11), _big(12)))
    (parts,) = encode_parts([TaskResult(b"r" * 16, TaskStatus.SUCCESS, payload, 0)])  # type: ignore[arg-type]
    assert msgpack.unpackb(parts[1]) == [[0, 2]]
    return [bytes(part) for part in parts]


@pytest.mark.parametrize(
    "layout",
    [
        pytest.param([[0, 0]], id="no-buffers"),
        pytest.param([[0, -1]], id="negative-count"),
        pytest.param([[0, 3]], id="more-buffers-than-sent"),
        pytest.param([[0, 1]], id="fewer-buffers-than-sent"),
        pytest.param([[0]], id="entry-too-short"),
        pytest.param([[0, 2, 0]], id="entry-too-long"),
        pytest.param([["0", 2]], id="ordinal-not-an-int"),
        pytest.param([[0, "2"]], id="count-not-an-int"),
        pytest.param([[1, 2]], id="slot-the-message-lacks"),
        pytest.param([[-1, 2]], id="negative-ordinal"),
        pytest.param([0, [0, 1]], id="ordinal-repeated"),
        pytest.param([], id="empty"),
    ],
)
def test_hostile_segmented_layouts_raise_protocol_error(layout: list[Any]) -> None:
    parts = _segmented_parts()
    with pytest.raises(ProtocolError):
        decode_parts([parts[0], msgpack.packb(layout), *parts[2:]])


def test_a_segmented_slot_whose_head_is_not_bytes_raises_protocol_error() -> None:
    parts = _segmented_parts()
    # A TaskResult whose payload slot holds a str where the head should be.
    envelope = msgpack.unpackb(parts[0], raw=False)
    envelope[1][3] = "not bytes"
    with pytest.raises(ProtocolError):
        decode_parts([msgpack.packb(envelope, use_bin_type=True), *parts[1:]])


def test_a_buffer_under_the_out_of_band_size_raises_protocol_error() -> None:
    parts = _segmented_parts()
    with pytest.raises(ProtocolError):
        decode_parts([parts[0], parts[1], parts[2], b"short"])


@settings(max_examples=200, deadline=None)
@given(layout=st.recursive(st.integers(-2, 3), lambda inner: st.lists(inner, max_size=3), max_leaves=6))
def test_any_layout_decodes_or_raises_protocol_error(layout: Any) -> None:
    parts = _segmented_parts()
    with contextlib.suppress(ProtocolError):
        decode_parts([parts[0], msgpack.packb(layout), *parts[2:]])
