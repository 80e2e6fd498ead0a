"""The wire codec: every message round-trips, and every malformed frame raises ``ProtocolError`` only."""

from __future__ import annotations

import dataclasses
import enum
import time
import tracemalloc
import typing
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler.errors import ProtocolError, ProtocolVersionError
from scaler.protocol import messages as messages_module
from scaler.protocol.codec import decode, encode, encode_one
from scaler.protocol.messages import (
    ALL_MESSAGES,
    ArgumentKind,
    BalanceRequest,
    BalanceResponse,
    CancelConfirmType,
    ClientDisconnect,
    ClientDropped,
    ClientHeartbeat,
    ClientHeartbeatEcho,
    ClientShutdownResponse,
    ClientStatus,
    DisconnectRequest,
    DisconnectResponse,
    DisconnectType,
    GraphNode,
    GraphTask,
    LogStream,
    ManagedWorkerRecord,
    ManagedWorkerState,
    Message,
    ObjectContent,
    ObjectInstruction,
    ObjectInstructionType,
    ObjectRequest,
    ObjectResponse,
    PeerEventKind,
    PeerEventRecord,
    ProcessorBlocked,
    Record,
    RunningTask,
    SchedulerShutdown,
    SchedulerStatus,
    StatusEvents,
    StatusRequest,
    StatusSnapshot,
    Task,
    TaskArgument,
    TaskCancel,
    TaskCancelConfirm,
    TaskCredit,
    TaskEventKind,
    TaskEventRecord,
    TaskLog,
    TaskResult,
    TaskResultWanted,
    TaskStarted,
    TaskStatus,
    WorkerHeartbeat,
    WorkerHeartbeatEcho,
    WorkerManagerCommand,
    WorkerManagerHeartbeat,
    WorkerState,
    WorkerStatus,
)
from scaler.protocol.version import PROTOCOL_VERSION

# A factory of one example of every message class; test_every_message_has_an_example keeps it complete.
# (Factories, not instances, so that a changed constructor fails the tests that use it, not collection.)
EXAMPLES: dict[type[Message], Callable[[], Message]] = {
    Task: lambda: Task(
        b"task-1",
        b"fn-hash",
        b"\x80\x05pickled-function",
        [TaskArgument("", ArgumentKind.INLINE, b"\x00\x01"), TaskArgument("key", ArgumentKind.OBJECT, b"o1")],
        3,
        -2,
        {"gpu": 1},
        1.5,
        True,
        True,
        [ObjectContent(b"o1", b"payload")],
        b"parent-task",
        "module.function",
    ),
    TaskResult: lambda: TaskResult(
        b"task-1", TaskStatus.FAILED, b"\xff" * 10, 2, b"obj", 0.5, 0.25, 2**33, 0.125, 0.0625, 2**20, 1.5, 0.001
    ),
    TaskCancel: lambda: TaskCancel(b"task-1"),
    TaskCancelConfirm: lambda: TaskCancelConfirm(b"task-1", CancelConfirmType.CANCEL_NOT_FOUND),
    ClientHeartbeat: lambda: ClientHeartbeat(1700000000.25),
    ClientHeartbeatEcho: lambda: ClientHeartbeatEcho(-0.5, b"scheduler-1"),
    WorkerHeartbeat: lambda: WorkerHeartbeat(12.5, 7, 99.9, 2**40, {"gpu": 1, "big-memory": -1}, 2, 1, 3),
    WorkerHeartbeatEcho: lambda: WorkerHeartbeatEcho(0.0, b""),
    ClientDisconnect: lambda: ClientDisconnect(DisconnectType.SHUTDOWN),
    ClientShutdownResponse: lambda: ClientShutdownResponse(False, "protected mode \u2014 refuse"),
    DisconnectRequest: lambda: DisconnectRequest(True),
    DisconnectResponse: lambda: DisconnectResponse(),
    SchedulerShutdown: lambda: SchedulerShutdown("bye"),
    ClientDropped: lambda: ClientDropped("timed out"),
    GraphTask: lambda: GraphTask(
        b"graph-1",
        [
            GraphNode(b"n1", b"fn", b"", [TaskArgument("", ArgumentKind.INLINE, b"1")], []),
            GraphNode(b"n2", b"fn", b"f", [TaskArgument("", ArgumentKind.OBJECT, b"n1")], [b"n1"], "f"),
        ],
        [b"n2"],
        True,
        False,
        b"parent-task",
    ),
    TaskLog: lambda: TaskLog(b"task-1", LogStream.STDERR, "hello\n", 12),
    ObjectInstruction: lambda: ObjectInstruction(ObjectInstructionType.CREATE, [b"o1", b"o2"], [b"x", b""]),
    ObjectRequest: lambda: ObjectRequest([b"o1"]),
    TaskResultWanted: lambda: TaskResultWanted([b"t1", b"t2"]),
    ObjectResponse: lambda: ObjectResponse([b"o1", b"o2"], [b"x", b""], [True, False]),
    BalanceRequest: lambda: BalanceRequest([b"t1", b"t2"]),
    BalanceResponse: lambda: BalanceResponse([]),
    ProcessorBlocked: lambda: ProcessorBlocked(True),
    TaskStarted: lambda: TaskStarted(b"task-1", 4),
    TaskCredit: lambda: TaskCredit(100000),
    StatusRequest: lambda: StatusRequest(7),
    StatusSnapshot: lambda: StatusSnapshot(
        7,
        1234.5,
        1700000000.5,
        SchedulerStatus(
            b"scheduler-1",
            "1.0",
            60.0,
            12.5,
            2**27,
            100.5,
            99.5,
            {"queued": 3, "running": 2},
            {"submitted": 10, "finished": 5},
            4,
            2**20,
            0,
        ),
        [ClientStatus(b"client-1", 3, 2, 5, 1, 0, 3, 59.5)],
        [
            WorkerStatus(
                b"worker-1",
                WorkerState.DRAINING,
                {"gpu": 1},
                1,
                [RunningTask(b"task-1", "module.function", b"client-1", 0.5)],
                1,
                0,
                1,
                50.0,
                2**26,
                0.25,
                17,
            )
        ],
    ),
    StatusEvents: lambda: StatusEvents(
        1234.5,
        1700000000.5,
        [
            TaskEventRecord(
                TaskEventKind.FINISHED, 1234.25, b"task-1", b"client-1", b"worker-1", "f", 1, 0.5, 0.25, 2**20, ""
            )
        ],
        [PeerEventRecord(PeerEventKind.WORKER_JOINED, 1234.0, b"worker-1", "")],
        3,
    ),
    WorkerManagerHeartbeat: lambda: WorkerManagerHeartbeat(
        "slurm-a",
        {"gpu": 1},
        0,
        8,
        1,
        2.5,
        [
            ManagedWorkerRecord("slurm-a-1", ManagedWorkerState.RUNNING, ""),
            ManagedWorkerRecord("slurm-a-2", ManagedWorkerState.FAILED, "job 12 failed: constraint"),
        ],
    ),
    WorkerManagerCommand: lambda: WorkerManagerCommand(3, ["slurm-a-1"]),
}

MESSAGE_IDS = [kind.__name__ for kind in ALL_MESSAGES]


def example(kind: type[Message]) -> Message:
    return EXAMPLES[kind]()


def wire_fields(message: Message) -> list[Any]:
    """The message's fields as the codec puts them on the wire (records become arrays)."""
    return [_plain(getattr(message, field.name)) for field in dataclasses.fields(message)]  # type: ignore[arg-type]


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return [_plain(getattr(value, field.name)) for field in dataclasses.fields(value)]  # type: ignore[arg-type]
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, enum.IntEnum):
        return int(value)
    return value


def pack(*wire_messages: list[Any], version: Any = PROTOCOL_VERSION) -> bytes:
    """A hand-built frame: ``[version, [TYPE, field, ...], ...]``."""
    frame: bytes = msgpack.packb([version, *wire_messages], use_bin_type=True)
    return frame


def wire(message: Message) -> list[Any]:
    return [message.TYPE, *wire_fields(message)]


def assert_rejected(frame: bytes | memoryview, **kwargs: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(frame, **kwargs)
    return info.value


def assert_same_types(decoded: Any, original: Any) -> None:
    """Equal is not enough (IntEnum == int, 1.0 == 1): the decoded field types must match too."""
    assert type(decoded) is type(original)
    if isinstance(original, list):
        assert len(decoded) == len(original)
        for left, right in zip(decoded, original, strict=True):
            assert_same_types(left, right)
    elif dataclasses.is_dataclass(original):
        for field in dataclasses.fields(original):
            assert_same_types(getattr(decoded, field.name), getattr(original, field.name))


# -- the examples themselves ----------------------------------------------------------------------


def test_every_message_has_an_example() -> None:
    assert set(EXAMPLES) == set(ALL_MESSAGES), "add an example for every new message class"
    for kind in EXAMPLES:
        assert type(example(kind)) is kind


def test_type_codes_are_unique() -> None:
    codes = [kind.TYPE for kind in ALL_MESSAGES]
    assert len(set(codes)) == len(codes)
    assert all(type(code) is int and code >= 0 for code in codes)


def test_all_messages_lists_every_message_class_of_the_module() -> None:
    # (Message.__subclasses__() would also list the pre-slots classes that @dataclass(slots=True) replaced.)
    defined = {
        value
        for value in vars(messages_module).values()
        if isinstance(value, type) and issubclass(value, Message) and value is not Message
    }
    assert defined == set(ALL_MESSAGES)


# -- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_MESSAGES, ids=MESSAGE_IDS)
def test_round_trip(kind: type[Message]) -> None:
    message = example(kind)
    decoded = decode(encode_one(message))
    assert decoded == [message]
    assert_same_types(decoded[0], message)


@pytest.mark.parametrize("kind", ALL_MESSAGES, ids=MESSAGE_IDS)
def test_wire_format_is_version_then_type_code_then_fields(kind: type[Message]) -> None:
    message = example(kind)
    assert msgpack.unpackb(encode_one(message), raw=False) == [PROTOCOL_VERSION, wire(message)]
    assert decode(pack(wire(message))) == [message]


@pytest.mark.parametrize("kind", ALL_MESSAGES, ids=MESSAGE_IDS)
def test_decode_accepts_memoryview(kind: type[Message]) -> None:
    message = example(kind)
    assert decode(memoryview(encode_one(message))) == [message]


def test_batch_of_every_message_in_one_frame_keeps_order() -> None:
    batch = [example(kind) for kind in ALL_MESSAGES] + [example(kind) for kind in reversed(ALL_MESSAGES)]
    frame = encode(batch)
    assert decode(frame) == batch
    assert len(msgpack.unpackb(frame, raw=False)) == 1 + len(batch)


def test_batch_accepts_any_iterable() -> None:
    batch = [TaskCancel(bytes([i])) for i in range(100)]
    assert decode(encode(iter(batch))) == batch
    assert decode(encode(message for message in batch)) == batch


def test_empty_batch_round_trips() -> None:
    assert decode(encode([])) == []


def test_float_field_accepts_a_whole_number_sent_as_int() -> None:
    # Other msgpack implementations may shrink 2.0 to 2; the decoded field is still a float.
    (decoded,) = decode(pack([ClientHeartbeat.TYPE, 2]))
    assert decoded == ClientHeartbeat(2.0)
    assert isinstance(decoded, ClientHeartbeat)
    assert type(decoded.timestamp) is float


@pytest.mark.parametrize("status", list(TaskStatus))
def test_every_task_status_round_trips(status: TaskStatus) -> None:
    message = TaskResult(b"t", status, b"p", 0)
    (decoded,) = decode(encode_one(message))
    assert decoded.status is status  # type: ignore[attr-defined]


@pytest.mark.parametrize("confirm", list(CancelConfirmType))
def test_every_cancel_confirm_type_round_trips(confirm: CancelConfirmType) -> None:
    (decoded,) = decode(encode_one(TaskCancelConfirm(b"t", confirm)))
    assert decoded.confirm is confirm  # type: ignore[attr-defined]


def test_extreme_integers_round_trip() -> None:
    for value in (-(2**63), 2**64 - 1, 0, -1):
        message = TaskResult(b"t", TaskStatus.SUCCESS, b"", value)
        assert decode(encode_one(message)) == [message]


# -- rejections: bytes that are not a frame ---------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xc1",  # the one byte msgpack never uses
        b"\xff\xff\xff\xff",
        b"hello, world",
        b"\x00" * 64,
        b"\x91",  # an array of one, with nothing in it
        b"\x92\x01",  # an array of two, with one item
        encode_one(TaskCancel(b"x")) + b"\x00",  # trailing bytes
        encode_one(TaskCancel(b"x")) * 2,  # two frames glued together
    ],
    ids=lambda frame: frame[:12].hex() or "empty",
)
def test_garbage_is_rejected(frame: bytes) -> None:
    assert_rejected(frame)


@pytest.mark.parametrize(
    "structure",
    [None, 1, "text", b"bytes", 1.5, True, {"a": 1}, []],
    ids=repr,
)
def test_frame_that_is_not_a_nonempty_array_is_rejected(structure: Any) -> None:
    assert_rejected(msgpack.packb(structure, use_bin_type=True))


def test_truncated_at_every_byte_offset_is_rejected() -> None:
    frame = encode([example(kind) for kind in ALL_MESSAGES])
    for end in range(len(frame)):
        assert_rejected(frame[:end])


def test_undecodable_utf8_in_a_str_field_is_rejected() -> None:
    good = pack([SchedulerShutdown.TYPE, "ab"])
    assert good.endswith(b"\xa2ab")
    assert_rejected(good[:-2] + b"\xff\xfe")


# -- rejections: version and type code -------------------------------------------------------------


@pytest.mark.parametrize("theirs", [PROTOCOL_VERSION + 1, 0, -1, 1000])
def test_wrong_protocol_version_names_both_versions(theirs: int) -> None:
    error = assert_rejected(pack(wire(TaskCancel(b"x")), version=theirs))
    assert isinstance(error, ProtocolVersionError)
    assert error.ours == PROTOCOL_VERSION
    assert error.theirs == theirs
    assert f"version {theirs}" in str(error)
    assert f"version {PROTOCOL_VERSION}" in str(error)


@pytest.mark.parametrize("theirs", [float(PROTOCOL_VERSION), True, str(PROTOCOL_VERSION), None, [PROTOCOL_VERSION]])
def test_version_of_the_wrong_type_is_rejected(theirs: Any) -> None:
    error = assert_rejected(pack(wire(TaskCancel(b"x")), version=theirs))
    assert isinstance(error, ProtocolVersionError)


def test_version_alone_is_an_empty_batch() -> None:
    assert decode(pack()) == []


@pytest.mark.parametrize("code", [0, -1, max(kind.TYPE for kind in ALL_MESSAGES) + 1, 255, 2**32, 2**64 - 1, -(2**63)])
def test_unknown_type_code_is_rejected(code: int) -> None:
    assert code not in {kind.TYPE for kind in ALL_MESSAGES}
    error = assert_rejected(pack([code, b"x"]))
    assert str(code) in str(error)


def test_unknown_type_code_after_valid_messages_rejects_the_whole_frame() -> None:
    assert_rejected(pack(wire(TaskCancel(b"x")), wire(TaskCancel(b"y")), [99]))


@pytest.mark.parametrize(
    "message",
    [
        [],
        None,
        TaskCancel.TYPE,
        b"\x03",
        [True, b"x"],  # True == 1 in Python, but it is not a type code
        [float(TaskCancel.TYPE), b"x"],
        [str(TaskCancel.TYPE), b"x"],
        {"type": TaskCancel.TYPE},
    ],
    ids=repr,
)
def test_message_that_is_not_an_array_starting_with_a_type_code_is_rejected(message: Any) -> None:
    assert_rejected(pack(message))


# -- rejections: fields ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    [kind for kind in ALL_MESSAGES if dataclasses.fields(kind)],  # type: ignore[arg-type]
    ids=lambda k: k.__name__,
)
def test_missing_field_is_rejected(kind: type[Message]) -> None:
    assert_rejected(pack(wire(example(kind))[:-1]))


@pytest.mark.parametrize("kind", ALL_MESSAGES, ids=MESSAGE_IDS)
def test_extra_field_is_rejected(kind: type[Message]) -> None:
    assert_rejected(pack([*wire(example(kind)), b"extra"]))
    assert_rejected(pack([*wire(example(kind)), None]))


def _wrong_values(annotation: Any) -> list[Any]:
    """Values of the wrong type (or out of range) for a field of this annotation."""
    origin = typing.get_origin(annotation)
    if origin is list:
        (inner,) = typing.get_args(annotation)
        wrong_item = b"x" if inner is not bytes else "x"
        return [b"", "", None, {}, 0, [None], [wrong_item]]
    if origin is dict:
        return [[], b"", None, 0, {b"key": 1}, {"key": "one"}, {"key": None}]
    if annotation is bytes:
        return ["text", None, 0, [], False]
    if annotation is str:
        return [b"bytes", None, 0, [], True]
    if annotation is int:
        return [True, False, 1.0, "1", b"1", None, []]
    if annotation is bool:
        return [1, 0, "true", None, 1.0]
    if annotation is float:
        return [True, "1.0", b"1", None, []]
    if isinstance(annotation, type) and issubclass(annotation, enum.IntEnum):
        invalid = max(annotation) + 1
        return [invalid, -1, 2**63, True, 0.0, str(int(min(annotation))), None]
    if isinstance(annotation, type) and issubclass(annotation, Record):
        count = len(dataclasses.fields(annotation))  # type: ignore[arg-type]
        return [b"", "", None, {}, 0, [], [None] * count, [None] * (count + 1)]
    return []  # a new kind of field: test_every_field_annotation_has_wrong_values asks for cases


def _field_cases() -> list[Any]:
    cases = []
    for kind in ALL_MESSAGES:
        hints = typing.get_type_hints(kind)
        for index, field in enumerate(dataclasses.fields(kind)):  # type: ignore[arg-type]
            for value in _wrong_values(hints[field.name]):
                cases.append(pytest.param(kind, index, value, id=f"{kind.__name__}.{field.name}={value!r}"))
    return cases


@pytest.mark.parametrize(("kind", "index", "value"), _field_cases())
def test_field_of_the_wrong_type_is_rejected(kind: type[Message], index: int, value: Any) -> None:
    fields = wire(example(kind))
    fields[1 + index] = value
    assert_rejected(pack(fields))


@pytest.mark.parametrize(
    "argument",
    [
        ["", int(ArgumentKind.INLINE)],  # missing field
        ["", int(ArgumentKind.INLINE), b"x", b"extra"],
        [b"name", int(ArgumentKind.INLINE), b"x"],
        ["", 99, b"x"],
        ["", True, b"x"],
        ["", int(ArgumentKind.INLINE), "x"],
        {"name": "", "kind": 0, "data": b"x"},
        b"argument",
        None,
    ],
    ids=repr,
)
def test_malformed_nested_record_is_rejected(argument: Any) -> None:
    fields = wire(example(Task))
    fields[4] = [["", int(ArgumentKind.INLINE), b"ok"], argument]
    assert_rejected(pack(fields))


def test_every_field_annotation_has_wrong_values() -> None:
    # Guards _wrong_values: a field of a new type must get rejection cases too (it raises otherwise).
    records = [
        value
        for value in vars(messages_module).values()
        if isinstance(value, type) and issubclass(value, Record) and value is not Record
    ]
    for kind in [*ALL_MESSAGES, *records]:
        hints = typing.get_type_hints(kind)
        for field in dataclasses.fields(kind):  # type: ignore[arg-type]
            assert _wrong_values(hints[field.name])


# -- rejections: hostile encodings ------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        msgpack.packb(msgpack.ExtType(1, b"x")),
        msgpack.packb([PROTOCOL_VERSION, msgpack.ExtType(1, b"x")]),
        msgpack.packb([msgpack.ExtType(0, b"\x01"), [TaskCancel.TYPE, b"x"]]),
        msgpack.packb([PROTOCOL_VERSION, [TaskCancel.TYPE, msgpack.ExtType(42, b"x")]]),
        msgpack.packb([PROTOCOL_VERSION, [msgpack.ExtType(3, b""), b"x"]]),
        # -1 is msgpack's timestamp extension, which msgpack decodes itself unless told otherwise
        msgpack.packb([PROTOCOL_VERSION, [TaskCancel.TYPE, msgpack.Timestamp(1, 0)]]),
        msgpack.packb([PROTOCOL_VERSION, [ClientHeartbeat.TYPE, msgpack.Timestamp(1, 0)]]),
        msgpack.packb([PROTOCOL_VERSION, [WorkerHeartbeat.TYPE, 1.0, msgpack.Timestamp(5, 0), 1.0, 1]]),
        b"\x92\x01\xc7\x03\xff\x00\x00\x00",  # a timestamp extension with an impossible length
    ],
    ids=lambda frame: frame.hex(),
)
def test_msgpack_extension_types_are_rejected(frame: bytes) -> None:
    assert_rejected(frame)


@pytest.mark.parametrize("depth", [100, 10_000, 1_000_000])
def test_deeply_nested_arrays_are_rejected(depth: int) -> None:
    assert_rejected(b"\x91" * depth + b"\xc0")
    assert_rejected(b"\x92\x01" + b"\x91" * depth + b"\xc0")
    assert_rejected(b"\x92\x01\x92\x03" + b"\x91" * depth + b"\xc0")


def test_deeply_nested_maps_are_rejected() -> None:
    assert_rejected(b"\x92\x01" + b"\x81\xa1k" * 100_000 + b"\xc0")


@pytest.mark.parametrize(
    "frame",
    [
        b"\xdd\xff\xff\xff\xff",  # array32 of 4 billion items
        b"\x92\x01\xdd\xff\xff\xff\xff",
        b"\x92\x01\x92\x01\xdd\xff\xff\xff\xff",  # inside Task.args' place, roughly
        b"\xdf\xff\xff\xff\xff",  # map32
        b"\x92\x01\xc6\xff\xff\xff\xff",  # bin32 of 4 GiB
        b"\x92\x01\xdb\xff\xff\xff\xff",  # str32 of 4 GiB
        b"\x92\x01\xc9\xff\xff\xff\xff\x05",  # ext32 of 4 GiB
        b"\x92\x01\xdc\xff\xff" * 3,  # array16 of 65535 items, nested
    ],
    ids=lambda frame: frame.hex(),
)
def test_tiny_frame_declaring_huge_length_fails_fast(frame: bytes) -> None:
    tracemalloc.start()
    try:
        started = time.perf_counter()
        assert_rejected(frame)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5
    assert peak < 4 * 1024 * 1024


def test_frame_over_max_frame_bytes_is_rejected() -> None:
    frame = encode([example(kind) for kind in ALL_MESSAGES])
    assert decode(frame, max_frame_bytes=len(frame)) == [example(kind) for kind in ALL_MESSAGES]
    error = assert_rejected(frame, max_frame_bytes=len(frame) - 1)
    assert str(len(frame) - 1) in str(error)
    assert_rejected(memoryview(frame), max_frame_bytes=len(frame) - 1)
    assert_rejected(frame, max_frame_bytes=0)


def test_max_frame_bytes_is_checked_before_parsing() -> None:
    # A huge but valid frame (1 MiB of bytes in one field) is refused by size, not parsed.
    frame = encode_one(TaskCancel(b"x" * (1 << 20)))
    error = assert_rejected(frame, max_frame_bytes=1024)
    assert str(len(frame)) in str(error)


# -- fuzzing --------------------------------------------------------------------------------------


def _decode_or_protocol_error(frame: bytes) -> None:
    """Decoding either fails with ProtocolError or yields messages that re-encode stably."""
    try:
        messages = decode(frame)
    except ProtocolError:
        return
    assert all(isinstance(message, ALL_MESSAGES) for message in messages)
    again = encode(messages)
    assert encode(decode(again)) == again


_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_msgpack_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
_msgpack_values = st.recursive(
    _msgpack_scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=30,
)


@_FUZZ
@given(st.binary(max_size=256))
def test_fuzz_arbitrary_bytes(frame: bytes) -> None:
    _decode_or_protocol_error(frame)


@_FUZZ
@given(_msgpack_values)
def test_fuzz_arbitrary_msgpack_structures(structure: Any) -> None:
    _decode_or_protocol_error(msgpack.packb(structure, use_bin_type=True))


@st.composite
def _near_valid_wire_message(draw: st.DrawFn) -> list[Any]:
    """A message's wire array where each part is either valid or arbitrary, so fuzzing reaches every field check."""
    kind = draw(st.sampled_from(ALL_MESSAGES))
    valid = wire(example(kind))
    parts = [draw(st.one_of(st.just(part), _msgpack_values)) for part in valid]
    if draw(st.booleans()):
        del parts[draw(st.integers(0, len(parts) - 1)) :]
    if draw(st.booleans()):
        parts.extend(draw(st.lists(_msgpack_values, max_size=2)))
    return parts


@_FUZZ
@given(
    st.one_of(st.just(PROTOCOL_VERSION), _msgpack_scalars),
    st.lists(st.one_of(_near_valid_wire_message(), st.lists(_msgpack_values, max_size=6)), max_size=4),
    st.booleans(),
)
def test_fuzz_frame_shaped_structures(version: Any, messages: list[list[Any]], use_bin: bool) -> None:
    _decode_or_protocol_error(msgpack.packb([version, *messages], use_bin_type=use_bin))


@_FUZZ
@given(
    st.lists(st.sampled_from(ALL_MESSAGES), min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255), st.sampled_from(["flip", "insert", "delete"]))),
)
def test_fuzz_mutated_valid_frames(kinds: list[type[Message]], mutations: list[tuple[int, int, str]]) -> None:
    frame = bytearray(encode([example(kind) for kind in kinds]))
    for position, byte, how in mutations:
        index = position % (len(frame) + 1)
        if how == "insert":
            frame.insert(index, byte)
        elif frame and how == "flip":
            frame[index % len(frame)] = byte
        elif frame:
            del frame[index % len(frame)]
    _decode_or_protocol_error(bytes(frame))


# -- the schema is pinned to the protocol version --------------------------------------------------


def _annotation_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    args = ", ".join(_annotation_name(arg) for arg in typing.get_args(annotation))
    return f"{typing.get_origin(annotation).__name__}[{args}]"


def current_schema() -> str:
    """Every message, record and enum that travels, one per line, in a stable order."""
    lines = []
    for kind in sorted(ALL_MESSAGES, key=lambda kind: kind.TYPE):
        hints = typing.get_type_hints(kind)
        fields = ", ".join(f"{f.name}: {_annotation_name(hints[f.name])}" for f in dataclasses.fields(kind))  # type: ignore[arg-type]
        lines.append(f"{kind.TYPE} {kind.__name__}({fields})")
    for value in vars(messages_module).values():
        if isinstance(value, type) and issubclass(value, Record) and value is not Record:
            hints = typing.get_type_hints(value)
            fields = ", ".join(f"{f.name}: {_annotation_name(hints[f.name])}" for f in dataclasses.fields(value))  # type: ignore[arg-type]
            lines.append(f"record {value.__name__}({fields})")
        elif isinstance(value, type) and issubclass(value, enum.IntEnum) and value is not enum.IntEnum:
            lines.append(f"enum {value.__name__}({', '.join(f'{m.name}={m.value}' for m in value)})")
    return "\n".join(lines)


# The wire schema of each protocol version. Changing a message, record or enum without bumping
# PROTOCOL_VERSION lets peers of different builds misread each other silently; so a change must
# come with a new version and a new entry here (paste current_schema() from the failure message).
PINNED_SCHEMAS = {
    1: """\
1 Task(task_id: bytes, function_id: bytes, function: bytes, args: list[TaskArgument], attempt: int)
2 TaskResult(task_id: bytes, status: TaskStatus, payload: bytes, attempt: int)
3 TaskCancel(task_id: bytes)
4 TaskCancelConfirm(task_id: bytes, confirm: CancelConfirmType)
5 ClientHeartbeat(timestamp: float)
6 ClientHeartbeatEcho(timestamp: float, scheduler_id: bytes)
7 WorkerHeartbeat(timestamp: float, queued_tasks: int, cpu_percent: float, rss_bytes: int)
8 WorkerHeartbeatEcho(timestamp: float, scheduler_id: bytes)
9 ClientDisconnect(kind: DisconnectType)
10 ClientShutdownResponse(accepted: bool, reason: str)
11 DisconnectRequest()
12 DisconnectResponse()
13 SchedulerShutdown(reason: str)
14 ClientDropped(reason: str)
enum TaskStatus(SUCCESS=0, FAILED=1, PROCESSOR_DIED=2, WORKER_DIED=3, TIMEOUT=4, REJECTED=5)
enum CancelConfirmType(CANCELED=0, CANCEL_FAILED=1, CANCEL_NOT_FOUND=2)
enum DisconnectType(DISCONNECT=0, SHUTDOWN=1)
enum ArgumentKind(INLINE=0)
record TaskArgument(name: str, kind: ArgumentKind, data: bytes)""",
    2: """\
1 Task(task_id: bytes, function_id: bytes, function: bytes, args: list[TaskArgument], attempt: int, priority: int, capabilities: dict[str, int], timeout_seconds: float, profiling: bool, stream_output: bool, objects: list[ObjectContent])
2 TaskResult(task_id: bytes, status: TaskStatus, payload: bytes, attempt: int, result_object_id: bytes, duration_seconds: float, cpu_seconds: float, peak_memory_bytes: int)
3 TaskCancel(task_id: bytes)
4 TaskCancelConfirm(task_id: bytes, confirm: CancelConfirmType)
5 ClientHeartbeat(timestamp: float)
6 ClientHeartbeatEcho(timestamp: float, scheduler_id: bytes)
7 WorkerHeartbeat(timestamp: float, queued_tasks: int, cpu_percent: float, rss_bytes: int, capabilities: dict[str, int])
8 WorkerHeartbeatEcho(timestamp: float, scheduler_id: bytes)
9 ClientDisconnect(kind: DisconnectType)
10 ClientShutdownResponse(accepted: bool, reason: str)
11 DisconnectRequest()
12 DisconnectResponse()
13 SchedulerShutdown(reason: str)
14 ClientDropped(reason: str)
15 GraphTask(graph_id: bytes, nodes: list[GraphNode], targets: list[bytes], profiling: bool, stream_output: bool)
16 TaskLog(task_id: bytes, stream: LogStream, text: str)
17 ObjectInstruction(kind: ObjectInstructionType, object_ids: list[bytes], payloads: list[bytes])
18 ObjectRequest(object_ids: list[bytes])
19 ObjectResponse(object_ids: list[bytes], payloads: list[bytes], found: list[bool])
20 BalanceRequest(task_ids: list[bytes])
21 BalanceResponse(task_ids: list[bytes])
22 ProcessorBlocked(blocked: bool)
enum TaskStatus(SUCCESS=0, FAILED=1, PROCESSOR_DIED=2, WORKER_DIED=3, TIMEOUT=4, REJECTED=5)
enum CancelConfirmType(CANCELED=0, CANCEL_FAILED=1, CANCEL_NOT_FOUND=2)
enum DisconnectType(DISCONNECT=0, SHUTDOWN=1)
enum ArgumentKind(INLINE=0, OBJECT=1)
enum ObjectInstructionType(CREATE=0, DELETE=1, CLEAR=2)
enum LogStream(STDOUT=1, STDERR=2)
record TaskArgument(name: str, kind: ArgumentKind, data: bytes)
record ObjectContent(object_id: bytes, data: bytes)
record GraphNode(task_id: bytes, function_id: bytes, function: bytes, args: list[TaskArgument], dependencies: list[bytes])""",
    3: """\
1 Task(task_id: bytes, function_id: bytes, function: bytes, args: list[TaskArgument], attempt: int, priority: int, capabilities: dict[str, int], timeout_seconds: float, profiling: bool, stream_output: bool, objects: list[ObjectContent])
2 TaskResult(task_id: bytes, status: TaskStatus, payload: bytes, attempt: int, result_object_id: bytes, duration_seconds: float, cpu_seconds: float, peak_memory_bytes: int)
3 TaskCancel(task_id: bytes)
4 TaskCancelConfirm(task_id: bytes, confirm: CancelConfirmType)
5 ClientHeartbeat(timestamp: float)
6 ClientHeartbeatEcho(timestamp: float, scheduler_id: bytes)
7 WorkerHeartbeat(timestamp: float, queued_tasks: int, cpu_percent: float, rss_bytes: int, capabilities: dict[str, int])
8 WorkerHeartbeatEcho(timestamp: float, scheduler_id: bytes)
9 ClientDisconnect(kind: DisconnectType)
10 ClientShutdownResponse(accepted: bool, reason: str)
11 DisconnectRequest(drain: bool)
12 DisconnectResponse()
13 SchedulerShutdown(reason: str)
14 ClientDropped(reason: str)
15 GraphTask(graph_id: bytes, nodes: list[GraphNode], targets: list[bytes], profiling: bool, stream_output: bool)
16 TaskLog(task_id: bytes, stream: LogStream, text: str)
17 ObjectInstruction(kind: ObjectInstructionType, object_ids: list[bytes], payloads: list[bytes])
18 ObjectRequest(object_ids: list[bytes])
19 ObjectResponse(object_ids: list[bytes], payloads: list[bytes], found: list[bool])
20 BalanceRequest(task_ids: list[bytes])
21 BalanceResponse(task_ids: list[bytes])
22 ProcessorBlocked(blocked: bool)
23 TaskStarted(task_id: bytes, attempt: int)
24 TaskCredit(count: int)
enum TaskStatus(SUCCESS=0, FAILED=1, PROCESSOR_DIED=2, WORKER_DIED=3, TIMEOUT=4, REJECTED=5)
enum CancelConfirmType(CANCELED=0, CANCEL_FAILED=1, CANCEL_NOT_FOUND=2)
enum DisconnectType(DISCONNECT=0, SHUTDOWN=1)
enum ArgumentKind(INLINE=0, OBJECT=1)
enum ObjectInstructionType(CREATE=0, DELETE=1, CLEAR=2, DELETE_FUNCTIONS=3)
enum LogStream(STDOUT=1, STDERR=2)
record TaskArgument(name: str, kind: ArgumentKind, data: bytes)
record ObjectContent(object_id: bytes, data: bytes)
record GraphNode(task_id: bytes, function_id: bytes, function: bytes, args: list[TaskArgument], dependencies: list[bytes])""",
    # 4: Task and GraphTask name the task they were submitted from (parent_task_id).
    4: """\
1 Task(task_id: bytes, function_id: bytes, function: bytes, args: list[TaskArgument], attempt: int, priority: int, capabilities: dict[str, int], timeout_seconds: float, profiling: bool, stream_output: bool, objects: list[ObjectContent], parent_task_id: bytes)
2 TaskResult(task_id: bytes, status: TaskStatus, payload: bytes, attempt: int, result_object_id: bytes, duration_seconds: float, cpu_seconds: float, peak_memory_bytes: int)
3 TaskCancel(task_id: bytes)
4 TaskCancelConfirm(task_id: bytes, confirm: CancelConfirmType)
5 ClientHeartbeat(timestamp: float)
6 ClientHeartbeatEcho(timestamp: float, scheduler_id: bytes)
7 WorkerHeartbeat(timestamp: float, queued_tasks: int, cpu_percent: float, rss_bytes: int, capabilities: dict[str, int])
8 WorkerHeartbeatEcho(timestamp: float, scheduler_id: bytes)
9 ClientDisconnect(kind: DisconnectType)
10 ClientShutdownResponse(accepted: bool, reason: str)
11 DisconnectRequest(drain: bool)
12 DisconnectResponse()
13 SchedulerShutdown(reason: str)
14 ClientDropped(reason: str)
15 GraphTask(graph_id: bytes, nodes: list[GraphNode], targets: list[bytes], profiling: bool, stream_output: bool, parent_task_id: bytes)
16 TaskLog(task_id: bytes, stream: LogStream, text: str)
17 ObjectInstruction(kind: ObjectInstructionType, object_ids: list[bytes], payloads: list[bytes])
18 ObjectRequest(object_ids: list[bytes])
19 ObjectResponse(object_ids: list[bytes], payloads: list[bytes], found: list[bool])
20 BalanceRequest(task_ids: list[bytes])
21 BalanceResponse(task_ids: list[bytes])
22 ProcessorBlocked(blocked: bool)
23 TaskStarted(task_id: bytes, attempt: int)
24 TaskCredit(count: int)
enum TaskStatus(SUCCESS=0, FAILED=1, PROCESSOR_DIED=2, WORKER_DIED=3, TIMEOUT=4, REJECTED=5)
enum CancelConfirmType(CANCELED=0, CANCEL_FAILED=1, CANCEL_NOT_FOUND=2)
enum DisconnectType(DISCONNECT=0, SHUTDOWN=1)
enum ArgumentKind(INLINE=0, OBJECT=1)
enum ObjectInstructionType(CREATE=0, DELETE=1, CLEAR=2, DELETE_FUNCTIONS=3)
enum LogStream(STDOUT=1, STDERR=2)
record TaskArgument(name: str, kind: ArgumentKind, data: bytes)
record ObjectContent(object_id: bytes, data: bytes)
record GraphNode(task_id: bytes, function_id: bytes, function: bytes, args: list[TaskArgument], dependencies: list[bytes])""",
    # 5: NO_WORKER and MISSING_OBJECTS statuses; TaskLog counts the output a hop dropped (dropped_bytes).
    5: """\
1 Task(task_id: bytes, function_id: bytes, function: bytes, args: list[TaskArgument], attempt: int, priority: int, capabilities: dict[str, int], timeout_seconds: float, profiling: bool, stream_output: bool, objects: list[ObjectContent], parent_task_id: bytes)
2 TaskResult(task_id: bytes, status: TaskStatus, payload: bytes, attempt: int, result_object_id: bytes, duration_seconds: float, cpu_seconds: float, peak_memory_bytes: int)
3 TaskCancel(task_id: bytes)
4 TaskCancelConfirm(task_id: bytes, confirm: CancelConfirmType)
5 ClientHeartbeat(timestamp: float)
6 ClientHeartbeatEcho(timestamp: float, scheduler_id: bytes)
7 WorkerHeartbeat(timestamp: float, queued_tasks: int, cpu_percent: float, rss_bytes: int, capabilities: dict[str, int])
8 WorkerHeartbeatEcho(timestamp: float, scheduler_id: bytes)
9 ClientDisconnect(kind: DisconnectType)
10 ClientShutdownResponse(accepted: bool, reason: str)
11 DisconnectRequest(drain: bool)
12 DisconnectResponse()
13 SchedulerShutdown(reason: str)
14 ClientDropped(reason: str)
15 GraphTask(graph_id: bytes, nodes: list[GraphNode], targets: list[bytes], profiling: bool, stream_output: bool, parent_task_id: bytes)
16 TaskLog(task_id: bytes, stream: LogStream, text: str, dropped_bytes: int)
17 ObjectInstruction(kind: ObjectInstructionType, object_ids: list[bytes], payloads: list[bytes])
18 ObjectRequest(object_ids: list[bytes])
19 ObjectResponse(object_ids: list[bytes], payloads: list[bytes], found: list[bool])
20 BalanceRequest(task_ids: list[bytes])
21 BalanceResponse(task_ids: list[bytes])
22 ProcessorBlocked(blocked: bool)
23 TaskStarted(task_id: bytes, attempt: int)
24 TaskCredit(count: int)
enum TaskStatus(SUCCESS=0, FAILED=1, PROCESSOR_DIED=2, WORKER_DIED=3, TIMEOUT=4, REJECTED=5, NO_WORKER=6, MISSING_OBJECTS=7)
enum CancelConfirmType(CANCELED=0, CANCEL_FAILED=1, CANCEL_NOT_FOUND=2)
enum DisconnectType(DISCONNECT=0, SHUTDOWN=1)
enum ArgumentKind(INLINE=0, OBJECT=1)
enum ObjectInstructionType(CREATE=0, DELETE=1, CLEAR=2, DELETE_FUNCTIONS=3)
enum LogStream(STDOUT=1, STDERR=2)
record TaskArgument(name: str, kind: ArgumentKind, data: bytes)
record ObjectContent(object_id: bytes, data: bytes)
record GraphNode(task_id: bytes, function_id: bytes, function: bytes, args: list[TaskArgument], dependencies: list[bytes])""",
    6: """\
1 Task(task_id: bytes, function_id: bytes, function: bytes, args: list[TaskArgument], attempt: int, priority: int, capabilities: dict[str, int], timeout_seconds: float, profiling: bool, stream_output: bool, objects: list[ObjectContent], parent_task_id: bytes, function_name: str)
2 TaskResult(task_id: bytes, status: TaskStatus, payload: bytes, attempt: int, result_object_id: bytes, duration_seconds: float, cpu_seconds: float, peak_memory_bytes: int, load_seconds: float, serialize_seconds: float, result_bytes: int, queue_wait_seconds: float, transfer_seconds: float)
3 TaskCancel(task_id: bytes)
4 TaskCancelConfirm(task_id: bytes, confirm: CancelConfirmType)
5 ClientHeartbeat(timestamp: float)
6 ClientHeartbeatEcho(timestamp: float, scheduler_id: bytes)
7 WorkerHeartbeat(timestamp: float, queued_tasks: int, cpu_percent: float, rss_bytes: int, capabilities: dict[str, int], processors_running: int, processors_parked: int, processors_idle: int)
8 WorkerHeartbeatEcho(timestamp: float, scheduler_id: bytes)
9 ClientDisconnect(kind: DisconnectType)
10 ClientShutdownResponse(accepted: bool, reason: str)
11 DisconnectRequest(drain: bool)
12 DisconnectResponse()
13 SchedulerShutdown(reason: str)
14 ClientDropped(reason: str)
15 GraphTask(graph_id: bytes, nodes: list[GraphNode], targets: list[bytes], profiling: bool, stream_output: bool, parent_task_id: bytes)
16 TaskLog(task_id: bytes, stream: LogStream, text: str, dropped_bytes: int)
17 ObjectInstruction(kind: ObjectInstructionType, object_ids: list[bytes], payloads: list[bytes])
18 ObjectRequest(object_ids: list[bytes])
19 ObjectResponse(object_ids: list[bytes], payloads: list[bytes], found: list[bool])
20 BalanceRequest(task_ids: list[bytes])
21 BalanceResponse(task_ids: list[bytes])
22 ProcessorBlocked(blocked: bool)
23 TaskStarted(task_id: bytes, attempt: int)
24 TaskCredit(count: int)
25 StatusRequest(request_id: int)
26 StatusSnapshot(request_id: int, now: float, wall_time: float, scheduler: SchedulerStatus, clients: list[ClientStatus], workers: list[WorkerStatus])
27 StatusEvents(now: float, wall_time: float, tasks: list[TaskEventRecord], peers: list[PeerEventRecord], dropped: int)
enum TaskStatus(SUCCESS=0, FAILED=1, PROCESSOR_DIED=2, WORKER_DIED=3, TIMEOUT=4, REJECTED=5, NO_WORKER=6, MISSING_OBJECTS=7)
enum CancelConfirmType(CANCELED=0, CANCEL_FAILED=1, CANCEL_NOT_FOUND=2)
enum DisconnectType(DISCONNECT=0, SHUTDOWN=1)
enum ArgumentKind(INLINE=0, OBJECT=1)
enum ObjectInstructionType(CREATE=0, DELETE=1, CLEAR=2, DELETE_FUNCTIONS=3)
enum LogStream(STDOUT=1, STDERR=2)
record TaskArgument(name: str, kind: ArgumentKind, data: bytes)
record ObjectContent(object_id: bytes, data: bytes)
record GraphNode(task_id: bytes, function_id: bytes, function: bytes, args: list[TaskArgument], dependencies: list[bytes], function_name: str)
enum WorkerState(ACTIVE=0, DRAINING=1, LOST=2)
enum TaskEventKind(SUBMITTED=0, STARTED=1, FINISHED=2, FAILED=3, CANCELLED=4, RETRIED=5)
enum PeerEventKind(WORKER_JOINED=0, WORKER_LEFT=1, WORKER_DIED=2, WORKER_DRAINING=3, CLIENT_JOINED=4, CLIENT_LEFT=5)
record SchedulerStatus(scheduler_id: bytes, version: str, uptime_seconds: float, cpu_percent: float, rss_bytes: int, messages_in_per_second: float, messages_out_per_second: float, tasks_by_state: dict[str, int], tasks_total: dict[str, int], objects: int, object_bytes: int, feed_dropped: int)
record ClientStatus(client_id: bytes, queued: int, running: int, done: int, failed: int, cancelled: int, credits_in_use: int, connected_seconds: float)
record RunningTask(task_id: bytes, function_name: str, client_id: bytes, running_seconds: float)
record WorkerStatus(worker_id: bytes, state: WorkerState, capabilities: dict[str, int], queued: int, running: list[RunningTask], processors_running: int, processors_parked: int, processors_idle: int, cpu_percent: float, rss_bytes: int, heartbeat_age_seconds: float, done: int)
record TaskEventRecord(kind: TaskEventKind, time: float, task_id: bytes, client_id: bytes, worker_id: bytes, function_name: str, attempt: int, queue_wait_seconds: float, run_seconds: float, peak_memory_bytes: int, detail: str)
record PeerEventRecord(kind: PeerEventKind, time: float, peer_id: bytes, detail: str)""",
    7: """\
1 Task(task_id: bytes, function_id: bytes, function: bytes, args: list[TaskArgument], attempt: int, priority: int, capabilities: dict[str, int], timeout_seconds: float, profiling: bool, stream_output: bool, objects: list[ObjectContent], parent_task_id: bytes, function_name: str)
2 TaskResult(task_id: bytes, status: TaskStatus, payload: bytes, attempt: int, result_object_id: bytes, duration_seconds: float, cpu_seconds: float, peak_memory_bytes: int, load_seconds: float, serialize_seconds: float, result_bytes: int, queue_wait_seconds: float, transfer_seconds: float)
3 TaskCancel(task_id: bytes)
4 TaskCancelConfirm(task_id: bytes, confirm: CancelConfirmType)
5 ClientHeartbeat(timestamp: float)
6 ClientHeartbeatEcho(timestamp: float, scheduler_id: bytes)
7 WorkerHeartbeat(timestamp: float, queued_tasks: int, cpu_percent: float, rss_bytes: int, capabilities: dict[str, int], processors_running: int, processors_parked: int, processors_idle: int)
8 WorkerHeartbeatEcho(timestamp: float, scheduler_id: bytes)
9 ClientDisconnect(kind: DisconnectType)
10 ClientShutdownResponse(accepted: bool, reason: str)
11 DisconnectRequest(drain: bool)
12 DisconnectResponse()
13 SchedulerShutdown(reason: str)
14 ClientDropped(reason: str)
15 GraphTask(graph_id: bytes, nodes: list[GraphNode], targets: list[bytes], profiling: bool, stream_output: bool, parent_task_id: bytes)
16 TaskLog(task_id: bytes, stream: LogStream, text: str, dropped_bytes: int)
17 ObjectInstruction(kind: ObjectInstructionType, object_ids: list[bytes], payloads: list[bytes])
18 ObjectRequest(object_ids: list[bytes])
19 ObjectResponse(object_ids: list[bytes], payloads: list[bytes], found: list[bool])
20 BalanceRequest(task_ids: list[bytes])
21 BalanceResponse(task_ids: list[bytes])
22 ProcessorBlocked(blocked: bool)
23 TaskStarted(task_id: bytes, attempt: int)
24 TaskCredit(count: int)
25 StatusRequest(request_id: int)
26 StatusSnapshot(request_id: int, now: float, wall_time: float, scheduler: SchedulerStatus, clients: list[ClientStatus], workers: list[WorkerStatus])
27 StatusEvents(now: float, wall_time: float, tasks: list[TaskEventRecord], peers: list[PeerEventRecord], dropped: int)
28 WorkerManagerHeartbeat(name: str, capabilities: dict[str, int], min_workers: int, max_workers: int, tasks_per_worker: int, start_seconds: float, workers: list[ManagedWorkerRecord])
29 WorkerManagerCommand(target: int, stop_workers: list[str])
enum TaskStatus(SUCCESS=0, FAILED=1, PROCESSOR_DIED=2, WORKER_DIED=3, TIMEOUT=4, REJECTED=5, NO_WORKER=6, MISSING_OBJECTS=7)
enum CancelConfirmType(CANCELED=0, CANCEL_FAILED=1, CANCEL_NOT_FOUND=2)
enum DisconnectType(DISCONNECT=0, SHUTDOWN=1)
enum ArgumentKind(INLINE=0, OBJECT=1)
enum ObjectInstructionType(CREATE=0, DELETE=1, CLEAR=2, DELETE_FUNCTIONS=3)
enum LogStream(STDOUT=1, STDERR=2)
record TaskArgument(name: str, kind: ArgumentKind, data: bytes)
record ObjectContent(object_id: bytes, data: bytes)
record GraphNode(task_id: bytes, function_id: bytes, function: bytes, args: list[TaskArgument], dependencies: list[bytes], function_name: str)
enum WorkerState(ACTIVE=0, DRAINING=1, LOST=2)
enum TaskEventKind(SUBMITTED=0, STARTED=1, FINISHED=2, FAILED=3, CANCELLED=4, RETRIED=5)
enum PeerEventKind(WORKER_JOINED=0, WORKER_LEFT=1, WORKER_DIED=2, WORKER_DRAINING=3, CLIENT_JOINED=4, CLIENT_LEFT=5)
record SchedulerStatus(scheduler_id: bytes, version: str, uptime_seconds: float, cpu_percent: float, rss_bytes: int, messages_in_per_second: float, messages_out_per_second: float, tasks_by_state: dict[str, int], tasks_total: dict[str, int], objects: int, object_bytes: int, feed_dropped: int)
record ClientStatus(client_id: bytes, queued: int, running: int, done: int, failed: int, cancelled: int, credits_in_use: int, connected_seconds: float)
record RunningTask(task_id: bytes, function_name: str, client_id: bytes, running_seconds: float)
record WorkerStatus(worker_id: bytes, state: WorkerState, capabilities: dict[str, int], queued: int, running: list[RunningTask], processors_running: int, processors_parked: int, processors_idle: int, cpu_percent: float, rss_bytes: int, heartbeat_age_seconds: float, done: int)
record TaskEventRecord(kind: TaskEventKind, time: float, task_id: bytes, client_id: bytes, worker_id: bytes, function_name: str, attempt: int, queue_wait_seconds: float, run_seconds: float, peak_memory_bytes: int, detail: str)
record PeerEventRecord(kind: PeerEventKind, time: float, peer_id: bytes, detail: str)
enum ManagedWorkerState(STARTING=0, RUNNING=1, FAILED=2)
record ManagedWorkerRecord(worker_name: str, state: ManagedWorkerState, detail: str)""",
}

# Version 8 changed how frames carry big payloads and how content ids are computed, not the messages.
PINNED_SCHEMAS[8] = PINNED_SCHEMAS[7]
# Version 9 added segmented payloads to frames (a layout entry [ordinal, count]) and TaskResultWanted.
PINNED_SCHEMAS[9] = PINNED_SCHEMAS[8].replace(
    "29 WorkerManagerCommand(target: int, stop_workers: list[str])",
    "29 WorkerManagerCommand(target: int, stop_workers: list[str])\n30 TaskResultWanted(task_ids: list[bytes])",
)


def test_schema_changes_come_with_a_new_protocol_version() -> None:
    schema = current_schema()
    assert PROTOCOL_VERSION in PINNED_SCHEMAS, f"pin the schema of version {PROTOCOL_VERSION}:\n{schema}"
    assert schema == PINNED_SCHEMAS[PROTOCOL_VERSION], (
        f"the wire schema changed but PROTOCOL_VERSION is still {PROTOCOL_VERSION}: bump it in "
        f"scaler/protocol/version.py and pin the new schema here:\n{schema}"
    )
