"""Example tests for ``WorkerState``: scheduler messages, processor events and ticks in, instructions out.

No processes, no sockets, no sleeps: the processor is modelled by calling ``on_processor_started``,
``on_processor_result`` and ``on_processor_died`` by hand, and time is a plain number.
"""

from __future__ import annotations

import pytest

from scaler.protocol.messages import (
    ArgumentKind,
    CancelConfirmType,
    Task,
    TaskArgument,
    TaskCancel,
    TaskCancelConfirm,
    TaskResult,
    TaskStatus,
    WorkerHeartbeat,
)
from scaler.worker.state import ExitWorker, RestartProcessor, RunTask, SendToScheduler, WorkerState

FN = b"function-id"
FN_BYTES = b"pickled-function"
FN2 = b"function-id-2"
FN2_BYTES = b"pickled-function-2"
HEARTBEAT = 2.0
DEATH = 30.0


def args_of(task_id: bytes) -> list[TaskArgument]:
    return [TaskArgument("", ArgumentKind.INLINE, b"arg-of-" + task_id)]


def task(task_id: bytes, function: bytes = b"", function_id: bytes = FN, attempt: int = 1) -> Task:
    """A task as the scheduler sends it (``function`` filled the first time this worker sees it)."""
    return Task(task_id, function_id, function, args_of(task_id), attempt)


def run(task_id: bytes, function: bytes = b"", function_id: bytes = FN, attempt: int = 1) -> RunTask:
    return RunTask(task(task_id, function, function_id, attempt))


def result(task_id: bytes, attempt: int = 1) -> TaskResult:
    return TaskResult(task_id, TaskStatus.SUCCESS, b"value-of-" + task_id, attempt)


def confirm(task_id: bytes, kind: CancelConfirmType) -> SendToScheduler:
    return SendToScheduler(TaskCancelConfirm(task_id, kind))


def make(task_timeout: float = 0.0) -> WorkerState:
    return WorkerState(0.0, HEARTBEAT, DEATH, task_timeout)


@pytest.fixture
def ws() -> WorkerState:
    """A worker whose first processor has started and which has sent its first heartbeat."""
    state = make()
    assert state.on_processor_started(0.0) == []
    assert state.tick(0.0) == [SendToScheduler(WorkerHeartbeat(0.0, 0, 0.0, 0))]
    return state


# -- running and queueing -----------------------------------------------------------------------


def test_task_waits_until_the_first_processor_is_started() -> None:
    state = make()
    assert state.on_task(task(b"t1", FN_BYTES), 0.0) == []
    assert state.queued_count() == 1
    assert state.running_task_id() is None
    assert state.on_processor_started(0.5) == [run(b"t1", FN_BYTES)]
    assert state.running_task_id() == b"t1"


def test_runs_one_task_at_a_time_and_queues_the_rest(ws: WorkerState) -> None:
    assert ws.on_task(task(b"t1", FN_BYTES), 1.0) == [run(b"t1", FN_BYTES)]
    assert ws.on_task(task(b"t2"), 1.0) == []
    assert ws.on_task(task(b"t3"), 1.0) == []
    assert ws.statistics() == {"queued": 2, "running": 1, "done": 0, "functions": 1}
    assert ws.queued_count() == 3
    assert ws.on_processor_result(result(b"t1"), 2.0) == [SendToScheduler(result(b"t1")), run(b"t2")]
    assert ws.running_task_id() == b"t2"
    assert ws.on_processor_result(result(b"t2"), 3.0) == [SendToScheduler(result(b"t2")), run(b"t3")]
    assert ws.on_processor_result(result(b"t3"), 4.0) == [SendToScheduler(result(b"t3"))]
    assert ws.statistics() == {"queued": 0, "running": 0, "done": 3, "functions": 1}
    assert ws.running_task_id() is None
    # Idle again: the next task runs at once.
    assert ws.on_task(task(b"t4"), 5.0) == [run(b"t4")]


def test_failed_task_result_is_reported_as_is(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 1.0)
    failure = TaskResult(b"t1", TaskStatus.FAILED, b"pickled-exception", 1)
    assert ws.on_processor_result(failure, 2.0) == [SendToScheduler(failure)]


def test_result_of_a_task_the_processor_is_not_running_is_dropped(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 1.0)
    ws.on_task(task(b"t2"), 1.0)
    assert ws.on_processor_result(result(b"t2"), 2.0) == []
    assert ws.on_processor_result(result(b"other"), 2.0) == []
    assert ws.running_task_id() == b"t1"
    assert ws.statistics()["done"] == 0


def test_tasks_run_in_arrival_order(ws: WorkerState) -> None:
    ws.on_task(task(b"a", FN_BYTES), 0.0)
    for task_id in (b"c", b"b", b"d"):
        ws.on_task(task(task_id), 0.0)
    order = []
    current = b"a"
    for _ in range(4):
        out = ws.on_processor_result(result(current), 1.0)
        order.append(current)
        if len(out) == 2:
            current = out[1].task.task_id  # type: ignore[union-attr]
    assert order == [b"a", b"c", b"b", b"d"]


# -- functions ----------------------------------------------------------------------------------


def test_function_bytes_go_to_the_processor_once(ws: WorkerState) -> None:
    assert ws.on_task(task(b"t1", FN_BYTES), 0.0) == [run(b"t1", FN_BYTES)]
    ws.on_task(task(b"t2"), 0.0)
    ws.on_task(task(b"t3", FN2_BYTES, FN2), 0.0)
    ws.on_task(task(b"t4", b"", FN2), 0.0)
    assert ws.on_processor_result(result(b"t1"), 1.0)[1] == run(b"t2")
    assert ws.on_processor_result(result(b"t2"), 1.0)[1] == run(b"t3", FN2_BYTES, FN2)
    assert ws.on_processor_result(result(b"t3"), 1.0)[1] == run(b"t4", b"", FN2)
    assert ws.statistics()["functions"] == 2


def test_function_bytes_go_again_to_a_restarted_processor(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_processor_result(result(b"t1"), 1.0)
    assert ws.on_task(task(b"t2"), 1.0) == [run(b"t2")]
    ws.on_task(task(b"t3"), 1.0)
    assert ws.on_processor_died(2.0)[-1] == RestartProcessor("the processor died")
    # The fresh processor holds no function: the agent attaches the bytes it kept.
    assert ws.on_processor_started(3.0) == [run(b"t3", FN_BYTES)]
    ws.on_task(task(b"t4"), 3.0)
    assert ws.on_processor_result(result(b"t3"), 4.0) == [SendToScheduler(result(b"t3")), run(b"t4")]


def test_function_bytes_go_again_after_a_cancel_restart(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_task(task(b"t2"), 0.0)
    ws.on_task_cancel(TaskCancel(b"t1"), 1.0)
    assert ws.on_processor_started(1.1) == [run(b"t2", FN_BYTES)]


# -- cancel -------------------------------------------------------------------------------------


def test_cancel_of_a_queued_task(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_task(task(b"t2"), 0.0)
    ws.on_task(task(b"t3"), 0.0)
    assert ws.on_task_cancel(TaskCancel(b"t2"), 1.0) == [confirm(b"t2", CancelConfirmType.CANCELED)]
    assert ws.running_task_id() == b"t1"
    assert ws.queued_count() == 2
    assert ws.on_processor_result(result(b"t1"), 2.0) == [SendToScheduler(result(b"t1")), run(b"t3")]


def test_cancel_of_the_running_task_restarts_the_processor(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_task(task(b"t2"), 0.0)
    assert ws.on_task_cancel(TaskCancel(b"t1"), 1.0) == [
        RestartProcessor(f"task {b't1'.hex()} was cancelled"),
        confirm(b"t1", CancelConfirmType.CANCELED),
    ]
    assert ws.running_task_id() is None
    assert ws.queued_count() == 1
    # Nothing runs until the new processor is up ...
    assert ws.on_task(task(b"t3"), 1.0) == []
    # ... and a late result from the killed processor is dropped.
    assert ws.on_processor_result(result(b"t1"), 1.05) == []
    assert ws.on_processor_started(1.1) == [run(b"t2", FN_BYTES)]
    assert ws.on_processor_result(result(b"t2"), 2.0) == [SendToScheduler(result(b"t2")), run(b"t3")]


def test_cancel_of_the_running_task_with_nothing_queued(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_task_cancel(TaskCancel(b"t1"), 1.0)
    assert ws.on_processor_started(1.1) == []
    assert ws.on_task(task(b"t2"), 2.0) == [run(b"t2", FN_BYTES)]


def test_cancel_of_an_unknown_task_is_not_found(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    assert ws.on_task_cancel(TaskCancel(b"nope"), 1.0) == [confirm(b"nope", CancelConfirmType.CANCEL_NOT_FOUND)]
    assert ws.running_task_id() == b"t1"


def test_cancel_of_a_finished_task_is_not_found(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_processor_result(result(b"t1"), 1.0)
    assert ws.on_task_cancel(TaskCancel(b"t1"), 2.0) == [confirm(b"t1", CancelConfirmType.CANCEL_NOT_FOUND)]


# -- processor death and task timeout ----------------------------------------------------------------


def test_processor_death_fails_the_running_task_and_restarts(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES, attempt=3), 0.0)
    ws.on_task(task(b"t2"), 0.0)
    text = f"the processor running task {b't1'.hex()} died (crash, os._exit, segfault or OOM kill)".encode()
    assert ws.on_processor_died(1.0) == [
        SendToScheduler(TaskResult(b"t1", TaskStatus.PROCESSOR_DIED, text, 3)),
        RestartProcessor("the processor died"),
    ]
    assert ws.running_task_id() is None
    assert ws.on_processor_started(1.5) == [run(b"t2", FN_BYTES)]


def test_idle_processor_death_only_restarts(ws: WorkerState) -> None:
    assert ws.on_processor_died(1.0) == [RestartProcessor("the processor died")]
    assert ws.on_task(task(b"t1", FN_BYTES), 1.2) == []
    assert ws.on_processor_started(1.5) == [run(b"t1", FN_BYTES)]


def test_task_timeout_via_tick() -> None:
    state = make(task_timeout=5.0)
    state.on_processor_started(0.0)
    state.tick(0.0)
    assert state.on_task(task(b"t1", FN_BYTES, attempt=2), 1.0) == [run(b"t1", FN_BYTES, attempt=2)]
    state.on_task(task(b"t2"), 1.0)
    # Exactly at the timeout the task may still finish.
    assert state.tick(6.0) == [SendToScheduler(WorkerHeartbeat(6.0, 2, 0.0, 0))]
    text = f"task {b't1'.hex()} ran past its timeout of 5s and was stopped".encode()
    assert state.tick(6.5) == [
        SendToScheduler(TaskResult(b"t1", TaskStatus.TIMEOUT, text, 2)),
        RestartProcessor("task timeout"),
    ]
    assert state.running_task_id() is None
    # The timeout runs from when each task started, not from when it arrived.
    assert state.on_processor_started(7.0) == [run(b"t2", FN_BYTES)]
    assert state.tick(11.5) == [SendToScheduler(WorkerHeartbeat(11.5, 1, 0.0, 0))]
    assert state.tick(12.0) == []
    text = f"task {b't2'.hex()} ran past its timeout of 5s and was stopped".encode()
    assert state.tick(12.5) == [
        SendToScheduler(TaskResult(b"t2", TaskStatus.TIMEOUT, text, 1)),
        RestartProcessor("task timeout"),
    ]
    assert state.tick(13.5) == [SendToScheduler(WorkerHeartbeat(13.5, 0, 0.0, 0))]


def test_no_task_timeout_when_disabled(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    for now in range(2, 29, 2):
        ws.on_scheduler_contact(float(now))
        assert ws.tick(float(now)) == [SendToScheduler(WorkerHeartbeat(float(now), 1, 0.0, 0))]
    assert ws.running_task_id() == b"t1"


# -- heartbeats and scheduler death ---------------------------------------------------------------


def test_heartbeat_cadence() -> None:
    state = make()
    assert state.tick(0.0, cpu_percent=12.5, rss_bytes=1000) == [SendToScheduler(WorkerHeartbeat(0.0, 0, 12.5, 1000))]
    assert state.tick(1.0) == []
    assert state.tick(1.999) == []
    assert state.tick(2.0, 3.0, 7) == [SendToScheduler(WorkerHeartbeat(2.0, 0, 3.0, 7))]
    assert state.tick(3.5) == []
    # A late tick beats once, and the next beat counts from it.
    assert state.tick(7.0) == [SendToScheduler(WorkerHeartbeat(7.0, 0, 0.0, 0))]
    assert state.tick(8.5) == []
    assert state.tick(9.0) == [SendToScheduler(WorkerHeartbeat(9.0, 0, 0.0, 0))]


def test_heartbeat_reports_held_tasks(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.5)
    ws.on_task(task(b"t2"), 0.5)
    ws.on_task(task(b"t3"), 0.5)
    assert ws.tick(2.0) == [SendToScheduler(WorkerHeartbeat(2.0, 3, 0.0, 0))]


def test_worker_exits_without_scheduler_contact() -> None:
    state = make()
    state.tick(0.0)
    assert state.tick(DEATH) == [SendToScheduler(WorkerHeartbeat(DEATH, 0, 0.0, 0))]
    reason = f"no word from the scheduler for {DEATH:g}s"
    assert state.tick(DEATH + 0.5) == [ExitWorker(reason)]
    # It keeps asking to exit, and sends no more heartbeats.
    assert state.tick(DEATH + 5.0) == [ExitWorker(reason)]


@pytest.mark.parametrize("contact", ["on_scheduler_contact", "on_task", "on_task_cancel"])
def test_any_scheduler_message_postpones_exit(contact: str) -> None:
    state = make()
    state.on_processor_started(0.0)
    state.tick(0.0)
    if contact == "on_scheduler_contact":
        state.on_scheduler_contact(20.0)
    elif contact == "on_task":
        state.on_task(task(b"t1", FN_BYTES), 20.0)
    else:
        state.on_task_cancel(TaskCancel(b"t1"), 20.0)
    held = 1 if contact == "on_task" else 0
    assert state.tick(DEATH + 10.0) == [SendToScheduler(WorkerHeartbeat(DEATH + 10.0, held, 0.0, 0))]
    assert state.tick(DEATH + 20.0) == [SendToScheduler(WorkerHeartbeat(DEATH + 20.0, held, 0.0, 0))]
    assert state.tick(DEATH + 20.5) == [ExitWorker(f"no word from the scheduler for {DEATH:g}s")]


def test_processor_results_do_not_count_as_scheduler_contact(ws: WorkerState) -> None:
    ws.on_task(task(b"t1", FN_BYTES), 0.0)
    ws.on_processor_result(result(b"t1"), 29.0)
    assert ws.tick(30.5) == [ExitWorker(f"no word from the scheduler for {DEATH:g}s")]
