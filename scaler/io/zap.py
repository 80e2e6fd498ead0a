"""The scheduler's allow-list, enforced through ZeroMQ's authentication protocol (ZAP, RFC 27).

libzmq asks the handler bound at ``inproc://zeromq.zap.01`` of the socket's context about every
CURVE handshake, after the peer has proved it holds the secret key of the public key it shows.
``AllowListAuthenticator`` answers from a thread: 200 for a public key on the allow-list, 400
for anything else. A refused peer never completes its handshake, so none of its messages reaches
the scheduler's ROUTER, let alone ``SchedulerState``. Refusals are logged, rate-limited, with the
peer's address and key.

``zap_reply`` is the pure part (request frames in, reply frames out) and is unit-tested alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import zmq
from zmq.utils import z85

from scaler.io.security import ZAP_ENDPOINT, ZAP_SERVED
from scaler.utility.rate_limited_log import RateLimitedLog

logger = logging.getLogger(__name__)

_ZAP_VERSION = b"1.0"
_POLL_MS = 100


def zap_reply(request: list[bytes], allowed: Mapping[bytes, str]) -> tuple[list[bytes], str | None]:
    """Answer one ZAP request: (reply frames, why it was refused or None).

    A request is ``version, request id, domain, address, identity, mechanism, credentials...``;
    for CURVE the one credential is the peer's 32-byte public key.
    """
    request_id = request[1] if len(request) > 1 else b""
    if len(request) < 6 or request[0] != _ZAP_VERSION:
        return _reply(request_id, b"500", b"malformed ZAP request", b""), "a malformed ZAP request"
    address, mechanism, credentials = request[3], request[5], request[6:]
    peer = address.decode(errors="replace") or "?"
    if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
        why = f"a {mechanism.decode(errors='replace')[:16]} handshake from {peer}: only CURVE keys are accepted"
        return _reply(request_id, b"400", b"CURVE keys required", b""), why
    public_key = z85.encode(credentials[0])
    name = allowed.get(public_key)
    if name is None:
        why = f"public key {public_key.decode()} from {peer}: it is not on the allow-list"
        return _reply(request_id, b"400", b"key not allowed", b""), why
    return _reply(request_id, b"200", b"OK", name.encode()[:255]), None


def _reply(request_id: bytes, status: bytes, text: bytes, user_id: bytes) -> list[bytes]:
    return [_ZAP_VERSION, request_id, status, text, user_id, b""]


class AllowListAuthenticator:
    """Answers the ZAP requests of one zmq context from a thread until ``stop()``.

    Create it before binding the CURVE socket: without a ZAP handler libzmq would accept every
    key. Binding a second handler in the same context fails with ``zmq.ZMQError``.
    """

    def __init__(self, context: zmq.Context[Any], allowed: Mapping[bytes, str]) -> None:
        self._context = context
        self.allowed = dict(allowed)
        self.accepted = 0
        self.refused = 0
        self._refusals = RateLimitedLog()
        self._socket: zmq.Socket[Any] = context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        try:
            self._socket.bind(ZAP_ENDPOINT)
        except zmq.ZMQError:
            self._socket.close()
            raise
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scaler-zap", daemon=True)
        self._thread.start()
        ZAP_SERVED.add(context)

    def stop(self) -> None:
        """End the thread and close its socket (before the context is terminated)."""
        ZAP_SERVED.discard(self._context)
        self._stopping.set()
        self._thread.join()

    def statistics(self) -> dict[str, int]:
        """Handshakes accepted and refused so far, and the size of the allow-list."""
        return {"accepted": self.accepted, "refused": self.refused, "allowed_keys": len(self.allowed)}

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    if not self._socket.poll(_POLL_MS):
                        continue
                    request = self._socket.recv_multipart()
                except zmq.ZMQError as error:
                    if error.errno == zmq.ETERM:
                        return  # the context is closing: the scheduler is stopping
                    self._refusals.warning(
                        time.monotonic(), "scheduler: the allow-list thread could not read a handshake: %s", error
                    )
                    self._stopping.wait(0.01)  # no busy loop should the error persist
                    continue
                try:
                    reply, refused = zap_reply(request, self.allowed)
                except Exception:  # never leave a handshake hanging: answer, and keep serving
                    logger.exception("scheduler could not check a handshake")
                    request_id = request[1] if len(request) > 1 else b""
                    reply, refused = _reply(request_id, b"500", b"error", b""), "a handshake it failed to check"
                try:
                    self._socket.send_multipart(reply)
                except zmq.ZMQError as error:  # that peer's handshake then times out; the next ones go on
                    if error.errno == zmq.ETERM:
                        return
                    self._refusals.warning(
                        time.monotonic(), "scheduler: the allow-list thread could not answer a handshake: %s", error
                    )
                    continue
                if refused is None:
                    self.accepted += 1
                else:
                    self.refused += 1
                    self._refusals.warning(time.monotonic(), "scheduler refused %s", refused)
        finally:
            self._socket.close(linger=0)
