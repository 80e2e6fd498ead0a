"""What the worker's pure state knows of its processors, and the one table of their legal transitions.

A processor is *starting* until the agent reports it ready, then *idle*, *running* a task, or
*parked* (its task waits on other tasks, so the worker runs its next task elsewhere). Killing
or dying ends it (*exited*), and its record is dropped. Every change goes through
``ProcessorTable.move``, which checks the transition against ``_TRANSITIONS`` and keeps the
indexes (the idle list, the starting processor, task id -> processor, the running count) in
step; an illegal transition raises ``IllegalProcessorTransition`` and changes nothing.

::

    STARTING ──started──▶ IDLE ──run──▶ RUNNING ──block──▶ PARKED
                           ▲ ◀──finish──┘  ▲ ◀──unblock──────┘ │
                           └──────────────finish───────────────┘
    any but STARTING ──kill──▶ EXITED        any ──die──▶ EXITED
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from scaler.protocol.messages import Task


# IntEnums: they hash as ints, in C, and every task moves a processor twice (run, finish).
class ProcessorState(enum.IntEnum):
    """Where one processor is in its life."""

    STARTING = 1  # asked for; the agent has not reported it ready yet (at most one at a time)
    IDLE = 2  # ready, without a task
    RUNNING = 3  # runs a task that is not waiting on other tasks
    PARKED = 4  # runs a task that waits on other tasks; the worker may run another task meanwhile
    EXITED = 5  # killed or died; the record is dropped


class ProcessorEvent(enum.IntEnum):
    """What can happen to a processor."""

    STARTED = 1
    RUN = 2
    BLOCK = 3
    UNBLOCK = 4
    FINISH = 5
    KILL = 6
    DIE = 7


_S, _E = ProcessorState, ProcessorEvent
_TRANSITIONS: dict[tuple[ProcessorState, ProcessorEvent], ProcessorState] = {
    (_S.STARTING, _E.STARTED): _S.IDLE,
    (_S.IDLE, _E.RUN): _S.RUNNING,
    (_S.RUNNING, _E.BLOCK): _S.PARKED,
    (_S.PARKED, _E.UNBLOCK): _S.RUNNING,
    (_S.RUNNING, _E.FINISH): _S.IDLE,
    (_S.PARKED, _E.FINISH): _S.IDLE,
    # A starting processor is never killed: the agent could not find it yet. It may die, in a test.
    (_S.IDLE, _E.KILL): _S.EXITED,
    (_S.RUNNING, _E.KILL): _S.EXITED,
    (_S.PARKED, _E.KILL): _S.EXITED,
    (_S.STARTING, _E.DIE): _S.EXITED,
    (_S.IDLE, _E.DIE): _S.EXITED,
    (_S.RUNNING, _E.DIE): _S.EXITED,
    (_S.PARKED, _E.DIE): _S.EXITED,
}

BUSY = (ProcessorState.RUNNING, ProcessorState.PARKED)  # the states that hold a task
# Members as module constants for ``move``, which runs twice per task: reading an enum member
# through its class costs a metaclass lookup each time.
_STARTING, _IDLE, _RUNNING, _PARKED, _EXITED = _S.STARTING, _S.IDLE, _S.RUNNING, _S.PARKED, _S.EXITED
_RUN = _E.RUN


class IllegalProcessorTransition(RuntimeError):
    """A processor was asked to move in a way the transition table does not allow."""


class WorkerInvariantError(AssertionError):
    """``validate()`` found the worker's state inconsistent (raised explicitly, so ``python -O`` keeps it)."""


def check(condition: object, text: str) -> None:
    """Raise ``WorkerInvariantError(text)`` unless ``condition`` holds."""
    if not condition:
        raise WorkerInvariantError(text)


@dataclass(slots=True)
class ProcessorRecord:
    """What the worker's state knows of one processor (the agent's ``ProcessorHandle`` holds the process)."""

    processor_id: int
    state: ProcessorState = ProcessorState.STARTING
    task: Task | None = None  # the task it runs, parked or not
    started_at: float = 0.0  # when that task started
    timeout: float = 0.0  # seconds that task may run; 0 means no limit
    functions: set[bytes] = field(default_factory=set)  # function ids it holds
    objects: set[bytes] = field(default_factory=set)  # object ids it holds
    stale_objects: list[bytes] = field(default_factory=list)  # deleted here; to delete there when idle
    stale_functions: list[bytes] = field(default_factory=list)  # likewise, for functions


class ProcessorTable:
    """Every live processor of one worker, with indexes that only ``move`` changes.

    The indexes are public for reading (the state reads them for every task); only ``add`` and
    ``move`` change them.
    """

    def __init__(self) -> None:
        self._records: dict[int, ProcessorRecord] = {}
        self.idle: list[int] = []  # idle processor ids, most recently idle last
        self.by_task: dict[bytes, int] = {}  # task id -> id of the processor running it (parked too)
        self.starting: int | None = None  # the one processor booting, if any
        self.unblocked = 0  # processors RUNNING (not parked)
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[ProcessorRecord]:
        return iter(list(self._records.values()))

    def get(self, processor_id: int) -> ProcessorRecord | None:
        """The record of a live processor, or None."""
        return self._records.get(processor_id)

    def ever_started(self) -> bool:
        """True once a processor was asked for."""
        return self._next_id > 1

    def add(self) -> ProcessorRecord:
        """A new processor, STARTING under the next id."""
        record = ProcessorRecord(self._next_id)
        self._next_id += 1
        self._records[record.processor_id] = record
        self.starting = record.processor_id
        return record

    def move(self, record: ProcessorRecord, event: ProcessorEvent, task: Task | None = None) -> None:
        """Apply ``event`` (``RUN`` takes the ``task``) and keep every index in step.

        Raises ``IllegalProcessorTransition``, changing nothing, if the table does not allow it.
        """
        old = record.state
        new = _TRANSITIONS.get((old, event))
        if new is None or (event is _RUN) != (task is not None):
            text = f"processor {record.processor_id}: cannot {event.name.lower()} while {old.name.lower()}"
            raise IllegalProcessorTransition(text)
        processor_id = record.processor_id
        record.state = new
        if old is _IDLE:
            idle = self.idle
            if idle[-1] == processor_id:
                idle.pop()
            else:
                idle.remove(processor_id)
        elif old is _STARTING:
            self.starting = None
        elif old is _RUNNING:
            self.unblocked -= 1
        if new is _IDLE:
            self.idle.append(processor_id)
        elif new is _RUNNING:
            self.unblocked += 1
        if task is not None:  # RUN
            record.task = task
            self.by_task[task.task_id] = processor_id
        elif record.task is not None and new is not _RUNNING and new is not _PARKED:
            del self.by_task[record.task.task_id]
            record.task = None
        if new is _EXITED:
            del self._records[processor_id]

    def running_task(self, task_id: bytes) -> ProcessorRecord | None:
        """The processor running (or parking) ``task_id``, or None."""
        processor_id = self.by_task.get(task_id)
        return None if processor_id is None else self._records[processor_id]

    def running(self) -> dict[bytes, int]:
        """Task id -> id of the processor running it (parked ones included), as a copy."""
        return dict(self.by_task)

    def most_recently_idle(self) -> ProcessorRecord:
        """The idle processor to use next (call only with one idle)."""
        return self._records[self.idle[-1]]

    def longest_idle(self) -> ProcessorRecord:
        """The idle processor to let go first (call only with one idle)."""
        return self._records[self.idle[0]]

    def validate(self) -> None:
        """Check that the indexes agree with the records; raise ``WorkerInvariantError`` if not."""
        check(len(self.idle) == len(set(self.idle)), "no processor is idle twice")
        by_state = {state: [r for r in self._records.values() if r.state is state] for state in ProcessorState}
        check(not by_state[ProcessorState.EXITED], "an exited processor has no record")
        check(set(self.idle) == {r.processor_id for r in by_state[ProcessorState.IDLE]}, "the idle list is right")
        starting = by_state[ProcessorState.STARTING]
        check(len(starting) <= 1, "at most one processor starts at a time")
        check(self.starting == (starting[0].processor_id if starting else None), "the starting processor is right")
        check(self.unblocked == len(by_state[ProcessorState.RUNNING]), "the unblocked count is right")
        busy = {r.task.task_id: r.processor_id for r in self._records.values() if r.task is not None}
        check(busy == self.by_task, "task id -> processor is right")
        for processor_id, record in self._records.items():
            check(record.processor_id == processor_id, "a record is filed under its own id")
            check((record.task is not None) == (record.state in BUSY), "a processor holds a task iff it is busy")
            check(processor_id < self._next_id, "ids are handed out in order")
            if record.state is ProcessorState.STARTING:
                check(not record.functions and not record.objects, "a starting processor holds nothing yet")
            if record.state not in BUSY:
                check(
                    not record.stale_objects and not record.stale_functions, "only a busy processor waits for deletes"
                )
