"""What ``Client`` sends, checked with a fake agent in place of the socket thread.

These pin the client side of protocol v2: objects, automatic objects for big arguments, task
options, graphs (one ``GraphTask``, the runner sent once), and that invalid graphs send nothing.
"""

from __future__ import annotations

import graphlib
import operator
import pickle
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from scaler.client.client import INLINE_ARGUMENT_BYTES, Client
from scaler.client.graph_runner import GraphSerializer, run_graph_node
from scaler.client.object_reference import ObjectReference
from scaler.protocol.messages import (
    ArgumentKind,
    GraphTask,
    Message,
    ObjectInstruction,
    ObjectInstructionType,
    Task,
    TaskResult,
    TaskStatus,
)
from scaler.utility import task_context


class FakeAgent:
    """Stands in for ``ClientAgent``: connected at once, collects what the client sends."""

    def __init__(self, address: str, identity: bytes, manager: Any, *_: Any) -> None:
        self.manager = manager
        self.sent: list[Message] = []
        self.connected = threading.Event()
        self.error = None
        self.heard_anything = True

    def start(self) -> None:
        self.connected.set()

    def send(self, message: Message) -> None:
        self.sent.append(message)

    def stop(self) -> None:
        pass

    def is_alive(self) -> bool:
        return True

    def take_credit(self, block: bool = True) -> bool:
        return True  # no backpressure here: these tests look at the messages


@pytest.fixture
def make_client() -> Iterator[Any]:
    made: list[Client] = []

    def make(**options: Any) -> Client:
        client = Client("tcp://127.0.0.1:1", agent_factory=FakeAgent, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.disconnect()


def sent(client: Client, kind: type[Message]) -> list[Any]:
    agent: FakeAgent = client._agent  # type: ignore[assignment]
    return [message for message in agent.sent if isinstance(message, kind)]


def instructions(client: Client, kind: ObjectInstructionType) -> list[ObjectInstruction]:
    return [message for message in sent(client, ObjectInstruction) if message.kind is kind]


def finish(client: Client, task_id: bytes) -> None:
    client._manager.on_task_result(TaskResult(task_id, TaskStatus.SUCCESS, pickle.dumps(None), 0))


# -- objects -------------------------------------------------------------------------------------------


def test_send_object_creates_once_per_content(make_client: Any) -> None:
    client = make_client()
    first = client.send_object([1, 2, 3], name="numbers")
    second = client.send_object([1, 2, 3])
    other = client.send_object([4])
    assert first == second and first != other
    assert (first.name, second.name) == ("numbers", "list")
    creates = instructions(client, ObjectInstructionType.CREATE)
    assert [message.object_ids for message in creates] == [[first.object_id], [other.object_id]]
    assert pickle.loads(creates[0].payloads[0]) == [1, 2, 3]
    assert first.size == len(creates[0].payloads[0])


def test_object_references_become_object_arguments(make_client: Any) -> None:
    client = make_client()
    reference = client.send_object("data")
    client.submit(len, reference)
    client.submit(operator.add, "x", b=reference)
    first, second = sent(client, Task)
    assert first.args[0].kind is ArgumentKind.OBJECT and first.args[0].data == reference.object_id
    assert second.args[0].kind is ArgumentKind.INLINE
    assert (second.args[1].name, second.args[1].kind) == ("b", ArgumentKind.OBJECT)


def test_a_big_argument_is_uploaded_once_for_many_tasks(make_client: Any) -> None:
    client = make_client()
    big = b"x" * (INLINE_ARGUMENT_BYTES + 1)
    futures = [client.submit(len, big, i) for i in range(100)]
    creates = instructions(client, ObjectInstructionType.CREATE)
    assert len(creates) == 1
    object_id = creates[0].object_ids[0]
    tasks = sent(client, Task)
    assert all(task.args[0] == type(task.args[0])("", ArgumentKind.OBJECT, object_id) for task in tasks)
    assert all(task.args[1].kind is ArgumentKind.INLINE for task in tasks)
    assert len(futures) == 100


def test_an_argument_at_the_threshold_stays_inline(make_client: Any) -> None:
    client = make_client()
    payload_overhead = len(pickle.dumps(b"", protocol=pickle.HIGHEST_PROTOCOL))
    client.submit(len, b"x" * (INLINE_ARGUMENT_BYTES - payload_overhead - 16))
    (task,) = sent(client, Task)
    assert task.args[0].kind is ArgumentKind.INLINE
    assert instructions(client, ObjectInstructionType.CREATE) == []


def test_automatic_objects_are_freed_when_unused_and_over_the_cache(make_client: Any) -> None:
    client = make_client(object_cache_bytes=3 * INLINE_ARGUMENT_BYTES)
    ids = []
    for i in range(10):
        client.submit(len, bytes([i]) * (INLINE_ARGUMENT_BYTES + 1))
        task = sent(client, Task)[-1]
        ids.append(task.args[0].data)
        finish(client, task.task_id)
    deleted = [i for message in instructions(client, ObjectInstructionType.DELETE) for i in message.object_ids]
    assert deleted == ids[:8]  # the cache holds two objects of this size; the oldest go first
    assert client.statistics()["objects_automatic"] == 2


def test_an_object_used_by_a_pending_task_is_never_freed(make_client: Any) -> None:
    client = make_client(object_cache_bytes=0)
    client.submit(len, b"a" * (INLINE_ARGUMENT_BYTES + 1))
    pending = sent(client, Task)[-1]
    client.submit(len, b"b" * (INLINE_ARGUMENT_BYTES + 1))
    finish(client, sent(client, Task)[-1].task_id)
    deleted = [i for message in instructions(client, ObjectInstructionType.DELETE) for i in message.object_ids]
    assert pending.args[0].data not in deleted and len(deleted) == 1
    finish(client, pending.task_id)
    deleted = [i for message in instructions(client, ObjectInstructionType.DELETE) for i in message.object_ids]
    assert pending.args[0].data in deleted


def test_clear_sends_clear_and_later_objects_are_created_again(make_client: Any) -> None:
    client = make_client()
    client.send_object(1234)
    client.clear()
    client.send_object(1234)
    kinds = [message.kind for message in sent(client, ObjectInstruction)]
    assert kinds == [ObjectInstructionType.CREATE, ObjectInstructionType.CLEAR, ObjectInstructionType.CREATE]


# -- task options ----------------------------------------------------------------------------------------


def test_submit_verbose_sets_capabilities_and_priority(make_client: Any) -> None:
    client = make_client()
    client.submit_verbose(operator.add, (1,), {"b": 2}, capabilities={"gpu": 1}, priority=7)
    client.submit(abs, -1)
    verbose, plain = sent(client, Task)
    assert (verbose.capabilities, verbose.priority) == ({"gpu": 1}, 7)
    assert [argument.name for argument in verbose.args] == ["", "b"]
    assert (plain.capabilities, plain.priority) == ({}, 0)


@pytest.mark.parametrize("profiling", [False, True])
@pytest.mark.parametrize("stream_output", [False, True])
def test_profiling_and_stream_output_flags_travel_with_tasks_and_graphs(
    make_client: Any, profiling: bool, stream_output: bool
) -> None:
    client = make_client(profiling=profiling, stream_output=stream_output)
    client.submit(abs, -1)
    client.get({"a": (abs, -1)}, ["a"], block=False)
    (task,) = sent(client, Task)
    (graph,) = sent(client, GraphTask)
    assert (task.profiling, task.stream_output) == (profiling, stream_output)
    assert (graph.profiling, graph.stream_output) == (profiling, stream_output)


def test_tasks_and_graphs_name_the_task_they_are_submitted_from(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client()
    client.submit(abs, -1)
    monkeypatch.setattr(task_context, "_current_task_id", b"parent")  # as inside a running task
    client.submit(abs, -2)
    client.get({"a": (abs, -1)}, ["a"], block=False)
    assert [task.parent_task_id for task in sent(client, Task)] == [b"", b"parent"]
    assert [graph.parent_task_id for graph in sent(client, GraphTask)] == [b"parent"]


# -- graphs ----------------------------------------------------------------------------------------------


def test_a_graph_is_one_message_whose_runner_is_sent_once(make_client: Any) -> None:
    client = make_client()
    graph = {"a": 1, "b": (operator.add, "a", 1), "c": (operator.mul, "b", "b"), "unused": (abs, "c")}
    futures = client.get(graph, ["c", "a"], block=False)
    client.get(graph, ["b"], block=False)
    first, second = sent(client, GraphTask)
    assert len(first.nodes) == 3 and len(second.nodes) == 2
    assert first.targets == [futures["c"].task_id, futures["a"].task_id]
    assert [bool(node.function) for node in first.nodes] == [True, False, False]
    assert not any(node.function for node in second.nodes)
    runner, serializer = pickle.loads(first.nodes[0].function)
    assert runner is run_graph_node and isinstance(serializer, GraphSerializer)
    by_id = {node.task_id: node for node in first.nodes}
    c = by_id[futures["c"].task_id]
    (b_id,) = c.dependencies
    assert [argument.kind for argument in c.args] == [ArgumentKind.INLINE, ArgumentKind.OBJECT]
    assert c.args[1].data == b_id
    assert sent(client, Task) == []


def test_graph_values_that_are_object_references_or_big_are_objects(make_client: Any) -> None:
    client = make_client()
    reference = client.send_object("stored")
    big = list(range(50_000))
    client.get({"r": reference, "big": big, "n": (len, "big")}, ["r", "n"], block=False)
    (graph,) = sent(client, GraphTask)
    object_args = [argument.data for node in graph.nodes for argument in node.args[1:]]
    assert reference.object_id in object_args
    (create,) = instructions(client, ObjectInstructionType.CREATE)[1:]
    assert pickle.loads(create.payloads[0]) == big
    assert create.object_ids[0] in object_args


@pytest.mark.parametrize(
    ("graph", "keys", "error"),
    [
        ({"a": 1}, ["b"], KeyError),
        ({"a": 1}, ["a", "a"], KeyError),
        ({"a": (abs, "b"), "b": (abs, "a")}, ["a"], graphlib.CycleError),
    ],
)
def test_invalid_graphs_raise_before_anything_is_sent(
    make_client: Any, graph: dict[str, Any], keys: list[str], error: type[Exception]
) -> None:
    client = make_client()
    before = list(client._agent.sent)
    with pytest.raises(error):
        client.get(graph, keys)
    assert client._agent.sent == before
    assert client.statistics()["pending"] == 0


def test_keys_must_be_a_list(make_client: Any) -> None:
    client = make_client()
    with pytest.raises(TypeError, match="list of graph keys"):
        client.get({"a": 1}, "a")


def test_no_keys_sends_nothing(make_client: Any) -> None:
    client = make_client()
    assert client.get({"a": 1}, []) == {}
    assert sent(client, GraphTask) == []


def test_graph_objects_are_released_when_every_target_is_done(make_client: Any) -> None:
    client = make_client(object_cache_bytes=0)
    big = b"z" * (INLINE_ARGUMENT_BYTES + 1)
    futures = client.get({"big": big, "x": (len, "big"), "y": (len, "big")}, ["x", "y"], block=False)
    finish(client, futures["x"].task_id)
    assert instructions(client, ObjectInstructionType.DELETE) == []
    finish(client, futures["y"].task_id)
    (delete,) = instructions(client, ObjectInstructionType.DELETE)
    assert delete.object_ids == instructions(client, ObjectInstructionType.CREATE)[0].object_ids


# -- pickling --------------------------------------------------------------------------------------------


def test_a_client_unpickled_in_its_own_process_is_itself(make_client: Any) -> None:
    client = make_client()
    assert pickle.loads(pickle.dumps(client)) is client


def test_object_reference_is_exported() -> None:
    import scaler

    assert scaler.ObjectReference is ObjectReference
