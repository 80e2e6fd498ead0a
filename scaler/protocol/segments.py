"""``Segments``: one payload held as several buffers (a small head, then big buffers), never joined.

The default serializer pickles with protocol 5 and keeps big buffers (a ``bytes`` argument, a NumPy
array's data) out of the pickle: what it returns is the pickle as ``head`` and those buffers as
``buffers``, each the caller's own memory. Everything between the two serializers treats a
payload as opaque, and ``Segments`` behaves like one where it must: ``len()`` is the total size
(for limits and accounting), ``content_id`` hashes every part, and the wire (``buffers.py``)
sends the head inside the envelope and each buffer as a frame of its own, so no hop joins them.

A ``Segments`` always has at least one buffer, and every buffer is at least ``OUT_OF_BAND_BYTES``
(a smaller one is pickled in the head), so a ``Segments`` is always big enough to travel out of band.
"""

from __future__ import annotations

from collections.abc import Sequence

OUT_OF_BAND_BYTES = 64 * 1024  # a payload field (or a pickled buffer) at least this big travels as a frame of its own

Buffer = bytes | memoryview


class Segments:
    """A payload as ``head`` plus ``buffers``; see the module docstring."""

    __slots__ = ("head", "buffers", "_size")

    def __init__(self, head: Buffer, buffers: Sequence[Buffer]) -> None:
        self.head = head
        self.buffers = list(buffers)
        self._size = len(head) + sum(len(buffer) for buffer in self.buffers)

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        """The parts joined: a copy, only for a consumer that needs one contiguous ``bytes``."""
        return b"".join([self.head, *self.buffers])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Segments):
            return NotImplemented
        return self.head == other.head and self.buffers == other.buffers

    __hash__ = None  # type: ignore[assignment]  # mutable holder of buffers

    def __repr__(self) -> str:
        sizes = ", ".join(str(len(buffer)) for buffer in self.buffers)
        return f"Segments(head={len(self.head)} bytes, buffers=[{sizes}])"
