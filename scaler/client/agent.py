"""The client's agent thread: it alone owns the socket to the scheduler.

User threads hand messages to ``send``, which queues them and wakes the agent through a pipe;
the agent sends everything queued as one frame, so a burst of ``submit`` calls costs few
syscalls. Incoming results, cancel confirmations and fetched objects go to the
``ClientFutureManager``; task output (``TaskLog``) goes to the ``TaskOutputPrinter``. The agent
also sends heartbeats and declares the scheduler lost when it has been silent for
``timeout_seconds``. A monitor on the socket reports handshakes: one the scheduler refuses
(keys) ends the connection at once with an ``AuthenticationError`` rather than a silent wait.
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
from zmq.utils.monitor import recv_monitor_message

from scaler.client.future_manager import ClientFutureManager
from scaler.client.output import TaskOutputPrinter
from scaler.errors import AuthenticationError, DisconnectedError, ProtocolError, ProtocolVersionError
from scaler.io.security import HANDSHAKE_EVENTS, HandshakeWatch, PeerKeys
from scaler.io.sockets import Socket, connect_dealer
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
    TaskCredit,
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
        keys: PeerKeys | None = None,
    ) -> None:
        super().__init__(name=f"scaler-client-agent-{identity[-8:].decode(errors='replace')}", daemon=True)
        self.address = address
        self.identity = identity
        self.manager = manager
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.timeout_seconds = timeout_seconds
        self.keys = keys
        self.handshakes = HandshakeWatch(address, keys, "client")  # read by other threads only after join
        self.connected = threading.Event()  # the scheduler has answered, or is known to be lost
        self.heard_anything = False  # some frame, even an undecodable one, came from the address
        self.error: DisconnectedError | None = None  # set once the scheduler is lost
        # Backpressure: how many more tasks the scheduler lets this client send (None: no limit).
        self.credits: int | None = None
        self.credit_changed = threading.Condition()
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
        sock: Socket | None = None
        monitor: Socket | None = None
        try:  # the set-up too: a failure there must reach Client() now, not after its timeout
            sock = connect_dealer(context, self.address, self.identity, self.keys)
            monitor = sock.get_monitor_socket(HANDSHAKE_EVENTS)
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(monitor, zmq.POLLIN)
            poller.register(self._wake_read, zmq.POLLIN)
            last_heard = time.monotonic()
            next_heartbeat = 0.0
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
                if monitor in events:
                    self._on_handshakes(monitor, sock)
                if sock in events and self._receive(sock):
                    last_heard = time.monotonic()
                elif self.error is None and time.monotonic() - last_heard > self.timeout_seconds:
                    silence = f"no answer from the scheduler at {self.address} for {self.timeout_seconds:g}s"
                    self._lose_scheduler(silence)
        except BaseException as error:  # never die silently, whatever the type: what was pending must still end
            logger.exception("client agent failed")
            self._lose_scheduler(f"the client's agent thread failed ({error!r}); see the log")
        finally:
            if self.error is None and not self._stop_requested:  # no path ends here, but nothing may wait forever
                self._lose_scheduler("the client's agent thread ended")
            self._wake_submitters()  # a submit still waiting for credit must wake and find the client closed
            if monitor is not None:
                assert sock is not None
                sock.disable_monitor()
                monitor.close(linger=0)
            if sock is not None:
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
            try:
                for frame in encode_frames(batch):
                    sock.send(frame, zmq.NOBLOCK)
            except zmq.Again:  # libzmq ends the connection for good on a refused handshake; the monitor says why
                logger.debug("client has no connection to send on; dropped %d messages", len(batch))
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
            except ProtocolVersionError as error:
                self._lose_scheduler(str(error))
                continue
            except ProtocolError as error:
                # Only the scheduler can send here, so this is a broken stream, and the frame may
                # have held results: fail what is pending rather than let it wait forever.
                self._lose_scheduler(f"the client could not read a frame from the scheduler ({error})")
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
        elif isinstance(message, TaskCredit):
            with self.credit_changed:
                self.credits = (self.credits or 0) + message.count
                self.credit_changed.notify_all()
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

    def _on_handshakes(self, monitor: Socket, sock: Socket) -> None:
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            refused = self.handshakes.on_event(event["event"], event["value"])
            if refused is not None and self.error is None:
                self._lose_scheduler(refused)
                with contextlib.suppress(zmq.ZMQError):
                    sock.disconnect(self.address)  # stop knocking: the answer will not change

    def take_credit(self, block: bool = True) -> bool:
        """Use one credit for a task about to be sent; unless ``block`` is False, wait while there is none.

        Returns False only when not blocking and no credit is left. On the agent's own thread (a
        done-callback that submits) it never waits: that thread is the one that receives credits.
        The count may then go below zero, which later credits make up.
        """
        with self.credit_changed:
            if self.credits is None:
                return True
            if self.credits <= 0 and threading.current_thread() is not self:
                if not block:
                    return False
                logger.debug("submit waits: this client has as many tasks queued as the scheduler allows")
                while self.credits <= 0 and self.error is None and self.is_alive():
                    self.credit_changed.wait(1.0)
            self.credits -= 1
            return True

    def _wake_submitters(self) -> None:
        with self.credit_changed:
            self.credit_changed.notify_all()

    def _lose_scheduler(self, reason: str | AuthenticationError) -> None:
        if self.error is None:
            if isinstance(reason, AuthenticationError):
                logger.error("client refused by its scheduler: %s", reason)
                self.error = reason
            else:
                logger.error("client lost its scheduler: %s", reason)
                self.error = DisconnectedError(reason)
            self.connected.set()  # wake anyone waiting for the first answer
            self._wake_submitters()  # and any submit waiting for credit: its task now fails at once
        self.manager.fail_all(self.error)


def _close_pipe(read_end: int, write_end: int) -> None:
    os.close(read_end)
    os.close(write_end)
