"""Which live task submitted which: the links that let a stopped task take its children along.

A task submitted from inside a running task names that task as its ``parent_task_id`` (the client
reads it from ``processor_context``). While the parent is on a worker (``ASSIGNED`` or
``BALANCING``), its live children are linked to it here. A task with a parent is still an
ordinary task of its own client; the link only says what to stop when the parent stops.

When the parent is *stopped* (cancelled, past its timeout, its processor or worker dead, whether
it is then retried or failed), its code no longer waits for its children: ``stop_children``
unlinks them and marks them *doomed*, and the scheduler cancels each doomed task at the end of
its turn, which dooms that task's own children in turn. The walk is a loop over a list, never a
recursion, so a chain of any depth is safe. Doing it at the end of the turn means a handler that
stops several tasks (a dead worker's) finishes its own bookkeeping first.

A parent that ends with its own result or exception only unlinks its children: they run on as
top-level tasks (fire-and-forget). Stopped parents are remembered, a bounded number of them, so
that a child sent just before its parent's processor was killed, and read after the parent was
stopped, is cancelled on arrival instead of running as an orphan.
"""

from __future__ import annotations

from collections import OrderedDict

from scaler.scheduler.task_table import TaskRecord, TaskState
from scaler.utility.invariants import require

STOPPED_MEMORY = 10_000  # how many stopped parents to remember for late children

# A parent in these states may be running, so tasks arriving in its name are its children.
_PARENT_STATES = (TaskState.ASSIGNED, TaskState.BALANCING)


class TaskTree:
    """Parent -> children links between live tasks; see the module docstring."""

    def __init__(self, tasks: dict[bytes, TaskRecord], memory: int = STOPPED_MEMORY) -> None:
        self._tasks = tasks  # the scheduler's live tasks, shared
        self._children: dict[bytes, set[bytes]] = {}
        self._stopped: OrderedDict[bytes, None] = OrderedDict()
        self._memory = memory
        self._doomed: list[bytes] = []

    def parent_for(self, parent_id: bytes) -> bytes | None:
        """Where a new task naming ``parent_id`` belongs: the parent to link it to (``b""``: none).

        ``None`` means its parent was stopped, or is not running (a retry waiting in the queue): the
        new task comes from a run that is over, and must be cancelled at once. A parent that the
        scheduler does not know (it ended with a result) gives a top-level task.
        """
        if not parent_id:
            return b""
        parent = self._tasks.get(parent_id)
        if parent is not None:
            return parent_id if parent.state in _PARENT_STATES else None
        return None if parent_id in self._stopped else b""

    def link(self, record: TaskRecord) -> None:
        """Add a new live task under its ``record.parent``, which ``parent_for`` chose."""
        self._children.setdefault(record.parent, set()).add(record.task.task_id)

    def unlink(self, record: TaskRecord) -> None:
        """A task ends: drop it from its parent, and let its own children run on as top-level tasks."""
        task_id = record.task.task_id
        if record.parent:
            siblings = self._children[record.parent]
            siblings.discard(task_id)
            if not siblings:
                del self._children[record.parent]
            record.parent = b""
        children = self._children.pop(task_id, None)
        if children:
            for child_id in children:
                self._tasks[child_id].parent = b""

    def stop_children(self, parent_id: bytes) -> int:
        """The parent was stopped: unlink its children and doom them; return how many."""
        children = self._children.pop(parent_id, None)
        if not children:
            return 0
        for child_id in children:
            self._tasks[child_id].parent = b""
        self._doomed.extend(children)
        return len(children)

    def remember_stopped(self, task_id: bytes) -> None:
        """Note a parent that ended stopped, so that its late children are cancelled on arrival."""
        self._stopped[task_id] = None
        if len(self._stopped) > self._memory:
            self._stopped.popitem(last=False)

    def next_doomed(self) -> bytes | None:
        """The next task to cancel because its parent was stopped, or None when there is none."""
        return self._doomed.pop() if self._doomed else None

    def statistics(self) -> dict[str, int]:
        """Counts for monitoring and tests."""
        return {"parents": len(self._children), "children": sum(map(len, self._children.values()))}

    def validate(self) -> None:
        """Raise ``InvariantError`` if a link is broken (the scheduler's ``validate`` calls it)."""
        require(not self._doomed, "doomed tasks were left uncancelled at the end of a turn")
        require(len(self._stopped) <= self._memory, "more stopped parents remembered than allowed")
        for parent_id, children in self._children.items():
            require(children, "an empty set of children was kept")
            parent = self._tasks.get(parent_id)
            require(parent is not None, "children linked to a task that ended")
            require(
                parent is not None and parent.state in _PARENT_STATES, "a parent that is not running keeps children"
            )
            for child_id in children:
                require(self._tasks[child_id].parent == parent_id, "a child linked under a parent it does not name")
        for task_id, record in self._tasks.items():
            if record.parent:
                require(task_id in self._children.get(record.parent, ()), "a child missing from its parent's links")
