"""``protocol/buffers.py``: big payloads as frames of their own, and bad layouts as ``ProtocolError`` only."""

from __future__ import annotations

import contextlib
import os

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.errors import ProtocolError
from scaler.protocol.buffers import OUT_OF_BAND_BYTES, decode_parts, encode_one_part, encode_parts
from scaler.protocol.codec import encode
from scaler.protocol.messages import (
    ArgumentKind,
    ClientHeartbeat,
    GraphNode,
    GraphTask,
    ObjectContent,
    ObjectInstruction,
    ObjectInstructionType,
    ObjectResponse,
    Task,
    TaskArgument,
    TaskResult,
    TaskStatus,
)

BIG = OUT_OF_BAND_BYTES


def _big(seed: int, size: int = BIG) -> bytes:
    return bytes([seed % 256]) * (size - 8) + seed.to_bytes(8, "little")


def _task(*payloads: bytes, objects: bool = True) -> Task:
    arguments = [TaskArgument("", ArgumentKind.INLINE, payload) for payload in payloads]
    contents = [ObjectContent(b"o" * 16, _big(9))] if objects else []
    return Task(b"t" * 16, b"f" * 16, b"function", arguments, 0, objects=contents)


def _messages() -> list:
    return [
        ClientHeartbeat(1.0),
        _task(b"small", _big(1)),
        TaskResult(b"r" * 16, TaskStatus.SUCCESS, _big(2), 0),
        ObjectInstruction(ObjectInstructionType.CREATE, [b"a" * 16, b"b" * 16], [_big(3), b"tiny"]),
        ObjectResponse([b"c" * 16], [_big(4, 3 * BIG)], [True]),
        GraphTask(b"g" * 16, [GraphNode(b"n" * 16, b"f" * 16, _big(5), [TaskArgument("", 0, _big(6))], [])], []),
    ]


def test_big_payloads_travel_beside_the_envelope_and_come_back_identical() -> None:
    messages = _messages()
    originals = [repr(message) for message in messages]
    (parts,) = encode_parts(messages)
    assert len(parts) == 2 + 7  # envelope, layout, seven big payloads
    assert sum(len(part) for part in parts[:2]) < 1024, "no big payload inside the envelope"
    assert [repr(message) for message in messages] == originals, "the messages are given back unchanged"
    decoded = decode_parts(parts)
    assert decoded == messages


def test_payloads_are_not_copied_on_either_side() -> None:
    payload = _big(7, 1 << 20)
    parts = encode_one_part([TaskResult(b"r" * 16, TaskStatus.SUCCESS, payload, 0)])
    assert parts[2] is payload, "the sender hands the payload itself to the socket"
    received = [parts[0], parts[1], memoryview(payload)]
    (result,) = decode_parts(received)
    assert result.payload is received[2], "the receiver keeps the buffer it was given"


def test_small_messages_are_one_frame_as_before() -> None:
    messages = [ClientHeartbeat(1.0), _task(b"x" * (BIG - 1), objects=False)]
    assert encode_parts(messages) == [[encode(messages)]]
    assert decode_parts([encode(messages)]) == messages


def test_a_batch_over_the_limit_is_split_and_a_single_message_over_it_raises() -> None:
    messages = [TaskResult(bytes([i]) * 16, TaskStatus.SUCCESS, _big(i), 0) for i in range(4)]
    split = encode_parts(messages, max_bytes=2 * BIG + 1024)
    assert len(split) == 2
    assert [message for parts in split for message in decode_parts(parts)] == messages
    with pytest.raises(ProtocolError):
        encode_parts(messages[:1], max_bytes=BIG)


def _parts_of_one_result() -> list:
    return encode_one_part([TaskResult(b"r" * 16, TaskStatus.SUCCESS, _big(1), 0)])


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda p: p[:2], id="layout-without-buffers"),
        pytest.param(lambda p: [p[0], p[1], p[2], p[2]], id="more-buffers-than-the-layout-names"),
        pytest.param(lambda p: [p[0], msgpack.packb([5]), p[2]], id="ordinal-past-the-payloads"),
        pytest.param(lambda p: [p[0], msgpack.packb([-1]), p[2]], id="negative-ordinal"),
        pytest.param(lambda p: [p[0], msgpack.packb(["0"]), p[2]], id="ordinal-not-an-int"),
        pytest.param(lambda p: [p[0], msgpack.packb({"a": 0}), p[2]], id="layout-not-an-array"),
        pytest.param(lambda p: [p[0], b"\xc1", p[2]], id="layout-not-msgpack"),
        pytest.param(lambda p: [p[0], msgpack.packb([0]) + b"\x00", p[2]], id="layout-with-extra-bytes"),
        pytest.param(lambda p: [p[0], b"\x00" * (1 << 20), p[2]], id="huge-layout"),
        pytest.param(lambda p: [p[0], p[1], b"short"], id="buffer-under-the-threshold"),
        pytest.param(lambda p: [os.urandom(64), p[1], p[2]], id="bad-envelope"),
        pytest.param(
            lambda p: [encode([TaskResult(b"r" * 16, TaskStatus.SUCCESS, b"inline", 0)]), p[1], p[2]],
            id="slot-not-empty-in-the-envelope",
        ),
        pytest.param(lambda p: [encode([ClientHeartbeat(1.0)]), p[1], p[2]], id="no-payload-slots-at-all"),
    ],
)
def test_a_bad_layout_raises_protocol_error(mangle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProtocolError):
        decode_parts(mangle(_parts_of_one_result()))


def test_a_message_over_the_size_limit_raises_before_decoding() -> None:
    with pytest.raises(ProtocolError):
        decode_parts(_parts_of_one_result(), max_bytes=BIG)


def test_two_ordinals_must_increase() -> None:
    parts = encode_one_part([ObjectInstruction(ObjectInstructionType.CREATE, [b"a", b"b"], [_big(1), _big(2)])])
    with pytest.raises(ProtocolError):
        decode_parts([parts[0], msgpack.packb([1, 0]), parts[2], parts[3]])
    with pytest.raises(ProtocolError):
        decode_parts([parts[0], msgpack.packb([0, 0]), parts[2], parts[3]])


@settings(max_examples=200, deadline=None)
@given(layout=st.binary(max_size=64), count=st.integers(min_value=1, max_value=3))
def test_any_layout_bytes_decode_or_raise_protocol_error(layout: bytes, count: int) -> None:
    parts = encode_one_part([ObjectInstruction(ObjectInstructionType.CREATE, [b"a"] * 3, [_big(i) for i in range(3)])])
    with contextlib.suppress(ProtocolError):
        decode_parts([parts[0], layout, *parts[2 : 2 + count]])
