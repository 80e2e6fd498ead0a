"""The processors' lifecycle table (``processor_table.py``), and what a handler that raises leaves behind.

No processes, no sockets: the table is driven by hand, and ``WorkerState`` is given ids and a
plain number for time, as in ``test_worker_state.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from scaler.protocol.messages import ArgumentKind, Task, TaskArgument, TaskCancel, TaskStarted
from scaler.worker.processor_table import (
    IllegalProcessorTransition,
    ProcessorEvent,
    ProcessorState,
    ProcessorTable,
    WorkerInvariantError,
)
from scaler.worker.state import KillProcessor, RunTask, SendToScheduler, StartProcessor, WorkerState

E = ProcessorEvent


def task(task_id: bytes) -> Task:
    return Task(task_id, b"fn", b"fn-bytes", [TaskArgument("", ArgumentKind.INLINE, b"x")], 1)


def test_a_processor_lives_through_the_table_and_the_indexes_follow() -> None:
    table = ProcessorTable()
    record = table.add()
    assert (record.state, table.starting, table.idle) == (ProcessorState.STARTING, 1, [])
    table.move(record, E.STARTED)
    assert (record.state, table.starting, table.idle) == (ProcessorState.IDLE, None, [1])
    table.move(record, E.RUN, task(b"t1"))
    assert (record.state, table.idle, table.by_task, table.unblocked) == (ProcessorState.RUNNING, [], {b"t1": 1}, 1)
    table.move(record, E.BLOCK)
    assert (record.state, table.by_task, table.unblocked) == (ProcessorState.PARKED, {b"t1": 1}, 0)
    table.move(record, E.UNBLOCK)
    assert (record.state, table.unblocked) == (ProcessorState.RUNNING, 1)
    table.move(record, E.BLOCK)
    table.move(record, E.FINISH)  # a parked task may end too
    assert (record.state, record.task, table.by_task, table.idle) == (ProcessorState.IDLE, None, {}, [1])
    table.validate()
    table.move(record, E.KILL)
    assert (record.state, len(table), table.idle) == (ProcessorState.EXITED, 0, [])
    table.validate()


def test_a_busy_processor_that_dies_leaves_no_index_behind() -> None:
    table = ProcessorTable()
    record = table.add()
    table.move(record, E.STARTED)
    table.move(record, E.RUN, task(b"t1"))
    table.move(record, E.BLOCK)
    table.move(record, E.DIE)
    assert (len(table), table.by_task, table.unblocked, record.task) == (0, {}, 0, None)
    table.validate()


@pytest.mark.parametrize(
    ("path", "event", "arguments"),
    [
        ([], E.KILL, ()),  # never kill a processor the agent cannot find yet
        ([], E.RUN, ()),
        ([E.STARTED], E.RUN, ()),  # RUN needs a task
        ([E.STARTED], E.FINISH, ()),
        ([E.STARTED], E.BLOCK, ()),
        ([E.STARTED, (E.RUN, b"t1")], (E.RUN, b"t2"), ()),
        ([E.STARTED, (E.RUN, b"t1")], E.UNBLOCK, ()),
        ([E.STARTED, (E.RUN, b"t1"), E.BLOCK], E.BLOCK, ()),
        ([E.STARTED], E.STARTED, ()),
    ],
)
def test_an_illegal_move_raises_and_changes_nothing(path: list[Any], event: Any, arguments: tuple[()]) -> None:
    table = ProcessorTable()
    record = table.add()
    for step in path:
        if isinstance(step, tuple):
            table.move(record, step[0], task(step[1]))
        else:
            table.move(record, step)
    before = (record.state, record.task, table.starting, list(table.idle), dict(table.by_task), table.unblocked)
    with pytest.raises(IllegalProcessorTransition):
        if isinstance(event, tuple):
            table.move(record, event[0], task(event[1]))
        else:
            table.move(record, event)
    assert (record.state, record.task, table.starting, list(table.idle), dict(table.by_task), table.unblocked) == before
    table.validate()


def test_validate_names_a_broken_index_with_its_own_exception() -> None:
    table = ProcessorTable()
    record = table.add()
    table.move(record, E.STARTED)
    table.idle.append(record.processor_id)
    with pytest.raises(WorkerInvariantError, match="idle"):
        table.validate()
    assert issubclass(WorkerInvariantError, AssertionError)  # raised explicitly: python -O keeps it


# -- a handler that raises part-way ----------------------------------------------------------------


def test_a_handler_that_raises_part_way_leaks_nothing_into_the_next_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent stops on such an error (docs/architecture.md); the state's output must not outlive the call.

    Here the cancel of a running task has already decided to kill its processor when the
    scheduling step after it fails. That kill must not come out of the next, unrelated call.
    """
    state = WorkerState(0.0, 2.0, 30.0)
    assert state.start(0.0) == [StartProcessor(1)]
    state.on_processor_started(1, 0.0)
    first = task(b"t1")
    assert state.on_task(first, 1.0) == [SendToScheduler(TaskStarted(b"t1", 1)), RunTask(1, first)]

    def broken(*_: object) -> None:
        raise RuntimeError("a bug part-way through the handler")

    with monkeypatch.context() as patch:
        patch.setattr(state, "_schedule", broken)
        with pytest.raises(RuntimeError, match="part-way"):
            state.on_task_cancel(TaskCancel(b"t1"), 2.0)
    second = task(b"t2")
    assert state.on_task(second, 3.0) == [StartProcessor(2)], "nothing of the failed call comes out here"
    assert KillProcessor(1, f"task {b't1'.hex()} was cancelled") not in state.on_processor_started(2, 3.0)
    state.validate()
