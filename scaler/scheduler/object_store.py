"""The scheduler's object store: opaque bytes by id, freed when nothing holds them.

Holders are named by bytes: a client id (an object it sent, or a big result kept for it), or a
graph id (a node's result that later nodes need). Live tasks that take an object as an
argument count too, so an object is never freed under a queued task. The store never looks
inside the bytes.
"""

from __future__ import annotations

from collections import defaultdict

from scaler.utility.invariants import require


class ObjectStore:
    """Bytes by object id, with holders and task references; see the module docstring."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._holders: dict[bytes, set[bytes]] = {}
        self._task_refs: dict[bytes, int] = defaultdict(int)
        self._held_by: dict[bytes, set[bytes]] = defaultdict(set)  # holder -> object ids

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._data

    def __len__(self) -> int:
        return len(self._data)

    def total_bytes(self) -> int:
        """How many payload bytes the store holds."""
        return sum(len(data) for data in self._data.values())

    def get(self, object_id: bytes) -> bytes | None:
        """The object's bytes, or None if unknown."""
        return self._data.get(object_id)

    def is_held_by(self, object_id: bytes, holder: bytes) -> bool:
        """True if ``holder`` holds the object (a client may read only what it holds)."""
        return holder in self._holders.get(object_id, ())

    def put(self, holder: bytes, object_id: bytes, data: bytes | None) -> bool:
        """Hold an object for ``holder``, storing ``data`` if new; False if unknown and no data."""
        if object_id not in self._data:
            if data is None:
                return False
            self._data[object_id] = data
            self._holders[object_id] = set()
        self._holders[object_id].add(holder)
        self._held_by[holder].add(object_id)
        return True

    def release(self, holder: bytes, object_id: bytes) -> list[bytes]:
        """Drop ``holder``'s hold; return the ids freed by it (at most this one)."""
        holders = self._holders.get(object_id)
        if holders is None or holder not in holders:
            return []
        holders.discard(holder)
        self._held_by[holder].discard(object_id)
        return self._free_if_unused(object_id)

    def release_all(self, holder: bytes) -> list[bytes]:
        """Drop every hold of ``holder``; return the ids freed."""
        freed: list[bytes] = []
        for object_id in list(self._held_by.pop(holder, ())):
            self._holders[object_id].discard(holder)
            freed += self._free_if_unused(object_id)
        return freed

    def add_task_ref(self, object_id: bytes) -> None:
        """A live task takes this object as an argument."""
        self._task_refs[object_id] += 1

    def remove_task_ref(self, object_id: bytes) -> list[bytes]:
        """A task that took this object ended; return the ids freed."""
        count = self._task_refs.get(object_id, 0) - 1
        if count > 0:
            self._task_refs[object_id] = count
            return []
        self._task_refs.pop(object_id, None)
        return self._free_if_unused(object_id)

    def _free_if_unused(self, object_id: bytes) -> list[bytes]:
        if self._holders.get(object_id) or self._task_refs.get(object_id):
            return []
        if self._data.pop(object_id, None) is None:
            return []
        del self._holders[object_id]
        return [object_id]

    def validate(self) -> None:
        """Raise ``InvariantError`` if the bookkeeping is inconsistent."""
        require(set(self._data) == set(self._holders), "an object without holders, or holders without it")
        for object_id, holders in self._holders.items():
            for holder in holders:
                require(object_id in self._held_by[holder], "a hold missing from its holder's list")
            require(holders or self._task_refs.get(object_id), "an unused object was not freed")
        for holder, object_ids in self._held_by.items():
            for object_id in object_ids:
                require(holder in self._holders[object_id], "a holder lists an object that does not list it")
