"""A handler that raises part-way is a bug: the scheduler's core then stops, loudly, and says so.

Each entry point of ``SchedulerState`` builds its own output. Before, every call appended to one
shared list, so the ``Send``s a raising handler had already made came out of the next, unrelated
call, and the state it left half updated went on serving. Now the raising call returns only the
goodbyes (``SchedulerShutdown`` to every peer, then ``Stop``): its half-made output is dropped,
and the core answers nothing more. The bugs are injected by subclassing, at points where part of
the work is done.
"""

from __future__ import annotations

import logging

import pytest

from scaler.protocol.content_id import content_id
from scaler.protocol.messages import (
    ArgumentKind,
    ClientDisconnect,
    ClientHeartbeat,
    ClientHeartbeatEcho,
    DisconnectType,
    SchedulerShutdown,
    Task,
    TaskArgument,
    TaskCancel,
    TaskResult,
    TaskStarted,
    TaskStatus,
    WorkerHeartbeat,
)
from scaler.scheduler.state import Instruction, SchedulerConfig, SchedulerState, Send, Stop
from scaler.scheduler.task_table import TaskRecord
from scaler.utility.invariants import InvariantError

C1, C2, W1 = b"client-1", b"client-2", b"worker-1"
FN_BYTES = b"pickled-function"
FN = content_id(FN_BYTES)
CONFIG = SchedulerConfig(per_worker_queue_size=4, max_number_of_tasks_waiting=0)


def task(task_id: bytes) -> Task:
    return Task(task_id, FN, FN_BYTES, [TaskArgument("", ArgumentKind.INLINE, b"x")], 0)


def goodbyes(reason_part: str, out: list[Instruction], peers: list[bytes]) -> None:
    """``out`` is exactly a shutdown notice to each of ``peers``, then ``Stop``, all for the same reason."""
    assert isinstance(out[-1], Stop) and reason_part in out[-1].reason
    assert out[:-1] == [Send(peer, SchedulerShutdown(out[-1].reason)) for peer in peers]


class CancelsOnlyOnce(SchedulerState):
    """A bug: the second task a departing client holds cannot be cancelled."""

    def __init__(self) -> None:
        super().__init__(CONFIG, scheduler_id=b"s")
        self.cancels = 0

    def _cancel(self, record: TaskRecord) -> None:
        self.cancels += 1
        if self.cancels == 2:
            raise RuntimeError("injected bug")
        super()._cancel(record)


def test_a_raising_handler_returns_goodbyes_not_its_half_made_output(caplog: pytest.LogCaptureFixture) -> None:
    state = CancelsOnlyOnce()
    state.handle(W1, WorkerHeartbeat(0.0, 0, 0.0, 0), 0.0)
    state.handle(C2, ClientHeartbeat(0.0), 0.0)
    state.handle(C1, task(b"t1"), 0.0)
    state.handle(C1, task(b"t2"), 0.0)
    state.validate()
    with caplog.at_level(logging.CRITICAL, logger="scaler.scheduler.state"):
        # The first cancel is made (a TaskCancel to W1), then the second raises.
        out = state.handle(C1, ClientDisconnect(DisconnectType.DISCONNECT), 1.0)
    assert not any(isinstance(i, Send) and isinstance(i.message, TaskCancel) for i in out), "half-made output leaked"
    goodbyes("internal error", out, [W1, C2])
    assert "internal error" in caplog.text and "injected bug" in caplog.text  # with the traceback
    assert state.failure is not None
    # The next call is not handed the dropped TaskCancel, nor anything else: the core is stopped.
    assert state.handle(C2, ClientHeartbeat(2.0), 2.0) == []
    assert state.tick(3.0) == [] and state.dispatch() == [] and state.shutdown("stopping") == []


class DropsResults(SchedulerState):
    """A bug: the scheduler forgets a finished task, then fails before its client hears of it."""

    def _announce_freed(self, freed: list[bytes]) -> None:
        raise RuntimeError("injected bug")


def test_a_state_that_still_validates_is_not_trusted_either() -> None:
    # validate() cannot see a result that never reached its client; only stopping tells the client.
    state = DropsResults(CONFIG, scheduler_id=b"s")
    state.handle(W1, WorkerHeartbeat(0.0, 0, 0.0, 0), 0.0)
    state.handle(C1, task(b"t1"), 0.0)
    out = state.handle(W1, TaskResult(b"t1", TaskStatus.SUCCESS, b"ok", 1), 1.0)
    assert b"t1" not in state.tasks
    state.validate()  # the books agree ...
    goodbyes("internal error", out, [W1, C1])  # ... and still the client is told, not left waiting
    assert state.handle(C1, ClientHeartbeat(2.0), 2.0) == []


class LosesRequeues(SchedulerState):
    """A bug: a task taken back from a dead worker is marked queued but never put in the queue."""

    def _enqueue(self, record: TaskRecord, front: bool) -> None:
        if front:
            raise RuntimeError("injected bug")
        super()._enqueue(record, front)


def test_a_half_updated_state_is_never_served_from() -> None:
    state = LosesRequeues(CONFIG, scheduler_id=b"s")
    state.handle(W1, WorkerHeartbeat(0.0, 0, 0.0, 0), 0.0)
    state.handle(C1, task(b"t1"), 0.0)
    state.handle(W1, TaskStarted(b"t1", 1), 0.0)
    out = state.worker_disconnected(W1)
    goodbyes("internal error", out, [C1])
    with pytest.raises(InvariantError, match="queue out of sync"):
        state.validate()
    # A worker that comes now is given nothing from the broken queue; a client gets no echo.
    assert state.handle(b"worker-2", WorkerHeartbeat(1.0, 0, 0.0, 0), 1.0) == []
    assert state.handle(C1, ClientHeartbeat(1.0), 1.0) == []


def test_a_healthy_call_after_healthy_calls_returns_only_its_own_output() -> None:
    state = SchedulerState(CONFIG, scheduler_id=b"s")
    assert state.handle(C1, ClientHeartbeat(1.0), 1.0) == [Send(C1, ClientHeartbeatEcho(1.0, b"s"))]
    assert state.handle(C1, ClientHeartbeat(2.0), 2.0) == [Send(C1, ClientHeartbeatEcho(2.0, b"s"))]
    assert state.failure is None
