"""The worker agent process: a thin shell that moves bytes for ``WorkerState``.

It owns the DEALER socket to the scheduler and a pipe to each of its processor subprocesses,
and runs one poll loop: scheduler frames, processor pipes, processor exits and processor starts
are events for the state, and the state's instructions are carried out at the top of the next
turn (everything for the scheduler leaves as one frame). Usually one processor runs tasks; more
exist only while tasks are parked waiting on other tasks (see ``state.py``). Heartbeats keep
flowing while a task holds the CPU, because processors are separate processes. Processors are
forked from a pre-imported fork server, so a new one after a cancel, a crash or a block takes
milliseconds rather than a fresh interpreter's start-up. Killed processors are reaped without
blocking the loop. Task output arrives coalesced and within each processor's budget, and the
state drops what is over the worker's (``OutputLimits``), so it cannot crowd out results and
heartbeats.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import psutil
import zmq
from zmq.utils.monitor import recv_monitor_message

from scaler.config.worker import WorkerConfig
from scaler.errors import ProtocolError, ProtocolVersionError
from scaler.io.output_limits import DEFAULT_OUTPUT_LIMITS, OutputLimits
from scaler.io.security import HANDSHAKE_EVENTS, NO_DETAIL_LIMIT, HandshakeWatch, PeerKeys
from scaler.io.sockets import Socket, connect_dealer, make_identity
from scaler.protocol.codec import decode, encode_frames, encode_one
from scaler.protocol.messages import (
    BalanceRequest,
    DisconnectRequest,
    DisconnectResponse,
    Message,
    ObjectInstruction,
    ProcessorBlocked,
    SchedulerShutdown,
    Task,
    TaskCancel,
    TaskLog,
    TaskResult,
    WorkerHeartbeatEcho,
)
from scaler.utility.rate_limited_log import RateLimitedLog
from scaler.worker.processor import run_processor
from scaler.worker.state import (
    DEFAULT_MAX_IDLE_PROCESSORS,
    ExitWorker,
    KillProcessor,
    RunTask,
    SendToProcessor,
    SendToScheduler,
    StartProcessor,
    WorkerInstruction,
    WorkerState,
)

logger = logging.getLogger(__name__)

_TICK_SECONDS = 0.1

_Handlers = dict[type[Message], Callable[[Any, float], list[WorkerInstruction]]]


def _process_context() -> Any:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["scaler.worker.processor"])
        return context
    return multiprocessing.get_context("spawn")


class _Processor:
    """One processor subprocess and the agent's end of its pipe."""

    def __init__(
        self,
        context: Any,
        processor_id: int,
        scheduler_address: str,
        key_files: tuple[str, str] | None = None,
        output_limits: OutputLimits = DEFAULT_OUTPUT_LIMITS,
    ) -> None:
        agent_end, processor_end = multiprocessing.Pipe(duplex=True)
        self.processor_id = processor_id
        self.connection: Connection = agent_end
        self.process: BaseProcess = context.Process(
            target=run_processor,
            args=(processor_end, os.getpid(), scheduler_address, key_files, output_limits),
            name=f"scaler-processor-{processor_id}",
            daemon=True,
        )
        self.process.start()
        processor_end.close()
        self.fd = agent_end.fileno()
        self.sentinel = self.process.sentinel

    def kill(self) -> None:
        """SIGKILL it: it runs no further user code once this returns. Reaping is left to ``reaped``."""
        self.connection.close()
        if self.process.is_alive():
            self.process.kill()

    def reaped(self) -> bool:
        """True once its exit has been collected (never blocks); frees its process handle then."""
        if self.process.is_alive():
            return False
        self.process.close()
        return True

    def reap(self, timeout: float = 5.0) -> None:
        self.process.join(timeout=timeout)


class _ProcessorStarter:
    """Starts processors on a helper thread so the agent keeps answering while one boots.

    The first start also boots the fork server (a second or so on a busy machine); later ones
    fork from it in milliseconds. ``fd`` becomes readable when a started processor is ready.
    Starts run one after another, in the order asked.
    """

    def __init__(
        self,
        scheduler_address: str,
        key_files: tuple[str, str] | None = None,
        output_limits: OutputLimits = DEFAULT_OUTPUT_LIMITS,
    ) -> None:
        self._context = _process_context()
        self._scheduler_address = scheduler_address
        self._key_files = key_files
        self._output_limits = output_limits
        self._read, self._write = os.pipe()
        self.fd = self._read
        self._thread: threading.Thread | None = None
        self._waiting: collections.deque[int] = collections.deque()
        self._started: _Processor | None = None
        self._error: BaseException | None = None

    def start(self, processor_id: int) -> None:
        """Start a processor under this id (after any start already on its way)."""
        self._waiting.append(processor_id)
        self._next()

    def _next(self) -> None:
        if self._thread is None and self._waiting:
            processor_id = self._waiting.popleft()
            self._thread = threading.Thread(
                target=self._run, args=(processor_id,), name="processor-starter", daemon=True
            )
            self._thread.start()

    def _run(self, processor_id: int) -> None:
        try:
            self._started = _Processor(
                self._context, processor_id, self._scheduler_address, self._key_files, self._output_limits
            )
        except BaseException as error:  # noqa: BLE001 - reported to the agent's loop
            self._error = error
        os.write(self._write, b"x")

    def take(self) -> _Processor:
        """Collect the started processor (call when ``fd`` is readable)."""
        os.read(self._read, 1)
        assert self._thread is not None
        self._thread.join()
        self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"could not start a processor: {error}") from error
        started, self._started = self._started, None
        assert started is not None
        self._next()
        return started

    def close(self) -> None:
        """Wait for a start in progress and kill what it started."""
        self._waiting.clear()
        if self._thread is not None:
            self._thread.join()
            if self._started is not None:
                self._started.kill()
                self._started.reap()
        os.close(self._read)
        os.close(self._write)


class _ResourceSampler:
    """CPU and memory of the agent, read at most once per heartbeat: psutil reads /proc, which is slow."""

    def __init__(self, interval: float) -> None:
        self._process = psutil.Process()
        self._interval = interval
        self._next = 0.0
        self._last = (0.0, 0)

    def sample(self, now: float) -> tuple[float, int]:
        if now >= self._next:
            self._next = now + self._interval
            self._last = (self._process.cpu_percent(), self._process.memory_info().rss)
        return self._last


class WorkerAgent:
    """Connects to a scheduler and serves tasks until told to stop or the scheduler vanishes."""

    def __init__(
        self,
        address: str,
        heartbeat_interval_seconds: float = WorkerConfig.heartbeat_interval_seconds,
        death_timeout_seconds: float = WorkerConfig.death_timeout_seconds,
        task_timeout_seconds: float = WorkerConfig.task_timeout_seconds,
        exit_with_parent: bool = False,
        capabilities: dict[str, int] | None = None,
        max_idle_processors: int = DEFAULT_MAX_IDLE_PROCESSORS,
        keys: PeerKeys | None = None,
        grace_period_seconds: float = WorkerConfig.grace_period_seconds,
        name: str = "",
        output_limits: OutputLimits = DEFAULT_OUTPUT_LIMITS,
    ) -> None:
        self.address = address
        self.output_limits = output_limits  # how much streamed task output its processors and it pass on
        self.grace_period_seconds = grace_period_seconds
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.death_timeout_seconds = death_timeout_seconds
        self.task_timeout_seconds = task_timeout_seconds
        self.exit_with_parent = exit_with_parent
        self.capabilities = dict(capabilities or {})
        self.max_idle_processors = max_idle_processors
        self.identity = make_identity("worker", name)
        self.keys = keys
        self.refused: str | None = None  # why the scheduler refused this worker's keys, once it has
        self._stopping = False
        self._drain_asked = False
        self._bad_frames = RateLimitedLog()
        self._processors: dict[int, _Processor] = {}
        self._by_fd: dict[int, _Processor] = {}  # pipe fd and exit sentinel -> processor
        self._dying: list[_Processor] = []  # killed, not yet reaped

    def stop(self, *_: object) -> None:
        """Ask the loop to finish now (safe from a signal handler)."""
        self._stopping = True

    def drain(self, *_: object) -> None:
        """Ask for a graceful stop; asked twice, stop now (safe from a signal handler).

        Draining hands the queued tasks back to the scheduler and lets the running ones finish
        within ``grace_period_seconds``; so SIGTERM, as sent by systemd or Kubernetes, loses no work.
        """
        if self._drain_asked or self.grace_period_seconds <= 0:
            self._stopping = True
        self._drain_asked = True

    def run(self) -> None:
        """Serve until stopped; always leaves no processor behind."""
        signal.signal(signal.SIGTERM, self.drain)
        signal.signal(signal.SIGINT, self.drain)
        context = zmq.Context()
        sock = connect_dealer(context, self.address, self.identity, self.keys)
        monitor = sock.get_monitor_socket(HANDSHAKE_EVENTS)
        handshakes = HandshakeWatch(self.address, self.keys, "worker", cut_short_is_final=False)
        key_files = None if self.keys is None else (self.keys.key_file, self.keys.scheduler_key_file)
        self._starter = _ProcessorStarter(self.address, key_files, self.output_limits)
        state = WorkerState(
            time.monotonic(),
            self.heartbeat_interval_seconds,
            self.death_timeout_seconds,
            self.task_timeout_seconds,
            capabilities=self.capabilities,
            max_idle_processors=self.max_idle_processors,
            output_limits=self.output_limits,
        )
        handlers = self._scheduler_handlers(state)
        usage = _ResourceSampler(self.heartbeat_interval_seconds)
        parent = os.getppid()
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(monitor, zmq.POLLIN)
        self._poller.register(self._starter.fd, zmq.POLLIN)
        logger.info("worker %s serving %s", self.identity.decode(), self.address)
        try:
            now = time.monotonic()
            pending = state.start(now) + state.tick(now)
            # Carry out the last turn's instructions before checking for a stop: results read in
            # that turn must reach the scheduler, or their tasks would run again elsewhere.
            while self._execute(pending, sock) and not self._stopping:
                events = self._poller.poll(int(_TICK_SECONDS * 1000))
                now = time.monotonic()
                pending = []
                for key, _ in events:
                    if key is sock:
                        pending += self._receive(sock, handlers, state, now)
                    elif key is monitor:
                        pending += self._on_handshakes(monitor, handshakes)
                    elif key == self._starter.fd:
                        started = self._starter.take()
                        self._watch(started)
                        pending += state.on_processor_started(started.processor_id, now)
                    else:
                        pending += self._on_processor_event(key, state, now)
                if self._dying:
                    self._dying = [processor for processor in self._dying if not processor.reaped()]
                if self._drain_asked and not state.draining():
                    pending += state.drain(now, self.grace_period_seconds)
                if self.exit_with_parent and os.getppid() != parent:
                    logger.warning("worker %s: its parent exited; stopping", self.identity.decode())
                    break
                pending += state.tick(now, *usage.sample(now))
        finally:
            for processor_id in list(self._processors):
                self._kill(processor_id)
            for processor in self._dying:
                processor.reap()
            self._starter.close()
            try:
                sock.send(encode_one(DisconnectRequest()), zmq.NOBLOCK)
                time.sleep(0.05)  # let the goodbye leave before the socket closes
            except zmq.ZMQError:
                pass
            sock.disable_monitor()
            monitor.close(linger=0)
            sock.close(linger=100)
            context.term()
            logger.info("worker %s stopped", self.identity.decode())

    def _on_handshakes(self, monitor: Socket, handshakes: HandshakeWatch) -> list[WorkerInstruction]:
        """A worker the scheduler refuses (keys) can never get a task: say why, and exit.

        Handshakes cut short may be a wrong scheduler key or a scheduler down behind a proxy: say
        what they suggest, and leave the exit to the death timeout.
        """
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return []
            refused = handshakes.on_event(event["event"], event["value"])
            suspicion = handshakes.suspicion()
            if refused is None and suspicion is not None and handshakes.failures % 50 == NO_DETAIL_LIMIT % 50:
                logger.error("worker %s cannot join yet: %s", self.identity.decode(), suspicion)
            if refused is not None:
                self.refused = str(refused)
                logger.error("worker %s cannot join: %s", self.identity.decode(), refused)
                return [ExitWorker("the scheduler refused this worker")]

    def _watch(self, processor: _Processor) -> None:
        """Poll the processor's pipe and exit sentinel."""
        self._processors[processor.processor_id] = processor
        self._by_fd[processor.fd] = processor
        self._by_fd[processor.sentinel] = processor
        self._poller.register(processor.fd, zmq.POLLIN)
        self._poller.register(processor.sentinel, zmq.POLLIN)

    def _kill(self, processor_id: int) -> None:
        """Stop polling the processor, SIGKILL it, and leave it to be reaped."""
        processor = self._processors.pop(processor_id, None)
        if processor is None:
            return  # it died on its own in the same turn
        for fd in (processor.fd, processor.sentinel):
            del self._by_fd[fd]
            self._poller.unregister(fd)
        processor.kill()
        self._dying.append(processor)

    def _on_processor_event(self, fd: int, state: WorkerState, now: float) -> list[WorkerInstruction]:
        processor = self._by_fd.get(fd)
        if processor is None:
            return []  # killed earlier in this turn
        if fd != processor.sentinel:
            return self._from_processor(processor, state, now)
        # It exited on its own: read all it wrote before dying, then tell the state.
        out = self._from_processor(processor, state, now, limit=None)
        self._kill(processor.processor_id)
        return out + state.on_processor_died(processor.processor_id, now)

    def _receive(self, sock: Socket, handlers: _Handlers, state: WorkerState, now: float) -> list[WorkerInstruction]:
        out: list[WorkerInstruction] = []
        for _ in range(1000):
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                messages = decode(frame)
            except ProtocolVersionError as error:
                logger.error("worker cannot talk to the scheduler at %s: %s", self.address, error)
                return [ExitWorker(str(error))]
            except ProtocolError as error:
                self._bad_frames.warning(time.monotonic(), "worker dropped a bad frame from the scheduler: %s", error)
                continue
            for message in messages:
                handler = handlers.get(type(message))
                out += state.on_scheduler_contact(now) if handler is None else handler(message, now)
        return out

    @staticmethod
    def _scheduler_handlers(state: WorkerState) -> _Handlers:
        """``on_<message>`` for each message the scheduler sends a worker; others only prove it is alive."""

        def on_scheduler_shutdown(message: SchedulerShutdown, now: float) -> list[WorkerInstruction]:
            logger.info("the scheduler is shutting down: %s", message.reason)
            return [ExitWorker(message.reason)]

        def on_disconnect_response(message: DisconnectResponse, now: float) -> list[WorkerInstruction]:
            return [ExitWorker("the scheduler accepted our leaving")]

        return {
            Task: state.on_task,
            TaskCancel: state.on_task_cancel,
            ObjectInstruction: state.on_object_instruction,
            BalanceRequest: state.on_balance_request,
            WorkerHeartbeatEcho: state.on_heartbeat_echo,
            SchedulerShutdown: on_scheduler_shutdown,
            DisconnectResponse: on_disconnect_response,
        }

    def _from_processor(
        self, processor: _Processor, state: WorkerState, now: float, limit: int | None = 1000
    ) -> list[WorkerInstruction]:
        """Read what the processor wrote: at most ``limit`` frames, so a chatty task cannot starve the loop."""
        out: list[WorkerInstruction] = []
        processor_id = processor.processor_id
        connection = processor.connection
        frames = 0
        try:
            while (limit is None or frames < limit) and connection.poll():
                frames += 1
                for message in decode(connection.recv_bytes()):
                    if isinstance(message, TaskResult):
                        out += state.on_processor_result(processor_id, message, now)
                    elif isinstance(message, TaskLog):
                        out += state.on_processor_log(processor_id, message, now)
                    elif isinstance(message, ProcessorBlocked):
                        out += state.on_processor_blocked(processor_id, message, now)
                    else:
                        logger.warning("processor %d sent an unexpected %s", processor_id, type(message).__name__)
        except (EOFError, OSError):
            pass  # it died: its sentinel tells the loop
        except ProtocolError as error:  # it wrote something unreadable: treat it as crashed
            logger.error("processor %d sent a bad frame (%s); killing it", processor_id, error)
            processor.process.kill()  # its sentinel then reports the death and fails its task
        return out

    def _send_to_processor(self, processor_id: int, message: Message) -> None:
        processor = self._processors.get(processor_id)
        if processor is None:
            return  # it died in this turn: the state has already been told
        # If it is dying, the send fails: its sentinel then tells the loop, and the state fails its task.
        with contextlib.suppress(OSError):
            processor.connection.send_bytes(encode_one(message))

    def _execute(self, instructions: Sequence[WorkerInstruction], sock: Socket) -> bool:
        """Carry out instructions; return False when the worker must exit."""
        outgoing: list[Message] = []
        keep_running = True
        for instruction in instructions:
            if isinstance(instruction, SendToScheduler):
                outgoing.append(instruction.message)
            elif not keep_running:
                continue  # exiting: only what the scheduler must hear (results, confirmations) still goes
            elif isinstance(instruction, RunTask):
                # Its TaskStarted (queued just before) leaves first: should the task kill this whole
                # worker at once, the scheduler still knows it was running and charges it a retry.
                self._send_to_scheduler(outgoing, sock)
                outgoing = []
                self._send_to_processor(instruction.processor_id, instruction.task)
            elif isinstance(instruction, SendToProcessor):
                self._send_to_processor(instruction.processor_id, instruction.message)
            elif isinstance(instruction, StartProcessor):
                logger.debug("starting processor %d", instruction.processor_id)
                self._starter.start(instruction.processor_id)
            elif isinstance(instruction, KillProcessor):
                logger.info("killing processor %d: %s", instruction.processor_id, instruction.reason)
                self._kill(instruction.processor_id)
            elif isinstance(instruction, ExitWorker):
                logger.info("worker %s exiting: %s", self.identity.decode(), instruction.reason)
                keep_running = False
        self._send_to_scheduler(outgoing, sock)
        return keep_running

    def _send_to_scheduler(self, messages: list[Message], sock: Socket) -> None:
        if not messages:
            return
        try:
            for frame in encode_frames(messages):
                sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:  # libzmq ends the connection for good on a refused handshake; the monitor says why
            logger.debug("worker %s has no connection to send on; dropped %d messages", self.identity, len(messages))
