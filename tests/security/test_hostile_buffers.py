"""Out-of-band frames at a real scheduler: a bad layout is dropped like any bad frame, a good one served.

Big payloads travel as frames after the msgpack envelope (``protocol/buffers.py``). A hostile
peer controls those frames too: a layout that names slots the messages lack, buffers that do
not match it, or a slot filled twice must never reach the scheduler's state, nor stop it
serving everyone else.
"""

from __future__ import annotations

import msgpack
import pytest

from scaler.protocol.buffers import OUT_OF_BAND_BYTES, encode_one_part
from scaler.protocol.codec import encode
from scaler.protocol.content_id import content_id
from scaler.protocol.messages import (
    ObjectInstruction,
    ObjectInstructionType,
    ObjectRequest,
    ObjectResponse,
)
from tests.security.hostile_support import Bystander, HostileScheduler, RawPeer

BIG = b"\x07" * (2 * OUT_OF_BAND_BYTES)


def _create(payload: bytes) -> ObjectInstruction:
    return ObjectInstruction(ObjectInstructionType.CREATE, [content_id(payload)], [payload])


@pytest.mark.timeout(60)
def test_bad_layouts_are_dropped_and_a_good_one_is_stored(
    hostile_scheduler: HostileScheduler, bystander: Bystander
) -> None:
    good = encode_one_part([_create(BIG)])
    envelope, layout, buffer = good[0], good[1], good[2]
    other = b"\x08" * (2 * OUT_OF_BAND_BYTES)
    hostile = [
        [envelope, layout],  # a layout and no buffer
        [envelope, layout, buffer, buffer],  # more buffers than the layout names
        [envelope, msgpack.packb([1]), buffer],  # a slot the message does not have
        [envelope, msgpack.packb(["x"]), buffer],  # not an ordinal
        [envelope, b"\xc1", buffer],  # not msgpack
        [envelope, layout, b"short"],  # a buffer under the out-of-band size
        [encode([_create(other)]), layout, other],  # the slot is already filled in the envelope
        [envelope, layout, other],  # bytes that do not match the id: refused like an inline CREATE
    ]
    with RawPeer(hostile_scheduler.address) as peer:
        peer.ping()
        for frames in hostile:
            peer.send_frames(frames)
        peer.ping()
        assert hostile_scheduler.alive()
        response, _ = peer.exchange(ObjectRequest([content_id(BIG), content_id(other)]), ObjectResponse)
        assert response.found == [False, False], "nothing from a bad layout was stored"
        peer.send_frames(good)
        response, _ = peer.exchange(ObjectRequest([content_id(BIG)]), ObjectResponse)
        assert response.found == [True]
        assert bytes(response.payloads[0]) == BIG, "the good payload comes back identical, out of band too"
    bystander.check()
