"""How a client turns arguments and results into bytes.

A client's serializer travels to the workers pickled together with each function, so a task's
arguments are decoded and its result encoded on the worker with the very same serializer.

Big payloads arrive as read-only ``memoryview``s of the frames they came in (no copy; see
``protocol/buffers.py``). ``deserialize_payload`` hands them on as they are to a serializer that
says it takes buffers (``takes_buffers = True``, as the default one does), and as ``bytes`` to
any other, so a user's serializer written for ``bytes`` keeps working.
"""

from __future__ import annotations

import abc
import pickle
from typing import Any

import cloudpickle

# Types that pickle by value with no reference to any module, so plain pickle is safe for them.
_SCALARS = frozenset({int, float, complex, bool, str, bytes, type(None)})


class Serializer(abc.ABC):
    """Subclass this and pass an instance (or the class) as ``Client(serializer=...)``.

    Both methods may be static methods or plain methods. The class must be importable on the
    workers, or defined in ``__main__`` so that cloudpickle can ship it by value. Set
    ``takes_buffers = True`` if ``deserialize`` accepts any bytes-like object (a ``memoryview``):
    big payloads then reach it without a copy.
    """

    takes_buffers = False

    @abc.abstractmethod
    def serialize(self, obj: Any) -> bytes:
        """Turn one argument or result into bytes."""

    @abc.abstractmethod
    def deserialize(self, payload: bytes) -> Any:
        """Turn bytes from ``serialize`` back into the object."""


class DefaultSerializer(Serializer):
    """cloudpickle with pickle protocol 5: handles lambdas, closures and most Python objects."""

    takes_buffers = True

    def serialize(self, obj: Any) -> bytes:
        """Pickle ``obj`` with cloudpickle (plain pickle for builtin scalars, which is 5x faster)."""
        if type(obj) in _SCALARS:
            return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        payload: bytes = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        return payload

    def deserialize(self, payload: bytes) -> Any:
        """Unpickle bytes (or any bytes-like object) made by ``serialize``."""
        return pickle.loads(payload)


def deserialize_payload(serializer: Serializer, payload: bytes | memoryview) -> Any:
    """``serializer.deserialize(payload)``, with ``payload`` as ``bytes`` unless the serializer takes buffers."""
    if type(payload) is not bytes and not getattr(serializer, "takes_buffers", False):
        payload = bytes(payload)
    return serializer.deserialize(payload)  # type: ignore[arg-type]
