"""A flood of bad input must not flood the scheduler's log: lines are rate-limited and short.

The scheduler runs as a subprocess with its log in a file; the tests count the lines each flood adds.
"""

from __future__ import annotations

import math
import os
import time

import msgpack
import pytest

from scaler.protocol.codec import encode_one
from scaler.protocol.messages import (
    ClientHeartbeat,
    ClientHeartbeatEcho,
    ObjectInstruction,
    ObjectInstructionType,
    Task,
    TaskCancel,
    TaskResult,
    TaskStatus,
)
from scaler.protocol.version import PROTOCOL_VERSION
from tests.security.hostile_support import Bystander, HostileScheduler, RawPeer, parked_task, wire_frame

FLOOD = 20_000
LOG_INTERVAL_SECONDS = 5.0  # RateLimitedLog's default: one line per interval, per logger instance


def _bad_frames() -> list[list[bytes]]:
    """One of every kind of frame the decoder or the socket loop drops."""
    heartbeat = encode_one(ClientHeartbeat(1.0))
    return [
        [os.urandom(64)],  # noise
        [b""],
        [heartbeat[:-1]],  # cut short
        [heartbeat + b"\x00"],  # trailing bytes
        [wire_frame([ClientHeartbeat.TYPE, 1.0], version=PROTOCOL_VERSION + 1)],  # another version
        [wire_frame([9999, b"x"])],  # unknown type
        [wire_frame([ClientHeartbeat.TYPE, "one"])],  # wrong field type
        [wire_frame([ClientHeartbeat.TYPE])],  # missing field
        [wire_frame([ClientHeartbeat.TYPE, 1.0, b"extra"])],  # extra field
        [wire_frame([TaskCancel.TYPE, msgpack.ExtType(1, b"x")])],  # extension type
        [b"\x91" * 5000 + b"\xc0"],  # deep nesting
        [b"\x92\x01\xdd\xff\xff\xff\xff"],  # huge declared length
        [heartbeat, heartbeat],  # two frames in one message
        [b"", b"", b""],
    ]


@pytest.mark.timeout(60)
def test_a_flood_of_bad_frames_logs_a_bounded_number_of_lines(
    hostile_scheduler: HostileScheduler, bystander: Bystander
) -> None:
    kinds = _bad_frames()
    peers = [RawPeer(hostile_scheduler.address) for _ in range(4)]
    try:
        for peer in peers:
            peer.ping()
        mark = len(hostile_scheduler.log_lines())
        started = time.monotonic()
        for index in range(FLOOD):
            peers[index % len(peers)].send_frames(kinds[index % len(kinds)])
        for peer in peers:
            peer.ping(timeout=30)  # every frame of the flood has been handled
        elapsed = time.monotonic() - started
    finally:
        for peer in peers:
            peer.close()
    added = hostile_scheduler.log_lines()[mark:]
    print(f"\n{FLOOD} bad frames in {elapsed:.2f}s added {len(added)} log lines:\n" + "\n".join(added))
    assert added, "the scheduler did not log the bad frames at all"
    # Bad frames share one limiter; a wrong version also gets its own line then, if it is the first.
    assert len(added) <= 2 * (math.ceil(elapsed / LOG_INTERVAL_SECONDS) + 1)
    assert all(len(line) < 500 for line in added)
    assert all("dropped" in line for line in added)
    bystander.check()


# Well-formed messages that the scheduler refuses are logged by scaler/scheduler/state.py through one
# limiter per kind of refusal, each at most this many lines a second, with long ids clipped.
REFUSAL_KINDS, REFUSAL_BURST = 5, 10


@pytest.mark.timeout(60)
def test_a_flood_of_refused_messages(hostile_scheduler: HostileScheduler, bystander: Bystander) -> None:
    """The scheduler survives it, and its log stays bounded: rate-limited per kind, ids clipped."""
    refused = [
        ClientHeartbeatEcho(1.0, b"not for the scheduler"),
        TaskResult(b"\x01" * 16, TaskStatus.SUCCESS, b"forged", 1),
        Task(b"\x02" * 16, b"not the hash", b"function", [], 0),
        ObjectInstruction(ObjectInstructionType.CREATE, [b"not the hash"], [b"payload"]),
        parked_task(b"\x03" * 16),  # the first is queued, every later one is a duplicate
    ]
    count = 2000
    with RawPeer(hostile_scheduler.address) as peer:
        peer.client_sync()
        mark = len(hostile_scheduler.log_lines())
        started = time.monotonic()
        for index in range(count):
            peer.send(refused[index % len(refused)])
        for _ in range(3):
            peer.send(TaskResult(b"\x04" * (1 << 20), TaskStatus.SUCCESS, b"", 1))  # a 1 MiB task id
        peer.client_sync(timeout=30)
        elapsed = time.monotonic() - started
    added = hostile_scheduler.log_lines()[mark:]
    longest = max(map(len, added), default=0)
    bystander.check()
    figures = f"{count + 3} refused messages in {elapsed:.2f}s: {len(added)} log lines, the longest {longest} chars"
    print("\n" + figures)
    assert added, "the scheduler did not log the refused messages at all"
    assert len(added) <= REFUSAL_KINDS * REFUSAL_BURST * (math.ceil(elapsed) + 1), figures
    assert longest < 1000, figures
