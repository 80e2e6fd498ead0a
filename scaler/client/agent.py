"""The client's agent thread: it alone owns the socket to the scheduler.

User threads hand messages to ``send``, which queues them and wakes the agent through a pipe;
the agent sends everything queued as one frame, so a burst of ``submit`` calls costs few
syscalls. Incoming results, cancel confirmations and fetched objects go to the
``ClientFutureManager``; task output (``TaskLog``) goes to the ``TaskOutputPrinter``. The agent
also sends heartbeats and declares the scheduler lost when it has been silent for
``timeout_seconds``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable

import zmq

from scaler.client.future_manager import ClientFutureManager
from scaler.client.output import TaskOutputPrinter
from scaler.errors import DisconnectedError, ProtocolError, ProtocolVersionError
from scaler.io.sockets import RateLimitedLog, Socket, connect_dealer
from scaler.protocol.codec import decode, encode_frames
from scaler.protocol.messages import (
    ClientDropped,
    ClientHeartbeat,
    ClientHeartbeatEcho,
    ClientShutdownResponse,
    Message,
    ObjectResponse,
    SchedulerShutdown,
    TaskCancelConfirm,
    TaskLog,
    TaskResult,
)

logger = logging.getLogger(__name__)

_MAX_FRAMES_PER_TURN = 1000


class ClientAgent(threading.Thread):
    """Moves messages between one client and its scheduler."""

    def __init__(
        self,
        address: str,
        identity: bytes,
        manager: ClientFutureManager,
        heartbeat_interval_seconds: float,
        timeout_seconds: float,
        on_shutdown_response: Callable[[ClientShutdownResponse], None],
    ) -> None:
        super().__init__(name=f"scaler-client-agent-{identity[-8:].decode(errors='replace')}", daemon=True)
        self.address = address
        self.identity = identity
        self.manager = manager
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.timeout_seconds = timeout_seconds
        self.connected = threading.Event()  # the scheduler has answered, or is known to be lost
        self.heard_anything = False  # some frame, even an undecodable one, came from the address
        self.error: DisconnectedError | None = None  # set once the scheduler is lost
        self._on_shutdown_response = on_shutdown_response
        self._outbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        # Closed when the agent object goes, not when its thread ends: a late send (a dropped
        # future freeing its result, on any thread) must never write to a reused descriptor.
        weakref.finalize(self, _close_pipe, self._wake_read, self._wake_write)
        self._output = TaskOutputPrinter()
        self._wake_pending = False
        self._stop_requested = False
        self._bad_frames = RateLimitedLog()
        self._scheduler_id: bytes | None = None

    def send(self, message: Message) -> None:
        """Queue a message for the scheduler (any thread)."""
        self._outbox.put(message)
        if not self._wake_pending:
            self._wake_pending = True
            with contextlib.suppress(BlockingIOError):  # the pipe is full: the agent is awake anyway
                os.write(self._wake_write, b"x")

    def stop(self) -> None:
        """Flush what is queued, then end the thread; from the agent's own thread (a callback), just ask."""
        self._stop_requested = True
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_write, b"x")
        if threading.current_thread() is not self:
            self.join(timeout=10)

    def run(self) -> None:
        """The agent loop."""
        context = zmq.Context()
        sock = connect_dealer(context, self.address, self.identity)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_read, zmq.POLLIN)
        last_heard = time.monotonic()
        next_heartbeat = 0.0
        try:
            while True:
                now = time.monotonic()
                if now >= next_heartbeat:
                    self.send(ClientHeartbeat(time.time()))
                    next_heartbeat = now + self.heartbeat_interval_seconds
                stopping = self._stop_requested
                self._flush(sock)
                if stopping:
                    break
                events = dict(poller.poll(int(max(0.0, next_heartbeat - time.monotonic()) * 1000) + 1))
                if sock in events and self._receive(sock):
                    last_heard = time.monotonic()
                elif self.error is None and time.monotonic() - last_heard > self.timeout_seconds:
                    silence = f"no answer from the scheduler at {self.address} for {self.timeout_seconds:g}s"
                    self._lose_scheduler(silence)
        except Exception:  # never die silently: whatever was pending must still end
            logger.exception("client agent failed")
            self._lose_scheduler("the client's agent thread failed; see the log")
        finally:
            sock.close(linger=500)
            context.term()

    def _flush(self, sock: Socket) -> None:
        # Drain the pipe before clearing the flag: a send() in between then writes a fresh byte
        # that wakes the next poll, instead of a byte this drain would swallow.
        try:
            while True:
                os.read(self._wake_read, 4096)
        except BlockingIOError:
            pass
        self._wake_pending = False
        batch: list[Message] = []
        while True:
            try:
                batch.append(self._outbox.get_nowait())
            except queue.Empty:
                break
        if not batch:
            return
        if self.error is None:
            for frame in encode_frames(batch):
                sock.send(frame, zmq.NOBLOCK)
        else:
            self.manager.fail_all(self.error)  # tasks submitted after the loss must not wait forever

    def _receive(self, sock: Socket) -> bool:
        heard = False
        for _ in range(_MAX_FRAMES_PER_TURN):
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.heard_anything = True
            try:
                messages = decode(frame)
            except ProtocolError as error:
                self._bad_frames.warning("client dropped a bad frame from the scheduler: %s", error)
                if isinstance(error, ProtocolVersionError):
                    self._lose_scheduler(str(error))
                continue
            heard = True
            self.connected.set()
            for message in messages:
                self._dispatch(message)
        return heard

    def _dispatch(self, message: Message) -> None:
        if isinstance(message, TaskResult):
            self.manager.on_task_result(message)
            self._output.on_task_done(message.task_id)
        elif isinstance(message, ObjectResponse):
            self.manager.on_object_response(message)
        elif isinstance(message, TaskLog):
            self._output.on_task_log(message)
        elif isinstance(message, TaskCancelConfirm):
            self.manager.on_task_cancel_confirm(message)
        elif isinstance(message, ClientShutdownResponse):
            self._on_shutdown_response(message)
        elif isinstance(message, ClientHeartbeatEcho):
            if self._scheduler_id is None:
                self._scheduler_id = message.scheduler_id
            elif message.scheduler_id != self._scheduler_id:
                self._lose_scheduler("the scheduler restarted, and the tasks it held are lost")
        elif isinstance(message, SchedulerShutdown):
            self._lose_scheduler(f"the scheduler shut down: {message.reason}")
        elif isinstance(message, ClientDropped):
            self._lose_scheduler(f"the scheduler dropped this client: {message.reason}")

    def _lose_scheduler(self, reason: str) -> None:
        if self.error is None:
            logger.error("client lost its scheduler: %s", reason)
            self.error = DisconnectedError(reason)
            self.connected.set()  # wake anyone waiting for the first answer
        self.manager.fail_all(self.error)


def _close_pipe(read_end: int, write_end: int) -> None:
    os.close(read_end)
    os.close(write_end)
