"""A subscriber to a scheduler's status feed: what ``scaler_top`` and ``scaler_ui`` read.

The scheduler publishes ``StatusSnapshot`` (every status interval) and ``StatusEvents`` (each loop
turn that had any) on its monitor address, a ZeroMQ PUB socket. ``StatusFeed`` connects a SUB
socket to it (a CURVE client with the ``monitor`` key pair when the scheduler has keys) and hands
back the decoded messages. ZeroMQ reconnects by itself when the scheduler comes back; ``silent_for``
tells a reader how long the feed has been quiet, so it can say that the scheduler is gone.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq

from scaler.errors import ProtocolError
from scaler.io.security import PeerKeys, require_libzmq
from scaler.io.sockets import validate_address
from scaler.protocol.codec import DEFAULT_MAX_FRAME_BYTES, decode
from scaler.protocol.messages import StatusEvents, StatusSnapshot
from scaler.utility.rate_limited_log import RateLimitedLog

logger = logging.getLogger(__name__)

StatusMessage = StatusSnapshot | StatusEvents


def monitor_address_for(scheduler_address: str) -> str:
    """The default monitor address of a scheduler at ``scheduler_address``: its port + 2, as in Scaler."""
    validate_address(scheduler_address)
    if not scheduler_address.startswith("tcp://"):
        raise ValueError(
            f"the scheduler address {scheduler_address!r} has no port to add 2 to: give the monitor address itself"
        )
    host, _, port = scheduler_address.rpartition(":")
    return f"{host}:{int(port) + 2}"


def readable_id(peer_id: bytes) -> str:
    """A worker's, client's or scheduler's id as text (ids are ``kind|name|pid|suffix``), or hex if it is not text."""
    try:
        text = peer_id.decode()
    except UnicodeDecodeError:
        return peer_id.hex()
    return text if text.isprintable() else peer_id.hex()


class StatusFeed:
    """Reads a scheduler's status feed; see the module docstring.

    ``keys`` are the ``monitor`` role's keys (``PeerKeys.load("monitor", keys_dir=...)``) for a
    scheduler with keys. Call ``close()`` when done, or use it as a context manager.
    """

    def __init__(self, monitor_address: str, keys: PeerKeys | None = None, context: zmq.Context[Any] | None = None):
        require_libzmq()
        self.address = validate_address(monitor_address)
        self._own_context = context is None
        self._context: zmq.Context[Any] = context if context is not None else zmq.Context()
        self._socket: zmq.Socket[Any] = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, DEFAULT_MAX_FRAME_BYTES)
        self._socket.setsockopt(zmq.RCVHWM, 10_000)
        if keys is not None:
            keys.configure(self._socket)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.connect(self.address)
        self._last_heard = time.monotonic()
        self._heard_any = False
        self._bad = RateLimitedLog(interval=10.0, logger=logger, burst=1)

    @property
    def heard_any(self) -> bool:
        """True once any message arrived."""
        return self._heard_any

    def silent_for(self, now: float | None = None) -> float:
        """Seconds since the last message (or since the feed was opened)."""
        return (time.monotonic() if now is None else now) - self._last_heard

    def receive(self, timeout_seconds: float) -> list[StatusMessage]:
        """Wait up to ``timeout_seconds`` for messages; return every one that arrived (maybe none).

        A frame that cannot be decoded (another build's protocol, say) is logged and skipped.
        """
        messages: list[StatusMessage] = []
        if not self._socket.poll(max(0, int(timeout_seconds * 1000))):
            return messages
        while True:
            try:
                frame = self._socket.recv(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                break
            self._last_heard = time.monotonic()
            self._heard_any = True
            try:
                decoded = decode(frame)
            except ProtocolError as error:
                self._bad.warning(time.monotonic(), "status feed %s: unreadable frame skipped: %s", self.address, error)
                continue
            messages.extend(m for m in decoded if isinstance(m, (StatusSnapshot, StatusEvents)))
        return messages

    def close(self) -> None:
        """Close the socket (and the context, if the feed made it)."""
        self._socket.close(linger=0)
        if self._own_context:
            self._context.term()

    def __enter__(self) -> StatusFeed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
