"""The scheduler's record of every live task, and the one table of legal task transitions.

A task lives here from the moment the scheduler accepts it until it reaches its client as a
result or a cancel confirmation; then the record is dropped. An illegal transition raises
``IllegalTransition`` and leaves the record unchanged.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from scaler.protocol.messages import Task


class TaskState(enum.Enum):
    """Where a live task is."""

    WAITING = "waiting"  # a graph node whose dependencies are not all done
    QUEUED = "queued"  # waiting in the scheduler's queue
    ASSIGNED = "assigned"  # sent to a worker
    BALANCING = "balancing"  # sent to a worker, which is asked to hand it back for an idler one
    CANCELING = "canceling"  # sent to a worker, and a cancel is on its way there


class TaskEvent(enum.Enum):
    """What can happen to a live task."""

    READY = "ready"
    ASSIGN = "assign"
    CANCEL = "cancel"
    CANCEL_FAILED = "cancel_failed"
    REQUEUE = "requeue"
    BALANCE = "balance"
    KEEP = "keep"


_TRANSITIONS: dict[tuple[TaskState, TaskEvent], TaskState] = {
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

ON_A_WORKER = (TaskState.ASSIGNED, TaskState.BALANCING, TaskState.CANCELING)


class IllegalTransition(RuntimeError):
    """A task was asked to move in a way the transition table does not allow."""


@dataclass(slots=True)
class TaskRecord:
    """One live task: the message as the client sent it (without the function bytes) and where it is."""

    task: Task
    client: bytes
    state: TaskState = TaskState.QUEUED
    worker: bytes | None = None
    attempt: int = 0  # bumped at each dispatch; only the current attempt may report a result
    holds_credit: bool = False  # counts against its client's backpressure credits while it waits
    started: bool = False  # the current attempt began running (TaskStarted), so a death may be its fault
    deaths: int = 0  # how many times it was running when its worker or processor died; past the budget it fails
    client_objects: list[bytes] = field(default_factory=list)  # client objects it takes as arguments
    graph: bytes = b""  # the graph it is a node of, if any
    is_target: bool = True  # reports to its client (every plain task; a graph's requested keys)
    dependencies: list[bytes] = field(default_factory=list)  # graph nodes whose results it needs
    waiting_on: set[bytes] = field(default_factory=set)  # those of them not done yet
    dependents: list[bytes] = field(default_factory=list)  # graph nodes that need its result
    unschedulable_since: float | None = None  # when no connected worker could run it was first seen
    parent: bytes = b""  # the running task it was submitted from, while linked to it (task_tree.py)

    def move(self, event: TaskEvent) -> None:
        """Apply ``event`` to this task, or raise ``IllegalTransition``."""
        new_state = _TRANSITIONS.get((self.state, event))
        if new_state is None:
            raise IllegalTransition(f"task {self.task.task_id.hex()}: cannot {event.value} while {self.state.value}")
        self.state = new_state
