"""``ClientObjects``: which objects a client holds on the scheduler, and when to free them.

Pure bookkeeping, no I/O: each method says which object ids the caller must create or delete on
the scheduler, and the caller sends the matching ``ObjectInstruction`` while it still holds its
lock, so instructions leave in the order the bookkeeping decided them.

Two kinds of objects:

- **explicit** ones, from ``Client.send_object``: kept until ``Client.clear()`` or disconnect;
- **automatic** ones, the big arguments that ``submit`` and ``get`` upload on their own: each is
  pinned while a pending task uses it, and the unpinned ones are kept, least recently used
  first out, only while their total size stays under ``limit_bytes``. A long-running client that
  keeps submitting new big arguments therefore holds a bounded amount of scheduler memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class _Automatic:
    size: int
    users: int  # pending tasks (or graphs) that use it


class ClientObjects:
    """The objects of one client; see the module docstring."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._explicit: dict[bytes, int] = {}  # id -> size
        self._automatic: OrderedDict[bytes, _Automatic] = OrderedDict()  # least recently used first
        self._automatic_bytes = 0
        self.created = 0  # CREATE decisions so far, for statistics
        self.deleted = 0

    def __contains__(self, object_id: bytes) -> bool:
        return object_id in self._explicit or object_id in self._automatic

    def add_explicit(self, object_id: bytes, size: int) -> bool:
        """Record an object from ``send_object``; return True if it must be created on the scheduler."""
        if object_id in self._explicit:
            return False
        automatic = self._automatic.pop(object_id, None)
        self._explicit[object_id] = size
        if automatic is not None:  # already stored: it is now kept until clear()
            self._automatic_bytes -= automatic.size
            return False
        self.created += 1
        return True

    def use_automatic(self, object_id: bytes, size: int) -> tuple[bool, list[bytes]]:
        """Pin an automatic object for one more user.

        Return whether it must be created first, and the ids of unpinned objects to delete to
        make room for it.
        """
        if object_id in self._explicit:
            return False, []
        entry = self._automatic.get(object_id)
        if entry is not None:
            entry.users += 1
            self._automatic.move_to_end(object_id)
            return False, []
        self._automatic[object_id] = _Automatic(size, 1)
        self._automatic_bytes += size
        self.created += 1
        return True, self._evict()

    def release_automatic(self, object_ids: Iterable[bytes]) -> list[bytes]:
        """Unpin objects whose user is done; return the ids to delete to stay under the limit."""
        for object_id in object_ids:
            entry = self._automatic.get(object_id)
            if entry is not None and entry.users > 0:
                entry.users -= 1
        return self._evict()

    def clear(self) -> None:
        """Forget every object (the scheduler is told to drop them all)."""
        self._explicit.clear()
        self._automatic.clear()
        self._automatic_bytes = 0

    def statistics(self) -> dict[str, int]:
        """Counts for monitoring and tests."""
        return {
            "objects_explicit": len(self._explicit),
            "objects_automatic": len(self._automatic),
            "objects_automatic_bytes": self._automatic_bytes,
            "objects_created": self.created,
            "objects_deleted": self.deleted,
        }

    def _evict(self) -> list[bytes]:
        evicted: list[bytes] = []
        if self._automatic_bytes <= self.limit_bytes:
            return evicted
        for object_id, entry in list(self._automatic.items()):
            if self._automatic_bytes <= self.limit_bytes:
                break
            if entry.users == 0:
                del self._automatic[object_id]
                self._automatic_bytes -= entry.size
                evicted.append(object_id)
        self.deleted += len(evicted)
        return evicted
