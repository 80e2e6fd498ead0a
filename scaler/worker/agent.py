"""The worker agent process: a thin shell that moves bytes for ``WorkerState``.

It owns the DEALER socket to the scheduler and the pipe to its processor subprocess, and runs
one poll loop. Heartbeats keep flowing while the processor is busy, because the processor is a
separate process. Processors are forked from a pre-imported fork server, so a restart after a
cancel or a crash takes milliseconds rather than a fresh interpreter's start-up.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import psutil
import zmq

from scaler.errors import ProtocolError, ProtocolVersionError
from scaler.io.sockets import RateLimitedLog, Socket, connect_dealer, make_identity
from scaler.protocol.codec import decode, encode_frames, encode_one
from scaler.protocol.messages import (
    DisconnectRequest,
    DisconnectResponse,
    Message,
    SchedulerShutdown,
    Task,
    TaskCancel,
    TaskResult,
    WorkerHeartbeatEcho,
)
from scaler.worker.processor import run_processor
from scaler.worker.state import (
    ExitWorker,
    RestartProcessor,
    RunTask,
    SendToScheduler,
    WorkerInstruction,
    WorkerState,
)

logger = logging.getLogger(__name__)

_TICK_SECONDS = 0.1


def _process_context() -> Any:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["scaler.worker.processor"])
        return context
    return multiprocessing.get_context("spawn")


class _Processor:
    """One processor subprocess and the agent's end of its pipe."""

    def __init__(self, context: Any) -> None:
        agent_end, processor_end = multiprocessing.Pipe(duplex=True)
        self.connection: Connection = agent_end
        self.process: BaseProcess = context.Process(
            target=run_processor, args=(processor_end, os.getpid()), name="scaler-processor", daemon=True
        )
        self.process.start()
        processor_end.close()
        self.fd = agent_end.fileno()

    def kill(self) -> None:
        """SIGKILL it: it runs no further user code once this returns. Reaping is left to ``reap``."""
        self.connection.close()
        if self.process.is_alive():
            self.process.kill()

    def reap(self) -> None:
        self.process.join(timeout=5)


class _ProcessorStarter:
    """Starts processors on a helper thread so the agent keeps answering while one boots.

    The first start also boots the fork server (a second or so on a busy machine); later ones
    fork from it in milliseconds. ``fd`` becomes readable when a started processor is ready.
    """

    def __init__(self) -> None:
        self._context = _process_context()
        self._read, self._write = os.pipe()
        self.fd = self._read
        self._thread: threading.Thread | None = None
        self._started: _Processor | None = None
        self._error: BaseException | None = None

    def start(self, killed: _Processor | None) -> None:
        """Start a processor; first reap ``killed`` (off the agent's thread: it can take a few ms)."""
        if self._thread is not None:
            return  # one is already on its way
        self._thread = threading.Thread(target=self._run, args=(killed,), name="processor-starter", daemon=True)
        self._thread.start()

    def _run(self, killed: _Processor | None) -> None:
        if killed is not None:
            killed.reap()
        try:
            self._started = _Processor(self._context)
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
        return started

    def close(self) -> None:
        """Wait for a start in progress and kill what it started."""
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
        heartbeat_interval_seconds: float = 2.0,
        death_timeout_seconds: float = 300.0,
        task_timeout_seconds: float = 0.0,
        exit_with_parent: bool = False,
    ) -> None:
        self.address = address
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.death_timeout_seconds = death_timeout_seconds
        self.task_timeout_seconds = task_timeout_seconds
        self.exit_with_parent = exit_with_parent
        self.identity = make_identity("worker")
        self._stopping = False
        self._bad_frames = RateLimitedLog()

    def stop(self, *_: object) -> None:
        """Ask the loop to finish (safe from a signal handler)."""
        self._stopping = True

    def run(self) -> None:
        """Serve until stopped; always leaves no processor behind."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        context = zmq.Context()
        sock = connect_dealer(context, self.address, self.identity)
        self._starter = _ProcessorStarter()
        self._processor: _Processor | None = None
        state = WorkerState(
            time.monotonic(), self.heartbeat_interval_seconds, self.death_timeout_seconds, self.task_timeout_seconds
        )
        usage = _ResourceSampler(self.heartbeat_interval_seconds)
        parent = os.getppid()
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self._starter.fd, zmq.POLLIN)
        logger.info("worker %s serving %s", self.identity.decode(), self.address)
        try:
            pending: list[WorkerInstruction] = [RestartProcessor("the worker is starting")]
            pending += state.tick(time.monotonic())
            while not self._stopping and self._execute(pending, sock, state):
                events = dict(self._poller.poll(int(_TICK_SECONDS * 1000)))
                now = time.monotonic()
                pending = []
                if sock in events:
                    pending += self._receive(sock, state, now)
                processor = self._processor
                if processor is not None and processor.fd in events:
                    pending += self._from_processor(processor, state, now)
                if processor is not None and processor.process.sentinel in events:
                    pending += self._from_processor(processor, state, now)
                    self._watch(None)
                    processor.reap()
                    pending += state.on_processor_died(now)
                if self._starter.fd in events:
                    self._watch(self._starter.take())
                    pending += state.on_processor_started(now)
                if self.exit_with_parent and os.getppid() != parent:
                    logger.warning("worker %s: its parent exited; stopping", self.identity.decode())
                    break
                pending += state.tick(now, *usage.sample(now))
        finally:
            last = self._watch(None)
            if last is not None:
                last.reap()
            self._starter.close()
            try:
                sock.send(encode_one(DisconnectRequest()), zmq.NOBLOCK)
                time.sleep(0.05)  # let the goodbye leave before the socket closes
            except zmq.ZMQError:
                pass
            sock.close(linger=100)
            context.term()
            logger.info("worker %s stopped", self.identity.decode())

    def _watch(self, processor: _Processor | None) -> _Processor | None:
        """Make ``processor`` the current one and poll its pipe and exit; kill and return the previous."""
        old = self._processor
        if old is not None:
            self._poller.unregister(old.fd)
            self._poller.unregister(old.process.sentinel)
            old.kill()
        self._processor = processor
        if processor is not None:
            self._poller.register(processor.fd, zmq.POLLIN)
            self._poller.register(processor.process.sentinel, zmq.POLLIN)
        return old

    def _receive(self, sock: Socket, state: WorkerState, now: float) -> list[WorkerInstruction]:
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
                self._bad_frames.warning("worker dropped a bad frame from the scheduler: %s", error)
                continue
            for message in messages:
                out += self._on_scheduler_message(message, state, now)
        return out

    def _on_scheduler_message(self, message: Message, state: WorkerState, now: float) -> list[WorkerInstruction]:
        if isinstance(message, Task):
            return state.on_task(message, now)
        if isinstance(message, TaskCancel):
            return state.on_task_cancel(message, now)
        if isinstance(message, SchedulerShutdown):
            logger.info("the scheduler is shutting down: %s", message.reason)
            return [ExitWorker(message.reason)]
        if isinstance(message, WorkerHeartbeatEcho):
            return state.on_heartbeat_echo(message, now)
        if isinstance(message, DisconnectResponse):
            return [ExitWorker("the scheduler accepted our leaving")]
        return state.on_scheduler_contact(now)

    def _from_processor(self, processor: _Processor, state: WorkerState, now: float) -> list[WorkerInstruction]:
        out: list[WorkerInstruction] = []
        try:
            while processor.connection.poll():
                for message in decode(processor.connection.recv_bytes()):
                    assert isinstance(message, TaskResult)
                    out += state.on_processor_result(message, now)
        except (EOFError, OSError):
            pass  # it died: its sentinel tells the loop
        return out

    def _execute(self, instructions: Sequence[WorkerInstruction], sock: Socket, state: WorkerState) -> bool:
        """Carry out instructions; return False when the worker must exit."""
        outgoing: list[Message] = []
        keep_running = True
        for instruction in instructions:
            if isinstance(instruction, SendToScheduler):
                outgoing.append(instruction.message)
            elif isinstance(instruction, RunTask):
                assert self._processor is not None, "the state runs tasks only on a started processor"
                self._processor.connection.send_bytes(encode_one(instruction.task))
            elif isinstance(instruction, RestartProcessor):
                logger.info("starting a processor: %s", instruction.reason)
                self._starter.start(killed=self._watch(None))
            elif isinstance(instruction, ExitWorker):
                logger.info("worker %s exiting: %s", self.identity.decode(), instruction.reason)
                keep_running = False
                break
        for frame in encode_frames(outgoing) if outgoing else ():
            sock.send(frame, zmq.NOBLOCK)
        return keep_running
