"""The one encode/decode path for every message.

A frame is one msgpack array: ``[PROTOCOL_VERSION, [TYPE, field, ...], [TYPE, field, ...], ...]``.
Putting several messages in one frame is how senders batch: whatever is ready to go to a
peer in one turn of its loop leaves as one frame.

Decoding trusts nothing. Lengths are bounded by the frame's own size (so a few bytes cannot
declare a huge array), nesting is bounded by msgpack (1024 levels in its C unpacker, Python's
recursion limit in its pure-Python one), and every field is checked against its annotation in
``messages.py``. Any failure raises ``ProtocolError`` and nothing else: a hostile frame must
never surface as another exception type in a peer's receive loop, and nothing from the frame
reaches an error message unbounded (it ends up in logs).

A frame can still expand in memory: every one-byte ``[]`` becomes a Python list, so a frame of
N bytes can cost up to ~75 N bytes while it is decoded. The frame size limit bounds that; the
garbage collector is paused while a big frame decodes, since millions of fresh containers would
otherwise trigger repeated collections (2-5x slower, for good frames and bad alike).
"""

from __future__ import annotations

import dataclasses
import enum
import gc
import threading
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgpack

from scaler.errors import ProtocolError, ProtocolVersionError
from scaler.protocol.messages import ALL_MESSAGES, Message, Record
from scaler.protocol.version import PROTOCOL_VERSION

DEFAULT_MAX_FRAME_BYTES = 256 * 1024 * 1024
# The most one message's payloads may hold: leaves room for its envelope inside one frame.
MAX_PAYLOAD_BYTES = DEFAULT_MAX_FRAME_BYTES - 1024 * 1024
# Frames at least this big decode with the garbage collector paused (see the module docstring).
_GC_PAUSE_BYTES = 1024 * 1024

_Checker = Callable[[Any], Any]


def _fail(expected: str, value: object) -> typing.NoReturn:
    raise ProtocolError(f"expected {expected}, got {type(value).__name__}")


def _check_exact(kind: type) -> _Checker:
    def check(value: Any) -> Any:
        if type(value) is not kind:
            _fail(kind.__name__, value)
        return value

    return check


def _check_float(value: Any) -> float:
    # msgpack may shrink a whole float to an int on other implementations; accept both.
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    _fail("float", value)


def _check_enum(kind: type[enum.IntEnum]) -> _Checker:
    def check(value: Any) -> Any:
        if type(value) is not int:
            _fail(kind.__name__, value)
        try:
            return kind(value)
        except ValueError:
            raise ProtocolError(f"{value} is not a valid {kind.__name__}") from None

    return check


def _check_list(inner: _Checker) -> _Checker:
    def check(value: Any) -> Any:
        if type(value) is not list:
            _fail("list", value)
        return [inner(item) for item in value]

    return check


def _check_dict(key: _Checker, inner: _Checker) -> _Checker:
    def check(value: Any) -> Any:
        if type(value) is not dict:
            _fail("map", value)
        return {key(k): inner(v) for k, v in value.items()}

    return check


def _check_record(kind: type) -> _Checker:
    build = _builder(kind)

    def check(value: Any) -> Any:
        if type(value) is not list:
            _fail(kind.__name__, value)
        return build(value)

    return check


def _checker_for(annotation: Any) -> _Checker:
    origin = typing.get_origin(annotation)
    if origin is list:
        (inner,) = typing.get_args(annotation)
        return _check_list(_checker_for(inner))
    if origin is dict:
        key, inner = typing.get_args(annotation)
        return _check_dict(_checker_for(key), _checker_for(inner))
    if annotation is float:
        return _check_float
    if annotation in (bytes, str, int, bool):
        return _check_exact(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.IntEnum):
        return _check_enum(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Record):
        return _check_record(annotation)
    raise TypeError(f"the codec cannot carry fields of type {annotation!r}")


def _builder(kind: type) -> Callable[[Sequence[Any]], Any]:
    """Return a function that validates a list of field values and builds ``kind`` from it.

    The function is generated for ``kind``, with the checks of scalar fields written inline: a
    generic loop over one checker per field costs several times more, and the status feed's
    readers decode tens of thousands of records a second. It checks the fields in order and raises
    exactly what the per-field checkers raise.
    """
    hints = typing.get_type_hints(kind)
    fields = [field.name for field in dataclasses.fields(kind)]
    count = len(fields)
    namespace: dict[str, Any] = {"kind": kind, "ProtocolError": ProtocolError, "fail": _fail, "to_float": _check_float}
    arguments: list[str] = []
    for index, field_name in enumerate(fields):
        annotation, value = hints[field_name], f"v{index}"
        if annotation in (bytes, str, int, bool):
            namespace[f"t{index}"] = annotation
            arguments.append(f"{value} if type({value}) is t{index} else fail({annotation.__name__!r}, {value})")
        elif annotation is float:
            arguments.append(f"{value} if type({value}) is float else to_float({value})")
        elif isinstance(annotation, type) and issubclass(annotation, enum.IntEnum):
            namespace[f"m{index}"] = {int(member): member for member in annotation}
            namespace[f"c{index}"] = _check_enum(annotation)
            arguments.append(
                f"m{index}[{value}] if type({value}) is int and {value} in m{index} else c{index}({value})"
            )
        else:
            namespace[f"c{index}"] = _checker_for(annotation)
            arguments.append(f"c{index}({value})")
    lines = [
        "def build(values):",
        f"    if len(values) != {count}:",
        f"        raise ProtocolError(f'{kind.__name__} has {count} fields, got {{len(values)}}')",
    ]
    if count:
        lines.append(f"    {', '.join(f'v{index}' for index in range(count))}, = values")
    lines.append(f"    return kind({', '.join(arguments)})")
    exec("\n".join(lines), namespace)  # noqa: S102 - the source is made above from the message classes only
    build: Callable[[Sequence[Any]], Any] = namespace["build"]
    return build


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_BUILDERS: dict[int, Callable[[Sequence[Any]], Any]] = {}
for _message_type in ALL_MESSAGES:
    _FIELD_NAMES[_message_type] = tuple(field.name for field in dataclasses.fields(_message_type))  # type: ignore[arg-type]
    _BUILDERS[_message_type.TYPE] = _builder(_message_type)
for _record_type in Record.__subclasses__():
    _FIELD_NAMES[_record_type] = tuple(field.name for field in dataclasses.fields(_record_type))  # type: ignore[arg-type]


def _to_wire(obj: Any) -> Any:
    names = _FIELD_NAMES.get(type(obj))
    if names is None:
        raise TypeError(f"cannot encode {type(obj).__name__}")
    return [getattr(obj, name) for name in names]


class _ThreadPackers(threading.local):
    """One msgpack ``Packer`` per thread.

    A ``Packer`` keeps its output buffer between calls, and its ``default`` hook is Python code,
    so the interpreter may switch threads in the middle of a pack: a packer shared by two
    threads (two clients in one process, or a task's threads) interleaves their frames.
    """

    def __init__(self) -> None:
        self.packer = msgpack.Packer(default=_to_wire, use_bin_type=True, autoreset=True)


_packers = _ThreadPackers()


def encode(messages: Iterable[Message]) -> bytes:
    """Encode one or more messages into one frame (safe from any number of threads)."""
    frame: list[Any] = [PROTOCOL_VERSION]
    for message in messages:
        wire = [message.TYPE]
        wire.extend(getattr(message, name) for name in _FIELD_NAMES[type(message)])
        frame.append(wire)
    packed: bytes = _packers.packer.pack(frame)
    return packed


def encode_frames(messages: Sequence[Message], max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> list[bytes]:
    """Encode messages into as few frames as fit under ``max_frame_bytes`` each.

    A receiver drops the connection of a peer whose frame is over its limit, so a large batch
    is split in halves until each part fits. A single message that cannot fit raises
    ``ProtocolError``; senders check payload sizes against ``MAX_PAYLOAD_BYTES`` beforehand.
    """
    frame = encode(messages)
    if len(frame) <= max_frame_bytes:
        return [frame]
    if len(messages) == 1:
        raise ProtocolError(f"a {type(messages[0]).__name__} of {len(frame)} bytes exceeds the frame limit")
    middle = len(messages) // 2
    return encode_frames(messages[:middle], max_frame_bytes) + encode_frames(messages[middle:], max_frame_bytes)


def encode_one(message: Message) -> bytes:
    """Encode a single message into one frame."""
    return encode((message,))


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
    # No length may exceed the frame's size: a few bytes cannot make msgpack allocate a huge list
    # (unpackb sets these by itself; they are spelled out so that no msgpack release can loosen them).
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
    except ProtocolError:
        raise
    except Exception as error:  # msgpack raises many types (ValueError, StackError, ExtraData, ...)
        raise ProtocolError(f"undecodable frame: {type(error).__name__}: {_clip(str(error))}") from None
    if type(raw) is not list or not raw:
        raise ProtocolError("a frame must be a non-empty msgpack array")
    version = raw[0]
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolVersionError(PROTOCOL_VERSION, _brief(version))
    messages: list[Message] = []
    for wire in raw[1:]:
        if type(wire) is not list or not wire or type(wire[0]) is not int:
            raise ProtocolError("a message must be a msgpack array starting with its type code")
        build = _BUILDERS.get(wire[0])
        if build is None:
            raise ProtocolError(f"unknown message type {wire[0]}")
        messages.append(build(wire[1:]))
    return messages


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
