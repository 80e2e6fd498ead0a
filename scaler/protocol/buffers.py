"""Big payloads beside the envelope: one message's big byte fields travel as frames of their own.

A batch of messages leaves as one ZeroMQ multipart message of ``parts``::

    [envelope]                              nothing big: the codec's frame, exactly as before
    [envelope, layout, buffer, buffer, ...]  big fields out of band

The envelope is the codec's frame (``codec.encode``) of the messages with each big payload
field set to ``b""``. The layout is a msgpack array of the *ordinals* of those fields: the
payload fields of the messages, counted in a fixed order (``_slots``), starting at 0. The
buffers follow in the same order. A field holding a ``Segments`` (a pickle and its out-of-band
buffers, ``segments.py``) keeps its small head in the envelope, and its layout entry is
``[ordinal, count]``: the next ``count`` buffers are its own. So a 1 MiB argument is never copied into a msgpack buffer,
nor out of one: a sender hands ZeroMQ the payload itself (``copy=False``), and a receiver gets
a read-only ``memoryview`` over the frame ZeroMQ received, which it may send on as it is.

Only payload fields may travel out of band (function bytes, argument data, object contents,
result payloads), and only from ``OUT_OF_BAND_BYTES`` up: ids and everything else stay
``bytes`` inside the envelope. Decoding trusts nothing: a bad layout, a slot that does not
exist or is not empty in the envelope, a buffer under the threshold or past the size limits
raise ``ProtocolError`` like any bad frame, never another exception; so does a segmented entry
whose head in the envelope is not ``bytes``, or that claims more buffers than there are.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import msgpack

from scaler.errors import ProtocolError
from scaler.protocol.codec import DEFAULT_MAX_FRAME_BYTES, decode, encode
from scaler.protocol.messages import GraphTask, Message, ObjectInstruction, ObjectResponse, Task, TaskResult
from scaler.protocol.segments import OUT_OF_BAND_BYTES, Buffer, Segments

__all__ = ["OUT_OF_BAND_BYTES", "Buffer", "decode_parts", "encode_one_part", "encode_parts"]

_MAX_LAYOUT_BYTES = 64 * 1024  # the layout is a few ints per big payload
Slot = tuple[Any, Any]  # (object, field name) or (list, index)


def _slots(message: Message) -> Iterator[Slot]:
    """The payload fields of one message, in the order the layout counts them."""
    kind = type(message)
    if kind is Task:
        assert isinstance(message, Task)
        yield message, "function"
        for argument in message.args:
            yield argument, "data"
        for content in message.objects:
            yield content, "data"
    elif kind is TaskResult:
        yield message, "payload"
    elif kind is ObjectInstruction or kind is ObjectResponse:
        assert isinstance(message, (ObjectInstruction, ObjectResponse))
        payloads = message.payloads
        for index in range(len(payloads)):
            yield payloads, index
    elif kind is GraphTask:
        assert isinstance(message, GraphTask)
        for node in message.nodes:
            yield node, "function"
            for argument in node.args:
                yield argument, "data"


_CARRIERS = frozenset({Task, TaskResult, ObjectInstruction, ObjectResponse, GraphTask})


def _has_big(message: Message) -> bool:
    """True if one of the message's payload fields would travel out of band (``_slots`` without a generator)."""
    kind = type(message)
    if kind is Task:
        assert isinstance(message, Task)
        if len(message.function) >= OUT_OF_BAND_BYTES:
            return True
        for argument in message.args:
            if len(argument.data) >= OUT_OF_BAND_BYTES:
                return True
        return any(len(content.data) >= OUT_OF_BAND_BYTES for content in message.objects)
    if kind is TaskResult:
        assert isinstance(message, TaskResult)
        return len(message.payload) >= OUT_OF_BAND_BYTES
    if kind in _CARRIERS:
        return any(len(_get(slot)) >= OUT_OF_BAND_BYTES for slot in _slots(message))
    return False


def _get(slot: Slot) -> Any:
    holder, key = slot
    return holder[key] if type(holder) is list else getattr(holder, key)


def _set(slot: Slot, value: Any) -> None:
    holder, key = slot
    if type(holder) is list:
        holder[key] = value
    else:
        setattr(holder, key, value)


def encode_one_part(messages: Sequence[Message]) -> list[Buffer]:
    """The parts of one multipart message carrying all ``messages`` (big payloads out of band).

    The messages are changed while the envelope is encoded and restored before this returns.
    """
    for message in messages:  # most batches carry nothing big: no walk, no generator per message
        if type(message) in _CARRIERS and _has_big(message):
            break
    else:
        return [encode(messages)]
    taken: list[tuple[Slot, Any]] = []
    layout: list[int | list[int]] = []
    buffers: list[Buffer] = []
    ordinal = 0
    for message in messages:
        if type(message) not in _CARRIERS:
            continue
        for slot in _slots(message):
            value = _get(slot)
            if len(value) >= OUT_OF_BAND_BYTES:
                taken.append((slot, value))
                if type(value) is Segments:
                    layout.append([ordinal, len(value.buffers)])
                    buffers += value.buffers
                    _set(slot, value.head)
                else:
                    layout.append(ordinal)
                    buffers.append(value)
                    _set(slot, b"")
            ordinal += 1
    if not taken:
        return [encode(messages)]
    try:
        envelope = encode(messages)
    finally:
        for slot, value in taken:
            _set(slot, value)
    return [envelope, msgpack.packb(layout), *buffers]


def encode_parts(messages: Sequence[Message], max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> list[list[Buffer]]:
    """Encode messages into as few multipart messages as fit under ``max_bytes`` each (all parts together).

    A receiver drops the connection of a peer whose message is over its limit, so a batch over it
    is split in halves until each part fits; a single message that cannot fit raises
    ``ProtocolError`` (senders check payload sizes against ``MAX_PAYLOAD_BYTES`` beforehand).
    """
    parts = encode_one_part(messages)
    if sum(len(part) for part in parts) <= max_bytes:
        return [parts]
    if len(messages) <= 1:
        name = type(messages[0]).__name__ if messages else "message"
        raise ProtocolError(f"a {name} of {sum(len(part) for part in parts)} bytes exceeds the size limit")
    middle = len(messages) // 2
    return encode_parts(messages[:middle], max_bytes) + encode_parts(messages[middle:], max_bytes)


def decode_parts(parts: Sequence[Buffer], max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> list[Message]:
    """Decode one multipart message (from ``encode_parts``) into its messages, or raise ``ProtocolError``.

    Out-of-band payloads come back as the buffers given (not copied).
    """
    if len(parts) == 1:
        return decode(parts[0], max_bytes)
    if len(parts) == 2:
        raise ProtocolError("a layout without buffers")
    total = sum(len(part) for part in parts)
    if total > max_bytes:
        raise ProtocolError(f"a message of {total} bytes exceeds the limit of {max_bytes} bytes")
    envelope, layout, buffers = parts[0], parts[1], parts[2:]
    entries = _read_layout(layout, len(buffers))
    for buffer in buffers:
        if len(buffer) < OUT_OF_BAND_BYTES:
            raise ProtocolError(f"an out-of-band buffer of {len(buffer)} bytes (they start at {OUT_OF_BAND_BYTES})")
    messages = decode(envelope, max_bytes)
    wanted = 0  # the next layout entry
    taken = 0  # buffers handed out so far
    ordinal = 0
    for message in messages:
        if type(message) not in _CARRIERS:
            continue
        for slot in _slots(message):
            if ordinal == entries[wanted][0]:
                count = entries[wanted][1]
                value = _get(slot)
                if count:  # a segmented payload: its head is in the envelope
                    if type(value) is not bytes:
                        raise ProtocolError(f"payload {ordinal} is segmented but its head is not bytes")
                    _set(slot, Segments(value, buffers[taken : taken + count]))
                    taken += count
                else:
                    if value != b"":
                        raise ProtocolError(f"payload {ordinal} is both in the envelope and out of band")
                    _set(slot, buffers[taken])
                    taken += 1
                wanted += 1
                if wanted == len(entries):
                    return messages
            ordinal += 1
    raise ProtocolError(f"the layout names payload {entries[wanted][0]}, but the messages have {ordinal}")


def _read_layout(layout: Buffer, count: int) -> list[tuple[int, int]]:
    """The layout's entries as ``(ordinal, segments)`` (0: one plain buffer), or ``ProtocolError``.

    Ordinals are strictly increasing non-negative ints, and the entries take exactly ``count`` buffers.
    """
    size = len(layout)
    if size > _MAX_LAYOUT_BYTES:
        raise ProtocolError(f"a layout of {size} bytes (at most {_MAX_LAYOUT_BYTES})")
    try:
        raw = msgpack.unpackb(
            layout, use_list=True, strict_map_key=True, max_bin_len=0, max_str_len=0, max_array_len=size, max_map_len=0
        )
    except Exception as error:  # msgpack raises many types
        raise ProtocolError(f"undecodable layout: {type(error).__name__}") from None
    if type(raw) is not list or not raw or len(raw) > count:
        raise ProtocolError(f"the layout must list payloads for {count} buffers")
    entries: list[tuple[int, int]] = []
    previous = -1
    taken = 0
    for item in raw:
        if type(item) is int:
            ordinal, segments = item, 0
        elif type(item) is list and len(item) == 2 and type(item[0]) is int and type(item[1]) is int and item[1] > 0:
            ordinal, segments = item
        else:
            raise ProtocolError("a layout entry must be an ordinal or [ordinal, buffers]")
        if ordinal <= previous:
            raise ProtocolError("the layout's payloads must be increasing non-negative ints")
        previous = ordinal
        taken += segments or 1
        entries.append((ordinal, segments))
    if taken != count:
        raise ProtocolError(f"the layout must list {count} payloads")
    return entries
