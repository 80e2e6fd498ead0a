"""The one encode/decode path for every message.

A frame is one msgpack array: ``[PROTOCOL_VERSION, [TYPE, field, ...], [TYPE, field, ...], ...]``.
Putting several messages in one frame is how senders batch: whatever is ready to go to a
peer in one turn of its loop leaves as one frame.

Frames are read and written by msgspec: messages are array-like msgspec structs tagged with their
``TYPE`` (``messages.py``), so one call turns a whole frame into typed messages in C, checking every
field against its annotation as it goes (exact types, enums by value, every field present and none
extra), and one call turns a batch into bytes. The bytes are the same as msgpack's own packer makes.

Decoding trusts nothing. A few bytes cannot make the decoder allocate a huge container (a declared
length is checked against the bytes left), and nesting is bounded by the message classes, since
a field of the wrong type is refused when its first byte is read. Any failure raises
``ProtocolError`` and nothing else: a hostile frame must never surface as another exception type
in a peer's receive loop, and nothing from the frame reaches an error message unbounded (it ends
up in logs). A refused frame is parsed again by msgpack, with every length bounded by the frame's
size and nesting by its unpacker (1024 levels in C, the recursion limit in Python), only to say
what is wrong with it: garbage, another protocol version, or a bad message.

A frame can still expand in memory: every one-byte ``[]`` becomes a Python list, so a frame of
N bytes can cost up to ~75 N bytes while it is decoded. The frame size limit bounds that; the
garbage collector is paused while a big frame decodes, since millions of fresh containers would
otherwise trigger repeated collections (2-5x slower, for good frames and bad alike).
"""

from __future__ import annotations

import functools
import gc
import operator
from collections.abc import Iterable
from itertools import islice, repeat
from typing import Any

import msgpack
import msgspec

from scaler.errors import ProtocolError, ProtocolVersionError
from scaler.protocol.messages import ALL_MESSAGES, Message
from scaler.protocol.version import PROTOCOL_VERSION

DEFAULT_MAX_FRAME_BYTES = 256 * 1024 * 1024
# The most one message's payloads may hold: leaves room for its envelope inside one frame.
MAX_PAYLOAD_BYTES = DEFAULT_MAX_FRAME_BYTES - 1024 * 1024
# Frames at least this big decode with the garbage collector paused (see the module docstring).
_GC_PAUSE_BYTES = 1024 * 1024

# A frame as msgspec reads it: the version, then messages, each told apart by its tag (its TYPE,
# the array's first item). Encoder and decoder hold no state between calls: one of each serves
# every thread (msgspec makes their methods thread-safe, and runs no Python code while it works).
_FRAME_ITEM: Any = functools.reduce(operator.or_, ALL_MESSAGES, int)  # int | Task | TaskResult | ...
_DECODER = msgspec.msgpack.Decoder(list[_FRAME_ITEM])
_ENCODER = msgspec.msgpack.Encoder()


def encode(messages: Iterable[Message]) -> bytes:
    """Encode one or more messages into one frame (safe from any number of threads)."""
    frame: list[Any] = [PROTOCOL_VERSION]
    frame.extend(messages)
    if not all(map(isinstance, islice(frame, 1, None), repeat(Message))):  # in C: a few ns a message
        stranger = next(item for item in islice(frame, 1, None) if not isinstance(item, Message))
        raise TypeError(f"cannot encode {type(stranger).__name__}: not a message")
    return _ENCODER.encode(frame)


def encode_one(message: Message) -> bytes:
    """Encode a single message into one frame."""
    if not isinstance(message, Message):
        raise TypeError(f"cannot encode {type(message).__name__}: not a message")
    return _ENCODER.encode([PROTOCOL_VERSION, message])


def _reject_ext(code: int, data: bytes) -> Any:
    raise ProtocolError("msgpack extension types are not part of the protocol")


def decode(frame: bytes | memoryview, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> list[Message]:
    """Decode a frame into its messages, or raise ``ProtocolError``."""
    if len(frame) > max_frame_bytes:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds the limit of {max_frame_bytes} bytes")
    paused = len(frame) >= _GC_PAUSE_BYTES and gc.isenabled()
    if paused:
        gc.disable()
    try:
        return _decode(frame)
    except Exception as error:  # e.g. MemoryError: whatever the bytes do, the caller sees one error type
        failure = (
            error if isinstance(error, ProtocolError) else ProtocolError(f"undecodable frame: {type(error).__name__}")
        )
        # Its traceback and context reach the half-decoded frame: drop them while the collector is
        # still paused, so that those objects are freed now, not scanned by the next collection.
        failure.__traceback__ = failure.__context__ = None
    finally:
        if paused:
            gc.enable()
    raise failure


def _decode(frame: bytes | memoryview) -> list[Message]:
    try:
        items: list[Any] = _DECODER.decode(frame)
    except Exception as error:  # msgspec's DecodeError and ValidationError, RecursionError, MemoryError, ...
        raise _diagnose(frame, error) from None
    if items and type(items[0]) is int and items[0] == PROTOCOL_VERSION:
        del items[0]
        # The frame's type lets an int stand anywhere, for the version: none may stand for a message.
        if int in map(type, items):
            raise ProtocolError("a message must be a msgpack array starting with its type code")
        messages: list[Message] = items
        return messages
    if items and type(items[0]) is int:
        raise ProtocolVersionError(PROTOCOL_VERSION, items[0])
    raise _diagnose(frame, None)


def _diagnose(frame: bytes | memoryview, error: Exception | None) -> ProtocolError:
    """The error to raise for a frame that the typed decoder refused (``error``) or that lacks a version.

    msgspec stops at the first thing out of place. Parsing the frame again with msgpack, with every
    length bounded by the frame's size, tells what kind of wrong it is: not msgpack at all, not a
    frame, a frame of another protocol version (which a peer reports as such), or a bad message
    in a frame of ours. Only bad frames pay for this second parse.
    """
    size = len(frame)
    try:
        raw = msgpack.unpackb(
            frame,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_reject_ext,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size,
            max_ext_len=size,
        )
    except ProtocolError as failure:
        return failure
    except Exception as failure:  # msgpack raises many types (ValueError, StackError, ExtraData, ...)
        return ProtocolError(f"undecodable frame: {type(failure).__name__}: {_clip(str(failure))}")
    if type(raw) is not list or not raw:
        return ProtocolError("a frame must be a non-empty msgpack array")
    version = raw[0]
    if type(version) is not int or version != PROTOCOL_VERSION:
        return ProtocolVersionError(PROTOCOL_VERSION, _brief(version))
    if error is None:  # msgspec and msgpack disagree on what this frame is: refuse it all the same
        return ProtocolError("undecodable frame")
    return ProtocolError(f"invalid message: {_clip(str(error))}")


_BRIEF_CHARS = 40
_CLIP_CHARS = 200


def _clip(text: str) -> str:
    """``text`` cut to a length fit for one log line."""
    return text if len(text) <= _CLIP_CHARS else f"{text[:_CLIP_CHARS]}... ({len(text)} characters)"


def _brief(value: object) -> object:
    """A stand-in for a value from a frame whose ``repr`` is short and safe, for error messages.

    Never ``repr`` a container from a frame: it can nest 1000 levels deep, past Python's
    recursion limit, or hold a million items.
    """
    if isinstance(value, (list, dict)):
        return f"<a msgpack {'array' if isinstance(value, list) else 'map'} of {len(value)} items>"
    if isinstance(value, str) and len(value) > _BRIEF_CHARS:
        return value[:_BRIEF_CHARS] + "..."
    if isinstance(value, bytes) and len(value) > _BRIEF_CHARS:
        return value[:_BRIEF_CHARS] + b"..."
    return value  # numbers, booleans, None and short text have short reprs
