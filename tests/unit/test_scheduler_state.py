"""Example tests for ``SchedulerState``: messages and ticks in, instructions out, compared with ``==``.

No sockets, no sleeps, no threads. Every step goes through ``Harness``, which calls
``SchedulerState.validate()`` after it, so a broken invariant fails the step that broke it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from scaler.protocol.content_id import content_id
from scaler.protocol.messages import (
    ArgumentKind,
    BalanceResponse,
    CancelConfirmType,
    ClientDisconnect,
    ClientDropped,
    ClientHeartbeat,
    ClientHeartbeatEcho,
    ClientShutdownResponse,
    DisconnectRequest,
    DisconnectResponse,
    DisconnectType,
    Message,
    ObjectInstruction,
    ObjectInstructionType,
    SchedulerShutdown,
    Task,
    TaskArgument,
    TaskCancel,
    TaskCancelConfirm,
    TaskCredit,
    TaskResult,
    TaskStarted,
    TaskStatus,
    WorkerHeartbeat,
    WorkerHeartbeatEcho,
)
from scaler.scheduler.state import Instruction, SchedulerConfig, SchedulerState, Send, Stop
from scaler.scheduler.task_table import IllegalTransition, TaskEvent, TaskRecord, TaskState

C1 = b"client-1"
C2 = b"client-2"
C3 = b"client-3"
W1 = b"worker-1"
W2 = b"worker-2"
W3 = b"worker-3"
FN_BYTES = b"pickled-function"
FN = content_id(FN_BYTES)
FN2_BYTES = b"pickled-function-2"
FN2 = content_id(FN2_BYTES)

CANCELED = CancelConfirmType.CANCELED
CANCEL_FAILED = CancelConfirmType.CANCEL_FAILED
CANCEL_NOT_FOUND = CancelConfirmType.CANCEL_NOT_FOUND

SCHEDULER_ID = b"scheduler-1"


# What a worker is told once the last client using FN has left.
DROP_FN = Send(W1, ObjectInstruction(ObjectInstructionType.DELETE_FUNCTIONS, [FN], []))


def args_of(task_id: bytes) -> list[TaskArgument]:
    return [TaskArgument("", ArgumentKind.INLINE, b"arg-of-" + task_id)]


def task(task_id: bytes, function: bytes = FN_BYTES, function_id: bytes = FN) -> Task:
    """A task as a client sends it (attempt 0; ``function`` empty once the client sent it)."""
    return Task(task_id, function_id, function, args_of(task_id), 0)


def dispatched(task_id: bytes, attempt: int = 1, function: bytes = b"", function_id: bytes = FN) -> Task:
    """A task as the scheduler sends it to a worker."""
    return Task(task_id, function_id, function, args_of(task_id), attempt)


def result(task_id: bytes, attempt: int = 1, payload: bytes = b"ok") -> TaskResult:
    return TaskResult(task_id, TaskStatus.SUCCESS, payload + task_id, attempt)


def confirm(task_id: bytes, kind: CancelConfirmType) -> TaskCancelConfirm:
    return TaskCancelConfirm(task_id, kind)


class Harness:
    """Feeds one event at a time to a ``SchedulerState`` at a fake time and validates after each.

    Backpressure is off unless ``credits``: the TaskCredit messages would clutter every example;
    the tests under "backpressure" turn it on.
    """

    def __init__(self, config: SchedulerConfig | None = None, credits: bool = False) -> None:
        config = config or SchedulerConfig()
        if not credits:
            config = dataclasses.replace(config, max_number_of_tasks_waiting=0)
        self.state = SchedulerState(config, scheduler_id=SCHEDULER_ID)
        self.now = 0.0

    def handle(self, source: bytes, message: Message) -> list[Instruction]:
        out = self.state.handle(source, message, self.now)
        self.state.validate()
        return out

    def tick(self, now: float) -> list[Instruction]:
        self.now = now
        out = self.state.tick(now)
        self.state.validate()
        return out

    def worker_disconnected(self, worker_id: bytes) -> list[Instruction]:
        out = self.state.worker_disconnected(worker_id)
        self.state.validate()
        return out

    def add_worker(self, worker_id: bytes) -> list[Instruction]:
        """Register (or refresh) a worker; return what followed the heartbeat echo."""
        out = self.handle(worker_id, WorkerHeartbeat(self.now, 0, 0.0, 0))
        assert out[0] == Send(worker_id, WorkerHeartbeatEcho(self.now, SCHEDULER_ID))
        return out[1:]

    def stats(self) -> dict[str, int]:
        return self.state.statistics()

    def task_state(self, task_id: bytes) -> TaskState | None:
        record = self.state.tasks.get(task_id)
        return None if record is None else record.state


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness(SchedulerConfig(per_worker_queue_size=2, max_task_retries=1))
    yield harness
    harness.state.validate()


# -- heartbeats and unknown messages -----------------------------------------------------------


def test_worker_heartbeat_registers_and_is_echoed(h: Harness) -> None:
    assert h.handle(W1, WorkerHeartbeat(12.5, 0, 3.0, 100)) == [Send(W1, WorkerHeartbeatEcho(12.5, SCHEDULER_ID))]
    assert h.stats()["workers"] == 1
    assert h.handle(W1, WorkerHeartbeat(13.0, 0, 3.0, 100)) == [Send(W1, WorkerHeartbeatEcho(13.0, SCHEDULER_ID))]
    assert h.stats()["workers"] == 1


def test_client_heartbeat_registers_and_is_echoed(h: Harness) -> None:
    assert h.handle(C1, ClientHeartbeat(4.0)) == [Send(C1, ClientHeartbeatEcho(4.0, SCHEDULER_ID))]
    assert h.stats()["clients"] == 1


def test_message_the_scheduler_does_not_accept_is_ignored(h: Harness) -> None:
    assert h.handle(C1, ClientHeartbeatEcho(1.0, SCHEDULER_ID)) == []
    assert h.handle(W1, DisconnectResponse()) == []
    assert h.stats() == {
        "clients": 0,
        "workers": 0,
        "tasks": 0,
        "queued": 0,
        "assigned": 0,
        "functions": 0,
        "objects": 0,
        "graphs": 0,
        "completed": 0,
        "linked_children": 0,
    }


# -- queueing and dispatch -----------------------------------------------------------------------


def test_task_waits_in_queue_until_a_worker_arrives(h: Harness) -> None:
    assert h.handle(C1, task(b"t1")) == []
    assert h.task_state(b"t1") is TaskState.QUEUED
    assert h.stats()["queued"] == 1
    assert h.add_worker(W1) == [Send(W1, dispatched(b"t1", function=FN_BYTES))]
    assert h.task_state(b"t1") is TaskState.ASSIGNED
    assert h.stats()["queued"] == 0
    assert h.stats()["assigned"] == 1


def test_tasks_go_to_the_least_loaded_worker() -> None:
    h = Harness(SchedulerConfig(per_worker_queue_size=10))
    h.add_worker(W1)
    h.add_worker(W2)
    assert h.handle(C1, task(b"t1")) == [Send(W1, dispatched(b"t1", function=FN_BYTES))]
    assert h.handle(C1, task(b"t2", b"")) == [Send(W2, dispatched(b"t2", function=FN_BYTES))]
    assert h.handle(C1, task(b"t3", b"")) == [Send(W1, dispatched(b"t3"))]
    # W1 holds 2, W2 holds 1: the next one goes to W2 although W1 comes first.
    assert h.handle(C1, task(b"t4", b"")) == [Send(W2, dispatched(b"t4"))]
    # A fresh worker is the least loaded of all.
    h.add_worker(W3)
    assert h.handle(C1, task(b"t5", b"")) == [Send(W3, dispatched(b"t5", function=FN_BYTES))]
    assert h.handle(C1, task(b"t6", b"")) == [Send(W3, dispatched(b"t6"))]
    # A result frees a slot on W1, which becomes the least loaded.
    assert h.handle(W1, result(b"t1")) == [Send(C1, result(b"t1"))]
    assert h.handle(C1, task(b"t7", b"")) == [Send(W1, dispatched(b"t7"))]


def test_queue_drains_to_a_new_worker_in_submission_order(h: Harness) -> None:
    for i in range(3):
        h.handle(C1, task(b"t%d" % i, FN_BYTES if i == 0 else b""))
    assert h.add_worker(W1) == [
        Send(W1, dispatched(b"t0", function=FN_BYTES)),
        Send(W1, dispatched(b"t1")),
    ]
    assert h.stats()["queued"] == 1
    assert h.add_worker(W2) == [Send(W2, dispatched(b"t2", function=FN_BYTES))]


def test_per_worker_queue_limit_is_never_exceeded(h: Harness) -> None:
    h.add_worker(W1)
    assert h.handle(C1, task(b"t1")) == [Send(W1, dispatched(b"t1", function=FN_BYTES))]
    assert h.handle(C1, task(b"t2", b"")) == [Send(W1, dispatched(b"t2"))]
    assert h.handle(C1, task(b"t3", b"")) == []
    assert h.handle(C1, task(b"t4", b"")) == []
    assert h.stats()["queued"] == 2
    assert h.state.workers[W1].tasks.keys() == {b"t1", b"t2"}
    # A heartbeat does not free a slot.
    assert h.add_worker(W1) == []
    # A result frees one slot: the result goes out first, then exactly one queued task.
    assert h.handle(W1, result(b"t2")) == [Send(C1, result(b"t2")), Send(W1, dispatched(b"t3"))]
    assert h.state.workers[W1].tasks.keys() == {b"t1", b"t3"}
    assert h.handle(W1, result(b"t1")) == [Send(C1, result(b"t1")), Send(W1, dispatched(b"t4"))]
    assert h.handle(W1, result(b"t3")) == [Send(C1, result(b"t3"))]
    assert h.handle(W1, result(b"t4")) == [Send(C1, result(b"t4"))]
    assert h.stats()["tasks"] == 0
    assert h.stats()["completed"] == 4


def test_dispatch_can_be_deferred_to_one_call(h: Harness) -> None:
    h.add_worker(W1)
    assert h.state.handle(C1, task(b"t1"), 0.0, dispatch=False) == []
    assert h.state.handle(C1, task(b"t2", b""), 0.0, dispatch=False) == []
    h.state.validate()
    assert h.stats()["queued"] == 2
    assert h.state.dispatch() == [
        Send(W1, dispatched(b"t1", function=FN_BYTES)),
        Send(W1, dispatched(b"t2")),
    ]
    h.state.validate()


def test_duplicate_submission_is_ignored(h: Harness) -> None:
    h.handle(C1, task(b"t1"))
    assert h.handle(C1, task(b"t1", b"")) == []
    assert h.stats()["tasks"] == 1
    assert h.add_worker(W1) == [Send(W1, dispatched(b"t1", function=FN_BYTES))]


# -- functions -----------------------------------------------------------------------------------


def test_function_bytes_go_once_to_each_worker() -> None:
    h = Harness(SchedulerConfig(per_worker_queue_size=10))
    h.add_worker(W1)
    assert h.handle(C1, task(b"t1")) == [Send(W1, dispatched(b"t1", function=FN_BYTES))]
    h.add_worker(W2)
    assert h.handle(C1, task(b"t2", b"")) == [Send(W2, dispatched(b"t2", function=FN_BYTES))]
    assert h.handle(C1, task(b"t3", b"")) == [Send(W1, dispatched(b"t3"))]
    assert h.handle(C1, task(b"t4", b"")) == [Send(W2, dispatched(b"t4"))]
    # A second function is sent once too, independently of the first.
    assert h.handle(C1, task(b"t5", FN2_BYTES, FN2)) == [
        Send(W1, dispatched(b"t5", function=FN2_BYTES, function_id=FN2))
    ]
    assert h.handle(C1, task(b"t6", b"", FN2)) == [Send(W2, dispatched(b"t6", function=FN2_BYTES, function_id=FN2))]
    assert h.handle(C1, task(b"t7", b"", FN2)) == [Send(W1, dispatched(b"t7", function_id=FN2))]
    assert h.stats()["functions"] == 2


def test_function_bytes_are_stored_once_for_all_clients(h: Harness) -> None:
    h.handle(C1, task(b"t1"))
    h.handle(C2, task(b"t2"))
    assert h.stats()["functions"] == 1
    assert h.state.clients[C1].functions == {FN}
    assert h.state.clients[C2].functions == {FN}
    # Stored without the bytes; the worker gets them once.
    assert h.state.tasks[b"t1"].task.function == b""
    assert h.add_worker(W1) == [
        Send(W1, dispatched(b"t1", function=FN_BYTES)),
        Send(W1, dispatched(b"t2")),
    ]


def test_client_may_name_a_function_another_client_sent(h: Harness) -> None:
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    assert h.handle(C2, task(b"t2", b"")) == [Send(W1, dispatched(b"t2"))]
    assert h.state.clients[C2].functions == {FN}
    # The function lives on while C2 still uses it.
    h.handle(C1, ClientDisconnect(DisconnectType.DISCONNECT))
    assert h.stats()["functions"] == 1
    h.handle(C2, ClientDisconnect(DisconnectType.DISCONNECT))
    assert h.stats()["functions"] == 0


def test_task_naming_an_unknown_function_is_rejected(h: Harness) -> None:
    h.add_worker(W1)
    reason = b"the scheduler does not know this task's function; the client must resend it"
    assert h.handle(C1, task(b"t1", b"")) == [Send(C1, TaskResult(b"t1", TaskStatus.REJECTED, reason, 0))]
    assert h.stats()["tasks"] == 0


def test_freed_function_is_sent_again_to_a_worker_that_had_it(h: Harness) -> None:
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(W1, result(b"t1"))
    h.handle(C1, ClientDisconnect(DisconnectType.DISCONNECT))
    assert h.stats()["functions"] == 0
    assert h.state.workers[W1].functions == set()
    # A new client that names the freed function without its bytes is rejected ...
    assert h.handle(C2, task(b"t2", b""))[0].message.status is TaskStatus.REJECTED  # type: ignore[union-attr]
    # ... and with its bytes, they travel to the worker again.
    assert h.handle(C2, task(b"t3")) == [Send(W1, dispatched(b"t3", function=FN_BYTES))]


# -- results -------------------------------------------------------------------------------------


def test_results_go_to_the_owning_client(h: Harness) -> None:
    h.add_worker(W1)
    h.add_worker(W2)
    h.handle(C1, task(b"a"))
    h.handle(C2, task(b"b"))
    assert h.state.tasks[b"a"].worker == W1
    assert h.state.tasks[b"b"].worker == W2
    assert h.handle(W2, result(b"b")) == [Send(C2, result(b"b"))]
    assert h.handle(W1, result(b"a")) == [Send(C1, result(b"a"))]
    assert h.stats()["completed"] == 2


def test_failed_result_is_routed_like_any_other(h: Harness) -> None:
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    failure = TaskResult(b"t1", TaskStatus.FAILED, b"pickled-exception", 1)
    assert h.handle(W1, failure) == [Send(C1, failure)]


def test_result_from_a_worker_not_holding_the_task_is_dropped(h: Harness) -> None:
    h.add_worker(W1)
    h.add_worker(W2)
    h.handle(C1, task(b"t1"))
    assert h.state.tasks[b"t1"].worker == W1
    assert h.handle(W2, result(b"t1")) == []
    assert h.task_state(b"t1") is TaskState.ASSIGNED
    assert h.handle(W1, result(b"t1")) == [Send(C1, result(b"t1"))]


def test_result_from_an_unknown_worker_is_dropped_and_does_not_register_it(h: Harness) -> None:
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    assert h.handle(W3, result(b"t1")) == []
    assert W3 not in h.state.workers
    assert h.task_state(b"t1") is TaskState.ASSIGNED


def test_result_of_an_unknown_task_is_dropped(h: Harness) -> None:
    h.add_worker(W1)
    assert h.handle(W1, result(b"nope")) == []


def test_result_of_a_stale_attempt_is_dropped() -> None:
    h = Harness(SchedulerConfig(per_worker_queue_size=2, worker_timeout_seconds=10.0))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(C1, ClientHeartbeat(0.0))
    # W1 falls silent and is declared dead; the task is requeued ...
    h.now = 11.0
    h.handle(C1, ClientHeartbeat(11.0))
    assert h.tick(11.0) == []
    assert h.task_state(b"t1") is TaskState.QUEUED
    # ... then W1 comes back and gets the task again as attempt 2.
    assert h.add_worker(W1) == [Send(W1, dispatched(b"t1", attempt=2, function=FN_BYTES))]
    # Its late answer to attempt 1 must not resolve the task.
    assert h.handle(W1, result(b"t1", attempt=1)) == []
    assert h.task_state(b"t1") is TaskState.ASSIGNED
    assert h.handle(W1, result(b"t1", attempt=2)) == [Send(C1, result(b"t1", attempt=2))]
    assert h.handle(W1, result(b"t1", attempt=2)) == []


def test_result_for_a_client_that_left_is_dropped(h: Harness) -> None:
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(C1, ClientDisconnect(DisconnectType.DISCONNECT))
    assert h.handle(W1, result(b"t1")) == []
    assert h.stats()["tasks"] == 0


# -- cancel --------------------------------------------------------------------------------------


def test_cancel_of_a_queued_task_confirms_at_once(h: Harness) -> None:
    h.handle(C1, task(b"t1"))
    assert h.handle(C1, TaskCancel(b"t1")) == [Send(C1, confirm(b"t1", CANCELED))]
    assert h.stats()["tasks"] == 0
    assert h.stats()["queued"] == 0
    # The stale queue entry is skipped: nothing is dispatched.
    assert h.add_worker(W1) == []
    # A second cancel finds nothing.
    assert h.handle(C1, TaskCancel(b"t1")) == [Send(C1, confirm(b"t1", CANCEL_NOT_FOUND))]


def test_cancel_of_a_queued_task_behind_a_full_worker(h: Harness) -> None:
    h.add_worker(W1)
    for i in range(4):
        h.handle(C1, task(b"t%d" % i, FN_BYTES if i == 0 else b""))
    assert h.handle(C1, TaskCancel(b"t2")) == [Send(C1, confirm(b"t2", CANCELED))]
    # The freed slot goes to t3, not the cancelled t2.
    assert h.handle(W1, result(b"t0")) == [Send(C1, result(b"t0")), Send(W1, dispatched(b"t3"))]


@pytest.mark.parametrize("worker_answer", [CANCELED, CANCEL_NOT_FOUND])
def test_cancel_of_an_assigned_task_goes_through_its_worker(h: Harness, worker_answer: CancelConfirmType) -> None:
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(C1, task(b"t2", b""))
    h.handle(C1, task(b"t3", b""))
    assert h.handle(C1, TaskCancel(b"t1")) == [Send(W1, TaskCancel(b"t1"))]
    assert h.task_state(b"t1") is TaskState.CANCELING
    # A repeated cancel while one is in flight sends nothing more.
    assert h.handle(C1, TaskCancel(b"t1")) == []
    # The task still holds its slot until the worker answers; then t3 takes it.
    assert h.state.workers[W1].tasks.keys() == {b"t1", b"t2"}
    assert h.handle(W1, confirm(b"t1", worker_answer)) == [
        Send(C1, confirm(b"t1", CANCELED)),
        Send(W1, dispatched(b"t3")),
    ]
    assert h.task_state(b"t1") is None
    # A duplicate answer is dropped.
    assert h.handle(W1, confirm(b"t1", worker_answer)) == []


def test_cancel_failed_is_passed_on_and_the_task_stays_assigned(h: Harness) -> None:
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(C1, TaskCancel(b"t1"))
    assert h.handle(W1, confirm(b"t1", CANCEL_FAILED)) == [Send(C1, confirm(b"t1", CANCEL_FAILED))]
    assert h.task_state(b"t1") is TaskState.ASSIGNED
    assert h.state.tasks[b"t1"].worker == W1
    # The task completes normally ...
    assert h.handle(W1, result(b"t1")) == [Send(C1, result(b"t1"))]


def test_cancel_may_be_asked_again_after_cancel_failed(h: Harness) -> None:
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(C1, TaskCancel(b"t1"))
    h.handle(W1, confirm(b"t1", CANCEL_FAILED))
    assert h.handle(C1, TaskCancel(b"t1")) == [Send(W1, TaskCancel(b"t1"))]
    assert h.handle(W1, confirm(b"t1", CANCELED)) == [Send(C1, confirm(b"t1", CANCELED))]


def test_cancel_of_an_unknown_task_is_not_found(h: Harness) -> None:
    assert h.handle(C1, TaskCancel(b"nope")) == [Send(C1, confirm(b"nope", CANCEL_NOT_FOUND))]
    assert h.stats()["clients"] == 1


def test_cancel_of_a_finished_task_is_not_found(h: Harness) -> None:
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(W1, result(b"t1"))
    assert h.handle(C1, TaskCancel(b"t1")) == [Send(C1, confirm(b"t1", CANCEL_NOT_FOUND))]


@pytest.mark.parametrize("assigned", [False, True])
def test_cancel_of_another_clients_task_is_not_found_and_harmless(h: Harness, assigned: bool) -> None:
    if assigned:
        h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    before = h.task_state(b"t1")
    assert h.handle(C2, TaskCancel(b"t1")) == [Send(C2, confirm(b"t1", CANCEL_NOT_FOUND))]
    assert h.task_state(b"t1") is before
    assert b"t1" in h.state.clients[C1].tasks


def test_result_arriving_while_canceling_is_forwarded(h: Harness) -> None:
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(C1, TaskCancel(b"t1"))
    assert h.handle(W1, result(b"t1")) == [Send(C1, result(b"t1"))]
    assert h.task_state(b"t1") is None
    # The worker's late answer to the cancel is dropped: the result settled the task.
    assert h.handle(W1, confirm(b"t1", CANCEL_NOT_FOUND)) == []


def test_cancel_confirm_from_a_worker_not_holding_the_task_is_dropped(h: Harness) -> None:
    h.add_worker(W1)
    h.add_worker(W2)
    h.handle(C1, task(b"t1"))
    h.handle(C1, TaskCancel(b"t1"))
    assert h.handle(W2, confirm(b"t1", CANCELED)) == []
    assert h.task_state(b"t1") is TaskState.CANCELING


def test_cancel_confirm_for_a_task_not_being_cancelled_is_dropped(h: Harness) -> None:
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    assert h.handle(W1, confirm(b"t1", CANCELED)) == []
    assert h.task_state(b"t1") is TaskState.ASSIGNED


def test_worker_death_while_canceling_confirms_the_cancel(h: Harness) -> None:
    h.add_worker(W1)
    h.add_worker(W2)
    h.handle(C1, task(b"t1"))
    h.handle(C1, TaskCancel(b"t1"))
    assert h.worker_disconnected(W1) == [Send(C1, confirm(b"t1", CANCELED))]
    assert h.stats()["tasks"] == 0


def test_graceful_leave_while_canceling_confirms_the_cancel(h: Harness) -> None:
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(C1, TaskCancel(b"t1"))
    assert h.handle(W1, DisconnectRequest()) == [Send(C1, confirm(b"t1", CANCELED)), Send(W1, DisconnectResponse())]


# -- clients leaving ------------------------------------------------------------------------------


def test_client_disconnect_cancels_its_tasks_and_frees_its_functions(h: Harness) -> None:
    h.add_worker(W1)
    h.handle(C1, task(b"a1"))
    h.handle(C1, task(b"a2", b""))
    h.handle(C1, task(b"a3", b""))  # queued behind the full worker
    h.handle(C2, task(b"b1", FN2_BYTES, FN2))  # queued
    h.handle(C1, TaskCancel(b"a2"))  # already canceling
    assert h.stats()["functions"] == 2
    # Its running task is cancelled, then the worker drops the function nobody uses any more.
    assert h.handle(C1, ClientDisconnect(DisconnectType.DISCONNECT)) == [
        Send(W1, TaskCancel(b"a1")),
        Send(W1, ObjectInstruction(ObjectInstructionType.DELETE_FUNCTIONS, [FN], [])),
    ]
    assert C1 not in h.state.clients
    assert h.task_state(b"a3") is None
    assert h.task_state(b"a1") is TaskState.CANCELING
    assert h.task_state(b"a2") is TaskState.CANCELING
    assert h.stats()["functions"] == 1
    assert h.state.workers[W1].functions == set()
    # The worker's answers go nowhere, but free the slots for C2's task.
    assert h.handle(W1, confirm(b"a1", CANCELED)) == [Send(W1, dispatched(b"b1", function=FN2_BYTES, function_id=FN2))]
    assert h.handle(W1, result(b"a2")) == []
    assert h.stats()["tasks"] == 1


def test_client_disconnect_of_an_unknown_client_is_harmless(h: Harness) -> None:
    assert h.handle(C1, ClientDisconnect(DisconnectType.DISCONNECT)) == []
    assert h.stats()["clients"] == 0


def test_client_times_out() -> None:
    h = Harness(SchedulerConfig(per_worker_queue_size=1, client_timeout_seconds=10.0, worker_timeout_seconds=100.0))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(C1, task(b"t2", b""))
    h.now = 6.0
    h.handle(C2, ClientHeartbeat(6.0))
    # Exactly at the timeout the client is still alive.
    assert h.tick(10.0) == []
    assert h.stats()["clients"] == 2
    assert h.tick(10.5) == [Send(W1, TaskCancel(b"t1")), DROP_FN]
    assert set(h.state.clients) == {C2}
    assert h.task_state(b"t2") is None
    assert h.stats()["functions"] == 0
    assert h.tick(16.5) == []
    assert set(h.state.clients) == set()


def test_client_heartbeat_keeps_it_alive() -> None:
    h = Harness(SchedulerConfig(client_timeout_seconds=10.0))
    h.handle(C1, task(b"t1"))
    for now in (8.0, 16.0, 24.0):
        h.now = now
        h.handle(C1, ClientHeartbeat(now))
        assert h.tick(now + 9.0) == []
    assert h.stats()["tasks"] == 1


# -- workers leaving ------------------------------------------------------------------------------


def test_worker_times_out_and_its_tasks_are_requeued() -> None:
    h = Harness(SchedulerConfig(per_worker_queue_size=2, worker_timeout_seconds=10.0, client_timeout_seconds=100))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(C1, task(b"t2", b""))
    h.handle(W1, TaskStarted(b"t1", 1))
    h.now = 5.0
    h.add_worker(W2)
    assert h.tick(10.0) == []
    # W1 is past its timeout; W2 is not. W2 gets both tasks, attempt 2, function bytes once.
    out = h.tick(10.5)
    assert len(out) == 2
    first, second = out
    assert isinstance(first, Send)
    assert isinstance(second, Send)
    # The requeue order of one worker's tasks is not specified; the function travels with the first.
    assert first == Send(W2, dispatched(first.message.task_id, attempt=2, function=FN_BYTES))  # type: ignore[attr-defined]
    assert second == Send(W2, dispatched(second.message.task_id, attempt=2))  # type: ignore[attr-defined]
    assert {first.message.task_id, second.message.task_id} == {b"t1", b"t2"}  # type: ignore[attr-defined]
    assert set(h.state.workers) == {W2}
    # Only the task that had started there is charged a death: t2 merely waited in W1's queue.
    assert {task_id: record.deaths for task_id, record in h.state.tasks.items()} == {b"t1": 1, b"t2": 0}


def test_requeued_tasks_go_before_newer_ones() -> None:
    h = Harness(SchedulerConfig(per_worker_queue_size=1))
    h.add_worker(W1)
    h.handle(C1, task(b"old"))
    h.handle(C1, task(b"new", b""))
    assert h.worker_disconnected(W1) == []
    assert h.add_worker(W2) == [Send(W2, dispatched(b"old", attempt=2, function=FN_BYTES))]


def test_worker_disconnected_of_an_unknown_worker_is_harmless(h: Harness) -> None:
    assert h.worker_disconnected(W1) == []


def test_task_fails_with_worker_died_past_the_retry_limit(h: Harness) -> None:
    # max_task_retries=1: the first death requeues, the second fails the task.
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.add_worker(W2)
    h.handle(W1, TaskStarted(b"t1", 1))
    assert h.worker_disconnected(W1) == [Send(W2, dispatched(b"t1", attempt=2, function=FN_BYTES))]
    assert h.state.tasks[b"t1"].deaths == 1
    h.handle(W2, TaskStarted(b"t1", 2))
    text = f"task {b't1'.hex()}: its worker died while running it 2 times (2 attempts); giving up".encode()
    assert h.worker_disconnected(W2) == [Send(C1, TaskResult(b"t1", TaskStatus.WORKER_DIED, text, 2))]
    assert h.stats()["tasks"] == 0


def test_task_of_a_timed_out_worker_fails_past_the_retry_limit() -> None:
    h = Harness(SchedulerConfig(max_task_retries=0, worker_timeout_seconds=5.0, client_timeout_seconds=100))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(W1, TaskStarted(b"t1", 1))
    text = f"task {b't1'.hex()}: its worker died while running it 1 times (1 attempts); giving up".encode()
    assert h.tick(5.5) == [Send(C1, TaskResult(b"t1", TaskStatus.WORKER_DIED, text, 1))]


def test_graceful_leave_requeues_without_using_a_retry() -> None:
    h = Harness(SchedulerConfig(max_task_retries=0))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    assert h.handle(W1, DisconnectRequest()) == [Send(W1, DisconnectResponse())]
    assert W1 not in h.state.workers
    assert h.task_state(b"t1") is TaskState.QUEUED
    assert h.state.tasks[b"t1"].deaths == 0
    assert h.add_worker(W2) == [Send(W2, dispatched(b"t1", attempt=2, function=FN_BYTES))]
    # Leaving again on purpose still uses no retry.
    assert h.handle(W2, DisconnectRequest()) == [Send(W2, DisconnectResponse())]
    assert h.add_worker(W3) == [Send(W3, dispatched(b"t1", attempt=3, function=FN_BYTES))]
    assert h.handle(W3, result(b"t1", attempt=3)) == [Send(C1, result(b"t1", attempt=3))]


def test_only_tasks_that_started_on_a_dead_worker_use_up_their_retries() -> None:
    # A task queued behind others on workers that die again and again must not fail unrun.
    h = Harness(SchedulerConfig(max_task_retries=0, per_worker_queue_size=3))
    h.add_worker(W1)
    for task_id in (b"t1", b"t2", b"t3"):
        h.handle(C1, task(task_id, FN_BYTES if task_id == b"t1" else b""))
    assert h.handle(W1, TaskStarted(b"t1", 1)) == []
    text = f"task {b't1'.hex()}: its worker died while running it 1 times (1 attempts); giving up".encode()
    assert h.worker_disconnected(W1) == [Send(C1, TaskResult(b"t1", TaskStatus.WORKER_DIED, text, 1))]
    assert {task_id: record.deaths for task_id, record in h.state.tasks.items()} == {b"t2": 0, b"t3": 0}
    for worker in (W2, W3):  # two more deaths before anything starts: still nobody is charged
        h.add_worker(worker)
        h.worker_disconnected(worker)
    assert sorted(h.state.tasks) == [b"t2", b"t3"]
    assert all(record.deaths == 0 for record in h.state.tasks.values())


def test_a_task_started_notice_counts_only_for_the_current_attempt_on_its_worker(h: Harness) -> None:
    h.add_worker(W1)
    h.add_worker(W2)
    h.handle(C1, task(b"t1"))
    holder = h.state.tasks[b"t1"].worker
    other = W2 if holder == W1 else W1
    for source, attempt in ((other, 1), (holder, 2), (holder, 0)):  # a spoofer, a future attempt, a past one
        assert h.handle(source, TaskStarted(b"t1", attempt)) == []
        assert not h.state.tasks[b"t1"].started
    h.handle(holder, TaskStarted(b"t1", 1))
    assert h.state.tasks[b"t1"].started
    h.handle(holder, TaskStarted(b"unknown", 1))  # harmless


def test_a_draining_worker_keeps_its_started_tasks_hands_back_the_rest_and_gets_nothing_new() -> None:
    h = Harness(SchedulerConfig(max_task_retries=0, per_worker_queue_size=3))
    h.add_worker(W1)
    for task_id in (b"t1", b"t2", b"t3"):
        h.handle(C1, task(task_id, FN_BYTES if task_id == b"t1" else b""))
    h.handle(W1, TaskStarted(b"t1", 1))
    assert h.handle(W1, DisconnectRequest(drain=True)) == []
    assert h.state.workers[W1].leaving
    assert list(h.state.workers[W1].tasks) == [b"t1"]
    assert h.task_state(b"t2") is h.task_state(b"t3") is TaskState.QUEUED
    assert h.handle(C1, task(b"t4", b"")) == []  # nothing new goes to a draining worker
    # Another worker takes the handed-back tasks; the draining one finishes t1 and is let go.
    assert [send.to for send in h.add_worker(W2)] == [W2, W2, W2]  # type: ignore[union-attr]
    assert h.handle(W1, result(b"t1")) == [Send(C1, result(b"t1")), Send(W1, DisconnectResponse())]
    assert W1 not in h.state.workers
    assert all(record.deaths == 0 for record in h.state.tasks.values())


def test_a_task_that_crossed_a_drain_request_is_requeued_once_and_its_hand_back_is_ignored() -> None:
    h = Harness(SchedulerConfig(per_worker_queue_size=3))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(W1, TaskStarted(b"t1", 1))
    assert h.handle(C1, task(b"t2", b"")) == [Send(W1, dispatched(b"t2"))]  # on its way as W1 starts draining
    h.handle(W1, DisconnectRequest(drain=True))
    assert h.task_state(b"t2") is TaskState.QUEUED  # it had not started: requeued at once
    assert h.add_worker(W2) == [Send(W2, dispatched(b"t2", attempt=2, function=FN_BYTES))]
    # W1 then receives the old attempt and hands it back: that must not take t2 away from W2.
    assert h.handle(W1, BalanceResponse([b"t2"])) == []
    assert h.state.tasks[b"t2"].worker == W2
    assert h.handle(W1, result(b"t1")) == [Send(C1, result(b"t1")), Send(W1, DisconnectResponse())]


def test_a_draining_worker_that_stops_at_the_end_of_its_grace_period_does_not_charge_a_death() -> None:
    h = Harness(SchedulerConfig(max_task_retries=0))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(W1, TaskStarted(b"t1", 1))
    h.handle(W1, DisconnectRequest(drain=True))
    assert h.handle(W1, DisconnectRequest()) == [Send(W1, DisconnectResponse())]  # it gives up on t1
    assert h.task_state(b"t1") is TaskState.QUEUED
    assert h.state.tasks[b"t1"].deaths == 0


def test_a_draining_worker_whose_last_task_is_cancelled_for_a_departed_client_is_let_go() -> None:
    h = Harness()
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(W1, TaskStarted(b"t1", 1))
    h.handle(W1, DisconnectRequest(drain=True))
    assert h.handle(C1, ClientDisconnect(DisconnectType.DISCONNECT)) == [Send(W1, TaskCancel(b"t1")), DROP_FN]
    assert h.handle(W1, confirm(b"t1", CANCELED)) == [Send(W1, DisconnectResponse())]
    assert h.stats()["workers"] == 0


def test_disconnect_request_from_an_unknown_worker_is_answered(h: Harness) -> None:
    assert h.handle(W1, DisconnectRequest()) == [Send(W1, DisconnectResponse())]
    assert h.stats()["workers"] == 0


def test_worker_heartbeat_keeps_it_alive() -> None:
    h = Harness(SchedulerConfig(worker_timeout_seconds=10.0, client_timeout_seconds=1000.0))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    for now in (9.0, 18.0, 27.0):
        h.now = now
        h.add_worker(W1)
        assert h.tick(now + 10.0) == []
    assert h.state.tasks[b"t1"].worker == W1


def test_result_counts_as_worker_contact() -> None:
    h = Harness(SchedulerConfig(worker_timeout_seconds=10.0, client_timeout_seconds=1000.0))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(C1, task(b"t2", b""))
    h.now = 9.0
    h.handle(W1, result(b"t1"))
    assert h.tick(15.0) == []
    assert W1 in h.state.workers


# -- shutdown -------------------------------------------------------------------------------------


def test_protected_scheduler_refuses_shutdown(h: Harness) -> None:
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    out = h.handle(C1, ClientDisconnect(DisconnectType.SHUTDOWN))
    assert len(out) == 1
    assert isinstance(out[0], Send)
    reason = out[0].message.reason  # type: ignore[attr-defined]
    assert out == [Send(C1, ClientShutdownResponse(False, reason))]
    assert "protected" in reason
    # Nothing else changed: the client stays, its task keeps running.
    assert C1 in h.state.clients
    assert h.task_state(b"t1") is TaskState.ASSIGNED


def test_unprotected_scheduler_shuts_down_on_request() -> None:
    h = Harness(SchedulerConfig(protected=False))
    h.add_worker(W1)
    h.add_worker(W2)
    h.handle(C2, ClientHeartbeat(0.0))
    h.handle(C1, task(b"t1"))
    reason = "a client asked the scheduler to shut down"
    assert h.handle(C1, ClientDisconnect(DisconnectType.SHUTDOWN)) == [
        Send(C1, ClientShutdownResponse(True, "")),
        Send(W1, TaskCancel(b"t1")),
        DROP_FN,
        Send(W1, SchedulerShutdown(reason)),
        Send(W2, SchedulerShutdown(reason)),
        Send(C2, SchedulerShutdown(reason)),
        Stop(reason),
    ]


# -- the transition table ----------------------------------------------------------------------------

LEGAL = {
    (TaskState.WAITING, TaskEvent.READY): TaskState.QUEUED,
    (TaskState.QUEUED, TaskEvent.ASSIGN): TaskState.ASSIGNED,
    (TaskState.ASSIGNED, TaskEvent.CANCEL): TaskState.CANCELING,
    (TaskState.ASSIGNED, TaskEvent.REQUEUE): TaskState.QUEUED,
    (TaskState.ASSIGNED, TaskEvent.BALANCE): TaskState.BALANCING,
    (TaskState.BALANCING, TaskEvent.REQUEUE): TaskState.QUEUED,
    (TaskState.BALANCING, TaskEvent.KEEP): TaskState.ASSIGNED,
    (TaskState.BALANCING, TaskEvent.CANCEL): TaskState.CANCELING,
    (TaskState.CANCELING, TaskEvent.CANCEL_FAILED): TaskState.ASSIGNED,
    # A worker reports each attempt's start once; the task stays where it is, now started.
    **{(state, TaskEvent.START): state for state in (TaskState.ASSIGNED, TaskState.BALANCING, TaskState.CANCELING)},
    # Any live task ends once: DONE is terminal.
    **{(state, TaskEvent.FINISH): TaskState.DONE for state in TaskState if state is not TaskState.DONE},
}
ILLEGAL = [(state, event) for state in TaskState for event in TaskEvent if (state, event) not in LEGAL]


@pytest.mark.parametrize(("start", "event"), list(LEGAL))
def test_legal_transitions(start: TaskState, event: TaskEvent) -> None:
    record = TaskRecord(task=task(b"t1"), client=C1, state=start)
    record.move(event)
    assert record.state is LEGAL[(start, event)]


@pytest.mark.parametrize(("start", "event"), ILLEGAL)
def test_illegal_transition_raises_and_changes_nothing(start: TaskState, event: TaskEvent) -> None:
    record = TaskRecord(task=task(b"t1"), client=C1, state=start, worker=W1, attempt=2, deaths=1)
    before = TaskRecord(task=task(b"t1"), client=C1, state=start, worker=W1, attempt=2, deaths=1)
    with pytest.raises(IllegalTransition, match=f"cannot {event.value} while {start.value}"):
        record.move(event)
    assert record == before


def test_illegal_transition_inside_the_scheduler_leaves_its_state_unchanged(h: Harness) -> None:
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(C1, task(b"t2", b""))
    h.handle(C1, task(b"t3", b""))
    record = h.state.tasks[b"t1"]
    stats = h.stats()
    with pytest.raises(IllegalTransition):
        record.move(TaskEvent.ASSIGN)
    with pytest.raises(IllegalTransition):
        h.state.tasks[b"t3"].move(TaskEvent.CANCEL)
    assert record.state is TaskState.ASSIGNED
    assert h.task_state(b"t3") is TaskState.QUEUED
    assert h.stats() == stats
    h.state.validate()


# -- departed clients ------------------------------------------------------------------------------


@pytest.mark.parametrize("worker_leaves", ["dies", "disconnect_request"])
def test_orphaned_task_is_dropped_not_requeued_when_its_worker_leaves(worker_leaves: str) -> None:
    h = Harness()
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    assert h.handle(C1, ClientDisconnect(DisconnectType.DISCONNECT)) == [Send(W1, TaskCancel(b"t1")), DROP_FN]
    assert h.stats()["functions"] == 0
    # The worker refuses the cancel; there is no client left to tell.
    assert h.handle(W1, confirm(b"t1", CANCEL_FAILED)) == []
    h.add_worker(W2)
    out = h.worker_disconnected(W1) if worker_leaves == "dies" else h.handle(W1, DisconnectRequest())[:-1]
    # No one waits for this task any more: it must be dropped, not run again on W2.
    assert out == []
    assert h.stats()["tasks"] == 0


def test_client_that_timed_out_and_returns_keeps_the_state_valid() -> None:
    h = Harness(SchedulerConfig(client_timeout_seconds=10.0, worker_timeout_seconds=100.0))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    assert h.tick(10.5) == [Send(W1, TaskCancel(b"t1")), DROP_FN]
    h.now = 11.0
    reason = "the scheduler heard nothing from this client for 10s; its tasks were cancelled"
    # It is told it was dropped, and is not silently re-registered (validate() runs after each step).
    assert h.handle(C1, ClientHeartbeat(11.0)) == [Send(C1, ClientDropped(reason))]
    assert h.handle(C1, task(b"t2")) == [Send(C1, ClientDropped(reason))]
    assert h.stats()["clients"] == 0


# -- backpressure ----------------------------------------------------------------------------------


def credits(out: list[Instruction]) -> list[Instruction]:
    return [send for send in out if isinstance(send, Send) and isinstance(send.message, TaskCredit)]


def test_a_client_gets_its_credits_on_arrival_and_each_back_as_its_tasks_leave_the_queue() -> None:
    h = Harness(SchedulerConfig(max_number_of_tasks_waiting=3, per_worker_queue_size=1), credits=True)
    assert credits(h.handle(C1, ClientHeartbeat(0.0))) == [Send(C1, TaskCredit(3))]
    for index in range(3):
        assert h.handle(C1, task(b"t%d" % index, FN_BYTES if index == 0 else b"")) == []
    assert h.state.clients[C1].waiting == 3
    # Two tasks leave the queue in one turn (one to a worker, one cancelled): one message returns both.
    h.add_worker(W1)
    out = h.handle(C1, TaskCancel(b"t2"))
    assert credits(out) == [Send(C1, TaskCredit(1))]
    assert h.state.clients[C1].waiting == 1
    # Requeued after its worker died, a task holds no credit again: the client's next tasks are not held up.
    h.handle(W1, TaskStarted(b"t0", 1))
    out = h.worker_disconnected(W1)
    assert credits(out) == [] and h.state.clients[C1].waiting == 1
    # A second client's credits are its own.
    assert credits(h.handle(C2, ClientHeartbeat(0.0))) == [Send(C2, TaskCredit(3))]


def test_a_client_with_credits_to_spare_gets_them_back_with_its_next_message_not_alone() -> None:
    h = Harness(SchedulerConfig(max_number_of_tasks_waiting=10), credits=True)
    h.handle(C1, ClientHeartbeat(0.0))
    h.add_worker(W1)
    # The task goes to the worker at once: its credit is owed, but the client has 9 left, so no
    # TaskCredit wakes it in the middle of the task's trip ...
    assert credits(h.handle(C1, task(b"t1"))) == []
    # ... and the credit rides with the result, in the frame the client gets anyway.
    assert [send for send in h.handle(W1, result(b"t1")) if send.to == C1] == [  # type: ignore[union-attr]
        Send(C1, result(b"t1")),
        Send(C1, TaskCredit(1)),
    ]


def test_a_client_running_short_gets_its_credits_at_once() -> None:
    h = Harness(SchedulerConfig(max_number_of_tasks_waiting=4), credits=True)
    h.handle(C1, ClientHeartbeat(0.0))
    for index in range(3):
        h.handle(C1, task(b"t%d" % index, FN_BYTES if index == 0 else b""))
    # Three of its four credits are held; one task leaving the queue is worth a message at once.
    assert credits(h.add_worker(W1)) == [Send(C1, TaskCredit(3))]


def test_a_client_that_ignores_its_credits_has_its_tasks_rejected_past_twice_the_limit() -> None:
    h = Harness(SchedulerConfig(max_number_of_tasks_waiting=2), credits=True)
    h.handle(C1, task(b"first"))
    for index in range(3):
        assert credits(h.handle(C1, task(b"%d" % index, b""))) == []
    out = h.handle(C1, task(b"one-too-many", b""))
    assert out[0].message.status is TaskStatus.REJECTED  # type: ignore[union-attr]
    assert out[1:] == [Send(C1, TaskCredit(1))]  # the credit it spent comes back
    assert b"over twice max_number_of_tasks_waiting (2)" in out[0].message.payload  # type: ignore[union-attr]
    assert b"one-too-many" not in h.state.tasks
    assert h.handle(C2, task(b"another-client", FN_BYTES))[-1] == Send(C2, TaskCredit(2))  # unaffected


def test_no_limit_means_no_credits() -> None:
    h = Harness(SchedulerConfig(max_number_of_tasks_waiting=0), credits=True)
    h.handle(C1, task(b"first"))
    for index in range(200):
        assert h.handle(C1, task(b"%d" % index, b"")) == []
    assert h.state.clients[C1].waiting == 0


def test_a_refused_or_duplicate_task_gives_its_credit_back() -> None:
    h = Harness(SchedulerConfig(max_number_of_tasks_waiting=3), credits=True)
    h.handle(C1, ClientHeartbeat(0.0))
    h.handle(C1, task(b"t1"))
    # A duplicate id, and a task naming an object the client does not hold: neither is queued.
    assert credits(h.handle(C1, task(b"t1", b""))) == [Send(C1, TaskCredit(1))]
    unknown_object = Task(b"t2", FN, b"", [TaskArgument("", ArgumentKind.OBJECT, b"o" * 16)], 0)
    assert credits(h.handle(C1, unknown_object)) == [Send(C1, TaskCredit(1))]
    assert h.state.clients[C1].waiting == 1


def test_a_task_refused_for_credit_still_leaves_its_function_known() -> None:
    h = Harness(SchedulerConfig(max_number_of_tasks_waiting=1), credits=True)
    h.handle(C1, task(b"t0"))
    h.handle(C1, task(b"t1", b""))
    # The next one carries a new function's bytes and is refused for credit; later tasks with that
    # function no longer carry the bytes, and must not be refused as naming an unknown function.
    out = h.handle(C1, task(b"t2", FN2_BYTES, FN2))
    assert out[0].message.status is TaskStatus.REJECTED  # type: ignore[union-attr]
    assert Send(C1, TaskCredit(1)) in out
    h.add_worker(W1)
    out = h.handle(C1, task(b"t3", b"", FN2))
    assert not [send for send in out if isinstance(send.message, TaskResult)]  # type: ignore[union-attr]
    assert b"t3" in h.state.tasks


def test_a_clients_unreadable_frame_drops_it_at_once(h: Harness) -> None:
    # Its lost frame may have held tasks: the client must hear now, not wait on them forever.
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    out = h.state.unreadable_frame(C1, "undecodable frame: ExtraData")
    h.state.validate()
    text = (
        "the scheduler could not read a frame this client sent (undecodable frame: ExtraData); its tasks were cancelled"
    )
    assert out == [Send(W1, TaskCancel(b"t1")), DROP_FN, Send(C1, ClientDropped(text))]
    assert set(h.state.clients) == set()
    # Its later messages keep getting the same answer.
    assert h.handle(C1, ClientHeartbeat(1.0)) == [Send(C1, ClientDropped(text))]


def test_a_workers_unreadable_frame_lets_it_go_and_its_tasks_run_elsewhere_uncharged(h: Harness) -> None:
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(W1, TaskStarted(b"t1", 1))
    h.add_worker(W2)
    out = h.state.unreadable_frame(W1, "undecodable frame")
    h.state.validate()
    assert out == [Send(W2, dispatched(b"t1", attempt=2, function=FN_BYTES))]
    assert h.state.tasks[b"t1"].deaths == 0


def test_an_unknown_peers_unreadable_frame_changes_nothing(h: Harness) -> None:
    h.add_worker(W1)
    assert h.state.unreadable_frame(b"stranger", "undecodable frame") == []
    assert set(h.state.workers) == {W1}
