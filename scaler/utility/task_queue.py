"""A queue of tasks waiting to run: highest priority first, then oldest.

The scheduler queues the tasks waiting for a worker in one, and each worker agent the tasks
waiting for a processor. Removal is lazy: ``discard`` forgets an id and ``pop`` skips it, so
cancelling a queued task costs O(1). A task handed back by a dead or leaving worker goes in
``front`` of its priority.
"""

from __future__ import annotations

import heapq
import itertools


class TaskQueue:
    """A priority queue of task ids with O(1) removal."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, bytes]] = []
        # task id -> its live heap entry; an entry popped that is not this very tuple is stale.
        # (Sharing the tuple, not a copy of its key, saves a tuple per queued task.)
        self._live: dict[bytes, tuple[int, int, bytes]] = {}
        self._back = itertools.count()
        self._front = itertools.count(-1, -1)

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._live

    def push(self, task_id: bytes, priority: int, front: bool = False) -> None:
        """Queue a task (again); ``front`` puts it before every task of its priority."""
        entry = (-priority, next(self._front) if front else next(self._back), task_id)
        self._live[task_id] = entry
        heapq.heappush(self._heap, entry)

    def discard(self, task_id: bytes) -> None:
        """Forget a task if it is queued."""
        self._live.pop(task_id, None)

    def pop(self) -> bytes | None:
        """Take the first task, or None if empty."""
        while self._heap:
            entry = heapq.heappop(self._heap)
            task_id = entry[2]
            if self._live.get(task_id) is entry:
                del self._live[task_id]
                return task_id
        return None

    def clear(self) -> None:
        """Forget every task."""
        self._heap.clear()
        self._live.clear()

    def ids(self) -> list[bytes]:
        """The queued ids, in no particular order."""
        return list(self._live)

    def ordered_ids(self) -> list[bytes]:
        """The queued ids in the order ``pop`` would take them (for inspection: it sorts)."""
        return sorted(self._live, key=self._live.__getitem__)
