"""Garbage on the wire: random frames, real messages cut short, and multi-frame messages.

Frames come from raw DEALER sockets, so they reach the scheduler's ROUTER exactly as sent (the
DEALER only puts its identity in front). The random ones come from a seeded generator: a failure
names the seed, and re-running it replays the same bytes.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterator

import msgpack
import pytest

from scaler.errors import ProtocolError
from scaler.protocol.codec import decode, encode, encode_one
from scaler.protocol.content_id import content_id
from scaler.protocol.messages import (
    ArgumentKind,
    CancelConfirmType,
    ClientHeartbeat,
    GraphNode,
    GraphTask,
    Message,
    ObjectInstruction,
    ObjectInstructionType,
    ObjectRequest,
    TaskArgument,
    TaskCancel,
    TaskCancelConfirm,
)
from scaler.protocol.version import PROTOCOL_VERSION
from tests.security.hostile_support import Bystander, HostileScheduler, RawPeer, parked_task

SEED = 0x5CA1E2
FRAMES = 10_000
MAX_FRAME = 64 * 1024


def _sample_messages() -> list[Message]:
    function = b"a function's bytes"
    node = GraphNode(b"n" * 16, content_id(function), function, [TaskArgument("", ArgumentKind.INLINE, b"1")], [])
    payload = b"an object"
    return [
        ClientHeartbeat(time.time()),
        parked_task(),
        TaskCancel(os.urandom(16)),
        ObjectRequest([os.urandom(16), os.urandom(16)]),
        ObjectInstruction(ObjectInstructionType.CREATE, [content_id(payload)], [payload]),
        GraphTask(b"g" * 16, [node], [node.task_id]),
    ]


def _array_header(length: int) -> bytes:
    header: bytes = msgpack.Packer().pack_array_header(length)
    return header


def _random_messages(rng: random.Random) -> Iterator[tuple[str, list[bytes]]]:
    """(kind, frames of one zmq message) for FRAMES messages of 1 B to 64 KiB each."""
    real = [encode_one(message) for message in _sample_messages()] + [encode(_sample_messages())]
    version = msgpack.packb(PROTOCOL_VERSION)
    for index in range(FRAMES):
        size = min(MAX_FRAME, int(math.exp(rng.uniform(0, math.log(MAX_FRAME)))))  # log-uniform
        kind = ("noise", "envelope", "real-prefix", "multi-frame")[index % 4]
        if kind == "noise":
            frames = [rng.randbytes(size)]
        elif kind == "envelope":  # starts like a frame: an array header, our version; then garbage
            frames = [_array_header(rng.randint(2, 20)) + version + rng.randbytes(size)]
        elif kind == "real-prefix":  # a real message's first bytes, then garbage
            sample = rng.choice(real)
            frames = [sample[: rng.randint(1, len(sample))] + rng.randbytes(size)]
        else:  # several frames in one zmq message; sometimes a real one among them
            frames = [rng.randbytes(rng.randint(0, size)) for _ in range(rng.randint(2, 5))]
            if rng.random() < 0.5:
                frames[rng.randrange(len(frames))] = rng.choice(real)
        yield kind, frames


@pytest.mark.timeout(60)
def test_ten_thousand_random_frames(hostile_scheduler: HostileScheduler, bystander: Bystander) -> None:
    rng = random.Random(SEED)
    peers = {kind: RawPeer(hostile_scheduler.address) for kind in ("noise", "envelope", "real-prefix", "multi-frame")}
    try:
        for peer in peers.values():
            peer.ping()  # connected before the flood, so no frame waits on a reconnect
        hostile_scheduler.reset_peak_rss()
        rss_before, peak_before = hostile_scheduler.rss(), hostile_scheduler.peak_rss()
        sent = 0
        started = time.monotonic()
        for kind, frames in _random_messages(rng):
            peers[kind].send_frames(frames)
            sent += sum(map(len, frames))
        answers = {kind: peer.ping(timeout=30) for kind, peer in peers.items()}  # all handled by now
        elapsed = time.monotonic() - started
        growth = hostile_scheduler.rss() - rss_before
        peak = hostile_scheduler.peak_rss() - peak_before
    finally:
        for peer in peers.values():
            peer.close()
    # A message of several frames is never decoded, not even a real frame inside it.
    assert answers["multi-frame"] == [], f"seed {SEED:#x}: a multi-frame message was acted on"
    print(
        f"\n{FRAMES} random messages, {sent / 2**20:.1f} MiB, handled in {elapsed:.2f}s; "
        f"scheduler RSS {growth / 2**20:+.1f} MiB (peak {peak / 2**20:+.1f} MiB); answers to the others: "
        f"{ {kind: len(got) for kind, got in answers.items()} }"
    )
    assert max(growth, peak) < 50 * 2**20, f"seed {SEED:#x}: the scheduler grew by {peak / 2**20:.0f} MiB"
    round_trip = bystander.check()
    print(f"fresh client round trip after the flood: {round_trip * 1000:.1f} ms")


def _pieces(frame: bytes) -> Iterator[bytes]:
    """The frame cut at every byte offset: each head and each tail."""
    for offset in range(len(frame)):
        yield frame[:offset]
        if offset:
            yield frame[offset:]


@pytest.mark.timeout(60)
def test_valid_messages_cut_at_every_byte(hostile_scheduler: HostileScheduler, bystander: Bystander) -> None:
    task = parked_task()
    frames = [
        encode_one(ClientHeartbeat(time.time())),
        encode_one(task),
        encode([task, ClientHeartbeat(time.time()), *_sample_messages()[2:]]),
    ]
    with RawPeer(hostile_scheduler.address) as peer:
        pieces = 0
        for frame in frames:
            for piece in _pieces(frame):
                with pytest.raises(ProtocolError):  # so each piece is truly a bad frame...
                    decode(piece)
                peer.send_frames([piece])  # ...and the scheduler must treat it as one
                pieces += 1
        # Nothing answered (an empty batch, for a piece that looks like another version, is no answer).
        assert peer.ping() == []
        # And no piece made the task: a cancel does not find it.
        answer, before = peer.exchange(TaskCancel(task.task_id), TaskCancelConfirm)
        assert (answer.confirm, before) == (CancelConfirmType.CANCEL_NOT_FOUND, [])
        # The controls, so that the checks above can fail: the whole frames are answered...
        assert peer.client_sync() == []
        # ...and do make the task, which the same cancel then finds.
        peer.send(task)
        answer, before = peer.exchange(TaskCancel(task.task_id), TaskCancelConfirm)
        assert (answer.confirm, before) == (CancelConfirmType.CANCELED, [])
    print(f"\n{pieces} pieces of {len(frames)} frames ({', '.join(str(len(f)) for f in frames)} bytes)")
    bystander.check()
