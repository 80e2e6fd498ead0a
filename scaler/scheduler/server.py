"""The scheduler process: a ROUTER socket and a poll loop around ``SchedulerState``.

The loop drains every frame that is ready, feeds each decoded message to the state, then sends
what the state produced as one frame per peer. Draining before sending is what batches: a
quiet scheduler answers each message at once, a busy one answers many with each frame. Bad
frames are logged (rate-limited) and dropped; no exception leaves the loop.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable

import zmq
from zmq.utils.monitor import recv_monitor_message

from scaler.errors import ProtocolError, ProtocolVersionError
from scaler.io.security import HANDSHAKE_FAILED_EVENTS, SchedulerKeys, describe_refused_handshake, is_loopback
from scaler.io.sockets import Socket, bind_router
from scaler.io.zap import AllowListAuthenticator
from scaler.protocol.codec import decode, encode_frames
from scaler.protocol.messages import Message
from scaler.scheduler.state import Instruction, SchedulerConfig, SchedulerState, Send, Stop
from scaler.utility.rate_limited_log import RateLimitedLog

logger = logging.getLogger(__name__)

_TICK_SECONDS = 0.1
_MAX_FRAMES_PER_TURN = 4096


class SchedulerServer:
    """Binds ``address`` and serves clients and workers until stopped.

    With ``keys``, only clients and workers whose public keys are on the allow-list get in, and
    all traffic is encrypted. Without keys, a non-loopback ``address`` is refused unless
    ``insecure`` (``InsecureBindError``).
    """

    def __init__(
        self,
        address: str,
        config: SchedulerConfig | None = None,
        exit_with_parent: bool = False,
        keys: SchedulerKeys | None = None,
        insecure: bool = False,
        check_invariants: bool = False,
    ) -> None:
        self.address = address
        # For fault tests: validate the whole state after every loop turn and record what broke.
        self.check_invariants = check_invariants
        self.invariant_failures: list[str] = []
        self.validations = 0
        self.keys = keys
        self.insecure = insecure
        self.state = SchedulerState(config)
        self.exit_with_parent = exit_with_parent
        self._stopping = False
        self._bad_frames = RateLimitedLog()
        self._refused = RateLimitedLog()
        self._descriptors: dict[bytes, int] = {}  # peer -> descriptor of the connection it last spoke on
        self._peers_by_descriptor: dict[int, bytes] = {}

    def stop(self, *_: object) -> None:
        """Ask the loop to finish (safe from a signal handler)."""
        self._stopping = True

    def _validate(self) -> None:
        self.validations += 1
        try:
            self.state.validate()
        except AssertionError as error:
            text = f"{error}" or "an invariant does not hold"
            if len(self.invariant_failures) < 100:
                self.invariant_failures.append(text)
            logger.error("scheduler state invariant broken: %s", text)

    def run(self) -> None:
        """Serve until stopped by a signal, a client's accepted shutdown, or the parent's exit."""
        if threading.current_thread() is threading.main_thread():  # tests may run it on a thread
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        context = zmq.Context()
        authenticator = AllowListAuthenticator(context, self.keys.allowed) if self.keys is not None else None
        try:
            router = bind_router(context, self.address, self.keys, self.insecure)
        except BaseException:
            if authenticator is not None:
                authenticator.stop()
            context.term()
            raise
        monitor = router.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | HANDSHAKE_FAILED_EVENTS)
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        parent = os.getppid()
        logger.info(
            "scheduler serving %s (protected=%s, %s)",
            self.address,
            self.state.config.protected,
            f"CURVE keys, {len(self.keys.allowed)} allowed" if self.keys else "no keys",
        )
        if self.keys is None and not is_loopback(self.address):
            logger.warning(
                "scheduler serves %s without keys (--insecure): whoever reaches it can run code", self.address
            )
        next_tick = time.monotonic() + _TICK_SECONDS
        try:
            while not self._stopping:
                timeout_ms = int(max(0.0, next_tick - time.monotonic()) * 1000)
                outgoing: dict[bytes, list[Message]] = {}
                events = dict(poller.poll(timeout_ms))
                closed: list[bytes] = []
                if monitor in events:  # before the router: a reused descriptor must not be misread
                    closed = self._on_connection_events(monitor)
                if router in events:
                    self._receive(router, outgoing)
                    self._safely(self.state.dispatch, outgoing)
                # After the frames: a worker's goodbye read in this same turn makes its leaving free
                # of charge; were the closed connection applied first, it would count as a death.
                for peer in closed:
                    self._safely(functools.partial(self.state.worker_disconnected, peer), outgoing)
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + _TICK_SECONDS
                    self._safely(functools.partial(self.state.tick, now), outgoing)
                    if self.exit_with_parent and os.getppid() != parent:
                        logger.warning("scheduler: its parent exited; stopping")
                        self._stopping = True
                self._flush(router, outgoing)
                if self.check_invariants:
                    self._validate()
            goodbyes: dict[bytes, list[Message]] = {}  # empty when a client's shutdown already said it
            self._safely(functools.partial(self.state.shutdown, "the scheduler was stopped"), goodbyes)
            self._flush(router, goodbyes)
        finally:
            router.disable_monitor()
            monitor.close(linger=0)
            router.close(linger=500)
            if authenticator is not None:
                authenticator.stop()
                logger.info("scheduler's handshakes: %s", authenticator.statistics())
            context.term()
            logger.info("scheduler stopped")

    def _receive(self, router: Socket, outgoing: dict[bytes, list[Message]]) -> None:
        for _ in range(_MAX_FRAMES_PER_TURN):
            try:
                head = router.recv(zmq.NOBLOCK, copy=False)
                rest = router.recv_multipart(zmq.NOBLOCK) if head.more else []
            except zmq.Again:
                return
            source = head.bytes
            self._note_connection(source, head.get(zmq.SRCFD))
            if len(rest) != 1:
                self._bad_frames.warning(
                    time.monotonic(), "scheduler dropped a message of %d frames (expected 2)", len(rest) + 1
                )
                continue
            frame = rest[0]
            try:
                messages = decode(frame)
            except ProtocolVersionError as error:
                self._bad_frames.warning(time.monotonic(), "scheduler dropped a frame from %r: %s", source[:64], error)
                # An empty batch in our version: the peer's decoder then names both versions to its user.
                outgoing.setdefault(source, [])
                continue
            except ProtocolError as error:
                self._bad_frames.warning(
                    time.monotonic(), "scheduler dropped a bad frame from %r: %s", source[:64], error
                )
                self._safely(functools.partial(self.state.unreadable_frame, source, str(error)), outgoing)
                continue
            now = time.monotonic()
            for message in messages:
                try:
                    self._collect(self.state.handle(source, message, now, dispatch=False), outgoing)
                except Exception:  # a bug must not take the whole cluster down
                    logger.exception("scheduler failed to handle %s from %r", type(message).__name__, source[:64])

    def _note_connection(self, peer: bytes, descriptor: int) -> None:
        """Remember which TCP connection a peer speaks on, to notice when it closes."""
        if self._descriptors.get(peer) != descriptor:
            self._descriptors[peer] = descriptor
            self._peers_by_descriptor[descriptor] = peer

    def _on_connection_events(self, monitor: Socket) -> list[bytes]:
        """The peers whose connection closed: a worker's means it died (SIGKILL closes its sockets).

        Clients are not dropped this way: a client's DEALER reconnects after a network blip, and
        its tasks should survive that; silence past client_timeout_seconds still removes it.
        """
        closed: list[bytes] = []
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return closed
            if event["event"] & HANDSHAKE_FAILED_EVENTS:  # its value is an error code, not a descriptor
                refusal = describe_refused_handshake(event["event"], event["value"])
                if refusal is not None:
                    self._refused.warning(time.monotonic(), "scheduler refused a connection: %s", refusal)
                else:
                    logger.debug("scheduler: a handshake failed (event %d, value %d)", event["event"], event["value"])
                continue
            descriptor = event["value"]
            peer = self._peers_by_descriptor.pop(descriptor, None)
            if peer is None or self._descriptors.get(peer) != descriptor:
                continue
            del self._descriptors[peer]
            if event["event"] == zmq.EVENT_DISCONNECTED:
                closed.append(peer)

    def _safely(self, step: Callable[[], Iterable[Instruction]], outgoing: dict[bytes, list[Message]]) -> None:
        try:
            self._collect(step(), outgoing)
        except Exception:  # a bug must not take the whole cluster down
            logger.exception("scheduler step failed")

    def _collect(self, instructions: Iterable[Instruction], outgoing: dict[bytes, list[Message]]) -> None:
        for instruction in instructions:
            if isinstance(instruction, Send):
                outgoing.setdefault(instruction.to, []).append(instruction.message)
            elif isinstance(instruction, Stop):
                logger.info("scheduler stopping: %s", instruction.reason)
                self._stopping = True

    def _flush(self, router: Socket, outgoing: dict[bytes, list[Message]]) -> None:
        for peer, messages in outgoing.items():
            try:
                for frame in encode_frames(messages):
                    router.send_multipart([peer, frame], zmq.NOBLOCK)
            except zmq.ZMQError as error:  # a vanished peer: its messages are moot
                logger.debug("scheduler could not send to %r: %s", peer[:64], error)
            except ProtocolError as error:  # senders check sizes, so this is a bug; never stop serving
                logger.error("scheduler could not encode messages for %r: %s", peer[:64], error)
