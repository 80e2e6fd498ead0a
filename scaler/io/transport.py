"""The transport the three shells share: sockets, the receive drain, batched sends, monitors, timers.

The scheduler server, the worker agent and the client agent each run one poll loop. What those
loops have in common lives here, so each shell is only its dispatch table, its timers and a few
lines of glue:

::

    RouterTransport (scheduler)            DealerTransport (worker, client)
      bind + ZAP allow-list + monitor        connect + handshake monitor
      receive() -> (peer, messages)          receive() -> messages
      closed_peers()  (SRCFD)                monitor_events() -> HandshakeWatch
      send_batches({peer: [messages]})       send([messages])
                    poll(), register(fd), close()
    Ticker: a periodic timer that bounds the poll.   Waker: lets other threads wake a loop.

A turn of every loop is the same: drain up to a burst of ready frames, act on all of them, then
send what the turn produced as one message per peer. Draining before sending is what batches: a
quiet peer is answered at once, a busy one gets many answers per frame. A batch is split only
where a message would pass the codec's frame limit (``buffers.encode_parts``).

Big payloads (``protocol/buffers.py``) travel as extra frames after the msgpack envelope: they
are sent without a copy (ZeroMQ holds the caller's buffer until it has gone) and received as
views of ZeroMQ's own buffers, so the scheduler passes a 1 MiB object on without copying it.

Nothing here runs per message: ``receive`` decodes per frame and yields the frame's messages, and
the shells loop over them. An undecodable frame is yielded as its ``ProtocolError``, so each
shell decides what it means (a scheduler drops the frame, a client loses its scheduler).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import time
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import zmq

from scaler.errors import ProtocolError, ProtocolVersionError
from scaler.io.security import (
    HANDSHAKE_EVENTS,
    HANDSHAKE_FAILED_EVENTS,
    PeerKeys,
    SchedulerKeys,
    describe_refused_handshake,
)
from scaler.io.sockets import Socket, bind_router, connect_dealer
from scaler.io.zap import AllowListAuthenticator
from scaler.protocol.buffers import OUT_OF_BAND_BYTES, decode_parts, encode_parts
from scaler.protocol.codec import decode, encode_one
from scaler.protocol.messages import Message
from scaler.utility.rate_limited_log import RateLimitedLog

logger = logging.getLogger(__name__)

# Frames read in one turn before the loop acts on them and sends. The scheduler serves many peers,
# so it reads more per turn; a bound at all keeps one flooding peer from starving the timers.
ROUTER_BURST = 4096
DEALER_BURST = 1000
PIPE_BURST = 1000  # frames a worker agent reads from one processor's pipe per turn
TICK_SECONDS = 0.1  # the scheduler's and the worker's timer: heartbeats, timeouts, liveness
_GOODBYE_SECONDS = 0.05  # how long a leaving peer waits for its goodbye to leave the socket

Events = dict[Any, int]  # poll() result: socket or file descriptor -> zmq.POLLIN


class _Transport:
    """What both transports share: a context, one socket with a monitor, and a poller over them."""

    def __init__(self, context: zmq.Context[Any], sock: Socket, monitor_events: int, name: str) -> None:
        self.name = name
        self._context = context
        self.socket = sock
        self.monitor: Socket = sock.get_monitor_socket(monitor_events)
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self.monitor, zmq.POLLIN)
        self.bad_frames = 0  # frames dropped because they could not be read
        self.bad_frame_log = RateLimitedLog()  # one limiter for every line about a bad frame
        self._closed = False

    @property
    def context(self) -> zmq.Context[Any]:
        """The socket's context: another socket behind the same ZAP allow-list is made in it."""
        return self._context

    def register(self, fd: int) -> None:
        """Poll another file descriptor (a pipe, a process sentinel) in the same loop."""
        self._poller.register(fd, zmq.POLLIN)

    def unregister(self, fd: int) -> None:
        """Stop polling ``fd``."""
        self._poller.unregister(fd)

    def poll(self, timeout_ms: int) -> Events:
        """Wait up to ``timeout_ms`` for anything readable; the keys are the sockets and fds, in registration order."""
        return dict(self._poller.poll(timeout_ms))

    def _close_sockets(self, linger_ms: int) -> None:
        self.socket.disable_monitor()
        self.monitor.close(linger=0)
        self.socket.close(linger=linger_ms)

    def statistics(self) -> dict[str, int]:
        """Counts for monitoring and tests."""
        return {"bad_frames": self.bad_frames}


class RouterTransport(_Transport):
    """The scheduler's ROUTER socket, its ZAP allow-list (with ``keys``) and a monitor for closed connections.

    Raises ``InsecureBindError`` for a non-loopback ``address`` without keys unless ``insecure``.
    A peer's connection is known by the descriptor (``SRCFD``) its last frame came on; when the
    monitor reports that descriptor disconnected, ``closed_peers`` names the peer.
    """

    def __init__(
        self, address: str, keys: SchedulerKeys | None = None, insecure: bool = False, name: str = "scheduler"
    ) -> None:
        context: zmq.Context[Any] = zmq.Context()
        self._authenticator = AllowListAuthenticator(context, keys.allowed) if keys is not None else None
        events = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | HANDSHAKE_FAILED_EVENTS
        router: Socket | None = None
        try:
            router = bind_router(context, address, keys, insecure)
            super().__init__(context, router, events, name)
        except BaseException:  # the set-up failed: leave nothing open behind
            if router is not None:
                router.close(linger=0)
            if self._authenticator is not None:
                self._authenticator.stop()
            context.term()
            raise
        self._refused = RateLimitedLog()
        self._descriptors: dict[bytes, int] = {}  # peer -> descriptor of the connection it last spoke on
        self._peers_by_descriptor: dict[int, bytes] = {}

    def receive(self) -> Iterator[tuple[bytes, list[Message] | ProtocolError]]:
        """Read up to ``ROUTER_BURST`` ready frames: each peer's decoded messages, or why its frame is unreadable.

        Unreadable frames are logged here (rate-limited); a message of the wrong frame count is
        dropped without being yielded.
        """
        router = self.socket
        descriptors = self._descriptors
        for _ in range(ROUTER_BURST):
            try:
                head = router.recv(zmq.NOBLOCK, copy=False)
                rest = [router.recv(zmq.NOBLOCK)] if head.more else []
                # More parts: big payloads out of band (``protocol/buffers.py``). ``getsockopt``, not
                # the ``rcvmore`` attribute, whose lookup costs microseconds on every frame.
                if rest and router.getsockopt(zmq.RCVMORE):
                    rest += _receive_rest(router)
            except zmq.Again:
                return
            source = head.bytes
            descriptor = head.get(zmq.SRCFD)
            if descriptors.get(source) != descriptor:  # a new peer, or one that reconnected
                descriptors[source] = descriptor
                self._peers_by_descriptor[descriptor] = source
            if len(rest) != 1 and len(rest) < 3:  # neither one frame nor an envelope, a layout and buffers
                self.bad_frames += 1
                self.bad_frame_log.warning(
                    time.monotonic(),
                    "%s dropped a message of %d frames (expected 2, or 4 and more)",
                    self.name,
                    len(rest) + 1,
                )
                continue
            try:
                messages = decode(rest[0]) if len(rest) == 1 else decode_parts(rest)
            except ProtocolVersionError as error:
                self.bad_frames += 1
                self.bad_frame_log.warning(
                    time.monotonic(), "%s dropped a frame from %r: %s", self.name, source[:64], error
                )
                yield source, error
                continue
            except ProtocolError as error:
                self.bad_frames += 1
                self.bad_frame_log.warning(
                    time.monotonic(), "%s dropped a bad frame from %r: %s", self.name, source[:64], error
                )
                yield source, error
                continue
            yield source, messages

    def closed_peers(self) -> list[bytes]:
        """Read the monitor: the peers whose connection closed since the last call.

        Call it before ``receive`` in a turn, so a descriptor the OS reused for a new connection is
        not misread. Refused handshakes are logged (rate-limited) here.
        """
        closed: list[bytes] = []
        while True:
            try:
                event = _monitor_event(self.monitor)
            except zmq.Again:
                return closed
            kind, value = event["event"], event["value"]
            if kind & HANDSHAKE_FAILED_EVENTS:  # its value is an error code, not a descriptor
                refusal = describe_refused_handshake(kind, value)
                if refusal is not None:
                    self._refused.warning(time.monotonic(), "%s refused a connection: %s", self.name, refusal)
                else:
                    logger.debug("%s: a handshake failed (event %d, value %d)", self.name, kind, value)
                continue
            peer = self._peers_by_descriptor.pop(value, None)
            if peer is None or self._descriptors.get(peer) != value:
                continue
            del self._descriptors[peer]
            if kind == zmq.EVENT_DISCONNECTED:
                closed.append(peer)

    def send_batches(self, outgoing: dict[bytes, list[Message]]) -> None:
        """Send each peer its messages as one frame (more only past the frame limit); never blocks, never raises."""
        router = self.socket
        for peer, messages in outgoing.items():
            try:
                for parts in encode_parts(messages):
                    router.send(peer, zmq.NOBLOCK | zmq.SNDMORE)
                    _send_parts(router, parts)
            except zmq.ZMQError as error:  # a vanished peer: its messages are moot
                logger.debug("%s could not send to %r: %s", self.name, peer[:64], error)
            except ProtocolError as error:  # senders check sizes, so this is a bug; never stop serving
                logger.error("%s could not encode messages for %r: %s", self.name, peer[:64], error)

    def close(self) -> None:
        """Close the socket (waiting briefly for what is queued to leave), the allow-list and the context."""
        if self._closed:
            return
        self._closed = True
        self._close_sockets(linger_ms=500)
        if self._authenticator is not None:
            self._authenticator.stop()
            logger.info("%s's handshakes: %s", self.name, self._authenticator.statistics())
        self._context.term()

    def __enter__(self) -> RouterTransport:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class DealerTransport(_Transport):
    """A worker's or a client's DEALER connection to the scheduler, with a monitor of its handshakes.

    The monitor's events go to the shell (``monitor_events``), which feeds them to its
    ``HandshakeWatch``: a worker and a client react differently to a refusal.
    """

    def __init__(self, address: str, identity: bytes, keys: PeerKeys | None = None, name: str = "peer") -> None:
        context: zmq.Context[Any] = zmq.Context()
        dealer: Socket | None = None
        try:
            dealer = connect_dealer(context, address, identity, keys)
            super().__init__(context, dealer, HANDSHAKE_EVENTS, name)
        except BaseException:  # the set-up failed: leave nothing open behind
            if dealer is not None:
                dealer.close(linger=0)
            context.term()
            raise
        self.address = address

    def receive(self) -> Iterator[list[Message] | ProtocolError]:
        """Read up to ``DEALER_BURST`` ready frames: each one's decoded messages, or why it is unreadable."""
        dealer = self.socket
        for _ in range(DEALER_BURST):
            try:
                frame = dealer.recv(zmq.NOBLOCK)
                rest = _receive_rest(dealer) if dealer.getsockopt(zmq.RCVMORE) else None
            except zmq.Again:
                return
            try:
                messages = decode(frame) if rest is None else decode_parts([frame, *rest])
            except ProtocolError as error:
                self.bad_frames += 1
                yield error
                continue
            yield messages

    def monitor_events(self) -> Iterator[tuple[int, int]]:
        """The monitor's pending events, as ``(event, value)``."""
        while True:
            try:
                event = _monitor_event(self.monitor)
            except zmq.Again:
                return
            yield event["event"], event["value"]

    def send(self, messages: list[Message]) -> None:
        """Send the messages as one frame (more only past the frame limit); never blocks."""
        if not messages:
            return
        try:
            for parts in encode_parts(messages):
                _send_parts(self.socket, parts)
        except zmq.Again:  # libzmq ends the connection for good on a refused handshake; the monitor says why
            logger.debug("%s has no connection to send on; dropped %d messages", self.name, len(messages))

    def disconnect(self) -> None:
        """Stop reconnecting to the scheduler (after a refusal that will not change)."""
        with contextlib.suppress(zmq.ZMQError):
            self.socket.disconnect(self.address)

    def close(self, goodbye: Message | None = None, linger_ms: int = 500) -> None:
        """Send ``goodbye`` if given (and wait briefly for it to leave), then close the sockets and the context."""
        if self._closed:
            return
        self._closed = True
        if goodbye is not None:
            try:
                self.socket.send(encode_one(goodbye), zmq.NOBLOCK)
                time.sleep(_GOODBYE_SECONDS)  # let the goodbye leave before the socket closes
            except zmq.ZMQError:
                pass
        self._close_sockets(linger_ms)
        self._context.term()


def _receive_rest(sock: Socket) -> list[Any]:
    """The remaining parts of a message: small ones as ``bytes``, big ones as views of ZeroMQ's own buffers.

    A message's parts arrive together, so this never waits.
    """
    parts: list[Any] = []
    while True:
        frame = sock.recv(zmq.NOBLOCK, copy=False)
        parts.append(frame.buffer if len(frame) >= OUT_OF_BAND_BYTES else frame.bytes)
        if not frame.more:
            return parts


def _send_parts(sock: Socket, parts: list[Any]) -> None:
    """Send one message's parts; big ones without copying (ZeroMQ holds them until they are sent)."""
    last = len(parts) - 1
    for index, part in enumerate(parts):
        flags = zmq.NOBLOCK if index == last else zmq.NOBLOCK | zmq.SNDMORE
        sock.send(part, flags, copy=len(part) < OUT_OF_BAND_BYTES)


_MONITOR_EVENT = struct.Struct("=hi")  # a monitor message's first frame: 16-bit event, 32-bit value


def _monitor_event(monitor: zmq.Socket[Any]) -> dict[str, int]:
    """The next monitor event as ``{"event", "value"}`` (``zmq.Again`` if none).

    Not ``zmq.utils.monitor``: it imports ``zmq.asyncio`` and so asyncio, a tenth of a second of
    every scheduler's and worker's start-up on a busy machine.
    """
    frames = monitor.recv_multipart(zmq.NOBLOCK)
    event, value = _MONITOR_EVENT.unpack(frames[0][: _MONITOR_EVENT.size])
    return {"event": event, "value": value}


class Ticker:
    """A periodic timer for a poll loop: how long the poll may wait, and whether the timer is due."""

    __slots__ = ("interval", "next_at")

    def __init__(self, interval: float, first_at: float = 0.0) -> None:
        self.interval = interval
        self.next_at = first_at

    def wait_ms(self, now: float) -> int:
        """Milliseconds until the timer is due (0 if it is)."""
        return int(max(0.0, self.next_at - now) * 1000)

    def due(self, now: float) -> bool:
        """True if the timer is due; it then runs again ``interval`` seconds from ``now``."""
        if now >= self.next_at:
            self.next_at = now + self.interval
            return True
        return False


class Waker:
    """Lets other threads wake a poll loop: a non-blocking pipe, written once per pending wake-up.

    The loop polls ``fd`` and calls ``clear()`` before it takes what the other threads queued;
    a ``wake()`` after that writes a fresh byte, so no wake-up is lost. The pipe closes when the
    waker is garbage, not when the loop ends: a late ``wake()`` must never write to a reused descriptor.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self.fd = self._read
        self._pending = False
        weakref.finalize(self, _close_pipe, self._read, self._write)

    def wake(self, always: bool = False) -> None:
        """Wake the loop (any thread); unless ``always``, only if no wake-up is pending yet."""
        if always or not self._pending:
            self._pending = True
            with contextlib.suppress(BlockingIOError):  # the pipe is full: the loop is awake anyway
                os.write(self._write, b"x")

    def clear(self) -> None:
        """Empty the pipe, then mark no wake-up pending (the loop's thread, before taking its queue)."""
        try:
            while True:
                os.read(self._read, 4096)
        except BlockingIOError:
            pass
        self._pending = False


def _close_pipe(read_end: int, write_end: int) -> None:
    os.close(read_end)
    os.close(write_end)
