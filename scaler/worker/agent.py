"""The worker agent process: a thin shell that moves bytes for ``WorkerState``.

It owns the DEALER connection to the scheduler (a ``DealerTransport``, ``scaler/io/transport.py``)
and a pipe to each of its processor subprocesses (``processes.py``), and runs one poll loop:
scheduler frames, processor pipes, processor exits and processor starts are events for the state,
and the state's instructions are carried out at the top of the next turn (everything for the
scheduler leaves as one frame). Usually one processor runs tasks; more exist only while tasks are
parked waiting on other tasks (see ``state.py``). Heartbeats keep flowing while a task holds the
CPU, because processors are separate processes. Processors are forked from a pre-imported fork
server, so a new one after a cancel, a crash or a block takes milliseconds rather than a fresh
interpreter's start-up. Each processor leads its own process group and is always killed with it,
so the programs a task started end with it. Killed processors are reaped without blocking the
loop. Task output
arrives coalesced and within each processor's budget, and the state drops what is over the
worker's (``OutputLimits``), so it cannot crowd out results and heartbeats.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

from scaler.config.worker import WorkerConfig
from scaler.errors import ProtocolError, ProtocolVersionError
from scaler.io.output_limits import DEFAULT_OUTPUT_LIMITS, OutputLimits
from scaler.io.security import NO_DETAIL_LIMIT, HandshakeWatch, PeerKeys
from scaler.io.sockets import make_identity
from scaler.io.transport import PIPE_BURST, TICK_SECONDS, DealerTransport
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
from scaler.worker.processes import ProcessorHandle, ProcessorStarter, ResourceSampler
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

_TICK_MS = int(TICK_SECONDS * 1000)

_Handlers = dict[type[Message], Callable[[Any, float], list[WorkerInstruction]]]


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
        self._processors: dict[int, ProcessorHandle] = {}
        self._by_fd: dict[int, ProcessorHandle] = {}  # pipe fd and exit sentinel -> processor
        self._dying: list[ProcessorHandle] = []  # killed, not yet reaped

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
        transport = DealerTransport(self.address, self.identity, self.keys, name=f"worker {self.identity.decode()}")
        self._transport = transport
        handshakes = HandshakeWatch(self.address, self.keys, "worker", cut_short_is_final=False)
        key_files = None if self.keys is None else (self.keys.key_file, self.keys.scheduler_key_file)
        self._starter = ProcessorStarter(self.address, key_files, self.output_limits)
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
        usage = ResourceSampler(self.heartbeat_interval_seconds)
        parent = os.getppid()
        transport.register(self._starter.fd)
        logger.info("worker %s serving %s", self.identity.decode(), self.address)
        crashed = True
        try:
            now = time.monotonic()
            pending = state.start(now)
            # Carry out the last turn's instructions before checking for a stop: results read in
            # that turn must reach the scheduler, or their tasks would run again elsewhere.
            while self._execute(pending) and not self._stopping:
                events = transport.poll(_TICK_MS)
                now = time.monotonic()
                pending = []
                for key in events:
                    if key is transport.socket:
                        pending += self._receive(handlers, state, now)
                    elif key is transport.monitor:
                        pending += self._on_handshakes(handshakes)
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
                # A scheduler that forked this worker (``scaler.cluster.boot``) is its parent: it
                # says goodbye, then exits. Read in this turn, the goodbye ends the loop quietly.
                leaving = any(isinstance(instruction, ExitWorker) for instruction in pending)
                if self.exit_with_parent and os.getppid() != parent and not leaving:
                    logger.warning("worker %s: its parent exited; stopping", self.identity.decode())
                    break
                pending += state.tick(now, *usage.sample(now))
            crashed = False
        except BaseException:
            # A bug (in the state or here) may have left the state half-updated: serving on from it
            # could lose or double tasks. So stop loudly, and without the goodbye that would make
            # the scheduler requeue our tasks free of charge: it sees the connection close and
            # treats this worker as dead, so a task that trips the bug again and again runs out of retries.
            logger.critical(
                "worker %s stopped on an error; leaving without a goodbye", self.identity.decode(), exc_info=True
            )
            raise
        finally:
            for processor_id in list(self._processors):
                self._kill(processor_id)
            for processor in self._dying:
                processor.reap()
            self._starter.close()
            if crashed:
                transport.close(linger_ms=0)
            else:
                transport.close(goodbye=DisconnectRequest(), linger_ms=100)
            logger.info("worker %s stopped", self.identity.decode())

    def _on_handshakes(self, handshakes: HandshakeWatch) -> list[WorkerInstruction]:
        """A worker the scheduler refuses (keys) can never get a task: say why, and exit.

        Handshakes cut short may be a wrong scheduler key or a scheduler down behind a proxy: say
        what they suggest, and leave the exit to the death timeout.
        """
        for event, value in self._transport.monitor_events():
            refused = handshakes.on_event(event, value)
            suspicion = handshakes.suspicion()
            if refused is None and suspicion is not None and handshakes.failures % 50 == NO_DETAIL_LIMIT % 50:
                logger.error("worker %s cannot join yet: %s", self.identity.decode(), suspicion)
            if refused is not None:
                self.refused = str(refused)
                logger.error("worker %s cannot join: %s", self.identity.decode(), refused)
                return [ExitWorker("the scheduler refused this worker")]
        return []

    def _watch(self, processor: ProcessorHandle) -> None:
        """Poll the processor's pipe and exit sentinel."""
        self._processors[processor.processor_id] = processor
        self._by_fd[processor.fd] = processor
        self._by_fd[processor.sentinel] = processor
        self._transport.register(processor.fd)
        self._transport.register(processor.sentinel)

    def _kill(self, processor_id: int) -> None:
        """Stop polling the processor, SIGKILL it, and leave it to be reaped."""
        processor = self._processors.pop(processor_id, None)
        if processor is None:
            return  # it died on its own in the same turn
        for fd in (processor.fd, processor.sentinel):
            del self._by_fd[fd]
            self._transport.unregister(fd)
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

    def _receive(self, handlers: _Handlers, state: WorkerState, now: float) -> list[WorkerInstruction]:
        out: list[WorkerInstruction] = []
        for messages in self._transport.receive():
            if isinstance(messages, ProtocolVersionError):
                logger.error("worker cannot talk to the scheduler at %s: %s", self.address, messages)
                return [ExitWorker(str(messages))]
            if isinstance(messages, ProtocolError):
                self._transport.bad_frame_log.warning(
                    now, "worker dropped a bad frame from the scheduler: %s", messages
                )
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
        self, processor: ProcessorHandle, state: WorkerState, now: float, limit: int | None = PIPE_BURST
    ) -> list[WorkerInstruction]:
        """Read what the processor wrote: at most ``limit`` frames, so a chatty task cannot starve the loop."""
        out: list[WorkerInstruction] = []
        processor_id = processor.processor_id
        channel = processor.channel
        frames = 0
        try:
            while (limit is None or frames < limit) and channel.poll():
                frames += 1
                for message in channel.receive():
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
            # Its pipe stays open (still polled); its sentinel then reports the death and fails its task.
            processor.end()
        return out

    def _send_to_processor(self, processor_id: int, message: Message) -> None:
        processor = self._processors.get(processor_id)
        if processor is None:
            return  # it died in this turn: the state has already been told
        # If it is dying, the send fails: its sentinel then tells the loop, and the state fails its task.
        with contextlib.suppress(OSError):
            processor.channel.send((message,))

    def _execute(self, instructions: Sequence[WorkerInstruction]) -> bool:
        """Carry out instructions; return False when the worker must exit."""
        outgoing: list[Message] = []
        starts: list[int] = []
        keep_running = True
        for instruction in instructions:
            if isinstance(instruction, SendToScheduler):
                outgoing.append(instruction.message)
            elif not keep_running:
                continue  # exiting: only what the scheduler must hear (results, confirmations) still goes
            elif isinstance(instruction, RunTask):
                # Its TaskStarted (queued just before) leaves first: should the task kill this whole
                # worker at once, the scheduler still knows it was running and charges it a retry.
                self._transport.send(outgoing)
                outgoing = []
                self._send_to_processor(instruction.processor_id, instruction.task)
            elif isinstance(instruction, SendToProcessor):
                self._send_to_processor(instruction.processor_id, instruction.message)
            elif isinstance(instruction, StartProcessor):
                starts.append(instruction.processor_id)
            elif isinstance(instruction, KillProcessor):
                logger.info("killing processor %d: %s", instruction.processor_id, instruction.reason)
                self._kill(instruction.processor_id)
            elif isinstance(instruction, ExitWorker):
                logger.info("worker %s exiting: %s", self.identity.decode(), instruction.reason)
                keep_running = False
        self._transport.send(outgoing)
        # Starts last: a start's thread holds the GIL for a while (it talks to the fork server), and
        # a cancel's confirmation or a result must not wait behind it. A start only asks for a spare.
        for processor_id in starts if keep_running else ():
            logger.debug("starting processor %d", processor_id)
            self._starter.start(processor_id)
        return keep_running
