"""Small zmq helpers shared by the scheduler, worker and client shells.

They only create sockets with scaler's options and move frames; no protocol logic lives here.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

import zmq

from scaler.io.security import ZAP_SERVED, PeerKeys, SchedulerKeys, check_bind, require_libzmq
from scaler.protocol.codec import DEFAULT_MAX_FRAME_BYTES

logger = logging.getLogger(__name__)

Socket = zmq.Socket[Any]
Context = zmq.Context[Any]

_SCHEMES = ("tcp://", "ipc://", "inproc://")
RECONNECT_MAX_MS = 50  # a down scheduler sees about 18 connection attempts a second from each peer


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


def make_identity(kind: str, name: str = "") -> bytes:
    """A unique socket identity naming the peer's kind, name (default: its host) and pid, for readable logs."""
    return f"{kind}|{name or socket.gethostname()}|{os.getpid()}|{uuid.uuid4().hex[:8]}".encode()


def _apply_options(sock: Socket) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, DEFAULT_MAX_FRAME_BYTES)
    sock.setsockopt(zmq.SNDHWM, 0)  # sends never block: batching keeps frame counts low
    sock.setsockopt(zmq.RCVHWM, 0)


def connect_dealer(context: Context, address: str, identity: bytes, keys: PeerKeys | None = None) -> Socket:
    """A DEALER socket connected to the scheduler; a CURVE client of it when ``keys`` are given."""
    require_libzmq()
    sock: Socket = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity)
    _apply_options(sock)
    # Retry a refused connection after 10 ms, doubling up to RECONNECT_MAX_MS (libzmq adds up to
    # 10 ms of jitter): a peer started beside its scheduler (Client(), a combo's workers) gets in
    # within a few ms of the bind, where libzmq's default waits 100-200 ms between tries.
    sock.setsockopt(zmq.RECONNECT_IVL, 10)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_MAX_MS)
    if keys is not None:
        keys.configure(sock)
    sock.connect(validate_address(address))
    return sock


def bind_router(context: Context, address: str, keys: SchedulerKeys | None = None, insecure: bool = False) -> Socket:
    """The scheduler's ROUTER socket; a CURVE server when ``keys`` are given.

    Raises ``InsecureBindError`` for a non-loopback address without keys unless ``insecure``.
    With keys, an ``AllowListAuthenticator`` (``zap.py``) must already serve ``context``.
    """
    require_libzmq()
    validate_address(address)
    check_bind(address, keys, insecure)
    if keys is not None and context not in ZAP_SERVED:  # libzmq would let every key in
        raise RuntimeError("a CURVE ROUTER needs an AllowListAuthenticator on its context first (scaler/io/zap.py)")
    sock: Socket = context.socket(zmq.ROUTER)
    _apply_options(sock)
    # A deep accept queue: a flood of connections that never handshake must not make a hundred
    # machines' workers wait on TCP retries to get in (libzmq's default backlog is 100).
    sock.setsockopt(zmq.BACKLOG, 4096)
    if keys is not None:
        keys.configure(sock)
    try:
        sock.bind(address)
    except zmq.ZMQError:
        sock.close(linger=0)
        raise
    return sock
