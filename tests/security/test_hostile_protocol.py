"""Frames that are msgpack but not our protocol: another version, unknown types, wrong fields.

Each is rejected whole (a valid message in the same frame is not applied either), logged
(rate-limited), and leaves the scheduler's state as it was: the sender is not registered as a
client or worker, and no task it described exists.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from scaler.errors import ProtocolError
from scaler.protocol.codec import decode, encode_one
from scaler.protocol.messages import (
    ALL_MESSAGES,
    CancelConfirmType,
    ClientHeartbeat,
    Message,
    Record,
    Task,
    TaskCancel,
)
from scaler.protocol.messages import TaskCancelConfirm as Confirm
from scaler.protocol.version import PROTOCOL_VERSION
from tests.security.hostile_support import (
    Bystander,
    HostileScheduler,
    RawPeer,
    parked_task,
    sample_message,
    wire_frame,
)


def _wire(message: Message) -> list[Any]:
    """``[TYPE, field, ...]`` as the codec puts it on the wire."""
    wire: list[Any] = msgpack.unpackb(encode_one(message), raw=False)[1]
    return wire


def _wrong_values(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is list:
        inner = typing.get_args(annotation)[0]
        return [{"a": 1}, b"list", ["text" if inner is bytes else b"bytes"]]
    if origin is dict:
        return [[], {"key": "value"}]
    if isinstance(annotation, type) and issubclass(annotation, enum.IntEnum):
        return [99, "0"]
    if isinstance(annotation, type) and issubclass(annotation, Record):  # the status feed's nested records
        return [b"record", []]
    return {bytes: ["text", None], str: [b"bytes"], int: ["1", True, 1.5], float: ["1.0"], bool: [1]}[annotation]


def _malformed(message: Message) -> Iterator[tuple[str, list[Any]]]:
    """(what, wire message) for every way to break ``message``: each field wrong, one missing, one extra."""
    wire = _wire(message)
    kind = type(message)
    hints = typing.get_type_hints(kind)
    for index, field in enumerate(dataclasses.fields(kind)):  # type: ignore[arg-type]
        for value in _wrong_values(hints[field.name]):
            yield f"{kind.__name__}.{field.name}={value!r}", [*wire[: 1 + index], value, *wire[2 + index :]]
    if len(wire) > 1:
        yield f"{kind.__name__} missing a field", wire[:-1]
    yield f"{kind.__name__} with an extra field", [*wire, b"extra"]


def _bases() -> list[Message]:
    """One valid message of each type; the task is a parked one, so a cancel would find it if it got in."""
    return [parked_task(b"T" * 16) if kind is Task else sample_message(kind) for kind in ALL_MESSAGES]


def _unknown_types() -> list[list[Any]]:
    top = max(kind.TYPE for kind in ALL_MESSAGES)
    return [[code, b"x"] for code in (0, -1, top + 1, 9999, 2**64 - 1)] + [[top + 1]]


def _decodes(frame: bytes) -> bool:
    try:
        decode(frame)
    except ProtocolError:
        return False
    return True


def _connected(scheduler: HostileScheduler, identity: bytes) -> bool:
    """True once the scheduler has logged that this peer became a client or a worker."""
    says = (f"client {identity.decode()} connected", f"worker {identity.decode()} connected")
    return any(said in line for line in scheduler.log_lines() for said in says)


@pytest.mark.timeout(60)
def test_malformed_messages_are_rejected_whole_and_change_nothing(
    hostile_scheduler: HostileScheduler, bystander: Bystander
) -> None:
    frames: list[tuple[str, bytes]] = []
    for base in _bases():
        for what, wire in _malformed(base):
            frames.append((what, wire_frame(wire)))
            # The same, after a valid parked task in one frame: the valid one must not get in either.
            frames.append((f"valid task, then {what}", wire_frame(_wire(parked_task(b"V" * 16)), wire)))
    for wire in _unknown_types():
        frames.append((f"unknown type {wire[0]}", wire_frame(wire)))
        frames.append((f"heartbeat, then unknown type {wire[0]}", wire_frame(_wire(ClientHeartbeat(1.0)), wire)))
    # Each one is bad for the decoder itself, or this test would prove nothing.
    assert [what for what, frame in frames if _decodes(frame)] == []
    mark = len(hostile_scheduler.log_lines())
    with RawPeer(hostile_scheduler.address) as peer:
        for _, frame in frames:
            peer.send_frames([frame])
        assert peer.ping() == []  # no answer of any kind to any of them
        added = hostile_scheduler.log_lines()[mark:]
        assert not _connected(hostile_scheduler, peer.identity), "a rejected frame registered its sender"
        for task_id in (b"T" * 16, b"V" * 16):
            answer, _ = peer.exchange(TaskCancel(task_id), Confirm)
            assert answer.confirm is CancelConfirmType.CANCEL_NOT_FOUND, "a rejected frame created a task"
        # The controls: a cancel did register the peer, and the valid task alone does get in.
        wait_connected = time.monotonic() + 5
        while not _connected(hostile_scheduler, peer.identity):
            assert time.monotonic() < wait_connected, "the scheduler never logs a new client: this test is blind"
            time.sleep(0.01)
        peer.send(parked_task(b"V" * 16))
        answer, _ = peer.exchange(TaskCancel(b"V" * 16), Confirm)
        assert answer.confirm is CancelConfirmType.CANCELED
    print(f"\n{len(frames)} malformed frames: {len(added)} log lines")
    assert 1 <= len(added) <= 2, "bad frames must be logged, rate-limited"
    bystander.check()


@pytest.mark.timeout(60)
def test_another_protocol_version_gets_an_empty_batch_in_ours(
    hostile_scheduler: HostileScheduler, bystander: Bystander
) -> None:
    with RawPeer(hostile_scheduler.address) as peer:
        for theirs in (PROTOCOL_VERSION + 1, PROTOCOL_VERSION - 1, 0, 2**64 - 1, -1):
            peer.send_frames([wire_frame(_wire(ClientHeartbeat(1.0)), version=theirs)])
            (reply,) = peer.receive_raw(5.0, count=1)
            assert msgpack.unpackb(reply) == [PROTOCOL_VERSION], "the answer must name the scheduler's version"
        assert peer.receive_raw(0.2) == [], "one answer per frame"
        assert peer.ping() == []
        assert not _connected(hostile_scheduler, peer.identity)
    bystander.check()


_MISMATCHED_CLIENT = """
import sys
import scaler.protocol.codec as codec
codec.PROTOCOL_VERSION += int(sys.argv[2])  # this process now speaks another version
from scaler import Client
Client(sys.argv[1], timeout_seconds=20)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("offset", [1, -1])
def test_a_client_of_another_version_fails_at_once_naming_both(
    hostile_scheduler: HostileScheduler, bystander: Bystander, offset: int
) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", _MISMATCHED_CLIENT, hostile_scheduler.address, str(offset)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    elapsed = time.monotonic() - started
    last_line = result.stderr.strip().splitlines()[-1]
    print(f"\na client of version {PROTOCOL_VERSION + offset} failed after {elapsed:.2f}s with:\n{last_line}")
    assert result.returncode != 0
    assert last_line.startswith("scaler.errors.DisconnectedError")
    assert f"version {PROTOCOL_VERSION}" in last_line and f"version {PROTOCOL_VERSION + offset}" in last_line
    assert elapsed < 10, "the mismatch must be reported at once, not after the client's timeout"
    bystander.check()
