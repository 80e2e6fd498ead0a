"""``ObjectReference``: the handle of an object a client stored on the scheduler.

``Client.send_object(obj)`` serializes ``obj`` once, stores the bytes on the scheduler and returns
an ``ObjectReference``. Passing the reference to ``submit``, ``map``, ``starmap`` or as a value in
a ``get`` graph hands the task the deserialized object, without sending its bytes again. The id is
the hash of the serialized bytes, so identical content is stored once. A reference is a small,
immutable, hashable value that pickles as three fields.
"""

from __future__ import annotations

from typing import Any


class ObjectReference:
    """An object stored on the scheduler: its id (content hash), a display name, and its size in bytes."""

    __slots__ = ("_object_id", "_name", "_size")

    def __init__(self, object_id: bytes, name: str, size: int) -> None:
        self._object_id = object_id
        self._name = name
        self._size = size

    @property
    def object_id(self) -> bytes:
        """The id under which the scheduler stores the object (a hash of its serialized bytes)."""
        return self._object_id

    @property
    def name(self) -> str:
        """The name given to ``send_object`` (or the object's type name), for display only."""
        return self._name

    @property
    def size(self) -> int:
        """The size of the serialized object, in bytes."""
        return self._size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectReference):
            return NotImplemented
        return self._object_id == other._object_id

    def __hash__(self) -> int:
        return hash(self._object_id)

    def __repr__(self) -> str:
        return f"ObjectReference(name={self._name!r}, id={self._object_id.hex()}, size={self._size})"

    def __reduce__(self) -> tuple[Any, ...]:
        return ObjectReference, (self._object_id, self._name, self._size)
