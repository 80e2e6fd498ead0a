"""How a client turns arguments and results into bytes.

A client's serializer travels to the workers pickled together with each function, so a task's
arguments are decoded and its result encoded on the worker with the very same serializer.
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
    workers, or defined in ``__main__`` so that cloudpickle can ship it by value.
    """

    @abc.abstractmethod
    def serialize(self, obj: Any) -> bytes:
        """Turn one argument or result into bytes."""

    @abc.abstractmethod
    def deserialize(self, payload: bytes) -> Any:
        """Turn bytes from ``serialize`` back into the object."""


class DefaultSerializer(Serializer):
    """cloudpickle with pickle protocol 5: handles lambdas, closures and most Python objects."""

    def serialize(self, obj: Any) -> bytes:
        """Pickle ``obj`` with cloudpickle (plain pickle for builtin scalars, which is 5x faster)."""
        if type(obj) in _SCALARS:
            return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        payload: bytes = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        return payload

    def deserialize(self, payload: bytes) -> Any:
        """Unpickle bytes made by ``serialize``."""
        return pickle.loads(payload)
