"""What a queued task costs the scheduler core, and that nothing of a task outlives it.

A queued task keeps one record and the message its client sent, with the function's id and name
shared among the tasks that name them (a decoded message brings its own copies), and no empty
containers of its own. Once every task ended, the core's stores hold nothing of them.
"""

from __future__ import annotations

import pytest

from scaler.protocol import codec
from scaler.protocol.content_id import content_id
from scaler.protocol.messages import (
    ArgumentKind,
    ClientHeartbeat,
    ObjectContent,
    Task,
    TaskArgument,
    TaskCancel,
    TaskResult,
    TaskStatus,
    WorkerHeartbeat,
)
from scaler.scheduler.functions import FunctionRegistry
from scaler.scheduler.state import SchedulerConfig, SchedulerState, Send
from scaler.utility.task_queue import TaskQueue

pytestmark = pytest.mark.timeout(60)

FUNCTION = b"pickled-function"
FUNCTION_ID = content_id(FUNCTION)
CLIENT = b"client-1"
WORKER = b"worker-1"


def decoded_tasks(count: int, first: int = 0) -> list[Task]:
    """Tasks as the server's loop gets them: decoded from one frame, each with its own bytes and strings."""
    tasks = [
        Task(
            b"task-%08d" % number,
            FUNCTION_ID,
            FUNCTION if number == 0 else b"",
            [TaskArgument("", ArgumentKind.INLINE, b"x")],
            0,
            function_name="f" * 20,
        )
        for number in range(first, first + count)
    ]
    decoded = codec.decode(codec.encode(tasks))
    assert all(isinstance(task, Task) for task in decoded)
    return decoded  # type: ignore[return-value]


def test_queued_tasks_share_their_function_id_and_name_and_own_no_empty_containers() -> None:
    state = SchedulerState(SchedulerConfig(max_number_of_tasks_waiting=0))
    state.handle(CLIENT, ClientHeartbeat(0.0), 0.0)
    for task in decoded_tasks(50):
        assert state.handle(CLIENT, task, 0.0) == []
    records = list(state.tasks.values())
    assert len(records) == 50 and state.statistics()["queued"] == 50
    assert len({id(record.task.function_id) for record in records}) == 1
    assert len({id(record.task.function_name) for record in records}) == 1
    assert all(record.task.function_id == FUNCTION_ID for record in records)
    assert all(record.client_objects == () for record in records)
    assert all(record.task.function == b"" and record.task.objects == [] for record in records)
    state.validate()


def test_objects_a_client_attaches_are_dropped_on_arrival() -> None:
    state = SchedulerState()
    state.handle(CLIENT, ClientHeartbeat(0.0), 0.0)
    (task,) = decoded_tasks(1)
    task.objects = [ObjectContent(content_id(b"data"), b"data")]
    state.handle(CLIENT, task, 0.0)
    assert state.tasks[task.task_id].task.objects == []


def test_nothing_of_a_task_remains_once_every_task_ended() -> None:
    state = SchedulerState(SchedulerConfig(per_worker_queue_size=10))
    state.handle(WORKER, WorkerHeartbeat(0.0, 0, 0.0, 0), 0.0)
    state.handle(CLIENT, ClientHeartbeat(0.0), 0.0)
    sent: list[Task] = []
    for task in decoded_tasks(100):
        out = state.handle(CLIENT, task, 0.0)
        sent += [i.message for i in out if isinstance(i, Send) and isinstance(i.message, Task)]
    for number in range(50, 100, 2):  # some cancelled while queued, and left in the queue's heap
        state.handle(CLIENT, TaskCancel(b"task-%08d" % number), 0.0)
    while sent:
        task = sent.pop(0)
        out = state.handle(WORKER, TaskResult(task.task_id, TaskStatus.SUCCESS, b"r", task.attempt), 0.0)
        sent += [i.message for i in out if isinstance(i, Send) and isinstance(i.message, Task)]
    state.validate()
    assert state.tasks == {} and state.statistics()["queued"] == 0
    assert not state.clients[CLIENT].tasks and not state.workers[WORKER].tasks
    assert not state._queue._heap and not state._queue._live  # the cancelled ones' stale entries too


def test_the_task_queue_skips_entries_of_tasks_discarded_or_queued_again() -> None:
    queue = TaskQueue()
    for name in (b"a", b"b", b"c", b"d"):
        queue.push(name, 0)
    queue.push(b"c", 5)  # queued again with a higher priority: its first entry is stale
    queue.discard(b"b")
    queue.push(b"d", 0, front=True)
    assert queue.ordered_ids() == [b"c", b"d", b"a"]
    assert [queue.pop(), queue.pop(), queue.pop(), queue.pop()] == [b"c", b"d", b"a", None]
    assert len(queue) == 0


def test_the_registry_shares_one_id_object_per_function_and_forgets_it_with_the_function() -> None:
    functions = FunctionRegistry()
    copy = bytes(bytearray(FUNCTION_ID))
    assert functions.canonical(copy) is copy  # unknown: itself
    assert functions.accept(FUNCTION_ID, FUNCTION, new_user=True) is None
    assert functions.canonical(copy) is FUNCTION_ID
    functions.validate([{FUNCTION_ID}])
    assert functions.remove_user([FUNCTION_ID]) == [FUNCTION_ID]
    assert functions.canonical(copy) is copy
    functions.validate([])
