"""The decoder alone against hostile bytes: limits, nesting, bounded errors, and one error type only.

Every case runs with both msgpack implementations (its C extension, and the pure-Python fallback
that an install without a compiler gets), since the decoder leans on msgpack for its limits.
"""

from __future__ import annotations

import gc
import struct
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import msgpack
import msgpack.fallback
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler.errors import ProtocolError, ProtocolVersionError
from scaler.protocol import codec
from scaler.protocol.codec import decode, encode_one
from scaler.protocol.messages import ALL_MESSAGES, ArgumentKind, ClientHeartbeat, Message, Task, TaskArgument
from scaler.protocol.version import PROTOCOL_VERSION
from tests.security.hostile_support import wire_frame

MAX_ERROR_CHARS = 400  # an error message ends up in a log line: it must not carry the frame

pytestmark = pytest.mark.timeout(30)  # every test here; the fuzz test has its own


@pytest.fixture(params=["c", "fallback"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test with msgpack's C unpacker, then with its pure-Python one."""
    if request.param == "fallback":
        monkeypatch.setattr(codec.msgpack, "unpackb", msgpack.fallback.unpackb)
    else:
        assert msgpack.unpackb is not msgpack.fallback.unpackb, "the C extension of msgpack is not installed"
    yield request.param


def rejected(frame: bytes) -> ProtocolError:
    """Decode ``frame``, which must fail with ``ProtocolError`` (nothing else) and a short message."""
    try:
        decode(frame)
    except ProtocolError as error:
        assert len(str(error)) < MAX_ERROR_CHARS, f"an error message of {len(str(error))} characters"
        return error
    raise AssertionError(f"decode accepted {frame[:40]!r}")


def fails_fast(frame: bytes, seconds: float = 0.5, peak_bytes: int = 4 << 20) -> ProtocolError:
    tracemalloc.start()
    try:
        started = time.perf_counter()
        error = rejected(frame)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.3f}s"
    assert peak < peak_bytes, f"allocated {peak} bytes"
    return error


_ENVELOPE = msgpack.packb(PROTOCOL_VERSION)  # the version, as the frame's first item
_HUGE_HEADERS = {
    "array32": b"\xdd\xff\xff\xff\xff",
    "map32": b"\xdf\xff\xff\xff\xff",
    "str32": b"\xdb\xff\xff\xff\xff",
    "bin32": b"\xc6\xff\xff\xff\xff",
    "ext32": b"\xc9\xff\xff\xff\xff\x05",
    "array16": b"\xdc\xff\xff",
    "map16": b"\xde\xff\xff",
    "str16": b"\xda\xff\xff",
    "bin16": b"\xc5\xff\xff",
    "str8": b"\xd9\xff",
    "bin8": b"\xc4\xff",
}


def _huge_length_frames() -> Iterator[Any]:
    task_head = b"\x92" + _ENVELOPE + b"\x9c" + msgpack.packb(Task.TYPE)  # [V, [Task, <task_id here>...
    for name, header in _HUGE_HEADERS.items():
        yield pytest.param(header, id=f"{name}-alone")
        yield pytest.param(b"\x92" + _ENVELOPE + header, id=f"{name}-as-message")
        yield pytest.param(task_head + header, id=f"{name}-as-task-id")
        yield pytest.param(b"\x92" + header + b"\xc0", id=f"{name}-as-version")


@pytest.mark.parametrize("frame", list(_huge_length_frames()))
def test_a_few_bytes_declaring_a_huge_length_fail_fast(implementation: str, frame: bytes) -> None:
    fails_fast(frame)


def test_msgpack_bounds_every_length_by_the_frame_size() -> None:
    # What makes the cases above safe, shown directly: an array or map is allocated for its
    # declared length before its items are read, so that length is checked against the frame's
    # size. (A str or bin is only copied out of the frame, after checking that its bytes are there.)
    for header in (b"\xdd\x00\x01\x00\x00", b"\xdf\x00\x01\x00\x00"):
        frame = header + b"\xc0" * 100
        with pytest.raises(ValueError, match="exceeds max"):
            msgpack.unpackb(frame)
        assert "exceeds max" in str(rejected(frame))


def _nested(depth: int, opener: bytes, leaf: bytes = b"\xc0") -> bytes:
    return opener * depth + leaf


_NESTINGS = {
    "arrays-100k": _nested(100_000, b"\x91"),
    "maps-100k": _nested(100_000, b"\x81\xa1k"),
    "arrays-in-envelope-300k": b"\x92" + _ENVELOPE + _nested(300_000, b"\x91"),
    "arrays-as-task-args": b"\x92" + _ENVELOPE + b"\x9c\x01\xc4\x00\xc4\x00\xc4\x00" + _nested(100_000, b"\x91"),
    "mixed-100k": _nested(50_000, b"\x91\x81\xa1k"),
    # 1000 levels where the version goes: within msgpack's limit, but past Python's recursion
    # limit for repr(); the version error once crashed the scheduler with a RecursionError here.
    "arrays-as-version-1000": b"\x92" + _nested(1000, b"\x91") + b"\xc0",
    "maps-as-version-1000": b"\x92" + _nested(1000, b"\x81\xa1k") + b"\xc0",
    "arrays-as-version-1023": b"\x92" + _nested(1022, b"\x91") + b"\xc0",
}


@pytest.mark.parametrize("frame", list(_NESTINGS.values()), ids=list(_NESTINGS))
def test_deep_nesting_fails_fast_with_protocol_error_only(implementation: str, frame: bytes) -> None:
    fails_fast(frame, peak_bytes=16 << 20)


def test_msgpack_itself_refuses_nesting_past_1024_levels() -> None:
    # The decoder relies on this (and on RecursionError in the fallback) to bound nesting.
    msgpack.unpackb(_nested(1023, b"\x91"))
    with pytest.raises(msgpack.StackError):
        msgpack.unpackb(_nested(1025, b"\x91"))


@pytest.mark.parametrize(
    "version",
    [
        "x" * 10_000_000,
        b"x" * 10_000_000,
        list(range(1_000_000)),
        {str(key): key for key in range(100_000)},
        [[[[[[[[[[[[]]]]]]]]]]]],
    ],
    ids=["str-10M", "bin-10M", "array-1M", "map-100k", "nested"],
)
def test_a_wrong_version_is_named_briefly(version: Any) -> None:
    error = rejected(wire_frame([ClientHeartbeat.TYPE, 1.0], version=version))
    assert isinstance(error, ProtocolVersionError)
    assert f"version {PROTOCOL_VERSION}" in str(error)


def test_a_wrong_integer_version_is_named_exactly() -> None:
    error = rejected(wire_frame([ClientHeartbeat.TYPE, 1.0], version=PROTOCOL_VERSION + 1))
    assert isinstance(error, ProtocolVersionError)
    assert (error.ours, error.theirs) == (PROTOCOL_VERSION, PROTOCOL_VERSION + 1)


def test_msgpack_error_text_is_clipped() -> None:
    # Invalid UTF-8 deep in a long str: the text of msgpack's error must not carry the frame.
    text = ("a" * 1_000_000).encode() + b"\xff"
    frame = b"\x92" + _ENVELOPE + b"\xdb" + struct.pack(">I", len(text)) + text
    assert "undecodable" in str(rejected(frame))


def _collections_during(action: Any) -> int:
    """How many garbage collection passes ran while ``action()`` ran."""
    passes = 0

    def count(phase: str, info: dict[str, int]) -> None:
        nonlocal passes
        passes += phase == "start"

    gc.callbacks.append(count)
    try:
        action()
    finally:
        gc.callbacks.remove(count)
    return passes


def test_a_dense_frame_decodes_without_garbage_collection_passes() -> None:
    # A frame of tiny containers (here 2 MiB of empty arrays) makes millions of Python lists:
    # with the collector running, each burst of allocations starts a pass over all of them.
    dense = b"\x92" + _ENVELOPE + b"\xdd" + struct.pack(">I", 2 << 20) + b"\x90" * (2 << 20)
    assert gc.isenabled()
    assert _collections_during(lambda: rejected(dense)) == 0
    assert gc.isenabled(), "decode must turn the collector back on"
    # A valid big frame too, and the collector is back afterwards.
    big = encode_one(Task(b"t", b"f", b"", [TaskArgument("", ArgumentKind.INLINE, b"x")] * 200_000, 0))
    assert _collections_during(lambda: decode(big)) == 0
    assert gc.isenabled()
    # The control: the same work outside decode does run the collector, so the check can fail.
    assert _collections_during(lambda: msgpack.unpackb(dense)) > 0


def test_decode_leaves_a_disabled_collector_disabled() -> None:
    dense = b"\x92" + _ENVELOPE + b"\xdd" + struct.pack(">I", 2 << 20) + b"\x90" * (2 << 20)
    gc.disable()
    try:
        rejected(dense)
        assert not gc.isenabled()
    finally:
        gc.enable()


class _GcSpy:
    """Stands in for the ``gc`` module inside the codec, recording what decode asks of it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def isenabled(self) -> bool:
        return gc.isenabled()

    def disable(self) -> None:
        self.calls.append("disable")
        gc.disable()

    def enable(self) -> None:
        self.calls.append("enable")
        gc.enable()


def test_only_big_frames_pause_the_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    # The collector is process-wide: a client's agent thread decoding its many small frames must
    # never switch it off under the user's threads.
    spy = _GcSpy()
    monkeypatch.setattr(codec, "gc", spy)
    for _ in range(1000):
        decode(encode_one(ClientHeartbeat(1.0)))
    rejected(b"\x91" * 1000)
    assert spy.calls == []
    decode(encode_one(Task(b"t", b"f", b"x" * (2 << 20), [], 0)))
    rejected(b"\x92" + _ENVELOPE + b"\xc6\xff\xff\xff\xff" + b"\x00" * (2 << 20))
    assert spy.calls == ["disable", "enable"] * 2
    assert gc.isenabled()


# -- fuzzing: any msgpack structure yields messages or ProtocolError ---------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.sampled_from([PROTOCOL_VERSION, *(kind.TYPE for kind in ALL_MESSAGES)])
)
_structures = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=12)
        | st.dictionaries(st.text(max_size=6) | st.binary(max_size=6), children, max_size=6)
    ),
    max_leaves=80,
)
_frames = st.one_of(
    _structures,
    st.lists(_structures, max_size=6).map(lambda messages: [PROTOCOL_VERSION, *messages]),
    st.lists(st.lists(_structures, max_size=12), max_size=4).map(lambda messages: [PROTOCOL_VERSION, *messages]),
    st.tuples(st.sampled_from(ALL_MESSAGES), st.lists(_structures, max_size=12)).map(
        lambda pair: [PROTOCOL_VERSION, [pair[0].TYPE, *pair[1]]]
    ),
)


@pytest.mark.timeout(120)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames, st.booleans())
def test_fuzz_any_msgpack_structure_gives_messages_or_protocol_error(structure: Any, use_bin_type: bool) -> None:
    frame = msgpack.packb(structure, use_bin_type=use_bin_type)
    try:
        messages = decode(frame)
    except ProtocolError as error:
        assert len(str(error)) < MAX_ERROR_CHARS
        return
    assert isinstance(messages, list)
    assert all(isinstance(message, ALL_MESSAGES) and isinstance(message, Message) for message in messages)
