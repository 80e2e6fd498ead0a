"""The agent's and a processor's ends of their pipe: message frames, and big payloads read in place.

Small batches cross the pipe (a ``multiprocessing`` duplex connection, a Unix socket pair) as one
codec frame each, as they always did. A batch with big payload fields (``protocol/buffers.py``)
crosses as an empty marker frame, its envelope, its layout and the payloads' sizes, then the
payloads' raw bytes, written straight from the sender's buffer and read straight into the receiver's
(``recv_into``), which is a new ``bytes`` object where CPython allows (``new_bytes``): a ``bytes``
argument is then rebuilt as that very object, not copied once more. Before, a 1 MiB payload was
packed into a msgpack frame, read back in 64 KiB pieces, joined twice (``BytesIO``, ``getvalue``)
and unpacked: six copies, and a wake-up of each side per piece. Now it is one copy into the kernel
and one out, and the socket buffers are raised (to the system's ``wmem_max``/``rmem_max``, 4 MiB
here) so a MiB crosses in a few writes.

Shared memory (a sealed memfd per payload) was measured and rejected: on this VM the fresh
pages cost more (0.8-1.0 ms per MiB to fill a memfd) than both socket copies together.

Reads go through the channel's own buffer: one ``recv`` takes whatever the socket holds (a
result and the frames after it), where ``Connection.poll`` and ``recv_bytes`` cost a ``select``
and two ``read`` calls per frame; these system calls are most of a worker agent's per-task cost.

Sizes are checked before anything is allocated: a payload under the out-of-band size or past the
frame limit, or a size list that does not match the layout, raises ``ProtocolError``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection

import msgpack

from scaler.errors import ProtocolError
from scaler.protocol.buffers import OUT_OF_BAND_BYTES, Buffer, decode_parts, encode_one_part
from scaler.protocol.codec import DEFAULT_MAX_FRAME_BYTES, decode
from scaler.protocol.messages import Message

_MARKER = b""  # a codec frame is never empty: this one says a batch with big payloads follows
_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024  # asked for; the kernel caps it at wmem_max / rmem_max
_BURST_BYTES = 256 * 1024  # read at most this much at once: many small frames in one system call
_HEADER = struct.Struct("!i")  # multiprocessing.Connection's frame header (what send_bytes writes)


class PipeChannel:
    """Messages over one end of a duplex ``Connection`` (a Unix socket pair); see the module docstring.

    Not thread-safe by itself: a processor sends under its own lock (``processor_context``).
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        # A second handle on the same socket: reads go through it, whole bursts at a time.
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=os.dup(connection.fileno()))
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):  # a smaller buffer only means more wake-ups
                self._socket.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER_BYTES)
        self._inbox = bytearray()  # bytes read but not parsed yet
        self._offset = 0  # where the unparsed bytes start in it
        # Reads land here first: ``recv(n)`` would allocate (and the kernel map) n fresh bytes per call.
        self._landing = memoryview(bytearray(_BURST_BYTES))

    def fileno(self) -> int:
        """The descriptor to poll."""
        return self.connection.fileno()

    def poll(self) -> bool:
        """True if a frame has arrived (at least its first bytes: ``receive`` then waits for the rest)."""
        if self._offset < len(self._inbox):
            return True
        return self._fill(blocking=False)

    def close(self) -> None:
        """Close both handles on the socket."""
        self._socket.close()
        self.connection.close()

    def detach(self) -> None:
        """Close only this channel's own handle; the ``Connection`` stays open for its owner."""
        self._socket.close()

    def send(self, messages: Sequence[Message]) -> None:
        """Send the messages as one batch; raises ``OSError`` if the other end is gone."""
        parts = encode_one_part(messages)
        if len(parts) == 1:
            self.connection.send_bytes(parts[0])
            return
        buffers = parts[2:]
        self.connection.send_bytes(_MARKER)
        self.connection.send_bytes(parts[0])
        self.connection.send_bytes(parts[1])
        self.connection.send_bytes(msgpack.packb([len(buffer) for buffer in buffers]))
        for buffer in buffers:
            self._socket.sendall(buffer)

    def receive(self) -> list[Message]:
        """Read one batch (blocks until it is whole).

        Raises ``EOFError``/``OSError`` if the other end is gone, ``ProtocolError`` if what came is not a batch.
        """
        frame = self._frame()
        if frame != _MARKER:
            return decode(frame)
        envelope = self._frame()
        layout = self._frame()
        sizes = _sizes(self._frame())
        buffers: list[Buffer] = [self._read(size) for size in sizes]
        return decode_parts([envelope, layout, *buffers], DEFAULT_MAX_FRAME_BYTES)

    def _fill(self, blocking: bool) -> bool:
        """Read what the socket holds (up to a burst) into the inbox; False if nothing was there (non-blocking)."""
        if self._offset == len(self._inbox):
            self._inbox.clear()
            self._offset = 0
        elif self._offset > _BURST_BYTES:  # a steady stream never empties it: drop what was parsed
            del self._inbox[: self._offset]
            self._offset = 0
        try:
            size = self._socket.recv_into(self._landing, _BURST_BYTES, 0 if blocking else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        if not size:
            raise EOFError("the other end closed the pipe")
        self._inbox += self._landing[:size]
        return True

    def _take(self, size: int) -> bytes:
        """The next ``size`` bytes (blocks until they are here)."""
        while len(self._inbox) - self._offset < size:
            self._fill(blocking=True)
        start = self._offset
        self._offset += size
        return bytes(memoryview(self._inbox)[start : start + size])

    def _frame(self) -> bytes:
        """The next ``multiprocessing.Connection`` frame: a 4-byte big-endian length, then the bytes."""
        (size,) = _HEADER.unpack(self._take(_HEADER.size))
        if not 0 <= size <= DEFAULT_MAX_FRAME_BYTES:
            raise ProtocolError(f"a pipe frame of {size} bytes")
        return self._take(size)

    def _read(self, size: int) -> Buffer:
        """Exactly ``size`` bytes: what the inbox holds, the rest read in place.

        They land in a new ``bytes`` object when ``new_bytes`` can make one (so a ``bytes``
        argument is that very object, with no copy after the kernel's), else in a ``bytearray``
        seen through a read-only view.
        """
        result, view = new_bytes(size)
        held = min(size, len(self._inbox) - self._offset)
        view[:held] = self._inbox[self._offset : self._offset + held]
        self._offset += held
        done = held
        while done < size:
            count = self._socket.recv_into(view[done:])
            if count == 0:
                raise EOFError("the pipe closed in the middle of a payload")
            done += count
        view.release()
        return result


def _bytes_filled_in_place(size: int) -> tuple[Buffer, memoryview]:
    """A new ``bytes`` of ``size`` (contents undefined) and a writable view of its memory, to fill before use.

    CPython's own C code makes a ``bytes`` this way (``PyBytes_FromStringAndSize(NULL, size)``,
    then writes into it before anyone else sees it); ``bytearray(size)`` would also zero it, and
    ``bytes(bytearray)`` copy it once more.
    """
    if size < 2:  # CPython shares its empty (and one-byte) bytes objects: never write into those
        return _bytearray_view(size)
    created: bytes = _PYBYTES_FROM_SIZE(None, size)  # a new object: nothing else refers to it yet
    # A view over raw memory (not a ctypes array: ctypes caches one array type per length, forever).
    # It does not keep ``created`` alive: the caller holds it while filling the view.
    view: memoryview = _MEMORYVIEW_FROM_MEMORY(id(created) + _BYTES_DATA_OFFSET, size, _PYBUF_WRITE)
    return created, view


def _bytearray_view(size: int) -> tuple[memoryview, memoryview]:
    """The portable way: a ``bytearray``'s read-only view to return, and its writable view to fill."""
    view = memoryview(bytearray(size))
    return view.toreadonly(), view


def _check_bytes_in_place() -> bool:
    """True if ``_bytes_filled_in_place`` works on this interpreter (a tiny trial, once)."""
    if sys.implementation.name != "cpython":
        return False
    try:
        created, view = _bytes_filled_in_place(16)
        view[:] = b"scaler-in-place!"
        view.release()
        return created == b"scaler-in-place!" and type(created) is bytes
    except Exception:  # noqa: BLE001 - any failure means: use the portable way
        return False


_PYBYTES_FROM_SIZE = ctypes.pythonapi.PyBytes_FromStringAndSize
_PYBYTES_FROM_SIZE.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
_PYBYTES_FROM_SIZE.restype = ctypes.py_object
_BYTES_DATA_OFFSET = bytes.__basicsize__ - 1  # ``ob_sval``: the basic size counts its trailing NUL
_MEMORYVIEW_FROM_MEMORY = ctypes.pythonapi.PyMemoryView_FromMemory
_MEMORYVIEW_FROM_MEMORY.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int)
_MEMORYVIEW_FROM_MEMORY.restype = ctypes.py_object
_PYBUF_WRITE = 0x200  # CPython's buffer flag for a writable view
new_bytes: Callable[[int], tuple[Buffer, memoryview]] = (
    _bytes_filled_in_place if _check_bytes_in_place() else _bytearray_view
)


def _sizes(frame: bytes) -> list[int]:
    """The payload sizes of a batch, each within the out-of-band range, all within the frame limit."""
    try:
        sizes = msgpack.unpackb(frame, max_bin_len=0, max_str_len=0, max_map_len=0, max_array_len=len(frame))
    except Exception as error:  # msgpack raises many types
        raise ProtocolError(f"undecodable payload sizes: {type(error).__name__}") from None
    if type(sizes) is not list or not sizes:
        raise ProtocolError("a batch with big payloads must list their sizes")
    total = 0
    for size in sizes:
        if type(size) is not int or not OUT_OF_BAND_BYTES <= size <= DEFAULT_MAX_FRAME_BYTES:
            raise ProtocolError("a payload size out of range")
        total += size
    if total > DEFAULT_MAX_FRAME_BYTES:
        raise ProtocolError(f"payloads of {total} bytes exceed the limit of {DEFAULT_MAX_FRAME_BYTES} bytes")
    return sizes
