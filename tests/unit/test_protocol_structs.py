"""Message classes as msgspec structs: defaults in the constructor only, and dataclass helpers still work."""

from __future__ import annotations

import dataclasses
import pickle

import msgpack
import pytest

from scaler.errors import ProtocolError
from scaler.protocol import messages
from scaler.protocol.codec import decode, encode, encode_one
from scaler.protocol.messages import (
    ArgumentKind,
    GraphNode,
    GraphTask,
    Task,
    TaskArgument,
    TaskResult,
    TaskStatus,
    WorkerHeartbeat,
)
from scaler.protocol.struct_meta import StructMeta
from scaler.protocol.version import PROTOCOL_VERSION


def _task() -> Task:
    return Task(b"t", b"f", b"", [TaskArgument("", ArgumentKind.INLINE, b"1")], 0)


def test_the_constructor_fills_defaults_and_factories_give_fresh_containers() -> None:
    first, second = _task(), _task()
    assert (first.priority, first.timeout_seconds, first.parent_task_id, first.function_name) == (0, 0.0, b"", "")
    assert first.capabilities == {} and first.objects == []
    assert first.capabilities is not second.capabilities and first.objects is not second.objects
    assert Task(b"t", b"f", b"", [], 0, capabilities={"gpu": 1}).capabilities == {"gpu": 1}
    with pytest.raises(TypeError, match="missing"):
        Task(b"t")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        TaskResult(b"t", TaskStatus.SUCCESS, b"", 0, no_such_field=1)  # type: ignore[call-arg]


def test_a_field_with_a_default_is_still_required_on_the_wire() -> None:
    # msgspec would complete a short array from the defaults; the protocol refuses it.
    (wire,) = msgpack.unpackb(encode_one(_task()), raw=False)[1:]
    assert decode(msgpack.packb([PROTOCOL_VERSION, wire], use_bin_type=True)) == [_task()]
    for cut in range(len(wire) - 8, len(wire)):  # every defaulted field of Task in turn is the first missing
        with pytest.raises(ProtocolError):
            decode(msgpack.packb([PROTOCOL_VERSION, wire[:cut]], use_bin_type=True))


def test_a_nested_record_missing_its_defaulted_field_is_rejected() -> None:
    graph = GraphTask(b"g", [GraphNode(b"n", b"f", b"", [], [], "name")], [b"n"])
    wire = msgpack.unpackb(encode_one(graph), raw=False)[1]
    assert wire[2][0][-1] == "name"
    del wire[2][0][-1]
    with pytest.raises(ProtocolError):
        decode(msgpack.packb([PROTOCOL_VERSION, wire], use_bin_type=True))


def test_dataclass_helpers_work_on_messages() -> None:
    heartbeat = WorkerHeartbeat(1.0, 2, 3.0, 4)
    assert dataclasses.is_dataclass(heartbeat)
    assert [field.name for field in dataclasses.fields(WorkerHeartbeat)][:4] == [
        "timestamp",
        "queued_tasks",
        "cpu_percent",
        "rss_bytes",
    ]
    changed = dataclasses.replace(heartbeat, queued_tasks=9)
    assert type(changed) is WorkerHeartbeat and changed.queued_tasks == 9 and heartbeat.queued_tasks == 2
    assert dataclasses.asdict(heartbeat)["capabilities"] == {}


def test_dataclass_fields_match_what_make_dataclass_builds_for_every_message() -> None:
    # struct_meta builds each field itself (make_dataclass was most of the import's cost): it must
    # give what make_dataclass gives, attribute for attribute.
    attributes = ("name", "type", "default", "default_factory", "init", "repr", "hash", "compare", "metadata")
    classes = [value for value in vars(messages).values() if isinstance(value, StructMeta)]
    assert len(classes) > 30
    for cls in classes:
        specs = []
        for field in dataclasses.fields(cls):
            if field.default_factory is not dataclasses.MISSING:
                spec = dataclasses.field(default_factory=field.default_factory)
            elif field.default is not dataclasses.MISSING:
                spec = dataclasses.field(default=field.default)
            else:
                spec = dataclasses.field()
            specs.append((field.name, field.type, spec))
        expected = dataclasses.fields(dataclasses.make_dataclass(cls.__name__, specs))
        ours = dataclasses.fields(cls)
        assert [field.name for field in ours] == list(cls.__struct_fields__)
        for mine, theirs in zip(ours, expected, strict=True):
            for attribute in (*attributes, "kw_only", "_field_type"):
                assert getattr(mine, attribute) == getattr(theirs, attribute), (cls.__name__, mine.name, attribute)


def test_messages_compare_pickle_and_stay_unhashable_like_dataclasses() -> None:
    task = _task()
    assert task == _task() and task != dataclasses.replace(task, attempt=1)
    assert pickle.loads(pickle.dumps(task)) == task
    with pytest.raises(TypeError):
        hash(task)
    task.attempt = 3  # messages are mutable, as the dataclasses were
    assert task.attempt == 3


def test_encoding_something_that_is_not_a_message_raises_type_error() -> None:
    with pytest.raises(TypeError, match="not a message"):
        encode([_task(), {"not": "a message"}])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not a message"):
        encode_one(7)  # type: ignore[arg-type]
