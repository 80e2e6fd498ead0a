"""How a client turns arguments and results into bytes.

A client's serializer travels to the workers pickled together with each function, so a task's
arguments are decoded and its result encoded on the worker with the very same serializer.

Big payloads arrive as read-only ``memoryview``s of the frames they came in (no copy; see
``protocol/buffers.py``). ``deserialize_payload`` hands them on as they are to a serializer that
says it takes buffers (``takes_buffers = True``, as the default one does), and as ``bytes`` to
any other, so a user's serializer written for ``bytes`` keeps working.

The default serializer pickles with protocol 5 and keeps every buffer of ``OUT_OF_BAND_BYTES``
or more out of the pickle: contiguous ``memoryview``, NumPy arrays and anything else that
pickles a ``PickleBuffer``, wherever they are in the object; ``bytes`` and ``bytearray`` when
the object is one, or when a list, tuple or dict holds one among its first items (then every
big one in it: pickle saves these two types without asking the pickler's hooks, except
``persistent_id``, which slows down every object, so it is used only then). It then returns a
``Segments`` (the pickle as its head, those buffers beside it) instead of ``bytes``; the wire
sends each buffer as a frame of its own.

Only read-only buffers (``bytes``, read-only arrays and views) travel as the caller's own memory,
not copied. A writable one (``bytearray``, a NumPy array) is copied once when serialized, as a
pickle would copy it: the client's agent thread sends it later, and a caller that changes the
array after ``submit`` must not change (or, through its content id, lose) what the task receives.

On the far side the value is rebuilt from the buffers received:

- a ``bytes`` is the received buffer itself when that is a ``bytes`` (a processor reads big
  payloads into one), else one copy, as a ``bytes`` needs its own memory;
- a buffer that was read-only when pickled (a read-only array, a ``memoryview`` of ``bytes``)
  is used in place, with no copy;
- a buffer that was writable (a ``bytearray``, a NumPy array) is copied once into a fresh
  ``bytearray``, so the value is writable as the original was, and a task that changes its
  argument never changes the worker's cached copy of the object.
"""

from __future__ import annotations

import abc
import io
import pickle
from collections.abc import Callable
from typing import Any

import cloudpickle

from scaler.protocol.segments import OUT_OF_BAND_BYTES, Buffer, Segments

# Types that pickle by value with no reference to any module, so plain pickle is safe for them.
_SCALARS = frozenset({int, float, complex, bool, str, bytes, type(None)})
_PROTOCOL = 5  # the first protocol with out-of-band buffers
# Each out-of-band buffer has one byte at the head's start saying how the far side rebuilds it.
_READONLY, _WRITABLE, _BYTES, _BYTEARRAY = b"r"[0], b"w"[0], b"b"[0], b"a"[0]
_CONTAINERS = (list, tuple, dict)
_SCAN_ITEMS = 1024  # a container's items looked at for big ``bytes`` before pickling it


class Serializer(abc.ABC):
    """Subclass this and pass an instance (or the class) as ``Client(serializer=...)``.

    Both methods may be static methods or plain methods. The class must be importable on the
    workers, or defined in ``__main__`` so that cloudpickle can ship it by value. Set
    ``takes_buffers = True`` if ``deserialize`` accepts any bytes-like object (a ``memoryview``):
    big payloads then reach it without a copy.
    """

    takes_buffers = False

    @abc.abstractmethod
    def serialize(self, obj: Any) -> bytes | Segments:
        """Turn one argument or result into bytes (the default serializer may return ``Segments``)."""

    @abc.abstractmethod
    def deserialize(self, payload: bytes) -> Any:
        """Turn bytes from ``serialize`` back into the object."""


class DefaultSerializer(Serializer):
    """cloudpickle with pickle protocol 5, big buffers out of band; handles lambdas, closures and most objects."""

    takes_buffers = True

    def serialize(self, obj: Any) -> bytes | Segments:
        """Pickle ``obj``: plain pickle for builtin scalars (5x faster), cloudpickle for the rest.

        Returns ``bytes``, or ``Segments`` when some buffer is big enough to travel on its own.
        """
        kind = type(obj)
        if (kind is bytes or kind is bytearray) and len(obj) >= OUT_OF_BAND_BYTES:
            if kind is bytes:
                return Segments(bytes([_BYTES]) + _PERSISTENT_FIRST, [obj])
            return Segments(bytes([_BYTEARRAY]) + _PERSISTENT_FIRST, [bytes(obj)])  # a snapshot: see below
        if kind in _SCALARS:
            return pickle.dumps(obj, protocol=_PROTOCOL)
        flags = bytearray()
        buffers: list[Buffer] = []
        file = io.BytesIO()
        pickler_type = _BytesPickler if kind in _CONTAINERS and _holds_big_bytes(obj) else _Pickler
        pickler_type(file, flags, buffers).dump(obj)
        if not buffers:
            return file.getvalue()
        return Segments(bytes(flags) + file.getbuffer(), buffers)

    def deserialize(self, payload: bytes | memoryview | Segments) -> Any:
        """Unpickle what ``serialize`` made: bytes, any bytes-like object, or ``Segments``."""
        if not isinstance(payload, Segments):
            return pickle.loads(payload)
        count = len(payload.buffers)
        head = memoryview(payload.head)
        flags = head[:count]
        if len(flags) != count:
            raise pickle.UnpicklingError("a segmented payload's head is shorter than its buffer list")
        pickled: list[Any] = []
        persistent: list[Any] = []
        for flag, buffer in zip(flags, payload.buffers, strict=True):
            if flag == _BYTES:
                persistent.append(buffer if type(buffer) is bytes else bytes(buffer))
            elif flag == _BYTEARRAY:
                persistent.append(bytearray(buffer))
            elif flag == _READONLY:
                pickled.append(buffer)
            elif flag == _WRITABLE:
                pickled.append(bytearray(buffer))  # the value must be writable, and not the receiver's buffer
            else:
                raise pickle.UnpicklingError(f"unknown out-of-band buffer kind {flag}")
        unpickler = pickle.Unpickler(io.BytesIO(head[count:]), buffers=pickled)
        if persistent:
            unpickler.persistent_load = _bytes_loader(persistent)  # type: ignore[method-assign]
        return unpickler.load()


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle's pickler, keeping big buffers out of band and noting each one's kind in ``flags``.

    The buffer callback is a closure over the two lists, not a bound method: a pickler that
    referred to itself would be a reference cycle holding ``memoryview``s, which the garbage
    collector cannot clear while they are exported.
    """

    def __init__(self, file: io.BytesIO, flags: bytearray, buffers: list[Buffer]) -> None:
        super().__init__(file, protocol=_PROTOCOL, buffer_callback=_out_of_band(flags, buffers))
        self._flags = flags
        self._buffers = buffers

    def reducer_override(self, obj: Any) -> Any:
        """A ``memoryview`` as a ``PickleBuffer`` (pickle cannot pickle one at all)."""
        if type(obj) is memoryview:
            if obj.c_contiguous:
                return _memoryview, (pickle.PickleBuffer(obj), obj.format, obj.shape)
            return _memoryview, (obj.tobytes(), obj.format, obj.shape)
        return super().reducer_override(obj)


class _BytesPickler(_Pickler):
    """Also keeps big ``bytes`` and ``bytearray`` out of band, wherever they are.

    pickle saves those two types without asking ``reducer_override``, but it asks
    ``persistent_id`` about every object (which is why this pickler is slower, and used only
    when ``_holds_big_bytes`` says it is worth it).
    """

    def __init__(self, file: io.BytesIO, flags: bytearray, buffers: list[Buffer]) -> None:
        super().__init__(file, flags, buffers)
        self._persistent = 0  # big ``bytes`` kept out of band so far: the next one's id

    def persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if (kind is bytes or kind is bytearray) and len(obj) >= OUT_OF_BAND_BYTES:
            self._flags.append(_BYTES if kind is bytes else _BYTEARRAY)
            self._buffers.append(obj if kind is bytes else bytes(obj))  # a snapshot of a mutable one
            self._persistent += 1
            return self._persistent - 1
        return None


def _out_of_band(flags: bytearray, buffers: list[Buffer]) -> Callable[[pickle.PickleBuffer], bool]:
    """pickle's ``buffer_callback``: False keeps a big buffer out of the pickle, noting its kind."""

    def callback(buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        if raw.nbytes < OUT_OF_BAND_BYTES:
            return True
        if raw.readonly:
            flags.append(_READONLY)
            buffers.append(raw)
        else:  # a snapshot, as a pickle would have taken: see the module docstring
            flags.append(_WRITABLE)
            buffers.append(bytes(raw))
        return False

    return callback


def _holds_big_bytes(obj: list[Any] | tuple[Any, ...] | dict[Any, Any]) -> bool:
    """True if one of the container's first items (values, for a dict) is a big ``bytes`` or ``bytearray``.

    Only then is the slower ``persistent_id`` pickler worth it; ``bytes`` deeper down stay in the pickle.
    """
    items = obj.values() if type(obj) is dict else obj
    for index, item in enumerate(items):
        if index == _SCAN_ITEMS:
            return False
        if (type(item) is bytes or type(item) is bytearray) and len(item) >= OUT_OF_BAND_BYTES:
            return True
    return False


def _bytes_loader(values: list[bytes | bytearray]) -> Callable[[Any], bytes | bytearray]:
    """The unpickler's ``persistent_load``: big ``bytes`` or ``bytearray`` number ``pid`` (only they use ids)."""

    def load(pid: Any) -> bytes | bytearray:
        if type(pid) is not int or not 0 <= pid < len(values):
            raise pickle.UnpicklingError(f"no out-of-band bytes number {pid!r}")
        return values[pid]

    return load


def _memoryview(buffer: Any, format: str, shape: tuple[int, ...]) -> memoryview:
    """Rebuild a ``memoryview`` of the same format and shape over the received (or copied) buffer."""
    view = memoryview(buffer).cast("B")
    if format == "B" and shape == (len(view),):
        return view
    shaped: memoryview = view.cast(format, shape)  # type: ignore[call-overload]
    return shaped


# A pickle of persistent id 0: what a big ``bytes`` sent alone pickles to (no pickler needed).
_PERSISTENT_FIRST = b"\x80\x05K\x00Q."


def deserialize_payload(serializer: Serializer, payload: bytes | memoryview | Segments) -> Any:
    """``serializer.deserialize(payload)``, with ``payload`` as ``bytes`` unless the serializer takes buffers."""
    if type(payload) is not bytes and not getattr(serializer, "takes_buffers", False):
        payload = bytes(payload)
    return serializer.deserialize(payload)  # type: ignore[arg-type]
