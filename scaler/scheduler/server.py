"""The scheduler process: a ``RouterTransport`` and a poll loop around ``SchedulerState``.

Each turn drains every frame that is ready (``transport.receive``), feeds each decoded message to
the state, then sends what the state produced as one frame per peer. Draining before sending is
what batches: a quiet scheduler answers each message at once, a busy one answers many with each
frame. Bad frames are logged (rate-limited) and dropped by the transport; no exception leaves the
loop.

The status feed (``publisher.py``, ``status.py``): at each tick the shell reads the monitor
socket's subscriptions and tells the core whether to record events; every status interval it
publishes a snapshot (if anyone listens). The core collects events turn by turn; the shell
publishes what was collected at the end of a turn, at most every ``EVENTS_FLUSH_SECONDS``. A
quiet scheduler so sends one ``StatusEvents`` per turn that had events, and a busy one, whose
turns come thousands of times a second with a few tasks each, one per 50 ms: a message per turn
would then cost the scheduler (and each subscriber) a send and a wake-up for every few tasks.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable

import psutil
import zmq

from scaler.errors import ProtocolError, ProtocolVersionError
from scaler.io.security import SchedulerKeys, is_loopback
from scaler.io.transport import TICK_SECONDS, RouterTransport, Ticker
from scaler.protocol.codec import encode_one
from scaler.protocol.messages import Message
from scaler.scheduler.publisher import MonitorBindError, StatusPublisher, resolve_monitor_address
from scaler.scheduler.state import Instruction, SchedulerConfig, SchedulerState, Send, Stop
from scaler.scheduler.status import ShellFigures

logger = logging.getLogger(__name__)

EVENTS_FLUSH_SECONDS = 0.05  # the status feed's events leave at most this often (see the module docstring)


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
        config = self.state.config
        self.monitor_address = resolve_monitor_address(address, config.monitor_address)
        self._monitor_address_given = config.monitor_address not in (None, "none")
        self._publisher: StatusPublisher | None = None
        self._messages_in = 0
        self._messages_out = 0

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
            self._open_feed(transport)
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
            if self._publisher is not None:
                self._publisher.close()
            transport.close()
            logger.info("scheduler stopped")

    def _open_feed(self, transport: RouterTransport) -> None:
        """Bind the status feed; a default address that is taken only costs the feed, a given one is an error."""
        if self.monitor_address is None:
            logger.info("scheduler: no status feed")
            return
        try:
            self._publisher = StatusPublisher(transport.context, self.monitor_address, self.keys)
        except zmq.ZMQError as error:
            if self._monitor_address_given:
                raise MonitorBindError(
                    f"cannot publish the status feed on {self.monitor_address}: {error}; pick another "
                    f"--monitor-address, or 'none' to run without the feed"
                ) from None
            logger.warning(
                "scheduler: no status feed: cannot bind %s (%s); pick one with --monitor-address",
                self.monitor_address,
                error,
            )
            return
        logger.info("scheduler publishes its status feed on %s", self.monitor_address)

    def _serve(self, transport: RouterTransport) -> None:
        parent = os.getppid()
        ticker = Ticker(TICK_SECONDS, time.monotonic() + TICK_SECONDS)
        started = time.monotonic()
        status_ticker = Ticker(self.state.config.status_interval_seconds, started)
        process = psutil.Process()
        process.cpu_percent()  # the first call starts the measurement
        rates_since = (started, 0, 0)
        state = self.state
        publisher = self._publisher
        events_due = started
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
                if status_ticker.due(now):
                    rates_since = self._sample(process, started, rates_since, now)
                    if publisher is not None and publisher.subscribed():
                        self._publish_snapshot(publisher, now)
                if publisher is not None and publisher.subscribed() != state.recording_events:
                    state.record_events(not state.recording_events)
            if state.recording_events and now >= events_due and publisher is not None:
                turn_events = state.take_events(now, time.time())
                if turn_events is not None:
                    publisher.publish(encode_one(turn_events))
                    events_due = now + EVENTS_FLUSH_SECONDS
            if outgoing:
                self._messages_out += sum(map(len, outgoing.values()))
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
            self._messages_in += len(messages)
            for message in messages:
                try:
                    self._collect(handle(source, message, now, dispatch=False), outgoing)
                except Exception:  # a bug must not take the whole cluster down
                    logger.exception("scheduler failed to handle %s from %r", type(message).__name__, source[:64])

    def _publish_snapshot(self, publisher: StatusPublisher, now: float) -> None:
        try:
            frame = encode_one(self.state.status(now))
        except Exception:  # a bug in the feed must not take the whole cluster down
            logger.exception("scheduler could not make its status snapshot")
            return
        publisher.publish(frame)

    def _sample(
        self, process: psutil.Process, started: float, since: tuple[float, int, int], now: float
    ) -> tuple[float, int, int]:
        """Give the core this process's figures for its snapshots; return the new start of the rate window."""
        then, messages_in, messages_out = since
        elapsed = max(now - then, 1e-9)
        try:
            cpu, rss = process.cpu_percent(), process.memory_info().rss
        except psutil.Error:  # never let a figure stop the scheduler
            cpu, rss = 0.0, 0
        self.state.set_shell_figures(
            ShellFigures(
                uptime_seconds=now - started,
                cpu_percent=cpu,
                rss_bytes=rss,
                messages_in_per_second=(self._messages_in - messages_in) / elapsed,
                messages_out_per_second=(self._messages_out - messages_out) / elapsed,
                feed_dropped=self._publisher.dropped if self._publisher is not None else 0,
                wall_offset=time.time() - now,
            )
        )
        return now, self._messages_in, self._messages_out

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
