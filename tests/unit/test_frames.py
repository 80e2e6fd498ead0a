"""encode_frames splits batches so that no frame exceeds the receiver's limit."""

from __future__ import annotations

import pytest

from scaler.errors import ProtocolError
from scaler.protocol.codec import decode, encode_frames
from scaler.protocol.messages import TaskCancel


def test_a_batch_that_fits_is_one_frame() -> None:
    messages = [TaskCancel(bytes([i]) * 16) for i in range(10)]
    frames = encode_frames(messages)
    assert len(frames) == 1
    assert decode(frames[0]) == messages


def test_a_large_batch_is_split_in_order_under_the_limit() -> None:
    messages = [TaskCancel(bytes([i]) * 100) for i in range(64)]
    frames = encode_frames(messages, max_frame_bytes=1000)
    assert len(frames) > 1
    assert all(len(frame) <= 1000 for frame in frames)
    assert [message for frame in frames for message in decode(frame)] == messages


def test_a_single_message_over_the_limit_raises() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        encode_frames([TaskCancel(b"x" * 2000)], max_frame_bytes=1000)
