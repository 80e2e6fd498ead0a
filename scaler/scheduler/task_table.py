"""The scheduler's record of every live task, and the one table of legal task transitions.

A task lives here from the moment the scheduler accepts it until its one outcome is decided: a
result, a failure, a cancel confirmation, or nothing when its client is gone. A task's state has
two parts: where it is (``TaskState``), and, while it is on a worker, whether that worker said the
current attempt started (``TaskRecord.started``; from then on a death there is the task's fault).
Both change only through ``TaskRecord.move``, which looks the pair up in one table. An illegal move
raises ``IllegalTransition`` and leaves the record unchanged.

``DONE`` is terminal. Every path that ends a task moves it there first, and no move leaves it, so
a second outcome for one task is refused here, in one place, before anything else changes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from scaler.protocol.messages import Task


class TaskState(enum.Enum):
    """Where a task is."""

    # Members are singletons: hash by identity, in C. Enum's own __hash__ is Python code, and the
    # transition table hashes a state and an event at every move.
    __hash__ = object.__hash__

    WAITING = "waiting"  # a graph node whose inputs are not all done
    QUEUED = "queued"  # in the scheduler's queue
    ASSIGNED = "assigned"  # sent to a worker
    BALANCING = "balancing"  # sent to a worker, which is asked to hand it back for an idler one
    CANCELING = "canceling"  # sent to a worker, and a cancel is on its way there
    DONE = "done"  # ended: its outcome is decided and its record is dropped


class TaskEvent(enum.Enum):
    """What can happen to a task."""

    __hash__ = object.__hash__  # see TaskState

    READY = "ready"
    ASSIGN = "assign"
    START = "start"
    CANCEL = "cancel"
    CANCEL_FAILED = "cancel_failed"
    REQUEUE = "requeue"
    BALANCE = "balance"
    KEEP = "keep"
    FINISH = "finish"


ON_A_WORKER = (TaskState.ASSIGNED, TaskState.BALANCING, TaskState.CANCELING)

# Where each event takes a task. On a worker, whether the attempt started carries over; a task
# that leaves its worker (QUEUED again, or DONE) has no attempt running.
_MOVES: dict[tuple[TaskState, TaskEvent], TaskState] = {
    (TaskState.WAITING, TaskEvent.READY): TaskState.QUEUED,
    (TaskState.QUEUED, TaskEvent.ASSIGN): TaskState.ASSIGNED,
    (TaskState.ASSIGNED, TaskEvent.CANCEL): TaskState.CANCELING,
    (TaskState.ASSIGNED, TaskEvent.REQUEUE): TaskState.QUEUED,
    (TaskState.ASSIGNED, TaskEvent.BALANCE): TaskState.BALANCING,
    (TaskState.BALANCING, TaskEvent.REQUEUE): TaskState.QUEUED,
    (TaskState.BALANCING, TaskEvent.KEEP): TaskState.ASSIGNED,
    (TaskState.BALANCING, TaskEvent.CANCEL): TaskState.CANCELING,
    (TaskState.CANCELING, TaskEvent.CANCEL_FAILED): TaskState.ASSIGNED,
}


def _transitions() -> dict[tuple[TaskState, bool, TaskEvent], tuple[TaskState, bool]]:
    """The whole table: (where, started, event) -> (where, started)."""
    table: dict[tuple[TaskState, bool, TaskEvent], tuple[TaskState, bool]] = {}
    for (state, event), target in _MOVES.items():
        for started in (False, True) if state in ON_A_WORKER else (False,):
            table[state, started, event] = (target, started and target in ON_A_WORKER)
    for state in ON_A_WORKER:  # a worker reports each attempt's start once
        table[state, False, TaskEvent.START] = (state, True)
    for state in TaskState:  # any live task may end, once
        for started in (False, True) if state in ON_A_WORKER else (False,):
            if state is not TaskState.DONE:
                table[state, started, TaskEvent.FINISH] = (TaskState.DONE, False)
    return table


_TRANSITIONS = _transitions()


class IllegalTransition(RuntimeError):
    """A task was asked to move in a way the transition table does not allow."""


@dataclass(slots=True)
class TaskRecord:
    """One live task: the message as the client sent it (without the function bytes) and where it is.

    ``state`` and ``started`` change only through ``move``. A graph node's dependencies live in
    ``GraphTable`` (``graph_table.py``); the record only names its graph.
    """

    task: Task
    client: bytes
    state: TaskState = TaskState.QUEUED
    worker: bytes | None = None
    attempt: int = 0  # bumped at each dispatch; only the current attempt may report a result
    holds_credit: bool = False  # counts against its client's backpressure credits while it waits
    started: bool = False  # the current attempt began running (TaskStarted), so a death may be its fault
    deaths: int = 0  # how many times it was running when its worker or processor died; past the budget it fails
    client_objects: tuple[bytes, ...] = ()  # client objects it takes as arguments (no list per task: most take none)
    graph: bytes = b""  # the graph it is a node of, if any
    is_target: bool = True  # reports to its client (every plain task; a graph's requested keys)
    result_wanted: bool = False  # its client already waits for the result: a big one is sent, not kept
    unschedulable_since: float | None = None  # when no connected worker could run it was first seen
    parent: bytes = b""  # the running task it was submitted from, while linked to it (task_tree.py)
    # For the status feed and profiling, on the core's clock (``now``): when it was accepted, when
    # its current attempt was sent to a worker, and when that attempt started (None: not started).
    submitted_at: float = 0.0
    sent_at: float = 0.0
    started_at: float | None = None

    def move(self, event: TaskEvent) -> None:
        """Apply ``event`` to this task, or raise ``IllegalTransition``."""
        new = _TRANSITIONS.get((self.state, self.started, event))
        if new is None:
            started = " (started)" if self.started else ""
            raise IllegalTransition(
                f"task {self.task.task_id.hex()}: cannot {event.value} while {self.state.value}{started}"
            )
        self.state, self.started = new
