"""The scheduler core's stores and planners on their own: what each returns, and what its validate() catches."""

from __future__ import annotations

import pytest

from scaler.protocol.content_id import content_id
from scaler.protocol.messages import ArgumentKind, ObjectContent, Task, TaskArgument
from scaler.scheduler import placement
from scaler.scheduler.clients import ClientTable
from scaler.scheduler.credits import Credits
from scaler.scheduler.functions import FunctionRegistry
from scaler.scheduler.graph_table import GraphTable
from scaler.scheduler.object_store import ObjectStore
from scaler.scheduler.placement import Assign, Drop, Reject, SetAside, plan_assignments
from scaler.scheduler.task_table import TaskRecord
from scaler.scheduler.workers import WorkerRecord, WorkerTable
from scaler.utility.invariants import InvariantError

FN_BYTES = b"pickled-function"
FN = content_id(FN_BYTES)


def test_a_diamond_graph_propagates_success_and_failure() -> None:
    graphs = GraphTable()
    # a -> b, a -> c, (b, c) -> d
    ready = graphs.add(b"g", [(b"a", []), (b"b", [b"a"]), (b"c", [b"a"]), (b"d", [b"b", b"c", b"b"])])
    assert ready == [b"a"] and set(graphs[b"g"]) == {b"a", b"b", b"c", b"d"}
    assert graphs.needs_result(b"a") and not graphs.needs_result(b"d")
    assert graphs.node_done(b"a", ok=True) == ([b"b", b"c"], [])
    assert graphs.remove(b"a") == ([], False)
    assert graphs.node_done(b"b", ok=True) == ([], [])  # d still misses c
    assert graphs.awaits_inputs(b"d")
    assert graphs.remove(b"b") == ([], False)
    assert graphs.node_done(b"c", ok=False) == ([], [b"d"])
    assert graphs.remove(b"c") == ([b"a"], False)  # b and c, which needed a's result, are gone
    assert graphs.remove(b"d") == ([b"b", b"c"], True)  # nobody needs b's or c's result; the graph is over
    assert b"g" not in graphs and graphs == {}
    graphs.validate()


def test_a_failure_reaches_every_node_that_needs_it_once() -> None:
    graphs = GraphTable()
    graphs.add(b"g", [(b"a", []), (b"b", [b"a"]), (b"c", [b"a", b"b"]), (b"d", [b"c"]), (b"e", [])])
    assert sorted(graphs.node_done(b"a", ok=False)[1]) == [b"b", b"c", b"d"]
    graphs.validate()


def test_functions_are_dropped_with_their_last_user() -> None:
    functions = FunctionRegistry()
    assert functions.accept(FN, b"", new_user=True) == (
        "the scheduler does not know this task's function; the client must resend it"
    )
    assert functions.accept(FN, b"other bytes", new_user=True) == "the function's id is not the hash of its bytes"
    assert functions.accept(FN, FN_BYTES, new_user=True) is None
    assert functions.accept(FN, b"", new_user=True) is None  # a second client names it
    functions.validate([{FN}, {FN}])
    with pytest.raises(InvariantError):
        functions.validate([{FN}])
    assert functions.remove_user([FN]) == []
    assert functions.remove_user([FN]) == [FN] and FN not in functions


def test_credits_come_back_once_per_client_per_turn() -> None:
    credits = Credits(limit=2)
    clients = ClientTable()
    client, new = clients.register_or_refresh(b"c", 0.0)
    assert new and clients.register_or_refresh(b"c", 1.0) == (client, False)
    records = [TaskRecord(Task(bytes([n]), FN, b"", [], 0), b"c") for n in range(4)]
    for record in records:
        assert credits.problem(client) == ""
        credits.take(client, record)
        client.tasks.add(record.task.task_id)
    assert "over twice" in credits.problem(client)
    tasks = {record.task.task_id: record for record in records}
    credits.validate(clients, tasks)
    credits.give_back(records[0], client)
    credits.give_back(records[1], client)
    assert credits.grants(clients) == [(b"c", 2)] and credits.grants(clients) == []
    credits.validate(clients, tasks)
    client.credits_held += 1  # a count that no task holds
    with pytest.raises(InvariantError, match="backpressure count"):
        credits.validate(clients, tasks)


def test_a_departed_client_is_remembered_with_its_reason() -> None:
    clients = ClientTable(memory=1)
    clients.register_or_refresh(b"a", 0.0)
    assert clients.remove(b"a", "it left") is not None and clients.departure(b"a") == "it left"
    assert clients.remove(b"b", "it left too") is None and clients.departure(b"a") is None  # memory of one
    assert clients.silent(10.0, 5.0) == []
    clients.validate()


def test_plan_assignments_plans_and_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "MAX_PAYLOAD_BYTES", 1000)  # rather than a 256 MiB argument
    workers = WorkerTable()
    workers.register_or_refresh(b"w1", 0.0, {})
    workers.register_or_refresh(b"w2", 0.0, {"gpu": 1})
    workers[b"w1"].tasks[b"busy"] = None
    objects = ObjectStore()
    objects.put(b"c", b"o", b"object bytes")
    functions = FunctionRegistry()
    functions.accept(FN, FN_BYTES, new_user=True)
    big = TaskArgument("", ArgumentKind.INLINE, b"x" * 1001)
    tasks = {
        b"t1": TaskRecord(Task(b"t1", FN, b"", [TaskArgument("", ArgumentKind.OBJECT, b"o")], 0), b"c"),
        b"t2": TaskRecord(Task(b"t2", FN, b"", [TaskArgument("", ArgumentKind.OBJECT, b"o")], 0), b"c"),
        b"cpu": TaskRecord(Task(b"cpu", FN, b"", [], 0, capabilities={"tpu": 1}), b"c"),
        b"big": TaskRecord(Task(b"big", FN, b"", [big], 0), b"c"),
        b"gone": TaskRecord(Task(b"gone", b"f" * 16, b"", [], 0), b"c"),
        b"left": TaskRecord(Task(b"left", FN, b"", [], 0), b"c"),
    }
    queued = iter([b"t1", b"t2", b"cpu", b"big", b"gone", b"left"])
    steps = plan_assignments(queued, workers, tasks, functions, objects, per_worker_queue_size=2)
    content = ObjectContent(b"o", b"object bytes")
    assert steps == [
        Assign(b"t1", b"w2", FN_BYTES, [content]),  # w2 holds less
        Assign(b"t2", b"w1", FN_BYTES, [content]),
        SetAside(b"cpu"),  # no worker has a tpu
        Reject(b"big", "its function and object arguments together exceed the message size limit"),
        Drop(b"gone"),
        Assign(b"left", b"w2", b"", []),  # the plan already sends w2 the function
    ]
    assert list(queued) == []  # every id read got a step, and all were read: w2 still has room
    assert list(workers[b"w1"].tasks) == [b"busy"] and not workers[b"w2"].tasks and not workers[b"w2"].functions


def test_a_worker_keeps_no_refusal_of_a_task_it_lost() -> None:
    workers = WorkerTable()
    workers.register_or_refresh(b"w", 0.0, {})
    worker: WorkerRecord = workers[b"w"]
    worker.tasks[b"t"] = None
    worker.kept.add(b"t")
    workers.validate(per_worker_queue_size=1)
    workers.unassign(b"w", b"t")
    assert not worker.kept
    worker.kept.add(b"t")
    with pytest.raises(InvariantError, match="refusal"):
        workers.validate(per_worker_queue_size=1)
