"""encode_parts splits batches so that no message exceeds the receiver's frame limit."""

from __future__ import annotations

import pytest

from scaler.errors import ProtocolError
from scaler.protocol.buffers import encode_parts
from scaler.protocol.codec import decode
from scaler.protocol.messages import TaskCancel


def frames_of(messages: list[TaskCancel], **limit: int) -> list[bytes]:
    """Small messages travel one frame per multipart message."""
    parts = encode_parts(messages, **limit)
    assert all(len(message) == 1 for message in parts)
    return [message[0] for message in parts]  # type: ignore[misc]


def test_a_batch_that_fits_is_one_frame() -> None:
    messages = [TaskCancel(bytes([i]) * 16) for i in range(10)]
    frames = frames_of(messages)
    assert len(frames) == 1
    assert decode(frames[0]) == messages


def test_a_large_batch_is_split_in_order_under_the_limit() -> None:
    messages = [TaskCancel(bytes([i]) * 100) for i in range(64)]
    frames = frames_of(messages, max_bytes=1000)
    assert len(frames) > 1
    assert all(len(frame) <= 1000 for frame in frames)
    assert [message for frame in frames for message in decode(frame)] == messages


def test_a_single_message_over_the_limit_raises() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        encode_parts([TaskCancel(b"x" * 2000)], max_bytes=1000)
