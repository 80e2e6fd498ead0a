"""The scheduler's record of every live task, and the one table of legal task transitions.

A task lives here from the moment the scheduler accepts it until it reaches its client as a
result or a cancel confirmation; then the record is dropped. An illegal transition raises
``IllegalTransition`` and leaves the record unchanged.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from scaler.protocol.messages import Task


class TaskState(enum.Enum):
    """Where a live task is."""

    QUEUED = "queued"  # waiting in the scheduler's queue
    ASSIGNED = "assigned"  # sent to a worker
    CANCELING = "canceling"  # sent to a worker, and a cancel is on its way there


class TaskEvent(enum.Enum):
    """What can happen to a live task."""

    ASSIGN = "assign"
    CANCEL = "cancel"
    CANCEL_FAILED = "cancel_failed"
    REQUEUE = "requeue"


_TRANSITIONS: dict[tuple[TaskState, TaskEvent], TaskState] = {
    (TaskState.QUEUED, TaskEvent.ASSIGN): TaskState.ASSIGNED,
    (TaskState.ASSIGNED, TaskEvent.CANCEL): TaskState.CANCELING,
    (TaskState.ASSIGNED, TaskEvent.REQUEUE): TaskState.QUEUED,
    (TaskState.CANCELING, TaskEvent.CANCEL_FAILED): TaskState.ASSIGNED,
}


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
    deaths: int = 0  # how many workers died holding it; past the retry budget it fails

    def move(self, event: TaskEvent) -> None:
        """Apply ``event`` to this task, or raise ``IllegalTransition``."""
        new_state = _TRANSITIONS.get((self.state, event))
        if new_state is None:
            raise IllegalTransition(f"task {self.task.task_id.hex()}: cannot {event.value} while {self.state.value}")
        self.state = new_state
