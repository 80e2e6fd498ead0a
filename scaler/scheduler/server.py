"""The scheduler process: a ``RouterTransport`` and a poll loop around ``SchedulerState``.

Each turn drains every frame that is ready (``transport.receive``), feeds each decoded message to
the state, then sends what the state produced as one frame per peer. Draining before sending is
what batches: a quiet scheduler answers each message at once, a busy one answers many with each
frame. Bad frames are logged (rate-limited) and dropped by the transport; no exception leaves the
loop.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable

from scaler.errors import ProtocolError, ProtocolVersionError
from scaler.io.security import SchedulerKeys, is_loopback
from scaler.io.transport import TICK_SECONDS, RouterTransport, Ticker
from scaler.protocol.messages import Message
from scaler.scheduler.state import Instruction, SchedulerConfig, SchedulerState, Send, Stop

logger = logging.getLogger(__name__)


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

    def stop(self, *_: object) -> None:
        """Ask the loop to finish (safe from a signal handler)."""
        self._stopping = True

    def _validate(self) -> None:
        self.validations += 1
        try:
            self.state.validate()
        except Exception as error:  # AssertionError or a named invariant error: record it either way
            text = f"{error}" or "an invariant does not hold"
            if len(self.invariant_failures) < 100:
                self.invariant_failures.append(text)
            logger.error("scheduler state invariant broken: %s", text)

    def run(self) -> None:
        """Serve until stopped by a signal, a client's accepted shutdown, or the parent's exit."""
        if threading.current_thread() is threading.main_thread():  # tests may run it on a thread
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        transport = RouterTransport(self.address, self.keys, self.insecure, name="scheduler")
        try:
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
            self._serve(transport)
        finally:
            transport.close()
            logger.info("scheduler stopped")

    def _serve(self, transport: RouterTransport) -> None:
        parent = os.getppid()
        ticker = Ticker(TICK_SECONDS, time.monotonic() + TICK_SECONDS)
        while not self._stopping:
            outgoing: dict[bytes, list[Message]] = {}
            events = transport.poll(ticker.wait_ms(time.monotonic()))
            closed: list[bytes] = []
            if transport.monitor in events:  # before the frames: a reused descriptor must not be misread
                closed = transport.closed_peers()
            if transport.socket in events:
                self._receive(transport, outgoing)
                self._safely(self.state.dispatch, outgoing)
            # After the frames: a worker's goodbye read in this same turn makes its leaving free
            # of charge; were the closed connection applied first, it would count as a death.
            for peer in closed:
                self._safely(functools.partial(self.state.worker_disconnected, peer), outgoing)
            now = time.monotonic()
            if ticker.due(now):
                self._safely(functools.partial(self.state.tick, now), outgoing)
                if self.exit_with_parent and os.getppid() != parent:
                    logger.warning("scheduler: its parent exited; stopping")
                    self._stopping = True
            transport.send_batches(outgoing)
            if self.check_invariants:
                self._validate()
        goodbyes: dict[bytes, list[Message]] = {}  # empty when a client's shutdown already said it
        self._safely(functools.partial(self.state.shutdown, "the scheduler was stopped"), goodbyes)
        transport.send_batches(goodbyes)

    def _receive(self, transport: RouterTransport, outgoing: dict[bytes, list[Message]]) -> None:
        handle = self.state.handle
        for source, messages in transport.receive():
            if isinstance(messages, ProtocolError):
                if isinstance(messages, ProtocolVersionError):
                    # An empty batch in our version: the peer's decoder then names both versions to its user.
                    outgoing.setdefault(source, [])
                else:
                    self._safely(functools.partial(self.state.unreadable_frame, source, str(messages)), outgoing)
                continue
            now = time.monotonic()
            for message in messages:
                try:
                    self._collect(handle(source, message, now, dispatch=False), outgoing)
                except Exception:  # a bug must not take the whole cluster down
                    logger.exception("scheduler failed to handle %s from %r", type(message).__name__, source[:64])

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
