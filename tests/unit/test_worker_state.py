"""Example tests for ``WorkerState``: scheduler messages, processor events and ticks in, instructions out.

No processes, no sockets, no sleeps: processors are modelled by calling ``on_processor_started``,
``on_processor_result``, ``on_processor_blocked`` and ``on_processor_died`` by hand with their
ids, and time is a plain number. Every state a test makes is checked with ``validate()`` after
the test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from scaler.io.output_limits import OutputLimits
from scaler.protocol.messages import (
    ArgumentKind,
    BalanceRequest,
    BalanceResponse,
    CancelConfirmType,
    DisconnectRequest,
    LogStream,
    ObjectContent,
    ObjectInstruction,
    ObjectInstructionType,
    ProcessorBlocked,
    Task,
    TaskArgument,
    TaskCancel,
    TaskCancelConfirm,
    TaskLog,
    TaskResult,
    TaskStarted,
    TaskStatus,
    WorkerHeartbeat,
    WorkerHeartbeatEcho,
)
from scaler.worker.state import (
    ExitWorker,
    KillProcessor,
    RunTask,
    SendToProcessor,
    SendToScheduler,
    StartProcessor,
    WorkerState,
)

FN = b"function-id"
FN_BYTES = b"pickled-function"
FN2 = b"function-id-2"
FN2_BYTES = b"pickled-function-2"
HEARTBEAT = 2.0
DEATH = 30.0
BLOCKED = ProcessorBlocked(True)
UNBLOCKED = ProcessorBlocked(False)

_made: list[WorkerState] = []


@pytest.fixture(autouse=True)
def _validate_every_state() -> Iterator[None]:
    _made.clear()
    yield
    for state in _made:
        state.validate()


class NoticesChecked:
    """A ``WorkerState`` whose outputs are checked for start notices, which are then left out.

    Every ``RunTask`` must come right after ``SendToScheduler(TaskStarted)`` of the same task and
    attempt (the scheduler charges a worker's death only to tasks that started). The examples
    below then list only the other instructions; the notices have tests of their own. Likewise
    each heartbeat's processor counts (for the status feed) must match the state's own, and are
    then zeroed, so that the examples need not spell them out.
    """

    def __init__(self, state: WorkerState) -> None:
        object.__setattr__(self, "state", state)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.state, name, value)  # tests that break an invariant on purpose

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.state, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            out = attribute(*args, **kwargs)
            if isinstance(out, list) and name not in KEEP_NOTICES:
                out = without_processor_counts(self.state, without_start_notices(out))
            return out

        return call


KEEP_NOTICES = {"queued_task_ids", "processor_ids", "idle_processor_ids", "blocked_task_ids"}


def without_processor_counts(state: WorkerState, out: list[Any]) -> list[Any]:
    kept = []
    for instruction in out:
        if isinstance(instruction, SendToScheduler) and isinstance(instruction.message, WorkerHeartbeat):
            heartbeat, counts = instruction.message, state.statistics()
            reported = (heartbeat.processors_running, heartbeat.processors_parked, heartbeat.processors_idle)
            expected = (counts["running"] - counts["blocked"], counts["blocked"], counts["idle_processors"])
            assert reported == expected, f"heartbeat processors {reported}, the state has {expected}"
            zeroed = dataclasses.replace(heartbeat, processors_running=0, processors_parked=0, processors_idle=0)
            instruction = SendToScheduler(zeroed)
        kept.append(instruction)
    return kept


def without_start_notices(out: list[Any]) -> list[Any]:
    kept = []
    for index, instruction in enumerate(out):
        if isinstance(instruction, RunTask):
            notice = SendToScheduler(TaskStarted(instruction.task.task_id, instruction.task.attempt))
            assert index > 0 and out[index - 1] == notice, f"{instruction} was not announced first: {out}"
        if isinstance(instruction, SendToScheduler) and isinstance(instruction.message, TaskStarted):
            assert index + 1 < len(out) and isinstance(out[index + 1], RunTask), f"a stray notice: {out}"
            continue
        kept.append(instruction)
    return kept


def make(task_timeout: float = 0.0, **options: Any) -> Any:
    state = WorkerState(0.0, HEARTBEAT, DEATH, task_timeout, **options)
    _made.append(state)
    return NoticesChecked(state)


def started(state: WorkerState, processor_id: int = 1, now: float = 0.0) -> WorkerState:
    """Start the state's first processor (id 1) and send its first heartbeat."""
    assert state.start(now) == [StartProcessor(processor_id)]
    assert state.on_processor_started(processor_id, now) == []
    assert state.tick(now) == [SendToScheduler(WorkerHeartbeat(now, 0, 0.0, 0, state.capabilities))]
    return state


@pytest.fixture
def ws() -> WorkerState:
    """A worker whose first processor (id 1) has started and which has sent its first heartbeat."""
    return started(make())


def args_of(task_id: bytes) -> list[TaskArgument]:
    return [TaskArgument("", ArgumentKind.INLINE, b"arg-of-" + task_id)]


def task(
    task_id: bytes,
    function: bytes = b"",
    function_id: bytes = FN,
    attempt: int = 1,
    args: list[TaskArgument] | None = None,
    objects: list[ObjectContent] | None = None,
    **fields: Any,
) -> Task:
    """A task as the scheduler sends it (``function`` filled the first time this worker sees it)."""
    arguments = args_of(task_id) if args is None else args
    return Task(task_id, function_id, function, arguments, attempt, objects=objects or [], **fields)


def run(processor_id: int, task_id: bytes, function: bytes = b"", **fields: Any) -> RunTask:
    """What the state hands processor ``processor_id``."""
    return RunTask(processor_id, task(task_id, function, **fields))


def result(task_id: bytes, attempt: int = 1) -> TaskResult:
    return TaskResult(task_id, TaskStatus.SUCCESS, b"value-of-" + task_id, attempt)


def sent(task_id: bytes, attempt: int = 1) -> SendToScheduler:
    return SendToScheduler(result(task_id, attempt))


def confirm(task_id: bytes, kind: CancelConfirmType) -> SendToScheduler:
    return SendToScheduler(TaskCancelConfirm(task_id, kind))


def died_text(task_id: bytes) -> bytes:
    return f"the processor running task {task_id.hex()} died (crash, os._exit, segfault or OOM kill)".encode()


def beat(now: float, held: int, capabilities: dict[str, int] | None = None) -> SendToScheduler:
    return SendToScheduler(WorkerHeartbeat(now, held, 0.0, 0, capabilities or {}))


# -- running and queueing -----------------------------------------------------------------------


def test_task_waits_until_the_first_processor_is_started() -> None:
    state = make()
    assert state.start(0.0) == [StartProcessor(1)]
    assert state.on_task(task(b"t1", FN_BYTES), 0.0) == []
    assert state.held_count() == 1
    assert state.running() == {}
    assert state.on_processor_started(1, 0.5) == [run(1, b"t1", FN_BYTES)]
    assert state.running() == {b"t1": 1}


def test_runs_one_task_at_a_time_and_queues_the_rest(ws: WorkerState) -> None:
    assert ws.on_task(task(b"t1", FN_BYTES), 1.0) == [run(1, b"t1", FN_BYTES)]
    assert ws.on_task(task(b"t2"), 1.0) == []
    assert ws.on_task(task(b"t3"), 1.0) == []
    assert ws.statistics() == {
        "queued": 2,
        "running": 1,
        "blocked": 0,
        "done": 0,
        "processors": 1,
        "idle_processors": 0,
        "functions": 1,
        "objects": 0,
        "output_passed_bytes": 0,
        "output_dropped_bytes": 0,
    }
    assert ws.held_count() == 3
    assert ws.on_processor_result(1, result(b"t1"), 2.0) == [sent(b"t1"), run(1, b"t2")]
    assert ws.running() == {b"t2": 1}
    assert ws.on_processor_result(1, result(b"t2"), 3.0) == [sent(b"t2"), run(1, b"t3")]
    assert ws.on_processor_result(1, result(b"t3"), 4.0) == [sent(b"t3")]
    assert ws.statistics()["done"] == 3
    assert ws.statistics()["idle_processors"] == 1
    assert ws.running() == {}
    # Idle again: the next task runs at once, on the same processor.
    assert ws.on_task(task(b"t4"), 5.0) == [run(1, b"t4")]
    assert ws.processor_ids() == [1]


def test_failed_task_result_is_reported_as_is(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 1.0)
    failure = TaskResult(b"t1", TaskStatus.FAILED, b"pickled-exception", 1)
    assert ws.on_processor_result(1, failure, 2.0) == [SendToScheduler(failure)]


def test_result_of_a_task_the_processor_is_not_running_is_dropped(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 1.0)
    ws.on_task(task(b"t2"), 1.0)
    assert ws.on_processor_result(1, result(b"t2"), 2.0) == []
    assert ws.on_processor_result(1, result(b"other"), 2.0) == []
    assert ws.on_processor_result(7, result(b"t1"), 2.0) == []  # no such processor
    assert ws.running() == {b"t1": 1}
    assert ws.statistics()["done"] == 0


def test_profiling_result_fields_pass_through(ws: WorkerState) -> None:
    assert ws.on_task(task(b"t1", FN_BYTES, profiling=True), 1.0) == [run(1, b"t1", FN_BYTES, profiling=True)]
    profiled = TaskResult(b"t1", TaskStatus.SUCCESS, b"v", 1, duration_seconds=0.5, cpu_seconds=0.4)
    assert ws.on_processor_result(1, profiled, 2.0) == [SendToScheduler(profiled)]


def test_tasks_run_in_arrival_order(ws: WorkerState) -> None:
    ws.on_task(task(b"a", FN_BYTES), 0.0)
    for task_id in (b"c", b"b", b"d"):
        ws.on_task(task(task_id), 0.0)
    assert ws.queued_task_ids() == [b"c", b"b", b"d"]
    order = [b"a"]
    for _ in range(3):
        out = ws.on_processor_result(1, result(order[-1]), 1.0)
        assert isinstance(out[1], RunTask)
        order.append(out[1].task.task_id)
    assert order == [b"a", b"c", b"b", b"d"]


def test_higher_priority_runs_first_then_arrival_order(ws: WorkerState) -> None:
    ws.on_task(task(b"a", FN_BYTES), 0.0)
    ws.on_task(task(b"low1"), 0.0)
    ws.on_task(task(b"high1", priority=5), 0.0)
    ws.on_task(task(b"low2"), 0.0)
    ws.on_task(task(b"mid", priority=2), 0.0)
    ws.on_task(task(b"high2", priority=5), 0.0)
    ws.on_task(task(b"neg", priority=-1), 0.0)
    assert ws.queued_task_ids() == [b"high1", b"high2", b"mid", b"low1", b"low2", b"neg"]
    order = []
    current = b"a"
    while True:
        out = ws.on_processor_result(1, result(current), 1.0)
        if len(out) == 1:
            break
        assert isinstance(out[1], RunTask)
        current = out[1].task.task_id
        order.append(current)
    assert order == [b"high1", b"high2", b"mid", b"low1", b"low2", b"neg"]


def test_a_task_sent_again_with_another_priority_is_queued_once(ws: WorkerState) -> None:
    ws.on_task(task(b"a", FN_BYTES), 0.0)
    ws.on_task(task(b"t"), 0.0)
    ws.on_task(task(b"u"), 0.0)
    ws.on_task(task(b"t", priority=3), 0.0)
    assert ws.queued_task_ids() == [b"t", b"u"]
    assert ws.held_count() == 3


def test_a_task_sent_again_while_its_old_attempt_runs_replaces_it(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES, attempt=1), 0.0)
    assert ws.on_task(task(b"t1", attempt=2), 1.0) == [
        KillProcessor(1, f"task {b't1'.hex()} was sent again"),
        StartProcessor(2),
    ]
    assert ws.on_processor_result(1, result(b"t1", attempt=1), 1.1) == []  # from the killed processor
    assert ws.on_processor_started(2, 1.2) == [run(2, b"t1", FN_BYTES, attempt=2)]


# -- functions ----------------------------------------------------------------------------------


def test_function_bytes_go_to_the_processor_once(ws: WorkerState) -> None:
    assert ws.on_task(task(b"t1", FN_BYTES), 0.0) == [run(1, b"t1", FN_BYTES)]
    ws.on_task(task(b"t2"), 0.0)
    ws.on_task(task(b"t3", FN2_BYTES, FN2), 0.0)
    ws.on_task(task(b"t4", b"", FN2), 0.0)
    assert ws.on_processor_result(1, result(b"t1"), 1.0)[1] == run(1, b"t2")
    assert ws.on_processor_result(1, result(b"t2"), 1.0)[1] == run(1, b"t3", FN2_BYTES, function_id=FN2)
    assert ws.on_processor_result(1, result(b"t3"), 1.0)[1] == run(1, b"t4", b"", function_id=FN2)
    assert ws.statistics()["functions"] == 2


def test_a_function_sent_again_by_the_scheduler_is_not_resent_to_the_processor(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_processor_result(1, result(b"t1"), 1.0)
    assert ws.on_task(task(b"t2", FN_BYTES), 1.0) == [run(1, b"t2")]


def test_function_bytes_go_again_to_a_restarted_processor(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_processor_result(1, result(b"t1"), 1.0)
    assert ws.on_task(task(b"t2"), 1.0) == [run(1, b"t2")]
    ws.on_task(task(b"t3"), 1.0)
    assert ws.on_processor_died(1, 2.0) == [
        SendToScheduler(TaskResult(b"t2", TaskStatus.PROCESSOR_DIED, died_text(b"t2"), 1)),
        StartProcessor(2),
    ]
    # The fresh processor holds no function: the agent attaches the bytes it kept.
    assert ws.on_processor_started(2, 3.0) == [run(2, b"t3", FN_BYTES)]
    ws.on_task(task(b"t4"), 3.0)
    assert ws.on_processor_result(2, result(b"t3"), 4.0) == [sent(b"t3"), run(2, b"t4")]


def test_function_bytes_go_again_after_a_cancel_restart(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_task(task(b"t2"), 0.0)
    ws.on_task_cancel(TaskCancel(b"t1"), 1.0)
    assert ws.on_processor_started(2, 1.1) == [run(2, b"t2", FN_BYTES)]


# -- objects ------------------------------------------------------------------------------------


def obj_arg(object_id: bytes, name: str = "") -> TaskArgument:
    return TaskArgument(name, ArgumentKind.OBJECT, object_id)


def content(object_id: bytes) -> ObjectContent:
    return ObjectContent(object_id, b"bytes-of-" + object_id)


def delete(*object_ids: bytes) -> ObjectInstruction:
    return ObjectInstruction(ObjectInstructionType.DELETE, list(object_ids), [])


def test_object_bytes_go_to_a_processor_once(ws: WorkerState) -> None:
    args = [obj_arg(b"o1"), TaskArgument("x", ArgumentKind.INLINE, b"inline")]
    sent_task = task(b"t1", FN_BYTES, args=args, objects=[content(b"o1")])
    assert ws.on_task(sent_task, 0.0) == [run(1, b"t1", FN_BYTES, args=args, objects=[content(b"o1")])]
    assert ws.statistics()["objects"] == 1
    # The scheduler knows the worker holds o1, so it sends no bytes; the processor holds them too.
    ws.on_task(task(b"t2", args=[obj_arg(b"o1")]), 0.0)
    assert ws.on_processor_result(1, result(b"t1"), 1.0) == [sent(b"t1"), run(1, b"t2", args=[obj_arg(b"o1")])]


def test_objects_attached_are_only_those_the_processor_lacks(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES, args=[obj_arg(b"o1")], objects=[content(b"o1")]), 0.0)
    ws.on_processor_result(1, result(b"t1"), 1.0)
    # o1 is held; o2 is new; o2 twice in one task is attached once; INLINE data is never an object id.
    args = [obj_arg(b"o1"), obj_arg(b"o2"), obj_arg(b"o2", "k"), TaskArgument("", ArgumentKind.INLINE, b"o3")]
    out = ws.on_task(task(b"t2", args=args, objects=[content(b"o2"), content(b"o3")]), 2.0)
    assert out == [run(1, b"t2", args=args, objects=[content(b"o2")])]


def test_objects_go_again_to_another_processor(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES, args=[obj_arg(b"o1")], objects=[content(b"o1")]), 0.0)
    ws.on_task(task(b"t2", args=[obj_arg(b"o1")]), 0.0)
    assert ws.on_processor_blocked(1, BLOCKED, 1.0) == [StartProcessor(2)]
    out = ws.on_processor_started(2, 1.1)
    assert out == [run(2, b"t2", FN_BYTES, args=[obj_arg(b"o1")], objects=[content(b"o1")])]


def test_a_missing_object_is_left_for_the_processor_to_report(ws: WorkerState) -> None:
    assert ws.on_task(task(b"t1", FN_BYTES, args=[obj_arg(b"gone")]), 0.0) == [
        run(1, b"t1", FN_BYTES, args=[obj_arg(b"gone")])
    ]


def test_delete_drops_objects_here_and_in_an_idle_processor_at_once(ws: WorkerState) -> None:
    ws.on_task(
        task(b"t1", FN_BYTES, args=[obj_arg(b"o1"), obj_arg(b"o2")], objects=[content(b"o1"), content(b"o2")]), 0.0
    )
    ws.on_processor_result(1, result(b"t1"), 1.0)
    assert ws.on_object_instruction(delete(b"o1", b"unknown"), 2.0) == [SendToProcessor(1, delete(b"o1"))]
    assert ws.statistics()["objects"] == 1
    assert ws.on_object_instruction(delete(b"o1"), 2.0) == []  # nobody holds it any more
    # Sent again later, the object's bytes go to the processor again.
    out = ws.on_task(task(b"t2", args=[obj_arg(b"o1")], objects=[content(b"o1")]), 3.0)
    assert out == [run(1, b"t2", args=[obj_arg(b"o1")], objects=[content(b"o1")])]


def test_delete_reaches_a_busy_processor_when_it_is_idle_again(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES, args=[obj_arg(b"o1")], objects=[content(b"o1")]), 0.0)
    ws.on_task(task(b"t2", args=[obj_arg(b"o2")], objects=[content(b"o2")]), 0.0)
    # The processor is busy: the agent never writes to a pipe that its processor does not read.
    assert ws.on_object_instruction(delete(b"o1"), 1.0) == []
    assert ws.statistics()["objects"] == 1
    assert ws.on_processor_result(1, result(b"t1"), 2.0) == [
        sent(b"t1"),
        SendToProcessor(1, delete(b"o1")),
        run(1, b"t2", args=[obj_arg(b"o2")], objects=[content(b"o2")]),
    ]


def test_delete_reaches_a_parked_processor_when_it_is_done(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES, args=[obj_arg(b"o1")], objects=[content(b"o1")]), 0.0)
    ws.on_processor_blocked(1, BLOCKED, 0.5)
    ws.on_processor_started(2, 0.6)
    assert ws.on_object_instruction(delete(b"o1"), 1.0) == []
    ws.on_processor_blocked(1, UNBLOCKED, 1.5)
    assert ws.on_processor_result(1, result(b"t1"), 2.0) == [sent(b"t1"), SendToProcessor(1, delete(b"o1"))]


def drop_functions(*function_ids: bytes) -> ObjectInstruction:
    return ObjectInstruction(ObjectInstructionType.DELETE_FUNCTIONS, list(function_ids), [])


def test_functions_nobody_uses_are_dropped_here_and_in_processors_idle_or_busy(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_processor_result(1, result(b"t1"), 0.5)  # processor 1 now holds FN, and is idle
    ws.on_task(task(b"t2", FN2_BYTES, function_id=FN2), 1.0)  # and runs FN2
    assert ws.statistics()["functions"] == 2
    # Processor 1 holds both and is busy with t2: it is told once t2 is done, not before.
    assert ws.on_object_instruction(drop_functions(FN, FN2), 2.0) == []
    assert ws.statistics()["functions"] == 0
    assert ws.on_processor_result(1, result(b"t2"), 3.0) == [
        sent(b"t2"),
        SendToProcessor(1, drop_functions(FN, FN2)),
    ]
    # Sent again later (another client's task), the bytes go to the processor afresh.
    assert ws.on_task(task(b"t3", FN_BYTES), 4.0) == [run(1, b"t3", FN_BYTES)]


def test_an_idle_processor_drops_a_function_at_once(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_processor_result(1, result(b"t1"), 0.5)
    assert ws.on_object_instruction(drop_functions(FN), 1.0) == [SendToProcessor(1, drop_functions(FN))]
    assert ws.on_object_instruction(drop_functions(FN), 1.5) == []  # nothing left to drop


def test_create_caches_objects_and_clear_is_ignored(ws: WorkerState) -> None:
    create = ObjectInstruction(ObjectInstructionType.CREATE, [b"o1"], [b"bytes-of-o1"])
    assert ws.on_object_instruction(create, 0.0) == []
    assert ws.on_task(task(b"t1", FN_BYTES, args=[obj_arg(b"o1")]), 0.0) == [
        run(1, b"t1", FN_BYTES, args=[obj_arg(b"o1")], objects=[content(b"o1")])
    ]
    assert ws.on_object_instruction(ObjectInstruction(ObjectInstructionType.CLEAR, [], []), 0.0) == []
    assert ws.statistics()["objects"] == 1


# -- cancel -------------------------------------------------------------------------------------


def test_cancel_of_a_queued_task(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_task(task(b"t2"), 0.0)
    ws.on_task(task(b"t3"), 0.0)
    assert ws.on_task_cancel(TaskCancel(b"t2"), 1.0) == [confirm(b"t2", CancelConfirmType.CANCELED)]
    assert ws.running() == {b"t1": 1}
    assert ws.held_count() == 2
    assert ws.on_processor_result(1, result(b"t1"), 2.0) == [sent(b"t1"), run(1, b"t3")]


def test_cancel_of_the_running_task_kills_its_processor(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_task(task(b"t2"), 0.0)
    assert ws.on_task_cancel(TaskCancel(b"t1"), 1.0) == [
        KillProcessor(1, f"task {b't1'.hex()} was cancelled"),
        StartProcessor(2),
        confirm(b"t1", CancelConfirmType.CANCELED),
    ]
    assert ws.running() == {}
    assert ws.held_count() == 1
    # Nothing runs until the new processor is up ...
    assert ws.on_task(task(b"t3"), 1.0) == []
    # ... and a late result or death notice from the killed processor is dropped.
    assert ws.on_processor_result(1, result(b"t1"), 1.05) == []
    assert ws.on_processor_died(1, 1.05) == []
    assert ws.on_processor_started(2, 1.1) == [run(2, b"t2", FN_BYTES)]
    assert ws.on_processor_result(2, result(b"t2"), 2.0) == [sent(b"t2"), run(2, b"t3")]


def test_cancel_of_the_running_task_uses_an_idle_processor_at_once(ws: WorkerState) -> None:
    ws.on_task(task(b"parent", FN_BYTES), 0.0)
    ws.on_processor_blocked(1, BLOCKED, 0.1)
    ws.on_processor_started(2, 0.2)
    ws.on_task(task(b"child"), 0.3)
    ws.on_task(task(b"next"), 0.3)
    ws.on_processor_blocked(1, UNBLOCKED, 0.4)
    ws.on_processor_result(2, result(b"child"), 0.5)  # 2 is idle: 1 runs unblocked
    assert ws.idle_processor_ids() == [2]
    assert ws.on_task_cancel(TaskCancel(b"parent"), 1.0) == [
        KillProcessor(1, f"task {b'parent'.hex()} was cancelled"),
        run(2, b"next"),
        confirm(b"parent", CancelConfirmType.CANCELED),
    ]


def test_cancel_of_a_parked_task_kills_only_its_processor(ws: WorkerState) -> None:
    ws.on_task(task(b"parent", FN_BYTES), 0.0)
    ws.on_task(task(b"child"), 0.0)
    ws.on_processor_blocked(1, BLOCKED, 0.1)
    assert ws.on_processor_started(2, 0.2) == [run(2, b"child", FN_BYTES)]
    assert ws.on_task_cancel(TaskCancel(b"parent"), 1.0) == [
        KillProcessor(1, f"task {b'parent'.hex()} was cancelled"),
        confirm(b"parent", CancelConfirmType.CANCELED),
    ]
    assert ws.running() == {b"child": 2}
    assert ws.on_processor_result(2, result(b"child"), 2.0) == [sent(b"child")]


def test_cancel_of_the_running_task_with_nothing_queued(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_task_cancel(TaskCancel(b"t1"), 1.0)
    assert ws.on_processor_started(2, 1.1) == []
    assert ws.on_task(task(b"t2"), 2.0) == [run(2, b"t2", FN_BYTES)]


def test_cancel_of_an_unknown_task_is_not_found(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    assert ws.on_task_cancel(TaskCancel(b"nope"), 1.0) == [confirm(b"nope", CancelConfirmType.CANCEL_NOT_FOUND)]
    assert ws.running() == {b"t1": 1}


def test_cancel_of_a_finished_task_is_not_found(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_processor_result(1, result(b"t1"), 1.0)
    assert ws.on_task_cancel(TaskCancel(b"t1"), 2.0) == [confirm(b"t1", CancelConfirmType.CANCEL_NOT_FOUND)]


# -- processor death and task timeout ----------------------------------------------------------------


def test_processor_death_fails_the_running_task_and_starts_another(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES, attempt=3), 0.0)
    ws.on_task(task(b"t2"), 0.0)
    assert ws.on_processor_died(1, 1.0) == [
        SendToScheduler(TaskResult(b"t1", TaskStatus.PROCESSOR_DIED, died_text(b"t1"), 3)),
        StartProcessor(2),
    ]
    assert ws.running() == {}
    assert ws.on_processor_started(2, 1.5) == [run(2, b"t2", FN_BYTES)]


def test_idle_processor_death_only_starts_another(ws: WorkerState) -> None:
    assert ws.on_processor_died(1, 1.0) == [StartProcessor(2)]
    assert ws.on_task(task(b"t1", FN_BYTES), 1.2) == []
    assert ws.on_processor_started(2, 1.5) == [run(2, b"t1", FN_BYTES)]


def test_death_of_a_parked_processor_fails_only_its_own_task(ws: WorkerState) -> None:
    ws.on_task(task(b"parent", FN_BYTES), 0.0)
    ws.on_task(task(b"child"), 0.0)
    ws.on_processor_blocked(1, BLOCKED, 0.1)
    ws.on_processor_started(2, 0.2)
    assert ws.on_processor_died(1, 1.0) == [
        SendToScheduler(TaskResult(b"parent", TaskStatus.PROCESSOR_DIED, died_text(b"parent"), 1))
    ]
    assert ws.running() == {b"child": 2}


def test_death_of_the_running_processor_spares_the_parked_one(ws: WorkerState) -> None:
    ws.on_task(task(b"parent", FN_BYTES), 0.0)
    ws.on_task(task(b"child"), 0.0)
    ws.on_task(task(b"next"), 0.0)
    ws.on_processor_blocked(1, BLOCKED, 0.1)
    ws.on_processor_started(2, 0.2)
    assert ws.on_processor_died(2, 1.0) == [
        SendToScheduler(TaskResult(b"child", TaskStatus.PROCESSOR_DIED, died_text(b"child"), 1)),
        StartProcessor(3),
    ]
    assert ws.running() == {b"parent": 1}
    assert ws.blocked_task_ids() == [b"parent"]
    assert ws.on_processor_started(3, 1.1) == [run(3, b"next", FN_BYTES)]


def test_task_timeout_via_tick() -> None:
    state = started(make(task_timeout=5.0))
    assert state.on_task(task(b"t1", FN_BYTES, attempt=2), 1.0) == [run(1, b"t1", FN_BYTES, attempt=2)]
    state.on_task(task(b"t2"), 1.0)
    # Exactly at the timeout the task may still finish.
    assert state.tick(6.0) == [beat(6.0, 2)]
    text = f"task {b't1'.hex()} ran past its timeout of 5s and was stopped".encode()
    assert state.tick(6.5) == [
        SendToScheduler(TaskResult(b"t1", TaskStatus.TIMEOUT, text, 2)),
        KillProcessor(1, "task timeout"),
        StartProcessor(2),
    ]
    assert state.running() == {}
    # The timeout runs from when each task started, not from when it arrived.
    assert state.on_processor_started(2, 7.0) == [run(2, b"t2", FN_BYTES)]
    assert state.tick(11.5) == [beat(11.5, 1)]
    assert state.tick(12.0) == []
    text = f"task {b't2'.hex()} ran past its timeout of 5s and was stopped".encode()
    assert state.tick(12.5) == [
        SendToScheduler(TaskResult(b"t2", TaskStatus.TIMEOUT, text, 1)),
        KillProcessor(2, "task timeout"),
        StartProcessor(3),
    ]
    assert state.tick(13.5) == [beat(13.5, 0)]


@pytest.mark.parametrize(
    ("worker_timeout", "task_timeout", "expected"), [(5.0, 2.0, 2.0), (5.0, 9.0, 9.0), (0.0, 3.0, 3.0), (5.0, 0.0, 5.0)]
)
def test_a_tasks_own_timeout_overrides_the_workers(worker_timeout: float, task_timeout: float, expected: float) -> None:
    state = started(make(task_timeout=worker_timeout))
    state.on_task(task(b"t1", FN_BYTES, timeout_seconds=task_timeout), 1.0)
    state.on_scheduler_contact(1.0 + expected)
    assert state.tick(1.0 + expected) == [beat(1.0 + expected, 1)]
    text = f"task {b't1'.hex()} ran past its timeout of {expected:g}s and was stopped".encode()
    assert state.tick(1.1 + expected)[:2] == [
        SendToScheduler(TaskResult(b"t1", TaskStatus.TIMEOUT, text, 1)),
        KillProcessor(1, "task timeout"),
    ]


def test_a_parked_task_times_out_too(ws: WorkerState) -> None:
    ws.on_task(task(b"parent", FN_BYTES, timeout_seconds=3.0), 0.0)
    ws.on_task(task(b"child"), 0.0)
    ws.on_processor_blocked(1, BLOCKED, 0.1)
    ws.on_processor_started(2, 0.2)
    text = f"task {b'parent'.hex()} ran past its timeout of 3s and was stopped".encode()
    assert ws.tick(3.5) == [
        SendToScheduler(TaskResult(b"parent", TaskStatus.TIMEOUT, text, 1)),
        KillProcessor(1, "task timeout"),
        beat(3.5, 1),
    ]
    assert ws.running() == {b"child": 2}


def test_no_task_timeout_when_disabled(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    for now in range(2, 29, 2):
        ws.on_scheduler_contact(float(now))
        assert ws.tick(float(now)) == [beat(float(now), 1)]
    assert ws.running() == {b"t1": 1}


# -- nested tasks: parking blocked processors ---------------------------------------------------------


def test_a_blocked_task_parks_its_processor_and_the_next_task_runs_on_a_new_one(ws: WorkerState) -> None:
    assert ws.on_task(task(b"parent", FN_BYTES), 0.0) == [run(1, b"parent", FN_BYTES)]
    assert ws.on_task(task(b"child1"), 0.1) == []
    assert ws.on_task(task(b"child2"), 0.1) == []
    assert ws.on_processor_blocked(1, BLOCKED, 0.2) == [StartProcessor(2)]
    assert ws.blocked_task_ids() == [b"parent"]
    assert ws.on_processor_started(2, 0.3) == [run(2, b"child1", FN_BYTES)]
    assert ws.on_processor_result(2, result(b"child1"), 0.4) == [sent(b"child1"), run(2, b"child2")]
    assert ws.on_processor_result(2, result(b"child2"), 0.5) == [sent(b"child2")]
    assert ws.on_processor_blocked(1, UNBLOCKED, 0.6) == []
    assert ws.blocked_task_ids() == []
    assert ws.on_processor_result(1, result(b"parent"), 0.7) == [sent(b"parent")]
    assert ws.idle_processor_ids() == [2, 1]
    assert ws.statistics()["done"] == 3


def test_a_blocked_task_with_nothing_queued_gets_a_spare_ready(ws: WorkerState) -> None:
    ws.on_task(task(b"parent", FN_BYTES), 0.0)
    assert ws.on_processor_blocked(1, BLOCKED, 0.1) == [StartProcessor(2)]
    assert ws.on_processor_started(2, 0.2) == []
    assert ws.on_task(task(b"child"), 0.3) == [run(2, b"child", FN_BYTES)]


def test_an_idle_processor_is_reused_before_a_new_one_starts(ws: WorkerState) -> None:
    ws.on_task(task(b"p1", FN_BYTES), 0.0)
    ws.on_processor_blocked(1, BLOCKED, 0.1)
    ws.on_processor_started(2, 0.2)
    ws.on_task(task(b"c1"), 0.3)  # runs on 2
    ws.on_processor_blocked(1, UNBLOCKED, 0.4)
    ws.on_processor_result(2, result(b"c1"), 0.5)
    ws.on_processor_result(1, result(b"p1"), 0.6)
    # Two idle processors; the most recently idle one is used first.
    assert ws.on_task(task(b"p2"), 1.0) == [run(1, b"p2")]
    assert ws.on_task(task(b"c2"), 1.0) == []
    assert ws.on_processor_blocked(1, BLOCKED, 1.1) == [run(2, b"c2")]


def test_one_unblocked_task_at_a_time_with_a_short_oversubscription(ws: WorkerState) -> None:
    ws.on_task(task(b"parent", FN_BYTES), 0.0)
    ws.on_task(task(b"child"), 0.0)
    ws.on_task(task(b"other"), 0.0)
    ws.on_processor_blocked(1, BLOCKED, 0.1)
    ws.on_processor_started(2, 0.2)  # runs child
    # The parent goes on while the child still runs: both count as running, nothing new starts.
    assert ws.on_processor_blocked(1, UNBLOCKED, 0.3) == []
    assert ws.statistics()["running"] == 2
    assert ws.on_processor_result(2, result(b"child"), 0.4) == [sent(b"child")]
    assert ws.queued_task_ids() == [b"other"]
    # Only once no task runs unblocked does the next one start.
    assert ws.on_processor_result(1, result(b"parent"), 0.5) == [sent(b"parent"), run(1, b"other")]


def test_recursion_parks_one_processor_per_level(ws: WorkerState) -> None:
    ws.on_task(task(b"d0", FN_BYTES), 0.0)
    for depth in range(1, 5):
        assert ws.on_processor_blocked(depth, BLOCKED, depth) == [StartProcessor(depth + 1)]
        assert ws.on_processor_started(depth + 1, depth) == []
        assert ws.on_task(task(b"d%d" % depth), depth) == [run(depth + 1, b"d%d" % depth, FN_BYTES)]
    assert ws.statistics()["blocked"] == 4
    assert ws.held_count() == 5
    # Unwind: each level's result unblocks its parent, which then finishes.
    assert ws.on_processor_result(5, result(b"d4"), 10.0) == [sent(b"d4")]
    for depth in range(3, -1, -1):
        assert ws.on_processor_blocked(depth + 1, UNBLOCKED, 10.0) == []
        out = ws.on_processor_result(depth + 1, result(b"d%d" % depth), 10.0)
        assert out[0] == sent(b"d%d" % depth)
        assert all(isinstance(instruction, KillProcessor) for instruction in out[1:])
    # Only ``max_idle_processors`` idle processors are kept; the oldest idle ones were killed.
    assert ws.idle_processor_ids() == [2, 1]
    assert sorted(ws.processor_ids()) == [1, 2]


def test_the_idle_pool_keeps_the_most_recently_used(ws: WorkerState) -> None:
    ws.on_task(task(b"a", FN_BYTES), 0.0)
    ws.on_processor_blocked(1, BLOCKED, 0.0)
    ws.on_processor_started(2, 0.0)
    ws.on_task(task(b"b"), 0.0)
    ws.on_processor_blocked(2, BLOCKED, 0.0)
    ws.on_processor_started(3, 0.0)
    ws.on_task(task(b"c"), 0.0)
    assert ws.on_processor_result(3, result(b"c"), 1.0) == [sent(b"c")]
    assert ws.on_processor_result(2, result(b"b"), 1.0) == [sent(b"b")]
    assert ws.on_processor_result(1, result(b"a"), 1.0) == [
        sent(b"a"),
        KillProcessor(3, "more idle processors than needed"),
    ]
    assert ws.idle_processor_ids() == [2, 1]


def test_a_bigger_idle_pool_keeps_more_processors() -> None:
    state = started(make(max_idle_processors=3))
    for processor_id, task_id in ((1, b"a"), (2, b"b"), (3, b"c")):
        state.on_task(task(task_id, FN_BYTES if processor_id == 1 else b""), 0.0)
        assert state.on_processor_blocked(processor_id, BLOCKED, 0.0) == [StartProcessor(processor_id + 1)]
        state.on_processor_started(processor_id + 1, 0.0)
    for processor_id, task_id in ((3, b"c"), (2, b"b")):
        assert state.on_processor_result(processor_id, result(task_id), 1.0) == [sent(task_id)]
    assert state.idle_processor_ids() == [4, 3, 2]
    # A fourth idle processor is one too many: the one idle longest goes.
    kill = KillProcessor(4, "more idle processors than needed")
    assert state.on_processor_result(1, result(b"a"), 1.0) == [sent(b"a"), kill]
    assert state.idle_processor_ids() == [3, 2, 1]


def test_block_notices_of_an_idle_processor_or_twice_are_ignored(ws: WorkerState) -> None:
    assert ws.on_processor_blocked(1, BLOCKED, 0.0) == []  # idle: a leftover thread of an old task
    assert ws.on_processor_blocked(9, BLOCKED, 0.0) == []  # unknown
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    assert ws.on_processor_blocked(1, UNBLOCKED, 0.0) == []  # already unblocked
    assert ws.on_processor_blocked(1, BLOCKED, 0.1) == [StartProcessor(2)]
    assert ws.on_processor_blocked(1, BLOCKED, 0.2) == []
    assert ws.statistics()["blocked"] == 1


def test_a_result_while_blocked_frees_the_processor(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_processor_blocked(1, BLOCKED, 0.1)
    ws.on_processor_started(2, 0.2)
    assert ws.on_processor_result(1, result(b"t1"), 0.3) == [sent(b"t1")]
    assert ws.statistics()["blocked"] == 0
    assert ws.on_task(task(b"t2"), 0.4) == [run(1, b"t2")]


# -- output streaming -------------------------------------------------------------------------------


def test_logs_of_running_and_parked_tasks_are_forwarded(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES, stream_output=True), 0.0)
    line = TaskLog(b"t1", LogStream.STDOUT, "hello\n")
    assert ws.on_processor_log(1, line, 0.1) == [SendToScheduler(line)]
    ws.on_processor_blocked(1, BLOCKED, 0.2)
    err = TaskLog(b"t1", LogStream.STDERR, "waiting\n")
    assert ws.on_processor_log(1, err, 0.3) == [SendToScheduler(err)]


def test_logs_of_tasks_a_processor_no_longer_runs_are_dropped(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_processor_result(1, result(b"t1"), 0.1)
    assert ws.on_processor_log(1, TaskLog(b"t1", LogStream.STDOUT, "late\n"), 0.2) == []
    ws.on_task(task(b"t2"), 0.3)
    assert ws.on_processor_log(1, TaskLog(b"t1", LogStream.STDOUT, "late\n"), 0.4) == []
    assert ws.on_processor_log(5, TaskLog(b"t2", LogStream.STDOUT, "who?\n"), 0.4) == []


def test_logs_over_the_workers_budget_are_dropped_and_told_before_the_result() -> None:
    # 100 bytes a second, a 100-byte bucket: the first log passes, the next two do not.
    ws = started(make(output_limits=OutputLimits(worker_bytes_per_second=100)))
    ws.on_task(task(b"t1", FN_BYTES, stream_output=True), 0.0)
    first = TaskLog(b"t1", LogStream.STDOUT, "a" * 80)
    assert ws.on_processor_log(1, first, 0.0) == [SendToScheduler(first)]
    assert ws.on_processor_log(1, TaskLog(b"t1", LogStream.STDOUT, "b" * 50), 0.0) == []
    assert ws.on_processor_log(1, TaskLog(b"t1", LogStream.STDERR, "c" * 10, dropped_bytes=5), 0.1) == []
    # Refilled past half the bucket: the next log passes, carrying its stream's gap.
    assert ws.on_processor_log(1, TaskLog(b"t1", LogStream.STDOUT, "d\n"), 1.0) == [
        SendToScheduler(TaskLog(b"t1", LogStream.STDOUT, "d\n", dropped_bytes=50))
    ]
    assert ws.on_processor_result(1, result(b"t1"), 1.1) == [
        SendToScheduler(TaskLog(b"t1", LogStream.STDERR, "", dropped_bytes=15)),
        sent(b"t1"),
    ]
    assert ws.statistics()["output_dropped_bytes"] == 60


def test_drops_of_a_killed_task_are_forgotten() -> None:
    ws = started(make(output_limits=OutputLimits(worker_bytes_per_second=10)))
    ws.on_task(task(b"t1", FN_BYTES, stream_output=True), 0.0)
    ws.on_processor_log(1, TaskLog(b"t1", LogStream.STDOUT, "x" * 10), 0.0)  # uses up the bucket
    assert ws.on_processor_log(1, TaskLog(b"t1", LogStream.STDOUT, "x" * 100), 0.0) == []
    out = ws.on_task_cancel(TaskCancel(b"t1"), 0.1)
    assert not [i for i in out if isinstance(i, SendToScheduler) and isinstance(i.message, TaskLog)]
    # the state's validate() (run after each test) checks that no drop count is left behind


# -- balancing ------------------------------------------------------------------------------------


def test_balance_hands_back_only_queued_tasks(ws: WorkerState) -> None:
    ws.on_task(task(b"parent", FN_BYTES), 0.0)
    ws.on_task(task(b"child"), 0.0)
    for task_id in (b"q1", b"q2", b"q3"):
        ws.on_task(task(task_id), 0.0)
    ws.on_processor_blocked(1, BLOCKED, 0.1)
    ws.on_processor_started(2, 0.2)  # runs child
    request = BalanceRequest([b"q3", b"parent", b"child", b"unknown", b"q1"])
    assert ws.on_balance_request(request, 1.0) == [SendToScheduler(BalanceResponse([b"q3", b"q1"]))]
    assert ws.queued_task_ids() == [b"q2"]
    assert ws.running() == {b"parent": 1, b"child": 2}
    assert ws.on_balance_request(BalanceRequest([b"q1"]), 1.0) == [SendToScheduler(BalanceResponse([]))]


def test_balance_across_priorities(ws: WorkerState) -> None:
    ws.on_task(task(b"a", FN_BYTES), 0.0)
    ws.on_task(task(b"hi", priority=9), 0.0)
    ws.on_task(task(b"lo"), 0.0)
    assert ws.on_balance_request(BalanceRequest([b"hi"]), 0.5) == [SendToScheduler(BalanceResponse([b"hi"]))]
    assert ws.on_processor_result(1, result(b"a"), 1.0) == [sent(b"a"), run(1, b"lo")]


def test_balance_request_counts_as_scheduler_contact(ws: WorkerState) -> None:
    ws.on_balance_request(BalanceRequest([]), 20.0)
    assert ws.tick(DEATH + 10.0) == [beat(DEATH + 10.0, 0)]


# -- heartbeats, capabilities and scheduler death ---------------------------------------------------------


def test_heartbeat_cadence() -> None:
    state = make()
    assert state.tick(0.0, cpu_percent=12.5, rss_bytes=1000) == [SendToScheduler(WorkerHeartbeat(0.0, 0, 12.5, 1000))]
    assert state.tick(1.0) == []
    assert state.tick(1.999) == []
    assert state.tick(2.0, 3.0, 7) == [SendToScheduler(WorkerHeartbeat(2.0, 0, 3.0, 7))]
    assert state.tick(3.5) == []
    # A late tick beats once, and the next beat counts from it.
    assert state.tick(7.0) == [beat(7.0, 0)]
    assert state.tick(8.5) == []
    assert state.tick(9.0) == [beat(9.0, 0)]


def test_every_heartbeat_reports_the_capabilities() -> None:
    state = make(capabilities={"gpu": 1, "fpga": 2})
    assert state.tick(0.0) == [beat(0.0, 0, {"gpu": 1, "fpga": 2})]
    assert state.tick(2.0) == [beat(2.0, 0, {"gpu": 1, "fpga": 2})]


def test_heartbeat_reports_held_tasks_parked_ones_included(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.5)
    ws.on_task(task(b"t2"), 0.5)
    ws.on_task(task(b"t3"), 0.5)
    assert ws.tick(2.0) == [beat(2.0, 3)]
    ws.on_processor_blocked(1, BLOCKED, 2.1)
    ws.on_processor_started(2, 2.2)
    assert ws.tick(4.0) == [beat(4.0, 3)]


def test_heartbeat_counts_processors_running_parked_and_idle(ws: Any) -> None:
    raw: WorkerState = ws.state  # the heartbeat as sent, counts included
    ws.on_task(task(b"t1", FN_BYTES), 0.5)
    ws.on_task(task(b"t2"), 0.5)
    (heartbeat,) = raw.tick(2.0)
    assert isinstance(heartbeat, SendToScheduler) and isinstance(heartbeat.message, WorkerHeartbeat)
    counts = heartbeat.message.processors_running, heartbeat.message.processors_parked
    assert counts + (heartbeat.message.processors_idle,) == (1, 0, 0)
    ws.on_processor_blocked(1, BLOCKED, 2.1)  # t1 waits on its children: t2 goes to a new processor
    ws.on_processor_started(2, 2.2)
    (heartbeat,) = raw.tick(4.0)
    assert isinstance(heartbeat, SendToScheduler) and isinstance(heartbeat.message, WorkerHeartbeat)
    message = heartbeat.message
    assert (message.processors_running, message.processors_parked, message.processors_idle) == (1, 1, 0)


def test_worker_exits_without_scheduler_contact() -> None:
    state = make()
    state.tick(0.0)
    assert state.tick(DEATH) == [beat(DEATH, 0)]
    reason = f"no word from the scheduler for {DEATH:g}s"
    assert state.tick(DEATH + 0.5) == [ExitWorker(reason)]
    # It keeps asking to exit, and sends no more heartbeats.
    assert state.tick(DEATH + 5.0) == [ExitWorker(reason)]


@pytest.mark.parametrize("contact", ["on_scheduler_contact", "on_task", "on_task_cancel", "on_object_instruction"])
def test_any_scheduler_message_postpones_exit(contact: str) -> None:
    state = started(make())
    if contact == "on_scheduler_contact":
        state.on_scheduler_contact(20.0)
    elif contact == "on_task":
        state.on_task(task(b"t1", FN_BYTES), 20.0)
    elif contact == "on_task_cancel":
        state.on_task_cancel(TaskCancel(b"t1"), 20.0)
    else:
        state.on_object_instruction(delete(b"o"), 20.0)
    held = 1 if contact == "on_task" else 0
    assert state.tick(DEATH + 10.0) == [beat(DEATH + 10.0, held)]
    assert state.tick(DEATH + 20.0) == [beat(DEATH + 20.0, held)]
    assert state.tick(DEATH + 20.5) == [ExitWorker(f"no word from the scheduler for {DEATH:g}s")]


def test_processor_results_do_not_count_as_scheduler_contact(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_processor_result(1, result(b"t1"), 29.0)
    assert ws.tick(30.5) == [ExitWorker(f"no word from the scheduler for {DEATH:g}s")]


def test_a_restarted_scheduler_voids_everything_the_old_one_gave(ws: WorkerState) -> None:
    assert ws.on_heartbeat_echo(WorkerHeartbeatEcho(0.0, b"scheduler-1"), 0.0) == []
    ws.on_task(task(b"parent", FN_BYTES, args=[obj_arg(b"o1")], objects=[content(b"o1")]), 0.0)
    ws.on_task(task(b"child"), 0.0)
    ws.on_task(task(b"queued"), 0.0)
    ws.on_processor_blocked(1, BLOCKED, 0.1)
    ws.on_processor_started(2, 0.2)
    assert ws.on_heartbeat_echo(WorkerHeartbeatEcho(1.0, b"scheduler-1"), 1.0) == []
    assert ws.on_heartbeat_echo(WorkerHeartbeatEcho(2.0, b"scheduler-2"), 2.0) == [
        KillProcessor(1, "the scheduler restarted"),
        KillProcessor(2, "the scheduler restarted"),
        StartProcessor(3),
    ]
    assert ws.held_count() == 0
    assert ws.statistics()["functions"] == 0
    assert ws.statistics()["objects"] == 0
    assert ws.on_processor_started(3, 2.5) == []
    assert ws.on_task(task(b"new", FN_BYTES), 3.0) == [run(3, b"new", FN_BYTES)]


def test_an_unexpected_started_processor_is_killed(ws: WorkerState) -> None:
    assert ws.on_processor_started(1, 0.0) == [KillProcessor(1, "not expected")]
    assert ws.on_processor_started(42, 0.0) == [KillProcessor(42, "not expected")]


# -- start notices and graceful stop ---------------------------------------------------------------


def test_each_task_run_is_announced_to_the_scheduler_just_before_it_starts() -> None:
    state = WorkerState(0.0, HEARTBEAT, DEATH)
    state.start(0.0)
    state.on_processor_started(1, 0.0)
    out = state.on_task(task(b"t1", FN_BYTES, attempt=3), 0.0)
    assert out == [SendToScheduler(TaskStarted(b"t1", 3)), RunTask(1, task(b"t1", FN_BYTES, attempt=3))]
    assert state.on_task(task(b"t2"), 0.0) == []  # queued: not started, so not announced
    assert state.on_processor_result(1, result(b"t1", 3), 0.0) == [
        sent(b"t1", 3),
        SendToScheduler(TaskStarted(b"t2", 1)),
        RunTask(1, task(b"t2")),
    ]


def test_drain_hands_back_queued_tasks_lets_the_running_one_finish_then_exits(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_task(task(b"t2"), 0.0)
    ws.on_task(task(b"t3"), 0.0)
    assert ws.drain(1.0, 30.0) == [SendToScheduler(DisconnectRequest(drain=True))]
    assert ws.draining()
    assert ws.queued_task_ids() == []
    # A task that crossed the request goes straight back; nothing new starts.
    assert ws.on_task(task(b"t4"), 1.5) == [SendToScheduler(BalanceResponse([b"t4"]))]
    assert ws.tick(2.0) == [SendToScheduler(WorkerHeartbeat(2.0, 1, 0.0, 0, {}))]
    assert ws.drain(2.5, 30.0) == []  # asked again: nothing more to do
    out = ws.on_processor_result(1, result(b"t1"), 3.0)
    assert out == [sent(b"t1"), ExitWorker("drained: every started task has ended")]


def test_drain_with_nothing_running_exits_at_once(ws: WorkerState) -> None:
    out = ws.drain(1.0, 30.0)
    assert out == [SendToScheduler(DisconnectRequest(drain=True)), ExitWorker("drained: every started task has ended")]


def test_drain_exits_when_the_grace_period_ends_with_tasks_still_running(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.drain(1.0, 5.0)
    assert ExitWorker not in [type(instruction) for instruction in ws.tick(5.9)]
    text = "the grace period ended with 1 tasks still running; they will run elsewhere"
    assert ws.tick(6.0) == [ExitWorker(text)]


def test_a_draining_worker_whose_running_task_is_cancelled_exits(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.drain(1.0, 30.0)
    out = ws.on_task_cancel(TaskCancel(b"t1"), 2.0)
    assert out == [
        KillProcessor(1, f"task {b't1'.hex()} was cancelled"),
        ExitWorker("drained: every started task has ended"),
        confirm(b"t1", CancelConfirmType.CANCELED),
    ]


def test_validate_catches_a_broken_invariant(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws._processors.unblocked = 0
    with pytest.raises(AssertionError):
        ws.validate()
    ws._processors.unblocked = 1


# -- the first heartbeat ----------------------------------------------------------------------------


def test_the_first_heartbeat_waits_for_the_first_processor() -> None:
    state = WorkerState(0.0, HEARTBEAT, DEATH)
    assert state.start(0.0) == [StartProcessor(1)]
    assert state.tick(0.0) == []  # not counted by the scheduler before it can run a task
    assert state.on_processor_started(1, 0.2) == []
    assert state.tick(0.2) == [SendToScheduler(WorkerHeartbeat(0.2, 0, 0.0, 0, {}, processors_idle=1))]


def test_the_first_heartbeat_waits_one_interval_at_most() -> None:
    state = WorkerState(0.0, HEARTBEAT, DEATH)
    state.start(0.0)
    assert state.tick(HEARTBEAT / 2) == []
    assert state.tick(HEARTBEAT) == [SendToScheduler(WorkerHeartbeat(HEARTBEAT, 0, 0.0, 0, {}))]
