"""Small zmq helpers shared by the scheduler, worker and client shells.

They only create sockets with scaler's options and move frames; no protocol logic lives here.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any

import zmq

from scaler.protocol.codec import DEFAULT_MAX_FRAME_BYTES

logger = logging.getLogger(__name__)

Socket = zmq.Socket[Any]
Context = zmq.Context[Any]

_SCHEMES = ("tcp://", "ipc://", "inproc://")


def validate_address(address: str) -> str:
    """Return ``address`` if zmq can use it, else raise ``ValueError`` saying what to write."""
    if not isinstance(address, str) or not address.startswith(_SCHEMES):
        raise ValueError(f"invalid scheduler address {address!r}: write it like tcp://127.0.0.1:8516 or ipc:///tmp/s")
    if address.startswith("tcp://"):
        host, _, port = address[len("tcp://") :].rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"invalid scheduler address {address!r}: a tcp address needs a host and a port")
    return address


def free_tcp_address(host: str = "127.0.0.1") -> str:
    """Pick a currently free TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    return f"tcp://{host}:{port}"


def make_identity(kind: str) -> bytes:
    """A unique socket identity naming the peer's kind, host and pid, for readable logs."""
    return f"{kind}|{socket.gethostname()}|{os.getpid()}|{uuid.uuid4().hex[:8]}".encode()


def _apply_options(sock: Socket) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, DEFAULT_MAX_FRAME_BYTES)
    sock.setsockopt(zmq.SNDHWM, 0)  # sends never block: batching keeps frame counts low
    sock.setsockopt(zmq.RCVHWM, 0)


def connect_dealer(context: Context, address: str, identity: bytes) -> Socket:
    """A DEALER socket connected to the scheduler."""
    sock: Socket = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity)
    _apply_options(sock)
    sock.connect(validate_address(address))
    return sock


def bind_router(context: Context, address: str) -> Socket:
    """The scheduler's ROUTER socket."""
    sock: Socket = context.socket(zmq.ROUTER)
    _apply_options(sock)
    sock.bind(validate_address(address))
    return sock


class RateLimitedLog:
    """Logs at most one line per ``interval`` seconds, counting what it held back."""

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self._last = float("-inf")
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        """Log a warning unless one was logged less than ``interval`` seconds ago."""
        now = time.monotonic()
        if now - self._last < self.interval:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" ({self._suppressed} similar messages suppressed)"
        self._last, self._suppressed = now, 0
        logger.warning(message, *args)
